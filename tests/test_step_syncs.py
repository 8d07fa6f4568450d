"""A training step reads no device value on the host that it can do without (on a GPU each read waits for all the
work queued so far): the renderer's camera checks read once, the EMA update and the diffusion model's latent scales
not at all after the first step. The same numbers as before: torch's EMA bit for bit, the same camera errors, and
on CPU the same Adam. Plus the opt-in torch.compile and the fused Adam of the method configs."""

from __future__ import annotations

import copy
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import yaml
from host_reads import HostReads
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from test_rasterizer import random_scene
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.ema import StepEMA
from nerfstudio_splatdiff.optimizers import FusedAdamOptimizerConfig
from nerfstudio_splatdiff.splats.render import _check_cameras

BOX = SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))


# -- the renderer's camera checks ------------------------------------------------------------------------------------
def test_the_renderer_checks_its_cameras_with_one_host_read():
    g, viewmats, Ks, _ = random_scene(2, 3, 5, 16, 16, seed=0)
    with HostReads() as reads:
        _check_cameras(viewmats, Ks, 2, 16, 16)
    assert reads.names == ["tolist"]


@pytest.mark.parametrize(
    "fault, message",
    [("nan", "NaN or inf"), ("skew", "not orthonormal"), ("focal", "focal length is not positive"),
     ("off_image", "another image size"), ("nan_and_off_image", "NaN or inf")],
)  # fmt: skip
def test_a_bad_camera_gets_the_error_of_its_first_fault(fault, message):
    g, viewmats, Ks, _ = random_scene(1, 2, 5, 16, 16, seed=0)
    viewmats, Ks = viewmats.clone(), Ks.clone()
    if fault.startswith("nan"):
        viewmats[0, 1, 0, 3] = float("nan")
    if fault == "skew":
        viewmats[0, 0, :3, :3] *= 2
    if fault == "focal":
        Ks[0, 1, 0, 0] = -Ks[0, 1, 0, 0]
    if fault.endswith("off_image"):
        Ks[0, 0, 0, 2] = 40.0
    with pytest.raises(SplatdiffError, match=message):
        _check_cameras(viewmats, Ks, 1, 16, 16)


# -- the EMA ----------------------------------------------------------------------------------------------------------
def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # float parameters and buffers, and an int64 buffer


