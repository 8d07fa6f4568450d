"""Sampling complete splats for photos and writing each photo's folder: what splatdiff-sample and splatdiff-demo
share (the commands add their flags and checks, `generation.py`).

Per photo, under <output-dir>/<name>/: sample_XX.ply, turntable_XX.gif (or .mp4; none without a turntable),
contact_sheet.png and summary.json listing them. A folder is written hidden and renamed into place when complete; an
existing one is replaced only when this code wrote it (it holds exactly the files its summary.json lists) or with
`overwrite`. A full disk while writing is one clear error, and nothing half-written stays.
"""

from __future__ import annotations

import errno
import json
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, List, Literal, Optional, Tuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.generation import MAX_RENDER_PAIRS, MAX_RENDER_PIXELS
from nerfstudio_splatdiff.safety import atomic_write_text, is_inside, new_partial_dir, safe_name

CONSOLE = Console()
SHEET_ANGLES = (0, 90, 180, 270)
"""Contact-sheet columns after the input: turntable azimuths in degrees (0 = the input view), quarter turns, so with
a turntable of a multiple of 4 frames they are turntable frames and need no renders of their own."""
GIF_FPS = 12
"""Turntable frame rate: the default 24 frames make a 2 s loop."""
SUMMARY = "summary.json"
SUMMARY_COMMANDS = ("splatdiff-sample", "splatdiff-demo")
"""The commands whose top-level summary.json a later run may replace."""
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class OutputOptions:
    """How each sample is written (splatdiff-sample's --render-size, --turntable, --turntable-frames, --video-format;
    checked by `generation.check_render_flags`)."""

    render_size: int = 128
    turntable: bool = True
    turntable_frames: int = 24
    video_format: Literal["gif", "mp4"] = "gif"


@dataclass
class Knobs:
    """The sampling settings of one call (None: the run's own)."""

    num_samples: int
    guidance_weight: Optional[float] = None
    skip_weight: Optional[float] = None
    eta: Optional[float] = None
    seed: int = 0


