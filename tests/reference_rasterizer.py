"""Brute-force dense reference rasteriser for tests and benchmarks: every Gaussian against every pixel.

It shares only the projection (`project_gaussians`, itself tested against the analytic projection) with the
tiled rasteriser; tile membership, alpha, depth sorting and compositing are written out independently here,
with a plain cumulative product instead of the tiled rasteriser's segmented log-space sum.
"""

from __future__ import annotations

import torch

from nerfstudio_splatdiff.splats.projection import project_gaussians


def rasterize_dense(
    means,
    quats,
    scales,
    opacities,
    colors,
    viewmats,
    Ks,
    width,
    height,
    backgrounds,
    near_plane=0.01,
    far_plane=1e10,
    eps2d=0.3,
    tile_size=16,
):
    """Same contract as `rasterize_torch`; memory is O(N x H x W) per camera, so keep scenes small."""
    B, N = means.shape[:2]
    V = viewmats.shape[1]
    proj = project_gaussians(means, quats, scales, viewmats, Ks, width, height, near_plane, far_plane, eps2d)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(means.device)  # [P,2] integer pixel coords
    centres = pix.to(means.dtype) + 0.5
    tiles_x, tiles_y = -(-width // tile_size), -(-height // tile_size)
    rgbs, alphas, depths = [], [], []
    for b in range(B):
        for v in range(V):
            m2 = proj.means2d[b, v]  # [N,2]
            con = proj.conics[b, v]
            z = proj.depths[b, v]
            r = proj.radii[b, v].to(torch.float64)
            order = torch.sort(z.detach(), stable=True).indices
            with torch.no_grad():  # gsplat's tile test: pixel tile within [floor((m-r)/T), ceil((m+r)/T))
                lo = torch.floor((m2.double() - r[:, None]) / tile_size)
                hi = torch.ceil((m2.double() + r[:, None]) / tile_size)
                lo = torch.minimum(lo.clamp(min=0), torch.tensor([tiles_x, tiles_y], dtype=torch.float64))
                hi = torch.minimum(hi.clamp(min=0), torch.tensor([tiles_x, tiles_y], dtype=torch.float64))
                ptile = torch.div(pix, tile_size, rounding_mode="floor").double()  # [P,2]
                in_tile = ((ptile[None] >= lo[:, None]) & (ptile[None] < hi[:, None])).all(-1)  # [N,P]
                in_tile &= proj.valid[b, v][:, None]
            d = m2[:, None, :] - centres[None]  # [N,P,2]
            sigma = (
                0.5 * (con[:, None, 0] * d[..., 0] ** 2 + con[:, None, 2] * d[..., 1] ** 2)
                + con[:, None, 1] * d[..., 0] * d[..., 1]
            )
            alpha = torch.clamp(opacities[b][:, None] * torch.exp(-sigma), max=0.999)
            use = in_tile & (sigma >= 0) & (alpha >= 1.0 / 255.0)
            alpha = torch.where(use, alpha, torch.zeros_like(alpha))[order]  # depth-sorted [N,P]
            one_minus = (1 - alpha).double()
            T = torch.cumprod(torch.cat([torch.ones_like(one_minus[:1]), one_minus[:-1]], 0), 0)
            with torch.no_grad():
                alive = (T * one_minus) > 1e-4
            w = torch.where(alive, alpha * T.to(alpha.dtype), torch.zeros_like(alpha))  # [N,P]
            acc_a = w.sum(0)  # [P]
            rgb = w.T @ colors[b][order] + (1 - acc_a)[:, None] * backgrounds[b, v]
            dep = (w * z[order][:, None]).sum(0) / acc_a.clamp(min=1e-10)
            rgbs.append(rgb.reshape(height, width, -1))
            alphas.append(acc_a.reshape(height, width, 1))
            depths.append(dep.reshape(height, width, 1))

    def stack(xs):
        return torch.stack(xs).reshape(B, V, *xs[0].shape)

    return stack(rgbs), stack(alphas), stack(depths)
