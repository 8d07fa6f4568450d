"""What the generating commands (splatdiff-sample, -demo, -export) check before any work: their shared flags, the
memory the renders will take, the run they load, and whether a photo is far from what that run trained on.

Nothing here imports torch, nerfstudio or diffusers at module level: `--help` and the errors a user can cause (bad
flags, a missing image or config) answer in a fraction of a second. The writing of each photo's outputs is in
`sample_writer.py`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Literal, Optional, Tuple

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.run_kind import RunKind

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
BYTES_PER_FRAME_PIXEL = 32
"""Host memory per rendered pixel held while a sample's views are rendered and written: the float32 renders (12 B)
and their concatenation (12 B), or, while the turntable is encoded, the renders, their clamped copy (12 B), the 8-bit
frames (3 B) and the quantised GIF frames (1 B): 28 B, rounded up. (2048 px x 720 frames: about 100 GB.) The rest
of the process is left out of the estimate, so that it never refuses what fits: peak RSS of splatdiff-sample was
1.70 GB at 256 px and 1.90 GB at 512 px (96 frames, 1 sample, the shipped run, 2026-12-03), mostly the libraries and
the sampling."""

ScenesKind = Literal["objects", "full", "rooms"]


def check_generation_flags(
    num_samples: int,
    guidance_weight: Optional[float],
    skip_weight: Optional[float],
    seed: int,
    eta: Optional[float] = None,
) -> None:
    """The flags every generating command shares (--num-samples, --guidance-weight, --skip-weight, --eta, --seed):
    one clear error for a value out of range, before anything loads."""
    if not isinstance(num_samples, int) or not 1 <= num_samples <= MAX_SAMPLES:
        raise SplatdiffError(
            f"--num-samples must be a whole number, at least 1 and at most {MAX_SAMPLES}, got {num_samples}."
        )
    for flag, value in (("--guidance-weight", guidance_weight), ("--skip-weight", skip_weight), ("--eta", eta)):
        if value is not None and not math.isfinite(value):
            raise SplatdiffError(f"{flag} must be a finite number, got {value}.")
    if not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SplatdiffError(f"--seed must be a whole number from 0 to 2**63-1, got {seed}.")
    if eta is not None and not 0.0 <= eta <= 1.0:
        raise SplatdiffError(f"--eta must be in [0, 1] (0 = deterministic DDIM, 1 = fresh noise each step), got {eta}.")
    if guidance_weight is not None or skip_weight is not None:  # the defaults are in range: no need to import
        from nerfstudio_splatdiff.models.sampling import check_sampling_args  # imports diffusers (seconds)

        check_sampling_args(num_samples, guidance_weight or 0.0, 1.0 if skip_weight is None else skip_weight, 1)


def check_eta_for_run(run: Any, kind: RunKind, eta: Optional[float]) -> None:
    """--eta > 0 needs a run that samples with DDIM (DPM-Solver++ has no eta); deterministic runs ignore it."""
    scheduler = getattr(run.pipeline.model, "scheduler", "ddim")
    if kind == "diffusion" and eta is not None and eta > 0 and scheduler != "ddim":
        raise SplatdiffError(f"--eta needs a run that samples with DDIM, and this one uses {scheduler}: pass --eta 0.")


def available_memory_bytes() -> float:
    """Memory this machine can still give (MemAvailable in /proc/meminfo; elsewhere the physical memory)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def render_memory_bytes(render_size: int, frames: int) -> float:
    """Estimated peak memory of the renders of samples with turntables of `frames` frames (0: none) of `render_size`
    pixels: they are grouped into at most MAX_RENDER_PIXELS pixels, but one sample's views (its turntable and the
    contact sheet's) are always held together."""
    views = frames + 4
    return float(BYTES_PER_FRAME_PIXEL * max(render_size**2 * views, MAX_RENDER_PIXELS))


def check_render_flags(render_size: int, turntable: bool, turntable_frames: int, video_format: str) -> None:
    """--render-size, --turntable-frames and --video-format: ranges, and a memory estimate that refuses sizes x
    frames this machine cannot hold, before anything loads."""
    if not 1 <= turntable_frames <= MAX_TURNTABLE_FRAMES:
        raise SplatdiffError(f"--turntable-frames must be from 1 to {MAX_TURNTABLE_FRAMES}, got {turntable_frames}.")
    if not 16 <= render_size <= MAX_RENDER_SIZE:
        raise SplatdiffError(f"--render-size must be from 16 to {MAX_RENDER_SIZE} pixels, got {render_size}.")
    frames = turntable_frames if turntable else 0
    need, have = render_memory_bytes(render_size, frames), available_memory_bytes()
    if need > have:
        fit = int(have / (BYTES_PER_FRAME_PIXEL * render_size**2)) - 4
        option = f"--turntable-frames {fit} at this size" if fit >= 4 else "a smaller --render-size"
        raise SplatdiffError(
            f"--render-size {render_size} with {frames} turntable frames needs about {need / 1e9:.0f} GB of memory "
            f"for its renders and this machine has {have / 1e9:.1f} GB free: pass {option}, a smaller --render-size, "
            "or --no-turntable."
        )
    if video_format == "mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise SplatdiffError(
                "--video-format mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg); or use gif."
            ) from None


# -- the run ----------------------------------------------------------------------------------------------------------
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
    from nerfstudio_splatdiff.runs import load_inference_config

    defer_nerfstudio_compile()  # before a pipeline's classes import nerfstudio's trainer (and splatfacto)
    run = load_inference_config(Path(config_path))  # the model config and plain values: no trainer, no torchvision
    return run, splatdiff_model_config(run, config_path, command, hint).run_kind


