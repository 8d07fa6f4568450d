"""numba kernels of the CPU rasteriser (see `rasterize_numba`, which imports this module only when it is used).

Compiled on first call (about 25 s of CPU on these 2-core machines for the default path, 20 s more for the
all-numba projection) and cached on disk (cache=True, next to this file in __pycache__), so later processes load
them in about a second. Everything is float64 (one specialisation); `_alpha` reproduces the torch path's float32
alpha when asked.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

from nerfstudio_splatdiff.splats.projection import T_MIN

# numba's OpenMP layer keeps its idle threads spinning after each kernel; torch's own OpenMP threads then compete
# with them for the cores, which made a whole forward+backward ~3.5x slower on 2 cores. The workqueue layer sleeps
# instead (it must not be entered from two threads at once: rasterize_numba serialises its launches).
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


@njit(cache=True, parallel=True)
def _bin_tiles(lo, hi, cam_of, depth, valid, tile_size, tiles_x, tiles_per_cam, n_tiles):
    """CSR lists of Gaussians (rows) per tile, each in depth order: (offsets [n_tiles + 1], row ids), and per row
    the positions of its intersections in that list (row_offsets [G + 1], row_isects), for the gradient sums.

    Rows with `valid` False or an empty box are never binned. Rows are binned in index order (the arrays are read
    front to back: in depth order they were read at random, ~5x slower), then each tile's list is sorted by depth
    in parallel, stably, so ties keep index order, as a stable sort of all rows by depth would.
    """
    G = lo.shape[0]
    counts = np.zeros(n_tiles + 1, np.int64)
    row_counts = np.zeros(G + 1, np.int64)
    for g in range(G):
        if not valid[g] or hi[g, 0] <= lo[g, 0] or hi[g, 1] <= lo[g, 1]:
            continue
        tx0, tx1 = lo[g, 0] // tile_size, (hi[g, 0] - 1) // tile_size
        ty0, ty1 = lo[g, 1] // tile_size, (hi[g, 1] - 1) // tile_size
        base = cam_of[g] * tiles_per_cam
        row_counts[g + 1] = (tx1 - tx0 + 1) * (ty1 - ty0 + 1)
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                counts[base + ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    row_offsets = np.cumsum(row_counts)
    fill = offsets[:-1].copy()
    binned = np.empty(offsets[-1], np.int64)
    slot = np.empty(offsets[-1], np.int64)  # where in row_isects each entry of `binned` is recorded
    for g in range(G):
        k = row_offsets[g]
        if row_offsets[g + 1] == k:
            continue
        tx0, tx1 = lo[g, 0] // tile_size, (hi[g, 0] - 1) // tile_size
        ty0, ty1 = lo[g, 1] // tile_size, (hi[g, 1] - 1) // tile_size
        base = cam_of[g] * tiles_per_cam
        for ty in range(ty0, ty1 + 1):
            for tx in range(tx0, tx1 + 1):
                t = base + ty * tiles_x + tx
                binned[fill[t]] = g
                slot[fill[t]] = k
                k += 1
                fill[t] += 1
    ids = np.empty(offsets[-1], np.int64)
    row_isects = np.empty(row_offsets[-1], np.int64)
    for t in prange(n_tiles):
        a, b = offsets[t], offsets[t + 1]
        keys = np.empty(b - a)
        for i in range(a, b):
            keys[i - a] = depth[binned[i]]
        perm = np.argsort(keys, kind="mergesort")
        for j in range(b - a):
            src = a + perm[j]
            ids[a + j] = binned[src]
            row_isects[slot[src]] = a + j
    return offsets, ids, row_offsets, row_isects


@njit(cache=True)
def _schedule(offsets, n_chunks):
    """Tiles dealt round-robin to n_chunks workers in order of decreasing length, so the chunks are balanced."""
    n_tiles = offsets.shape[0] - 1
    order = np.argsort(-(offsets[1:] - offsets[:-1]), kind="mergesort")
    per = (n_tiles + n_chunks - 1) // n_chunks
    work = np.full((n_chunks, per), -1, np.int64)
    for i in range(n_tiles):
        work[i % n_chunks, i // n_chunks] = order[i]
    return work


@njit(cache=True)
def _alpha(mx, my, x, y, ca, cb, cc, o, half, a_max, a_min, f32):
    """gsplat's alpha for one (Gaussian, pixel centre): (ok, alpha, exp(-sigma), dx, dy, clamped), as float64.

    f32: in float32 arithmetic, the order of `projection.gaussian_alpha` (so the 1/255 test and the cut-off fall
    as in the torch path for float32 inputs, whose means2d/conics/opacities arrive here exactly); else float64.
    """
    if f32:
        dx32 = np.float32(mx) - np.float32(x)
        dy32 = np.float32(my) - np.float32(y)
        s32 = (
            np.float32(half) * (np.float32(ca) * dx32 * dx32 + np.float32(cc) * dy32 * dy32)
            + np.float32(cb) * dx32 * dy32
        )
        if not s32 >= np.float32(0.0):
            return False, 0.0, 0.0, 0.0, 0.0, False
        e32 = np.exp(-s32)
        al32 = np.float32(o) * e32
        cl = al32 > np.float32(a_max)
        if cl:
            al32 = np.float32(a_max)
        if al32 < np.float32(a_min):
            return False, 0.0, 0.0, 0.0, 0.0, False
        return True, np.float64(al32), np.float64(e32), np.float64(dx32), np.float64(dy32), cl
    dx = mx - x
    dy = my - y
    sigma = half * (ca * dx * dx + cc * dy * dy) + cb * dx * dy
    if not sigma >= 0:
        return False, 0.0, 0.0, 0.0, 0.0, False
    e = np.exp(-sigma)
    alpha = o * e
    clamped = alpha > a_max
    if clamped:
        alpha = a_max
    if alpha < a_min:
        return False, 0.0, 0.0, 0.0, 0.0, False
    return True, alpha, e, dx, dy, clamped


@njit(cache=True, parallel=True)
def _forward(
    work,
    offsets,
    ids,
    means2d,
    conics,
    opac,
    feats,
    lo,
    hi,
    xs,
    ys,
    consts,
    f32,
    tile_size,
    tiles_x,
    tiles_per_cam,
    width,
    height,
    out,
    t_final,
    n_last,
):
    """out [P, C] (zeroed), t_final [P] (ones), n_last [P] (zeros): per pixel, the weighted feature sums, the
    final transmittance and the exclusive end (along its tile's list) of the Gaussians it composited.

    Gaussian-major within a tile: each Gaussian of the (depth-ordered) list visits only the pixels of its box, so
    every pixel still sees its Gaussians front to back; a pixel stops taking Gaussians at the cut-off.
    """
    half, a_max, a_min = consts[0], consts[1], consts[2]
    C = feats.shape[1]
    npx = tile_size * tile_size
    for chunk in prange(work.shape[0]):
        T = np.empty(npx, np.float64)
        acc = np.empty((npx, C), np.float64)
        last = np.empty(npx, np.int64)
        done = np.empty(npx, np.bool_)
        for j in range(work.shape[1]):
            t = work[chunk, j]
            if t < 0:
                break
            start, n = offsets[t], offsets[t + 1] - offsets[t]
            if n == 0:  # out, t_final and n_last come initialised
                continue
            cam, tt = t // tiles_per_cam, t % tiles_per_cam
            x0, y0 = (tt % tiles_x) * tile_size, (tt // tiles_x) * tile_size
            x1, y1 = min(x0 + tile_size, width), min(y0 + tile_size, height)
            T[:] = 1.0
            acc[:, :] = 0.0
            last[:] = 0
            done[:] = False
            n_alive = (x1 - x0) * (y1 - y0)
            for k in range(n):
                g = ids[start + k]
                bx0, bx1 = max(lo[g, 0], x0), min(hi[g, 0], x1)
                by0, by1 = max(lo[g, 1], y0), min(hi[g, 1], y1)
                mx, my, ca, cb, cc, o = means2d[g, 0], means2d[g, 1], conics[g, 0], conics[g, 1], conics[g, 2], opac[g]
                for py in range(by0, by1):
                    for px in range(bx0, bx1):
                        li = (py - y0) * tile_size + (px - x0)
                        if done[li]:
                            continue
                        ok, a64, _e, _dx, _dy, _cl = _alpha(
                            mx, my, xs[px], ys[py], ca, cb, cc, o, half, a_max, a_min, f32
                        )
                        if not ok:
                            continue
                        next_T = T[li] * (1.0 - a64)
                        if next_T <= T_MIN:  # stop before the Gaussian that would end the pixel
                            done[li] = True
                            n_alive -= 1
                            continue
                        w = a64 * T[li]
                        for c in range(C):
                            acc[li, c] += w * feats[g, c]
                        T[li] = next_T
                        last[li] = k + 1
                if n_alive == 0:
                    break
            for py in range(y0, y1):
                for px in range(x0, x1):
                    li = (py - y0) * tile_size + (px - x0)
                    p = (cam * height + py) * width + px
                    for c in range(C):
                        out[p, c] = acc[li, c]
                    t_final[p] = T[li]
                    n_last[p] = last[li]


@njit(cache=True, parallel=True)
def _backward(
    work,
    offsets,
    ids,
    means2d,
    conics,
    opac,
    feats,
    lo,
    hi,
    xs,
    ys,
    consts,
    f32,
    tile_size,
    tiles_x,
    tiles_per_cam,
    width,
    height,
    t_final,
    n_last,
    grad_out,
    isect_grad,
):
    """isect_grad [n_isect, C + 6] (zeroed): per (tile, Gaussian) row d/d(feats C, mean x, y, conic a, b, c, opacity).

    Back to front over each tile's list (Gaussian-major, as the forward); per pixel the transmittance in front of
    each Gaussian is recovered by dividing the final one by (1 - alpha), and S holds the features behind it.
    """
    half, a_max, a_min = consts[0], consts[1], consts[2]
    C = feats.shape[1]
    npx = tile_size * tile_size
    for chunk in prange(work.shape[0]):
        T = np.empty(npx, np.float64)
        S = np.empty((npx, C), np.float64)
        go = np.empty((npx, C), np.float64)
        last = np.empty(npx, np.int64)
        gf = np.empty(C, np.float64)
        for j in range(work.shape[1]):
            t = work[chunk, j]
            if t < 0:
                break
            start = offsets[t]
            cam, tt = t // tiles_per_cam, t % tiles_per_cam
            x0, y0 = (tt % tiles_x) * tile_size, (tt // tiles_x) * tile_size
            x1, y1 = min(x0 + tile_size, width), min(y0 + tile_size, height)
            max_last = 0
            for py in range(y0, y1):
                for px in range(x0, x1):
                    li = (py - y0) * tile_size + (px - x0)
                    p = (cam * height + py) * width + px
                    T[li] = t_final[p]
                    last[li] = n_last[p]
                    max_last = max(max_last, last[li])
                    for c in range(C):
                        go[li, c] = grad_out[p, c]
                        S[li, c] = 0.0
            for k in range(max_last - 1, -1, -1):
                g = ids[start + k]
                bx0, bx1 = max(lo[g, 0], x0), min(hi[g, 0], x1)
                by0, by1 = max(lo[g, 1], y0), min(hi[g, 1], y1)
                mx, my, o = means2d[g, 0], means2d[g, 1], opac[g]
                ca, cb, cc = conics[g, 0], conics[g, 1], conics[g, 2]
                ca64, cb64, cc64 = np.float64(ca), np.float64(cb), np.float64(cc)
                gf[:] = 0.0
                g_mx = g_my = g_a = g_b = g_c = g_o = 0.0
                for py in range(by0, by1):
                    for px in range(bx0, bx1):
                        li = (py - y0) * tile_size + (px - x0)
                        if k >= last[li]:
                            continue
                        ok, a64, e, dx64, dy64, clamped = _alpha(
                            mx, my, xs[px], ys[py], ca, cb, cc, o, half, a_max, a_min, f32
                        )
                        if not ok:
                            continue
                        one_minus = 1.0 - a64
                        T[li] = T[li] / one_minus  # transmittance in front of this Gaussian
                        w = a64 * T[li]
                        d_alpha = 0.0
                        for c in range(C):
                            f = np.float64(feats[g, c])
                            gf[c] += w * go[li, c]
                            d_alpha += go[li, c] * (T[li] * f - S[li, c] / one_minus)
                            S[li, c] += w * f
                        if not clamped:
                            g_o += d_alpha * e
                            d_sigma = -d_alpha * a64
                            g_mx += d_sigma * (ca64 * dx64 + cb64 * dy64)
                            g_my += d_sigma * (cb64 * dx64 + cc64 * dy64)
                            g_a += d_sigma * 0.5 * dx64 * dx64
                            g_b += d_sigma * dx64 * dy64
                            g_c += d_sigma * 0.5 * dy64 * dy64
                row = start + k
                for c in range(C):
                    isect_grad[row, c] = gf[c]
                isect_grad[row, C + 0] = g_mx
                isect_grad[row, C + 1] = g_my
                isect_grad[row, C + 2] = g_a
                isect_grad[row, C + 3] = g_b
                isect_grad[row, C + 4] = g_c
                isect_grad[row, C + 5] = g_o


@njit(cache=True, parallel=True)
def _reduce_rows(row_offsets, row_isects, isect_grad):
    """Sum the per-intersection gradient rows per Gaussian row (rows in parallel, each its own sum)."""
    G, K = row_offsets.shape[0] - 1, isect_grad.shape[1]
    out = np.zeros((G, K), np.float64)
    for g in prange(G):
        for i in range(row_offsets[g], row_offsets[g + 1]):
            for k in range(K):
                out[g, k] += isect_grad[row_isects[i], k]
    return out


@njit(cache=True, parallel=True)
def _count_pairs(
    work,
    offsets,
    ids,
    means2d,
    conics,
    opac,
    lo,
    hi,
    xs,
    ys,
    consts,
    f32,
    tile_size,
    tiles_x,
    tiles_per_cam,
    width,
    height,
):
    """Pairs with alpha >= 1/255 (before the transmittance cut-off): the torch path's `num_pairs`, for stats."""
    half, a_max, a_min = consts[0], consts[1], consts[2]
    total = np.zeros(work.shape[0], np.int64)
    for chunk in prange(work.shape[0]):
        for j in range(work.shape[1]):
            t = work[chunk, j]
            if t < 0:
                break
            start, n = offsets[t], offsets[t + 1] - offsets[t]
            tt = t % tiles_per_cam
            x0, y0 = (tt % tiles_x) * tile_size, (tt // tiles_x) * tile_size
            x1, y1 = min(x0 + tile_size, width), min(y0 + tile_size, height)
            for k in range(n):
                g = ids[start + k]
                for py in range(max(lo[g, 1], y0), min(hi[g, 1], y1)):
                    for px in range(max(lo[g, 0], x0), min(hi[g, 0], x1)):
                        ok = _alpha(
                            means2d[g, 0],
                            means2d[g, 1],
                            xs[px],
                            ys[py],
                            conics[g, 0],
                            conics[g, 1],
                            conics[g, 2],
                            opac[g],
                            half,
                            a_max,
                            a_min,
                            f32,
                        )[0]
                        if ok:
                            total[chunk] += 1
    return total.sum()


# ----------------------------------------------------------------------------------------------------------------
# Fused projection (gsplat's EWA conventions, exactly `projection.project_gaussians`) and its backward, so that a
# training step spends no time in small torch ops. Rows are dense: row r = (b * V + v) * N + n.


# 3x3 matrices as row-major 9-tuples (kept in registers; numba's @ on tiny arrays calls BLAS and allocates).
@njit(cache=True)
def _mm(A, B):
    return (
        A[0] * B[0] + A[1] * B[3] + A[2] * B[6],
        A[0] * B[1] + A[1] * B[4] + A[2] * B[7],
        A[0] * B[2] + A[1] * B[5] + A[2] * B[8],
        A[3] * B[0] + A[4] * B[3] + A[5] * B[6],
        A[3] * B[1] + A[4] * B[4] + A[5] * B[7],
        A[3] * B[2] + A[4] * B[5] + A[5] * B[8],
        A[6] * B[0] + A[7] * B[3] + A[8] * B[6],
        A[6] * B[1] + A[7] * B[4] + A[8] * B[7],
        A[6] * B[2] + A[7] * B[5] + A[8] * B[8],
    )


@njit(cache=True)
def _mmT(A, B):
    """A @ B^T."""
    return _mm(A, _T9(B))


@njit(cache=True)
def _mTm(A, B):
    """A^T @ B."""
    return _mm(_T9(A), B)


@njit(cache=True)
def _add9(A, B):
    return (
        A[0] + B[0],
        A[1] + B[1],
        A[2] + B[2],
        A[3] + B[3],
        A[4] + B[4],
        A[5] + B[5],
        A[6] + B[6],
        A[7] + B[7],
        A[8] + B[8],
    )


@njit(cache=True)
def _T9(A):
    return (A[0], A[3], A[6], A[1], A[4], A[7], A[2], A[5], A[8])


@njit(cache=True)
def _rotmat(quat):
    """Normalised (w, x, y, z) and the rotation matrix of quat (geometry.quat_to_rotmat), and |quat|."""
    qn = np.sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3])
    w, x, y, z = quat[0] / qn, quat[1] / qn, quat[2] / qn, quat[3] / qn
    R = (
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    )
    return (w, x, y, z), R, qn


