"""Rotation and covariance helpers shared by the rasterisers, the splatter head and .ply I/O."""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def quat_to_rotmat(quats: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 3 3"]:
    """(w, x, y, z) quaternion, normalised here, to a rotation matrix (same formula as gsplat)."""
    q = quats / quats.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z),
        2 * (x * y - w * z),
        2 * (x * z + w * y),
        2 * (x * y + w * z),
        1 - 2 * (x * x + z * z),
        2 * (y * z - w * x),
        2 * (x * z - w * y),
        2 * (y * z + w * x),
        1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).reshape(*q.shape[:-1], 3, 3)


def rotmat_to_quat(R: Float[Tensor, "*batch 3 3"]) -> Float[Tensor, "*batch 4"]:
    """Rotation matrix to a unit (w, x, y, z) quaternion with w >= 0 (numerically stable branch choice)."""
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    # Four candidate quaternions, each well conditioned where its leading component is large.
    cands = torch.stack(
        [
            torch.stack(
                [1 + m00 + m11 + m22, m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], -1
            ),
            torch.stack(
                [m[:, 2, 1] - m[:, 1, 2], 1 + m00 - m11 - m22, m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], -1
            ),
            torch.stack(
                [m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], 1 - m00 + m11 - m22, m[:, 1, 2] + m[:, 2, 1]], -1
            ),
            torch.stack(
                [m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], 1 - m00 - m11 + m22], -1
            ),
        ],
        dim=1,
    )  # [K, 4 candidates, 4]
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = diag.argmax(dim=-1)
    q = cands[torch.arange(m.shape[0], device=m.device), best]
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    return q.reshape(*R.shape[:-2], 4)


def quat_multiply(a: Float[Tensor, "*batch 4"], b: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 4"]:
    """Hamilton product a * b of (w, x, y, z) quaternions: rotation b first, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def covariance_factor(
    quats: Float[Tensor, "*batch 4"], scales: Float[Tensor, "*batch 3"]
) -> Float[Tensor, "*batch 3 3"]:
    """M = R S, the factor of the covariance Sigma = M M^T, from a quaternion and per-axis standard deviations."""
    return quat_to_rotmat(quats) * scales[..., None, :]


def covariance_3d(quats: Float[Tensor, "*batch 4"], scales: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch 3 3"]:
    """Sigma = R S S^T R^T from a quaternion and per-axis standard deviations."""
    M = covariance_factor(quats, scales)
    return M @ M.transpose(-1, -2)
