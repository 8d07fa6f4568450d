"""Small image helpers: tensors to PNG and contact sheets (grids of views)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
from jaxtyping import Float
from PIL import Image
from torch import Tensor


def to_uint8(img: Float[Tensor, "H W 3"]) -> np.ndarray:
    return (img.detach().float().clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def contact_sheet(rows: Sequence[Sequence[Float[Tensor, "H W 3"]]], pad: int = 2) -> np.ndarray:
    """A grid image: rows x columns of equally sized RGB views with a white gap between them."""
    h, w = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    sheet = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            sheet[y : y + h, x : x + w] = to_uint8(img)
    return sheet


def save_png(path: Union[str, Path], image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
