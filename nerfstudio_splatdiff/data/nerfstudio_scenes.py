"""Folders of nerfstudio-format captures -> preprocessed, cached `SceneRecord`s (the CO3D reader's recipe).

A capture is a folder with `transforms.json` and its images, as `ns-process-data` writes it (or instant-ngp's
variant: `camera_angle_x` instead of `fl_x`, `aabb_scale`, `sharpness`, which are read or ignored). `--data` is one
capture (transforms.json at its root: one scene, used for training and for evaluation), a folder of captures
(`<scene>/transforms.json`: split by scene, every `test_every`-th by name is a test scene, at least one), or a folder
with `train/<scene>/` and `test/<scene>/`.

transforms.json: intrinsics `fl_x fl_y cx cy w h` at the top (shared) or per frame (a frame's value wins), or
`camera_angle_x` (+ `camera_angle_y`) with the principal point at the image centre; `transform_matrix` is the
camera-to-world in nerfstudio's OpenGL convention (x right, y up, z back), turned into OpenCV's (x right, y down,
z forward) by negating its y and z columns. Frames are used in file-name order (as nerfstudio does), so frame 0 is
the first image by name; `input_frame` puts another one first (the evaluation input). Pixel coordinates put the
centre of the top-left pixel at (0.5, 0.5), as COLMAP and nerfstudio do.

Lens distortion (`k1 k2 k3 p1 p2`, or nerfstudio's `distortion_params` [k1 k2 k3 k4 p1 p2]) of a perspective camera
is removed (each image resampled onto the distortion-free pinhole camera with the same intrinsics) before the crop;
fisheye and other camera models, and `k4` of a perspective camera, are refused with one line that says what to do.
`mask_path` (white = object, as CO3D's masks) or an image's alpha channel becomes the foreground mask when every
frame has one. Depth files are not read.

Per frame, then, Splatter Image's preprocessing: the largest square centred on the principal point, resized
(Lanczos) to the resolution, the focal rescaled; per scene the point the cameras look at goes to the origin and the
mean camera distance becomes `camera_distance`. Frames whose image is missing or unreadable, or whose camera is
broken, are skipped and listed by scene and file. Paths in transforms.json are data: an absolute one, or one leading
outside its capture folder, skips that frame. The cache (`$SPLATDIFF_CACHE`) is keyed by the settings and the size and
modification time of every file read.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image, UnidentifiedImageError
from rich.progress import track
from torch import Tensor

from nerfstudio_splatdiff.data.co3d import default_cache_root, file_stamp
from nerfstudio_splatdiff.data.co3d_format import read_mask_png
from nerfstudio_splatdiff.data.photo import Photo, to_8bit
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
from nerfstudio_splatdiff.safety import child_folder, data_file, is_inside
from nerfstudio_splatdiff.splats.cameras import check_finite_camera, invert_rigid, opengl_c2w_to_opencv_c2w

TRANSFORMS = "transforms.json"
CATEGORY = "nerfstudio"
PERSPECTIVE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
"""nerfstudio camera models that are pinhole cameras with (at most) OpenCV's k1 k2 k3 p1 p2 distortion."""
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
"""Named distortion coefficients, in the order of nerfstudio's `distortion_params`."""
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h", "camera_angle_x", "camera_angle_y", "camera_model")
SIZE_TOLERANCE = 0.01
"""An image whose size differs from transforms.json's w x h by another factor across than down (more than 1%) is
skipped: its intrinsics cannot be rescaled to it."""


@dataclass
class NerfstudioScenesSettings:
    """Everything that changes the preprocessed tensors; part of the cache key."""

    resolution: int = 128
    """Side of the square images."""
    camera_distance: float = 2.0
    """Mean distance of a scene's cameras from the point they look at, after normalisation."""
    input_frame: int = 0
    """Index (file-name order, usable frames only) of the frame put first in every scene: the evaluation input."""


