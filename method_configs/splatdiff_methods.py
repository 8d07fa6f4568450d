"""The splatdiff methods and their presets: the only place hyperparameters are set.

- `splatdiff-var`, `splatdiff-regression`: the paper's recipe at 128x128 (SD-VAE widths, batch 32, Adam 5e-5,
  LPIPS 0.01 and lr 5e-6 in the second phase). Needs a GPU and the LPIPS VGG weights in the torch hub cache.
- `splatdiff-var-small`, `splatdiff-regression-small`: a CPU preset at 64x64 that trains in minutes on the
  procedural data; LPIPS is off in this preset so it runs offline. Its VAR sees a context view in training
  (`context_view`, see models/var_net.py) so that stage 2 can sample the designed back-side modes.
- `splatdiff-diffusion` / `splatdiff-diffusion-small`: latent diffusion over a trained VAR of the same preset
  (`--pipeline.model.var-checkpoint <var run>/config.yml`): SD-U-Net-shaped denoiser from scratch, Adam 1e-4 with
  exponential decay, condition dropped 20% of the time, 50 DDIM steps at inference.
"""

from __future__ import annotations

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import MultiStepSchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfstudio_splatdiff.data.dataparsers import Co3dDataParserConfig
from nerfstudio_splatdiff.data.datamanager import MultiSceneDataManagerConfig
from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig
from nerfstudio_splatdiff.models.regression_net import RegressionNetConfig
from nerfstudio_splatdiff.models.splatter_head import SplatterHeadConfig
from nerfstudio_splatdiff.models.var_net import VARNetConfig
from nerfstudio_splatdiff.models.denoiser_net import DenoiserNetConfig
from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig
from nerfstudio_splatdiff.pipeline import DiffusionPipelineConfig, SplatdiffPipelineConfig
from nerfstudio_splatdiff.schedulers import ExponentialLRSchedulerConfig

PAPER = dict(
    image_size=128, widths=(128, 256, 512, 512), layers=2, groups=32, scenes_per_batch=32, lr=5e-5,
    max_steps=400_000, lpips_weight=0.01, ema_decay=0.9999, steps_per_save=5_000, num_workers=8, max_scale_px=4.0,
    context_view=False,
)  # fmt: skip
SMALL = dict(
    image_size=64, widths=(32, 64, 128, 128), layers=1, groups=32, scenes_per_batch=8, lr=2e-4,
    max_steps=3_000, lpips_weight=0.0, ema_decay=0.995, steps_per_save=500, num_workers=2, max_scale_px=2.0,
    context_view=True,  # the procedural data's back sides are ambiguous by design: give the latent the far view
)  # fmt: skip


def _trainer(method: str, network, p: dict) -> TrainerConfig:
    phase2 = int(p["max_steps"] * 0.75)  # LPIPS on and lr / 10 for the last quarter (the paper's second phase)
    return TrainerConfig(
        method_name=method,
        steps_per_eval_batch=500,
        steps_per_eval_image=1_000,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=p["steps_per_save"],
        max_num_iterations=p["max_steps"],
        mixed_precision=False,  # the model runs its network in bf16 on CUDA itself
        pipeline=SplatdiffPipelineConfig(
            datamanager=MultiSceneDataManagerConfig(
                dataparser=Co3dDataParserConfig(resolution=p["image_size"]),
                scenes_per_batch=p["scenes_per_batch"],
                num_target_views=3,
                num_workers=p["num_workers"],
            ),
            model=ReconstructorModelConfig(
                network=network,
                image_size=p["image_size"],
                l2_weight=0.8,
                ssim_weight=0.2,
                kl_weight=1e-5,
                lpips_weight=p["lpips_weight"],
                lpips_start_step=phase2,
                scale_reg_weight=0.0,  # scales are bounded by the head's soft pixel cap instead
                max_scale=0.1,
                ema_decay=p["ema_decay"],
                eval_skip_weight=1.0,
            ),
        ),
        optimizers={
            "network": {
                "optimizer": AdamOptimizerConfig(lr=p["lr"], eps=1e-8, max_norm=1.0),
                "scheduler": MultiStepSchedulerConfig(max_steps=p["max_steps"], gamma=0.1, milestones=(phase2,)),
            }
        },
        viewer=ViewerConfig(websocket_host="127.0.0.1", num_rays_per_chunk=1 << 15),
        # CPU-only machines run every command without extra flags (nerfstudio's default is cuda).
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        vis="viewer",
    )


