"""splatdiff-sample: one photo in, complete 3D Gaussian splats out.

For each input image it writes, under <output-dir>/<image name>/:
  sample_XX.ply       a standard 3DGS .ply per sample (input camera frame, OpenCV: x right, y down, z forward)
  turntable_XX.gif    (or .mp4) the sample orbiting about the object, starting from the input view
  contact_sheet.png   one row per sample: input | rendered from the input view | side | back | other side
  summary.json        settings, timings, device and the files written
A splatdiff-diffusion run gives N different completions; a splatdiff-var run gives its single deterministic
reconstruction. Every input is checked before anything is written, and each image's folder appears only once
complete.
"""

from __future__ import annotations

import json
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, List, Literal, Optional

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nerfstudio_splatdiff.data.photo import Photo, list_images, load_photo
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.scripts.cli import run_command
from nerfstudio_splatdiff.models.sampling import check_sampling_args
from nerfstudio_splatdiff.runs import load_inference_model, load_run_config
from nerfstudio_splatdiff.splats import Gaussians
from nerfstudio_splatdiff.splats.images import contact_sheet, save_png, to_uint8
from nerfstudio_splatdiff.splats.orbit import turntable_c2w
from nerfstudio_splatdiff.splats.ply import save_ply

CONSOLE = Console()
SHEET_ANGLES = (0, 90, 180, 270)
"""Contact-sheet columns after the input: turntable azimuths in degrees (0 = the input view)."""


def run_kind(config_path: Path) -> str:
    """'diffusion' or 'var' for a run splatdiff-sample can use; one clear error for anything else."""
    if not Path(config_path).is_file():
        raise SplatdiffError(f"No config.yml at {config_path}: pass --load-config <run folder>/config.yml of a "
                             "splatdiff-diffusion or splatdiff-var run.")  # fmt: skip
    run = load_run_config(Path(config_path))
    model = getattr(getattr(run, "pipeline", None), "model", None)
    if hasattr(model, "var_checkpoint"):
        return "diffusion"
    if getattr(getattr(model, "network", None), "latent_channels", None) is not None:
        return "var"
    name = getattr(run, "method_name", type(run).__name__)
    raise SplatdiffError(f"{config_path} is a {name!r} run; splatdiff-sample takes a splatdiff-diffusion or "
                         "splatdiff-var run.")  # fmt: skip


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


