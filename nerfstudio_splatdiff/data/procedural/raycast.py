"""An analytic ray caster in numpy: textured primitives on a ground plane, Lambertian shading.

It is deliberately independent of the Gaussian rasteriser (exact ray / surface intersections, no splats, no
alpha compositing), so procedural data made with it shares none of the model's rendering assumptions.

Conventions: world +Z is up, the ground is the plane z = `height`; cameras are OpenCV (x right, y down,
z forward) world-to-camera 4x4 matrices and pixel intrinsics K, rays pass through pixel centres
(u + 0.5, v + 0.5). Each ray direction has camera-space z = 1, so the ray parameter t of a hit *is* the
camera-space z depth. All 3-vector rotations are written out element-wise (no BLAS) so that worker
processes stay single-threaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

BACKGROUND_ID = -1
GROUND_ID = 0
TEXTURE_KINDS = ("solid", "stripes", "checker", "dots", "noise")
_T_MIN = 1e-6


def _rot(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """R @ v for every row of v [N, 3], written element-wise."""
    return v[..., 0:1] * R[:, 0] + v[..., 1:2] * R[:, 1] + v[..., 2:3] * R[:, 2]


def _rot_t(R: np.ndarray, v: np.ndarray) -> np.ndarray:
    """R^T @ v for every row of v [N, 3] (world -> local frame of a rotated primitive)."""
    return _rot(R.T, v)


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _nearest_root(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Smallest t > 0 of a t^2 + 2 b t + c = 0 (inf when there is none): the entry point of a quadric."""
    disc = b * b - a * c
    hit = disc >= 0
    sq = np.sqrt(np.where(hit, disc, 0.0))
    t0 = (-b - sq) / a
    t1 = (-b + sq) / a
    t = np.where(t0 > _T_MIN, t0, t1)
    return np.where(hit & (t > _T_MIN), t, np.inf)


# --------------------------------------------------------------------------------------------- textures
@dataclass
class Texture:
    """A procedural 3D texture evaluated at world points: mixes `color_a` and `color_b` by a pattern in [0, 1].

    kinds: solid (color_a), stripes (along `direction`), checker (3D cells of size 1 / frequency), dots (a 3D
    lattice of balls cut by the surface), noise (a few summed sinusoids with wave vectors `waves`).
    """

    kind: str
    color_a: np.ndarray
    color_b: np.ndarray
    frequency: float = 4.0
    direction: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    offset: np.ndarray = field(default_factory=lambda: np.zeros(3))
    waves: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    phases: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if self.kind not in TEXTURE_KINDS:
            raise ValueError(f"unknown texture kind {self.kind!r}; use one of {TEXTURE_KINDS}")

    def pattern(self, p: np.ndarray) -> np.ndarray:
        """Mixing weight [N] in [0, 1] at world points p [N, 3]; soft edges keep aliasing down at low resolution."""
        q = (p + self.offset) * self.frequency
        if self.kind == "solid":
            return np.zeros(len(p))
        if self.kind == "stripes":
            s = np.sin(2 * np.pi * (q * self.direction).sum(-1))
            return np.clip(0.5 + 2.0 * s, 0.0, 1.0)
        if self.kind == "checker":
            return (np.floor(q).sum(-1) % 2).astype(np.float64)
        if self.kind == "dots":
            r = np.sqrt(((q - np.round(q)) ** 2).sum(-1))
            return np.clip((0.33 - r) * 12.0, 0.0, 1.0)
        # noise: smooth, band-limited, cheap
        s = np.zeros(len(p))
        for w, ph in zip(self.waves, self.phases):
            s += np.sin((p * w).sum(-1) + ph)
        return 0.5 + 0.5 * np.tanh(1.5 * s / max(1.0, np.sqrt(len(self.phases))))

    def __call__(self, p: np.ndarray) -> np.ndarray:
        """Albedo [N, 3] at world points p [N, 3]."""
        w = self.pattern(p)[:, None]
        return self.color_a * (1.0 - w) + self.color_b * w


