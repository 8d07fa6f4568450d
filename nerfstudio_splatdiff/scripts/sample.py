"""splatdiff-sample: one photo in, complete 3D Gaussian splats out.

For each input image it writes, under <output-dir>/<image name>/:
  sample_XX.ply       a standard 3DGS .ply per sample (input camera frame, OpenCV: x right, y down, z forward)
  turntable_XX.gif    (or .mp4) the sample orbiting about the object, starting from the input view (none with
                      --no-turntable, the fast path)
  contact_sheet.png   one row per sample: input | rendered from the input view | side | back | other side
  summary.json        settings, timings, device and the files written
A splatdiff-diffusion run gives N different completions; a splatdiff-var or -regression run gives its single
deterministic reconstruction (every command asks the model: `SceneModel.generate`). Every input is checked before
anything is written, and each image's folder appears only once complete. A photo far from what the run trained on
(e.g. a photo without a mask for a run trained on masked objects on white) gets one line, before the work, saying
what to expect and what to pass (`generation.photo_warning`).

The sampling and writing live in `sample_writer.py` (shared with splatdiff-demo), the flag checks in
`generation.py` (shared with splatdiff-export); this module is the command: its flags and their order of checks.

Folder names are safe versions of the image names (`safety.safe_name`: no separators, no `.`/`..`, nothing hidden),
so everything is written inside --output-dir. An existing folder is replaced only when this command wrote it (it
holds exactly the files its summary.json lists); any other existing folder or summary.json stops the run before
any work unless --overwrite is given.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, List, Literal, Optional, Tuple

from rich.console import Console

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.generation import (
    check_eta_for_run,
    check_generation_flags,
    check_render_flags,
    load_run,
    photo_background,
    photo_warnings,
    training_images,
)
from nerfstudio_splatdiff.safety import check_output_dir, remove_stale_partials
from nerfstudio_splatdiff.sample_writer import (
    Knobs,
    OutputOptions,
    PhotoSampler,
    check_sample_outputs,
    cuda_available,
    make_summary,
    unique_names,
    write_summary,
)
from nerfstudio_splatdiff.scripts.cli import run_command

# torch, numpy, PIL, nerfstudio, diffusers and the model code are imported where they are used, not here: `--help`
# and the errors a user can cause (bad flags, a missing image or config) then answer in a fraction of a second
# instead of after several seconds of imports.

CONSOLE = Console()
_unique_names = unique_names  # the name the safety tests know


def load_inference_model(config_path: Path, device: str) -> Tuple[Any, Any]:
    """`runs.load_inference_model`, imported when called (it needs nerfstudio and the model code)."""
    from nerfstudio_splatdiff.runs import load_inference_model as load

    return load(config_path, device)


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
    eta: Optional[float] = None
    """DDIM eta in [0, 1] (0 = the deterministic DDIM path, 1 = fresh noise at every step, as DDPM); default: the
    run's. Runs that sample with DPM-Solver++ take only 0."""
    seed: int = 0
    mask: Optional[Path] = None
    """Object mask (white = object) for a single image, or a folder of masks named like the images."""
    fov_deg: Optional[float] = None
    """Field of view across the shorter image side; default 50 degrees (see data/photo.py)."""
    focal: Optional[float] = None
    """Focal length in pixels of the original image (instead of --fov-deg)."""
    frame: int = 0
    """When --image is a capture folder (transforms.json, e.g. from ns-process-data): the frame used as the input, in
    file-name order, with the capture's own intrinsics and mask (data/nerfstudio_scenes.py)."""
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

    @property
    def knobs(self) -> Knobs:
        return Knobs(self.num_samples, self.guidance_weight, self.skip_weight, self.eta, self.seed)

    @property
    def options(self) -> OutputOptions:
        return OutputOptions(self.render_size, self.turntable, self.turntable_frames, self.video_format)

    def check(self) -> None:
        """Every option, before anything is loaded or written: one clear error for a value out of range."""
        check_generation_flags(self.num_samples, self.guidance_weight, self.skip_weight, self.seed, self.eta)
        check_render_flags(self.render_size, self.turntable, self.turntable_frames, self.video_format)
        from nerfstudio_splatdiff.data.photo import check_camera_args

        check_camera_args(self.fov_deg, self.focal)
        check_output_dir(self.output_dir)
        if self.device == "cuda" and not cuda_available():
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

    def main(self) -> None:
        self.check()
        from nerfstudio_splatdiff.data.nerfstudio_scenes import capture_input, capture_photo
        from nerfstudio_splatdiff.data.photo import list_images, load_photo

        frame_image = capture_input(self.image, self.frame, self.mask, self.fov_deg, self.focal)  # None: not a capture
        images = [frame_image] if frame_image else list_images(self.image)  # cheap checks before the slow imports
        masks = self.masks_for(images)
        names = unique_names(images)
        check_sample_outputs(self.output_dir, names, self.overwrite)
        run, kind = load_run(self.load_config)
        check_eta_for_run(run, kind, self.eta)
        size, bg = int(run.pipeline.model.image_size), photo_background(run)
        photos = (  # all read before any work
            [capture_photo(self.image, self.frame, size, bg)]
            if frame_image
            else [load_photo(p, size, m, self.fov_deg, self.focal, bg) for p, m in zip(images, masks)]
        )
        for photo, warning in photo_warnings(photos, training_images(run)):  # once per photo, before the work
            CONSOLE.print(f"[yellow]{photo.path.name}: far from the training data:[/] {warning}", soft_wrap=True)
        device = ("cuda" if cuda_available() else "cpu") if self.device == "auto" else self.device
        t0 = time.perf_counter()
        with CONSOLE.status(f"loading the {kind} run"):
            model, run = load_inference_model(self.load_config, device)
        load_s = time.perf_counter() - t0
        sampler = PhotoSampler(model, run, self.output_dir, self.knobs, self.options, self.overwrite)
        n = sampler.num_samples
        if n < self.num_samples:
            CONSOLE.print(f"[yellow]A splatdiff-{kind} run is deterministic: writing its single reconstruction.[/]")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.output_dir)
        entries = sampler.sample_all(photos, names)
        settings = asdict(self)
        summary = make_summary("splatdiff-sample", settings, self.load_config, run, kind, device, load_s, entries)
        write_summary(self.output_dir, summary, self.overwrite)
        CONSOLE.print(f"[bold green]Done:[/] {len(entries)} image(s), {n} sample(s) each, in {self.output_dir}/")
        for e in entries:
            CONSOLE.print(f"  {e['folder']}/contact_sheet.png  ({e['sampling_seconds']:.2f} s for {n} sample(s))")


def entrypoint() -> None:
    run_command(Sample)


if __name__ == "__main__":
    entrypoint()
