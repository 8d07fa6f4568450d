"""One entry point to render Gaussians: B scenes x V cameras, gsplat on CUDA, the torch rasteriser elsewhere."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Optional, Union

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.data.cameras import check_finite_camera
from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.gaussians import Gaussians
from nerfstudio_splatdiff.splats.rasterize_gsplat import rasterize_gsplat
from nerfstudio_splatdiff.splats.rasterize_torch import rasterize_torch

Backend = Literal["auto", "torch", "gsplat"]


@dataclass
class RenderOutput:
    rgb: Float[Tensor, "B V H W 3"]
    alpha: Float[Tensor, "B V H W 1"]
    depth: Float[Tensor, "B V H W 1"]  # expected camera-space z of the visible Gaussians (0 where empty)


def _check_cameras(viewmats: Tensor, Ks: Tensor, B: int, width: int, height: int) -> None:
    """Reject camera input that would otherwise fail deep inside torch or silently render garbage."""
    if not (isinstance(width, int) and isinstance(height, int)) or width <= 0 or height <= 0:
        raise SplatdiffError(f"width and height must be positive integers, got width={width!r}, height={height!r}.")
    if viewmats.dim() != 4 or viewmats.shape[0] != B or viewmats.shape[-2:] != (4, 4):
        raise SplatdiffError(
            f"viewmats must be world-to-camera matrices of shape [B={B}, V, 4, 4], got {list(viewmats.shape)}."
        )
    V = viewmats.shape[1]
    if tuple(Ks.shape) != (B, V, 3, 3):
        raise SplatdiffError(f"Ks must be pixel intrinsics of shape [{B}, {V}, 3, 3], got {list(Ks.shape)}.")
    check_finite_camera(viewmats, Ks, "render_gaussians")
    cx, cy = Ks[..., 0, 2], Ks[..., 1, 2]
    if (cx < 0).any() or (cx > width).any() or (cy < 0).any() or (cy > height).any():
        raise SplatdiffError(
            f"The principal point of Ks lies outside the {width}x{height} image: the intrinsics belong to another "
            "image size; rescale K to the render size (fx, cx by new_w/old_w; fy, cy by new_h/old_h)."
        )


def render_gaussians(
    gaussians: Gaussians,
    viewmats: Float[Tensor, "B V 4 4"],
    Ks: Float[Tensor, "B V 3 3"],
    width: int,
    height: int,
    background: Union[Float[Tensor, "3"], Float[Tensor, "B 3"], Float[Tensor, "B V 3"], None] = None,
    backend: Backend = "auto",
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = 16,
) -> RenderOutput:
    """Render every scene of `gaussians` into its own V cameras (OpenCV world-to-camera `viewmats`).

    backend "auto" uses gsplat for CUDA tensors and the pure-PyTorch tiled rasteriser otherwise; the environment
    variable SPLATDIFF_RENDER_BACKEND=torch makes "auto" use the torch rasteriser on CUDA too (e.g. where gsplat's
    CUDA extension cannot be built).
    """
    gaussians.validate()
    B = gaussians.batch_size
    _check_cameras(viewmats, Ks, B, width, height)
    V = viewmats.shape[1]
    dtype, dev = gaussians.means.dtype, gaussians.device
    if viewmats.device != dev or Ks.device != dev:
        raise SplatdiffError(f"Cameras are on {viewmats.device}/{Ks.device} but the Gaussians are on {dev}.")
    if background is None:
        background = torch.zeros(3, dtype=dtype, device=dev)
    background = torch.as_tensor(background, dtype=dtype, device=dev)
    if background.shape[-1] != 3 or background.dim() > 3:
        raise SplatdiffError(f"background must be an RGB colour [3], [B, 3] or [B, V, 3]; got {list(background.shape)}.")
    while background.dim() < 3:
        background = background.unsqueeze(-2)
    backgrounds = background.expand(B, V, 3)

    if backend == "auto":
        backend = "gsplat" if dev.type == "cuda" and os.environ.get("SPLATDIFF_RENDER_BACKEND", "auto") != "torch" else "torch"
    if backend == "gsplat" and dev.type != "cuda":
        raise SplatdiffError("The gsplat backend only runs on CUDA tensors; use backend='torch' (or 'auto') on CPU.")
    fn = {"torch": rasterize_torch, "gsplat": rasterize_gsplat}.get(backend)
    if fn is None:
        raise SplatdiffError(f"Unknown render backend {backend!r}: use 'auto', 'torch' or 'gsplat'.")
    rgb, alpha, depth = fn(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.colors,
        viewmats.to(dtype), Ks.to(dtype), width, height, backgrounds,
        near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, tile_size=tile_size,
    )  # fmt: skip
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth)
