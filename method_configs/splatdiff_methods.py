"""The splatdiff methods and their presets: the only place hyperparameters are set.

- `splatdiff-var`, `splatdiff-regression`: the paper's recipe at 128x128 (SD-VAE widths, batch 32, Adam 5e-5,
  LPIPS 0.01 and lr 5e-6 in the second phase). Needs a GPU and the LPIPS VGG weights in the torch hub cache.
- `splatdiff-var-small`, `splatdiff-var-small-input-only`, `splatdiff-regression-small`: a CPU preset at 64x64 for
  the proving ground (`splatdiff-make-procedural --kind object`: objects on white whose hidden side has K designed
  modes). LPIPS is off so it runs offline. Training items take the source near view 0 and always one target on
  the hidden side. `splatdiff-var-small` has the privileged branch (a hidden-side view with its pose informs the
  latent, models/privileged.py), so stage 2 can learn to sample the modes; `-input-only` is the paper's recipe.
- `splatdiff-var-gpu128`, `splatdiff-diffusion-gpu128`: the proving-ground recipe of the small presets at the
  paper's 128x128, sized for the short lent GPU runs (benchmarks/gpu_session.sh) that resume one another.
- `splatdiff-diffusion` / `splatdiff-diffusion-small`: latent diffusion over a trained VAR of the same preset
  (`--pipeline.model.var-checkpoint <var run>/config.yml`): SD-U-Net-shaped denoiser from scratch, Adam 1e-4 with
  exponential decay, condition dropped 20% of the time, 50 DDIM steps at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.schedulers import MultiStepSchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerfstudio_splatdiff.data.datamanager import MultiSceneDataManagerConfig
from nerfstudio_splatdiff.data.dataparsers import Co3dDataParserConfig
from nerfstudio_splatdiff.errors import install_one_line_errors
from nerfstudio_splatdiff.models.denoiser_net import DenoiserNetConfig
from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig
from nerfstudio_splatdiff.models.reconstructor import ReconstructorModelConfig
from nerfstudio_splatdiff.models.regression_net import RegressionNetConfig
from nerfstudio_splatdiff.models.splatter_head import SplatterHeadConfig
from nerfstudio_splatdiff.models.var_net import VARNetConfig
from nerfstudio_splatdiff.optimizers import FusedAdamOptimizerConfig
from nerfstudio_splatdiff.pipeline import DiffusionPipelineConfig, SplatdiffPipelineConfig
from nerfstudio_splatdiff.schedulers import ExponentialLRSchedulerConfig
from nerfstudio_splatdiff.trainer import SplatdiffTrainer

# Plain `ns-train` (which loads these configs through its plugin entry points) does not catch the plugin's errors:
# print a SplatdiffError that nothing caught as its one line, not at the end of a traceback.
install_one_line_errors()


@dataclass(frozen=True)
class Preset:
    """One stage-1 preset: everything that differs between the paper's recipe and the CPU proving ground."""

    image_size: int
    """Side of the square training images."""
    widths: Tuple[int, ...]
    """Encoder/decoder widths per level (4 levels: the 1/8-resolution latent)."""
    layers: int
    """ResNet layers per level."""
    groups: int
    """GroupNorm groups."""
    scenes_per_batch: int
    """Scenes per training batch (each: the source and 3 targets)."""
    lr: float
    """Adam learning rate (divided by 10 for the last quarter)."""
    max_steps: int
    """Training steps."""
    lpips_weight: float
    """LPIPS weight in the last quarter (the paper's second phase); 0 trains offline without it."""
    ema_decay: float
    """EMA of the weights for evaluation."""
    steps_per_save: int
    """Checkpoint interval."""
    num_workers: int
    """DataLoader worker processes."""
    max_scale_px: float
    """Soft cap of Gaussian scales in input-view pixels."""
    privileged_view: bool
    """VARs: the privileged branch (a hidden-side view with its pose informs the latent in training)."""
    background: Optional[Tuple[float, float, float]] = None
    """Composite the data onto this colour and render onto it (None: full images on black, as the paper)."""
    source_window: Optional[int] = None
    """Training sources within this many frames of view 0 (None: any frame)."""
    hidden_target: bool = False
    """Every training item has one target on the side hidden from view 0."""
    scene_kind: Optional[str] = None
    """Refuse data of another procedural kind (None: any data)."""
    mask_weight: float = 0.0
    """L1 between rendered opacity and the object masks (cuts background haze on plain backgrounds)."""