@dataclass
class FrameCamera:
    """One frame's camera at its image's actual size: OpenCV c2w, pixel K, OpenCV distortion (k1, k2, k3, p1, p2)."""

    c2w: Float[Tensor, "4 4"]
    K: Float[Tensor, "3 3"]
    distortion: tuple[float, float, float, float, float]


# -- finding and splitting captures ----------------------------------------------------------------------------------
def find_captures(folder: Path) -> list[Path]:
    """Visible sub-folders of `folder` that hold a transforms.json, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and (p / TRANSFORMS).is_file())


def split_captures(root: Path, test_every: int = 10) -> dict[str, list[Path]]:
    """The capture folders of the `train` and `test` splits (see the module docstring)."""
    if not isinstance(test_every, int) or test_every < 2:
        raise SplatdiffError(f"--test-every must be a whole number of at least 2, got {test_every}.")
    if not root.is_dir():
        raise SplatdiffError(
            f"{root} does not exist: pass --data a capture folder (transforms.json + images) or a folder of them."
        )
    if (root / TRANSFORMS).is_file():
        return {"train": [root], "test": [root]}
    by_folder = {s: find_captures(root / s) for s in ("train", "test")}
    if all(by_folder.values()):
        return by_folder
    captures = find_captures(root)
    if not captures:
        raise SplatdiffError(
            f"{root} holds no nerfstudio capture: expected {root}/{TRANSFORMS} or <scene>/{TRANSFORMS} folders "
            "(ns-process-data writes them)."
        )
    if len(captures) == 1:
        return {"train": captures, "test": captures}
    n = len(captures)
    is_test = [i % test_every == test_every - 1 or (n < test_every and i == n - 1) for i in range(n)]
    return {
        "train": [c for c, t in zip(captures, is_test) if not t],
        "test": [c for c, t in zip(captures, is_test) if t],
    }


# -- transforms.json -------------------------------------------------------------------------------------------------
def read_transforms(capture: Path) -> dict[str, Any]:
    """A capture's transforms.json, checked for what every frame needs: one clear error for a file that cannot be
    used at all (not JSON, no frames, a camera model this reader does not handle)."""
    path = capture / TRANSFORMS
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SplatdiffError(f"{path} is not a readable JSON file ({e}); re-run ns-process-data or fix it.") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list) or not meta["frames"]:
        raise SplatdiffError(f"{path} has no 'frames' list: it is not a nerfstudio transforms.json.")
    for entry in [meta, *(f for f in meta["frames"] if isinstance(f, dict))]:
        model = entry.get("camera_model")
        if model is not None and model not in PERSPECTIVE_MODELS:
            raise SplatdiffError(
                f"{path} uses camera_model {model!r}, which splatdiff does not read: undistort the images to a "
                "pinhole camera (e.g. ns-process-data --camera-type perspective) and write camera_model PINHOLE."
            )
        try:
            k4 = _distortion(entry, {})[3]
        except (ValueError, TypeError):
            continue  # malformed coefficients: the frames that use them are skipped and listed
        if k4 != 0:
            raise SplatdiffError(
                f"{path} sets k4, which a perspective camera does not have (only k1 k2 k3 p1 p2 are undistorted): "
                "remove it, or undistort the images and drop the distortion coefficients."
            )
    return meta


def _distortion(frame: dict, meta: dict) -> tuple[float, ...]:
    """(k1, k2, k3, k4, p1, p2) of a frame: its own coefficients, else the file's shared ones, else zero."""
    for entry in (frame, meta):
        params = entry.get("distortion_params")
        if params is not None:
            values = [float(v) for v in params]
            if len(values) != 6:
                raise ValueError(f"distortion_params has {len(values)} values, expected 6 (k1 k2 k3 k4 p1 p2)")
            return tuple(values)
        if any(k in entry for k in DISTORTION_KEYS):
            return tuple(float(entry.get(k, 0.0)) for k in DISTORTION_KEYS)
    return (0.0,) * 6


def _get(frame: dict, meta: dict, key: str) -> Any:
    return frame[key] if key in frame else meta.get(key)


