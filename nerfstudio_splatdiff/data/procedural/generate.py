"""splatdiff-make-procedural: procedural multi-view scenes written in the CO3D v2 on-disk layout.

Each scene is a small object of 2-4 textured primitives standing on a textured ground (world +Z up), seen
from a CO3D-like orbit. The side facing away from view 0 — points p with (p - c) . d0 < 0, where d0 is the
horizontal direction from the object centre c to camera 0 — takes its colour and a small shape detail (a knob)
from one of `num_modes` discrete modes, independent of everything view 0 shows. So predicting the back from
view 0 is ambiguous by design, with a known set of answers (`mode_palette` gives each mode's colour).
Surface just behind that plane which camera 0 still sees (the top of a raised body, the far part of an oblique
box face) keeps the front texture, and the knob is kept out of camera 0's sight: view 0 is pixel-identical for
every mode (tests/test_procedural.py checks this).

Scene i depends only on (seed, i): separate random streams for the object, the hidden mode, the cameras and
the environment, so the number of workers never changes the data and the mode cannot leak into the rest.
"""

from __future__ import annotations

import colorsys
import json
import math
import multiprocessing as mp
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from nerfstudio_splatdiff.data.cameras import opencv_w2c_to_pytorch3d, pixel_to_ndc_isotropic
from nerfstudio_splatdiff.data.co3d_format import write_depth_png, write_jgz
from nerfstudio_splatdiff.data.procedural.raycast import (
    BackSide,
    Box,
    Cylinder,
    Ellipsoid,
    GroundPlane,
    RayScene,
    Rendered,
    Sphere,
    Texture,
    object_support,
    occluded_from,
    render,
    surface_points,
)
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.images import contact_sheet, save_png
from nerfstudio_splatdiff.splats.orbit import look_at_w2c

CONSOLE = Console()
GENERATOR = "splatdiff-procedural"
SUBSETS = ("fewview_dev", "fewview_test")
ANNOTATION_FILES = ("frame_annotations.jgz", "sequence_annotations.jgz")
FPS = 10.0  # frame_timestamp = frame index / FPS, as if the orbit were a 10 fps video
_Z = np.array([0.0, 0.0, 1.0])
_FRONT_PATTERNS = ("stripes", "checker", "dots", "noise")

PathLike = Union[str, Path]


# ------------------------------------------------------------------------------------------------ colours
def mode_palette(num_modes: int) -> np.ndarray:
    """Reference RGB [K, 3] of each back-side mode: saturated hues spread evenly (K = 3: red, green, blue).

    Evaluation can classify which mode a rendered back view shows by the nearest palette colour.
    """
    return np.array([colorsys.hsv_to_rgb(k / num_modes, 0.85, 0.95) for k in range(num_modes)])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v))


def _muted_color(rng: np.random.Generator) -> np.ndarray:
    """A desaturated colour: front and ground colours stay clear of the saturated mode hues."""
    return _hsv(rng.uniform(), rng.uniform(0.08, 0.45), rng.uniform(0.45, 0.95))


def _texture(rng: np.random.Generator, a: np.ndarray, b: np.ndarray, kinds=_FRONT_PATTERNS, freq=(2.5, 6.0)) -> Texture:
    """A random procedural texture mixing colours a and b."""
    return Texture(
        kind=str(rng.choice(kinds)),
        color_a=a,
        color_b=b,
        frequency=float(rng.uniform(*freq)),
        direction=_unit(rng.normal(size=3)),
        offset=rng.uniform(-1.0, 1.0, 3),
        waves=rng.normal(size=(4, 3)) * rng.uniform(4.0, 9.0),
        phases=rng.uniform(0.0, 2 * np.pi, 4),
    )


def _front_texture(rng: np.random.Generator) -> Texture:
    a = _muted_color(rng)
    b = np.clip(_muted_color(rng) * rng.uniform(0.5, 1.0), 0.0, 1.0)
    return _texture(rng, a, b)


def _mode_texture(rng: np.random.Generator, hue_rgb: np.ndarray) -> Texture:
    """The back-side texture of a mode: its hue mixed with a darker shade of the same hue."""
    return _texture(rng, hue_rgb, hue_rgb * rng.uniform(0.45, 0.65))


# ----------------------------------------------------------------------------------------------- geometry
def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _rot_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _frame_along(u: np.ndarray) -> np.ndarray:
    """Rotation whose local x axis is the horizontal unit vector u and local z is world up."""
    return np.stack([u, np.cross(_Z, u), _Z], axis=1)


