"""A prior over the VAR's global code alone: a mixture density network (Bishop, 1994) that, given the input's
condition latent, gives a mixture of K diagonal Gaussians over the C numbers of the global code (the latent's spatial
mean, `VARNetConfig.global_code`), which carries the hidden side.

Why beside the denoiser: on the geometry proving ground the denoiser's samples miss the input's shape codes (they sit
between them, a median 0.64 of the way to the next code) and 41% of them are drawn as no shape at all, while the same
samples with their global code moved onto a true shape code of the input, picked at random, are 6% "none" (README,
second session of 2026-12-06). A handful of numbers with a few modes per input is what a mixture models exactly and
cheaply: each component can sit on one shape's code, and sampling picks a component, not a point between them.

The prior predicts each component's mean as an offset from the input-only global code (what the input alone
encodes), so it learns how each hidden side moves the code rather than where the input puts it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Tuple, Type

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import check_option, is_number_in

LOG_STD_RANGE = (-7.0, 2.0)
"""Clamp of each component's log std: below, the likelihood of a code the component sits on grows without bound."""


@dataclass
class GlobalCodePriorConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: GlobalCodePrior)
    components: int = 6
    """Mixture components K (more than the modes a data set has is harmless: unused ones lose their weight)."""
    width: int = 256
    """Hidden width of the MLP from the flattened condition latent to the mixture."""
    depth: int = 2
    """Hidden layers of that MLP."""
    temperature: float = 1.0
    """Sampling: each component's std is multiplied by this (0 = the chosen component's mean)."""

    def __post_init__(self) -> None:
        flag = "--pipeline.model.code-prior"  # the diffusion model's flat fields (DiffusionModelConfig.code_prior_*)
        check_option(is_number_in(self.components, 1, 64), f"{flag}-components", self.components, "from 1 to 64")
        check_option(is_number_in(self.width, 1, 8192), f"{flag}-width", self.width, "from 1 to 8192")
        check_option(is_number_in(self.depth, 1, 16), f"{flag}-depth", self.depth, "from 1 to 16")
        check_option(
            is_number_in(self.temperature, 0, 10),
            f"{flag}-temperature",
            self.temperature,
            "a factor in [0, 10] on the components' std (0 = their means, 1 = as trained)",
        )


class GlobalCodePrior(nn.Module):
    """p(global code | condition latent) as a mixture of K diagonal Gaussians in the space the denoiser diffuses."""

    def __init__(self, config: GlobalCodePriorConfig, code_channels: int, cond_features: int) -> None:
        """`cond_features`: the size of the flattened condition latent (C x h x w) it reads."""
        super().__init__()
        self.config = c = config
        self.code_channels = code_channels
        layers, width_in = [], cond_features
        for _ in range(c.depth):
            layers += [nn.Linear(width_in, c.width), nn.SiLU()]
            width_in = c.width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width_in, c.components * (1 + 2 * code_channels))
        with torch.no_grad():  # start as K equal, broad components at offsets spread around the input-only code
            self.head.weight.mul_(0.01)
            self.head.bias.zero_()
            means = self.head.bias.view(c.components, 1 + 2 * code_channels)[:, 1 : 1 + code_channels]
            means.copy_(torch.randn(c.components, code_channels, generator=torch.Generator().manual_seed(0)))

    def mixture(
        self, cond: Float[Tensor, "B C h w"], anchor: Float[Tensor, "B D"]
    ) -> Tuple[Float[Tensor, "B K"], Float[Tensor, "B K D"], Float[Tensor, "B K D"]]:
        """(log weights, means, log stds) of each input's mixture; the means are offsets from `anchor` (the input-only
        global code, in the same space as the codes)."""
        K, D = self.config.components, self.code_channels
        out = self.head(self.body(cond.flatten(1).float())).view(-1, K, 1 + 2 * D)
        log_w = torch.log_softmax(out[..., 0], dim=-1)
        means = anchor.float()[:, None] + out[..., 1 : 1 + D]
        log_std = out[..., 1 + D :].clamp(*LOG_STD_RANGE)
        return log_w, means, log_std

    def nll(
        self, cond: Float[Tensor, "B C h w"], anchor: Float[Tensor, "B D"], code: Float[Tensor, "B D"]
    ) -> Float[Tensor, ""]:
        """Mean negative log-likelihood (nats per input) of the true global codes under each input's mixture."""
        return -torch.logsumexp(self._joint_log_probs(cond, anchor, code)[0], dim=-1).mean()

    def _joint_log_probs(
        self, cond: Tensor, anchor: Tensor, code: Tensor
    ) -> Tuple[Float[Tensor, "B K"], Float[Tensor, "B K D"], Float[Tensor, "B K D"]]:
        """(log of each component's weight times its density at `code`, the components' means, their log stds)."""
        log_w, means, log_std = self.mixture(cond, anchor)
        z = (code.float()[:, None] - means) * torch.exp(-log_std)
        log_normal = (-0.5 * z.square() - log_std).sum(dim=-1) - 0.5 * self.code_channels * math.log(2 * math.pi)
        return log_w + log_normal, means, log_std

    @torch.no_grad()
    def sample(
        self,
        cond: Float[Tensor, "1 C h w"],
        anchor: Float[Tensor, "1 D"],
        num_samples: int,
        seed: Optional[int] = None,
        temperature: Optional[float] = None,
    ) -> Float[Tensor, "N D"]:
        """`num_samples` global codes for ONE input: a component drawn by its weight, then a point of it with its std
        times `temperature` (the config's when None). The same seed gives the same codes."""
        tau = self.config.temperature if temperature is None else temperature
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        log_w, means, log_std = (x[0].cpu() for x in self.mixture(cond, anchor))
        k = torch.multinomial(log_w.exp(), num_samples, replacement=True, generator=gen)
        noise = torch.randn(num_samples, self.code_channels, generator=gen)
        return (means[k] + tau * log_std[k].exp() * noise).to(cond.device)

    def redraw(
        self,
        cond: Float[Tensor, "B C h w"],
        anchor: Float[Tensor, "B D"],
        code: Float[Tensor, "B D"],
        generator: Optional[torch.Generator] = None,
        temperature: Optional[float] = None,
    ) -> Float[Tensor, "B D"]:
        """For each input, a code drawn the way sampling draws one (std times `temperature`, the config's when None)
        from the component that explains its `code`, chosen by its responsibility for it: what the sampler would give
        for that hidden side, for training a decoder to draw it (ReconstructorModelConfig.code_prior_run)."""
        log_joint, means, log_std = self._joint_log_probs(cond, anchor, code)
        k = torch.multinomial(torch.softmax(log_joint, dim=-1), 1, generator=generator)[:, 0]
        rows = torch.arange(k.shape[0], device=k.device)
        noise = torch.randn(means.shape[0], self.code_channels, generator=generator, device=means.device)
        tau = self.config.temperature if temperature is None else temperature
        return means[rows, k] + tau * log_std[rows, k].exp() * noise
