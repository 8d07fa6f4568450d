"""Rough inputs outside splatdiff-sample (issue #22): options that cannot work are refused in one clear line when
the flags are parsed (so plain `ns-train` refuses them up front too, not after minutes of training or by
splatdiff-sample afterwards), the training options that live in nerfstudio's configs when the trainer is made,
before the data loads; a checkpoint of other widths is one line, not one per tensor; `splatdiff-slim-run` finds a
shipped diffusion run's VAR from any working folder; and under `ns-train` the plugin's errors are one red line."""

from __future__ import annotations

import copy
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import tyro
import yaml

from nerfstudio_splatdiff.errors import SplatdiffError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DIFFUSION = REPO / "checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml"
SHIPPED_VAR = REPO / "checkpoints/demo/splatdiff-var-small/shipped/config.yml"
NS_TRAIN = Path(sys.executable).parent / "ns-train"


def parse(*args: str):
    """The method config `splatdiff-train` (and, with the same tyro call, `ns-train`) builds from these flags."""
    from nerfstudio_splatdiff.scripts.train import splatdiff_methods

    methods, descriptions = splatdiff_methods()
    union = tyro.extras.subcommand_type_from_defaults(defaults=methods, descriptions=descriptions)
    return tyro.cli(tyro.conf.SuppressFixed[tyro.conf.FlagConversionOff[union]], args=list(args))


def refusal(capsys, *args: str) -> str:
    """tyro's message (its error box, unwrapped into one line) for flags that cannot build a config."""
    with pytest.raises(SystemExit) as exit_info:
        parse(*args)
    assert exit_info.value.code != 0
    box = capsys.readouterr().err
    return " ".join(line.strip("│ ") for line in box.splitlines())


# -- options checked when the config is built --------------------------------------------------------------------
DATA = ["co3d-data", "--data", "data/none"]
VAR_NET = [*DATA, "pipeline.model.network:var-net-config"]  # the network is a subcommand: its flags come after it
ROUGH = [  # (method, flags, words the one line must hold)
    ("splatdiff-var-small", ["--pipeline.datamanager.scenes-per-batch", "0", *DATA], "scenes-per-batch 0"),
    ("splatdiff-var-small", ["--pipeline.datamanager.num-target-views", "0", *DATA], "num-target-views 0"),
    ("splatdiff-var-small", ["--pipeline.model.kl-weight", "-1", *DATA], "--pipeline.model.kl-weight -1"),
    ("splatdiff-var-small", ["--pipeline.model.ssim-weight", "nan", *DATA], "--pipeline.model.ssim-weight nan"),
    ("splatdiff-var-small", [*VAR_NET, "--pipeline.model.network.head.gaussians-per-pixel", "0"], "per-pixel 0"),
    (
        "splatdiff-var-small",
        [*VAR_NET, "--pipeline.model.network.block-out-channels", "32", "64", "100", "128"],
        "multiples of --pipeline.model.network.norm-num-groups 32",
    ),
    (
        "splatdiff-regression-small",
        [*DATA, "pipeline.model.network:regression-net-config", "--pipeline.model.network.norm-num-groups", "0"],
        "norm-num-groups 0",
    ),
    ("splatdiff-diffusion-small", ["--pipeline.model.num-steps", "0", *DATA], "--pipeline.model.num-steps 0"),
    ("splatdiff-diffusion-small", ["--pipeline.model.guidance-weight", "-1", *DATA], "guidance-weight -1"),
    ("splatdiff-diffusion-small", ["--pipeline.model.eta", "5", *DATA], "--pipeline.model.eta 5"),
    (
        "splatdiff-diffusion-small",
        ["--pipeline.model.scheduler", "dpmsolver++", *DATA],  # the small preset samples with eta 1: DDIM only
        "--pipeline.model.scheduler ddim",
    ),
    ("splatdiff-diffusion-small", ["--pipeline.model.denoiser.norm-num-groups", "7", *DATA], "multiples of"),
    ("splatdiff-diffusion-small", ["--optimizers.denoiser.scheduler.lr-final", "0", *DATA], "lr-final 0"),
]


@pytest.mark.parametrize("method, flags, words", ROUGH, ids=[words for _, _, words in ROUGH])
def test_options_that_cannot_work_are_refused_in_one_line_when_the_flags_are_parsed(method, flags, words, capsys):
    line = refusal(capsys, method, *flags)
    assert words in line and "cannot work: pass" in line
    assert "Traceback" not in line


def test_the_presets_and_sound_flags_still_parse():
    config = parse("splatdiff-diffusion-small", "--pipeline.model.num-steps", "20", "co3d-data", "--data", "d")
    assert config.pipeline.model.num_steps == 20
    config = parse(
        "splatdiff-var-small", "--pipeline.model.image-size", "32", "co3d-data", "--data", "d", "--resolution", "32"
    )
    assert config.pipeline.datamanager.dataparser.resolution == config.pipeline.model.image_size == 32