PAPER = Preset(
    image_size=128,
    widths=(128, 256, 512, 512),
    layers=2,
    groups=32,
    scenes_per_batch=32,
    lr=5e-5,
    max_steps=400_000,
    lpips_weight=0.01,
    ema_decay=0.9999,
    steps_per_save=5_000,
    num_workers=8,
    max_scale_px=4.0,
    privileged_view=False,
)
SMALL = Preset(
    image_size=64,
    widths=(32, 64, 128, 128),
    layers=1,
    groups=32,
    scenes_per_batch=8,
    lr=3e-4,
    max_steps=6_000,
    lpips_weight=0.0,
    ema_decay=0.995,
    steps_per_save=250,
    num_workers=1,
    # 1 px, not 2: 35% fewer (Gaussian, pixel) pairs, +0.9 dB on the input view's objects and sharper renders for
    # -0.16 dB on the hidden side (benchmarks/fewer_pairs.py, 300 steps from the shipped VAR, 2026-11-26).
    max_scale_px=1.0,
    privileged_view=True,
    background=(1.0, 1.0, 1.0),
    source_window=1,
    hidden_target=True,
    scene_kind="object",
    mask_weight=0.1,
)
SMALL_INPUT_ONLY = replace(SMALL, privileged_view=False)
# The small presets' proving-ground recipe (privileged view, hidden-side targets, white background, masks) at the
# paper's 128x128, for lent GPUs: ~15 minutes a run, ~5 of them training, each run warm-starting from the slim copy
# the previous one brought back (benchmarks/gpu_session.sh). Why these numbers:
# - widths (64, 128, 128, 128): the extra resolution is detail, so the width goes to the full- and half-resolution
#   levels (64 channels at 128x128, twice the small preset's); the deep levels keep the small preset's 128, which
#   keeps the network at 5.5 M parameters, so its float16 slim copy (~11 MB) comes back from a lent machine as one
#   file (<= 16 MiB) and travels back in with the prebuilt gsplat inside the 64 MiB a GPU command may carry;
# - batch 16: a step of 16 x 4 views at 128x128 is ~8x the small preset's pixels, still far from filling an H100;
#   more steps per run rather than larger batches, as every run restarts Adam from fresh moments;
# - max_scale_px 2: the small preset's 1-pixel cap at 64x64 in world size (pixels are half as large here);
# - 60,000 steps (LPIPS stays off: the lr drop comes at 45,000) and a save every 500: many short runs add up.
GPU128 = replace(
    SMALL,
    image_size=128,
    widths=(64, 128, 128, 128),
    scenes_per_batch=16,
    lr=2e-4,
    max_steps=60_000,
    ema_decay=0.999,
    steps_per_save=500,
    num_workers=4,
    max_scale_px=2.0,
)


def _trainer(method: str, network, p: Preset) -> TrainerConfig:
    phase2 = int(p.max_steps * 0.75)  # LPIPS on and lr / 10 for the last quarter (the paper's second phase)
    return TrainerConfig(
        _target=SplatdiffTrainer,  # atomic checkpoint saves; resume from the newest that loads
        method_name=method,
        steps_per_eval_batch=500,
        steps_per_eval_image=1_000,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=p.steps_per_save,
        max_num_iterations=p.max_steps,
        mixed_precision=False,  # the model runs its network in bf16 on CUDA itself
        pipeline=SplatdiffPipelineConfig(
            datamanager=MultiSceneDataManagerConfig(
                dataparser=Co3dDataParserConfig(resolution=p.image_size),
                scenes_per_batch=p.scenes_per_batch,
                num_target_views=3,
                num_workers=p.num_workers,
                background_color=p.background,
                source_window=p.source_window,
                hidden_target=p.hidden_target,
                scene_kind=p.scene_kind,
            ),
            model=ReconstructorModelConfig(
                network=network,
                image_size=p.image_size,
                l2_weight=0.8,
                ssim_weight=0.2,
                kl_weight=1e-5,
                lpips_weight=p.lpips_weight,
                lpips_start_step=phase2,
                mask_weight=p.mask_weight,
                scale_reg_weight=0.0,  # scales are bounded by the head's soft pixel cap instead
                max_scale=0.1,
                ema_decay=p.ema_decay,
                eval_skip_weight=1.0,
                background_color=p.background or (0.0, 0.0, 0.0),
            ),
        ),
        optimizers={
            "network": {
                "optimizer": FusedAdamOptimizerConfig(lr=p.lr, eps=1e-8, max_norm=1.0),
                "scheduler": MultiStepSchedulerConfig(max_steps=p.max_steps, gamma=0.1, milestones=(phase2,)),
            }
        },
        viewer=ViewerConfig(websocket_host="127.0.0.1", num_rays_per_chunk=1 << 15),
        # CPU-only machines run every command without extra flags (nerfstudio's default is cuda).
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        vis="viewer",
    )


