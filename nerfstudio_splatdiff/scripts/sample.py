"""splatdiff-sample: one photo in, complete 3D Gaussian splats out.

For each input image it writes, under <output-dir>/<image name>/:
  sample_XX.ply       a standard 3DGS .ply per sample (input camera frame, OpenCV: x right, y down, z forward)
  turntable_XX.gif    (or .mp4) the sample orbiting about the object, starting from the input view (none with
                      --no-turntable, the fast path)
  contact_sheet.png   one row per sample: input | rendered from the input view | side | back | other side
  summary.json        settings, timings, device and the files written
A splatdiff-diffusion run gives N different completions; a splatdiff-var or -regression run gives its single
deterministic reconstruction (every command asks the model: `SceneModel.generate`). Every input is checked before
anything is written, and each image's folder appears only once
complete.

Folder names are safe versions of the image names (`safety.safe_name`: no separators, no `.`/`..`, nothing hidden),
so everything is written inside --output-dir. An existing folder is replaced only when this command wrote it (it
holds exactly the files its summary.json lists); any other existing folder or summary.json stops the run before
any work unless --overwrite is given.
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, List, Literal, Optional, Tuple

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.run_kind import RunKind
from nerfstudio_splatdiff.safety import (
    atomic_write_text,
    check_output_dir,
    is_inside,
    new_partial_dir,
    remove_stale_partials,
    safe_name,
)
from nerfstudio_splatdiff.scripts.cli import run_command

# torch, numpy, PIL, nerfstudio, diffusers and the model code are imported where they are used, not here: `--help`
# and the errors a user can cause (bad flags, a missing image or config) then answer in a fraction of a second
# instead of after several seconds of imports.

CONSOLE = Console()
SHEET_ANGLES = (0, 90, 180, 270)
"""Contact-sheet columns after the input: turntable azimuths in degrees (0 = the input view), quarter turns, so with
a turntable of a multiple of 4 frames they are turntable frames and need no renders of their own."""
MAX_SAMPLES = 64
"""Most samples per image in one call (each is a full splat, turntable and contact-sheet row)."""
MAX_RENDER_SIZE = 2048
MAX_TURNTABLE_FRAMES = 720
MAX_SEED = 2**63 - 1
MAX_RENDER_PAIRS = 2_000_000
"""Most (Gaussian, camera) pairs in one render call: the numba renderer took about 230 bytes a pair (peak memory of
the defaults, 4 samples x 24 views x 8192 Gaussians = 0.8 M pairs in one call, was 1.41 GB against 1.23 GB with 12
views of one sample a call), so at most about 0.5 GB."""
MAX_RENDER_PIXELS = 8_000_000
"""Most output pixels (over all cameras) in one render call (the CPU renderers keep ~48 bytes a pixel)."""
GIF_FPS = 12
"""Turntable frame rate: the default 24 frames make a 2 s loop."""


def check_generation_flags(
    num_samples: int, guidance_weight: Optional[float], skip_weight: Optional[float], seed: int
) -> None:
    """The flags every generating command shares (--num-samples, --guidance-weight, --skip-weight, --seed): one clear
    error for a value out of range, before anything loads."""
    if not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_SAMPLES:
        raise SplatdiffError(
            f"--num-samples must be a whole number, at least 1 and at most {MAX_SAMPLES}, got {num_samples}."
        )
    for flag, value in (("--guidance-weight", guidance_weight), ("--skip-weight", skip_weight)):
        if value is not None and not math.isfinite(value):
            raise SplatdiffError(f"{flag} must be a finite number, got {value}.")
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SplatdiffError(f"--seed must be a whole number from 0 to 2**63-1, got {seed}.")
    if guidance_weight is not None or skip_weight is not None:  # the defaults are in range: no need to import
        from nerfstudio_splatdiff.models.sampling import check_sampling_args  # imports diffusers (seconds)

        check_sampling_args(num_samples, guidance_weight or 0.0, 1.0 if skip_weight is None else skip_weight, 1)


SUMMARY = "summary.json"


def load_run(config_path: Path, command: str = "splatdiff-sample", hint: str = "") -> Tuple[Any, RunKind]:
    """(loaded config.yml, run kind: 'diffusion', 'var' or 'regression', as its model config says); one clear
    error for a missing file or a run that is not a splatdiff run."""
    if not Path(config_path).is_file():
        raise SplatdiffError(
            f"No config.yml at {config_path}: pass --load-config <run folder>/config.yml of a "
            "splatdiff-diffusion, splatdiff-var or splatdiff-regression run."
        )
    from nerfstudio_splatdiff.lean_start import defer_nerfstudio_compile
    from nerfstudio_splatdiff.models.scene_model import splatdiff_model_config
    from nerfstudio_splatdiff.runs import load_run_config

    defer_nerfstudio_compile()  # before the config's classes import nerfstudio's trainer (and splatfacto)
    run = load_run_config(Path(config_path))
    return run, splatdiff_model_config(run, config_path, command, hint).run_kind


def run_kind(config_path: Path, command: str = "splatdiff-sample", hint: str = "") -> RunKind:
    """What the run at `config_path` is ('diffusion', 'var' or 'regression', as its model config says); one clear
    error for a missing file or a run that is not a splatdiff run."""
    return load_run(config_path, command, hint)[1]


def load_inference_model(config_path: Path, device: str) -> Tuple[Any, Any]:
    """`runs.load_inference_model`, imported when called (it needs nerfstudio and the model code)."""
    from nerfstudio_splatdiff.runs import load_inference_model as load

    return load(config_path, device)


def object_depth_and_range(run: Any) -> tuple[float, float, float]:
    """(object distance, splatter near, far) for a photo, from the conventions the run was trained with."""
    dm = run.pipeline.datamanager
    parser = dm.dataparser
    if hasattr(parser, "camera_distance"):  # object-centric (CO3D, procedural): object at the mean camera distance
        d = float(parser.camera_distance)
        near = max(d + dm.depth_range[0], 0.1 * d, 1e-2)
        return d, near, max(d + dm.depth_range[1], near + 1e-2)
    near, far = float(parser.depth_near), float(parser.depth_far)  # room scale: absolute range
    return 2.0 * near, near, far


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


@dataclass
class Sample:
    """Sample complete 3D Gaussian splats from single images with a trained splatdiff run."""

    load_config: Path
    """config.yml of a splatdiff-diffusion run (N samples) or a splatdiff-var / -regression run (one reconstruction)."""
    image: Path
    """An image file (PNG, JPEG, ...; any size; RGBA alpha is used as the mask) or a folder of them."""
    output_dir: Path = Path("outputs/samples")
    num_samples: int = 4
    guidance_weight: Optional[float] = None
    """Classifier-free guidance weight in [0, 10] (0 = none; higher = more diverse); default: the run's."""
    skip_weight: Optional[float] = None
    """Skip-connection weight in [0, 1] (1 = faithful to the input, 0 = the latent decides); default: the run's."""
    seed: int = 0
    mask: Optional[Path] = None
    """Object mask (white = object) for a single image, or a folder of masks named like the images."""
    fov_deg: Optional[float] = None
    """Field of view across the shorter image side; default 50 degrees (see data/photo.py)."""
    focal: Optional[float] = None
    """Focal length in pixels of the original image (instead of --fov-deg)."""
    render_size: int = 128
    """Pixel size of the turntable and contact-sheet renders (the small presets' inputs are 64 pixels)."""
    turntable: bool = True
    """Write a turntable per sample; --no-turntable writes only the .ply files and the contact sheet (the fast
    path: 4 renders per sample instead of --turntable-frames)."""
    turntable_frames: int = 24
    """Frames per turntable, 15 degrees apart: a 2 s loop. With a multiple of 4 the contact sheet's views are
    turntable frames and need no renders of their own."""
    video_format: Literal["gif", "mp4"] = "gif"
    """mp4 needs the imageio-ffmpeg package; gif needs nothing extra."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    overwrite: bool = False
    """Replace existing folders (and summary.json) in --output-dir that this command did not write."""

    def check(self) -> None:
        """Every option, before anything is loaded or written: one clear error for a value out of range."""
        check_generation_flags(self.num_samples, self.guidance_weight, self.skip_weight, self.seed)
        if not 1 <= self.turntable_frames <= MAX_TURNTABLE_FRAMES:
            raise SplatdiffError(
                f"--turntable-frames must be from 1 to {MAX_TURNTABLE_FRAMES}, got {self.turntable_frames}."
            )
        if not 16 <= self.render_size <= MAX_RENDER_SIZE:
            raise SplatdiffError(f"--render-size must be from 16 to {MAX_RENDER_SIZE} pixels, got {self.render_size}.")
        from nerfstudio_splatdiff.data.photo import check_camera_args

        check_camera_args(self.fov_deg, self.focal)
        check_output_dir(self.output_dir)
        if self.video_format == "mp4":
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError:
                raise SplatdiffError(
                    "--video-format mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg); or use gif."
                ) from None
        if self.device == "cuda" and not _cuda_available():
            raise SplatdiffError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto.")

    def masks_for(self, images: List[Path]) -> List[Optional[Path]]:
        """The mask file of each image (None for all without --mask); one clear error for a missing one."""
        from nerfstudio_splatdiff.data.photo import IMAGE_SUFFIXES

        if self.mask is None:
            return [None] * len(images)
        if not self.mask.exists():
            raise SplatdiffError(
                f"No mask at {self.mask}: pass a mask image (or a folder of masks named like the images)."
            )
        if self.mask.is_file():
            if len(images) != 1:
                raise SplatdiffError(
                    "--mask is one file but --image is a folder: pass a folder of masks named like the images."
                )
            return [self.mask]
        found = []
        candidates = [p for p in self.mask.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        for img in images:  # exact stems, no glob: '[x].png' pairs with '[x].png' only
            matches = sorted(p for p in candidates if p.stem == img.stem)
            if not matches:
                raise SplatdiffError(f"No mask for {img.name} in {self.mask} (expected {img.stem}.png or similar).")
            found.append(matches[0])
        return found

    def check_outputs(self, names: List[str]) -> None:
        """Stop before any work if an output would replace something this command did not write (or escape)."""
        if self.overwrite:
            return
        for name in names:
            if not is_inside(self.output_dir / name, self.output_dir):
                raise SplatdiffError(f"{self.output_dir / name} leads outside --output-dir; rename the image.")
        taken = [n for n in names if (self.output_dir / n).exists() or (self.output_dir / n).is_symlink()]
        foreign = [n for n in taken if not is_sample_folder(self.output_dir / n)]
        if foreign:
            raise SplatdiffError(
                f"{self.output_dir} already holds {', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''}, "
                "which splatdiff-sample did not write: pick another --output-dir, or pass --overwrite to "
                "replace them."
            )
        summary = self.output_dir / SUMMARY
        if (summary.exists() or summary.is_symlink()) and not is_sample_summary(summary):
            raise SplatdiffError(
                f"{summary} exists and is not a splatdiff-sample summary: pick another --output-dir, "
                "or pass --overwrite to replace it."
            )

    def main(self) -> None:
        self.check()
        from nerfstudio_splatdiff.data.photo import list_images, load_photo

        images = list_images(self.image)  # the cheap checks of the input paths come before the slow imports
        masks = self.masks_for(images)
        names = _unique_names(images)
        self.check_outputs(names)
        run, kind = load_run(self.load_config)
        size = int(run.pipeline.model.image_size)
        # Masked pixels take the background the run trained with (object-only data) or, else, the render background.
        bg = tuple(float(c) for c in (run.pipeline.datamanager.background_color or run.pipeline.model.background_color))
        photos = [
            load_photo(p, size, m, self.fov_deg, self.focal, bg) for p, m in zip(images, masks)
        ]  # all checked first
        device = ("cuda" if _cuda_available() else "cpu") if self.device == "auto" else self.device
        t0 = time.perf_counter()
        with CONSOLE.status(f"loading the {kind} run"):
            model, run = load_inference_model(self.load_config, device)
        load_s = time.perf_counter() - t0
        n = self.num_samples if model.config.is_generative else 1
        if n < self.num_samples:
            CONSOLE.print(f"[yellow]A splatdiff-{kind} run is deterministic: writing its single reconstruction.[/]")
        depth, near, far = object_depth_and_range(run)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.output_dir)
        entries = []
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=CONSOLE) as progress:
            task_images = progress.add_task("images", total=len(photos))
            for photo, name in zip(photos, names):
                entries.append(self.process(model, photo, name, n, depth, near, far, progress))
                progress.advance(task_images)
        summary = {
            "command": "splatdiff-sample",
            "date": datetime.now().isoformat(timespec="seconds"),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()},
            "run": {"config": str(self.load_config), "method": run.method_name, "kind": kind},
            "device": _device_name(device),
            "load_seconds": load_s,
            "images": entries,
        }
        summary_path = self.output_dir / SUMMARY
        if self.overwrite and summary_path.is_dir() and not summary_path.is_symlink():
            shutil.rmtree(summary_path)
        elif summary_path.is_symlink():
            summary_path.unlink()
        atomic_write_text(summary_path, json.dumps(summary, indent=2))
        CONSOLE.print(f"[bold green]Done:[/] {len(entries)} image(s), {n} sample(s) each, in {self.output_dir}/")
        for e in entries:
            CONSOLE.print(f"  {e['folder']}/contact_sheet.png  ({e['sampling_seconds']:.2f} s for {n} sample(s))")

    def process(
        self, model: Any, photo: Any, name: str, n: int, depth: float, near: float, far: float, progress: Progress
    ) -> dict:
        """Sample `n` splats for one `Photo` and publish its folder (written hidden, renamed into place when done)."""
        import torch

        dev = model.device
        batch = {
            "images": photo.image[None, None].to(dev),
            "c2w": torch.eye(4, device=dev)[None, None],
            "K": photo.K[None, None].to(dev),
            "depth_near": torch.tensor([near], device=dev),
            "depth_far": torch.tensor([far], device=dev),
        }
        t0 = time.perf_counter()
        with torch.no_grad():
            gaussians = model.generate(batch, n, self.guidance_weight, self.skip_weight, self.seed)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        sampling_s = time.perf_counter() - t0
        final = self.output_dir / name
        tmp = new_partial_dir(self.output_dir, name)  # a new hidden folder; never an existing one
        try:
            timings: dict = {}
            with torch.no_grad():
                files = self.write_outputs(model, gaussians, photo, depth, tmp, progress, name, timings)
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
                "object_depth": depth,
                "depth_near": near,
                "depth_far": far,
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
        was checked to be this command's output, or --overwrite was given)."""
        if not (final.exists() or final.is_symlink()):
            tmp.rename(final)
            return
        if not self.overwrite and not is_sample_folder(final):
            raise SplatdiffError(
                f"{final} appeared meanwhile and was not written by splatdiff-sample; pass --overwrite to replace it."
            )
        old = new_partial_dir(self.output_dir, final.name)
        (final).rename(old / "previous")
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def views(self, depth: float) -> Tuple[Any, List[int]]:
        """Every camera one sample is rendered from, c2w [V, 4, 4]: the turntable's frames (none with
        --no-turntable), then the contact-sheet views that are not among them; and the sheet views' indices."""
        import torch

        from nerfstudio_splatdiff.splats.orbit import turntable_c2w

        frames = self.turntable_frames if self.turntable else 0
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
        self,
        model: Any,
        gaussians: Any,
        photo: Any,
        depth: float,
        folder: Path,
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

        n, S, size = gaussians.batch_size, self.render_size, photo.image.shape[0]
        dev = model.device
        c2w, sheet_index = self.views(depth)
        c2w = c2w.to(dev)
        V, F = len(c2w), (self.turntable_frames if self.turntable else 0)
        K = photo.K.clone()
        K[:2] *= S / size
        K = K.to(dev).expand(V, 3, 3)
        inp = (
            torch.from_numpy(np.array(Image.fromarray(to_uint8(photo.image)).resize((S, S), Image.LANCZOS))).float()
            / 255
        )
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
                    names.append(_write_video(folder / f"turntable_{i:02d}.{self.video_format}", rgb[k, :F]).name)
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


