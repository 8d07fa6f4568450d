"""CO3D v2 reader: set lists + annotations -> preprocessed, cached `SceneRecord`s (Splatter Image's recipe).

Per frame: crop the largest square centred on the principal point, resize (Lanczos) to the resolution, rescale
the focal; masks and depths follow with bilinear / nearest resampling. Frames with a missing or corrupt image,
an all-black image, an empty mask or a broken camera are skipped and reported by sequence and frame. Per
sequence: the object centre (nearest point to all optical axes) goes to the origin and the mean camera distance
is normalised. The result is cached on disk, keyed by the preprocessing settings and the size and modification
time of every file it reads, so a second start is fast and a fixed image is picked up.

Annotations are data, not trusted: a path that is absolute or leads outside --data, a sequence name that is not a
plain folder name, a frame number that is not a whole number, a missing key or any unreadable file skips that
frame (or sequence) and lists it; nothing outside --data is read and nothing outside the cache folder is written.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from nerfstudio_splatdiff.data.co3d_format import read_depth_png, read_jgz, read_mask_png
from nerfstudio_splatdiff.data.photo import to_8bit
from nerfstudio_splatdiff.data.preprocess import (
    CONSOLE,
    SkipReport,
    cached_scenes,
    crop_resize,
    is_all_black,
    normalise_object_scene,
    settings_key,
    single_thread_worker,
)
from nerfstudio_splatdiff.data.scene import SceneRecord
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.safety import child_folder, data_file, is_inside
from nerfstudio_splatdiff.splats.cameras import (
    INTRINSICS_FORMATS,
    check_finite_camera,
    invert_rigid,
    ndc_to_pixel_intrinsics,
    pytorch3d_to_opencv_w2c,
)

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


def _frame_number(value: Any) -> int:
    """A frame number from an annotation or set list: a whole number (3 or 3.0), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"frame number {value!r} is not a whole number")
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"frame number {value!r} is not a whole number")
    return int(number)


def read_set_list(cat_dir: Path, subset: str, split: str, report: Optional[SkipReport] = None) -> list[tuple[str, int, str]]:
    """The (sequence, frame number, image path) entries of one split; malformed entries are skipped and added to
    `report` (when given)."""
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
    entries = []
    items = lists[split] if isinstance(lists[split], list) else []
    for i, item in enumerate(items):
        try:
            s, f, p = item
            entries.append((str(s), _frame_number(f), str(p)))
        except (ValueError, TypeError) as e:
            if report is not None:
                report.add(f"set list {path.name} {split}[{i}]", None, f"malformed entry {str(item)[:80]} ({e})")
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
    if not isinstance(ann.get("image"), dict):
        raise ValueError("the frame annotation has no 'image' entry")
    img_path = data_file(root, ann["image"].get("path"), "image")
    if not img_path.is_file():
        raise ValueError(f"image file {img_path} is missing")
    try:
        with Image.open(img_path) as im:
            image = to_8bit(im).convert("RGB")
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
        m_path = data_file(root, ann["mask"]["path"], "mask")
        if not m_path.is_file():
            raise ValueError(f"mask file {m_path} is missing")
        m = Image.fromarray(read_mask_png(m_path), mode="F")
        m, _ = crop_resize(m, K, settings.resolution, resample=Image.BILINEAR)
        mask = np.asarray(m)
        if (mask > 0.5).mean() < MIN_MASK_FRACTION:
            raise ValueError("the foreground mask is empty")
    if want_depth:
        d_ann = ann["depth"]
        d_path = data_file(root, d_ann["path"], "depth")
        if d_path.is_file():
            d = read_depth_png(d_path, float(d_ann.get("scale_adjustment", 1.0)))
            dm_path = d_ann.get("mask_path")
            if dm_path and data_file(root, dm_path, "depth mask").is_file():
                d = d * (read_mask_png(data_file(root, dm_path, "depth mask")) > 0.5)
            if d.shape != (image.height, image.width):  # CO3D depth maps may be stored at another size
                d = np.asarray(Image.fromarray(d, mode="F").resize((image.width, image.height), Image.NEAREST))
            d, _ = crop_resize(Image.fromarray(d, mode="F"), K, settings.resolution, resample=Image.NEAREST)
            depth = np.asarray(d)
        else:
            depth = np.zeros((settings.resolution, settings.resolution), np.float32)
    return img_arr, mask, depth, c2w, K_new


