"""The codebook of a VAR's global code (models/code_book.py, `VARNetConfig.global_code_entries`): online k-means that
finds separated clusters, snapping, and that a VAR with it gives its decoder only centroid shifts, in training and
in eval, and snaps a sampled latent the same way without touching the rest of it."""

from __future__ import annotations

import pytest
import torch

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.code_book import GlobalCodebook, fit_kmeans, kmeans_pp_seeds
from nerfstudio_splatdiff.models.var_net import VARNetConfig

SMALL = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1, norm_num_groups=16)
CENTRES = torch.tensor([[4.0, 0.0, 0.0, 0.0], [-4.0, 0.0, 0.0, 0.0], [0.0, 6.0, 1.0, -2.0]])


def clustered(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n points around the three CENTRES (std 0.2) and which centre each came from."""
    which = torch.randint(3, (n,), generator=gen)
    return CENTRES[which] + 0.2 * torch.randn(n, 4, generator=gen), which


def test_online_kmeans_finds_three_separated_clusters_and_snaps_to_them():
    gen = torch.Generator().manual_seed(0)
    book = GlobalCodebook(3, 4)
    shift = torch.randn(5, 4)
    assert torch.equal(book.snap(shift), shift)  # unseeded: nothing to snap to
    book.update(torch.randn(2, 4))  # fewer shifts than entries: cannot seed yet
    assert not book.ready
    for _ in range(60):
        book.update(clustered(32, gen)[0], gen)
    found = torch.cdist(CENTRES, book.centroids).amin(dim=1)
    assert float(found.max()) < 0.15  # every true centre has a centroid on it
    points, which = clustered(200, gen)
    snapped = book.snap(points)
    assert torch.allclose((snapped - CENTRES[which]).norm(dim=1), torch.zeros(200), atol=0.15)
    assert len({tuple(row.tolist()) for row in snapped}) == 3  # exactly the three centroids come out


def test_kmeans_pp_seeds_are_points_spread_over_the_clusters():
    gen = torch.Generator().manual_seed(1)
    points, which = clustered(300, gen)
    seeds = kmeans_pp_seeds(points, 3, gen)
    assert all(bool((points == s).all(dim=1).any()) for s in seeds)  # seeds are data points
    seeds_which = torch.cdist(seeds, CENTRES).argmin(dim=1)
    assert sorted(seeds_which.tolist()) == [0, 1, 2]  # one per cluster: far apart beats near


def test_batch_kmeans_puts_one_centroid_on_each_cluster_with_the_noise_as_its_inertia():
    gen = torch.Generator().manual_seed(2)
    points, which = clustered(300, gen)
    centroids, assign, inertia = fit_kmeans(points, 3, restarts=3, generator=gen)
    assert float(torch.cdist(CENTRES, centroids).amin(dim=1).max()) < 0.1
    assert torch.equal(assign, torch.cdist(points, centroids).argmin(dim=1))
    assert sorted(torch.bincount(which).tolist()) == sorted(torch.bincount(assign).tolist())  # same partition sizes
    assert inertia == pytest.approx(4 * 0.2**2, rel=0.25)  # 4 dims of std 0.2 around the true centres
    more, _, finer = fit_kmeans(points, 6, generator=gen)  # more entries than clusters: split them, lower inertia
    assert more.shape == (6, 4) and finer < inertia
    with pytest.raises(ValueError, match="at least 6 points"):
        fit_kmeans(points[:5], 6)


def _privileged(images: torch.Tensor) -> tuple:
    B = images.shape[0]
    c2w = torch.eye(4).repeat(B, 1, 1)
    c2w[:, 0, 0] = c2w[:, 2, 2] = -1.0  # turned 180 degrees about the vertical axis
    c2w[:, :3, 3] = torch.tensor([0.0, 0.0, 4.0])
    K = torch.tensor([[64.0, 0, 16], [0, 64.0, 16], [0, 0, 1]]).repeat(B, 1, 1)
    return torch.rand_like(images), c2w, K


def _inputs(B: int = 6, S: int = 32):
    gen = torch.Generator().manual_seed(0)
    K = torch.tensor([[30.0, 0, S / 2], [0, 30.0, S / 2], [0, 0, 1]]).expand(B, 3, 3)
    return torch.rand(B, 3, S, S, generator=gen), torch.eye(4).expand(B, 4, 4), K, torch.ones(B), 3 * torch.ones(B)


def test_a_var_with_a_codebook_decodes_only_centroid_shifts_and_eval_never_moves_them():
    torch.manual_seed(0)
    config = VARNetConfig(
        **SMALL, privileged_view=True, global_code=True, global_code_entries=2, privileged_drop=0.0, skip_dropout=0.0
    )
    net = config.setup().train()
    images, c2w, K, near, far = _inputs()
    view = _privileged(images)
    out = net(images, c2w, K, near, far, privileged=view, sample_latent=False)  # the first batch seeds the codebook
    assert net.codebook.ready
    input_only = net.encode(images)[0]
    shift = (out["latent_mean"] - input_only).mean(dim=(2, 3))
    assert float(torch.cdist(shift.detach(), net.codebook.centroids).amin(dim=1).max()) < 1e-5
    net.eval()
    before = net.codebook.centroids.clone()
    with torch.no_grad():
        latent = net.encode(images, view)[0]
    assert torch.equal(net.codebook.centroids, before)
    eval_shift = (latent - input_only).mean(dim=(2, 3))
    assert float(torch.cdist(eval_shift, before).amin(dim=1).max()) < 1e-5
    net.config.privileged_drop = 1.0  # a withheld view: the input-only latent, not snapped onto a centroid
    net.train()
    withheld = net(images, c2w, K, near, far, privileged=view, sample_latent=False)["latent_mean"]
    assert torch.allclose(withheld, input_only, atol=1e-6)


def test_a_snap_share_snaps_some_training_scenes_and_leaves_privileged_encodings_alone_in_eval():
    torch.manual_seed(0)
    config = VARNetConfig(
        **SMALL, privileged_view=True, global_code=True, global_code_entries=2, global_code_snap_share=0.5,
        privileged_drop=0.0, skip_dropout=0.0,
    )  # fmt: skip
    net = config.setup().train()
    images, c2w, K, near, far = _inputs(B=32)
    view = _privileged(images)
    net(images, c2w, K, near, far, privileged=view, sample_latent=False)  # seeds the codebook
    input_only = net.encode(images)[0]
    out = net(images, c2w, K, near, far, privileged=view, sample_latent=False)
    shift = (out["latent_mean"] - input_only).mean(dim=(2, 3)).detach()
    on_centroid = torch.cdist(shift, net.codebook.centroids).amin(dim=1) < 1e-5
    assert 4 <= int(on_centroid.sum()) <= 28  # about half of 32 (binomial: outside 4..28 once in ~10^5)
    net.eval()
    with torch.no_grad():
        own = (net.encode(images, view)[0] - input_only).mean(dim=(2, 3))
        raw = net.privileged(*view, latent_hw=tuple(input_only.shape[-2:])).mean(dim=(2, 3))
    assert torch.allclose(own, raw, atol=1e-5)  # eval: the privileged shift as the branch gives it
    assert float(torch.cdist(own, net.codebook.centroids).amin(dim=1).min()) > 1e-4
    base = input_only[:1].detach()
    sampled = base + own[:4, :, None, None]  # four latents of one input, as a denoiser would draw them
    snapped = (net.snap_latent(sampled, base) - base).mean(dim=(2, 3))  # a sampled latent is still snapped
    assert float(torch.cdist(snapped, net.codebook.centroids).amin(dim=1).max()) < 1e-4


def _net_snapping_to_centres():
    """A VAR in eval mode whose codebook holds the three CENTRES (seeded, so nothing moves them)."""
    net = VARNetConfig(**SMALL, privileged_view=True, global_code=True, global_code_entries=3).setup().eval()
    net.codebook.centroids.copy_(CENTRES)
    net.codebook.counts.fill_(1.0)
    return net


def test_a_sampled_latent_is_snapped_in_its_code_only():
    torch.manual_seed(0)
    net = _net_snapping_to_centres()
    input_mean = torch.randn(1, 4, 4, 4)
    latents = input_mean + torch.randn(5, 4, 4, 4) + CENTRES[torch.tensor([0, 1, 2, 0, 1])][:, :, None, None]
    snapped = net.snap_latent(latents, input_mean)
    shift = (snapped - input_mean).mean(dim=(2, 3))
    assert torch.allclose(shift, CENTRES[torch.tensor([0, 1, 2, 0, 1])], atol=1e-5)
    centred = lambda z: z - z.mean(dim=(2, 3), keepdim=True)  # noqa: E731
    assert torch.allclose(centred(snapped), centred(latents), atol=1e-5)  # the rest of each latent is kept
    plain = VARNetConfig(**SMALL, privileged_view=True, global_code=True).setup()
    assert not plain.snaps_codes and net.snaps_codes
    for ask in (plain.snap_latent, plain.code_ambiguity):
        with pytest.raises(SplatdiffError, match="no codebook .*global-code-entries K"):
            ask(latents, input_mean)


def test_a_partial_pull_moves_a_sampled_code_that_share_of_the_way_to_its_centroid():
    torch.manual_seed(1)
    net = _net_snapping_to_centres()
    input_mean = torch.randn(1, 4, 4, 4)
    which = torch.tensor([2, 0, 1, 1])
    latents = input_mean + 0.3 * torch.randn(4, 4, 4, 4) + CENTRES[which][:, :, None, None]
    raw = (latents - input_mean).mean(dim=(2, 3))
    assert torch.allclose(net.snap_latent(latents, input_mean, pull=0.0), latents)  # 0: left where sampled
    for pull in (0.25, 0.5, 0.8):
        shift = (net.snap_latent(latents, input_mean, pull=pull) - input_mean).mean(dim=(2, 3))
        assert torch.allclose(shift, raw + pull * (CENTRES[which] - raw), atol=1e-5)  # on the segment, that far
    with pytest.raises(SplatdiffError, match=r"pull must be in \[0, 1\]"):
        net.snap_latent(latents, input_mean, pull=1.5)


def test_a_codebook_pull_outside_zero_to_one_is_refused_when_flags_are_parsed():
    from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig

    assert DiffusionModelConfig(code_snap_pull=0.5).code_snap_pull == 0.5
    with pytest.raises(SplatdiffError, match="code-snap-pull"):
        DiffusionModelConfig(code_snap_pull=-0.1)


@pytest.mark.parametrize(
    "options",
    [
        dict(global_code_entries=1, privileged_view=True, global_code=True),  # one entry snaps every code to one
        dict(global_code_entries=4, global_code=True),  # no privileged view: no shift to snap
        dict(global_code_snap_share=0.5, privileged_view=True, global_code=True),  # a share of no codebook
        dict(global_code_snap_share=0.0, global_code_entries=4, privileged_view=True, global_code=True),
    ],
)
def test_a_codebook_without_its_requirements_is_one_clear_line(options):
    with pytest.raises(SplatdiffError, match="global-code-entries|global-code-snap-share"):
        VARNetConfig(**SMALL, **options)


def test_a_warm_start_without_a_codebook_loads_it_unseeded(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from codebook_init import with_fresh_codebook

    from nerfstudio_splatdiff.runs import load_model_state

    class Holder(torch.nn.Module):  # how a pipeline state names a model's network: _model.net.*
        def __init__(self, entries: int) -> None:
            super().__init__()
            options = dict(privileged_view=True, global_code=True, global_code_entries=entries)
            self.net = VARNetConfig(**SMALL, **options).setup()

        def frozen_parts(self) -> dict:  # as SceneModel answers: nothing loaded from another run
            return {}

    torch.manual_seed(0)
    old = VARNetConfig(**SMALL, privileged_view=True, global_code=True).setup()
    state = {f"_model.net.{k}": v for k, v in old.state_dict().items()}
    new = Holder(4)
    with pytest.raises(SplatdiffError, match="does not match"):
        load_model_state(new, state)
    load_model_state(new, with_fresh_codebook(state))
    assert not new.net.codebook.ready
    assert torch.equal(new.net.decoder.conv_in.weight, old.decoder.conv_in.weight)


@pytest.mark.slow
def test_ns_train_warm_starts_a_var_with_a_codebook_that_seeds_itself_and_is_saved(tiny_var_run, tmp_path):
    """benchmarks/codebook_init.py marks a codebook-less VAR checkpoint; `--pipeline.model.network.global-code-entries`
    with a frozen encoder then trains from it, seeds the codebook on its first batch and saves it (the EMA's too)."""
    import sys
    from pathlib import Path

    from cli_helpers import run_cli, train_cmd

    root, config = tiny_var_run
    (ckpt,) = (config.parent / "nerfstudio_models").glob("*.ckpt")
    init = tmp_path / "init"
    run_cli([sys.executable, Path(__file__).resolve().parents[1] / "benchmarks" / "codebook_init.py", "--checkpoint",
             ckpt, "--output", init])  # fmt: skip
    (warm,) = (init / "nerfstudio_models").glob("*.ckpt")
    extra = ["--load-checkpoint", str(warm), "pipeline.model.network:var-net-config"]
    extra += ["--pipeline.model.network.frozen-encoder", "True", "--pipeline.model.network.global-code-entries", "2"]
    run_cli(train_cmd("splatdiff-var-small", root / "data", tmp_path / "out", root / "cache", 4, *extra))
    (new_ckpt,) = (tmp_path / "out").glob("*/splatdiff-var-small/*/nerfstudio_models/*.ckpt")
    state = torch.load(new_ckpt, weights_only=False)["pipeline"]
    assert float(state["_model.net.codebook.counts"].sum()) > 2  # seeded, then moved by later batches
    assert float(state["_model.ema.module.codebook.counts"].sum()) > 0
    old = torch.load(ckpt, weights_only=False)["pipeline"]
    assert torch.equal(state["_model.net.encoder.conv_in.weight"], old["_model.net.encoder.conv_in.weight"])


def _sampler_over_a_snapping_var(tiny_diffusion_run):
    """The tiny diffusion run's model with its VAR swapped for the same weights plus a 3-entry codebook at CENTRES,
    one eval batch, and the latents it samples over the VAR without a codebook (4, seed 5)."""
    from nerfstudio_splatdiff.models.var_net import VARNet
    from nerfstudio_splatdiff.runs import setup_pipeline

    _, config = tiny_diffusion_run
    _, pipeline, _, _ = setup_pipeline(config)
    model = pipeline.model
    _, batch = pipeline.datamanager.fixed_indices_eval_dataloader.get(0)
    plain, _ = model.latent_samples(batch, 4, seed=5)
    var_config = model.var.config
    snapping = VARNet(type(var_config)(**{**vars(var_config), "global_code_entries": 3})).eval()
    missing, unexpected = snapping.load_state_dict(model.var.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("codebook.") for k in missing)
    snapping.codebook.centroids.copy_(CENTRES[:, : var_config.latent_channels])
    snapping.codebook.counts.fill_(1.0)
    model.var = snapping
    return model, batch, plain


@pytest.mark.slow
def test_a_denoisers_samples_over_a_var_with_a_codebook_have_its_codes(tiny_diffusion_run):
    """DiffusionModel.latent_samples snaps each sample's global code over a VAR that snaps its own: every sample's
    shift from the input-only code is a centroid, and the rest of each latent is what the denoiser drew."""
    model, batch, plain = _sampler_over_a_snapping_var(tiny_diffusion_run)
    z, _ = model.latent_samples(batch, 4, seed=5)
    mean = model.encode_source(batch)[0]
    shift = z.mean(dim=(2, 3)) - mean.mean(dim=(2, 3))
    assert float(torch.cdist(shift, model.var.codebook.centroids).amin(dim=1).max()) < 1e-4
    centred = lambda x: x - x.mean(dim=(2, 3), keepdim=True)  # noqa: E731
    assert torch.allclose(centred(z), centred(plain), atol=1e-4)


@pytest.mark.slow
def test_oversampling_keeps_the_least_undecided_of_the_latents_drawn_in_their_order(tiny_diffusion_run):
    """`code_oversample` 3 draws 12 latents for 4 samples and keeps the 4 whose codes are least undecided between two
    centroids, in the order drawn: the same 12 that 12 samples without it draw (pull 0 leaves them as drawn)."""
    model, batch, _ = _sampler_over_a_snapping_var(tiny_diffusion_run)
    model.config.code_snap_pull = 0.0
    drawn, _ = model.latent_samples(batch, 12, seed=5)
    mean = model.encode_source(batch)[0]
    ambiguity = model.var.code_ambiguity(drawn, mean)
    model.config.code_oversample = 3
    kept, _ = model.latent_samples(batch, 4, seed=5)
    assert kept.shape == (4, *drawn.shape[1:])
    chosen = [int((drawn - k).abs().flatten(1).amax(dim=1).argmin()) for k in kept]
    assert all(torch.allclose(drawn[i], k, atol=1e-5) for i, k in zip(chosen, kept))
    assert chosen == sorted(chosen) and len(set(chosen)) == 4
    dropped = [i for i in range(12) if i not in chosen]
    assert float(ambiguity[chosen].max()) <= float(ambiguity[dropped].min())


def test_a_codes_ambiguity_is_its_nearest_over_its_second_nearest_centroid_distance():
    book = GlobalCodebook(3, 2)
    book.centroids.copy_(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 10.0]]))
    shifts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [2.0, 1.0]])
    expected = torch.tensor([0.0, 1.0, 0.5 / 1.5, 1.0 / 5**0.5])
    assert torch.allclose(book.ambiguity(shifts), expected, atol=1e-6)
    with pytest.raises(ValueError, match="two centroids"):
        GlobalCodebook(1, 2).ambiguity(shifts)


