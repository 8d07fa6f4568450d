"""One entry point to render Gaussians: B scenes x V cameras.

Backends: "gsplat" (CUDA only), "numba" (CPU: the tile-parallel numba kernels, the default on CPU when numba
imports) and "torch" (any device: the pure-PyTorch reference the other two are tested against).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Union

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.cameras import camera_faults, raise_camera_fault
from nerfstudio_splatdiff.splats.gaussians import Gaussians
from nerfstudio_splatdiff.splats.rasterize_gsplat import rasterize_gsplat
from nerfstudio_splatdiff.splats.rasterize_numba import numba_available, numba_import_error, rasterize_numba
from nerfstudio_splatdiff.splats.rasterize_torch import rasterize_torch

Backend = Literal["auto", "torch", "gsplat", "numba"]
BACKENDS = ("torch", "gsplat", "numba")
ENV_VAR = "SPLATDIFF_RENDER_BACKEND"


def default_backend(device: Union[torch.device, str], dtype: torch.dtype = torch.float32) -> str:
    """The backend "auto" picks for tensors on `device`.

    CUDA: gsplat. CPU: numba when it imports (float32/float64), else torch. The environment variable
    SPLATDIFF_RENDER_BACKEND overrides this where the choice is possible: "torch" everywhere (the reference; e.g.
    where gsplat's CUDA extension cannot be built), "numba" or "gsplat" on their devices; "auto" (or unset) as above.
    """
    dev = torch.device(device)
    wanted = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
    if wanted not in ("auto",) + BACKENDS:
        raise SplatdiffError(f"{ENV_VAR}={wanted!r} is not a render backend: use auto, torch, numba or gsplat.")
    if wanted == "torch":
        return "torch"
    if dev.type == "cuda":
        return "gsplat" if wanted in ("auto", "gsplat") else "torch"
    if (
        dev.type == "cpu"
        and wanted in ("auto", "numba")
        and numba_available()
        and dtype in (torch.float32, torch.float64)
    ):
        return "numba"
    return "torch"


def available_backends(device: Union[torch.device, str]) -> list[str]:
    """Backends that can render tensors on `device` in this environment."""
    dev = torch.device(device)
    out = ["torch"]
    if dev.type == "cpu" and numba_available():
        out.append("numba")
    if dev.type == "cuda":
        out.append("gsplat")
    return out


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
    cx, cy = Ks[..., 0, 2], Ks[..., 1, 2]
    off_image = ((cx < 0) | (cx > width) | (cy < 0) | (cy > height)).any()
    *faults, principal_off_image = torch.cat([camera_faults(viewmats, Ks), off_image[None]]).tolist()  # one sync
    raise_camera_fault(faults, "render_gaussians")
    if principal_off_image:
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

    backend "auto" is `default_backend(device)`: gsplat for CUDA tensors, the numba kernels on CPU (when numba
    imports), the pure-PyTorch tiled rasteriser otherwise; SPLATDIFF_RENDER_BACKEND=torch makes "auto" use the
    torch rasteriser everywhere (e.g. where gsplat's CUDA extension cannot be built).
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
        raise SplatdiffError(
            f"background must be an RGB colour [3], [B, 3] or [B, V, 3]; got {list(background.shape)}."
        )
    while background.dim() < 3:
        background = background.unsqueeze(-2)
    backgrounds = background.expand(B, V, 3)

    if backend == "auto":
        backend = default_backend(dev, dtype)
    if backend == "gsplat" and dev.type != "cuda":
        raise SplatdiffError("The gsplat backend only runs on CUDA tensors; use backend='torch' (or 'auto') on CPU.")
    if backend == "numba":
        if not numba_available():
            raise SplatdiffError(f"The numba backend needs numba ({numba_import_error()}); use backend='torch'.")
        if dev.type != "cpu":
            raise SplatdiffError("The numba backend only runs on CPU tensors; use backend='auto' or 'torch'.")
        if dtype not in (torch.float32, torch.float64):
            raise SplatdiffError(f"The numba backend renders float32 or float64 Gaussians, not {dtype}.")
    fn = {"torch": rasterize_torch, "gsplat": rasterize_gsplat, "numba": rasterize_numba}.get(backend)
    if fn is None:
        raise SplatdiffError(f"Unknown render backend {backend!r}: use 'auto', 'torch', 'numba' or 'gsplat'.")
    rgb, alpha, depth = fn(
        gaussians.means,
        gaussians.quats,
        gaussians.scales,
        gaussians.opacities,
        gaussians.colors,
        viewmats.to(dtype),
        Ks.to(dtype),
        width,
        height,
        backgrounds,
        near_plane=near_plane,
        far_plane=far_plane,
        eps2d=eps2d,
        tile_size=tile_size,
    )
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth)