def frame_camera(frame: dict, meta: dict, width: int, height: int) -> FrameCamera:
    """A frame's camera for its image of `width` x `height` pixels: intrinsics rescaled when the image is another
    size than transforms.json's w x h (a downscaled copy); ValueError (skip and list) when it cannot be used."""
    stated_w, stated_h = _get(frame, meta, "w"), _get(frame, meta, "h")
    sw = width / float(stated_w) if stated_w else 1.0
    sh = height / float(stated_h) if stated_h else 1.0
    if abs(sw - sh) > SIZE_TOLERANCE * max(sw, sh):
        raise ValueError(f"the image is {width}x{height} but transforms.json says {stated_w}x{stated_h}")
    w, h = width / sw, height / sh  # the size the intrinsics refer to
    fx, fy = _get(frame, meta, "fl_x"), _get(frame, meta, "fl_y")
    angle_x, angle_y = _get(frame, meta, "camera_angle_x"), _get(frame, meta, "camera_angle_y")
    if fx is None and angle_x is not None:
        fx = 0.5 * w / math.tan(0.5 * float(angle_x))
    if fy is None and angle_y is not None and _get(frame, meta, "fl_x") is None:
        fy = 0.5 * h / math.tan(0.5 * float(angle_y))
    if fx is None and fy is None:
        raise ValueError("no focal length (fl_x / fl_y or camera_angle_x)")
    fx = float(fx if fx is not None else fy)
    fy = float(fy if fy is not None else fx)
    cx, cy = _get(frame, meta, "cx"), _get(frame, meta, "cy")
    cx = float(cx) if cx is not None else w / 2.0
    cy = float(cy) if cy is not None else h / 2.0
    K = torch.tensor([[fx * sw, 0.0, cx * sw], [0.0, fy * sh, cy * sh], [0.0, 0.0, 1.0]], dtype=torch.float64)
    if "transform_matrix" not in frame:
        raise ValueError("the frame has no transform_matrix")
    m = torch.tensor(frame["transform_matrix"], dtype=torch.float64)
    if m.shape not in ((4, 4), (3, 4)):
        raise ValueError(f"transform_matrix is {list(m.shape)}, expected 4x4 or 3x4")
    c2w_gl = torch.eye(4, dtype=torch.float64)
    c2w_gl[:3] = m[:3]
    c2w = opengl_c2w_to_opencv_c2w(c2w_gl)
    try:
        check_finite_camera(invert_rigid(c2w), K, "camera")
    except SplatdiffError as e:
        raise ValueError(str(e).replace("camera: ", "")) from e
    k1, k2, k3, _, p1, p2 = _distortion(frame, meta)
    return FrameCamera(c2w=c2w, K=K, distortion=(k1, k2, k3, p1, p2))


def sorted_frames(meta: dict[str, Any]) -> list[dict]:
    """The frame entries in file-name order (as nerfstudio orders them); entries without a file_path come last."""
    frames = [f for f in meta["frames"] if isinstance(f, dict)]
    return sorted(frames, key=lambda f: (not isinstance(f.get("file_path"), str), str(f.get("file_path", ""))))


def _image_path(capture: Path, rel: Any) -> Path:
    """The image a frame names (relative to its capture; a path without a suffix, as in the NeRF synthetic scenes,
    is tried with .png)."""
    path = data_file(capture, rel, "image")
    if not path.suffix and not path.is_file() and path.with_suffix(".png").is_file():
        path = path.with_suffix(".png")
    return path


