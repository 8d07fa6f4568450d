"""Tile-parallel CPU rasteriser in numba: the torch rasteriser's image formation with a hand-written backward.

Same contract and same numbers as `rasterize_torch` (which stays the reference), several times faster on CPU:

1. Projection (3D -> 2D, EWA, exactly `project_gaussians`) in numba, with its own backward; when the cameras
   require gradients it runs in torch instead (`visible_footprints`), so autograd reaches them.
2. Each valid Gaussian gets the pixel box of `pixel_boxes` (gsplat's 16x16 tiles from the 3-sigma radius, cut
   to the alpha >= 1/255 ellipse's box) and is binned into the tiles of that box, in depth order (stable, so
   ties keep index order as in the torch path's sort).
3. Forward, in parallel over tiles: per pixel, front-to-back over the tile's Gaussians, alpha =
   min(0.999, o exp(-sigma)), skip alpha < 1/255, stop before the Gaussian that would take the transmittance to
   1e-4 or below; accumulate weight x (colour, depth, 1). Kept for the backward: the final transmittance and
   how far along its tile's list each pixel went.
4. Backward, in parallel over tiles: per pixel, back-to-front from that point, recovering the transmittance by
   division (as gsplat does, in float64), giving gradients w.r.t. means2d, conics, opacities and the
   deposited features. Each (tile, Gaussian) intersection owns its own gradient row, so tiles never write to
   the same memory; the rows are summed per Gaussian afterwards (deterministically).

The kernels compute in float64 whatever the input dtype (one specialisation, so a cold start compiles once;
float32 inputs are converted, results converted back). The torch path rounds its float32 projection, so with
float32 inputs a (Gaussian, pixel) pair whose alpha lies within that rounding of 1/255, or a 3-sigma box edge on a
tile border, can fall on the other side: a few pairs in millions, each changing its pixel by at most about 1/255
(the same effect as between gsplat and the torch path). With float64 inputs the two agree to ~1e-12.
Kernels compile on first use and are cached on disk (numba cache=True).
"""

from __future__ import annotations

import os
import threading
from types import ModuleType

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.splats.projection import ALPHA_MAX, ALPHA_MIN
from nerfstudio_splatdiff.splats.rasterize_torch import composite_outputs, pixel_boxes, visible_footprints

PROJECTION_ENV = "SPLATDIFF_NUMBA_PROJECTION"
_KERNELS: ModuleType | None = None
NUMBA_IMPORT_ERROR: str | None = None


def _kernels() -> ModuleType | None:
    """The kernel module, imported (with numba) on first use; None when numba does not import."""
    global _KERNELS, NUMBA_IMPORT_ERROR
    if _KERNELS is None and NUMBA_IMPORT_ERROR is None:
        try:
            from nerfstudio_splatdiff.splats import rasterize_numba_kernels

            _KERNELS = rasterize_numba_kernels
        except Exception as e:  # ImportError, or numba refusing this numpy version
            NUMBA_IMPORT_ERROR = f"{type(e).__name__}: {e}"
    return _KERNELS


def numba_available() -> bool:
    """Whether the numba backend can run here (imports numba the first time it is asked)."""
    return _kernels() is not None


def numba_import_error() -> str | None:
    """Why numba did not import (None when it did or was not tried yet)."""
    _kernels()
    return NUMBA_IMPORT_ERROR


# One parallel launch at a time: the workqueue threading layer (rasterize_numba_kernels selects it) must not be
# entered from two Python threads at once (e.g. the viewer rendering while training runs).
_LAUNCH_LOCK = threading.Lock()