@njit(cache=True)
def _camera(viewmats, Ks, b, v, width, height):
    W = (
        viewmats[b, v, 0, 0],
        viewmats[b, v, 0, 1],
        viewmats[b, v, 0, 2],
        viewmats[b, v, 1, 0],
        viewmats[b, v, 1, 1],
        viewmats[b, v, 1, 2],
        viewmats[b, v, 2, 0],
        viewmats[b, v, 2, 1],
        viewmats[b, v, 2, 2],
    )
    t = (viewmats[b, v, 0, 3], viewmats[b, v, 1, 3], viewmats[b, v, 2, 3])
    fx, fy, cx, cy = Ks[b, v, 0, 0], Ks[b, v, 1, 1], Ks[b, v, 0, 2], Ks[b, v, 1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lims = (
        (width - cx) / fx + 0.3 * tan_fovx,
        cx / fx + 0.3 * tan_fovx,
        (height - cy) / fy + 0.3 * tan_fovy,
        cy / fy + 0.3 * tan_fovy,
    )
    return W, t, (fx, fy, cx, cy), lims


@njit(cache=True)
def _cov2d(Sc, pz, ux_c, uy_c, fx, fy, eps2d):
    """J Sc J^T + eps2d I with gsplat's clamped Jacobian; returns (a, b, c), J as a 3x3 tuple (third row 0)."""
    rz = 1.0 / pz
    tx, ty = pz * ux_c, pz * uy_c
    J = (fx * rz, 0.0, -fx * tx * rz * rz, 0.0, fy * rz, -fy * ty * rz * rz, 0.0, 0.0, 0.0)
    C2 = _mmT(_mm(J, Sc), J)
    return C2[0] + eps2d, C2[1], C2[4] + eps2d, J


@njit(cache=True, parallel=True)
def _project_fwd(
    means,
    quats,
    scales,
    opac,
    colors,
    viewmats,
    Ks,
    width,
    height,
    near,
    far,
    eps2d,
    tile_size,
    means2d,
    conics,
    cov2d,
    feats,
    opac_row,
    lo,
    hi,
    valid,
):
    """Per row: 2D mean, conic, 2D covariance (a, b, c), features (colour, depth, 1), opacity, pixel box, valid."""
    B, N = means.shape[0], means.shape[1]
    V = viewmats.shape[1]
    D = colors.shape[2]
    tiles_x, tiles_y = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    for bn in prange(B * N):
        b, n = bn // N, bn % N
        _, R, _ = _rotmat((quats[b, n, 0], quats[b, n, 1], quats[b, n, 2], quats[b, n, 3]))
        s0, s1, s2 = scales[b, n, 0], scales[b, n, 1], scales[b, n, 2]
        M = (R[0] * s0, R[1] * s1, R[2] * s2, R[3] * s0, R[4] * s1, R[5] * s2, R[6] * s0, R[7] * s1, R[8] * s2)
        S = _mmT(M, M)
        m0, m1, m2 = means[b, n, 0], means[b, n, 1], means[b, n, 2]
        for v in range(V):
            r = (b * V + v) * N + n
            W, t, f, lims = _camera(viewmats, Ks, b, v, width, height)
            fx, fy, cx, cy = f
            px = W[0] * m0 + W[1] * m1 + W[2] * m2 + t[0]
            py = W[3] * m0 + W[4] * m1 + W[5] * m2 + t[1]
            pz = W[6] * m0 + W[7] * m1 + W[8] * m2 + t[2]
            valid[r] = False
            if not (pz >= near and pz <= far):
                continue
            rz = 1.0 / pz
            ux_c = min(lims[0], max(-lims[1], px * rz))
            uy_c = min(lims[2], max(-lims[3], py * rz))
            a, bb, c, _ = _cov2d(_mmT(_mm(W, S), W), pz, ux_c, uy_c, fx, fy, eps2d)
            det = a * c - bb * bb
            if not det > 0:
                continue
            mx, my = fx * px * rz + cx, fy * py * rz + cy
            half_tr = 0.5 * (a + c)
            v1 = half_tr + np.sqrt(max(half_tr * half_tr - det, 0.01))
            rad = np.ceil(3.0 * np.sqrt(v1))
            if not (rad > 0 and mx + rad > 0 and mx - rad < width and my + rad > 0 and my - rad < height):
                continue
            valid[r] = True
            means2d[r, 0], means2d[r, 1] = mx, my
            conics[r, 0], conics[r, 1], conics[r, 2] = c / det, -bb / det, a / det
            cov2d[r, 0], cov2d[r, 1], cov2d[r, 2] = a, bb, c
            for d in range(D):
                feats[r, d] = colors[b, n, d]
            feats[r, D] = pz
            feats[r, D + 1] = 1.0
            o = opac[b, n]
            opac_row[r] = o
            # The pixel box of `rasterize_torch.pixel_boxes`, in the same float64 arithmetic.
            s = max(np.log(o * 255.0), 0.0)
            for axis in range(2):
                m = mx if axis == 0 else my
                var = a if axis == 0 else c
                nt = tiles_x if axis == 0 else tiles_y
                size = width if axis == 0 else height
                t_lo = np.floor((m - rad) / tile_size)
                t_hi = np.ceil((m + rad) / tile_size)
                p_lo = min(max(t_lo, 0.0), nt) * tile_size
                p_hi = min(min(max(t_hi, 0.0), nt) * tile_size, size)
                ext = np.sqrt(2.0 * s * var) * (1 + 1e-4) + 1e-4
                e_lo = np.ceil(m - ext - 0.5)
                e_hi = np.floor(m + ext - 0.5) + 1
                lo[r, axis] = np.int64(max(p_lo, e_lo))
                hi[r, axis] = np.int64(min(p_hi, e_hi))


@njit(cache=True, parallel=True)
def _project_bwd(
    means,
    quats,
    scales,
    viewmats,
    Ks,
    width,
    height,
    eps2d,
    valid,
    row_offsets,
    row_isects,
    isect_grad,
    D,
    g_means,
    g_quats,
    g_scales,
    g_opac,
    g_colors,
):
    """Sum each row's intersection gradients, then back through the projection to the 3D parameters (zeroed)."""
    B, N = means.shape[0], means.shape[1]
    V = viewmats.shape[1]
    C = D + 2
    K = C + 6
    for bn in prange(B * N):
        b, n = bn // N, bn % N
        q, R, qn = _rotmat((quats[b, n, 0], quats[b, n, 1], quats[b, n, 2], quats[b, n, 3]))
        w, x, y, z = q
        sc = (scales[b, n, 0], scales[b, n, 1], scales[b, n, 2])
        M = (
            R[0] * sc[0],
            R[1] * sc[1],
            R[2] * sc[2],
            R[3] * sc[0],
            R[4] * sc[1],
            R[5] * sc[2],
            R[6] * sc[0],
            R[7] * sc[1],
            R[8] * sc[2],
        )
        S = _mmT(M, M)
        m0, m1, m2 = means[b, n, 0], means[b, n, 1], means[b, n, 2]
        dS = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        g = np.zeros(K)
        gm0 = gm1 = gm2 = 0.0
        for v in range(V):
            r = (b * V + v) * N + n
            if not valid[r]:
                continue
            g[:] = 0.0
            for i in range(row_offsets[r], row_offsets[r + 1]):
                row = row_isects[i]
                for k in range(K):
                    g[k] += isect_grad[row, k]
            for d in range(D):
                g_colors[b, n, d] += g[d]
            g_opac[b, n] += g[C + 5]
            gmx, gmy, gA, gB, gC = g[C], g[C + 1], g[C + 2], g[C + 3], g[C + 4]
            W, t, f, lims = _camera(viewmats, Ks, b, v, width, height)
            fx, fy, cx, cy = f
            px = W[0] * m0 + W[1] * m1 + W[2] * m2 + t[0]
            py = W[3] * m0 + W[4] * m1 + W[5] * m2 + t[1]
            pz = W[6] * m0 + W[7] * m1 + W[8] * m2 + t[2]
            rz = 1.0 / pz
            ux, uy = px * rz, py * rz
            ux_c = min(lims[0], max(-lims[1], ux))
            uy_c = min(lims[2], max(-lims[3], uy))
            tx, ty = pz * ux_c, pz * uy_c
            Sc = _mmT(_mm(W, S), W)
            a, bb, c, J = _cov2d(Sc, pz, ux_c, uy_c, fx, fy, eps2d)
            det = a * c - bb * bb
            id2 = 1.0 / (det * det)
            # conic (A, B, C) = (c, -b, a) / det  ->  d/d(a, b, c)
            ga = (-gA * c * c + gB * bb * c - gC * bb * bb) * id2
            gb = (2 * gA * bb * c - gB * (det + 2 * bb * bb) + 2 * gC * a * bb) * id2
            gc = (-gA * bb * bb + gB * a * bb - gC * a * a) * id2
            # cov2d = J Sc J^T (torch reads [0, 0], [0, 1], [1, 1] of the full matrix)
            G2 = (ga, gb, 0.0, 0.0, gc, 0.0, 0.0, 0.0, 0.0)
            dS = _add9(dS, _mTm(W, _mm(_mTm(J, _mm(G2, J)), W)))  # W^T (J^T G2 J) W
            JS = _mm(J, Sc)
            dJ00 = 2 * ga * JS[0] + gb * JS[3]
            dJ02 = 2 * ga * JS[2] + gb * JS[5]
            dJ11 = gb * JS[1] + 2 * gc * JS[4]
            dJ12 = gb * JS[2] + 2 * gc * JS[5]
            drz = dJ00 * fx - dJ02 * 2 * fx * tx * rz + dJ11 * fy - dJ12 * 2 * fy * ty * rz
            dtx = -dJ02 * fx * rz * rz
            dty = -dJ12 * fy * rz * rz
            dpx = gmx * fx * rz
            dpy = gmy * fy * rz
            drz += gmx * fx * px + gmy * fy * py
            dpz = g[D] + dtx * ux_c + dty * uy_c  # g[D]: the depth feature
            if ux > -lims[1] and ux < lims[0]:
                dpx += dtx * pz * rz
                drz += dtx * pz * px
            if uy > -lims[3] and uy < lims[2]:
                dpy += dty * pz * rz
                drz += dty * pz * py
            dpz += -drz * rz * rz
            gm0 += W[0] * dpx + W[3] * dpy + W[6] * dpz
            gm1 += W[1] * dpx + W[4] * dpy + W[7] * dpz
            gm2 += W[2] * dpx + W[5] * dpy + W[8] * dpz
        g_means[b, n, 0], g_means[b, n, 1], g_means[b, n, 2] = gm0, gm1, gm2
        # Sigma = M M^T, M = R diag(s), R from the normalised quaternion.
        dM = _mm(_add9(dS, _T9(dS)), M)
        gR = (
            dM[0] * sc[0],
            dM[1] * sc[1],
            dM[2] * sc[2],
            dM[3] * sc[0],
            dM[4] * sc[1],
            dM[5] * sc[2],
            dM[6] * sc[0],
            dM[7] * sc[1],
            dM[8] * sc[2],
        )
        for j in range(3):
            g_scales[b, n, j] = dM[j] * R[j] + dM[3 + j] * R[3 + j] + dM[6 + j] * R[6 + j]
        dw = 2 * (-z * gR[1] + y * gR[2] + z * gR[3] - x * gR[5] - y * gR[6] + x * gR[7])
        dx = 2 * (y * gR[1] + z * gR[2] + y * gR[3] - 2 * x * gR[4] - w * gR[5] + z * gR[6] + w * gR[7] - 2 * x * gR[8])
        dy = 2 * (
            -2 * y * gR[0] + x * gR[1] + w * gR[2] + x * gR[3] + z * gR[5] - w * gR[6] + z * gR[7] - 2 * y * gR[8]
        )
        dz = 2 * (
            -2 * z * gR[0] - w * gR[1] + x * gR[2] + w * gR[3] - 2 * z * gR[4] + y * gR[5] + x * gR[6] + y * gR[7]
        )
        dot = w * dw + x * dx + y * dy + z * dz
        g_quats[b, n, 0] = (dw - w * dot) / qn
        g_quats[b, n, 1] = (dx - x * dot) / qn
        g_quats[b, n, 2] = (dy - y * dot) / qn
        g_quats[b, n, 3] = (dz - z * dot) / qn
