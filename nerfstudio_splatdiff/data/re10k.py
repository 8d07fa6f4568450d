"""RealEstate10K reader: pixelSplat/MVSplat `.torch` chunks, or the original camera `.txt` files next to a folder
of extracted frames -> preprocessed, cached `SceneRecord`s.

Chunks: `<root>/<split>/NNNNNN.torch` (+ `index.json`), each a torch.save'd list of dicts {url, timestamps
int64[V], cameras float32[V, 18], images: list of uint8 JPEG byte tensors, key}. The 18 numbers are fx fy cx cy
(normalised by width/height), two zeros, and a row-major 3x4 OpenCV world-to-camera matrix.
Text files: `<root>/<split>/<key>.txt` (first line the video URL, then one line of 19 numbers per frame:
timestamp and the 18 above) with frames in `<root>/frames/<split>/<key>/<timestamp>.{png,jpg}`.
The official train/test splits are the `train`/`test` folders. Scenes are not normalised (they are rooms, not
objects); the depth range comes from the config and is stored in each scene's meta.

Chunks are loaded with `torch.load(weights_only=True)` (tensors, numbers, strings, lists and dicts: a pickle
payload is refused, never run). A scene key that is not a plain folder name (separators, `..`, hidden) is skipped
and listed, so the cache writes stay inside the cache folder; the cache key covers the size and modification time
of every chunk, camera file and frame read. A camera or frame file that leads outside --data (a link) or is not a
regular file (a FIFO would block) is skipped and listed, never opened, as the CO3D reader does.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from PIL import Image
from rich.progress import track

from nerfstudio_splatdiff.splats.cameras import check_finite_camera, invert_rigid, make_rigid
from nerfstudio_splatdiff.data.co3d import default_cache_root
from nerfstudio_splatdiff.data.preprocess import CONSOLE, SkipReport, cached_scenes, crop_resize, is_all_black, settings_key
from nerfstudio_splatdiff.data.scene import SceneRecord
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.safety import child_folder, is_inside

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Re10kSettings:
    resolution: int = 128
    depth_near: float = 1.0
    depth_far: float = 100.0
    max_frames: Optional[int] = None
    """Keep at most this many frames per scene (evenly spaced); None keeps all."""


def camera_from_18(row: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(c2w OpenCV [4,4], K pixel [3,3]) from RealEstate10K's 18 numbers for an image of width x height."""
    row = row.double()
    fx, fy, cx, cy = row[0] * width, row[1] * height, row[2] * width, row[3] * height
    K = torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=torch.float64)
    w2c34 = row[6:18].reshape(3, 4)
    w2c = make_rigid(w2c34[:, :3], w2c34[:, 3])
    return w2c, K


