"""A tiny CO3D v2 dataset built in the tests: non-square images, legacy `ndc_norm_image_bounds` intrinsics, an
off-centre principal point, and a red sphere at the world origin (rendered here by exact ray casting)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image

SPHERE_RADIUS = 0.35
W, H = 96, 64


def _look_at(eye: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV world-to-camera (R, t) looking at the origin with world +Z up."""
    z = -eye / np.linalg.norm(eye)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world
    return R, -R @ eye


def _render(R, t, K):
    """Red sphere on grey: image uint8 [H,W,3], mask bool, z-depth (0 off the sphere)."""
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
    d = d_cam @ R  # to world (R is orthonormal)
    o = -R.T @ t
    a = (d * d).sum(-1)
    b = 2 * (d @ o)
    c = o @ o - SPHERE_RADIUS**2
    disc = b * b - 4 * a * c
    hit = disc > 0
    s = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)  # z-depth, as d_cam has z = 1
    img = np.full((H, W, 3), 128, np.uint8)
    img[hit] = [220, 30, 30]
    return img, hit, np.where(hit, s, 0.0)


def to_pytorch3d(R_cv: np.ndarray, t_cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    F = np.diag([-1.0, -1.0, 1.0])
    return (F @ R_cv).T, F @ t_cv


def write_co3d_fixture(
    root: Path, category: str = "toy", sequences: int = 2, frames: int = 5, extra_keys: bool = True
) -> Path:
    """Write the dataset under root/category and return that folder."""
    cat = root / category
    frame_anns, seq_anns, train, test = [], [], [], []
    for s in range(sequences):
        seq = f"seq_{s}"
        for sub in ("images", "masks", "depths", "depth_masks"):
            (cat / seq / sub).mkdir(parents=True, exist_ok=True)
        for f in range(frames):
            az = 2 * math.pi * f / frames + 0.3 * s
            eye = 2.5 * np.array([math.cos(az), math.sin(az), 0.4])
            R, t = _look_at(eye)
            K = np.array([[70.0, 0, 52.0], [0, 72.0, 30.0], [0, 0, 1]])  # principal point off-centre
            img, mask, depth = _render(R, t, K)
            num = f + 1
            rel = f"{category}/{seq}"
            Image.fromarray(img).save(cat / seq / "images" / f"frame{num:06d}.jpg", quality=95)
            Image.fromarray((mask * 255).astype(np.uint8)).save(cat / seq / "masks" / f"frame{num:06d}.png")
            bits = depth.astype(np.float16).view(np.uint16)
            Image.fromarray(bits).save(cat / seq / "depths" / f"frame{num:06d}.jpg.geometric.png")
            Image.fromarray((mask * 255).astype(np.uint8)).save(cat / seq / "depth_masks" / f"frame{num:06d}.png")
            R3, T3 = to_pytorch3d(R, t)
            ann = {
                "sequence_name": seq,
                "frame_number": num,
                "frame_timestamp": f / 30.0,
                "image": {"path": f"{rel}/images/frame{num:06d}.jpg", "size": [H, W]},
                "depth": {
                    "path": f"{rel}/depths/frame{num:06d}.jpg.geometric.png",
                    "scale_adjustment": 1.0,
                    "mask_path": f"{rel}/depth_masks/frame{num:06d}.png",
                },
                "mask": {"path": f"{rel}/masks/frame{num:06d}.png", "mass": float(mask.sum())},
                "viewpoint": {
                    "R": R3.tolist(),
                    "T": T3.tolist(),
                    "focal_length": [K[0, 0] / (W / 2), K[1, 1] / (H / 2)],
                    "principal_point": [(W / 2 - K[0, 2]) / (W / 2), (H / 2 - K[1, 2]) / (H / 2)],
                    "intrinsics_format": "ndc_norm_image_bounds",
                },
                "meta": {"frame_type": "test_known"},
            }
            if extra_keys:
                ann["some_future_key"] = {"nested": [1, 2]}
                ann["viewpoint"]["extra"] = 1
            frame_anns.append(ann)
            (test if s == sequences - 1 else train).append([seq, num, ann["image"]["path"]])
        seq_anns.append({"sequence_name": seq, "category": category, "meta": {"index": s}})
    with gzip.open(cat / "frame_annotations.jgz", "wt") as f:
        json.dump(frame_anns, f)
    with gzip.open(cat / "sequence_annotations.jgz", "wt") as f:
        json.dump(seq_anns, f)
    (cat / "set_lists").mkdir(exist_ok=True)
    (cat / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps({"train": train, "val": [], "test": test}))
    return cat
