"""Latent denoiser: a Stable-Diffusion-U-Net-shaped network (diffusers UNet2DModel, built from a config, trained
from scratch) that predicts the noise in a VAR latent, conditioned by CONCATENATION on the frozen VAR encoder's
latent of the input image (Marigold style): 4 noisy + 4 condition = 8 input channels."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Tuple, Type

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import check_network_shape
from nerfstudio_splatdiff.models.diffusers_blocks import UNet2DModel


@dataclass
class DenoiserNetConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: DenoiserNet)
    block_out_channels: Tuple[int, ...] = (320, 640, 1280, 1280)
    """SD-U-Net widths (paper size); the CPU preset uses (64, 128, 128)."""
    layers_per_block: int = 2
    attention_levels: Tuple[int, ...] = (1, 2, 3)
    """Levels (0 = the latent's full resolution) with self-attention."""
    norm_num_groups: int = 32
    latent_channels: int = 4
    cond_channels: int = 4

    def __post_init__(self) -> None:
        check_network_shape(
            "--pipeline.model.denoiser", self.block_out_channels, self.norm_num_groups, self.layers_per_block
        )


class DenoiserNet(nn.Module):
    def __init__(self, config: DenoiserNetConfig) -> None:
        super().__init__()
        self.config = c = config
        n = len(c.block_out_channels)
        down = tuple("AttnDownBlock2D" if i in c.attention_levels else "DownBlock2D" for i in range(n))
        up = tuple("AttnUpBlock2D" if (n - 1 - i) in c.attention_levels else "UpBlock2D" for i in range(n))
        self.unet = UNet2DModel(
            in_channels=c.latent_channels + c.cond_channels,
            out_channels=c.latent_channels,
            block_out_channels=c.block_out_channels,
            layers_per_block=c.layers_per_block,
            norm_num_groups=c.norm_num_groups,
            down_block_types=down,
            up_block_types=up,
        )

    def forward(
        self, noisy: Float[Tensor, "B 4 h w"], timesteps: Tensor, cond: Float[Tensor, "B 4 h w"]
    ) -> Float[Tensor, "B 4 h w"]:
        """Predicted noise (epsilon) for `noisy` at `timesteps`, given the condition latent (zeros = none)."""
        t = torch.as_tensor(timesteps, device=noisy.device).reshape(-1).expand(noisy.shape[0])
        return self.unet(torch.cat([noisy, cond], dim=1), t).sample
