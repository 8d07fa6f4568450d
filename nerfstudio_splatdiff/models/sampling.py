"""Sampling latents with classifier-free guidance: N samples per input in ONE denoiser batch per step.

Guidance follows Ho & Salimans: eps = (1 + w) eps(x, c) - w eps(x, 0), so w = 0 is the plain conditional model
(no guidance, and no unconditional pass). The scheduler is diffusers' DDIM (the baseline) or DPM-Solver++.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.diffusers_blocks import DDIMScheduler, DDPMScheduler, dpm_solver_scheduler

SchedulerKind = Literal["ddim", "dpmsolver++"]
MAX_GUIDANCE = 10.0
MAX_NOISE_TEMPERATURE = 2.0


@dataclass
class NoiseSchedule:
    """The training noise schedule (shared by training and every sampler)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"

    def kwargs(self) -> dict:
        return dict(
            num_train_timesteps=self.num_train_timesteps,
            beta_start=self.beta_start,
            beta_end=self.beta_end,
            beta_schedule=self.beta_schedule,
            prediction_type="epsilon",
        )

    def training_scheduler(self) -> DDPMScheduler:
        return DDPMScheduler(**self.kwargs())

    def sampler(self, kind: SchedulerKind):
        if kind == "ddim":
            return DDIMScheduler(**self.kwargs(), clip_sample=False, set_alpha_to_one=False)
        if kind == "dpmsolver++":
            return dpm_solver_scheduler()(**self.kwargs(), algorithm_type="dpmsolver++", solver_order=2)
        raise SplatdiffError(f"Unknown scheduler {kind!r}: use 'ddim' or 'dpmsolver++'.")


def check_sampling_args(
    num_samples: int,
    guidance_weight: float,
    skip_weight: float,
    num_steps: int,
    eta: float = 0.0,
    kind: SchedulerKind = "ddim",
    noise_temperature: float = 1.0,
) -> None:
    """One clear error for knobs outside their range."""
    if not isinstance(num_samples, int) or num_samples < 1:
        raise SplatdiffError(f"num_samples must be a whole number >= 1, got {num_samples!r}.")
    if not 0.0 <= guidance_weight <= MAX_GUIDANCE:
        raise SplatdiffError(
            f"guidance_weight must be in [0, {MAX_GUIDANCE}] (0 = no guidance), got {guidance_weight}."
        )
    if not 0.0 <= skip_weight <= 1.0:
        raise SplatdiffError(f"skip_weight must be in [0, 1], got {skip_weight}.")
    if num_steps < 1:
        raise SplatdiffError(f"num_steps must be >= 1, got {num_steps}.")
    if not 0.0 <= eta <= 1.0:
        raise SplatdiffError(f"eta must be in [0, 1] (0 = deterministic DDIM, 1 = ancestral), got {eta}.")
    if eta > 0 and kind != "ddim":
        raise SplatdiffError(
            f"eta > 0 needs the 'ddim' scheduler, not {kind!r}: pass --pipeline.model.scheduler ddim, or eta 0."
        )
    if not 0.0 < noise_temperature <= MAX_NOISE_TEMPERATURE:
        raise SplatdiffError(
            f"noise_temperature must be in (0, {MAX_NOISE_TEMPERATURE}] (1 = the trained model's noise), "
            f"got {noise_temperature}."
        )


@torch.no_grad()
def sample_latents(
    denoiser: Callable[[Tensor, Tensor, Tensor], Tensor],
    cond: Float[Tensor, "B C h w"],
    num_samples: int,
    schedule: NoiseSchedule,
    kind: SchedulerKind = "ddim",
    num_steps: int = 50,
    guidance_weight: float = 0.0,
    seed: Optional[int] = 0,
    eta: float = 0.0,
    noise_temperature: float = 1.0,
) -> Float[Tensor, "B N C h w"]:
    """Draw `num_samples` latents per condition. Each step makes exactly one denoiser call on a batch of B*N
    (B*2N with guidance) latents. The same seed gives the same samples on the same device. `eta` (DDIM only): 0 is
    the deterministic DDIM path, 1 draws fresh noise at every step as DDPM's ancestral sampler does.
    `noise_temperature` scales the starting noise and every step's fresh noise (below 1: samples drawn nearer the
    modes of the learnt distribution, at the risk of fewer of them; 1 = the plain sampler, the same samples as
    before the knob existed)."""
    check_sampling_args(num_samples, guidance_weight, 1.0, num_steps, eta, kind, noise_temperature)
    B, C, h, w = cond.shape
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    x = noise_temperature * torch.randn(B * num_samples, C, h, w, generator=gen).to(cond.device, cond.dtype)
    c = cond.repeat_interleave(num_samples, dim=0)
    if guidance_weight > 0:
        c = torch.cat([c, torch.zeros_like(c)])
    scheduler = schedule.sampler(kind)
    scheduler.set_timesteps(num_steps, device=cond.device)
    for t in scheduler.timesteps:
        inp = torch.cat([x, x]) if guidance_weight > 0 else x
        eps = denoiser(inp, t.expand(inp.shape[0]), c)
        if guidance_weight > 0:
            eps_c, eps_u = eps.chunk(2)
            eps = (1 + guidance_weight) * eps_c - guidance_weight * eps_u
        step_kw = {"eta": eta, "generator": gen} if eta > 0 else {}
        if eta > 0 and noise_temperature != 1.0:  # the step's fresh noise, drawn here to scale it
            fresh = torch.randn(x.shape, generator=gen, dtype=torch.float32).to(x.device, x.dtype)
            step_kw = {"eta": eta, "variance_noise": noise_temperature * fresh}
        x = scheduler.step(eps, t, x, **step_kw).prev_sample
    return x.reshape(B, num_samples, C, h, w)