def test_a_resolution_that_is_not_the_models_input_size_names_a_flag_that_parses(capsys):
    line = refusal(capsys, "splatdiff-var-small", "co3d-data", "--data", "d", "--resolution", "32")
    assert "co3d-data --resolution 64" in line and "--pipeline.model.image-size 32" in line
    assert "--pipeline.datamanager.dataparser.resolution" not in line
    # the spelling the hint names is the one ns-train takes
    assert (
        parse("splatdiff-var-small", "co3d-data", "--data", "d", "--resolution", "64").pipeline.model.image_size == 64
    )


# -- nerfstudio's own options, checked when the trainer is made ---------------------------------------------------
def _trainer_config(method: str = "splatdiff_var_small", **fields):
    import method_configs.splatdiff_methods as methods

    config = copy.deepcopy(getattr(methods, method).config)
    for name, value in fields.items():
        setattr(config, name, value)
    return config


@pytest.mark.parametrize(
    "change, words",
    [
        (dict(max_num_iterations=0), "--max-num-iterations 0"),
        (dict(steps_per_save=0), "--steps-per-save 0"),
        (dict(lr=-1e-4), "--optimizers.network.optimizer.lr -0.0001"),
        (dict(lr=math.nan), "--optimizers.network.optimizer.lr nan"),
    ],
)
def test_iterations_and_learning_rates_that_cannot_work_are_refused_before_the_data_loads(change, words):
    from nerfstudio_splatdiff.trainer import SplatdiffTrainer, check_trainer_options

    config = _trainer_config(**{k: v for k, v in change.items() if k != "lr"})
    if "lr" in change:
        config.optimizers["network"]["optimizer"].lr = change["lr"]
    with pytest.raises(SplatdiffError, match="cannot work: pass") as e:
        check_trainer_options(config)
    assert words in str(e.value) and "\n" not in str(e.value)
    config.pipeline.datamanager.data = Path("/nonexistent/data")  # never reached: refused before any setup
    with pytest.raises(SplatdiffError, match="cannot work"):
        SplatdiffTrainer(config)
    check_trainer_options(_trainer_config())  # the presets pass


def test_more_target_views_than_the_scenes_have_frames_is_refused_before_the_first_step():
    from nerfstudio_splatdiff.data.datamanager import check_target_views

    check_target_views(8, [8, 5])
    with pytest.raises(SplatdiffError, match=r"num-target-views 1000 is more than the 8 frames .* pass at most 8"):
        check_target_views(1000, [8, 5])


# -- checkpoints and runs ------------------------------------------------------------------------------------------
def _tiny_var_model(width: int, **network_options):
    from nerfstudio.data.scene_box import SceneBox

    from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig
    from nerfstudio_splatdiff.models.var_net import VARNetConfig

    network = VARNetConfig(
        block_out_channels=(width,) * 4,
        norm_num_groups=4,
        layers_per_block=1,
        mid_block_attention=False,
        **network_options,
    )
    config = ReconstructorModelConfig(network=network, image_size=32, lpips_weight=0.0)
    box = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    return config.setup(scene_box=box, num_train_data=0, metadata={}, device="cpu")


def test_a_checkpoint_of_other_widths_is_refused_in_one_line_not_one_per_tensor():
    from nerfstudio_splatdiff.runs import load_model_state

    model = _tiny_var_model(8)
    other = {f"_model.{k}": v for k, v in _tiny_var_model(16).state_dict().items()}
    with pytest.raises(SplatdiffError, match=r"other shapes than the model .* tensor\(s\), e\.g\. ") as e:
        load_model_state(model, other)
    message = str(e.value)
    assert "\n" not in message and "size mismatch" not in message and "config.yml of the run that wrote it" in message
    load_model_state(model, {f"_model.{k}": v for k, v in model.state_dict().items()})  # its own weights load


def test_an_input_only_var_starts_from_a_privileged_checkpoint_once_the_branch_is_removed():
    from nerfstudio_splatdiff.runs import load_model_state, without_privileged_branch

    ours = _tiny_var_model(8, privileged_view=True, privileged_width=8, privileged_grid=4, global_code=True)
    paper = _tiny_var_model(8, privileged_view=False, global_code=True)
    state = {f"_model.{k}": v for k, v in ours.state_dict().items()}
    with pytest.raises(SplatdiffError, match="does not match the model"):
        load_model_state(paper, state)  # the branch's weights have nowhere to go
    stripped = without_privileged_branch(state)
    assert stripped and all("privileged" not in k for k in stripped) and len(stripped) < len(state)
    load_model_state(paper, stripped)
    for k, v in paper.state_dict().items():  # every weight the input-only VAR has is ours
        assert torch.equal(v, ours.state_dict()[k]), k
    with pytest.raises(SplatdiffError, match="no privileged branch"):
        without_privileged_branch(stripped)