def read_pose_txt(path: Path) -> tuple[str, np.ndarray, np.ndarray]:
    """(url, timestamps int64 [V], cameras float64 [V, 18]) from an original RealEstate10K camera file."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise SplatdiffError(f"{path} is empty; expected a URL line then one line of 19 numbers per frame.")
    rows = []
    for i, ln in enumerate(lines[1:], start=2):
        vals = ln.split()
        if len(vals) != 19:
            raise SplatdiffError(f"{path} line {i}: expected 19 numbers (timestamp, 4 intrinsics, 2 zeros, 3x4 pose), got {len(vals)}.")
        try:
            rows.append([float(v) for v in vals])
        except ValueError:
            bad = next(v for v in vals if not _is_number(v))
            raise SplatdiffError(
                f"{path} line {i}: {bad[:40]!r} is not a number; each frame line holds 19 numbers (timestamp, 4 "
                "intrinsics, 2 zeros, 3x4 pose): fix or remove the file."
            ) from None
    arr = np.asarray(rows, dtype=np.float64)
    return lines[0], arr[:, 0].astype(np.int64), arr[:, 1:]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class RefusedFrame:
    """A frame file that is not read (it leads outside --data, or is not a regular file), with the reason."""

    reason: str


def frame_file_problem(path: Path, root: Path) -> Optional[str]:
    """Why a frame, camera file or chunk is not read, or None: it must lie inside --data once links are
    resolved (as the CO3D reader requires of annotation paths) and be a regular file (a FIFO or device in its place
    would block the reader or never end)."""
    if not is_inside(path, root):
        return f"{path.name} leads outside --data {root} (a link to {path.resolve()}); refused"
    if not path.is_file():
        return f"{path.name} is not a regular file (a FIFO, device or folder); refused"
    return None


def _iter_chunk_scenes(split_dir: Path, report: SkipReport, root: Path) -> Iterator[dict]:
    chunks = sorted(split_dir.glob("*.torch"))
    for chunk in chunks:
        problem = frame_file_problem(chunk, root)
        if problem:
            report.add(chunk.name, None, f"chunk {problem}")
            continue
        try:
            items = torch.load(chunk, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            report.add(chunk.name, None, f"chunk holds Python objects other than tensors; refused (weights_only): "
                                         f"{str(e).splitlines()[0][:120]}")
            continue
        except Exception as e:  # noqa: BLE001 - torch.load raises many kinds on a truncated file
            report.add(chunk.name, None, f"chunk is truncated or corrupt ({type(e).__name__}); re-download it")
            continue
        for i, item in enumerate(items if isinstance(items, list) else []):
            try:
                yield {"key": item["key"], "timestamps": item["timestamps"], "cameras": item["cameras"],
                       "images": item["images"]}
            except (KeyError, TypeError) as e:
                report.add(f"{chunk.name}[{i}]", None, f"malformed scene entry ({type(e).__name__}: {e})")


def _iter_txt_scenes(root: Path, split: str, report: SkipReport) -> Iterator[dict]:
    """Scenes of camera txt files, every file parsed first (a malformed one stops the run before any frame is read).
    Camera and frame files that lead outside --data or are not regular files are skipped and listed, never read."""
    cameras = []
    for txt in sorted((root / split).glob("*.txt")):
        problem = frame_file_problem(txt, root)
        if problem:
            report.add(txt.stem, None, f"camera file {problem}")
            continue
        cameras.append((txt, *read_pose_txt(txt)[1:]))
    for txt, stamps, cams in cameras:
        frame_dir = root / "frames" / split / txt.stem
        files = {p.stem: p for p in frame_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES} if frame_dir.is_dir() else {}
        if not files:
            report.add(txt.stem, None, f"no extracted frames in {frame_dir}")
            continue
        images = []
        for t in stamps:
            path = files.get(str(int(t)))
            problem = frame_file_problem(path, root) if path is not None else None
            images.append(RefusedFrame(problem) if problem else path)
        yield {"key": txt.stem, "timestamps": torch.from_numpy(stamps), "cameras": torch.from_numpy(cams),
               "images": images}


def _decode(img) -> Image.Image:
    if isinstance(img, Path):
        return Image.open(img).convert("RGB")
    return Image.open(io.BytesIO(img.numpy().tobytes())).convert("RGB")


def _process_scene(scene: dict, settings: Re10kSettings, folder: Path, report: SkipReport) -> Optional[SceneRecord]:
    key = str(scene["key"])
    n = len(scene["images"])
    keep = range(n) if not settings.max_frames or n <= settings.max_frames else np.linspace(0, n - 1, settings.max_frames).round().astype(int)
    images, c2ws, Ks, numbers = [], [], [], []
    for i in keep:
        i = int(i)
        if scene["images"][i] is None:
            report.add(key, i, "frame image is missing")
            continue
        if isinstance(scene["images"][i], RefusedFrame):
            report.add(key, i, scene["images"][i].reason)
            continue
        try:
            image = _decode(scene["images"][i])
        except Exception as e:  # noqa: BLE001 - PIL raises many kinds on corrupt bytes; a non-tensor entry too
            report.add(key, i, f"frame image is corrupt ({type(e).__name__}: {e})")
            continue
        try:
            w2c, K = camera_from_18(torch.as_tensor(scene["cameras"][i]), image.width, image.height)
            check_finite_camera(w2c, K, f"RealEstate10K scene {key} frame {i}")
            img, K_new = crop_resize(image, K, settings.resolution)
        except Exception as e:  # noqa: BLE001 - a malformed camera row or a crop that does not fit: skip the frame
            report.add(key, i, str(e) if isinstance(e, (ValueError, SplatdiffError)) else f"{type(e).__name__}: {e}")
            continue
        arr = np.asarray(img, dtype=np.uint8)
        if is_all_black(arr):
            report.add(key, i, "the image is all black")
            continue
        images.append(arr), c2ws.append(invert_rigid(w2c).float()), Ks.append(K_new), numbers.append(i)
    if len(images) < 2:
        report.add(key, None, f"only {len(images)} usable frame(s); a scene needs at least 2")
        return None
    rec = SceneRecord(
        name=key, category="re10k", folder=folder, frame_numbers=numbers, c2w=torch.stack(c2ws),
        K=torch.stack(Ks).float(), resolution=settings.resolution,
        meta={"depth_range": [settings.depth_near, settings.depth_far],
              "timestamps": [int(scene["timestamps"][i]) for i in numbers]},
    )
    rec.save(np.stack(images), None, None)
    return rec


def load_re10k_split(
    root: Path, split: str, settings: Re10kSettings, cache_root: Optional[Path] = None, max_scenes: Optional[int] = None
) -> tuple[list[SceneRecord], SkipReport]:
    """Scenes of the official `train` or `test` split, from chunks if present, else from camera txt files."""
    root = Path(root).expanduser().resolve()
    split_dir = root / split
    if not split_dir.is_dir():
        raise SplatdiffError(f"No {split!r} folder under {root}: RealEstate10K data needs {root}/{split}/ (chunks or txt files).")
    use_chunks = any(split_dir.glob("*.torch"))
    if not use_chunks and not any(split_dir.glob("*.txt")):
        raise SplatdiffError(f"{split_dir} holds neither .torch chunks nor camera .txt files.")
    sources = sorted(p.name for p in split_dir.glob("*.torch" if use_chunks else "*.txt"))
    stamps = [(s, (split_dir / s).stat().st_size, (split_dir / s).stat().st_mtime_ns) for s in sources]
    if not use_chunks:  # the extracted frames are read too
        frames_dir = root / "frames" / split
        stamps += [(str(p.relative_to(frames_dir)), p.stat().st_size, p.stat().st_mtime_ns)
                   for p in sorted(frames_dir.glob("*/*")) if p.is_file()] if frames_dir.is_dir() else []
    key = settings_key({"root": str(root), "split": split, "settings": vars(settings), "max_scenes": max_scenes,
                        "sources": stamps})
    cache = Path(cache_root or default_cache_root()) / f"re10k_{split}_{key}"

    def build(tmp: Path, report: SkipReport) -> list[SceneRecord]:
        scenes = _iter_chunk_scenes(split_dir, report, root) if use_chunks else _iter_txt_scenes(root, split, report)
        records: list[SceneRecord] = []
        for scene in track(scenes, description=f"preprocessing RealEstate10K {split}", console=CONSOLE, transient=True):
            if max_scenes is not None and len(records) >= max_scenes:
                break
            try:
                folder = child_folder(tmp, str(scene["key"]), "scene key")
            except ValueError as e:
                report.add(str(scene["key"]), None, f"scene skipped: {e}")
                continue
            rec = _process_scene(scene, settings, folder, report)
            if rec is not None:
                records.append(rec)
        return records

    return cached_scenes(cache, build, f"RealEstate10K {split_dir}")