def _entry(ann: dict, key: str) -> dict:
    value = ann.get(key)
    return value if isinstance(value, dict) else {}


def _process_sequence(root, seq, anns, seq_meta, settings, category, folder, report) -> Optional[SceneRecord]:
    want_mask = all(_entry(a, "mask").get("path") for a in anns)
    want_depth = settings.load_depths and all(_entry(a, "depth").get("path") for a in anns)
    images, masks, depths, c2ws, Ks, numbers = [], [], [], [], [], []
    for ann in anns:
        try:
            img, mask, depth, c2w, K = _load_frame(root, ann, seq, settings, want_mask, want_depth)
        except SplatdiffError as e:
            if "intrinsics_format" in str(e):
                raise  # a problem of the whole dataset (an unknown camera format): stop with the advice
            report.add(seq, ann.get("frame_number"), str(e))
            continue
        except Exception as e:  # noqa: BLE001 - any problem of this frame (a truncated PNG, a malformed R, a
            # missing key, a path outside --data): skip it, and say so
            report.add(seq, ann.get("frame_number"), str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}")
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
    )
    record.save(
        np.stack(images),
        (np.stack(masks) * 255 + 0.5).astype(np.uint8) if want_mask else None,
        np.stack(depths) * scale if want_depth else None,
    )
    return record


@dataclass
class _SequenceTask:
    """One sequence to preprocess into `folder`: everything a worker process needs (plain, picklable data)."""

    root: Path
    sequence: str
    annotations: list[dict]
    sequence_meta: dict
    settings: Co3dSettings
    category: str
    folder: Path


def _run_sequence_task(task: _SequenceTask) -> tuple[bool, list]:
    """Preprocess one sequence (in a worker process or this one): whether it gave a scene, and what it skipped."""
    report = SkipReport()
    record = _process_sequence(task.root, task.sequence, task.annotations, task.sequence_meta, task.settings,
                               task.category, task.folder, report)
    return record is not None, report.items


MAX_PREPROCESS_WORKERS = 8
SEQUENCES_PER_WORKER = 32  # below this many sequences per process, starting one costs more than it saves