def _small_tilt(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    """Rotation by up to max_deg about a random horizontal axis (Rodrigues)."""
    axis = np.array([*_unit(rng.normal(size=2)), 0.0])
    a = math.radians(rng.uniform(-max_deg, max_deg))
    Kx = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(a) * Kx + (1 - math.cos(a)) * Kx @ Kx


def _shape(rng: np.random.Generator, kind: str, size: float, tex: Texture, along: Optional[np.ndarray] = None):
    """A primitive of roughly `size` radius at the origin; `along` elongates ellipsoids in that direction."""
    o = np.zeros(3)
    if kind == "sphere":
        return Sphere(o, size, tex)
    if kind == "box":
        rot = _frame_along(along) if along is not None else _rot_z(rng.uniform(0, 2 * np.pi))
        return Box(o, size * rng.uniform(0.6, 1.0, 3), rot, tex)
    if kind == "cylinder":
        return Cylinder(o, size * rng.uniform(0.6, 1.0), size * rng.uniform(0.5, 1.0), tex)
    if along is not None:
        radii = size * np.array([1.6, rng.uniform(0.4, 0.7), rng.uniform(0.4, 0.7)])
        return Ellipsoid(o, radii, _frame_along(along), tex)
    return Ellipsoid(o, size * rng.uniform(0.6, 1.2, 3), _rot_z(rng.uniform(0, 2 * np.pi)) @ _small_tilt(rng, 15), tex)


def _lift_to_ground(prim) -> None:
    """Raise a primitive so it does not sink below the ground plane."""
    bottom = prim.center[2] - prim.extent(-_Z)
    if bottom < 0:
        prim.center = prim.center + np.array([0.0, 0.0, -bottom])


def _sample_body(rng: np.random.Generator, tex: Texture):
    """The main body: a sphere, ellipsoid, box (yawed) or cylinder standing on the ground near the origin."""
    kind = str(rng.choice(["sphere", "ellipsoid", "box", "cylinder"]))
    if kind == "sphere":
        body = Sphere(np.zeros(3), rng.uniform(0.32, 0.5), tex)
    elif kind == "ellipsoid":
        radii = np.array([rng.uniform(0.22, 0.5), rng.uniform(0.22, 0.5), rng.uniform(0.25, 0.55)])
        body = Ellipsoid(np.zeros(3), radii, _rot_z(rng.uniform(0, 2 * np.pi)) @ _small_tilt(rng, 10), tex)
    elif kind == "box":
        body = Box(np.zeros(3), rng.uniform(0.2, 0.45, 3), _rot_z(rng.uniform(0, 2 * np.pi)), tex)
    else:
        body = Cylinder(np.zeros(3), rng.uniform(0.22, 0.42), rng.uniform(0.2, 0.5), tex)
    body.center = np.array([*rng.normal(0.0, 0.05, 2), body.extent(-_Z)])
    return body


def _sample_object(rng: np.random.Generator) -> list:
    """Main body plus 1-3 parts (a pedestal, something on top, things on the sides): 2-4 primitives."""
    body_tex = _front_texture(rng)
    body = _sample_body(rng, body_tex)
    prims = [body]
    n_parts = int(rng.integers(1, 4))
    has_top = False
    for j in range(n_parts):
        tex = body_tex if rng.uniform() < 0.5 else _front_texture(rng)
        role = str(rng.choice(["pedestal", "top", "side"], p=[0.2, 0.35, 0.45]))
        if (role == "pedestal" and j > 0) or (role == "top" and has_top):
            role = "side"
        if role == "pedestal":  # the body stands on a flat disc
            hh = rng.uniform(0.04, 0.1)
            radius = rng.uniform(0.7, 1.0) * max(body.extent(np.array([1.0, 0, 0])), body.extent(np.array([0, 1.0, 0])))
            body.center = body.center + np.array([0.0, 0.0, 2 * hh])
            prims.append(Cylinder(np.array([body.center[0], body.center[1], hh]), radius, hh, tex))
        elif role == "top":
            has_top = True
            part = _shape(rng, str(rng.choice(["sphere", "box", "cylinder", "ellipsoid"])), rng.uniform(0.1, 0.22), tex)
            part.center = body.center + np.array([*rng.normal(0, 0.05, 2), body.extent(_Z) + 0.8 * part.extent(-_Z)])
            prims.append(part)
        else:
            phi = rng.uniform(0, 2 * np.pi)
            u = np.array([math.cos(phi), math.sin(phi), 0.0])
            kind = str(rng.choice(["sphere", "box", "cylinder", "ellipsoid"]))
            part = _shape(rng, kind, rng.uniform(0.08, 0.18), tex, along=u if kind in ("ellipsoid", "box") else None)
            hz = rng.uniform(-0.4, 0.4) * body.extent(_Z)
            part.center = body.center + hz * _Z + u * (0.85 * body.extent(u) + 0.5 * part.extent(u))
            _lift_to_ground(part)
            prims.append(part)
    return prims


def _scale_about_origin(prims: list, factor: float) -> None:
    """Scale primitives (positions and sizes) about the world origin: what stands on z = 0 keeps standing on it."""
    for p in prims:
        p.center = p.center * factor
        for attr in ("radius", "half_height", "radii", "half_extents"):
            if hasattr(p, attr):
                setattr(p, attr, getattr(p, attr) * factor)


def _bounds_center(prims: list) -> np.ndarray:
    """Centre of the axis-aligned bounding box of the primitives."""
    axes = np.eye(3)
    hi = np.array([object_support(prims, np.zeros(3), e) for e in axes])
    lo = np.array([-object_support(prims, np.zeros(3), -e) for e in axes])
    return (hi + lo) / 2


def _bounding_radius(prims: list, center: np.ndarray, n_dirs: int = 256) -> float:
    """Largest distance from `center` to the primitives' surfaces (max support over Fibonacci directions)."""
    i = np.arange(n_dirs) + 0.5
    z = 1 - 2 * i / n_dirs
    phi = np.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], -1)
    return max(object_support(prims, center, u) for u in dirs)


