"""Classifier-free-guidance sampling: no-guidance equals the conditional model, seeds, one batched call per step."""

from __future__ import annotations

import pytest
import torch

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.denoiser_net import DenoiserNetConfig
from nerfstudio_splatdiff.models.sampling import NoiseSchedule, sample_latents


class CountingDenoiser:
    """A small real denoiser that records every call's batch size."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.net = (
            DenoiserNetConfig(block_out_channels=(32, 32), attention_levels=(1,), layers_per_block=1, norm_num_groups=8)
            .setup()
            .eval()
        )
        self.calls: list[int] = []

    def __call__(self, x, t, c):
        self.calls.append(x.shape[0])
        return self.net(x, t, c)


COND = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))


def test_no_guidance_is_the_conditional_prediction():
    den = CountingDenoiser()
    out = sample_latents(den, COND, 3, NoiseSchedule(), "ddim", num_steps=4, guidance_weight=0.0, seed=5)
    # The same loop written out with the conditional epsilon only.
    sched = NoiseSchedule().sampler("ddim")
    sched.set_timesteps(4)
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for t in sched.timesteps:
            x = sched.step(den.net(x, t.expand(3), COND.expand(3, -1, -1, -1)), t, x).prev_sample
    assert torch.allclose(out[0], x, atol=1e-5)
    # A tiny guidance weight moves the result only a little; a large one moves it a lot.
    near = sample_latents(den, COND, 3, NoiseSchedule(), "ddim", 4, guidance_weight=1e-4, seed=5)
    far = sample_latents(den, COND, 3, NoiseSchedule(), "ddim", 4, guidance_weight=3.0, seed=5)
    assert (near - out).abs().max() < 1e-2 < (far - out).abs().max()


def test_seeds_are_reproducible_and_distinct():
    den = CountingDenoiser()
    a = sample_latents(den, COND, 4, NoiseSchedule(), "ddim", 3, 0.5, seed=1)
    b = sample_latents(den, COND, 4, NoiseSchedule(), "ddim", 3, 0.5, seed=1)
    c = sample_latents(den, COND, 4, NoiseSchedule(), "ddim", 3, 0.5, seed=2)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    assert not torch.allclose(a[0, 0], a[0, 1])  # the N samples differ from each other


@pytest.mark.parametrize("guidance,batch", [(0.0, 6), (1.5, 12)])
def test_n_samples_in_one_denoiser_batch_per_step(guidance, batch):
    den = CountingDenoiser()
    sample_latents(den, COND, 6, NoiseSchedule(), "ddim", num_steps=5, guidance_weight=guidance, seed=0)
    assert den.calls == [batch] * 5


def test_dpm_solver_runs_with_the_same_interface():
    den = CountingDenoiser()
    out = sample_latents(den, COND, 2, NoiseSchedule(), "dpmsolver++", num_steps=3, seed=0)
    assert out.shape == (1, 2, 4, 8, 8) and torch.isfinite(out).all() and den.calls == [2] * 3


def test_eta_one_draws_fresh_noise_every_step_reproducibly():
    den = CountingDenoiser()
    out = sample_latents(den, COND, 3, NoiseSchedule(), "ddim", num_steps=4, seed=5, eta=1.0)
    # Written out: the start noise, then DDIM's step with eta = 1 (DDPM's posterior variance) from the same generator.
    sched = NoiseSchedule().sampler("ddim")
    sched.set_timesteps(4)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 8, 8, generator=gen)
    with torch.no_grad():
        for t in sched.timesteps:
            eps = den.net(x, t.expand(3), COND.expand(3, -1, -1, -1))
            x = sched.step(eps, t, x, eta=1.0, generator=gen).prev_sample
    assert torch.allclose(out[0], x, atol=1e-5)
    assert torch.equal(out, sample_latents(den, COND, 3, NoiseSchedule(), "ddim", num_steps=4, seed=5, eta=1.0))
    deterministic = sample_latents(den, COND, 3, NoiseSchedule(), "ddim", num_steps=4, seed=5)
    assert (out - deterministic).abs().max() > 1e-2


class GaussianDataDenoiser:
    """The exact noise prediction for data ~ N(0, s^2) per element: eps(x_t) = sqrt(1 - a) x_t / (a s^2 + 1 - a),
    a = the schedule's alpha-bar at t. Linear in x_t, so every sampler's output is linear in its noise draws."""

    def __init__(self, std: float) -> None:
        self.var = std**2
        self.alphas = NoiseSchedule().training_scheduler().alphas_cumprod

    def __call__(self, x, t, c):
        a = self.alphas[t].reshape(-1, 1, 1, 1).to(x.dtype)
        return (1 - a).sqrt() * x / (a * self.var + 1 - a)


def test_noise_temperature_scales_every_noise_draw_and_one_is_the_plain_sampler():
    den = GaussianDataDenoiser(std=0.7)
    cond = torch.zeros(1, 4, 8, 8)
    draw = lambda tau, eta: sample_latents(den, cond, 64, NoiseSchedule(), "ddim", 200, seed=3, eta=eta,  # noqa: E731
                                           noise_temperature=tau)  # fmt: skip
    for eta in (0.0, 1.0):
        plain = sample_latents(den, cond, 64, NoiseSchedule(), "ddim", 200, seed=3, eta=eta)
        assert torch.equal(draw(1.0, eta), plain)  # 1 = the samples drawn before the knob existed
        assert float(plain.std()) == pytest.approx(0.7, rel=0.05)  # the data's own spread (a check of the oracle)
        # a linear sampler fed noise scaled by 0.5 gives samples scaled by 0.5 exactly: every draw is scaled
        assert torch.allclose(draw(0.5, eta), 0.5 * plain, atol=1e-5)
    with pytest.raises(SplatdiffError, match=r"noise_temperature must be in \(0, 2"):
        draw(0.0, 1.0)


def test_bad_knobs(unchecked_annotations):
    den = CountingDenoiser()
    with pytest.raises(SplatdiffError, match="num_samples must be a whole number >= 1"):
        sample_latents(den, COND, 0, NoiseSchedule())
    with pytest.raises(SplatdiffError, match=r"guidance_weight must be in \[0, 10"):
        sample_latents(den, COND, 2, NoiseSchedule(), guidance_weight=-1.0)
    with pytest.raises(SplatdiffError, match="Unknown scheduler"):
        sample_latents(den, COND, 2, NoiseSchedule(), kind="euler")  # type: ignore[arg-type]
    with pytest.raises(SplatdiffError, match=r"eta must be in \[0, 1\]"):
        sample_latents(den, COND, 2, NoiseSchedule(), eta=1.5)
    with pytest.raises(SplatdiffError, match="eta > 0 needs the 'ddim' scheduler"):
        sample_latents(den, COND, 2, NoiseSchedule(), kind="dpmsolver++", eta=0.5)


def test_latent_scaling_puts_the_spatial_mean_and_the_rest_on_their_own_scales_and_inverts():
    from nerfstudio_splatdiff.models.diffusion import scale_latent

    g = torch.Generator().manual_seed(0)
    # Latents like a global-code VAR's: a large scene-wide part (the hidden side) on top of small detail.
    z = 4.0 * torch.randn(64, 4, 1, 1, generator=g) + 0.3 * torch.randn(64, 4, 8, 8, generator=g)
    m = z.mean(dim=(2, 3), keepdim=True)
    s, s_g = 1.0 / float((z - m).std()), 1.0 / float(m.std())
    x = scale_latent(z, s, s_g)
    xm = x.mean(dim=(2, 3), keepdim=True)
    assert abs(float(xm.std()) - 1.0) < 1e-4 and abs(float((x - xm).std()) - 1.0) < 1e-4
    torch.testing.assert_close(scale_latent(x, 1.0 / s, 1.0 / s_g), z, atol=1e-5, rtol=1e-5)
    # With one scale for both parts it is plain scaling (the paper's VAR, no global code).
    torch.testing.assert_close(scale_latent(z, 0.5, 0.5), 0.5 * z)
