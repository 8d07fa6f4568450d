"""The VAR's privileged branch: one view of the hidden side, WITH its pose, informs the latent in training.

Why: if the encoder sees only the input image I, a latent is z = mu(I) + sigma(I) eps with eps independent of the
hidden side, so the loss-minimising decoder maps every z to the average hidden side and no sampler can draw
distinct completions from such latents. A conditional VAE fixes this (Sohn et al. 2015; the Probabilistic U-Net,
Kohl et al. 2018): the posterior also sees what the input lacks, the decoder learns to draw it from the latent,
and a prior over latents given the input alone (here, stage 2's diffusion model) samples it at test time.

How: the privileged view's pixels and its per-pixel camera rays in the INPUT camera's frame (Plücker coordinates:
direction and moment, so the branch knows where that view looks from) go through a small strided CNN, are pooled
into one global code, and an MLP maps that code onto a correction of the latent mean on the latent grid. The
correction is added to the input encoder's mean (fusion at the latent, never at the pixels: the two views do not
line up), and the branch never reaches the skip features, which carry only the input.

Two parts, learned from what went wrong. A zero start of the last layer (tried first) is ignored: the decoder sees
no difference between hidden sides, its gradient asks every scene for the same correction, and after 500 steps the
corrections for red, green and blue hidden sides differed by 0.006-0.07 against a posterior noise of 0.25. A large
random start of a per-cell correction (tried next) was pushed away within 250 steps: the decoder's convolutions
read it as noise that spoils the input view. So the branch now also writes a scene-wide part (`to_global`, the same
on every latent cell, started large: `GLOBAL_GAIN`), which the decoder reads only as the latent's spatial mean
through its global code (var_net.GlobalFiLM): pooling averages the posterior noise away, and the convolutions never
see it, so it cannot spoil the input view while the decoder learns to use it. The per-cell part (`to_grid`) starts
small.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import SplatdiffError


def plucker_rays(c2w: Float[Tensor, "B 4 4"], K: Float[Tensor, "B 3 3"], size: int) -> Float[Tensor, "B 6 S S"]:
    """Per-pixel ray direction (unit) and moment (origin x direction) of OpenCV cameras, as image channels."""
    B = c2w.shape[0]
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=c2w.dtype, device=c2w.device) + 0.5,
        torch.arange(size, dtype=c2w.dtype, device=c2w.device) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3).expand(B, -1, -1)
    cam = pix @ torch.linalg.inv(K).transpose(-1, -2)
    d = F.normalize(cam @ c2w[:, :3, :3].transpose(-1, -2), dim=-1)
    o = c2w[:, None, :3, 3].expand_as(d)
    rays = torch.cat([d, torch.cross(o, d, dim=-1)], -1)
    return rays.transpose(1, 2).reshape(B, 6, size, size)


def privileged_view_index(c2w: Float[Tensor, "B V 4 4"]) -> Tensor:
    """Per scene, the view (1..V-1) whose viewing direction is most opposite to the input's (view 0): [B]."""
    fwd = c2w[..., :3, 2]
    cos = (fwd[:, 1:] * fwd[:, :1]).sum(-1)
    return cos.argmin(dim=1) + 1


def privileged_inputs(batch: dict) -> tuple[Float[Tensor, "B 3 H W"], Float[Tensor, "B 4 4"], Float[Tensor, "B 3 3"]]:
    """Each scene's privileged view (see `privileged_view_index`): image, camera-to-world relative to the input
    (batches are already relative to view 0) and pixel intrinsics."""
    if batch["images"].shape[1] < 2:
        raise SplatdiffError("A VAR with a privileged view needs at least one target view per training scene.")
    idx = privileged_view_index(batch["c2w"])
    rows = torch.arange(idx.shape[0], device=idx.device)
    return batch["images"][rows, idx].permute(0, 3, 1, 2), batch["c2w"][rows, idx], batch["K"][rows, idx]


INIT_GAIN = 1.0
"""Initial scale of the per-cell correction (see the module docstring: a zero start is ignored)."""
GLOBAL_GAIN = 10.0
"""Initial scale of the scene-wide part of the correction (the latent's spatial mean, read by the decoder's global
code, var_net.GlobalFiLM): differences between hidden sides start well above the pooled posterior noise."""


class PrivilegedBranch(nn.Module):
    """Privileged view + pose -> correction of the latent mean [B, latent_channels, h, w] (see module docstring)."""

    def __init__(self, latent_channels: int, width: int, grid: int, downsample: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(9, width, 3, padding=1), nn.SiLU())
        layers: list[nn.Module] = []
        c = width
        for _ in range(int(math.log2(downsample))):
            layers += [
                nn.Conv2d(c, min(2 * c, 4 * width), 3, stride=2, padding=1),
                nn.GroupNorm(8, min(2 * c, 4 * width)),
                nn.SiLU(),
            ]
            c = min(2 * c, 4 * width)
        self.features = nn.Sequential(*layers)
        # Pooled deep features, plus the pooled stem (before any normalisation: it keeps the colours).
        self.code = nn.Sequential(
            nn.Linear(2 * c + 2 * width, 4 * width), nn.SiLU(), nn.Linear(4 * width, 4 * width), nn.SiLU()
        )
        self.to_grid = nn.Linear(4 * width, latent_channels * grid * grid)
        nn.init.normal_(self.to_grid.weight, std=INIT_GAIN / math.sqrt(4 * width))
        nn.init.zeros_(self.to_grid.bias)
        # The scene-wide part: added to every latent cell, read by the decoder's global code (var_net.GlobalFiLM).
        self.to_global = nn.Linear(4 * width, latent_channels)
        nn.init.normal_(self.to_global.weight, std=GLOBAL_GAIN / math.sqrt(4 * width))
        nn.init.zeros_(self.to_global.bias)
        self.latent_channels, self.grid = latent_channels, grid

    def forward(
        self,
        image: Float[Tensor, "B 3 H W"],
        c2w: Float[Tensor, "B 4 4"],
        K: Float[Tensor, "B 3 3"],
        latent_hw: tuple[int, int],
    ) -> Float[Tensor, "B C h w"]:
        H, W = image.shape[-2:]
        if H != W:
            raise SplatdiffError(f"The privileged view must be square (got {W}x{H}).")
        rays = plucker_rays(c2w.float(), K.float(), H).to(image.dtype)
        stem = self.stem(torch.cat([image * 2 - 1, rays], dim=1))
        f = self.features(stem)
        pooled = torch.cat(
            [f.mean(dim=(2, 3)), f.amax(dim=(2, 3)), stem.mean(dim=(2, 3)), stem.amax(dim=(2, 3))], dim=1
        )
        code = self.code(pooled)
        grid = self.to_grid(code).reshape(-1, self.latent_channels, self.grid, self.grid)
        if grid.shape[-2:] != latent_hw:
            grid = F.interpolate(grid, size=latent_hw, mode="bilinear", align_corners=False)
        return grid + self.to_global(code)[:, :, None, None]