class _Plan:
    """Everything the forward decided that the backward reuses: tile lists, boxes, schedule, per-pixel state."""

    def __init__(self, offsets, ids, row_offsets, row_isects, work, lo, hi, xs, ys, consts, geometry, f32):
        self.offsets, self.ids, self.work, self.lo, self.hi, self.f32 = offsets, ids, work, lo, hi, f32
        self.row_offsets, self.row_isects = row_offsets, row_isects
        self.xs, self.ys, self.consts, self.geometry = xs, ys, consts, geometry
        self.t_final = self.n_last = None

    def forward(self, means2d, conics, opac, feats, num_pix: int) -> np.ndarray:
        K = _kernels()
        out = np.zeros((num_pix, feats.shape[1]), np.float64)
        self.t_final = np.ones(num_pix, np.float64)
        self.n_last = np.zeros(num_pix, np.int64)
        with _LAUNCH_LOCK:
            K._forward(
                self.work,
                self.offsets,
                self.ids,
                means2d,
                conics,
                opac,
                feats,
                self.lo,
                self.hi,
                self.xs,
                self.ys,
                self.consts,
                self.f32,
                *self.geometry,
                out,
                self.t_final,
                self.n_last,
            )
        return out

    def backward(self, means2d, conics, opac, feats, grad_out: np.ndarray) -> np.ndarray:
        """Per row (Gaussian in a camera): d/d(feats C, mean2d x, y, conic a, b, c, opacity)."""
        K = _kernels()
        isect_grad = np.zeros((self.ids.shape[0], feats.shape[1] + 6), np.float64)
        with _LAUNCH_LOCK:
            K._backward(
                self.work,
                self.offsets,
                self.ids,
                means2d,
                conics,
                opac,
                feats,
                self.lo,
                self.hi,
                self.xs,
                self.ys,
                self.consts,
                self.f32,
                *self.geometry,
                self.t_final,
                self.n_last,
                grad_out,
                isect_grad,
            )
        return isect_grad

    def count_pairs(self, means2d, conics, opac) -> int:
        with _LAUNCH_LOCK:
            return int(
                _kernels()._count_pairs(
                    self.work,
                    self.offsets,
                    self.ids,
                    means2d,
                    conics,
                    opac,
                    self.lo,
                    self.hi,
                    self.xs,
                    self.ys,
                    self.consts,
                    self.f32,
                    *self.geometry,
                )
            )


def _np(t: Tensor) -> np.ndarray:
    """float64 numpy view/copy: the kernels have one (float64) specialisation, so they compile once."""
    return t.detach().to(torch.float64).contiguous().numpy()


def _make_plan(lo, hi, cam_of, depth, valid, width, height, tile_size, num_cams, f32: bool) -> _Plan:
    """Bin the rows (Gaussians in cameras) into tiles, each tile's list in depth order, and deal the tiles out."""
    K = _kernels()
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    tiles_per_cam = tiles_x * tiles_y
    with _LAUNCH_LOCK:
        offsets, ids, row_offsets, row_isects = K._bin_tiles(
            lo, hi, cam_of, depth, valid, tile_size, tiles_x, tiles_per_cam, num_cams * tiles_per_cam
        )
    work = K._schedule(offsets, _num_chunks())
    xs = np.arange(width, dtype=np.float64) + 0.5
    ys = np.arange(height, dtype=np.float64) + 0.5
    consts = np.array([0.5, ALPHA_MAX, ALPHA_MIN], np.float64)
    geometry = (tile_size, tiles_x, tiles_per_cam, width, height)
    return _Plan(offsets, ids, row_offsets, row_isects, work, lo, hi, xs, ys, consts, geometry, f32)