def _mode_knob(rng: np.random.Generator, mode: int, prims: list, back_dir: np.ndarray, eye0: np.ndarray, tex: Texture):
    """The mode's shape detail: a ball, cube or spike (growing every 3 modes) on the main body's hidden side.

    It starts a little below the body's middle, straight behind it as seen from view 0; while any of its surface
    is visible from camera 0 it shrinks, sinks and moves into the body, so view 0 never shows the mode's shape.
    """
    body = prims[0]
    scale = (1.0 + 0.3 * (mode // 3)) * rng.uniform(0.9, 1.1)
    kind = mode % 3
    for attempt in range(12):
        s = scale * 0.88**attempt
        if kind == 0:
            knob = Sphere(np.zeros(3), 0.13 * s, tex)
        elif kind == 1:
            knob = Box(np.zeros(3), np.full(3, 0.1 * s), _frame_along(back_dir), tex)
        else:
            knob = Ellipsoid(np.zeros(3), np.array([0.24, 0.07, 0.07]) * s, _frame_along(back_dir), tex)
        base = body.center - (0.2 + 0.04 * attempt) * body.extent(_Z) * _Z
        reach = (0.85 - 0.04 * attempt) * body.extent(back_dir) + 0.5 * knob.extent(back_dir)
        knob.center = base + back_dir * reach
        _lift_to_ground(knob)
        if occluded_from(prims, eye0, surface_points(knob, 128)).all():
            break
    return knob


# ------------------------------------------------------------------------------------------------ cameras
def _sample_cameras(
    rng: np.random.Generator, center: np.ndarray, views: int, resolution: int
) -> tuple[np.ndarray, np.ndarray]:
    """CO3D-like orbit: OpenCV world-to-camera [V, 4, 4] and pixel K [3, 3] (square image, centred principal point).

    Azimuth steps 360/V degrees (+ jitter); elevation swings smoothly between ~10 and ~40 degrees with view 0
    at the low end (so view 0 sees as little of the hidden top-back as possible); distance in [2.2, 3.2].
    """
    fov = math.radians(rng.uniform(40.0, 55.0))
    f = 0.5 * resolution / math.tan(fov / 2)
    K = np.array([[f, 0.0, resolution / 2], [0.0, f, resolution / 2], [0.0, 0.0, 1.0]])
    a0 = rng.uniform(0, 2 * np.pi)
    el_lo, el_hi = rng.uniform(10.0, 14.0), rng.uniform(32.0, 40.0)
    d_mid, d_amp, d_phase = rng.uniform(2.5, 2.9), rng.uniform(0.1, 0.3), rng.uniform(0, 2 * np.pi)
    s = np.arange(views) / views
    az = a0 + 2 * np.pi * s + np.radians(rng.normal(0.0, 2.0, views))
    el = np.radians(el_lo + (el_hi - el_lo) * 0.5 * (1 - np.cos(2 * np.pi * s)) + rng.normal(0.0, 1.0, views))
    dist = np.clip(d_mid + d_amp * np.sin(2 * np.pi * s + d_phase), 2.2, 3.2)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    w2c = np.zeros((views, 4, 4))
    for i in range(views):
        target = center + rng.normal(0.0, 0.03, 3)
        direction = np.array([math.cos(el[i]) * math.cos(az[i]), math.cos(el[i]) * math.sin(az[i]), math.sin(el[i])])
        eye = target + dist[i] * direction + rng.normal(0.0, 0.02, 3)
        m = look_at_w2c(torch.from_numpy(eye), torch.from_numpy(target), up).numpy()
        roll = np.eye(4)
        roll[:3, :3] = _rot_z(math.radians(rng.normal(0.0, 2.0)))  # about the camera's optical axis
        w2c[i] = roll @ m
    return w2c, K


def camera_center(w2c: np.ndarray) -> np.ndarray:
    """World position of an OpenCV world-to-camera camera."""
    return -w2c[:3, :3].T @ w2c[:3, 3]


# ------------------------------------------------------------------------------------------------- scenes
@dataclass
class ProceduralScene:
    """One sampled scene: what to ray cast, its cameras, and the hidden mode (the ground truth of the ambiguity)."""

    scene: RayScene
    w2c: np.ndarray  # [V, 4, 4] OpenCV world-to-camera
    K: np.ndarray  # [3, 3] pixel intrinsics
    resolution: int
    back_mode: int
    num_modes: int
    back_direction: np.ndarray  # -d0: horizontal unit vector from the object centre away from camera 0
    object_center: np.ndarray
    object_radius: float

    def render_view(self, i: int) -> Rendered:
        return render(self.scene, self.w2c[i], self.K, self.resolution, self.resolution)


def _sample_environment(rng: np.random.Generator) -> dict:
    """Ground texture, light and sky: drawn from their own stream, so they cannot reveal the mode."""
    a, b = _muted_color(rng), _muted_color(rng) * rng.uniform(0.6, 0.9)
    ground_tex = _texture(rng, a, b, kinds=("checker", "checker", "stripes", "noise"), freq=(1.2, 3.0))
    ground_tex.direction = np.array([*_unit(rng.normal(size=2)), 0.0])
    ground_tex.waves[:, 2] = 0.0
    l_az, l_el = rng.uniform(0, 2 * np.pi), math.radians(rng.uniform(35.0, 70.0))
    ambient = rng.uniform(0.35, 0.5)
    hue = rng.uniform(0.5, 0.7)
    return dict(
        ground=GroundPlane(ground_tex),
        light_dir=np.array([math.cos(l_el) * math.cos(l_az), math.cos(l_el) * math.sin(l_az), math.sin(l_el)]),
        ambient=ambient,
        diffuse=1.0 - ambient + rng.uniform(-0.05, 0.1),
        sky_top=_hsv(hue, rng.uniform(0.2, 0.5), rng.uniform(0.75, 0.95)),
        sky_horizon=_hsv(hue, rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0)),
    )


def sample_scene(
    seed: int, index: int, views: int, resolution: int, num_modes: int = 3, mode: Optional[int] = None
) -> ProceduralScene:
    """Scene `index` of the dataset with this seed; `mode` forces the hidden back mode (else it is drawn).

    Independent streams: [seed, index, 0] object, 1 hidden mode, 2 cameras, 3 environment. Forcing the mode
    changes only the back side, so renders of view 0 with different modes differ (almost) nowhere.
    """
    rng_obj, rng_back, rng_cam, rng_env = (np.random.default_rng([seed, index, k]) for k in range(4))
    prims = _sample_object(rng_obj)
    _scale_about_origin(prims, rng_obj.uniform(0.5, 0.8) / _bounding_radius(prims, _bounds_center(prims)))
    center = _bounds_center(prims)
    w2c, K = _sample_cameras(rng_cam, center, views, resolution)
    eye0 = camera_center(w2c[0])
    d0 = _unit(np.array([eye0[0] - center[0], eye0[1] - center[1], 0.0]))
    back_dir = -d0
    drawn = int(rng_back.integers(num_modes))
    back_mode = drawn if mode is None else int(mode)
    if not 0 <= back_mode < num_modes:
        raise SplatdiffError(f"mode {back_mode} is out of range for num_modes={num_modes}.")
    back_tex = _mode_texture(rng_back, mode_palette(num_modes)[back_mode])
    prims.append(_mode_knob(rng_back, back_mode, prims, back_dir, eye0, back_tex))
    env = _sample_environment(rng_env)
    scene = RayScene(primitives=prims, back_side=BackSide(center, back_dir, back_tex, hidden_from=eye0), **env)
    return ProceduralScene(scene, w2c, K, resolution, back_mode, num_modes, back_dir, center,
                           _bounding_radius(prims, center))  # fmt: skip


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


def sequence_name(index: int) -> str:
    return f"proc_{index:06d}"


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


def write_scene(task: SceneTask) -> tuple[int, list[dict], dict]:
    """Render every view of one scene and write its images, masks and depths; return its annotations."""
    sc = sample_scene(task.seed, task.index, task.views, task.resolution, task.num_modes)
    root, seq, H = Path(task.root), sequence_name(task.index), task.resolution
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
        })  # fmt: skip
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
        },
    }
    return task.index, frames, seq_anno


