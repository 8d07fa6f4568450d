"""The prior over the VAR's global code (models/code_prior.py): its likelihood against torch.distributions, that it
learns two modes and samples them without blending, its knobs and refusals, and the warm start that adds it to a
diffusion run (runs.with_fresh_part)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.code_prior import GlobalCodePrior, GlobalCodePriorConfig
from nerfstudio_splatdiff.models.diffusion import scale_latent


def prior(components: int = 3, seed: int = 0, **kwargs) -> GlobalCodePrior:
    torch.manual_seed(seed)
    return GlobalCodePrior(GlobalCodePriorConfig(components=components, width=32, **kwargs), 4, 4 * 2 * 2)


def test_the_likelihood_is_torch_distributions_mixture_of_diagonal_gaussians():
    p = prior(components=3)
    with torch.no_grad():  # spread the head so that weights, means and stds differ per input and component
        p.head.weight.normal_(0, 0.5)
    gen = torch.Generator().manual_seed(1)
    cond, anchor, code = torch.randn(5, 4, 2, 2, generator=gen), torch.randn(5, 4, generator=gen), torch.randn(5, 4)
    log_w, means, log_std = p.mixture(cond, anchor)
    reference = MixtureSameFamily(Categorical(logits=log_w), Independent(Normal(means, log_std.exp()), 1))
    with torch.no_grad():
        ours, theirs = float(p.nll(cond, anchor, code)), float(-reference.log_prob(code).mean())
    assert math.isclose(ours, theirs, rel_tol=1e-5)


def test_one_component_is_a_gaussian_around_the_anchor_plus_its_offset():
    p = prior(components=1)
    cond, anchor = torch.zeros(2, 4, 2, 2), torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    log_w, means, _ = p.mixture(cond, anchor)
    assert torch.allclose(log_w, torch.zeros(2, 1))
    assert torch.allclose(means[0] - means[1], anchor[0][None])  # the offset is the same for the same condition


def test_it_learns_two_modes_and_samples_each_without_blending():
    """Codes at the anchor +- 3 along one axis, half each, for every input: the trained mixture's samples land near
    one of the two modes (not between them) and each mode gets a fair share."""
    p = prior(components=4)
    opt = torch.optim.Adam(p.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(2)
    modes = torch.tensor([[3.0, 0.0, 0.0, 0.0], [-3.0, 0.0, 0.0, 0.0]])
    for _ in range(300):
        cond, anchor = torch.randn(64, 4, 2, 2, generator=gen), torch.randn(64, 4, generator=gen)
        code = anchor + modes[torch.randint(0, 2, (64,), generator=gen)] + 0.1 * torch.randn(64, 4, generator=gen)
        loss = p.nll(cond, anchor, code)
        opt.zero_grad()
        loss.backward()
        opt.step()
    cond, anchor = torch.randn(1, 4, 2, 2, generator=gen), torch.randn(1, 4, generator=gen)
    offsets = p.sample(cond, anchor, 400, seed=0) - anchor
    nearest = torch.cdist(offsets, modes).min(dim=1)
    assert float((nearest.values < 1.0).float().mean()) > 0.95  # at a mode, not between (the midpoint is 3 away)
    share = float((nearest.indices == 0).float().mean())
    assert 0.3 < share < 0.7


def test_the_same_seed_gives_the_same_codes_and_temperature_0_gives_the_components_means():
    p = prior(components=3)
    cond, anchor = torch.randn(1, 4, 2, 2), torch.randn(1, 4)
    assert torch.equal(p.sample(cond, anchor, 8, seed=3), p.sample(cond, anchor, 8, seed=3))
    assert not torch.equal(p.sample(cond, anchor, 8, seed=3), p.sample(cond, anchor, 8, seed=4))
    _, means, _ = p.mixture(cond, anchor)
    at_means = p.sample(cond, anchor, 16, seed=0, temperature=0.0)
    assert float(torch.cdist(at_means, means[0]).min(dim=1).values.max()) < 1e-6


@pytest.mark.parametrize("field, value", [("components", 0), ("width", 0), ("depth", 0), ("temperature", -1.0)])
def test_a_bad_prior_option_is_one_clear_line(field, value):
    with pytest.raises(SplatdiffError, match=f"code-prior-{field}"):
        GlobalCodePriorConfig(**{field: value})


def test_a_warm_start_marked_fresh_loads_without_the_new_part_and_only_then():
    from nerfstudio_splatdiff.runs import load_model_state, with_fresh_part

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.denoiser = torch.nn.Linear(2, 2)
            self.code_prior = torch.nn.Linear(2, 2)

        def frozen_parts(self) -> dict:
            return {}

    old = Model()
    state = {f"_model.{k}": v.clone() for k, v in old.state_dict().items() if k.startswith("denoiser.")}
    with pytest.raises(SplatdiffError, match="does not match"):
        load_model_state(Model(), state)
    new = Model()
    before = new.code_prior.weight.clone()
    load_model_state(new, with_fresh_part(state, "_model.code_prior."))
    assert torch.equal(new.denoiser.weight, old.denoiser.weight)
    assert torch.equal(new.code_prior.weight, before)  # starts from its own initialisation
    with pytest.raises(SplatdiffError, match="code_prior"):
        with_fresh_part({f"_model.{k}": v for k, v in old.state_dict().items()}, "_model.code_prior.")


def test_a_redrawn_code_comes_from_the_component_that_explains_the_true_one():
    """Two components 10 apart with std 0.1: a code at one's mean is redrawn within a few stds of it, never near the
    other; with the temperature at 0 it is that component's mean."""
    p = prior(components=2)
    with torch.no_grad():
        p.head.weight.zero_()
        bias = p.head.bias.view(2, 9)
        bias.zero_()
        bias[0, 1:5] = torch.tensor([5.0, 0.0, 0.0, 0.0])
        bias[1, 1:5] = torch.tensor([-5.0, 0.0, 0.0, 0.0])
        bias[:, 5:] = math.log(0.1)
    cond, anchor = torch.zeros(64, 4, 2, 2), torch.zeros(64, 4)
    code = torch.zeros(64, 4)
    code[:32, 0], code[32:, 0] = 4.9, -5.2
    redrawn = p.redraw(cond, anchor, code, torch.Generator().manual_seed(0))
    assert float((redrawn[:32, 0] - 5.0).abs().max()) < 0.6 and float((redrawn[32:, 0] + 5.0).abs().max()) < 0.6
    means = torch.sign(code[:, 0]) * 5.0
    assert torch.allclose(p.redraw(cond, anchor, code, temperature=0.0)[:, 0], means)  # an override of the config's
    assert not torch.allclose(p.redraw(cond, anchor, code)[:, 0], means)
    p.config.temperature = 0.0
    assert torch.allclose(p.redraw(cond, anchor, code)[:, 0], means)