# ------------------------------------------------------------------------------------------- primitives
@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    texture: Texture

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Ray parameter t [N] of the first hit (inf on a miss) for rays o + t d."""
        oc = o - self.center
        return _nearest_root((d * d).sum(-1), (oc * d).sum(-1), (oc * oc).sum(-1) - self.radius**2)

    def normal(self, p: np.ndarray) -> np.ndarray:
        return _normalize(p - self.center)

    def extent(self, u: np.ndarray) -> float:
        """How far the surface reaches from the centre along the unit vector u (the support function)."""
        return float(self.radius)

    def bounding_radius(self) -> float:
        return float(self.radius)


@dataclass
class Ellipsoid:
    """Axis-aligned radii in the local frame, then rotated by `rotation` (local -> world) about the centre."""

    center: np.ndarray
    radii: np.ndarray
    rotation: np.ndarray
    texture: Texture

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        lo = _rot_t(self.rotation, o - self.center) / self.radii  # the ellipsoid becomes the unit sphere
        ld = _rot_t(self.rotation, d) / self.radii
        return _nearest_root((ld * ld).sum(-1), (lo * ld).sum(-1), (lo * lo).sum(-1) - 1.0)

    def normal(self, p: np.ndarray) -> np.ndarray:
        q = _rot_t(self.rotation, p - self.center)
        return _normalize(_rot(self.rotation, q / self.radii**2))  # gradient of sum(q^2 / r^2)

    def extent(self, u: np.ndarray) -> float:
        return float(np.linalg.norm(self.radii * (self.rotation.T @ u)))

    def bounding_radius(self) -> float:
        return float(np.max(self.radii))


@dataclass
class Box:
    """An oriented box: half extents along its local axes, `rotation` maps local -> world."""

    center: np.ndarray
    half_extents: np.ndarray
    rotation: np.ndarray
    texture: Texture

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        lo = _rot_t(self.rotation, o - self.center)
        ld = _rot_t(self.rotation, d)
        ld = np.where(np.abs(ld) < 1e-12, 1e-12, ld)  # slabs: avoid 0 * inf
        t1 = (-self.half_extents - lo) / ld
        t2 = (self.half_extents - lo) / ld
        t_near = np.minimum(t1, t2).max(-1)
        t_far = np.maximum(t1, t2).min(-1)
        t = np.where(t_near > _T_MIN, t_near, t_far)
        return np.where((t_far >= t_near) & (t > _T_MIN), t, np.inf)

    def normal(self, p: np.ndarray) -> np.ndarray:
        q = _rot_t(self.rotation, p - self.center) / self.half_extents
        axis = np.abs(q).argmax(-1)  # the face the point lies on
        n = np.zeros_like(q)
        n[np.arange(len(q)), axis] = np.sign(q[np.arange(len(q)), axis])
        return _rot(self.rotation, n)

    def extent(self, u: np.ndarray) -> float:
        return float((self.half_extents * np.abs(self.rotation.T @ u)).sum())

    def bounding_radius(self) -> float:
        return float(np.linalg.norm(self.half_extents))


@dataclass
class Cylinder:
    """A capped cylinder with a vertical (world z) axis, centred at `center`, height 2 * half_height."""

    center: np.ndarray
    radius: float
    half_height: float
    texture: Texture

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        lo = o - self.center
        a = d[:, 0] ** 2 + d[:, 1] ** 2
        b = lo[:, 0] * d[:, 0] + lo[:, 1] * d[:, 1]
        c = lo[:, 0] ** 2 + lo[:, 1] ** 2 - self.radius**2
        t_side = _nearest_root(np.maximum(a, 1e-12), b, c)
        t_side = np.where(np.abs(lo[:, 2] + t_side * d[:, 2]) <= self.half_height, t_side, np.inf)
        t = t_side
        dz = np.where(np.abs(d[:, 2]) < 1e-12, 1e-12, d[:, 2])
        for zc in (-self.half_height, self.half_height):
            tc = (zc - lo[:, 2]) / dz
            x = lo[:, 0] + tc * d[:, 0]
            y = lo[:, 1] + tc * d[:, 1]
            tc = np.where((tc > _T_MIN) & (x * x + y * y <= self.radius**2), tc, np.inf)
            t = np.minimum(t, tc)
        return t

    def normal(self, p: np.ndarray) -> np.ndarray:
        q = p - self.center
        radial = np.sqrt(q[:, 0] ** 2 + q[:, 1] ** 2)
        on_cap = np.abs(q[:, 2]) / self.half_height > radial / self.radius
        n_side = np.stack([q[:, 0], q[:, 1], np.zeros(len(q))], -1)
        n_cap = np.stack([np.zeros(len(q)), np.zeros(len(q)), np.sign(q[:, 2])], -1)
        return _normalize(np.where(on_cap[:, None], n_cap, n_side))

    def extent(self, u: np.ndarray) -> float:
        return float(self.radius * np.hypot(u[0], u[1]) + self.half_height * abs(u[2]))

    def bounding_radius(self) -> float:
        return float(np.hypot(self.radius, self.half_height))


Primitive = Sphere | Ellipsoid | Box | Cylinder


@dataclass
class GroundPlane:
    """The infinite plane z = height seen from above; hits farther than `max_depth` count as background."""

    texture: Texture
    height: float = 0.0
    max_depth: float = 30.0

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        dz = np.where(d[:, 2] < -1e-12, d[:, 2], -1e-12)
        t = (self.height - o[:, 2]) / dz
        return np.where((d[:, 2] < -1e-12) & (t > _T_MIN) & (t <= self.max_depth), t, np.inf)


@dataclass
class BackSide:
    """Object points with (p - point) . normal > 0 take `texture` instead of their own (the hidden side).

    With `hidden_from` (a camera centre) only such points that are also occluded from there qualify, so a
    camera at `hidden_from` never sees the back texture: on a yawed box or a raised body an elevated camera sees
    some surface just behind the plane, and that would otherwise give the hidden side away.
    """

    point: np.ndarray
    normal: np.ndarray
    texture: Texture
    hidden_from: Optional[np.ndarray] = None

    def selects(self, p: np.ndarray, occluders: Sequence) -> np.ndarray:
        """Which object points p [N, 3] take the back texture ([N] bool)."""
        back = ((p - self.point) * self.normal).sum(-1) > 0
        if self.hidden_from is not None and back.any():
            idx = np.flatnonzero(back)
            back[idx] = occluded_from(occluders, self.hidden_from, p[idx])
        return back


@dataclass
class RayScene:
    """Object primitives (ids 1..n), an optional ground (id 0), one directional light and a sky gradient."""

    primitives: list
    ground: Optional[GroundPlane]
    light_dir: np.ndarray  # unit vector pointing towards the light
    ambient: float = 0.4
    diffuse: float = 0.6
    sky_top: np.ndarray = field(default_factory=lambda: np.array([0.55, 0.7, 0.9]))
    sky_horizon: np.ndarray = field(default_factory=lambda: np.array([0.9, 0.92, 0.95]))
    back_side: Optional[BackSide] = None
    fog_start: float = 8.0  # ground colour fades to the horizon colour from here to ground.max_depth


@dataclass
class Hits:
    """Per-ray results (flat [N] / [N, 3]): camera z depth (0 on a miss), world point, normal, primitive id."""

    depth: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    prim_id: np.ndarray


@dataclass
class Rendered:
    """One rendered view, as images: rgb [H, W, 3] in [0, 1], depth [H, W] (0 = background), normal
    [H, W, 3], world position [H, W, 3], primitive id [H, W] (-1 background, 0 ground, >= 1 object)."""

    rgb: np.ndarray
    depth: np.ndarray
    normal: np.ndarray
    position: np.ndarray
    prim_id: np.ndarray

    @property
    def object_mask(self) -> np.ndarray:
        return self.prim_id >= 1

    @property
    def depth_mask(self) -> np.ndarray:
        return self.prim_id >= 0


# ------------------------------------------------------------------------------------------- ray casting
def camera_rays(w2c: np.ndarray, K: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """World ray origins and directions [H*W, 3] through the pixel centres of an OpenCV camera.

    Directions are not unit length: their camera-space z is 1, so t along them equals camera z depth.
    """
    R, t = w2c[:3, :3], w2c[:3, 3]
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x = (u.ravel() - K[0, 2]) / K[0, 0]
    y = (v.ravel() - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x, y, np.ones_like(x)], -1)
    d = _rot_t(R, d_cam)  # camera -> world is R^T
    o = np.broadcast_to(-(R.T @ t), d.shape)
    return o, d


def cast(scene: RayScene, o: np.ndarray, d: np.ndarray) -> Hits:
    """First hits of rays o + t d against the ground and every object primitive."""
    n = len(d)
    t_best = np.full(n, np.inf)
    ids = np.full(n, BACKGROUND_ID, dtype=np.int32)
    if scene.ground is not None:
        t_best = scene.ground.intersect(o, d)
        ids[np.isfinite(t_best)] = GROUND_ID
    for k, prim in enumerate(scene.primitives, start=1):
        t = prim.intersect(o, d)
        closer = t < t_best
        t_best = np.where(closer, t, t_best)
        ids[closer] = k
    hit = ids >= 0
    pos = np.zeros((n, 3))
    pos[hit] = o[hit] + t_best[hit, None] * d[hit]
    normal = np.zeros((n, 3))
    normal[ids == GROUND_ID] = (0.0, 0.0, 1.0)
    for k, prim in enumerate(scene.primitives, start=1):
        sel = ids == k
        if sel.any():
            normal[sel] = prim.normal(pos[sel])
    return Hits(np.where(hit, t_best, 0.0), pos, normal, ids)


def shade(scene: RayScene, hits: Hits, d: np.ndarray) -> np.ndarray:
    """Colour [N, 3]: albedo * (ambient + diffuse * max(0, n . l)) on hits, the sky gradient elsewhere."""
    n = len(d)
    albedo = np.zeros((n, 3))
    ids = hits.prim_id
    if scene.ground is not None:
        sel = ids == GROUND_ID
        albedo[sel] = scene.ground.texture(hits.position[sel])
    for k, prim in enumerate(scene.primitives, start=1):
        sel = np.flatnonzero(ids == k)
        if len(sel) == 0:
            continue
        p = hits.position[sel]
        albedo[sel] = prim.texture(p)
        bs = scene.back_side
        if bs is not None:
            back = bs.selects(p, scene.primitives)
            if back.any():
                albedo[sel[back]] = bs.texture(p[back])
    normal = hits.normal
    facing = (normal * d).sum(-1) > 0  # seen from inside: light the side the camera sees
    normal = np.where(facing[:, None], -normal, normal)
    lambert = np.maximum(0.0, (normal * scene.light_dir).sum(-1))
    rgb = albedo * (scene.ambient + scene.diffuse * lambert)[:, None]
    up = _normalize(d)[:, 2]
    w = np.clip(up / 0.5, 0.0, 1.0)[:, None] ** 0.7
    sky = scene.sky_horizon * (1.0 - w) + scene.sky_top * w
    if scene.ground is not None:  # distance fog hides the ground's far edge and its aliasing
        fog = np.clip((hits.depth - scene.fog_start) / max(scene.ground.max_depth - scene.fog_start, 1e-6), 0, 1)
        fog = np.where(ids == GROUND_ID, fog, 0.0)[:, None]
        rgb = rgb * (1.0 - fog) + scene.sky_horizon * fog
    rgb = np.where((ids >= 0)[:, None], rgb, sky)
    return np.clip(rgb, 0.0, 1.0)


def render(scene: RayScene, w2c: np.ndarray, K: np.ndarray, height: int, width: int) -> Rendered:
    """Ray cast one view of an OpenCV camera (world-to-camera 4x4, pixel K 3x3)."""
    w2c = np.asarray(w2c, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    o, d = camera_rays(w2c, K, height, width)
    hits = cast(scene, o, d)
    rgb = shade(scene, hits, d)
    hw = (height, width)
    return Rendered(
        rgb.reshape(*hw, 3),
        hits.depth.reshape(hw),
        hits.normal.reshape(*hw, 3),
        hits.position.reshape(*hw, 3),
        hits.prim_id.reshape(hw),
    )


def object_support(primitives: Sequence[Primitive], center: np.ndarray, u: np.ndarray) -> float:
    """How far a set of primitives reaches from `center` along the unit vector u."""
    return max(float((p.center - center) @ u) + p.extent(u) for p in primitives)


def occluded_from(primitives: Sequence, eye: np.ndarray, points: np.ndarray, rel_tol: float = 1e-7) -> np.ndarray:
    """Whether each point [N, 3] is hidden from the point `eye` by any of the primitives ([N] bool).

    Rays go from eye to each point (t = 1 at the point), so a hit with t < 1 - rel_tol means something is in
    front; a point on a surface facing the eye hits only itself, at t = 1 up to rounding.
    """
    d = points - eye
    o = np.broadcast_to(eye, d.shape)
    t = np.full(len(points), np.inf)
    for prim in primitives:
        t = np.minimum(t, prim.intersect(o, d))
    return t < 1.0 - rel_tol


def surface_points(prim, n: int = 256) -> np.ndarray:
    """About n points [n, 3] on a primitive's surface: rays cast outward from its centre along Fibonacci directions."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5**0.5) * i
    dirs = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], -1)
    o = np.broadcast_to(prim.center, dirs.shape)
    t = prim.intersect(o, dirs)  # from inside, the far root: the exit point
    return o + t[:, None] * dirs
