"""End to end on CPU: `ns-train splatdiff-var-small` lowers the loss, `ns-eval` writes the protocol's metrics,
the checkpoint renders through the viewer path, and user mistakes get one clear message."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli as run
from cli_helpers import train_cmd

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def train_losses(run_dir: Path) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [e.value for e in acc.Scalars("Train Loss")]


@pytest.fixture(scope="module")
def trained(tiny_var_run):
    return tiny_var_run


def test_training_lowers_the_loss(trained):
    _, config = trained
    values = train_losses(config.parent)
    assert len(values) >= 25
    first, last = sum(values[:5]) / 5, sum(values[-5:]) / 5
    assert last < 0.8 * first, (first, last)


def test_ns_eval_writes_the_protocol_metrics(trained):
    root, config = trained
    out = root / "eval.json"
    run(
        [
            str(BIN / "ns-eval"),
            "--load-config",
            str(config),
            "--output-path",
            str(out),
            "--render-output-path",
            str(root / "renders"),
        ]
    )
    res = json.loads(out.read_text())["results"]
    for key in (
        "psnr",
        "ssim",
        "psnr_objects",
        "ssim_objects",
        "psnr_input",
        "num_scenes",
        "psnr_visible",
        "psnr_occluded",
    ):
        assert key in res and res[key] == res[key] and abs(res[key]) != float("inf"), key
    assert res["num_scenes"] >= 1
    assert ("lpips" in res) != ("lpips_note" in res)
    assert len(list((root / "renders").glob("scene_*.png"))) == int(res["num_scenes"])


def test_checkpoint_renders_through_the_viewer_path(trained):
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.utils.eval_utils import eval_setup

    _, config = trained
    _, pipeline, _, step = eval_setup(config, test_mode="test")
    assert step == 29
    model = pipeline.model
    cam = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=50.0, fy=50.0, cx=40.0, cy=30.0, width=80, height=60)
    out = model.get_outputs_for_camera(cam)
    assert (
        out["rgb"].shape == (60, 80, 3)
        and out["depth"].shape == (60, 80, 1)
        and out["accumulation"].shape == (60, 80, 1)
    )
    assert out["accumulation"].max() > 0.1  # the reconstruction is in front of the input camera
    model.viewer_skip.value = 0.0  # the slider: a different reconstruction
    model._viewer_cache.clear()
    assert not torch.allclose(model.get_outputs_for_camera(cam)["rgb"], out["rgb"])


def test_opacity_regulariser_is_a_loss_term_that_lowers_opacities(trained):
    from nerfstudio.utils.eval_utils import eval_setup

    _, config = trained
    _, pipeline, _, _ = eval_setup(config, test_mode="test")
    model = pipeline.model
    cameras, batch = pipeline.datamanager.fixed_indices_eval_dataloader.get(0)
    model.train()
    assert "opacity_reg" not in model.get_loss_dict(model(cameras, batch), batch)  # off by default
    model.config.opacity_reg_weight = 0.5
    torch.manual_seed(0)  # the same latent sample and privileged-view draw for both passes
    outputs = model(cameras, batch)
    term = model.get_loss_dict(outputs, batch)["opacity_reg"]
    assert torch.isclose(term, 0.5 * outputs["gaussians"].opacities.mean())
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(term, params, allow_unused=True)
    with torch.no_grad():  # one small step down the term's gradient alone lowers the mean opacity
        for p, g in zip(params, grads):
            if g is not None:
                p -= 1e-2 * g / (g.norm() + 1e-12)
    torch.manual_seed(0)
    assert model(cameras, batch)["gaussians"].opacities.mean() < outputs["gaussians"].opacities.mean()


def test_wrong_image_size_is_one_clear_message(trained):
    root, _ = trained
    cmd = train_cmd("splatdiff-var-small", root / "data", root / "out_bad", root / "cache", 2) + ["--resolution", "32"]
    out = run(cmd, check=False)
    assert out.returncode != 0
    text = " ".join((out.stdout + out.stderr).replace("│", " ").split())  # tyro's error box, unwrapped
    assert "The data resolution 32 is not the model's input size 64" in text and "co3d-data --resolution 64" in text
    assert "Traceback" not in text and not (root / "out_bad").exists()  # refused when the flags are parsed


def test_lpips_requested_without_weights_fails_at_start_up(trained, tmp_path):
    root, _ = trained
    cmd = train_cmd(
        "splatdiff-var-small", root / "data", tmp_path / "o", root / "cache", 2, "--pipeline.model.lpips-weight", "0.01"
    )
    out = run(cmd, env_extra={"TORCH_HOME": str(tmp_path / "empty_torch_home")}, check=False)
    assert out.returncode != 0
    assert "LPIPS needs the vgg ImageNet weights" in out.stdout + out.stderr


def test_missing_checkpoint_is_one_clear_message(trained, tmp_path):
    import yaml

    _, config = trained
    cfg = yaml.load(config.read_text(), Loader=yaml.Loader)
    cfg.output_dir = tmp_path / "moved_away"  # the run's checkpoints are no longer where the config says
    broken = tmp_path / "config.yml"
    broken.write_text(yaml.dump(cfg))
    out = run(
        [str(BIN / "ns-eval"), "--load-config", str(broken), "--output-path", str(tmp_path / "e.json")], check=False
    )
    assert out.returncode != 0
    assert "No checkpoint directory found" in out.stdout + out.stderr