def test_the_frozen_prior_moves_only_the_chosen_scenes_global_codes():
    from nerfstudio_splatdiff.models.code_prior_source import FrozenCodePrior

    frozen = FrozenCodePrior(prior(components=3), scale=2.0, scale_global=0.5, code_scale=1.0)
    gen = torch.Generator().manual_seed(3)
    input_mean, latent = torch.randn(6, 4, 2, 2, generator=gen), torch.randn(6, 4, 2, 2, generator=gen)
    assert torch.equal(frozen.redraw(input_mean, latent, 0.0), latent)
    assert torch.equal(frozen.redraw(input_mean, latent, 1.0, eligible=torch.zeros(6, dtype=torch.bool)), latent)
    moved = frozen.redraw(input_mean, latent, 1.0, torch.Generator().manual_seed(0))
    centred = lambda z: z - z.mean(dim=(2, 3), keepdim=True)  # noqa: E731
    assert torch.allclose(centred(moved), centred(latent), atol=1e-6)  # the rest of every latent is kept
    assert bool((moved.mean(dim=(2, 3)) - latent.mean(dim=(2, 3))).norm(dim=1).gt(1e-3).all())
    # at temperature 0 every redrawn code is one of its input's component means (in the VAR's units)
    at_means = frozen.redraw(input_mean, latent, 1.0, torch.Generator().manual_seed(0), temperature=0.0)
    gs = frozen.scale_global * frozen.code_scale
    cond = scale_latent(input_mean, frozen.scale, frozen.scale_global)
    _, means, _ = frozen.prior.mixture(cond, scale_latent(input_mean, frozen.scale, gs).mean(dim=(2, 3)))
    gap = (at_means.mean(dim=(2, 3))[:, None] - means / gs).norm(dim=-1).amin(dim=1)
    assert float(gap.max()) < 1e-5


def test_a_code_prior_run_for_a_var_that_cannot_read_it_is_one_clear_line(tmp_path):
    import method_configs.splatdiff_methods as methods

    model = methods.splatdiff_var_small.config.pipeline.model
    with pytest.raises(SplatdiffError, match="code-prior-run"):
        type(model)(network=model.network, code_prior_run=tmp_path / "config.yml")  # its encoder is not frozen
    with pytest.raises(SplatdiffError, match="code-prior-share"):
        type(model)(network=model.network, code_prior_share=1.5)
    with pytest.raises(SplatdiffError, match="code-prior-temperature"):
        type(model)(network=model.network, code_prior_temperature=-1.0)


def test_a_missing_or_prior_less_code_prior_run_is_one_clear_line(tmp_path):
    from nerfstudio_splatdiff.models.code_prior_source import load_frozen_code_prior

    with pytest.raises(SplatdiffError, match="No run at"):
        load_frozen_code_prior(tmp_path / "nope" / "config.yml")
