"""CO3D v2 reader: set lists + annotations -> preprocessed, cached `SceneRecord`s (Splatter Image's recipe).

Per frame: crop the largest square centred on the principal point, resize (Lanczos) to the resolution, rescale
the focal; masks and depths follow with bilinear / nearest resampling. Frames with a missing or corrupt image,
an all-black image, an empty mask or a broken camera are skipped and reported by sequence and frame. Per
sequence: the object centre (nearest point to all optical axes) goes to the origin and the mean camera distance
is normalised. The result is cached on disk, keyed by the preprocessing settings, so a second start is fast.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from nerfstudio_splatdiff.data.cameras import (
    INTRINSICS_FORMATS,
    check_finite_camera,
    invert_rigid,
    ndc_to_pixel_intrinsics,
    pytorch3d_to_opencv_w2c,
)
from nerfstudio_splatdiff.data.co3d_format import read_depth_png, read_jgz, read_mask_png
from nerfstudio_splatdiff.data.preprocess import (
    CONSOLE,
    SkipReport,
    cached_scenes,
    crop_resize,
    is_all_black,
    normalise_object_scene,
    settings_key,
)
from nerfstudio_splatdiff.data.scene import SceneRecord
from nerfstudio_splatdiff.errors import SplatdiffError

MIN_MASK_FRACTION = 1e-3  # a mask covering less than this share of the image counts as empty


@dataclass
class Co3dSettings:
    """Everything that changes the preprocessed tensors; part of the cache key."""

    resolution: int = 128
    camera_distance: float = 2.0
    load_depths: bool = True


def default_cache_root() -> Path:
    return Path(os.environ.get("SPLATDIFF_CACHE", Path.home() / ".cache" / "nerfstudio-splatdiff"))


def find_categories(root: Path) -> list[str]:
    """Sub-folders of `root` that look like CO3D categories (they hold frame_annotations.jgz)."""
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "frame_annotations.jgz").is_file())


def resolve_category(root: Path, category: Optional[str]) -> str:
    """The category to use: the one asked for, or the only one present. One clear error otherwise."""
    if not root.is_dir():
        raise SplatdiffError(f"The CO3D root {root} does not exist; pass --data pointing at it.")
    found = find_categories(root)
    if category is None:
        if len(found) == 1:
            return found[0]
        raise SplatdiffError(
            f"{root} holds {len(found)} CO3D categories ({', '.join(found) or 'none'}); choose one with --category."
            if found
            else f"{root} holds no CO3D category (no <category>/frame_annotations.jgz); check --data."
        )
    if not (root / category).is_dir():
        raise SplatdiffError(
            f"Category {category!r} is not under {root}; available: {', '.join(found) or 'none'}."
        )
    if category not in found:
        raise SplatdiffError(f"{root / category / 'frame_annotations.jgz'} is missing; re-extract the category.")
    return category


def read_set_list(cat_dir: Path, subset: str, split: str) -> list[tuple[str, int, str]]:
    path = cat_dir / "set_lists" / f"set_lists_{subset}.json"
    if not path.is_file():
        have = sorted(p.stem.replace("set_lists_", "") for p in (cat_dir / "set_lists").glob("set_lists_*.json"))
        raise SplatdiffError(f"No set list {path}; available subsets: {', '.join(have) or 'none'} (--subset-name).")
    try:
        lists = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SplatdiffError(f"{path} is not valid JSON ({e}).") from e
    if split not in lists:
        raise SplatdiffError(f"{path} has no {split!r} split (it has {', '.join(lists)}).")
    entries = [(str(s), int(f), str(p)) for s, f, p in lists[split]]
    if not entries:
        raise SplatdiffError(f"The {split!r} split of {path} is empty: this category has no frames to use.")
    return entries


def _frame_camera(ann: dict[str, Any], height: int, width: int, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(c2w OpenCV [4,4], K pixel [3,3]) of one frame annotation, at the image's actual size."""
    vp = ann.get("viewpoint")
    if not vp:
        raise ValueError("no viewpoint in the frame annotation")
    fmt = vp.get("intrinsics_format", "ndc_norm_image_bounds")
    if fmt not in INTRINSICS_FORMATS:
        raise SplatdiffError(
            f"{where}: unknown intrinsics_format {fmt!r}; CO3D cameras must be one of {INTRINSICS_FORMATS} "
            "(convert the annotations, or fix this frame)."
        )
    R = torch.tensor(vp["R"], dtype=torch.float64)
    T = torch.tensor(vp["T"], dtype=torch.float64)
    focal = torch.tensor(vp["focal_length"], dtype=torch.float64).reshape(-1).expand(2)
    pp = torch.tensor(vp.get("principal_point", [0.0, 0.0]), dtype=torch.float64)
    w2c = pytorch3d_to_opencv_w2c(R, T)
    K = ndc_to_pixel_intrinsics(focal, pp, height, width, fmt)
    check_finite_camera(w2c, K, where)
    return invert_rigid(w2c), K