def split_of(index: int, num_scenes: int) -> str:
    """Deterministic whole-sequence split: every 10th sequence is test (at least one when N >= 2), every 20th
    (offset) is val, the rest train; stable when more scenes are added."""
    if index % 10 == 9 or (num_scenes >= 2 and num_scenes < 10 and index == num_scenes - 1):
        return "test"
    if index % 20 == 4:
        return "val"
    return "train"


def _set_lists(frames: list[dict], num_scenes: int) -> dict[str, list]:
    lists: dict[str, list] = {"train": [], "val": [], "test": []}
    for fr in frames:
        idx = int(fr["sequence_name"].rsplit("_", 1)[1])
        lists[split_of(idx, num_scenes)].append([fr["sequence_name"], fr["frame_number"], fr["image"]["path"]])
    return lists


def _validate(scenes: int, views: int, resolution: int, num_modes: int, workers: int, category: str) -> None:
    """One clear error per bad argument, before anything is written."""
    if scenes < 1:
        raise SplatdiffError(f"--scenes must be at least 1 (got {scenes}).")
    if views < 2:
        raise SplatdiffError(f"--views must be at least 2 for a multi-view dataset (got {views}).")
    if resolution < 8:
        raise SplatdiffError(f"--resolution must be at least 8 pixels (got {resolution}).")
    if num_modes < 1:
        raise SplatdiffError(f"--num-modes must be at least 1 (got {num_modes}).")
    if workers < 0:
        raise SplatdiffError(f"--workers must be 0 or more (got {workers}).")
    if not category or category in (".", "..") or "/" in category or "\\" in category:
        raise SplatdiffError(f"--category must be a plain folder name (got {category!r}).")