# -- pixels ----------------------------------------------------------------------------------------------------------
def undistort(
    pixels: Float[np.ndarray, "H W C"], K: Float[Tensor, "3 3"], distortion: tuple[float, float, float, float, float]
) -> Float[np.ndarray, "H W C"]:
    """Resample an image of a camera with OpenCV distortion (k1, k2, k3, p1, p2) onto the distortion-free pinhole
    camera with the same K (bilinear; pixels whose source lies outside repeat the border)."""
    k1, k2, k3, p1, p2 = distortion
    H, W = pixels.shape[:2]
    fx, fy, cx, cy = float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    v, u = np.meshgrid(np.arange(H, dtype=np.float64) + 0.5, np.arange(W, dtype=np.float64) + 0.5, indexing="ij")
    x, y = (u - cx) / fx, (v - cy) / fy
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    grid = np.stack([2.0 * (fx * xd + cx) / W - 1.0, 2.0 * (fy * yd + cy) / H - 1.0], -1)
    src = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1)[None]
    out = torch.nn.functional.grid_sample(
        src, torch.from_numpy(grid).float()[None], mode="bilinear", padding_mode="border", align_corners=False
    )
    return out[0].permute(1, 2, 0).numpy()


def _read_image(path: Path) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """(RGB float32 [H, W, 3] in 0..255, alpha float32 [H, W] in 0..1 or None). An RGBA image is composited onto
    black with its alpha, which becomes the mask."""
    if not path.is_file():
        raise ValueError(f"image file {path} is missing")
    try:
        with Image.open(path) as im:
            im = to_8bit(im)
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"image {path} is corrupt or unreadable ({e})") from e
    if not has_alpha:
        return rgba[..., :3], None
    alpha = rgba[..., 3] / 255.0
    return rgba[..., :3] * alpha[..., None], alpha


def _to_pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


def _mask(capture: Path, frame: dict, size: tuple[int, int]) -> Optional[np.ndarray]:
    """A frame's mask_path as float32 [H, W] in 0..1 (None when the frame has none)."""
    if not frame.get("mask_path"):
        return None
    path = data_file(capture, frame["mask_path"], "mask")
    if not path.is_file():
        raise ValueError(f"mask file {path} is missing")
    try:
        mask = read_mask_png(path)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ValueError(f"mask {path} is corrupt or unreadable ({e})") from e
    if mask.shape != (size[1], size[0]):
        raise ValueError(f"the mask {path} is {mask.shape[1]}x{mask.shape[0]} but its image is {size[0]}x{size[1]}")
    return mask


def load_frame(capture: Path, frame: dict, meta: dict, resolution: int):
    """One frame, undistorted and preprocessed: (image uint8 [R, R, 3], mask float32 [R, R] or None, OpenCV c2w
    [4, 4] float64, K [3, 3] at the resolution, image path). ValueError (skip and list) with the reason."""
    path = _image_path(capture, frame.get("file_path"))
    rgb, alpha = _read_image(path)
    mask = _mask(capture, frame, (rgb.shape[1], rgb.shape[0]))
    if mask is None:
        mask = alpha
    cam = frame_camera(frame, meta, rgb.shape[1], rgb.shape[0])
    if any(cam.distortion):
        stacked = rgb if mask is None else np.concatenate([rgb, mask[..., None]], -1)
        stacked = undistort(stacked, cam.K, cam.distortion)
        rgb, mask = stacked[..., :3], (None if mask is None else stacked[..., 3])
    img, K_new = crop_resize(_to_pil(rgb), cam.K, resolution)
    arr = np.asarray(img, dtype=np.uint8)
    if is_all_black(arr):
        raise ValueError("the image is all black")
    if mask is not None:
        m, _ = crop_resize(Image.fromarray(mask.astype(np.float32), mode="F"), cam.K, resolution, Image.BILINEAR)
        mask = np.clip(np.asarray(m), 0.0, 1.0)
    return arr, mask, cam.c2w, K_new, path