def _var(p: Preset) -> VARNetConfig:
    return VARNetConfig(
        block_out_channels=p.widths,
        layers_per_block=p.layers,
        norm_num_groups=p.groups,
        latent_channels=4,
        skip_dropout=0.5,
        privileged_view=p.privileged_view,
        privileged_drop=0.1,
        privileged_width=32,
        global_code=p.privileged_view,
        privileged_grid=p.image_size // 8,
        head=SplatterHeadConfig(gaussians_per_pixel=2, max_scale_px=p.max_scale_px),
    )


def _regression(p: Preset) -> RegressionNetConfig:
    return RegressionNetConfig(
        block_out_channels=p.widths,
        layers_per_block=p.layers,
        norm_num_groups=p.groups,
        head=SplatterHeadConfig(gaussians_per_pixel=2, max_scale_px=p.max_scale_px),
    )


splatdiff_var = MethodSpecification(
    config=_trainer("splatdiff-var", _var(PAPER), PAPER),
    description="splatdiff stage 1: Variational AutoReconstructor (paper preset, 128x128)",
)
splatdiff_var_small = MethodSpecification(
    config=_trainer("splatdiff-var-small", _var(SMALL), SMALL),
    description="splatdiff stage 1: Variational AutoReconstructor (CPU preset, 64x64)",
)
splatdiff_var_small_input_only = MethodSpecification(
    config=_trainer("splatdiff-var-small-input-only", _var(SMALL_INPUT_ONLY), SMALL_INPUT_ONLY),
    description="splatdiff stage 1, the paper's recipe (input only, no privileged view) on the CPU preset, 64x64",
)
splatdiff_var_gpu128 = MethodSpecification(
    config=_trainer("splatdiff-var-gpu128", _var(GPU128), GPU128),
    description="splatdiff stage 1: Variational AutoReconstructor (GPU proving-ground preset, 128x128)",
)
splatdiff_regression = MethodSpecification(
    config=_trainer("splatdiff-regression", _regression(PAPER), PAPER),
    description="Splatter-Image-like regression baseline (paper preset, 128x128)",
)
splatdiff_regression_small = MethodSpecification(
    config=_trainer("splatdiff-regression-small", _regression(SMALL), SMALL),
    description="Splatter-Image-like regression baseline (CPU preset, 64x64)",
)


@dataclass(frozen=True)
class DiffusionPreset:
    """One stage-2 preset (the denoiser and its data)."""

    image_size: int
    """Side of the square images (the VAR's)."""
    widths: Tuple[int, ...]
    """Denoiser U-Net widths per level."""
    attention: Tuple[int, ...]
    """Levels with attention."""
    layers: int
    """ResNet layers per level."""
    groups: int
    """GroupNorm groups."""
    scenes_per_batch: int
    """Scenes per training batch."""
    max_steps: int
    """Training steps."""
    ema_decay: float
    """EMA of the denoiser for sampling."""
    num_workers: int
    """DataLoader worker processes."""
    stage1: Preset
    """The stage-1 preset whose VAR this denoiser samples (its data settings are reused)."""
    steps_per_save: int = 500
    """Checkpoint interval."""
    eta: float = 0.0
    """DDIM eta at sampling: 0 deterministic (the paper's DDIM), 1 ancestral."""
    guidance_weight: float = 0.0
    """Classifier-free guidance weight at sampling: (1 + w) eps(x, c) - w eps(x, 0)."""