def _prepare_output(output: Path, category: str, overwrite: bool) -> Path:
    """Create <output>/<category>; refuse to touch an existing dataset unless `overwrite`, then clear it."""
    cat_dir = output / category
    if output.exists() and not output.is_dir():
        raise SplatdiffError(f"--output {output} is a file; give a folder for the dataset.")
    ours = [cat_dir / n for n in ANNOTATION_FILES] + [cat_dir / "set_lists" / f"set_lists_{s}.json" for s in SUBSETS]
    existing = [p for p in ours if p.exists()]
    if existing and not overwrite:
        raise SplatdiffError(
            f"{cat_dir} already holds a dataset ({existing[0].name}); pass --overwrite to replace it, "
            "or choose another --output or --category."
        )
    if overwrite and cat_dir.is_dir():  # drop the old annotations first, so a crash never leaves them stale
        for p in existing + [cat_dir / "preview.png"]:
            p.unlink(missing_ok=True)
        for seq_dir in cat_dir.glob("proc_*"):
            if seq_dir.is_dir() and (seq_dir / "images").is_dir():
                shutil.rmtree(seq_dir)
    (cat_dir / "set_lists").mkdir(parents=True, exist_ok=True)
    return cat_dir


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core; no nested thread pools


def _progress() -> Progress:
    return Progress(TextColumn("[bold blue]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), console=CONSOLE)  # fmt: skip


def _run_tasks(tasks: list[SceneTask], workers: int) -> dict[int, tuple[list[dict], dict]]:
    """Write all scenes, in this process (workers <= 1) or a spawn Pool, with a progress bar."""
    results: dict[int, tuple[list[dict], dict]] = {}
    with _progress() as progress:
        bar = progress.add_task("rendering scenes", total=len(tasks))
        if workers <= 1:
            for task in tasks:
                idx, frames, seq = write_scene(task)
                results[idx] = (frames, seq)
                progress.advance(bar)
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(tasks)), initializer=_init_worker) as pool:
                for idx, frames, seq in pool.imap_unordered(write_scene, tasks):
                    results[idx] = (frames, seq)
                    progress.advance(bar)
    return results


