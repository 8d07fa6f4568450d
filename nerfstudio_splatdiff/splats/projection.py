"""EWA projection of 3D Gaussians into pinhole cameras, following gsplat 1.4.0's conventions exactly.

Conventions (the same as gsplat's `fully_fused_projection`, so the torch and gsplat backends agree):
- world-to-camera matrices in OpenCV convention (x right, y down, z forward), pixel intrinsics K;
- the Jacobian is evaluated at the mean clamped to 1.3x the field of view;
- a 0.3 px low-pass (`eps2d`) is added to the 2D covariance;
- Gaussians with z outside [near, far], a non-positive determinant, or a 3-sigma box entirely off-image
  are culled (radius 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from nerfstudio_splatdiff.splats.geometry import covariance_factor


@dataclass
class Projected:
    """Per camera and Gaussian: the 2D footprint. All differentiable except `radii` and `valid`."""

    means2d: Float[Tensor, "B V N 2"]
    cov2d: Float[Tensor, "B V N 2 2"]
    conics: Float[Tensor, "B V N 3"]  # inverse 2D covariance (a, b, c) for [[a, b], [b, c]]
    depths: Float[Tensor, "B V N"]  # camera-space z
    radii: Int[Tensor, "B V N"]  # ceil(3 sigma) of the largest eigenvalue, 0 when culled
    valid: Bool[Tensor, "B V N"]


def project_gaussians(
    means: Float[Tensor, "B N 3"],
    quats: Float[Tensor, "B N 4"],
    scales: Float[Tensor, "B N 3"],
    viewmats: Float[Tensor, "B V 4 4"],
    Ks: Float[Tensor, "B V 3 3"],
    width: int,
    height: int,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
) -> Projected:
    """Project every Gaussian of scene b into every camera v of scene b."""
    R = viewmats[..., :3, :3]  # [B,V,3,3]
    t = viewmats[..., :3, 3]  # [B,V,3]
    means_c = torch.einsum("bvij,bnj->bvni", R, means) + t[:, :, None, :]  # [B,V,N,3]

    fx, fy = Ks[..., 0, 0][..., None], Ks[..., 1, 1][..., None]  # [B,V,1]
    cx, cy = Ks[..., 0, 2][..., None], Ks[..., 1, 2][..., None]
    x, y, z = means_c.unbind(-1)
    # Guard the division for culled (z <= 0) Gaussians; they are masked out below.
    z_safe = torch.where(z.abs() < 1e-12, torch.full_like(z, 1e-12), z)
    rz = 1.0 / z_safe
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    # cov2d = J R Sigma R^T J^T + eps2d I (gsplat's formula), computed as (J R M)(J R M)^T with Sigma = M M^T, entry
    # by entry on [B, V, N] tensors: batched 3x3 matmuls were ~10% of a CPU render (benchmarks/render.py), and
    # J's zeros halve the work. Equal to the matmul form up to float rounding.
    J00, J02 = fx * rz, -fx * tx * rz * rz  # J = [[J00, 0, J02], [0, J11, J12]]
    J11, J12 = fy * rz, -fy * ty * rz * rz
    Rg = R[:, :, None]  # [B,V,1,3,3]
    JR = [
        [J00 * Rg[..., 0, k] + J02 * Rg[..., 2, k] for k in range(3)],
        [J11 * Rg[..., 1, k] + J12 * Rg[..., 2, k] for k in range(3)],
    ]  # [2][3] of [B,V,N]
    M = covariance_factor(quats, scales)[:, None]  # [B,1,N,3,3]
    A = [[row[0] * M[..., 0, k] + row[1] * M[..., 1, k] + row[2] * M[..., 2, k] for k in range(3)] for row in JR]
    a = A[0][0] * A[0][0] + A[0][1] * A[0][1] + A[0][2] * A[0][2] + eps2d
    b = A[0][0] * A[1][0] + A[0][1] * A[1][1] + A[0][2] * A[1][2]
    c = A[1][0] * A[1][0] + A[1][1] * A[1][1] + A[1][2] * A[1][2] + eps2d
    cov2d = torch.stack([a, b, b, c], dim=-1).reshape(*z.shape, 2, 2)
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], dim=-1)

    with torch.no_grad():
        half_tr = 0.5 * (a + c)
        v1 = half_tr + torch.sqrt(torch.clamp(half_tr * half_tr - det, min=0.01))
        radii_f = torch.ceil(3.0 * torch.sqrt(v1))
        mx, my = means2d[..., 0], means2d[..., 1]
        valid = (
            (z >= near_plane)
            & (z <= far_plane)
            & (det > 0)
            & (radii_f > 0)
            & (mx + radii_f > 0)
            & (mx - radii_f < width)
            & (my + radii_f > 0)
            & (my - radii_f < height)
        )
        radii = torch.where(valid, radii_f, torch.zeros_like(radii_f)).to(torch.int64)
    return Projected(means2d=means2d, cov2d=cov2d, conics=conics, depths=z, radii=radii, valid=valid)


def gaussian_alpha(
    delta: Float[Tensor, "M 2"], conics: Float[Tensor, "M 3"], opacities: Float[Tensor, " M"]
) -> tuple[Float[Tensor, " M"], Float[Tensor, " M"]]:
    """gsplat's per-pixel alpha: min(0.999, o * exp(-sigma)) with delta = mean2d - pixel_centre."""
    dx, dy = delta[:, 0], delta[:, 1]
    sigma = 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy
    alpha = torch.clamp(opacities * torch.exp(-sigma), max=ALPHA_MAX)
    return alpha, sigma


# gsplat 1.4.0 rasterize_to_pixels_fwd.cu: alpha clamp, skip threshold, and early-stop transmittance.
ALPHA_MAX = 0.999
ALPHA_MIN = 1.0 / 255.0
T_MIN = 1e-4
