"""CO3D v2 on-disk format: gzipped JSON annotations, set lists, and the float16-in-uint16 depth PNGs.

Layout under `<root>/<category>/`: `frame_annotations.jgz`, `sequence_annotations.jgz`,
`set_lists/set_lists_<subset>.json`, and per sequence `images/`, `masks/`, `depths/`, `depth_masks/`.
Paths inside the annotations are relative to `<root>` and start with the category.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image

from nerfstudio_splatdiff.errors import SplatdiffError

PathLike = Union[str, Path]


def write_jgz(path: PathLike, obj: Any) -> None:
    """Write a gzipped JSON file (CO3D's .jgz)."""
    with gzip.open(path, "wt", encoding="utf8") as f:
        json.dump(obj, f)


def read_jgz(path: PathLike) -> Any:
    """Read a gzipped JSON file, with one clear error if it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise SplatdiffError(f"{path} is missing: point --data at the CO3D root that holds <category>/{path.name}.")
    try:
        with gzip.open(path, "rt", encoding="utf8") as f:
            return json.load(f)
    except (OSError, EOFError, json.JSONDecodeError) as e:
        raise SplatdiffError(f"{path} is not a readable gzipped JSON file ({e}); re-download or re-extract it.") from e


def write_depth_png(path: PathLike, depth: np.ndarray, scale_adjustment: float = 1.0) -> None:
    """Store depth as CO3D does: float16 bits of depth / scale_adjustment in a 16-bit PNG (0 = unknown)."""
    bits = (depth.astype(np.float32) / scale_adjustment).astype(np.float16).view(np.uint16)
    Image.fromarray(bits).save(path)


def read_depth_png(path: PathLike, scale_adjustment: float = 1.0) -> np.ndarray:
    """Read a CO3D depth PNG into float32 metres-ish units (0 where unknown; non-finite values become 0)."""
    raw = np.array(Image.open(path))
    if raw.dtype not in (np.uint16, np.int32) or raw.ndim != 2:
        raise SplatdiffError(f"{path} is not a 16-bit single-channel CO3D depth PNG (got {raw.dtype}, {raw.shape}).")
    depth = raw.astype(np.uint16).view(np.float16).astype(np.float32) * scale_adjustment
    depth[~np.isfinite(depth)] = 0.0
    return depth


def read_mask_png(path: PathLike) -> np.ndarray:
    """A CO3D soft foreground mask as float32 in [0, 1]."""
    m = np.array(Image.open(path))
    if m.ndim == 3:
        m = m[..., 0]
    scale = 65535.0 if m.dtype == np.uint16 else 255.0
    return m.astype(np.float32) / scale
