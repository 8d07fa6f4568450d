"""`ns-train splatdiff-diffusion-small` over a tiny trained VAR: loss goes down, ns-eval writes every key, samples
differ, and a missing or mismatched VAR checkpoint is one clear message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli, train_cmd

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def diffusion_run(tiny_diffusion_run):
    return tiny_diffusion_run


def test_diffusion_training_lowers_the_loss(diffusion_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, config = diffusion_run
    acc = EventAccumulator(str(config.parent))
    acc.Reload()
    values = [e.value for e in acc.Scalars("Train Loss")]
    assert len(values) >= 25
    assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5


def test_ns_eval_reports_one_sample_best_of_n_diversity_and_speed(diffusion_run):
    root, config = diffusion_run
    out = root / "diff_eval.json"
    run_cli([BIN / "ns-eval", "--load-config", config, "--output-path", out])
    res = json.loads(out.read_text())["results"]
    keys = (
        "psnr",
        "ssim",
        "psnr_best",
        "ssim_best",
        "psnr_objects",
        "psnr_objects_best",
        "diversity",
        "diversity_visible",
        "diversity_occluded",
        "psnr_visible",
        "psnr_occluded",
        "seconds_per_sample",
        "num_scenes",
        "num_samples",
        "psnr_input",
    )
    for key in keys:
        assert key in res and res[key] == res[key] and abs(res[key]) != float("inf"), key
    assert res["psnr_best"] >= res["psnr"] - 1e-6  # the oracle can only be as good or better than sample 0
    assert res["diversity"] > 0 and res["num_samples"] == 3


def test_samples_differ_and_viewer_renders(diffusion_run):
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.utils.eval_utils import eval_setup

    _, config = diffusion_run
    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    _, batch = pipeline.datamanager.fixed_indices_eval_dataloader.get(0)
    g = pipeline.model.sample(batch, 3, seed=0)
    assert g.batch_size == 3 and not torch.allclose(g.means[0], g.means[1])
    assert torch.equal(pipeline.model.sample(batch, 3, seed=0).means, g.means)
    cam = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=40.0, fy=40.0, cx=24.0, cy=20.0, width=48, height=40)
    assert pipeline.model.get_outputs_for_camera(cam)["rgb"].shape == (40, 48, 3)


def test_missing_or_mismatched_var_checkpoint(tiny_var_run, tmp_path):
    import shutil

    import yaml

    import method_configs.splatdiff_methods as methods
    from nerfstudio_splatdiff.errors import SplatdiffError
    from nerfstudio_splatdiff.models.var_checkpoint import load_frozen_var

    root, var_config = tiny_var_run
    # On the command line: one clear message before any training.
    none = run_cli(
        train_cmd("splatdiff-diffusion-small", root / "data", tmp_path / "o", root / "cache", 2), check=False
    )
    assert none.returncode != 0 and "needs a trained VAR" in none.stdout + none.stderr
    # What --pipeline.model.var-checkpoint is checked with (in process: each ns-train start costs ~20 s).
    with pytest.raises(SplatdiffError, match="No VAR checkpoint at"):
        load_frozen_var(tmp_path / "nope.yml")
    # A regression run (its config.yml beside a checkpoint) is not a VAR.
    reg = tmp_path / "reg" / "config.yml"
    (reg.parent / "nerfstudio_models").mkdir(parents=True)
    shutil.copy(next((var_config.parent / "nerfstudio_models").glob("*.ckpt")), reg.parent / "nerfstudio_models")
    reg.write_text(yaml.dump(methods.splatdiff_regression_small.config))
    with pytest.raises(SplatdiffError, match="not a splatdiff-var run"):
        load_frozen_var(reg)
    assert load_frozen_var(var_config)[0] is not None


def test_a_full_checkpoint_pointed_at_another_var_is_refused_and_its_slim_copy_pairs_with_it(diffusion_run, tmp_path):
    """A full diffusion checkpoint holds a copy of the VAR it was trained over; pointed at other VAR weights, it is
    refused in one line (it would silently put the old VAR back), while its slim copy (no VAR inside) loads over
    them: the way to pair a denoiser with another VAR on purpose."""
    import shutil

    import yaml

    from nerfstudio_splatdiff.errors import SplatdiffError
    from nerfstudio_splatdiff.models.var_checkpoint import load_run_config
    from nerfstudio_splatdiff.runs import load_inference_model, write_slim_run

    _, config = diffusion_run
    var_config = Path(load_run_config(config).pipeline.model.var_checkpoint)
    other_var = tmp_path / "other_var" / "config.yml"
    shutil.copytree(var_config.parent, other_var.parent)
    (ckpt,) = (other_var.parent / "nerfstudio_models").glob("*.ckpt")
    state = torch.load(ckpt, weights_only=False)
    weights = state["pipeline"]
    prefix = "_model.ema.module." if any(k.startswith("_model.ema.module.") for k in weights) else "_model.net."
    key = next(k for k, v in weights.items() if k.startswith(prefix + "decoder") and v.is_floating_point())
    weights[key] = weights[key] + 0.5  # one tensor, as a VAR trained on would differ
    torch.save(state, ckpt)
    full = tmp_path / "full" / "config.yml"
    shutil.copytree(config.parent, full.parent)
    run = load_run_config(full)
    run.pipeline.model.var_checkpoint = other_var
    full.write_text(yaml.dump(run))
    with pytest.raises(SplatdiffError, match="trained over other VAR weights than .* holds now") as e:
        load_inference_model(full)
    assert "\n" not in str(e.value) and "splatdiff-slim-run" in str(e.value)
    model, _ = load_inference_model(config)  # the run as trained loads
    assert model.frozen_parts() == {"var.": str(var_config)}
    slim = write_slim_run(config, tmp_path / "slim", "demo", var_config=other_var)
    paired, _ = load_inference_model(slim)
    assert torch.allclose(paired.var.state_dict()[key[len(prefix) :]], weights[key].float())


def test_slim_runs_sample_like_the_originals_at_a_fraction_of_the_size(diffusion_run, tmp_path):
    """splatdiff-slim-run keeps the EMA weights in float16 and nothing else; the copies load and sample the same."""
    from nerfstudio.utils.eval_utils import eval_setup

    root, config = diffusion_run
    run_cli(
        [BIN / "splatdiff-slim-run", "--load-config", config, "--output-dir", tmp_path, "--experiment-name", "demo"]
    )
    (slim,) = tmp_path.glob("demo/splatdiff-diffusion-small/shipped/config.yml")
    (slim_var,) = tmp_path.glob("demo/splatdiff-var-small/shipped/config.yml")
    size = lambda cfg: sum(f.stat().st_size for f in (cfg.parent / "nerfstudio_models").glob("*.ckpt"))  # noqa: E731
    assert size(slim) < 0.3 * size(config) and size(slim_var) > 0
    _, original, _, _ = eval_setup(config, test_mode="test")
    _, copied, _, _ = eval_setup(slim, test_mode="test")
    _, batch = original.datamanager.fixed_indices_eval_dataloader.get(0)
    a, b = original.model.sample(batch, 2, seed=1), copied.model.sample(batch, 2, seed=1)
    assert torch.allclose(a.means, b.means, atol=5e-2) and torch.allclose(a.colors, b.colors, atol=5e-2)
    # A slim checkpoint of another model is refused with one clear message.
    ckpt = next((slim_var.parent / "nerfstudio_models").glob("*.ckpt"))
    state = torch.load(ckpt, weights_only=False)
    state["pipeline"]["_model.net.unexpected"] = torch.zeros(1)
    torch.save(state, ckpt)
    from nerfstudio_splatdiff.errors import SplatdiffError

    with pytest.raises(SplatdiffError, match="does not match"):
        eval_setup(slim_var, test_mode="test")


@pytest.fixture(scope="module")
def code_prior_run(diffusion_run, tmp_path_factory):
    """The tiny diffusion run warm-started (benchmarks/code_prior_init.py) into 8 more steps with a fresh code prior:
    (work folder, its config.yml)."""
    from nerfstudio_splatdiff.runs import load_inference_model

    root, config = diffusion_run
    tmp = tmp_path_factory.mktemp("code_prior")
    (ckpt,) = (config.parent / "nerfstudio_models").glob("*.ckpt")
    init = tmp / "init"
    run_cli([sys.executable, ROOT / "benchmarks" / "code_prior_init.py", "--checkpoint", ckpt, "--output", init])
    var_config = load_inference_model(config)[1].pipeline.model.var_checkpoint
    extra = ["--pipeline.model.var-checkpoint", str(var_config), "--pipeline.model.num-steps", "4"]
    (warm,) = (init / "nerfstudio_models").glob("*.ckpt")
    extra += ["--pipeline.model.code-prior", "True", "--load-checkpoint", str(warm)]
    run_cli(train_cmd("splatdiff-diffusion-small", root / "data", tmp / "out", root / "cache", 8, *extra))
    (new_config,) = (tmp / "out").glob("*/splatdiff-diffusion-small/*/config.yml")
    return root, new_config


def test_a_denoiser_warm_started_with_the_code_prior_trains_it_and_its_samples_take_their_codes_from_it(
    code_prior_run,
):
    """benchmarks/code_prior_init.py marks a denoiser checkpoint so that `--pipeline.model.code-prior True` trains a
    fresh prior beside it (its loss logged, the denoiser's weights carried over); the run's samples then have the
    prior's codes as their spatial means, and the same run with `sample_code_from_prior` off gives the denoiser's."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from nerfstudio_splatdiff.runs import setup_pipeline

    _, config = code_prior_run
    acc = EventAccumulator(str(config.parent))
    acc.Reload()
    assert len(acc.Scalars("Train Loss Dict/code_nll")) >= 5
    _, pipeline, _, step = setup_pipeline(config)
    model = pipeline.model
    assert step > 30 and model.code_prior is not None
    _, batch = pipeline.datamanager.fixed_indices_eval_dataloader.get(0)
    z, _ = model.latent_samples(batch, 3, seed=5)
    mean = model.encode_source(batch)[0]
    expected = model.code_prior.sample(model.to_condition(mean), model.input_code(mean), 3, seed=6)
    assert torch.allclose(model.to_diffusion(z).mean(dim=(2, 3)), expected, atol=1e-4)
    model.config.sample_code_from_prior = False
    z_own, _ = model.latent_samples(batch, 3, seed=5)
    assert not torch.allclose(model.to_diffusion(z_own).mean(dim=(2, 3)), expected, atol=1e-2)
    assert torch.allclose(z_own - z_own.mean(dim=(2, 3), keepdim=True), z - z.mean(dim=(2, 3), keepdim=True), atol=1e-4)


def test_a_var_decoder_trains_on_a_code_priors_draws_and_its_checkpoint_does_not_hold_the_prior(
    code_prior_run, tmp_path
):
    """`--pipeline.model.code-prior-run` (with a frozen encoder) trains the decoder on codes redrawn from the prior:
    the run trains, its loss stays finite, and its checkpoint holds the VAR alone (inference never needs that run)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root, prior_config = code_prior_run
    extra = ["--pipeline.model.code-prior-run", str(prior_config), "--pipeline.model.code-prior-share", "1.0"]
    extra += ["pipeline.model.network:var-net-config", "--pipeline.model.network.frozen-encoder", "True"]
    run_cli(train_cmd("splatdiff-var-small", root / "data", tmp_path / "out", root / "cache", 4, *extra))
    (config,) = (tmp_path / "out").glob("*/splatdiff-var-small/*/config.yml")
    acc = EventAccumulator(str(config.parent))
    acc.Reload()
    losses = [e.value for e in acc.Scalars("Train Loss")]
    assert len(losses) >= 3 and all(v == v and abs(v) < 1e6 for v in losses)
    (ckpt,) = (config.parent / "nerfstudio_models").glob("*.ckpt")
    assert not any("code_prior" in k for k in torch.load(ckpt, weights_only=False)["pipeline"])