def run_kind(config_path: Path, command: str = "splatdiff-sample", hint: str = "") -> RunKind:
    """What the run at `config_path` is ('diffusion', 'var' or 'regression', as its model config says); one clear
    error for a missing file or a run that is not a splatdiff run."""
    return load_run(config_path, command, hint)[1]


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


def photo_background(run: Any) -> Tuple[float, float, float]:
    """The colour masked pixels of a photo take: the background the run trained with (object-only data) or, else,
    the render background."""
    bg = run.pipeline.datamanager.background_color or run.pipeline.model.background_color
    return (float(bg[0]), float(bg[1]), float(bg[2]))


# -- is a photo far from what the run trained on? ---------------------------------------------------------------------
BACKGROUND_TOLERANCE = 0.12
"""Largest per-channel difference (0..1) of a pixel from the background colour that still counts as background
(JPEG ringing and a shadow's edge stay below it; a floor or a wall does not)."""
MIN_BORDER_BACKGROUND = 0.6
"""Masked-object runs trained on objects with background all around them: an unmasked photo whose outer border
is background in fewer than this share of its pixels has its surroundings in the picture."""
MAX_OBJECT_COVERAGE = 0.9
"""Masked-object runs: an object that covers more than this share of the square input leaves no background around
it, unlike every training view."""
MIN_CONTRAST = 0.02
"""Standard deviation (0..1) of the grey levels below which an image is a flat colour: nothing to reconstruct."""


@dataclass(frozen=True)
class TrainingImages:
    """What a run's training inputs looked like, as its config.yml records it (the datamanager's background and
    scene kind, the dataparser): the photo check asks the run, not a guess."""

    scenes: ScenesKind
    """"objects" (masked objects on `background`), "full" (object photos with their surroundings) or "rooms"."""
    dataset: str
    """In words, for the message: e.g. "procedural objects (the proving ground)" or "CO3D teddybear"."""
    background: Optional[Tuple[float, float, float]]
    """The colour every pixel outside the object had in training (None: full images)."""


def config_class_name(config: Any) -> str:
    """The class name of a config object, also of one the safe loader left unimported (`safe_yaml.UnloadedConfig`,
    as `runs.load_inference_model` reads a run)."""
    return str(getattr(config, "__config_class__", type(config).__name__)).rsplit(".", 1)[-1]


def training_images(run: Any) -> TrainingImages:
    """What the run at `run` (a loaded config.yml) trained on."""
    dm = run.pipeline.datamanager
    parser = dm.dataparser
    if not hasattr(parser, "camera_distance"):
        return TrainingImages("rooms", "RealEstate10K rooms", None)
    kind = getattr(dm, "scene_kind", None)
    if kind == "object":
        dataset = "procedural objects (the proving ground)"
    elif kind:
        dataset = f"procedural {kind} scenes"
    elif config_class_name(parser).startswith("Co3d"):
        dataset = f"CO3D {getattr(parser, 'category', None) or 'objects'}"
    else:
        dataset = "object captures"
    bg = dm.background_color
    if bg is None:
        return TrainingImages("full", dataset, None)
    return TrainingImages("objects", dataset, (float(bg[0]), float(bg[1]), float(bg[2])))


def photo_warning(image: Any, has_mask: bool, trained: TrainingImages) -> Optional[str]:
    """Why a preprocessed photo (image [S, S, 3] in [0, 1] as the model sees it, masked pixels already on the
    background) is far from the run's training inputs and what to pass instead, or None when it is not."""
    import torch

    grey = image.float().mean(-1)
    if float(grey.std()) < MIN_CONTRAST:
        return "it is almost a flat colour, unlike any training image: expect a flat or empty splat; pass a photo."
    if trained.scenes != "objects" or trained.background is None:
        return None
    off = (image.float() - torch.tensor(trained.background)).abs().amax(-1) > BACKGROUND_TOLERANCE  # [S, S]
    bg = "white" if trained.background == (1.0, 1.0, 1.0) else f"the colour {trained.background}"
    ring = max(2, image.shape[0] // 16)
    border = torch.cat([off[:ring].flatten(), off[-ring:].flatten(), off[:, :ring].flatten(), off[:, -ring:].flatten()])
    border_bg = 1.0 - float(border.float().mean())
    if not has_mask and border_bg < MIN_BORDER_BACKGROUND:
        return (
            f"this run trained on {trained.dataset}, cut out onto {bg}, and the photo has no mask while only "
            f"{border_bg:.0%} of its border is {bg}: expect the surroundings to turn into blobs and a poor input view. "
            "Pass --mask <mask.png> (white = object), an RGBA image with a transparent background, or a run trained "
            "on unmasked photos."
        )
    coverage = float(off.float().mean())
    if coverage > MAX_OBJECT_COVERAGE:
        return (
            f"the object fills {coverage:.0%} of the square input, while this run trained on {trained.dataset} with "
            f"{bg} around them: expect a cut-off reconstruction; pass a photo (and mask) with margin around the object."
        )
    return None


def photo_warnings(photos: List[Any], trained: TrainingImages) -> List[Tuple[Any, str]]:
    """(photo, warning) for every `data.photo.Photo` far from the training inputs (see `photo_warning`)."""
    found = [(p, photo_warning(p.image, p.mask is not None, trained)) for p in photos]
    return [(p, w) for p, w in found if w is not None]