def test_slim_run_of_the_shipped_diffusion_run_works_from_another_working_folder(tmp_path, monkeypatch):
    from nerfstudio_splatdiff.scripts.cli import run_command
    from nerfstudio_splatdiff.scripts.slim_run import SlimRun

    recorded = yaml.load(SHIPPED_DIFFUSION.read_text(), Loader=yaml.Loader).pipeline.model.var_checkpoint
    assert not Path(recorded).is_absolute()  # the shipped run records its VAR relative to the repository
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["splatdiff-slim-run", "--load-config", str(SHIPPED_DIFFUSION), "--output-dir", "o"]
    )
    run_command(SlimRun)
    for method in ("splatdiff-var-small", "splatdiff-diffusion-small"):
        assert (tmp_path / "o" / "demo" / method / "shipped" / "config.yml").is_file()


def test_slim_run_records_the_guidance_chosen_on_val_and_refuses_it_for_a_var_run(tmp_path, monkeypatch, capsys):
    from nerfstudio_splatdiff.scripts.cli import run_command
    from nerfstudio_splatdiff.scripts.slim_run import SlimRun

    monkeypatch.chdir(tmp_path)
    for weight in ("0", "2.5"):
        argv = ["splatdiff-slim-run", "--load-config", str(SHIPPED_DIFFUSION), "--output-dir", "o"]
        monkeypatch.setattr(sys, "argv", [*argv, "--guidance-weight", weight])
        run_command(SlimRun)
        copy = tmp_path / "o" / "demo" / "splatdiff-diffusion-small" / "shipped" / "config.yml"
        assert yaml.load(copy.read_text(), Loader=yaml.Loader).pipeline.model.guidance_weight == float(weight)
    for bad, says in ((SHIPPED_VAR, "is a diffusion run's sampler setting"), (SHIPPED_DIFFUSION, "finite number")):
        argv = ["splatdiff-slim-run", "--load-config", str(bad), "--output-dir", "p", "--guidance-weight", "nan"]
        if bad == SHIPPED_VAR:
            argv[-1] = "1"
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as e:
            run_command(SlimRun)
        assert e.value.code == 1 and says in " ".join(capsys.readouterr().out.split())
        assert not (tmp_path / "p").exists()


def test_slim_run_names_its_own_flag_when_the_recorded_var_run_is_not_found(tmp_path, monkeypatch, capsys):
    from nerfstudio_splatdiff.scripts.cli import run_command
    from nerfstudio_splatdiff.scripts.slim_run import SlimRun

    moved = tmp_path / "moved" / "config.yml"  # the run alone, away from the repository that holds its VAR
    moved.parent.mkdir()
    moved.write_text(SHIPPED_DIFFUSION.read_text())
    (moved.parent / "nerfstudio_models").symlink_to(SHIPPED_DIFFUSION.parent / "nerfstudio_models")
    monkeypatch.chdir(tmp_path)
    argv = ["splatdiff-slim-run", "--load-config", str(moved), "--output-dir", "o"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as e:
        run_command(SlimRun)
    out = capsys.readouterr().out
    assert e.value.code == 1 and "pass --var-config <VAR run>/config.yml" in " ".join(out.split())
    assert "--pipeline.model.var-checkpoint" not in out and not (tmp_path / "o").exists()
    monkeypatch.setattr(sys, "argv", [*argv, "--var-config", str(SHIPPED_VAR)])
    run_command(SlimRun)
    assert (tmp_path / "o" / "demo" / "splatdiff-diffusion-small" / "shipped" / "config.yml").is_file()


# -- plain ns-train --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_plain_ns_train_prints_the_plugins_errors_as_one_red_line(tmp_path):
    """A real `ns-train` run with a NaN learning rate, refused when the trainer is made (before the data loads):
    one red line, not a traceback (the error hook the method configs install). Options of the splatdiff configs are
    refused by the same tyro parse as in the tests above (a real `ns-train` one: test_train_eval's resolution test)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [NS_TRAIN, "splatdiff-var-small", "--output-dir", tmp_path / "out", "--vis", "tensorboard"]
    cmd += ["--optimizers.network.optimizer.lr", "nan", "co3d-data", "--data", tmp_path / "no-data"]
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=600)
    errors = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr[-2000:]
    assert errors[-1].startswith("Error: --optimizers.network.optimizer.lr nan cannot work: pass")