class _Composite(torch.autograd.Function):
    """(means2d, conics, opacities, feats) of the visible Gaussians -> per-pixel sums of weight x feats [P, C].

    Used when the cameras need gradients: the projection then stays in torch (autograd reaches viewmats and Ks)."""

    @staticmethod
    def forward(ctx, means2d, conics, opac, feats, plan: _Plan, num_pix: int):
        out = plan.forward(_np(means2d), _np(conics), _np(opac), _np(feats), num_pix)
        ctx.plan = plan
        ctx.save_for_backward(means2d, conics, opac, feats)
        return torch.from_numpy(out).to(feats.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        plan: _Plan = ctx.plan
        means2d, conics, opac, feats = ctx.saved_tensors
        isect_grad = plan.backward(_np(means2d), _np(conics), _np(opac), _np(feats), _np(grad_out))
        with _LAUNCH_LOCK:
            rows = _kernels()._reduce_rows(plan.row_offsets, plan.row_isects, isect_grad)
        g = torch.from_numpy(rows).to(feats.dtype)
        C = feats.shape[1]
        return g[:, C : C + 2], g[:, C + 2 : C + 5], g[:, C + 5], g[:, :C], None, None


class _FusedRender(torch.autograd.Function):
    """(means, quats, scales, opacities, colors) -> per-pixel sums of weight x (colour, depth, 1) [P, D + 2], with
    the projection in numba too (cameras without gradients: the usual case)."""

    @staticmethod
    def forward(
        ctx, means, quats, scales, opacities, colors, viewmats, Ks, width, height, near, far, eps2d, tile_size, stats
    ):
        K = _kernels()
        B, N = means.shape[:2]
        V, D = viewmats.shape[1], colors.shape[-1]
        R = B * V * N
        arrs = [_np(t) for t in (means, quats, scales, opacities, colors, viewmats, Ks)]
        means2d, conics, cov2d = np.zeros((R, 2)), np.zeros((R, 3)), np.zeros((R, 3))
        feats, opac = np.zeros((R, D + 2)), np.zeros(R)
        lo, hi = np.zeros((R, 2), np.int64), np.zeros((R, 2), np.int64)
        valid = np.zeros(R, np.bool_)
        with _LAUNCH_LOCK:
            K._project_fwd(
                *arrs,
                width,
                height,
                float(near),
                float(far),
                float(eps2d),
                tile_size,
                means2d,
                conics,
                cov2d,
                feats,
                opac,
                lo,
                hi,
                valid,
            )
        cam_of = np.arange(R, dtype=np.int64) // N
        plan = _make_plan(
            lo, hi, cam_of, np.ascontiguousarray(feats[:, D]), valid, width, height, tile_size, B * V, False
        )
        if stats is not None:
            stats["num_pairs"] = plan.count_pairs(means2d, conics, opac)
            stats["num_intersections"] = int(plan.ids.shape[0])
        out = plan.forward(means2d, conics, opac, feats, B * V * height * width)
        ctx.plan, ctx.arrs, ctx.rows = plan, arrs, (means2d, conics, opac, feats, valid)
        ctx.settings = (width, height, float(eps2d), D)
        ctx.dtype = means.dtype
        return torch.from_numpy(out).to(means.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        plan: _Plan = ctx.plan
        means, quats, scales, opacities, colors, viewmats, Ks = ctx.arrs
        means2d, conics, opac, feats, valid = ctx.rows
        width, height, eps2d, D = ctx.settings
        isect_grad = plan.backward(means2d, conics, opac, feats, _np(grad_out))
        g_means, g_quats, g_scales = np.zeros_like(means), np.zeros_like(quats), np.zeros_like(scales)
        g_opac, g_colors = np.zeros_like(opacities), np.zeros_like(colors)
        with _LAUNCH_LOCK:
            _kernels()._project_bwd(
                means,
                quats,
                scales,
                viewmats,
                Ks,
                width,
                height,
                eps2d,
                valid,
                plan.row_offsets,
                plan.row_isects,
                isect_grad,
                D,
                g_means,
                g_quats,
                g_scales,
                g_opac,
                g_colors,
            )
        grads = [torch.from_numpy(g).to(ctx.dtype) for g in (g_means, g_quats, g_scales, g_opac, g_colors)]
        return (*grads, None, None, None, None, None, None, None, None, None)


def _num_chunks() -> int:
    """Parallel work items: numba's threads, at most torch's thread count (so set_num_threads is respected)."""
    numba = _kernels().numba
    n = max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads()))
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    return n