def _group_blocks(blocks: List[Tuple[range, range]]) -> Iterator[Tuple[range, List[range]]]:
    """`render_blocks` grouped by scene range: (scenes, the view ranges that together cover all their views)."""
    group: List[range] = []
    for i, (scenes, views) in enumerate(blocks):
        group.append(views)
        if i + 1 == len(blocks) or blocks[i + 1][0] != scenes:
            yield scenes, group
            group = []


def _unique_names(paths: List[Path]) -> List[str]:
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
    """Whether `path` is a top-level summary.json this command wrote."""
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("command") == "splatdiff-sample"
    except (OSError, ValueError, AttributeError):
        return False


def _write_video(path: Path, frames: Any, fps: int = GIF_FPS) -> Path:
    """Frames [F, H, W, 3] in [0, 1] as a looping GIF (or an mp4). GIF frames are quantised with PIL's fast octree
    (256 colours, no dithering): about 8x less CPU than its default median cut, and smaller files."""
    import numpy as np
    from PIL import Image

    imgs = (frames.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    if path.suffix == ".mp4":
        import imageio.v2 as imageio

        imageio.mimwrite(path, list(imgs), fps=fps, codec="libx264", macro_block_size=1)
    else:
        pil = [
            Image.fromarray(im).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for im in imgs
        ]
        pil[0].save(path, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path


def _cuda_available() -> bool:
    """torch.cuda.is_available(), importing torch only when asked."""
    import torch

    return torch.cuda.is_available()


def _device_name(device: str) -> str:
    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def entrypoint() -> None:
    run_command(Sample)


if __name__ == "__main__":
    entrypoint()
