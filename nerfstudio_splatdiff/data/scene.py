"""A preprocessed multi-view scene: cameras in memory, pixels in a per-scene cache folder read on demand.

Every parser (CO3D, RealEstate10K) produces `SceneRecord`s; the datasets only ever see these. Images are
square, at the processed resolution; cameras are OpenCV camera-to-world with pixel intrinsics, in a per-scene
normalised world (object datasets: the object centre at the origin and a fixed mean camera distance).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

IMAGES, MASKS, DEPTHS, CAMERAS = "images.npy", "masks.npy", "depths.npy", "cameras.npz"


@dataclass
class SceneRecord:
    """One sequence. `c2w` [F, 4, 4] OpenCV camera-to-world, `K` [F, 3, 3] pixel intrinsics at `resolution`."""

    name: str
    category: str
    folder: Path
    frame_numbers: list[int]
    c2w: Float[Tensor, "F 4 4"]
    K: Float[Tensor, "F 3 3"]
    resolution: int
    has_masks: bool = False
    has_depths: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.frame_numbers)

    def load(self, frames: list[int], with_depths: bool = False) -> dict[str, Tensor]:
        """Pixels of the given frame indices: images uint8 [V,H,W,3], masks uint8 [V,H,W] and depths float32
        [V,H,W] when present. Memory-mapped, so only the requested frames are read."""
        idx = np.asarray(frames, dtype=np.int64)
        out = {"images": torch.from_numpy(np.ascontiguousarray(np.load(self.folder / IMAGES, mmap_mode="r")[idx]))}
        if self.has_masks:
            out["masks"] = torch.from_numpy(np.ascontiguousarray(np.load(self.folder / MASKS, mmap_mode="r")[idx]))
        if with_depths and self.has_depths:
            d = np.load(self.folder / DEPTHS, mmap_mode="r")[idx]
            out["depths"] = torch.from_numpy(d.astype(np.float32))
        return out

    # -- cache -------------------------------------------------------------------------------------------------
    def save(self, images: np.ndarray, masks: Optional[np.ndarray], depths: Optional[np.ndarray]) -> None:
        """Write this scene's pixels and cameras into `folder` (used once by the parsers' preprocessing)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        np.save(self.folder / IMAGES, images.astype(np.uint8))
        if masks is not None:
            np.save(self.folder / MASKS, masks.astype(np.uint8))
        if depths is not None:
            np.save(self.folder / DEPTHS, depths.astype(np.float16))
        self.has_masks, self.has_depths = masks is not None, depths is not None
        np.savez(self.folder / CAMERAS, c2w=self.c2w.numpy(), K=self.K.numpy())
        (self.folder / "scene.json").write_text(json.dumps(self.to_json()))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "category": self.category, "frame_numbers": self.frame_numbers,
            "resolution": self.resolution, "has_masks": self.has_masks, "has_depths": self.has_depths,
            "meta": self.meta,
        }

    @staticmethod
    def from_folder(folder: Path) -> "SceneRecord":
        info = json.loads((folder / "scene.json").read_text())
        cams = np.load(folder / CAMERAS)
        return SceneRecord(
            name=info["name"], category=info["category"], folder=folder, frame_numbers=info["frame_numbers"],
            c2w=torch.from_numpy(cams["c2w"]), K=torch.from_numpy(cams["K"]), resolution=info["resolution"],
            has_masks=info["has_masks"], has_depths=info["has_depths"], meta=info["meta"],
        )
