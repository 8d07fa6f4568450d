"""Splatter Image's preprocessing shared by the parsers: largest square centred on the principal point, resized,
focal rescaled; and the per-scene normalisation of object-centric captures."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image
from rich.console import Console
from torch import Tensor

from nerfstudio_splatdiff.data.scene import SceneRecord
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.safety import OWNER_FILE, new_partial_dir, remove_stale_partials
from nerfstudio_splatdiff.splats.cameras import nearest_point_to_axes

CONSOLE = Console(width=120)


def single_thread_worker() -> None:
    """Pool initializer for one worker process per core: no nested torch thread pools."""
    torch.set_num_threads(1)
CACHE_VERSION = 2  # 2: the key covers the files read; unsafe names and paths are skipped


def square_crop_box(K: Float[Tensor, "3 3"], width: int, height: int) -> tuple[float, float, float, float]:
    """The largest square centred on the principal point, as a float PIL box (x0, y0, x1, y1)."""
    cx, cy = float(K[0, 2]), float(K[1, 2])
    half = min(cx, width - cx, cy, height - cy)
    return (cx - half, cy - half, cx + half, cy + half)


def crop_resize(
    image: Image.Image, K: Float[Tensor, "3 3"], resolution: int, resample: int = Image.LANCZOS
) -> tuple[Image.Image, Float[Tensor, "3 3"]]:
    """Crop the square centred on the principal point, resize to `resolution`, and rescale the intrinsics."""
    box = square_crop_box(K, image.width, image.height)
    side = box[2] - box[0]
    if side < 8:
        raise ValueError("the principal point is within 4 px of the image border, so no square crop fits")
    out = image.resize((resolution, resolution), resample=resample, box=box)
    s = resolution / side
    K_new = torch.tensor(
        [[float(K[0, 0]) * s, 0.0, resolution / 2.0], [0.0, float(K[1, 1]) * s, resolution / 2.0], [0.0, 0.0, 1.0]]
    )
    return out, K_new


def normalise_object_scene(
    c2w: Float[Tensor, "F 4 4"], camera_distance: float
) -> tuple[Float[Tensor, "F 4 4"], float, Float[Tensor, "3"]]:
    """Move the point the cameras look at (nearest to all optical axes) to the origin and scale the world so the
    mean camera distance to it is `camera_distance`. Returns (c2w, scale, original centre)."""
    centre = nearest_point_to_axes(c2w.double())
    dist = (c2w[:, :3, 3].double() - centre).norm(dim=-1).mean()
    if not torch.isfinite(dist) or dist <= 0:
        raise ValueError("the cameras do not surround a common point")
    scale = float(camera_distance / dist)
    out = c2w.clone().double()
    out[:, :3, 3] = (out[:, :3, 3] - centre) * scale
    return out.float(), scale, centre.float()


@dataclass
class SkipReport:
    """Frames and sequences the parser dropped, each with the reason; printed once, never silent."""

    items: list[tuple[str, Optional[int], str]] = field(default_factory=list)

    def add(self, sequence: str, frame: Optional[int], reason: str) -> None:
        self.items.append((sequence, frame, reason))

    def __len__(self) -> int:
        return len(self.items)

    def summary(self, limit: int = 8) -> str:
        lines = [f"skipped {len(self.items)} item(s):"]
        for seq, frame, reason in self.items[:limit]:
            lines.append(f"  {seq}" + (f" frame {frame}" if frame is not None else "") + f": {reason}")
        if len(self.items) > limit:
            lines.append(f"  ... and {len(self.items) - limit} more")
        return "\n".join(lines)

    def print(self) -> None:
        if self.items:
            CONSOLE.print(f"[yellow]{self.summary()}[/yellow]")

    def to_json(self) -> list:
        return [list(i) for i in self.items]

    @staticmethod
    def from_json(items: list) -> "SkipReport":
        return SkipReport([tuple(i) for i in items])  # type: ignore[misc]


def settings_key(settings: dict[str, Any]) -> str:
    """A short stable hash of everything that changes the preprocessed tensors (the cache key)."""
    blob = json.dumps({**settings, "cache_version": CACHE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def is_all_black(image: np.ndarray) -> bool:
    return int(image.max()) <= 2


def cached_scenes(cache: Path, build, what: str):
    """Load scenes from `cache` if complete; else run `build(tmp_folder, report) -> records`, then publish the
    folder atomically (so an interrupted run never leaves a half cache). Returns (records, report).
    The temporary folders of builds whose process is gone (killed) are removed first (only those marked as this
    tool's: see `safety.remove_stale_partials`)."""
    index = cache / "index.json"
    if index.is_file():
        info = json.loads(index.read_text())
        return [SceneRecord.from_folder(cache / n) for n in info["scenes"]], SkipReport.from_json(info["skipped"])
    cache.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(cache.parent)
    report = SkipReport()
    tmp = new_partial_dir(cache.parent, cache.name)  # a new one per build: two runs may build it at once
    try:
        records = build(tmp, report)
        report.print()
        if not records:
            raise SplatdiffError(f"No usable scene in {what} ({len(report)} problems, listed above).")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / OWNER_FILE).unlink(missing_ok=True)
    (tmp / "index.json").write_text(json.dumps({"scenes": [r.name for r in records], "skipped": report.to_json()}))
    if index.is_file():  # another process published the same cache meanwhile: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(cache, ignore_errors=True)
        try:
            tmp.rename(cache)
        except OSError:
            if not index.is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    for r in records:
        r.folder = cache / r.name
    return records, report