def rasterize_numba(
    means: Float[Tensor, "B N 3"],
    quats: Float[Tensor, "B N 4"],
    scales: Float[Tensor, "B N 3"],
    opacities: Float[Tensor, "B N"],
    colors: Float[Tensor, "B N D"],
    viewmats: Float[Tensor, "B V 4 4"],
    Ks: Float[Tensor, "B V 3 3"],
    width: int,
    height: int,
    backgrounds: Float[Tensor, "B V D"],
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = 16,
    stats: dict | None = None,
    projection: str = "auto",
) -> tuple[Float[Tensor, "B V H W D"], Float[Tensor, "B V H W 1"], Float[Tensor, "B V H W 1"]]:
    """Same contract as `rasterize_torch` (CPU tensors, float32 or float64). Returns colour, alpha, depth.

    projection: "torch" projects with `project_gaussians` (autograd) and composites with float32 alphas computed as
    the torch path does, so float32 results equal the torch path's and the dense reference's to float32 rounding;
    "numba" projects in the numba kernels too, in float64 (faster: no small torch ops; with float32 inputs a pair
    at a decision boundary can then fall the other way, see the module notes). "auto": $SPLATDIFF_NUMBA_PROJECTION
    if set, else "numba" for float64 inputs (identical to 1e-12 either way) and "torch" for float32.
    Gradients reach every input the torch path differentiates: the Gaussians' parameters and the background
    always, and the cameras (viewmats, Ks) when they require grad (the projection then runs in torch).
    If `stats` is a dict it receives `num_pairs` (as the torch path counts them: alpha >= 1/255 before the
    transmittance cut-off; counted by an extra pass, so leave stats out when timing) and `num_intersections`.
    """
    if _kernels() is None:
        raise RuntimeError(f"numba is not importable ({NUMBA_IMPORT_ERROR}); use the torch backend.")
    if means.device.type != "cpu":
        raise RuntimeError("rasterize_numba runs on CPU tensors; use gsplat or the torch backend on CUDA.")
    if means.dtype not in (torch.float32, torch.float64):
        raise RuntimeError(f"rasterize_numba takes float32 or float64 tensors, got {means.dtype}.")
    B = means.shape[0]
    V = viewmats.shape[1]
    if projection == "auto":
        projection = os.environ.get(PROJECTION_ENV, "auto").strip().lower() or "auto"
    if projection not in ("auto", "numba", "torch"):
        raise ValueError(f"projection must be 'auto', 'numba' or 'torch', got {projection!r} (or {PROJECTION_ENV}).")
    if projection == "auto":
        projection = "numba" if means.dtype == torch.float64 else "torch"
    cameras_need_grad = torch.is_grad_enabled() and (viewmats.requires_grad or Ks.requires_grad)
    if projection == "numba" and not cameras_need_grad:
        acc = _FusedRender.apply(
            means,
            quats,
            scales,
            opacities,
            colors,
            viewmats,
            Ks,
            width,
            height,
            near_plane,
            far_plane,
            eps2d,
            tile_size,
            stats,
        )
        return composite_outputs(acc, B, V, height, width, backgrounds)

    vis = visible_footprints(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane, eps2d
    )
    with torch.no_grad():
        lo, hi = pixel_boxes(vis.means2d, vis.cov2d, vis.radii, vis.opacities, width, height, tile_size)
    plan = _make_plan(
        lo.numpy(),
        hi.numpy(),
        vis.cam_of.numpy(),
        _np(vis.depths),
        np.ones(lo.shape[0], np.bool_),
        width,
        height,
        tile_size,
        B * V,
        means.dtype == torch.float32,
    )
    if stats is not None:
        stats["num_pairs"] = plan.count_pairs(_np(vis.means2d), _np(vis.conics), _np(vis.opacities))
        stats["num_intersections"] = int(plan.ids.shape[0])
    acc = _Composite.apply(vis.means2d, vis.conics, vis.opacities, vis.feats, plan, B * V * height * width)
    return composite_outputs(acc, B, V, height, width, backgrounds)
