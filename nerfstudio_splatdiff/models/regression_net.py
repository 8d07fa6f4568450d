"""Regression baseline: a deterministic image -> Splatter Image U-Net, like Splatter Image's own network.

It is diffusers' UNet2DModel (built from a config) called with a constant timestep, so it is a plain U-Net with
skip connections at every level. It shares the splatter head, renderer, losses and schedule with the VAR, so
every comparison between the two is about the latent bottleneck alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple, Type, Union

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import check_network_shape
from nerfstudio_splatdiff.models.diffusers_blocks import UNet2DModel
from nerfstudio_splatdiff.models.splatter_head import SplatterHead, SplatterHeadConfig


@dataclass
class RegressionNetConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: RegressionNet)
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    attention_levels: Tuple[int, ...] = (2,)
    """Levels (0 = full resolution) whose blocks use self-attention."""
    head: SplatterHeadConfig = field(default_factory=SplatterHeadConfig)

    def __post_init__(self) -> None:
        check_network_shape(
            "--pipeline.model.network", self.block_out_channels, self.norm_num_groups, self.layers_per_block
        )


class RegressionNet(nn.Module):
    def __init__(self, config: RegressionNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.head: SplatterHead = c.head.setup()
        n = len(c.block_out_channels)
        down = tuple("AttnDownBlock2D" if i in c.attention_levels else "DownBlock2D" for i in range(n))
        up = tuple("AttnUpBlock2D" if (n - 1 - i) in c.attention_levels else "UpBlock2D" for i in range(n))
        self.unet = UNet2DModel(
            in_channels=3,
            out_channels=self.head.out_channels,
            block_out_channels=c.block_out_channels,
            layers_per_block=c.layers_per_block,
            norm_num_groups=c.norm_num_groups,
            down_block_types=down,
            up_block_types=up,
        )
        self.head.init_output_layer(self.unet.conv_out)

    def forward(
        self,
        images: Float[Tensor, "B 3 H W"],
        c2w: Float[Tensor, "B 4 4"],
        K: Float[Tensor, "B 3 3"],
        depth_near: Float[Tensor, " B"],
        depth_far: Float[Tensor, " B"],
        skip_weight: Union[float, Tensor] = 1.0,
        sample_latent: Optional[bool] = None,
        latent: Optional[Tensor] = None,
    ) -> dict:
        """Same call as the VAR (skip_weight / latent are ignored: there is no bottleneck to bypass)."""
        t = torch.zeros(images.shape[0], device=images.device)
        raw = self.unet(images * 2 - 1, t).sample
        gaussians = self.head(raw.float(), c2w.float(), K.float(), depth_near.float(), depth_far.float())
        return {"gaussians": gaussians}