DIFFUSION_PAPER = DiffusionPreset(
    image_size=128,
    widths=(320, 640, 1280, 1280),
    attention=(1, 2, 3),
    layers=2,
    groups=32,
    scenes_per_batch=32,
    max_steps=200_000,
    ema_decay=0.9999,
    num_workers=8,
    stage1=PAPER,
)
DIFFUSION_SMALL = DiffusionPreset(
    image_size=64,
    widths=(64, 128, 128),
    attention=(1, 2),
    layers=1,
    groups=32,
    scenes_per_batch=32,
    max_steps=4_000,
    ema_decay=0.995,
    num_workers=1,
    stage1=SMALL,
    steps_per_save=250,  # CPU sessions end at a fixed time: lose little when one does
    # Measured on the proving ground (benchmarks/proving_ground.py --eta --guidance-weight, 2026-11-26, one model):
    # ancestral sampling cut the samples that blend two hidden sides from 59% to 47% (+0.24 dB best-of-20 on the
    # hidden side); guidance 1 on top cut them to 37%, at -0.35 dB for a single sample.
    eta=1.0,
    guidance_weight=1.0,
)
# Over splatdiff-var-gpu128: the small denoiser's widths on a 16x16 latent (4x the positions of 64x64's), batch 32
# (a denoiser step is cheap next to a VAR step), saves every 500 steps for the short lent runs.
DIFFUSION_GPU128 = replace(
    DIFFUSION_SMALL,
    image_size=128,
    max_steps=40_000,
    ema_decay=0.999,
    num_workers=4,
    stage1=GPU128,
    steps_per_save=500,
)


def _diffusion(method: str, p: DiffusionPreset) -> TrainerConfig:
    return TrainerConfig(
        _target=SplatdiffTrainer,  # atomic checkpoint saves; resume from the newest that loads
        method_name=method,
        steps_per_eval_batch=500,
        steps_per_eval_image=2_000,
        steps_per_eval_all_images=1_000_000,
        steps_per_save=p.steps_per_save,
        max_num_iterations=p.max_steps,
        mixed_precision=False,
        pipeline=DiffusionPipelineConfig(
            datamanager=MultiSceneDataManagerConfig(
                dataparser=Co3dDataParserConfig(resolution=p.image_size),
                scenes_per_batch=p.scenes_per_batch,
                num_target_views=3,  # privileged-view VARs: the candidates for the hidden-side view
                num_workers=p.num_workers,
                background_color=p.stage1.background,
                source_window=p.stage1.source_window,
                hidden_target=p.stage1.hidden_target,
                scene_kind=p.stage1.scene_kind,
            ),
            model=DiffusionModelConfig(
                denoiser=DenoiserNetConfig(
                    block_out_channels=p.widths,
                    layers_per_block=p.layers,
                    attention_levels=p.attention,
                    norm_num_groups=p.groups,
                ),
                image_size=p.image_size,
                cond_drop_prob=0.2,
                input_mask_prob=0.0,
                ema_decay=p.ema_decay,
                scheduler="ddim",
                num_steps=50,
                eta=p.eta,
                guidance_weight=p.guidance_weight,
                skip_weight=1.0,
                eval_num_samples=20,
                background_color=p.stage1.background or (0.0, 0.0, 0.0),
                # 12 components: held-out NLL of the scratch2k VAR's codes (21,550 training pairs, 2,450 held-out
                # scenes) 2.16 nats against 2.32 with 6 and 2.59 with 3; a 4x4-pooled condition 2.51.
                code_prior_components=12,
                code_prior_width=256,
                code_prior_depth=2,
                code_prior_temperature=1.0,
            ),
        ),
        optimizers={
            "denoiser": {
                "optimizer": FusedAdamOptimizerConfig(lr=1e-4, eps=1e-8, max_norm=1.0),
                "scheduler": ExponentialLRSchedulerConfig(lr_final=1e-5, max_steps=p.max_steps),
            },
            # --pipeline.model.code-prior True: the prior over the global code (models/code_prior.py), a small MLP on
            # its own loss; a constant rate, so a warm start from a denoiser late in its schedule trains it too.
            "code_prior": {"optimizer": FusedAdamOptimizerConfig(lr=1e-3, eps=1e-8, max_norm=1.0), "scheduler": None},
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
splatdiff_diffusion_gpu128 = MethodSpecification(
    config=_diffusion("splatdiff-diffusion-gpu128", DIFFUSION_GPU128),
    description="splatdiff stage 2: latent diffusion over a trained VAR (GPU proving-ground preset, 128x128)",
)