@dataclass
class Sample:
    """Sample complete 3D Gaussian splats from single images with a trained splatdiff run."""

    load_config: Path
    """config.yml of a splatdiff-diffusion run (N samples) or a splatdiff-var run (one reconstruction)."""
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
    """Pixel size of the turntable and contact-sheet renders."""
    turntable_frames: int = 36
    video_format: Literal["gif", "mp4"] = "gif"
    """mp4 needs the imageio-ffmpeg package; gif needs nothing extra."""
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def check(self) -> None:
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise SplatdiffError(f"--num-samples must be at least 1, got {self.num_samples}.")
        check_sampling_args(self.num_samples, self.guidance_weight or 0.0, 1.0 if self.skip_weight is None else self.skip_weight, 1)
        if self.turntable_frames < 1 or self.render_size < 16:
            raise SplatdiffError("--turntable-frames must be >= 1 and --render-size >= 16.")
        if self.video_format == "mp4":
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError:
                raise SplatdiffError("--video-format mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg); or use gif.") from None
        if self.device == "cuda" and not torch.cuda.is_available():
            raise SplatdiffError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu or auto.")

    def masks_for(self, images: List[Path]) -> List[Optional[Path]]:
        if self.mask is None:
            return [None] * len(images)
        if not self.mask.exists():
            raise SplatdiffError(f"No mask at {self.mask}: pass a mask image (or a folder of masks named like the images).")
        if self.mask.is_file():
            if len(images) != 1:
                raise SplatdiffError("--mask is one file but --image is a folder: pass a folder of masks named like the images.")
            return [self.mask]
        found = []
        for img in images:
            matches = sorted(p for p in self.mask.glob(img.stem + ".*") if p.is_file())
            if not matches:
                raise SplatdiffError(f"No mask for {img.name} in {self.mask} (expected {img.stem}.png or similar).")
            found.append(matches[0])
        return found

    def main(self) -> None:
        self.check()
        kind = run_kind(self.load_config)
        images = list_images(self.image)
        masks = self.masks_for(images)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        t0 = time.perf_counter()
        with CONSOLE.status(f"loading the {kind} run"):
            model, run = load_inference_model(self.load_config, device)
        load_s = time.perf_counter() - t0
        size = model.config.image_size
        # Masked pixels take the background the run trained with (object-only data) or, else, the render background.
        bg = tuple(float(c) for c in (run.pipeline.datamanager.background_color or model.config.background_color))
        photos = [load_photo(p, size, m, self.fov_deg, self.focal, bg) for p, m in zip(images, masks)]  # all checked first
        names = _unique_names(images)
        n = self.num_samples if kind == "diffusion" else 1
        if kind == "var" and self.num_samples > 1:
            CONSOLE.print("[yellow]A splatdiff-var run is deterministic: writing its single reconstruction.[/]")
        depth, near, far = object_depth_and_range(run)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        entries = []
        columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=CONSOLE) as progress:
            task_images = progress.add_task("images", total=len(photos))
            for photo, name in zip(photos, names):
                entries.append(self.process(model, kind, photo, name, n, depth, near, far, progress))
                progress.advance(task_images)
        summary = {
            "command": "splatdiff-sample", "date": datetime.now().isoformat(timespec="seconds"),
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()},
            "run": {"config": str(self.load_config), "method": run.method_name, "kind": kind},
            "device": _device_name(device), "load_seconds": load_s, "images": entries,
        }  # fmt: skip
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        CONSOLE.print(f"[bold green]Done:[/] {len(entries)} image(s), {n} sample(s) each, in {self.output_dir}/")
        for e in entries:
            CONSOLE.print(f"  {e['folder']}/contact_sheet.png  ({e['sampling_seconds']:.2f} s for {n} sample(s))")

    @torch.no_grad()
    def process(self, model, kind: str, photo: Photo, name: str, n: int, depth: float, near: float, far: float,
                progress: Progress) -> dict:  # fmt: skip
        dev = model.device
        batch = {"images": photo.image[None, None].to(dev), "c2w": torch.eye(4, device=dev)[None, None],
                 "K": photo.K[None, None].to(dev), "depth_near": torch.tensor([near], device=dev),
                 "depth_far": torch.tensor([far], device=dev)}  # fmt: skip
        t0 = time.perf_counter()
        gaussians = generate(model, kind, batch, n, self.guidance_weight, self.skip_weight, self.seed)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        sampling_s = time.perf_counter() - t0
        final = self.output_dir / name
        tmp = self.output_dir / f".{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            files = self.write_outputs(model, gaussians, photo, depth, tmp, progress)
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        entry = {"image": str(photo.path), "folder": str(final), "original_size": list(photo.original_size),
                 "focal_px": float(photo.K[0, 0]), "image_size": int(photo.image.shape[0]), "has_mask": photo.mask is not None,
                 "num_samples": n, "num_gaussians": int(gaussians.means.shape[1]), "sampling_seconds": sampling_s,
                 "object_depth": depth, "depth_near": near, "depth_far": far, "files": files}  # fmt: skip
        (final / "summary.json").write_text(json.dumps(entry, indent=2))
        return entry

    def write_outputs(self, model, gaussians: Gaussians, photo: Photo, depth: float, folder: Path, progress: Progress) -> List[str]:
        n, S, size = gaussians.batch_size, self.render_size, photo.image.shape[0]
        dev = model.device
        c2w = turntable_c2w(depth, self.turntable_frames).to(dev)
        K = photo.K.clone()
        K[:2] *= S / size
        K = K.to(dev).expand(len(c2w), 3, 3)
        sheet_c2w = turntable_c2w(depth, 360).to(dev)[list(SHEET_ANGLES)]
        inp = torch.from_numpy(np.array(Image.fromarray(to_uint8(photo.image)).resize((S, S), Image.LANCZOS))).float() / 255
        rows, files = [], []
        task = progress.add_task(f"{folder.name.lstrip('.').removesuffix('.partial')}: writing", total=n)
        for i in range(n):
            g = gaussians.scene(i)
            files.append(save_ply(folder / f"sample_{i:02d}.ply", g).name)
            frames = [model.render_views(g, c2w[j : j + 12][None], K[j : j + 12][None], S)["rgb"][0] for j in range(0, len(c2w), 12)]
            frames = torch.cat(frames)
            files.append(_write_video(folder / f"turntable_{i:02d}.{self.video_format}", frames).name)
            views = model.render_views(g, sheet_c2w[None], K[: len(sheet_c2w)][None], S)["rgb"][0]
            rows.append([inp] + list(views))
            progress.advance(task)
        files.append(save_png(folder / "contact_sheet.png", contact_sheet(rows)).name)
        progress.remove_task(task)
        return files


@torch.no_grad()
def generate(model, kind: str, batch: dict, num_samples: int, guidance_weight: Optional[float] = None,
             skip_weight: Optional[float] = None, seed: int = 0) -> Gaussians:  # fmt: skip
    """Gaussians [N] for the source view of a batch of one scene: N diffusion samples, or the VAR's reconstruction."""
    if kind == "diffusion":
        return model.sample(batch, num_samples, guidance_weight, skip_weight, seed)
    k = model.config.eval_skip_weight if skip_weight is None else skip_weight
    return model.reconstruct(batch, net=model.eval_net(), skip_weight=k, sample_latent=False)["gaussians"]


def _unique_names(paths: List[Path]) -> List[str]:
    """Output folder names: the image stems, made unique (photo.png and photo.jpg -> photo, photo_jpg)."""
    names, seen = [], set()
    for p in paths:
        name = p.stem if p.stem not in seen else f"{p.stem}_{p.suffix.lstrip('.')}"
        seen.add(name)
        names.append(name)
    return names


def _write_video(path: Path, frames: torch.Tensor, fps: int = 12) -> Path:
    imgs = [to_uint8(f) for f in frames]
    if path.suffix == ".mp4":
        import imageio.v2 as imageio

        imageio.mimwrite(path, imgs, fps=fps, codec="libx264", macro_block_size=1)
    else:
        pil = [Image.fromarray(im) for im in imgs]
        pil[0].save(path, save_all=True, append_images=pil[1:], duration=int(1000 / fps), loop=0)
    return path


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def entrypoint() -> None:
    run_command(Sample)


if __name__ == "__main__":
    entrypoint()