def preprocess_workers(requested: int, sequences: int) -> int:
    """How many processes preprocess `sequences` sequences: `requested` (at most one per sequence) when set,
    otherwise (0) one per core, at most MAX_PREPROCESS_WORKERS and one per SEQUENCES_PER_WORKER sequences."""
    if requested < 0:
        raise SplatdiffError(f"preprocess workers must be 0 (one per core) or more, not {requested}.")
    if requested:
        return max(1, min(requested, sequences))
    return max(1, min(os.cpu_count() or 1, MAX_PREPROCESS_WORKERS, sequences // SEQUENCES_PER_WORKER))


def _run_sequence_tasks(tasks: list[_SequenceTask], workers: int, report: SkipReport, description: str
                        ) -> list[SceneRecord]:
    """Preprocess every task, in this process (workers <= 1) or a spawn Pool; records and skips keep the tasks'
    order either way, so the cache is the same whatever the number of workers."""
    outcomes: Any
    if workers <= 1:
        outcomes = map(_run_sequence_task, tasks)
        pool = None
    else:
        pool = mp.get_context("spawn").Pool(workers, initializer=single_thread_worker)
        outcomes = pool.imap(_run_sequence_task, tasks, chunksize=4)
    records = []
    try:
        for task, (ok, skipped) in track(zip(tasks, outcomes), total=len(tasks), description=description,
                                         console=CONSOLE, transient=True):
            report.items.extend(tuple(i) for i in skipped)
            if ok:
                records.append(SceneRecord.from_folder(task.folder))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    return records


def file_stamp(path: Path) -> list:
    """[size, mtime in ns] of a file, or [-1, -1] when it is absent: part of the cache key."""
    try:
        st = path.stat()
    except OSError:
        return [-1, -1]
    return [st.st_size, st.st_mtime_ns]


def _files_fingerprint(root: Path, anns: list[dict]) -> str:
    """A hash of the size and modification time of every image, mask and depth file the annotations name: the
    cache is rebuilt when any of them changes (e.g. a broken image was fixed)."""
    import hashlib

    h = hashlib.sha1()
    for ann in anns:
        for key, sub in (("image", "path"), ("mask", "path"), ("depth", "path"), ("depth", "mask_path")):
            rel = _entry(ann, key).get(sub)
            if isinstance(rel, str) and rel:
                path = root / rel
                stamp = file_stamp(path) if not Path(rel).is_absolute() and is_inside(path, root) else "outside"
                h.update(f"{rel}\0{stamp}\n".encode("utf8", "replace"))
    return h.hexdigest()


def load_co3d_split(
    root: Path,
    category: Optional[str],
    subset: str,
    split: str,
    settings: Co3dSettings,
    cache_root: Optional[Path] = None,
    max_sequences: Optional[int] = None,
    workers: int = 0,
) -> tuple[list[SceneRecord], SkipReport]:
    """Scenes of one set-list split, preprocessed (from the cache when it exists). `workers`: processes that
    preprocess a new cache (0: one per core, see `preprocess_workers`; 1: this process); the cache does not depend
    on it."""
    preprocess_workers(workers, 0)  # a bad number fails now, not after the annotations are read
    root = Path(root).expanduser().resolve()
    category = resolve_category(root, category)
    cat_dir = root / category
    early = SkipReport()  # problems found before the cache is built (set list, annotations)
    entries = read_set_list(cat_dir, subset, split, early)
    ann_file = cat_dir / "frame_annotations.jgz"
    frames = read_jgz(ann_file)
    by_key: dict[tuple[str, int], dict] = {}
    for i, f in enumerate(frames if isinstance(frames, list) else []):
        try:
            by_key[(str(f["sequence_name"]), _frame_number(f["frame_number"]))] = f
        except (KeyError, TypeError, ValueError) as e:
            early.add(f"frame_annotations.jgz entry {i}", None, f"malformed ({type(e).__name__}: {e})")
    wanted: dict[str, list[dict]] = defaultdict(list)
    for seq, num, _ in entries:
        ann = by_key.get((seq, num))
        if ann is None:
            early.add(seq, num, "listed in the set list but absent from frame_annotations.jgz")
        else:
            wanted[seq].append(ann)
    sequences = sorted(wanted)[: max_sequences or None]
    key = settings_key({
        "root": str(root), "category": category, "subset": subset, "split": split, "max_sequences": max_sequences,
        "settings": vars(settings), "annotations": file_stamp(ann_file),
        "sequence_annotations": file_stamp(cat_dir / "sequence_annotations.jgz"),
        "set_list": file_stamp(cat_dir / "set_lists" / f"set_lists_{subset}.json"),
        "files": _files_fingerprint(root, [a for s in sequences for a in wanted[s]]),
    })
    cache = Path(cache_root or default_cache_root()) / f"co3d_{category}_{subset}_{split}_{key}"

    def build(tmp: Path, report: SkipReport) -> list[SceneRecord]:
        report.items.extend(early.items)
        seq_file = cat_dir / "sequence_annotations.jgz"
        seq_meta = {}
        for s in read_jgz(seq_file) if seq_file.is_file() else []:
            if isinstance(s, dict) and "sequence_name" in s:
                seq_meta[str(s["sequence_name"])] = s.get("meta") if isinstance(s.get("meta"), dict) else {}
        tasks = []
        for seq in sequences:
            try:
                folder = child_folder(tmp, seq, "sequence name")
            except ValueError as e:
                report.add(seq, None, f"sequence skipped: {e}")
                continue
            anns = sorted(wanted[seq], key=lambda a: _frame_number(a["frame_number"]))
            tasks.append(_SequenceTask(root, seq, anns, seq_meta.get(seq, {}), settings, category, folder))
        return _run_sequence_tasks(tasks, preprocess_workers(workers, len(tasks)), report,
                                   f"preprocessing CO3D {category}/{split}")

    return cached_scenes(cache, build, f"{cat_dir} split {split!r}")
