"""The objects of the procedural scenes: palettes and textures, primitives and where they stand, and the hidden-side
mode detail (a knob kept out of the input camera's sight). Everything is drawn from the numpy generator it is given,
so the same stream gives the same object (scenes.py says which stream is which)."""

from __future__ import annotations

import colorsys
import math
from typing import Optional

import numpy as np

from nerfstudio_splatdiff.data.procedural.raycast import (
    Box,
    Cylinder,
    Ellipsoid,
    Sphere,
    Texture,
    object_support,
    occluded_from,
    surface_points,
)

_Z = np.array([0.0, 0.0, 1.0])
_FRONT_PATTERNS = ("stripes", "checker", "dots", "noise")


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


def _small_tilt(rng: np.random.Generator, max_deg: int | float) -> np.ndarray:
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
    _scale_sizes(prims, factor)


def _scale_sizes(prims: list, factor: float) -> None:
    """Scale the primitives' sizes (not their positions) by `factor`."""
    for p in prims:
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


def _mode_knob(
    rng: np.random.Generator, mode: int, prims: list, back_dir: np.ndarray, eye0: np.ndarray, tex: Texture,
    size: float = 1.0, on_ground: bool = True,
):
    """The mode's shape detail: a ball, cube or spike (growing every 3 modes) on the main body's hidden side.

    It starts a little below the body's middle, straight behind it as seen from view 0; while any of its surface
    is visible from camera 0 it shrinks, sinks and moves into the body, so view 0 never shows the mode's shape.
    """
    body = prims[0]
    scale = size * (1.0 + 0.3 * (mode // 3)) * rng.uniform(0.9, 1.1)
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
        if on_ground:
            _lift_to_ground(knob)
        if occluded_from(prims, eye0, surface_points(knob, 128)).all():
            break
    return knob


SHAPE_MODES = ("none", "horn", "block")
"""Shape-only modes (`--modes shape`), cycling every 3 modes (and growing by 30% with each cycle): nothing behind the
body (its own round back), a long horn, or a block that carries the body's cross-section back (a flat-cut back).
Each lies along the input camera's line of sight through the body, inside the body's shadow as seen from camera 0,
and takes the body's own texture, so only the shape tells the modes apart: the silhouette seen from the sides and
the depth seen from the back."""
SHAPE_REACH = {"horn": 2.4, "block": 1.6}
"""How far (in body extents along the line of sight, from the body's centre) the horn and the block reach back: the
horn far and thick enough to change the side silhouettes as much as the shorter, wider block does."""
HORN_THICKNESS = 0.6
"""The horn's radius as a fraction of the body's smaller cross-section extent (before shrinking out of sight)."""
HORN_LIFT = 0.45
"""The horn's axis lies this fraction of the body's vertical extent above the line of sight (the upper half)."""
BLOCK_WIDTH, BLOCK_HEIGHT = 0.8, 0.8
"""The block's half width and half height as fractions of the body's side and vertical extents (before shrinking
out of sight): the body's cross-section carried back, a flat-cut back."""


def shape_mode_part(mode: int, prims: list, eye0: np.ndarray, tex: Texture):
    """The hidden-side part of a shape mode (None for the bare back; see SHAPE_MODES), kept out of camera 0's sight.

    The part is laid along u, the line of sight from camera 0 through the body's centre: it starts inside the body
    and reaches SHAPE_REACH body extents behind its centre. Its cross-section starts at the body's own (the block) or a
    third of it (the horn) and shrinks until no point of its surface is visible from camera 0, then once more (10%),
    so that no edge between the tested surface points peeks out either: view 0 is the same for every mode.
    """
    kind = mode % len(SHAPE_MODES)
    if SHAPE_MODES[kind] == "none":
        return None
    body = prims[0]
    u = _unit(body.center - eye0)
    side = _unit(np.cross(u, _Z))
    up = np.cross(side, u)
    rot = np.stack([u, side, up], axis=1)  # local x along the line of sight
    grow = 1.0 + 0.3 * (mode // len(SHAPE_MODES))
    reach = SHAPE_REACH[SHAPE_MODES[kind]]
    extent_u = body.extent(u)
    half_len = 0.5 * reach * extent_u * grow
    center = body.center + u * (reach * extent_u * grow - half_len)
    cross = np.array([body.extent(side), body.extent(up)])

    def make(shrink: float):
        if SHAPE_MODES[kind] == "horn":  # in the upper half of the body's shadow
            radii = np.array([half_len, *(HORN_THICKNESS * cross.min() * shrink * np.ones(2))])
            return Ellipsoid(center + HORN_LIFT * cross[1] * up, radii, rot, tex)
        half = np.array([half_len, BLOCK_WIDTH * cross[0] * shrink, BLOCK_HEIGHT * cross[1] * shrink])
        return Box(center.copy(), half, rot, tex)

    attempt = 0
    while attempt < 24 and not occluded_from(prims, eye0, surface_points(make(0.9**attempt), 2048)).all():
        attempt += 1
    return make(0.9 ** (attempt + 1))
