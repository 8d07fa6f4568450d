"""Writing one procedural scene in the CO3D v2 on-disk layout: every view ray cast (scenes.py) and saved as image,
mask, depth and depth mask, with its frame and sequence annotations; the deterministic train/val/test split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from nerfstudio_splatdiff.splats.cameras import opencv_w2c_to_pytorch3d, pixel_to_ndc_isotropic
from nerfstudio_splatdiff.data.co3d_format import write_depth_png
from nerfstudio_splatdiff.data.procedural.scenes import sample_scene

GENERATOR = "splatdiff-procedural"
SUBSETS = ("fewview_dev", "fewview_test")
ANNOTATION_FILES = ("frame_annotations.jgz", "sequence_annotations.jgz")
FPS = 10.0  # frame_timestamp = frame index / FPS, as if the orbit were a 10 fps video


# ---------------------------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class SceneTask:
    """Everything a worker needs to make and write one sequence (picklable for spawn)."""

    root: str
    category: str
    seed: int
    index: int
    views: int
    resolution: int
    num_modes: int
    kind: str = "full"
    force_mode: Optional[int] = None
    mode_kind: str = "colour"
    mode_in_name: bool = False
    """Name the sequence after its scene AND its forced mode (a dataset holding every mode of each scene)."""

    @property
    def sequence(self) -> str:
        return sequence_name(self.index, self.force_mode if self.mode_in_name else None)


def sequence_name(index: int, mode: Optional[int] = None) -> str:
    """`proc_<index>`, or `proc_<index>_m<mode>` for one of a scene's copies in a dataset with every mode of it."""
    return f"proc_{index:06d}" if mode is None else f"proc_{index:06d}_m{mode}"


def scene_index(sequence: str) -> int:
    """The scene index a sequence name carries (`sequence_name`'s inverse, whether or not a mode follows)."""
    return int(sequence.split("_")[1])


def _frame_paths(category: str, seq: str, frame_number: int) -> dict[str, str]:
    """Dataset-root-relative paths of one frame's files (they begin with the category, as in CO3D)."""
    name = f"frame{frame_number:06d}"
    base = f"{category}/{seq}"
    return {
        "image": f"{base}/images/{name}.jpg",
        "mask": f"{base}/masks/{name}.png",
        "depth": f"{base}/depths/{name}.jpg.geometric.png",
        "depth_mask": f"{base}/depth_masks/{name}.png",
    }


def write_scene(task: SceneTask) -> tuple[str, list[dict], dict]:
    """Render every view of one scene and write its images, masks and depths; return its annotations."""
    sc = sample_scene(
        task.seed, task.index, task.views, task.resolution, task.num_modes, task.force_mode, task.kind, task.mode_kind
    )
    root, seq, H = Path(task.root), task.sequence, task.resolution
    for sub in ("images", "masks", "depths", "depth_masks"):
        (root / task.category / seq / sub).mkdir(parents=True, exist_ok=True)
    R, T = opencv_w2c_to_pytorch3d(torch.from_numpy(sc.w2c))
    focal, pp = pixel_to_ndc_isotropic(torch.from_numpy(sc.K), H, H)
    frames = []
    for i in range(task.views):
        out = sc.render_view(i)
        paths = _frame_paths(task.category, seq, i + 1)
        mask = out.object_mask
        Image.fromarray((out.rgb * 255 + 0.5).astype(np.uint8)).save(root / paths["image"], quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / paths["mask"])
        write_depth_png(root / paths["depth"], out.depth.astype(np.float32))
        Image.fromarray(out.depth_mask.astype(np.uint8) * 255).save(root / paths["depth_mask"])
        frames.append({
            "sequence_name": seq,
            "frame_number": i + 1,
            "frame_timestamp": i / FPS,
            "image": {"path": paths["image"], "size": [H, H]},
            "depth": {"path": paths["depth"], "scale_adjustment": 1.0, "mask_path": paths["depth_mask"]},
            "mask": {"path": paths["mask"], "mass": int(mask.sum())},
            "viewpoint": {
                "R": R[i].tolist(),
                "T": T[i].tolist(),
                "focal_length": focal.tolist(),
                "principal_point": pp.tolist(),
                "intrinsics_format": "ndc_isotropic",
            },
            "meta": {},
        })
    seq_anno = {
        "sequence_name": seq,
        "category": task.category,
        "video": {"path": None, "length": task.views},
        "point_cloud": None,
        "viewpoint_quality_score": 1.0,
        "meta": {
            "back_mode": sc.back_mode,
            "num_modes": sc.num_modes,
            "back_direction": sc.back_direction.tolist(),
            "object_center": sc.object_center.tolist(),
            "object_radius": sc.object_radius,
            "generator": GENERATOR,
            "seed": task.seed,
            "scene_kind": task.kind,
            "forced_mode": task.force_mode,
            "mode_kind": task.mode_kind,
        },
    }
    return seq, frames, seq_anno


def split_of(index: int, num_scenes: int) -> str:
    """Deterministic whole-scene split: every 10th scene is test (at least one when N >= 2), every 20th (offset) is
    val, the rest train; stable when more scenes are added. Every mode copy of a scene shares its split."""
    if index % 10 == 9 or (num_scenes >= 2 and num_scenes < 10 and index == num_scenes - 1):
        return "test"
    if index % 20 == 4:
        return "val"
    return "train"


def _set_lists(frames: list[dict], num_scenes: int) -> dict[str, list]:
    lists: dict[str, list] = {"train": [], "val": [], "test": []}
    for fr in frames:
        idx = scene_index(fr["sequence_name"])
        lists[split_of(idx, num_scenes)].append([fr["sequence_name"], fr["frame_number"], fr["image"]["path"]])
    return lists