def test_an_oversampling_factor_that_is_not_a_whole_number_in_range_is_refused_when_flags_are_parsed():
    from nerfstudio_splatdiff.models.diffusion import MAX_CODE_OVERSAMPLE, DiffusionModelConfig

    assert DiffusionModelConfig(code_oversample=2).code_oversample == 2
    for factor in (0, -2, MAX_CODE_OVERSAMPLE + 1):
        with pytest.raises(SplatdiffError, match="code-oversample"):
            DiffusionModelConfig(code_oversample=factor)


@pytest.mark.slow
def test_a_codebook_fitted_after_training_is_a_var_copy_that_loads_and_snaps_to_it(tiny_var_run, tmp_path):
    """benchmarks/codebook_fit.write_codebook_run: the copy's config asks for K entries, its checkpoint holds the
    centroids, the rest of the weights are the run's own, and a privileged encoding's shift comes out a centroid."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from codebook_fit import write_codebook_run

    from nerfstudio_splatdiff.runs import load_inference_model

    _, config = tiny_var_run
    C = 4
    centroids = torch.tensor([[1.0, 0, 0, 0], [0, -2.0, 0, 0], [0, 0, 0, 3.0]])[:, :C]
    new_config = write_codebook_run(config.parent, centroids, torch.tensor([5.0, 6, 7]), tmp_path / "cb")
    with pytest.raises(FileExistsError):  # a new folder only
        write_codebook_run(config.parent, centroids, torch.ones(3), tmp_path / "cb")
    old, _ = load_inference_model(config)
    model, _ = load_inference_model(new_config)
    net = model.eval_net()
    assert net.snaps_codes and torch.allclose(net.codebook.centroids, centroids)
    assert torch.equal(net.codebook.counts, torch.tensor([5.0, 6, 7]))
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("codebook.")}
    assert all(torch.equal(v, old.eval_net().state_dict()[k]) for k, v in own.items())
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    _, correction, _, _ = net.encode_parts(images, _privileged(images))
    shift = correction.mean(dim=(2, 3))
    assert float(torch.cdist(shift, centroids).amin(dim=1).max()) < 1e-4


@pytest.mark.slow
def test_a_slim_copy_records_the_codebook_knobs_only_over_a_var_with_a_codebook(
    tiny_var_run, tiny_diffusion_run, tmp_path
):
    """splatdiff-slim-run --code-snap-pull / --code-oversample set the copy's default pull and oversampling
    (runs.write_slim_run); over a VAR without a codebook, or out of range, it is one clear line and nothing is
    written."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from codebook_fit import write_codebook_run

    from nerfstudio_splatdiff.runs import load_run_config, write_slim_run

    _, var_config = tiny_var_run
    _, config = tiny_diffusion_run
    centroids = torch.tensor([[1.0, 0, 0, 0], [0, -2.0, 0, 0]])
    with_codebook = write_codebook_run(var_config.parent, centroids, torch.ones(2), tmp_path / "cb")
    copied = write_slim_run(
        config, tmp_path / "slim", "demo", var_config=with_codebook, code_snap_pull=0.5, code_oversample=2
    )
    model = load_run_config(copied).pipeline.model
    assert (model.code_snap_pull, model.code_oversample) == (0.5, 2)
    for var, knobs, message in (
        (var_config, dict(code_snap_pull=0.5), "codebook"),
        (var_config, dict(code_oversample=2), "code-oversample.*codebook"),
        (with_codebook, dict(code_snap_pull=1.5), r"\[0, 1\]"),
        (with_codebook, dict(code_oversample=0), "whole factor"),
    ):
        with pytest.raises(SplatdiffError, match=message) as e:
            write_slim_run(config, tmp_path / "refused", "demo", var_config=var, **knobs)
        assert "\n" not in str(e.value)
    assert not (tmp_path / "refused").exists()
