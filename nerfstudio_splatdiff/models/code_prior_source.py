"""A diffusion run's code prior (`--pipeline.model.code-prior True`), frozen, with the latent scales it works in: for
training a VAR's decoder on the global codes the sampler will give it (ReconstructorModelConfig.code_prior_run).

Why: the prior places each sample's global code near, not on, the input's shape code (a median third of the way to
the next code on the geometry proving ground), and a decoder trained only on the encoder's own codes draws many such
codes as no shape. Trained on codes redrawn from the component that explains the true one, the decoder learns to draw
each component's codes as the hidden side they stand for. The encoder must stay frozen, so the latents the prior
learned do not move.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.code_prior import GlobalCodePrior
from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig, scale_latent
from nerfstudio_splatdiff.models.var_checkpoint import load_checkpoint, load_inference_config, resolve_run

PRIOR_PREFIX = "_model.code_prior."
"""Where a diffusion run's pipeline state keeps its code prior's weights."""


class FrozenCodePrior:
    """The prior and its run's scales: VAR latent <-> the space the prior models (the denoiser's). Not a torch
    Module on purpose: a model that holds one for training does not save it in its checkpoints."""

    def __init__(self, prior: GlobalCodePrior, scale: float, scale_global: float, code_scale: float) -> None:
        self.prior = prior.eval().requires_grad_(False)
        self.scale, self.scale_global, self.code_scale = scale, scale_global, code_scale

    def to(self, device: torch.device) -> "FrozenCodePrior":
        """This prior on `device`."""
        self.prior.to(device)
        return self

    @torch.no_grad()
    def redraw(
        self,
        input_mean: Float[Tensor, "B C h w"],
        latent: Float[Tensor, "B C h w"],
        share: float,
        generator: Optional[torch.Generator] = None,
        eligible: Optional[Tensor] = None,
        temperature: Optional[float] = None,
    ) -> Float[Tensor, "B C h w"]:
        """`latent` (a VAR latent given the privileged view) with, for a random `share` of its scenes (of those
        `eligible` [B] marks: the ones that kept their privileged view), the global code replaced by one the prior
        draws from the component that explains it (`GlobalCodePrior.redraw`, at `temperature`, None = the prior's
        own); the rest of every latent is kept.
        `input_mean`: the input-only posterior mean (the prior's condition)."""
        gs = self.scale_global * self.code_scale  # VAR units -> the prior's, for the global code
        cond = scale_latent(input_mean.float(), self.scale, self.scale_global)
        anchor = scale_latent(input_mean.float(), self.scale, gs).mean(dim=(2, 3))
        code = latent.float().mean(dim=(2, 3))
        new = self.prior.redraw(cond, anchor, code * gs, generator, temperature) / gs
        pick = torch.rand(latent.shape[0], generator=generator, device=latent.device) < share
        if eligible is not None:
            pick = pick & eligible
        shift = torch.where(pick[:, None], new - code, torch.zeros_like(new))
        return latent + shift[:, :, None, None].to(latent.dtype)


def load_frozen_code_prior(path: Path) -> FrozenCodePrior:
    """The code prior of a splatdiff-diffusion run trained with `--pipeline.model.code-prior True` (its config.yml,
    nerfstudio_models folder or a .ckpt); one clear line when it is missing or has none."""
    how = "pass --pipeline.model.code-prior-run a splatdiff-diffusion run trained with --pipeline.model.code-prior True"
    if not Path(path).expanduser().exists():
        raise SplatdiffError(f"No run at {path}: {how}.")
    config_path, source = resolve_run(Path(path))
    model_cfg = load_inference_config(config_path).pipeline.model
    if not isinstance(model_cfg, DiffusionModelConfig) or not model_cfg.code_prior:
        raise SplatdiffError(f"{config_path} is not a diffusion run with a code prior: {how}.")
    _, loaded = load_checkpoint(source)
    state = loaded["pipeline"]
    weights = {k[len(PRIOR_PREFIX) :]: v.float() for k, v in state.items() if k.startswith(PRIOR_PREFIX)}
    cond_features = weights["body.0.weight"].shape[1]  # the flattened condition latent it reads
    prior = GlobalCodePrior(model_cfg.code_prior_config(), model_cfg.denoiser.latent_channels, cond_features)
    prior.load_state_dict(weights)
    scale, scale_global = float(state["_model.latent_scale"]), float(state["_model.latent_scale_global"])
    if scale <= 0 or scale_global <= 0:
        raise SplatdiffError(f"The diffusion run {config_path} has not set its latent scales yet: train it first.")
    return FrozenCodePrior(prior, scale, scale_global, model_cfg.global_code_scale)
