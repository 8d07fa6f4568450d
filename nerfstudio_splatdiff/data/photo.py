"""An ordinary photo as a model input: any size and format PIL reads, cropped and resized as in training, with a
pinhole camera for its unknown intrinsics.

Camera convention (what `splatdiff-sample` assumes and writes): the input camera sits at the origin of an OpenCV
frame (x right, y down, z forward); the principal point is the image centre; the crop is the largest centred
square (as Splatter Image crops CO3D), so the field of view is measured across the shorter side. Without
`fov_deg` or `focal` the field of view is `DEFAULT_FOV_DEG`, about that of a phone's main camera across the
shorter side and within the range of the training data.

16-bit images (and masks) are scaled to 8 bits (`to_8bit`); an alpha channel or mask that leaves no pixel of the
object (all transparent) is refused with one message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from nerfstudio_splatdiff.errors import SplatdiffError

DEFAULT_FOV_DEG = 50.0
MIN_SIDE = 16
"""Smallest accepted image side in pixels: below it there is nothing to reconstruct."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MAX_FOCAL = 1e6
"""Largest accepted --focal in pixels."""
MIN_MASK_PIXELS = 1.0 / 255.0
"""An alpha channel or mask whose largest value (0..1) is at or below this shows no object at all."""


@dataclass
class Photo:
    """One preprocessed input: image [S, S, 3] in [0, 1], optional mask [S, S, 1], intrinsics K [3, 3]."""

    path: Path
    image: Float[Tensor, "S S 3"]
    mask: Optional[Float[Tensor, "S S 1"]]
    K: Float[Tensor, "3 3"]
    original_size: tuple[int, int]
    """(width, height) before cropping."""


def list_images(path: Path) -> List[Path]:
    """The image files at `path`: the file itself, or the image files of a folder (sorted)."""
    path = Path(path)
    if not path.exists():
        raise SplatdiffError(f"No image at {path}: pass --image a photo file or a folder of photos.")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise SplatdiffError(f"The folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)}): put photos there or pass one file.")
        return files
    return [path]


def check_camera_args(fov_deg: Optional[float], focal: Optional[float]) -> None:
    """One clear error for --fov-deg / --focal out of range (NaN and infinity included)."""
    if fov_deg is not None and focal is not None:
        raise SplatdiffError("Give either --fov-deg or --focal, not both.")
    if fov_deg is not None and not (math.isfinite(fov_deg) and 1.0 <= fov_deg <= 170.0):
        raise SplatdiffError(f"--fov-deg must be between 1 and 170 degrees, got {fov_deg}.")
    if focal is not None and not (math.isfinite(focal) and 0 < focal <= MAX_FOCAL):
        raise SplatdiffError(f"--focal must be a positive focal length in pixels (at most {MAX_FOCAL:.0e}), got {focal}.")


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer / float images as 8-bit 'L' (PIL's own conversion clips them to white): 16-bit
    values are scaled by 255/65535, floats in [0, 1] by 255. Other modes are returned unchanged."""
    if img.mode not in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return img
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        arr = arr * 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else arr
    elif img.mode.startswith("I;16") or np.nanmax(arr, initial=0.0) > 255:
        arr = arr * (255.0 / 65535.0)
    return Image.fromarray(np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8), mode="L")


def _open(path: Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except Image.DecompressionBombError as e:  # PIL's guard against images that would fill the memory
        raise SplatdiffError(
            f"{path} is too large to open safely ({e.args[0].split(',')[0]}): downscale it first (a few thousand "
            "pixels a side is plenty; the model sees 64 to 128)."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise SplatdiffError(f"Cannot read {path} as an image ({e.__class__.__name__}): pass a PNG, JPEG or another "
                             "format PIL reads.") from e
    return to_8bit(ImageOps.exif_transpose(img))  # phone photos store their rotation in EXIF


def _centre_square(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), Image.LANCZOS)


def load_photo(path: Path, size: int, mask_path: Optional[Path] = None, fov_deg: Optional[float] = None,
               focal: Optional[float] = None, background: tuple = (0.0, 0.0, 0.0)) -> Photo:
    """Read, crop the centred square, resize (Lanczos) to `size`. An alpha channel (or `mask_path`) becomes the mask
    and the image is composited over `background` with it. `focal` is in pixels of the original image."""
    check_camera_args(fov_deg, focal)
    img = _open(path)
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise SplatdiffError(f"{path} is {w}x{h} pixels; the shorter side must be at least {MIN_SIDE} pixels.")
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    alpha = img.convert("RGBA").getchannel("A") if has_alpha else None
    if mask_path is not None:
        m = _open(Path(mask_path))
        if m.size != (w, h):
            raise SplatdiffError(f"The mask {mask_path} is {m.size[0]}x{m.size[1]} but the image {path} is {w}x{h}; "
                                 "pass a mask of the same size.")
        alpha = m.convert("L")
    if alpha is not None and np.asarray(alpha).max(initial=0) <= 255 * MIN_MASK_PIXELS:
        source = f"the mask {mask_path}" if mask_path is not None else f"the alpha channel of {path}"
        raise SplatdiffError(f"{source} is fully transparent (no pixel shows the object): pass an image whose alpha "
                             "marks the object, or a mask with white object pixels.")
    rgb = np.array(_centre_square(img.convert("RGB"), size), dtype=np.float32) / 255.0
    image = torch.from_numpy(rgb)
    mask = None
    if alpha is not None:
        mask = torch.from_numpy(np.array(_centre_square(alpha, size), dtype=np.float32) / 255.0)[..., None]
        image = image * mask + torch.tensor(background, dtype=image.dtype) * (1 - mask)
    s = min(w, h)
    f_px = (focal * size / s) if focal is not None else 0.5 * size / math.tan(math.radians(fov_deg or DEFAULT_FOV_DEG) / 2)
    K = torch.tensor([[f_px, 0.0, size / 2], [0.0, f_px, size / 2], [0.0, 0.0, 1.0]])
    return Photo(path=Path(path), image=image.clamp(0, 1), mask=mask, K=K, original_size=(w, h))