# -- scenes ----------------------------------------------------------------------------------------------------------
def _process_capture(
    capture: Path, meta: dict, name: str, settings: NerfstudioScenesSettings, folder: Path, report: SkipReport
) -> Optional[SceneRecord]:
    frames = sorted_frames(meta)
    kept: list[tuple[int, str, np.ndarray, Optional[np.ndarray], Tensor, Tensor]] = []
    for number, frame in enumerate(frames):
        label = str(frame.get("file_path", f"frames[{number}]"))
        try:
            img, mask, c2w, K, _ = load_frame(capture, frame, meta, settings.resolution)
        except Exception as e:  # noqa: BLE001 - any problem of this frame (a missing or truncated image, a malformed
            # matrix, a path outside the capture): skip it, and say so
            reason = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            report.add(name, number, reason if label in reason else f"{label}: {reason}")
            continue
        kept.append((number, label, img, mask, c2w, K))
    if len(kept) < 2:
        report.add(name, None, f"only {len(kept)} usable frame(s); a scene needs at least 2")
        return None
    start = settings.input_frame
    if not 0 <= start < len(kept):
        report.add(name, None, f"has {len(kept)} usable frames, so --input-frame {start} does not exist there")
        return None
    kept = kept[start:] + kept[:start]  # the input frame first, the orbit's order kept
    want_mask = all(k[3] is not None for k in kept)
    try:
        c2w, scale, centre = normalise_object_scene(torch.stack([k[4] for k in kept]).float(), settings.camera_distance)
    except (ValueError, SplatdiffError) as e:
        report.add(name, None, f"cannot normalise the scene: {e}")
        return None
    record = SceneRecord(
        name=name,
        category=CATEGORY,
        folder=folder,
        frame_numbers=[k[0] for k in kept],
        c2w=c2w,
        K=torch.stack([k[5] for k in kept]).float(),
        resolution=settings.resolution,
        meta={
            "capture": str(capture),
            "frame_files": [k[1] for k in kept],
            "world_scale": scale,
            "world_centre": centre.tolist(),
        },
    )
    masks = np.stack([k[3] for k in kept]) * 255 + 0.5 if want_mask else None
    record.save(np.stack([k[2] for k in kept]), None if masks is None else masks.astype(np.uint8), None)
    return record


def _fingerprint(captures: list[Path], metas: list[dict]) -> str:
    """A hash of the size and modification time of every transforms.json, image and mask the captures name."""
    h = hashlib.sha1()
    for capture, meta in zip(captures, metas):
        h.update(f"{capture}\0{file_stamp(capture / TRANSFORMS)}\n".encode("utf8", "replace"))
        for frame in sorted_frames(meta):
            for key in ("file_path", "mask_path"):
                rel = frame.get(key)
                if isinstance(rel, str) and rel and not Path(rel).is_absolute() and is_inside(capture / rel, capture):
                    path = capture / rel
                    stamp = file_stamp(path if path.exists() or path.suffix else path.with_suffix(".png"))
                    h.update(f"{rel}\0{stamp}\n".encode("utf8", "replace"))
    return h.hexdigest()


def load_nerfstudio_split(
    root: Path,
    split: str,
    settings: NerfstudioScenesSettings,
    cache_root: Optional[Path] = None,
    test_every: int = 10,
    max_scenes: Optional[int] = None,
) -> tuple[list[SceneRecord], SkipReport]:
    """The captures of one split (`train` or `test`), preprocessed (from the cache when it exists)."""
    root = Path(root).expanduser().resolve()
    captures = split_captures(root, test_every)[split][: max_scenes or None]
    metas = [read_transforms(c) for c in captures]  # every file-wide problem stops here, before any work
    if settings.input_frame < 0:
        raise SplatdiffError(
            f"--input-frame must be 0 or more (a frame index in file-name order), got {settings.input_frame}."
        )
    key = settings_key(
        {
            "captures": [str(c) for c in captures],
            "settings": vars(settings),
            "files": _fingerprint(captures, metas),
        }
    )
    cache = Path(cache_root or default_cache_root()) / f"nerfstudio_{key}"

    def build(tmp: Path, report: SkipReport) -> list[SceneRecord]:
        records = []
        for capture, meta in track(
            list(zip(captures, metas)), description=f"preprocessing captures ({split})", console=CONSOLE, transient=True
        ):
            name = capture.name  # the scene's name: its folder's
            try:
                folder = child_folder(tmp, name, "capture folder name")
            except ValueError as e:
                report.add(name, None, f"capture skipped: {e}")
                continue
            rec = _process_capture(capture, meta, name, settings, folder, report)
            if rec is not None:
                records.append(rec)
        return records

    return cached_scenes(cache, build, f"{root} split {split!r}")