def _train_a_little(net: nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
        net[1].running_mean.add_(torch.randn(4))
        net[1].num_batches_tracked += 7


def test_the_ema_computes_torchs_ema_bit_for_bit_and_reads_the_device_only_once():
    net = _net()
    ref = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    ema = StepEMA(net, 0.9)
    reads_per_update = []
    for _ in range(4):
        _train_a_little(net)
        ref.update_parameters(net)
        with HostReads() as reads:
            ema.update_parameters(net)
        reads_per_update.append(len(reads.names))
        assert list(ema.state_dict()) == list(ref.state_dict())
        for key, value in ref.state_dict().items():
            assert torch.equal(ema.state_dict()[key], value), key
    assert reads_per_update == [1, 0, 0, 0]
    assert int(ema.n_averaged) == 4 and not torch.equal(ema.module[0].weight, net[0].weight)  # it averages


def test_the_ema_starts_again_from_a_loaded_state_that_has_not_started():
    net = _net()
    ema = StepEMA(net, 0.9)
    ema.update_parameters(net)
    ema.load_state_dict(StepEMA(_net(), 0.9).state_dict())  # n_averaged 0
    _train_a_little(net)
    ema.update_parameters(net)  # the first update after the load copies, as torch's does
    assert torch.equal(ema.module[0].weight, net[0].weight) and int(ema.n_averaged) == 1


# -- the diffusion model's latent scales ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_var_config(tmp_path_factory):
    """An untrained input-only VAR run folder (config.yml + one checkpoint) at 32x32, as the diffusion model loads."""
    import method_configs.splatdiff_methods as presets

    p = replace(presets.SMALL_INPUT_ONLY, image_size=32, widths=(8, 8, 8, 8), groups=4)
    config = presets._trainer("splatdiff-var-small-input-only", presets._var(p), p)
    root = tmp_path_factory.mktemp("var")
    (root / "config.yml").write_text(yaml.dump(config))
    state = config.pipeline.model.network.setup().state_dict()
    (root / "nerfstudio_models").mkdir()
    ckpt = {"step": 0, "pipeline": {f"_model.net.{k}": v for k, v in state.items()}}
    torch.save(ckpt, root / "nerfstudio_models" / "step-000000000.ckpt")
    return root / "config.yml"


def _diffusion_model(var_config):
    from nerfstudio_splatdiff.models.denoiser_net import DenoiserNetConfig
    from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig

    denoiser = DenoiserNetConfig(
        block_out_channels=(8, 8), layers_per_block=1, attention_levels=(1,), norm_num_groups=4
    )
    config = DiffusionModelConfig(var_checkpoint=var_config, image_size=32, denoiser=denoiser, ema_decay=0.0)
    return config.setup(scene_box=BOX, num_train_data=0, metadata={}, device="cpu")


def _train_step_inputs(B: int = 2, V: int = 2) -> tuple:
    """(Cameras, batch) as the datamanager hands them to the model."""
    from nerfstudio_splatdiff.splats.cameras import nerfstudio_cameras

    g, viewmats, Ks, _ = random_scene(B, V, 5, 32, 32, seed=1)
    batch = {
        "images": torch.rand(B, V, 32, 32, 3),
        "c2w": torch.linalg.inv(viewmats),
        "K": Ks,
        "depth_near": torch.full((B,), 0.8),
        "depth_far": torch.full((B,), 3.2),
    }
    return nerfstudio_cameras(batch["c2w"], batch["K"], 32, 32), batch


def test_diffusion_training_reads_its_latent_scales_once_and_again_after_a_load(tiny_var_config):
    model = _diffusion_model(tiny_var_config)
    model.train()
    first_inputs, later_inputs = _train_step_inputs(), _train_step_inputs()
    with HostReads() as first:
        model(*first_inputs)
    scale = float(model.latent_scale)
    assert first.names and scale > 0  # the scales are set from the first batch (and read to set them)
    with HostReads() as later:
        model(*later_inputs)
    assert later.names == [] and float(model.latent_scale) == scale
    fresh = copy.deepcopy(model.state_dict())
    fresh["latent_scale"].zero_()
    fresh["latent_scale_global"].zero_()
    model.load_state_dict(fresh)  # an unset scale: the next batch sets it again
    model(*_train_step_inputs())
    assert float(model.latent_scale) > 0 and float(model.latent_scale) != scale


# -- fused Adam and torch.compile, opt-in ---------------------------------------------------------------------------
def test_the_method_configs_adam_is_nerfstudios_adam_on_cpu_and_fused_only_for_cuda_parameters():
    import method_configs.splatdiff_methods as presets

    for spec in (presets.splatdiff_var, presets.splatdiff_var_gpu128, presets.splatdiff_diffusion_small):
        assert all(isinstance(g["optimizer"], FusedAdamOptimizerConfig) for g in spec.config.optimizers.values())
    torch.manual_seed(0)
    a, b = nn.Parameter(torch.randn(7)), nn.Parameter(torch.randn(7))
    b.data.copy_(a.data)
    ours = FusedAdamOptimizerConfig(lr=1e-2, eps=1e-8, max_norm=1.0).setup([a])
    theirs = AdamOptimizerConfig(lr=1e-2, eps=1e-8, max_norm=1.0).setup([b])
    assert not ours.defaults["fused"] and ours.defaults == theirs.defaults
    for _ in range(3):
        grad = torch.randn(7)
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step(), theirs.step()
    assert torch.equal(a, b)
    cuda_param = SimpleNamespace(is_cuda=True)
    assert FusedAdamOptimizerConfig().uses_fused([cuda_param]) and FusedAdamOptimizerConfig().uses_fused(
        [{"params": [cuda_param]}]
    )
    assert not FusedAdamOptimizerConfig(fused=False).uses_fused([cuda_param])
    assert not FusedAdamOptimizerConfig().uses_fused([cuda_param, a]) and not FusedAdamOptimizerConfig().uses_fused([])


def _tiny_var_model(**kw):
    from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig
    from nerfstudio_splatdiff.models.var_net import VARNetConfig

    network = VARNetConfig(block_out_channels=(8,) * 4, norm_num_groups=4, layers_per_block=1)
    config = ReconstructorModelConfig(network=network, image_size=32, lpips_weight=0.0, ema_decay=0.9, **kw)
    return config.setup(scene_box=BOX, num_train_data=0, metadata={}, device="cpu")


def test_compile_network_compiles_the_trained_network_in_place_and_only_for_cuda():
    model = _tiny_var_model(compile_network=True)
    keys = list(model.state_dict())
    model.compile_on_cuda(torch.device("cpu"))
    assert model.net._compiled_call_impl is None  # CPU runs as before
    model.compile_on_cuda(torch.device("cuda"))  # torch.compile is lazy: nothing runs on a GPU here
    assert model.net._compiled_call_impl is not None and model.ema.module._compiled_call_impl is None
    assert list(model.state_dict()) == keys  # checkpoints keep their keys
    off = _tiny_var_model()
    off.compile_on_cuda(torch.device("cuda"))
    assert off.net._compiled_call_impl is None


def test_the_global_code_scale_shrinks_the_diffused_latents_global_code_only(tiny_var_config):
    model = _diffusion_model(tiny_var_config)
    model.train()
    model(*_train_step_inputs())  # sets the latent scales from a batch
    z = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(0)) + 3.0
    plain, condition = model.to_diffusion(z), model.to_condition(z)
    model.config.global_code_scale = 0.125
    shifted = model.to_diffusion(z)
    mean = lambda x: x.mean(dim=(2, 3), keepdim=True)  # noqa: E731
    assert torch.allclose(mean(shifted), 0.125 * mean(plain), atol=1e-6)  # the global code, 8x smaller
    assert torch.allclose(shifted - mean(shifted), plain - mean(plain), atol=1e-6)  # the rest as before
    assert torch.allclose(model.to_condition(z), condition)  # the condition is not diffused: unchanged
    assert torch.allclose(model.from_diffusion(shifted), z, atol=1e-5)
    with pytest.raises(SplatdiffError, match="global-code-scale"):
        replace(model.config, global_code_scale=0.0)
