"""Evaluation metrics (Splatter Image's protocol): PSNR / SSIM on full images and objects only, and the split
of target pixels into what the input view saw (visible) and what it did not (occluded)."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio_splatdiff.models.losses import ssim
from nerfstudio_splatdiff.splats.cameras import invert_rigid


def psnr(pred: Float[Tensor, "*b H W 3"], gt: Float[Tensor, "*b H W 3"], mask: Tensor | None = None) -> Tensor:
    """PSNR over all pixels, or over the pixels where `mask` [*b, H, W, 1] is true (NaN if none)."""
    err = (pred - gt).pow(2)
    if mask is None:
        mse = err.mean()
    else:
        m = mask.expand_as(err).to(err.dtype)
        mse = (err * m).sum() / (m.sum() + 1e-12) if m.sum() > 0 else err.new_tensor(float("nan"))
    return -10.0 * torch.log10(mse.clamp(min=1e-10))


def image_psnr(pred: Float[Tensor, "V H W 3"], gt: Float[Tensor, "V H W 3"]) -> Tensor:
    """Splatter Image's PSNR: one PSNR per image, averaged over the images (`psnr` pools the pixels instead)."""
    mse = (pred - gt).pow(2).flatten(1).mean(1)
    return (-10.0 * torch.log10(mse.clamp(min=1e-10))).mean()


def object_metrics(pred: Tensor, gt: Tensor, masks: Tensor) -> dict[str, Tensor]:
    """The paper's 'objects only': prediction and target both multiplied by the object mask [V,H,W,1], then
    PSNR (per image, averaged; pooled as an extra key) and SSIM over the whole image."""
    p, g = pred * masks, gt * masks
    return {"psnr_objects": image_psnr(p, g), "psnr_objects_pooled": psnr(p, g), "ssim_objects": ssim(p, g)}


@torch.no_grad()
def visibility_masks(
    depths: Float[Tensor, "V H W 1"], c2w: Float[Tensor, "V 4 4"], K: Float[Tensor, "V 3 3"], rel_tol: float = 0.03
) -> tuple[Bool[Tensor, "V H W 1"], Bool[Tensor, "V H W 1"]]:
    """Split every view's pixels with known depth into visible from view 0 (the input) and occluded.

    A pixel is visible when its surface point, unprojected with its depth, lands inside view 0 in front of the
    camera and agrees with view 0's depth there (within rel_tol); otherwise it is occluded. Pixels without depth
    (background) are in neither set.
    """
    V, H, W, _ = depths.shape
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=depths.dtype, device=depths.device) + 0.5,
        torch.arange(W, dtype=depths.dtype, device=depths.device) + 0.5,
        indexing="ij",
    )
    d = depths[..., 0]
    cam = torch.stack(
        [
            (xs - K[:, None, None, 0, 2]) / K[:, None, None, 0, 0] * d,
            (ys - K[:, None, None, 1, 2]) / K[:, None, None, 1, 1] * d,
            d,
        ],
        -1,
    )
    world = cam @ c2w[:, None, :3, :3].transpose(-1, -2) + c2w[:, None, None, :3, 3]
    w2c0 = invert_rigid(c2w[0])
    in0 = world @ w2c0[:3, :3].T + w2c0[:3, 3]
    z0 = in0[..., 2]
    u = in0[..., 0] / z0.clamp(min=1e-6) * K[0, 0, 0] + K[0, 0, 2]
    v = in0[..., 1] / z0.clamp(min=1e-6) * K[0, 1, 1] + K[0, 1, 2]
    inside = (z0 > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    ui, vi = u.long().clamp(0, W - 1), v.long().clamp(0, H - 1)
    d0 = depths[0, ..., 0][vi, ui]
    agree = inside & (d0 > 0) & ((z0 - d0).abs() <= rel_tol * d0)
    known = d > 0
    return (known & agree)[..., None], (known & ~agree)[..., None]