def describe_eval_frames(records: list[SceneRecord], limit: int = 4) -> str:
    """Which frames evaluation uses: per scene the input (view 0) and the targets (every other frame)."""
    lines = []
    for rec in records[:limit]:
        files = rec.meta.get("frame_files", [])
        targets = f"{files[1]} ... {files[-1]}" if len(files) > 2 else (files[1] if len(files) > 1 else "none")
        lines.append(f"  {rec.name}: input {files[0] if files else 0}, {rec.num_frames - 1} targets ({targets})")
    if len(records) > limit:
        lines.append(f"  ... and {len(records) - limit} more scene(s), each with its frame 0 as the input")
    return "\n".join(lines)


# -- one frame as a model input (splatdiff-sample) -------------------------------------------------------------------
def is_capture(path: Path) -> bool:
    """Whether `path` is a capture folder (it holds a transforms.json)."""
    return Path(path).is_dir() and (Path(path) / TRANSFORMS).is_file()


def _present_frames(capture: Path, meta: dict) -> list[dict]:
    """The frames (file-name order) whose image file exists inside the capture."""
    present = []
    for f in sorted_frames(meta):
        try:
            if _image_path(capture, f.get("file_path")).is_file():
                present.append(f)
        except ValueError:
            continue
    return present


def _capture_frame(capture: Path, frame: int) -> tuple[dict, dict]:
    """(transforms.json, frame entry) of frame `frame` among those with an image; one clear error otherwise."""
    meta = read_transforms(capture)
    present = _present_frames(capture, meta)
    if not 0 <= frame < len(present):
        raise SplatdiffError(
            f"{capture} has {len(present)} frames with an image; --frame {frame} does not exist (0 to "
            f"{len(present) - 1}, in file-name order)."
        )
    return meta, present[frame]


def capture_input(
    image: Path, frame: int, mask: Optional[Path] = None, fov_deg: Optional[float] = None, focal: Optional[float] = None
) -> Optional[Path]:
    """For splatdiff-sample: the image file of frame `frame` when `image` is a capture folder (None when it is not);
    one clear error for a frame that does not exist, or for --mask / --fov-deg / --focal, which the capture's own
    masks and intrinsics replace."""
    if not is_capture(image):
        return None
    given = [flag for flag, value in (("--mask", mask), ("--fov-deg", fov_deg), ("--focal", focal)) if value]
    if given:
        raise SplatdiffError(
            f"{image} is a capture: its transforms.json gives the intrinsics and masks, so drop {', '.join(given)}."
        )
    _, entry = _capture_frame(Path(image), frame)
    return _image_path(Path(image), entry.get("file_path"))


def capture_photo(capture: Path, frame: int, size: int, background: tuple = (0.0, 0.0, 0.0)) -> Photo:
    """Frame `frame` (file-name order, counting only frames whose image exists) of a capture as a model input, with
    its real intrinsics: undistorted, the square on its principal point, resized to `size`; a mask (mask_path or
    alpha) composites it onto `background`. One clear error when the frame does not exist or cannot be read."""
    capture = Path(capture)
    meta, entry = _capture_frame(capture, frame)
    try:
        img, mask, _, K, path = load_frame(capture, entry, meta, size)
    except ValueError as e:
        raise SplatdiffError(f"Frame {frame} of {capture} cannot be used: {e}.") from e
    image = torch.from_numpy(img.astype(np.float32) / 255.0)
    mask_t = None
    if mask is not None:
        mask_t = torch.from_numpy(mask.astype(np.float32))[..., None]
        image = image * mask_t + torch.tensor(background, dtype=image.dtype) * (1 - mask_t)
    with Image.open(path) as im:
        original = im.size
    return Photo(path=path, image=image.clamp(0, 1), mask=mask_t, K=K.float(), original_size=original)