def render_blocks(num_scenes: int, num_views: int, num_gaussians: int, size: int) -> List[Tuple[range, range]]:
    """(scenes, views) blocks that cover every view of every scene in as few render calls as `MAX_RENDER_PAIRS` and
    `MAX_RENDER_PIXELS` allow: all at once if they fit, else groups of whole scenes, else one scene's views in
    chunks. Blocks come scene group by scene group, so each group's files can be written before the next renders."""
    per_call = max(1, min(MAX_RENDER_PAIRS // max(num_gaussians, 1), MAX_RENDER_PIXELS // (size * size)))
    if num_views <= per_call:
        k = max(1, per_call // num_views)
        return [(range(i, min(i + k, num_scenes)), range(num_views)) for i in range(0, num_scenes, k)]
    return [
        (range(i, i + 1), range(j, min(j + per_call, num_views)))
        for i in range(num_scenes)
        for j in range(0, num_views, per_call)
    ]


def _group_blocks(blocks: List[Tuple[range, range]]) -> Iterator[Tuple[range, List[range]]]:
    """`render_blocks` grouped by scene range: (scenes, the view ranges that together cover all their views)."""
    group: List[range] = []
    for i, (scenes, views) in enumerate(blocks):
        group.append(views)
        if i + 1 == len(blocks) or blocks[i + 1][0] != scenes:
            yield scenes, group
            group = []


def sample_views(depth: float, options: OutputOptions) -> Tuple[Any, List[int]]:
    """Every camera one sample is rendered from, c2w [V, 4, 4]: the turntable's frames (none without a turntable),
    then the contact-sheet views that are not among them; and the sheet views' indices."""
    import torch

    from nerfstudio_splatdiff.splats.orbit import turntable_c2w

    frames = options.turntable_frames if options.turntable else 0
    sheet = turntable_c2w(depth, len(SHEET_ANGLES))  # quarter turns: SHEET_ANGLES
    index, extra = [], []
    for i, angle in enumerate(SHEET_ANGLES):
        if frames and (angle * frames) % 360 == 0:
            index.append(angle * frames // 360)
        else:
            index.append(frames + len(extra))
            extra.append(sheet[i])
    cams = ([turntable_c2w(depth, frames)] if frames else []) + ([torch.stack(extra)] if extra else [])
    return torch.cat(cams), index


def write_outputs(
    model: Any,
    gaussians: Any,
    photo: Any,
    depth: float,
    folder: Path,
    options: OutputOptions,
    progress: Progress,
    label: str = "",
    timings: Optional[dict] = None,
) -> List[str]:
    """Write every sample's .ply and turntable and the contact sheet into `folder`; returns the file names.

    All samples' views render in as few calls as the memory budget allows (`render_blocks`: one call for the
    defaults), instead of a dozen small calls per sample. `timings` (if given) receives render_seconds and
    write_seconds (PLY, video and sheet encoding)."""
    import numpy as np
    import torch
    from PIL import Image

    from nerfstudio_splatdiff.splats.images import contact_sheet, save_png, to_uint8
    from nerfstudio_splatdiff.splats.ply import save_ply

    n, S, size = gaussians.batch_size, options.render_size, photo.image.shape[0]
    dev = model.device
    c2w, sheet_index = sample_views(depth, options)
    c2w = c2w.to(dev)
    V, F = len(c2w), (options.turntable_frames if options.turntable else 0)
    K = photo.K.clone()
    K[:2] *= S / size
    K = K.to(dev).expand(V, 3, 3)
    small = Image.fromarray(to_uint8(photo.image)).resize((S, S), Image.LANCZOS)
    inp = torch.from_numpy(np.array(small)).float() / 255
    rows: List[list] = [[] for _ in range(n)]
    files: List[Optional[List[str]]] = [None] * n
    render_s = write_s = 0.0
    task = progress.add_task(f"{label or folder.name}: writing", total=n)
    for scenes, block in _group_blocks(render_blocks(n, V, gaussians.num_gaussians, S)):
        t0 = time.perf_counter()
        g = gaussians.map(lambda t: t[scenes.start : scenes.stop])
        rgb = torch.cat(
            [
                model.render_views(
                    g,
                    c2w[views.start : views.stop][None].expand(len(scenes), -1, -1, -1),
                    K[views.start : views.stop][None].expand(len(scenes), -1, -1, -1),
                    S,
                )["rgb"].cpu()
                for views in block
            ],
            dim=1,
        )  # [scenes, V, S, S, 3]
        t1 = time.perf_counter()
        render_s += t1 - t0
        for k, i in enumerate(scenes):
            names = [save_ply(folder / f"sample_{i:02d}.ply", gaussians.scene(i)).name]
            if F:
                names.append(write_video(folder / f"turntable_{i:02d}.{options.video_format}", rgb[k, :F]).name)
            files[i] = names
            rows[i] = [inp] + [rgb[k, j].clone() for j in sheet_index]  # not views: the block can go
            progress.advance(task)
        write_s += time.perf_counter() - t1
    t1 = time.perf_counter()
    sheet = save_png(folder / "contact_sheet.png", contact_sheet(rows)).name
    write_s += time.perf_counter() - t1
    progress.remove_task(task)
    if timings is not None:
        timings.update(render_seconds=render_s, write_seconds=write_s)
    return [name for names in files for name in (names or [])] + [sheet]


def write_video(path: Path, frames: Any, fps: int = GIF_FPS) -> Path:
    """Frames [F, H, W, 3] in [0, 1] as a looping GIF (or an mp4). GIF frames are quantised with PIL's fast octree
    (256 colours, no dithering): about 8x less CPU than its default median cut, and smaller files."""
    import torch
    from PIL import Image

    imgs = frames.detach().float().clamp(0, 1).mul_(255).add_(0.5).to(torch.uint8).cpu().numpy()
    if path.suffix == ".mp4":
        import imageio.v2 as imageio

        imageio.mimwrite(path, list(imgs), fps=fps, codec="libx264", macro_block_size=1)
    else:
        pil = [
            Image.fromarray(im).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for im in imgs
        ]
        pil[0].save(path, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path


class PhotoSampler:
    """Samples `knobs.num_samples` splats for photos with one loaded model and publishes each photo's folder."""

    def __init__(self, model: Any, run: Any, output_dir: Path, knobs: Knobs, options: OutputOptions, overwrite: bool):
        from nerfstudio_splatdiff.generation import object_depth_and_range

        self.model, self.output_dir, self.overwrite = model, output_dir, overwrite
        self.knobs, self.options = knobs, options
        self.num_samples = knobs.num_samples if model.config.is_generative else 1
        self.depth, self.near, self.far = object_depth_and_range(run)

    def sample_all(self, photos: List[Any], names: List[str]) -> List[dict]:
        """Every photo in turn, with progress bars; the summary entries."""
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn())
        entries = []
        with Progress(*columns, TimeElapsedColumn(), console=CONSOLE) as progress:
            task_images = progress.add_task("images", total=len(photos))
            for photo, name in zip(photos, names):
                entries.append(self.sample(photo, name, progress))
                progress.advance(task_images)
        return entries

    def sample(self, photo: Any, name: str, progress: Progress) -> dict:
        """Sample the splats for one `Photo` and publish its folder (written hidden, renamed into place when done)."""
        import torch

        model, knobs, n = self.model, self.knobs, self.num_samples
        dev = model.device
        batch = {
            "images": photo.image[None, None].to(dev),
            "c2w": torch.eye(4, device=dev)[None, None],
            "K": photo.K[None, None].to(dev),
            "depth_near": torch.tensor([self.near], device=dev),
            "depth_far": torch.tensor([self.far], device=dev),
        }
        t0 = time.perf_counter()
        with torch.no_grad():
            gaussians = model.generate(batch, n, knobs.guidance_weight, knobs.skip_weight, knobs.seed, knobs.eta)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        sampling_s = time.perf_counter() - t0
        final = self.output_dir / name
        with disk_full_is_one_line(self.output_dir, name):
            tmp = new_partial_dir(self.output_dir, name)  # a new hidden folder; never an existing one
            try:
                timings: dict = {}
                with torch.no_grad():
                    files = write_outputs(
                        model, gaussians, photo, self.depth, tmp, self.options, progress, name, timings
                    )
                entry = {
                    "image": str(photo.path),
                    "folder": str(final),
                    "original_size": list(photo.original_size),
                    "focal_px": float(photo.K[0, 0]),
                    "image_size": int(photo.image.shape[0]),
                    "has_mask": photo.mask is not None,
                    "num_samples": n,
                    "num_gaussians": int(gaussians.means.shape[1]),
                    "sampling_seconds": sampling_s,
                    **timings,
                    "object_depth": self.depth,
                    "depth_near": self.near,
                    "depth_far": self.far,
                    "files": files,
                }
                (tmp / SUMMARY).write_text(json.dumps(entry, indent=2))
                for p in tmp.iterdir():  # only the listed files are published
                    if p.name not in files and p.name != SUMMARY:
                        p.unlink()
                self.publish(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        return entry

    def publish(self, tmp: Path, final: Path) -> None:
        """Rename the finished folder into place; an existing one is moved aside first and removed only after (it
        was checked to be this code's output, or overwrite was given)."""
        if not (final.exists() or final.is_symlink()):
            tmp.rename(final)
            return
        if not self.overwrite and not is_sample_folder(final):
            raise SplatdiffError(
                f"{final} appeared meanwhile and was not written by splatdiff-sample; pass --overwrite to replace it."
            )
        old = new_partial_dir(self.output_dir, final.name)
        final.rename(old / "previous")
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def disk_full_is_one_line(folder: Path, what: str) -> Iterator[None]:
    """A full disk (or quota) while writing inside the block becomes one clear SplatdiffError naming the folder."""
    try:
        yield
    except OSError as e:
        if e.errno not in NO_SPACE:
            raise
        raise SplatdiffError(
            f"The disk of {folder} is full (writing {what}): free some space or pick another --output-dir; nothing "
            "half-written was kept."
        ) from None


def check_sample_outputs(output_dir: Path, names: List[str], overwrite: bool) -> None:
    """Stop before any work if an output would replace something this code did not write (or escape)."""
    if overwrite:
        return
    for name in names:
        if not is_inside(output_dir / name, output_dir):
            raise SplatdiffError(f"{output_dir / name} leads outside --output-dir; rename the image.")
    taken = [n for n in names if (output_dir / n).exists() or (output_dir / n).is_symlink()]
    foreign = [n for n in taken if not is_sample_folder(output_dir / n)]
    if foreign:
        raise SplatdiffError(
            f"{output_dir} already holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
            "which splatdiff-sample did not write: pick another --output-dir, or pass --overwrite to "
            "replace them."
        )
    summary = output_dir / SUMMARY
    if (summary.exists() or summary.is_symlink()) and not is_sample_summary(summary):
        raise SplatdiffError(
            f"{summary} exists and is not a splatdiff-sample summary: pick another --output-dir, "
            "or pass --overwrite to replace it."
        )


def make_summary(
    command: str, settings: dict, config: Path, run: Any, kind: str, device: str, load_s: float, entries: List[dict]
) -> dict:
    """The top-level summary.json's content: the command, its settings, the run, the device and every image's entry."""
    return {
        "command": command,
        "date": datetime.now().isoformat(timespec="seconds"),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.items()},
        "run": {"config": str(config), "method": run.method_name, "kind": kind},
        "device": device_name(device),
        "load_seconds": load_s,
        "images": entries,
    }


def write_summary(output_dir: Path, summary: dict, overwrite: bool) -> Path:
    """The top-level summary.json (written whole or not at all)."""
    path = output_dir / SUMMARY
    with disk_full_is_one_line(output_dir, SUMMARY):
        if overwrite and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.is_symlink():
            path.unlink()
        atomic_write_text(path, json.dumps(summary, indent=2))
    return path


def unique_names(paths: List[Path]) -> List[str]:
    """Output folder names: safe versions of the image stems (`safety.safe_name`), made unique (photo.png and
    photo.jpg -> photo, photo_jpg; '..png' -> image)."""
    names: List[str] = []
    seen = {SUMMARY.lower()}
    for p in paths:
        stem = safe_name(p.stem)
        name, i = stem, 1
        if name.lower() in seen:
            name = f"{stem}_{safe_name(p.suffix.lstrip('.'), 'x')}"
        while name.lower() in seen:  # case-insensitive: the same on every file system
            name, i = f"{stem}_{i}", i + 1
        seen.add(name.lower())
        names.append(name)
    return names


def is_sample_folder(folder: Path) -> bool:
    """Whether `folder` is a splatdiff-sample output: a real folder holding exactly summary.json and the files it
    lists (so a folder with anything else in it is never replaced without --overwrite)."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    try:
        entry = json.loads((folder / SUMMARY).read_text())
        listed = set(entry["files"]) | {SUMMARY}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return all(p.name in listed and p.is_file() and not p.is_symlink() for p in folder.iterdir())


def is_sample_summary(path: Path) -> bool:
    """Whether `path` is a top-level summary.json splatdiff-sample (or splatdiff-demo) wrote."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("command") in SUMMARY_COMMANDS
    except (OSError, ValueError, AttributeError):
        return False


def cuda_available() -> bool:
    """torch.cuda.is_available(), importing torch only when asked."""
    import torch

    return torch.cuda.is_available()


def device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
