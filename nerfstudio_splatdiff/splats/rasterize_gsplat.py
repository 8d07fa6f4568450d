"""gsplat backend (CUDA only). gsplat 1.4.0 JIT-compiles its kernels on first use and fails off CUDA,
so this module is only ever called with CUDA tensors."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def rasterize_gsplat(
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
) -> tuple[Float[Tensor, "B V H W D"], Float[Tensor, "B V H W 1"], Float[Tensor, "B V H W 1"]]:
    """Same contract as `rasterize_torch`; gsplat 1.4.0 has no batch axis, so scenes are looped."""
    if means.device.type != "cuda":
        raise RuntimeError("rasterize_gsplat needs CUDA tensors; use the torch backend elsewhere.")
    from gsplat import rasterization  # imported lazily: importing is cheap, calling compiles CUDA code

    D = colors.shape[-1]
    rgbs, alphas, depths = [], [], []
    for b in range(means.shape[0]):
        out, alpha, _ = rasterization(
            means[b],
            quats[b],
            scales[b],
            opacities[b],
            colors[b],
            viewmats[b],
            Ks[b],
            width,
            height,
            near_plane=near_plane,
            far_plane=far_plane,
            eps2d=eps2d,
            tile_size=tile_size,
            packed=False,
            backgrounds=backgrounds[b],
            render_mode="RGB+ED",
            rasterize_mode="classic",
        )
        rgbs.append(out[..., :D])
        depths.append(out[..., D:])
        alphas.append(alpha)
    return torch.stack(rgbs), torch.stack(alphas), torch.stack(depths)