def _var(p: dict) -> VARNetConfig:
    return VARNetConfig(block_out_channels=p["widths"], layers_per_block=p["layers"], norm_num_groups=p["groups"],
                        latent_channels=4, skip_dropout=0.5, context_view=p["context_view"], context_drop=0.5, head=SplatterHeadConfig(gaussians_per_pixel=2, max_scale_px=p["max_scale_px"]))  # fmt: skip


def _regression(p: dict) -> RegressionNetConfig:
    return RegressionNetConfig(block_out_channels=p["widths"], layers_per_block=p["layers"], norm_num_groups=p["groups"],
                               head=SplatterHeadConfig(gaussians_per_pixel=2, max_scale_px=p["max_scale_px"]))  # fmt: skip


splatdiff_var = MethodSpecification(
    config=_trainer("splatdiff-var", _var(PAPER), PAPER),
    description="splatdiff stage 1: Variational AutoReconstructor (paper preset, 128x128)",
)
splatdiff_var_small = MethodSpecification(
    config=_trainer("splatdiff-var-small", _var(SMALL), SMALL),
    description="splatdiff stage 1: Variational AutoReconstructor (CPU preset, 64x64)",
)
splatdiff_regression = MethodSpecification(
    config=_trainer("splatdiff-regression", _regression(PAPER), PAPER),
    description="Splatter-Image-like regression baseline (paper preset, 128x128)",
)
splatdiff_regression_small = MethodSpecification(
    config=_trainer("splatdiff-regression-small", _regression(SMALL), SMALL),
    description="Splatter-Image-like regression baseline (CPU preset, 64x64)",
)


DIFFUSION_PAPER = dict(image_size=128, widths=(320, 640, 1280, 1280), attention=(1, 2, 3), layers=2, groups=32,
                       scenes_per_batch=32, max_steps=200_000, ema_decay=0.9999, num_workers=8)  # fmt: skip
DIFFUSION_SMALL = dict(image_size=64, widths=(64, 128, 128), attention=(1, 2), layers=1, groups=32,
                       scenes_per_batch=32, max_steps=3_000, ema_decay=0.995, num_workers=2)  # fmt: skip


def _diffusion(method: str, p: dict) -> TrainerConfig:
    return TrainerConfig(
        method_name=method,
        steps_per_eval_batch=500,
        steps_per_eval_image=2_000,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=1_000,
        max_num_iterations=p["max_steps"],
        mixed_precision=False,
        pipeline=DiffusionPipelineConfig(
            datamanager=MultiSceneDataManagerConfig(
                dataparser=Co3dDataParserConfig(resolution=p["image_size"]),
                scenes_per_batch=p["scenes_per_batch"],
                num_target_views=3,  # the source view, and (context-view VARs) the candidates for the view facing away
                num_workers=p["num_workers"],
            ),
            model=DiffusionModelConfig(
                denoiser=DenoiserNetConfig(block_out_channels=p["widths"], layers_per_block=p["layers"],
                                           attention_levels=p["attention"], norm_num_groups=p["groups"]),  # fmt: skip
                image_size=p["image_size"],
                cond_drop_prob=0.2,
                input_mask_prob=0.0,
                ema_decay=p["ema_decay"],
                scheduler="ddim",
                num_steps=50,
                guidance_weight=0.0,
                skip_weight=1.0,
                eval_num_samples=20,
            ),
        ),
        optimizers={
            "denoiser": {
                "optimizer": AdamOptimizerConfig(lr=1e-4, eps=1e-8, max_norm=1.0),
                "scheduler": ExponentialLRSchedulerConfig(lr_final=1e-5, max_steps=p["max_steps"]),
            }
        },
        viewer=ViewerConfig(websocket_host="127.0.0.1", num_rays_per_chunk=1 << 15),
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        vis="viewer",
    )


splatdiff_diffusion = MethodSpecification(
    config=_diffusion("splatdiff-diffusion", DIFFUSION_PAPER),
    description="splatdiff stage 2: latent diffusion over a trained VAR (paper preset, 128x128)",
)
splatdiff_diffusion_small = MethodSpecification(
    config=_diffusion("splatdiff-diffusion-small", DIFFUSION_SMALL),
    description="splatdiff stage 2: latent diffusion over a trained VAR (CPU preset, 64x64)",
)
