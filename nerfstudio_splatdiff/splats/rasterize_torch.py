"""Pure-PyTorch tiled Gaussian rasteriser: differentiable through autograd, runs on any device.

It reproduces gsplat 1.4.0's image formation (see `projection.py` for the projection) without its
CUDA kernels:

1. Each valid Gaussian covers the 16x16 tiles its 3-sigma box touches (gsplat's `isect_tiles`); of those
   tiles' pixels only the ones inside its alpha >= 1/255 ellipse can contribute, so the candidate pixels are
   that ellipse's bounding box clipped to the tiles.
2. Candidates are expanded into a flat list of (Gaussian, pixel) pairs and filtered by alpha >= 1/255
   (under no_grad). Memory scales with these overlaps, never with Gaussians x pixels.
3. Pairs are sorted by pixel, then depth (one int64 key), and transmittance is a segmented exclusive
   cumulative sum of log(1 - alpha), in float64 so millions of small terms keep their precision.
4. Pairs after the transmittance falls to 1e-4 are dropped (gsplat's early stop), and the weighted
   colours and depths are `index_add`-ed into the pixels. Autograd provides the backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.splats.projection import ALPHA_MIN, T_MIN, Projected, gaussian_alpha, project_gaussians


@torch.no_grad()
def pixel_boxes(
    means2d: Float[Tensor, "G 2"],
    cov2d: Float[Tensor, "G 2 2"],
    radii: Tensor,
    opacities: Float[Tensor, " G"],
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Tensor, Tensor]:
    """Per Gaussian, the pixel box [lo, hi) (int64 [G, 2], x then y) that may hold alpha >= 1/255 pixels.

    It is the box of the tiles the 3-sigma radius touches (gsplat's tile assignment) cut down to the bounding
    box of the alpha >= 1/255 ellipse. Every backend that must agree with this one uses these boxes.
    """
    dev = means2d.device
    mean = means2d.double()
    r = radii.double()
    tiles_x, tiles_y = (width + tile_size - 1) // tile_size, (height + tile_size - 1) // tile_size
    # gsplat's tile range from the 3-sigma radius (tile_min inclusive, tile_max exclusive).
    t_lo = torch.floor((mean - r[:, None]) / tile_size)
    t_hi = torch.ceil((mean + r[:, None]) / tile_size)
    t_max = torch.tensor([tiles_x, tiles_y], dtype=torch.float64, device=dev)
    px_lo = t_lo.clamp(min=0).minimum(t_max) * tile_size
    px_hi = (t_hi.clamp(min=0).minimum(t_max) * tile_size).minimum(
        torch.tensor([width, height], dtype=torch.float64, device=dev)
    )
    # alpha >= 1/255 <=> sigma <= log(255 * opacity): an ellipse whose half-extent on x is sqrt(2 s Sxx).
    s = torch.log(opacities.double() * 255.0).clamp(min=0)
    ext = torch.sqrt(2.0 * s[:, None] * torch.stack([cov2d[:, 0, 0], cov2d[:, 1, 1]], -1).double())
    ext = ext * (1 + 1e-4) + 1e-4  # superset only: the exact test is the float alpha filter afterwards
    e_lo = torch.ceil(mean - ext - 0.5)
    e_hi = torch.floor(mean + ext - 0.5) + 1
    lo = torch.maximum(px_lo, e_lo).long()
    hi = torch.minimum(px_hi, e_hi).long()
    return lo, hi


@torch.no_grad()
def _candidate_pairs(
    means2d: Float[Tensor, "G 2"],
    cov2d: Float[Tensor, "G 2 2"],
    radii: Tensor,
    opacities: Float[Tensor, " G"],
    width: int,
    height: int,
    tile_size: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """Expand each Gaussian into the pixels it may touch. Returns (gaussian index, x, y) per candidate."""
    dev = means2d.device
    lo, hi = pixel_boxes(means2d, cov2d, radii, opacities, width, height, tile_size)
    size = (hi - lo).clamp(min=0)
    counts = size[:, 0] * size[:, 1]
    gid = torch.repeat_interleave(torch.arange(counts.shape[0], device=dev), counts)
    starts = torch.cumsum(counts, 0) - counts
    local = torch.arange(gid.shape[0], device=dev) - starts[gid]
    w = size[gid, 0]
    x = lo[gid, 0] + local % w
    y = lo[gid, 1] + torch.div(local, w, rounding_mode="floor")
    return gid, x, y


@dataclass
class Visible:
    """The valid (camera, Gaussian) footprints of a batch, flattened to G rows; camera c = b * V + v."""

    valid_idx: Tensor  # [G] index into B*V*N
    cam_of: Tensor  # [G] camera of each row
    depths: Float[Tensor, " G"]
    means2d: Float[Tensor, "G 2"]
    conics: Float[Tensor, "G 3"]
    opacities: Float[Tensor, " G"]
    cov2d: Float[Tensor, "G 2 2"]
    radii: Tensor  # [G]
    feats: Float[Tensor, "G C"]  # what a pair deposits into its pixel: colour (D), depth, 1 (for the alpha)


def visible_footprints(
    means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane, eps2d
) -> Visible:
    """Project every Gaussian into its scene's cameras (autograd flows through) and keep the valid ones."""
    B, N = means.shape[:2]
    V = viewmats.shape[1]
    D = colors.shape[-1]
    proj: Projected = project_gaussians(
        means, quats, scales, viewmats, Ks, width, height, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d
    )
    # Flatten cameras: camera c = b * V + v; Gaussian (c, n) -> c * N + n. Only valid Gaussians go on.
    valid_idx = proj.valid.reshape(-1).nonzero().squeeze(1)  # [G]
    cam_of = torch.div(valid_idx, N, rounding_mode="floor")  # [G]
    scene_gauss = torch.div(cam_of, V, rounding_mode="floor") * N + valid_idx % N  # index into [B*N]
    depths = proj.depths.reshape(-1)[valid_idx]
    feats = torch.cat([colors.reshape(B * N, D)[scene_gauss], depths[:, None], torch.ones_like(depths)[:, None]], 1)
    return Visible(
        valid_idx=valid_idx,
        cam_of=cam_of,
        depths=depths,
        means2d=proj.means2d.reshape(-1, 2)[valid_idx],
        conics=proj.conics.reshape(-1, 3)[valid_idx],
        opacities=opacities.reshape(-1)[scene_gauss],
        cov2d=proj.cov2d.reshape(-1, 2, 2)[valid_idx],
        radii=proj.radii.reshape(-1)[valid_idx],
        feats=feats,
    )


def composite_outputs(
    acc: Float[Tensor, "P C"], B: int, V: int, height: int, width: int, backgrounds: Float[Tensor, "B V D"]
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pixel sums of weight x (colour, depth, 1) -> colour over the background, alpha, expected depth."""
    D = acc.shape[-1] - 2
    acc = acc.reshape(B, V, height, width, D + 2)
    alphas = acc[..., D + 1 :]
    rgb = acc[..., :D] + (1 - alphas) * backgrounds[:, :, None, None, :]
    depth = acc[..., D : D + 1] / alphas.clamp(min=1e-10)
    return rgb, alphas, depth


def rasterize_torch(
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
) -> tuple[Float[Tensor, "B V H W D"], Float[Tensor, "B V H W 1"], Float[Tensor, "B V H W 1"]]:
    """Render B scenes x V cameras. Returns colours (over the background), alpha and expected depth.

    If `stats` is a dict, it receives `num_candidates` and `num_pairs` (Gaussian-pixel overlaps composited).
    """
    B, N = means.shape[:2]
    V = viewmats.shape[1]
    D = colors.shape[-1]
    vis = visible_footprints(
        means, quats, scales, opacities, colors, viewmats, Ks, width, height, near_plane, far_plane, eps2d
    )
    valid_idx, cam_of, depths, means2d, conics, opac, feats = (
        vis.valid_idx,
        vis.cam_of,
        vis.depths,
        vis.means2d,
        vis.conics,
        vis.opacities,
        vis.feats,
    )
    G = valid_idx.shape[0]

    def alpha_of(gid: Tensor, pix: Tensor) -> tuple[Tensor, Tensor]:
        # Separate gathers (not slices of one packed gather): slice backward would zero-fill [M, k] each time.
        x = (pix % width).to(means2d.dtype) + 0.5
        y = (torch.div(pix, width, rounding_mode="floor") % height).to(means2d.dtype) + 0.5
        delta = means2d.index_select(0, gid) - torch.stack([x, y], -1)
        return gaussian_alpha(delta, conics.index_select(0, gid), opac.index_select(0, gid))

    with torch.no_grad():
        gid, x, y = _candidate_pairs(
            means2d,
            vis.cov2d,
            vis.radii,
            opac,
            width,
            height,
            tile_size,
        )
        pix = (cam_of[gid] * height + y) * width + x  # flat pixel over all cameras
        del x, y
        alpha, sigma = alpha_of(gid, pix)
        keep = ((sigma >= 0) & (alpha >= ALPHA_MIN)).nonzero().squeeze(1)
        del alpha, sigma
        if stats is not None:
            stats["num_candidates"] = int(gid.shape[0])
            stats["num_pairs"] = int(keep.shape[0])
        # Depth rank of each valid Gaussian (stable, so ties keep index order as in gsplat's sort).
        depth_rank = torch.empty_like(valid_idx)
        depth_rank[torch.sort(depths, stable=True).indices] = torch.arange(G, device=depths.device)
        gid = gid.index_select(0, keep)
        key = pix.index_select(0, keep) * max(G, 1) + depth_rank.index_select(0, gid)
        del pix, keep
        key, order = torch.sort(key)
        gid = gid.index_select(0, order)
        pix = torch.div(key, max(G, 1), rounding_mode="floor")
        del key, order
        first = torch.ones_like(pix, dtype=torch.bool)
        first[1:] = pix[1:] != pix[:-1]
        arange = torch.arange(pix.shape[0], device=pix.device)
        seg_start = torch.cummax(torch.where(first, arange, torch.zeros_like(arange)), 0).values
        del first, arange

    # Differentiable compositing over the kept pairs, in (pixel, depth) order.
    alpha, _ = alpha_of(gid, pix)
    log_t = torch.log1p(-alpha).double()
    excl = torch.cumsum(log_t, 0) - log_t  # exclusive prefix sum over the whole list
    trans = torch.exp(excl - excl.index_select(0, seg_start)).to(alpha.dtype)  # restart at each pixel
    with torch.no_grad():
        alive = trans * (1 - alpha) > T_MIN  # gsplat stops before the Gaussian that would end the pixel
    weight = torch.where(alive, alpha * trans, torch.zeros_like(alpha))

    num_pix = B * V * height * width
    acc = torch.zeros(num_pix, D + 2, dtype=means.dtype, device=means.device)
    acc = acc.index_add(0, pix, weight[:, None] * feats.index_select(0, gid))
    return composite_outputs(acc, B, V, height, width, backgrounds)