def write_preview(cat_dir: Path, frames: list[dict], root: Path, scenes: int = 6, views: int = 6) -> Path:
    """A contact sheet of the first few scenes (rows) x evenly spaced views (columns), read back from disk."""
    by_seq: dict[str, list[dict]] = {}
    for fr in frames:
        by_seq.setdefault(fr["sequence_name"], []).append(fr)
    rows = []
    for seq in sorted(by_seq)[:scenes]:
        seq_frames = by_seq[seq]
        picks = sorted(set(np.linspace(0, len(seq_frames) - 1, min(views, len(seq_frames))).round().astype(int)))
        images = [np.array(Image.open(root / seq_frames[j]["image"]["path"])) for j in picks]
        rows.append([torch.from_numpy(im).float() / 255 for im in images])
    return save_png(cat_dir / "preview.png", contact_sheet(rows))


def generate_dataset(
    output: PathLike,
    scenes: int,
    views: int,
    resolution: int,
    seed: int,
    category: str = "procedural",
    workers: int = 0,
    num_modes: int = 3,
    overwrite: bool = False,
    preview: bool = False,
) -> Path:
    """Generate `scenes` procedural sequences of `views` R x R views in CO3D v2 layout; return <output>/<category>.

    Images, masks and depths are written first, the annotations and set lists last, so a finished
    frame_annotations.jgz means a complete dataset.
    """
    t0 = time.perf_counter()
    _validate(scenes, views, resolution, num_modes, workers, category)
    root = Path(output)
    cat_dir = _prepare_output(root, category, overwrite)
    tasks = [SceneTask(str(root), category, seed, i, views, resolution, num_modes) for i in range(scenes)]
    results = _run_tasks(tasks, workers)
    frames = [fr for i in range(scenes) for fr in results[i][0]]
    seqs = [results[i][1] for i in range(scenes)]
    lists = _set_lists(frames, scenes)
    for subset in SUBSETS:
        (cat_dir / "set_lists" / f"set_lists_{subset}.json").write_text(json.dumps(lists))
    write_jgz(cat_dir / "sequence_annotations.jgz", seqs)
    write_jgz(cat_dir / "frame_annotations.jgz", frames)
    extra = ""
    if preview:
        extra = f", preview {write_preview(cat_dir, frames, root)}"
    CONSOLE.print(
        f"[bold green]Wrote[/] {scenes} scenes x {views} views ({resolution}x{resolution}) to {cat_dir} "
        f"in {time.perf_counter() - t0:.1f} s{extra}"
    )
    return cat_dir


# ---------------------------------------------------------------------------------------------------- CLI
@dataclass
class MakeProcedural:
    """Write a procedural multi-view dataset (textured primitives on a ground, ambiguous back) in CO3D v2 layout."""

    output: Path
    """Dataset root: the data goes to <output>/<category>/."""
    scenes: int = 200
    """Number of sequences (scenes)."""
    views: int = 24
    """Views per sequence, on a CO3D-like orbit."""
    resolution: int = 128
    """Square image size in pixels."""
    seed: int = 0
    """Scene i depends only on (seed, i)."""
    category: str = "procedural"
    """CO3D category folder name."""
    workers: int = 2
    """Processes; 0 or 1 renders in this process."""
    num_modes: int = 3
    """Number of discrete appearance / shape modes of the side hidden from view 0."""
    overwrite: bool = False
    """Replace an existing dataset in <output>/<category>."""
    preview: bool = False
    """Also write <output>/<category>/preview.png, a contact sheet of the first scenes."""

    def main(self) -> Path:
        return generate_dataset(
            self.output, self.scenes, self.views, self.resolution, self.seed, self.category, self.workers,
            self.num_modes, self.overwrite, self.preview,
        )  # fmt: skip


def entrypoint() -> None:
    from nerfstudio_splatdiff.scripts.cli import run_command

    run_command(MakeProcedural)


if __name__ == "__main__":
    entrypoint()
