"""One procedural scene from (seed, index): its object (shapes.py), hidden-side mode, CO3D-like camera orbit and
environment, each from its own random stream, and for `object` scenes framed to cover 25-40% of the input view."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np
import torch

from nerfstudio_splatdiff.data.procedural.raycast import BackSide, GroundPlane, RayScene, Rendered, render
from nerfstudio_splatdiff.data.procedural.shapes import (
    _bounding_radius,
    _bounds_center,
    _hsv,
    _mode_knob,
    _mode_texture,
    _muted_color,
    _rot_z,
    _sample_object,
    _scale_about_origin,
    _scale_sizes,
    _texture,
    _unit,
    mode_palette,
    shape_mode_part,
)
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.orbit import look_at_w2c


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


SceneKind = Literal["full", "object"]
SCENE_KINDS: tuple[str, ...] = ("full", "object")
ModeKind = Literal["colour", "shape"]
MODE_KINDS: tuple[str, ...] = ("colour", "shape")
"""What the hidden-side modes change: `colour` (the colour proving ground: a mode's colour on the hidden side plus a
small knob) or `shape` (the geometry proving ground: the hidden side keeps the body's own texture and the modes
differ in shape only, shapes.SHAPE_MODES). `shape` needs `object` scenes."""
OBJECT_COVERAGE = (0.25, 0.40)
"""`object` scenes: the fraction of the input view the object covers is drawn uniformly from this range."""
SHAPE_COVERAGE = (0.10, 0.17)
"""`object` scenes with shape modes: the body alone covers this much of the input view, smaller than
OBJECT_COVERAGE, so that a horn or block reaching back stays inside the frame of every orbit view and, all but its
tip, inside the Splatter Image's depth range (centre +- 1 after normalising the camera distance to 2): the horn's tip
reaches ~0.25 past it, 1-2% of the horn's surface (benchmarks/shape_diagnostics.py horns)."""
OBJECT_KNOB_SIZE = 1.8
"""`object` scenes: the hidden-side shape detail is this much larger than in `full` scenes (a clear shape mode)."""
BACKGROUND = np.ones(3)
"""`object` scenes: the plain background colour (white), in the data and for the models that train on it."""


def _object_environment(rng: np.random.Generator) -> dict:
    """Light of an `object` scene (its own stream, as in `full` scenes), no ground, a plain white background."""
    env = _sample_environment(rng)
    return dict(ground=None, light_dir=env["light_dir"], ambient=env["ambient"], diffuse=env["diffuse"],
                sky_top=BACKGROUND.copy(), sky_horizon=BACKGROUND.copy())


def _coverage(prims: list, w2c: np.ndarray, K: np.ndarray, resolution: int, size: int = 48) -> float:
    """Fraction of a view's pixels the primitives cover (ray cast at a low resolution)."""
    Ks = K.copy()
    Ks[:2] *= size / resolution
    light = np.array([0.0, 0.0, 1.0])
    out = render(RayScene(primitives=prims, ground=None, light_dir=light), w2c, Ks, size, size)
    return float(out.object_mask.mean())


def _fit_coverage(prims: list, center: np.ndarray, w2c: np.ndarray, K: np.ndarray, resolution: int,
                  target: float) -> None:
    """Scale the primitives about `center` until the object covers about `target` of view `w2c` (two passes)."""
    for _ in range(2):
        frac = _coverage(prims, w2c, K, resolution)
        factor = float(np.clip(math.sqrt(target / max(frac, 1e-3)), 0.5, 2.0))
        for p in prims:
            p.center = center + (p.center - center) * factor
        _scale_sizes(prims, factor)


def _draw_mode(rng_back: np.random.Generator, num_modes: int) -> int:
    """The hidden-side mode: the first draw of the scene's hidden-mode stream."""
    return int(rng_back.integers(num_modes))


def drawn_mode(seed: int, index: int, num_modes: int = 3) -> int:
    """The hidden-side mode scene `index` has when it is not forced (its true completion), without rendering it."""
    return _draw_mode(np.random.default_rng([seed, index, 1]), num_modes)


def sample_scene(
    seed: int, index: int, views: int, resolution: int, num_modes: int = 3, mode: Optional[int] = None,
    kind: SceneKind = "full",
    mode_kind: ModeKind = "colour",
) -> ProceduralScene:
    """Scene `index` of the dataset with this seed; `mode` forces the hidden back mode (else it is drawn).

    Independent streams: [seed, index, 0] object, 1 hidden mode, 2 cameras, 3 environment. Forcing the mode
    changes only the back side, so renders of view 0 with different modes differ (almost) nowhere.
    """
    if kind not in SCENE_KINDS:
        raise SplatdiffError(f"Unknown scene kind {kind!r}; use one of {', '.join(SCENE_KINDS)}.")
    if mode_kind not in MODE_KINDS or (mode_kind == "shape" and kind != "object"):
        raise SplatdiffError(f"Mode kind {mode_kind!r} needs --kind object and one of {', '.join(MODE_KINDS)}.")
    rng_obj, rng_back, rng_cam, rng_env = (np.random.default_rng([seed, index, k]) for k in range(4))
    prims = _sample_object(rng_obj)
    _scale_about_origin(prims, rng_obj.uniform(0.5, 0.8) / _bounding_radius(prims, _bounds_center(prims)))
    center = _bounds_center(prims)
    w2c, K = _sample_cameras(rng_cam, center, views, resolution)
    if kind == "object":  # frame the object: 25-40% of the input view (drawn from the object's own stream)
        coverage = SHAPE_COVERAGE if mode_kind == "shape" else OBJECT_COVERAGE
        _fit_coverage(prims, center, w2c[0], K, resolution, float(rng_obj.uniform(*coverage)))
    eye0 = camera_center(w2c[0])
    d0 = _unit(np.array([eye0[0] - center[0], eye0[1] - center[1], 0.0]))
    back_dir = -d0
    drawn = _draw_mode(rng_back, num_modes)
    back_mode = drawn if mode is None else int(mode)
    if not 0 <= back_mode < num_modes:
        raise SplatdiffError(f"mode {back_mode} is out of range for num_modes={num_modes}.")
    env = _object_environment(rng_env) if kind == "object" else _sample_environment(rng_env)
    if mode_kind == "shape":  # the body's own texture everywhere; only the hidden part's shape changes
        part = shape_mode_part(back_mode, prims, eye0, prims[0].texture)
        prims += [part] if part is not None else []
        scene = RayScene(primitives=prims, **env)
    else:
        back_tex = _mode_texture(rng_back, mode_palette(num_modes)[back_mode])
        knob_size, on_ground = (OBJECT_KNOB_SIZE, False) if kind == "object" else (1.0, True)
        prims.append(_mode_knob(rng_back, back_mode, prims, back_dir, eye0, back_tex, knob_size, on_ground))
        scene = RayScene(primitives=prims, back_side=BackSide(center, back_dir, back_tex, hidden_from=eye0), **env)
    return ProceduralScene(scene, w2c, K, resolution, back_mode, num_modes, back_dir, center,
                           _bounding_radius(prims, center))