def _load_frame(root: Path, ann: dict[str, Any], seq: str, settings: Co3dSettings, want_mask: bool, want_depth: bool):
    """Read and preprocess one frame; raises ValueError (skip) or SplatdiffError (stop) with the reason."""
    where = f"sequence {seq} frame {ann.get('frame_number')}"
    img_path = root / ann["image"]["path"]
    if not img_path.is_file():
        raise ValueError(f"image file {img_path} is missing")
    try:
        with Image.open(img_path) as im:
            image = im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"image {img_path} is corrupt or unreadable ({e})") from e
    try:
        c2w, K = _frame_camera(ann, image.height, image.width, where)
    except SplatdiffError as e:
        if "intrinsics_format" in str(e):
            raise
        raise ValueError(str(e).replace(f"{where}: ", "")) from e
    img, K_new = crop_resize(image, K, settings.resolution)
    img_arr = np.asarray(img, dtype=np.uint8)
    if is_all_black(img_arr):
        raise ValueError("the image is all black")
    mask = depth = None
    if want_mask:
        m_path = root / ann["mask"]["path"]
        if not m_path.is_file():
            raise ValueError(f"mask file {m_path} is missing")
        m = Image.fromarray(read_mask_png(m_path), mode="F")
        m, _ = crop_resize(m, K, settings.resolution, resample=Image.BILINEAR)
        mask = np.asarray(m)
        if (mask > 0.5).mean() < MIN_MASK_FRACTION:
            raise ValueError("the foreground mask is empty")
    if want_depth:
        d_ann = ann["depth"]
        d_path = root / d_ann["path"]
        if d_path.is_file():
            d = read_depth_png(d_path, float(d_ann.get("scale_adjustment", 1.0)))
            dm_path = d_ann.get("mask_path")
            if dm_path and (root / dm_path).is_file():
                d = d * (read_mask_png(root / dm_path) > 0.5)
            if d.shape != (image.height, image.width):  # CO3D depth maps may be stored at another size
                d = np.asarray(Image.fromarray(d, mode="F").resize((image.width, image.height), Image.NEAREST))
            d, _ = crop_resize(Image.fromarray(d, mode="F"), K, settings.resolution, resample=Image.NEAREST)
            depth = np.asarray(d)
        else:
            depth = np.zeros((settings.resolution, settings.resolution), np.float32)
    return img_arr, mask, depth, c2w, K_new


def _process_sequence(root, seq, anns, seq_meta, settings, category, folder, report) -> Optional[SceneRecord]:
    want_mask = all(a.get("mask", {}).get("path") for a in anns)
    want_depth = settings.load_depths and all(a.get("depth", {}).get("path") for a in anns)
    images, masks, depths, c2ws, Ks, numbers = [], [], [], [], [], []
    for ann in anns:
        try:
            img, mask, depth, c2w, K = _load_frame(root, ann, seq, settings, want_mask, want_depth)
        except SplatdiffError:
            raise  # a problem of the whole dataset (e.g. an unknown camera format): stop with the advice
        except ValueError as e:  # a problem of this frame: skip it, and say so
            report.add(seq, ann.get("frame_number"), str(e))
            continue
        images.append(img), masks.append(mask), depths.append(depth), c2ws.append(c2w), Ks.append(K)
        numbers.append(int(ann["frame_number"]))
    if len(images) < 2:
        report.add(seq, None, f"only {len(images)} usable frame(s); a scene needs at least 2")
        return None
    try:
        c2w, scale, centre = normalise_object_scene(torch.stack(c2ws).float(), settings.camera_distance)
    except (ValueError, SplatdiffError) as e:
        report.add(seq, None, f"cannot normalise the scene: {e}")
        return None
    record = SceneRecord(
        name=seq, category=category, folder=folder, frame_numbers=numbers, c2w=c2w, K=torch.stack(Ks).float(),
        resolution=settings.resolution, meta={**seq_meta, "world_scale": scale, "world_centre": centre.tolist()},
    )  # fmt: skip
    record.save(
        np.stack(images),
        (np.stack(masks) * 255 + 0.5).astype(np.uint8) if want_mask else None,
        np.stack(depths) * scale if want_depth else None,
    )
    return record


def load_co3d_split(
    root: Path,
    category: Optional[str],
    subset: str,
    split: str,
    settings: Co3dSettings,
    cache_root: Optional[Path] = None,
    max_sequences: Optional[int] = None,
) -> tuple[list[SceneRecord], SkipReport]:
    """Scenes of one set-list split, preprocessed (from the cache when it exists)."""
    root = Path(root).expanduser().resolve()
    category = resolve_category(root, category)
    cat_dir = root / category
    entries = read_set_list(cat_dir, subset, split)
    ann_file = cat_dir / "frame_annotations.jgz"
    stat = ann_file.stat()
    key = settings_key({
        "root": str(root), "category": category, "subset": subset, "split": split, "max_sequences": max_sequences,
        "settings": vars(settings), "annotations": [stat.st_size, stat.st_mtime_ns],
    })  # fmt: skip
    cache = Path(cache_root or default_cache_root()) / f"co3d_{category}_{subset}_{split}_{key}"

    def build(tmp: Path, report: SkipReport) -> list[SceneRecord]:
        frames = read_jgz(ann_file)
        seq_file = cat_dir / "sequence_annotations.jgz"
        seq_meta = {s["sequence_name"]: s.get("meta") or {} for s in (read_jgz(seq_file) if seq_file.is_file() else [])}
        by_key = {(f["sequence_name"], int(f["frame_number"])): f for f in frames}
        wanted: dict[str, list[dict]] = defaultdict(list)
        for seq, num, _ in entries:
            ann = by_key.get((seq, num))
            if ann is None:
                report.add(seq, num, "listed in the set list but absent from frame_annotations.jgz")
            else:
                wanted[seq].append(ann)
        records = []
        for seq in track(sorted(wanted)[: max_sequences or None], description=f"preprocessing CO3D {category}/{split}",
                         console=CONSOLE, transient=True):  # fmt: skip
            anns = sorted(wanted[seq], key=lambda a: int(a["frame_number"]))
            rec = _process_sequence(root, seq, anns, seq_meta.get(seq, {}), settings, category, tmp / seq, report)
            if rec is not None:
                records.append(rec)
        return records

    return cached_scenes(cache, build, f"{cat_dir} split {split!r}")
