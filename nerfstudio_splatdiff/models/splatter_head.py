"""Splatter Image head: a network's [B, M*15, H, W] output + the input camera -> world-space Gaussians.

Per pixel and Gaussian the 15 channels are, in order (Splatter Image's parameterisation):
  opacity (1)  sigmoid
  depth   (1)  sigmoid(x) * (far - near) + near: the camera-space z along the pixel ray, per-scene range
  offset  (3)  added to the ray point in camera space
  scale   (3)  exp, softly capped at `max_scale_px` pixels (at the Gaussian's depth in the input view) when set;
               the third (the input camera's viewing direction while unrotated) at `max_ray_scale_px` when set
  rotation(4)  (w, x, y, z) quaternion, normalised, in camera space; rotated into the world by camera-to-world
  colour  (3)  SH degree-0 coefficient: rgb = 0.5 + C0 * x (the .ply's f_dc)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Type

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import SplatdiffError, check_option, is_number_in
from nerfstudio_splatdiff.splats.gaussians import Gaussians
from nerfstudio_splatdiff.splats.geometry import quat_multiply, rotmat_to_quat

SH_C0 = 0.28209479177387814
CHANNELS_PER_GAUSSIAN = 15
# (name, first channel, number of channels) within one Gaussian's 15 channels.
LAYOUT = {"opacity": (0, 1), "depth": (1, 1), "offset": (2, 3), "scale": (5, 3), "rotation": (8, 4), "colour": (12, 3)}


@dataclass
class SplatterHeadConfig(InstantiateConfig):
    """How raw network outputs become Gaussians, and how the output layer is initialised (Splatter Image's)."""

    _target: Type = field(default_factory=lambda: SplatterHead)
    gaussians_per_pixel: int = 2
    """M: Gaussians predicted per pixel."""
    opacity_bias: float = -2.0
    scale_bias: float = math.log(0.02)
    scale_gain: float = 0.003
    offset_gain: float = 0.1
    colour_gain: float = 5.0
    depth_gain: float = 1.0
    rotation_gain: float = 1.0
    opacity_gain: float = 1.0
    max_scale_px: Optional[float] = None
    """Soft cap on each scale, in input-view pixels at the Gaussian's depth: s = e / (1 + e / cap) with e = exp(x).
    Bounds the rasteriser's work (a few huge Gaussians cost as much as the whole image); None: plain exp."""
    max_ray_scale_px: Optional[float] = None
    """The same soft cap for the third scale axis only, the one along the input camera's ray while a Gaussian is
    unrotated (None: `max_scale_px`). A longer cap lets one pixel's Gaussian reach back along its ray as a needle,
    so a part that lies behind the visible surface along the line of sight (the geometry ground's horn) can be drawn
    by the few pixels in front of it, not only as a dot per pixel. Only with `max_scale_px` set."""

    def __post_init__(self) -> None:
        flag = "--pipeline.model.network.head"
        check_option(
            is_number_in(self.gaussians_per_pixel, 1) and isinstance(self.gaussians_per_pixel, int),
            f"{flag}.gaussians-per-pixel",
            self.gaussians_per_pixel,
            "a whole number of at least 1",
        )
        check_option(
            self.max_scale_px is None or is_number_in(self.max_scale_px, 1e-6),
            f"{flag}.max-scale-px",
            self.max_scale_px,
            "None or a positive number of pixels",
        )
        check_option(
            self.max_ray_scale_px is None
            or (self.max_scale_px is not None and is_number_in(self.max_ray_scale_px, 1e-6)),
            f"{flag}.max-ray-scale-px",
            self.max_ray_scale_px,
            f"None, or a positive number of pixels together with {flag}.max-scale-px",
        )


class SplatterHead(nn.Module):
    """Stateless mapping from activations to Gaussians; `init_output_layer` sets up the layer that feeds it."""

    def __init__(self, config: SplatterHeadConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def out_channels(self) -> int:
        return self.config.gaussians_per_pixel * CHANNELS_PER_GAUSSIAN

    @torch.no_grad()
    def init_output_layer(self, layer: nn.Conv2d) -> None:
        """Splatter Image's output-layer initialisation: Xavier with a per-quantity gain, and biases that
        start every Gaussian small (scale 0.02), fairly transparent (sigmoid(-2)) and unrotated."""
        if layer.out_channels != self.out_channels:
            raise SplatdiffError(
                f"The output layer has {layer.out_channels} channels; the head needs {self.out_channels}."
            )
        c = self.config
        gains = {
            "opacity": c.opacity_gain,
            "depth": c.depth_gain,
            "offset": c.offset_gain,
            "scale": c.scale_gain,
            "rotation": c.rotation_gain,
            "colour": c.colour_gain,
        }
        biases = {
            "opacity": [c.opacity_bias],
            "depth": [0.0],
            "offset": [0.0] * 3,
            "scale": [c.scale_bias] * 3,
            "rotation": [1.0, 0.0, 0.0, 0.0],
            "colour": [0.0] * 3,
        }
        for m in range(c.gaussians_per_pixel):
            for name, (start, n) in LAYOUT.items():
                sl = slice(m * CHANNELS_PER_GAUSSIAN + start, m * CHANNELS_PER_GAUSSIAN + start + n)
                nn.init.xavier_uniform_(layer.weight[sl], gain=gains[name])
                if layer.bias is not None:
                    layer.bias[sl] = torch.tensor(biases[name])

    def forward(
        self,
        raw: Float[Tensor, "B C H W"],
        c2w: Float[Tensor, "B 4 4"],
        K: Float[Tensor, "B 3 3"],
        depth_near: Float[Tensor, " B"],
        depth_far: Float[Tensor, " B"],
    ) -> Gaussians:
        """Gaussians [B, M*H*W] in world space; `c2w` is the input camera's OpenCV camera-to-world and `K`
        its pixel intrinsics at the resolution of `raw`. Gaussian index = m * H * W + row * W + col."""
        B, C, H, W = raw.shape
        M = self.config.gaussians_per_pixel
        if C != self.out_channels:
            raise SplatdiffError(
                f"The splatter head expects {self.out_channels} channels (M={M} x {CHANNELS_PER_GAUSSIAN}), got {C}."
            )
        if c2w.shape != (B, 4, 4) or K.shape != (B, 3, 3) or depth_near.shape != (B,) or depth_far.shape != (B,):
            raise SplatdiffError(
                f"The splatter head needs c2w [B,4,4], K [B,3,3], depth_near/far [B] for B={B}; got "
                f"{list(c2w.shape)}, {list(K.shape)}, {list(depth_near.shape)}, {list(depth_far.shape)}."
            )
        x = raw.reshape(B, M, CHANNELS_PER_GAUSSIAN, H, W).permute(0, 1, 3, 4, 2).reshape(B, M * H * W, -1)

        def part(name: str) -> Tensor:
            start, n = LAYOUT[name]
            return x[..., start : start + n]

        near, far = depth_near[:, None, None], depth_far[:, None, None]
        depth = torch.sigmoid(part("depth")) * (far - near) + near  # [B, N, 1]
        vs, us = torch.meshgrid(
            torch.arange(H, dtype=raw.dtype, device=raw.device) + 0.5,
            torch.arange(W, dtype=raw.dtype, device=raw.device) + 0.5,
            indexing="ij",
        )
        fx, fy = K[:, 0, 0, None, None], K[:, 1, 1, None, None]
        cx, cy = K[:, 0, 2, None, None], K[:, 1, 2, None, None]
        rays = torch.stack([(us - cx) / fx, (vs - cy) / fy, torch.ones_like(us.expand(B, H, W))], -1)  # z = 1
        rays = rays.reshape(B, 1, H * W, 3).expand(B, M, H * W, 3).reshape(B, M * H * W, 3)
        means_cam = rays * depth + part("offset")
        R, t = c2w[:, :3, :3], c2w[:, :3, 3]
        means = means_cam @ R.transpose(-1, -2) + t[:, None]
        q_cam = part("rotation")
        q_cam = q_cam / q_cam.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        quats = quat_multiply(rotmat_to_quat(R)[:, None].expand_as(q_cam), q_cam)
        scales = torch.exp(part("scale"))
        if self.config.max_scale_px is not None:
            pixel = depth / torch.minimum(fx, fy).reshape(B, 1, 1)  # one input-view pixel at that depth [B, N, 1]
            ray_px = self.config.max_ray_scale_px or self.config.max_scale_px
            cap_px = torch.tensor([self.config.max_scale_px] * 2 + [ray_px], dtype=raw.dtype, device=raw.device)
            cap = pixel * cap_px  # [B, N, 3]
            scales = scales / (1 + scales / cap)
        return Gaussians(
            means=means,
            quats=quats,
            scales=scales,
            opacities=torch.sigmoid(part("opacity"))[..., 0],
            colors=0.5 + SH_C0 * part("colour"),
        )
