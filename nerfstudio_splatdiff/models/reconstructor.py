"""nerfstudio Model for the feed-forward reconstructors: the VAR (`splatdiff-var`) and the regression baseline
(`splatdiff-regression`). One image in, Gaussians out, rendered into the other views and compared with them.

All differentiable work happens in `forward(cameras, batch)` so nerfstudio's DDP wrapper sees it. An EMA copy of
the network (as Splatter Image keeps) is used for evaluation and the viewer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type, Union

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.viewer.viewer_elements import ViewerSlider
from torch import Tensor
from torch.nn import Parameter

from nerfstudio_splatdiff.errors import SplatdiffError, check_option, is_number_in
from nerfstudio_splatdiff.models import losses
from nerfstudio_splatdiff.models.code_prior_source import FrozenCodePrior, load_frozen_code_prior
from nerfstudio_splatdiff.models.metrics import image_psnr, object_metrics, psnr, visibility_masks
from nerfstudio_splatdiff.models.privileged import privileged_inputs
from nerfstudio_splatdiff.models.regression_net import RegressionNetConfig
from nerfstudio_splatdiff.models.scene_model import (
    RunKind,
    SceneModel,
    SceneModelConfig,
    check_shared_model_options,
)
from nerfstudio_splatdiff.models.var_net import CodeRedraw, VARNetConfig
from nerfstudio_splatdiff.splats import Gaussians
from nerfstudio_splatdiff.splats.cameras import invert_rigid

LOSS_WEIGHTS = (
    "l2_weight",
    "ssim_weight",
    "kl_weight",
    "privileged_kl_weight",
    "lpips_weight",
    "hf_weight",
    "mask_weight",
    "scale_reg_weight",
    "opacity_reg_weight",
    "depth_spread_weight",
)
"""The loss weights of `ReconstructorModelConfig`: each 0 (off) or more."""


@dataclass
class ReconstructorModelConfig(SceneModelConfig):
    _target: Type = field(default_factory=lambda: ReconstructorModel)
    network: Union[VARNetConfig, RegressionNetConfig] = field(default_factory=VARNetConfig)
    image_size: int = 128
    """Side of the square input images this model is built for; the data must match."""
    l2_weight: float = 0.8
    ssim_weight: float = 0.2
    kl_weight: float = 1e-5
    privileged_kl_weight: float = 0.0
    """A VAR with a privileged view and global-code noise (`--pipeline.model.network.global-code-noise` s > 0): weight
    of the nats the privileged view adds to the global code, |shift|^2 / (2 s^2) (`losses.privileged_code_kl`; a
    conditional VAE's KL with the input-only posterior as its prior). Without it the code carries whatever the view
    shows, partly unknowable from the input, so a denoiser cannot place a shape's code and its samples fall between
    shapes (README, "Where the codes lie"); with it only what pays for its nats stays. 0 = off (the paper's)."""
    code_prior_run: Optional[Path] = None
    """A splatdiff-diffusion run over this VAR trained with `--pipeline.model.code-prior True`: in training, a share
    (`code_prior_share`) of the scenes have their global code redrawn from the prior's component that explains it, so
    the decoder learns to draw each hidden side from the codes the sampler gives it (models/code_prior_source.py).
    Needs a VAR with a privileged view, a global code and `--pipeline.model.network.frozen-encoder True` (the latents
    the prior learned must not move). Loaded when training starts; inference never reads it."""
    code_prior_share: float = 0.5
    """With `code_prior_run`: the share of training scenes whose global code is redrawn (the rest keep their own)."""
    code_prior_temperature: Optional[float] = None
    """With `code_prior_run`: the redraw's temperature (std times it); None = the prior's own. 0 redraws each code as
    the mean of the component that explains it: the few codes per input that sampling the prior at temperature 0
    gives, so the decoder learns each of them as one hidden side instead of a cloud of codes around it."""
    lpips_weight: float = 0.01
    """LPIPS weight from `lpips_start_step` on (the paper's second phase); 0 trains without LPIPS."""
    lpips_start_step: int = 100_000
    lpips_net: losses.LpipsNet = "vgg"
    hf_weight: float = 0.0
    """Weight of the high-frequency loss (L1 between the Laplacians of render and image, `losses.high_frequency_loss`):
    sharpness without LPIPS's downloaded weights. 0 trains without it."""
    mask_weight: float = 0.0
    """Weight of an L1 loss between the rendered opacity and the object masks in every view (data with masks). On a
    plain background nothing else stops transparent, background-coloured haze, which is free photometrically but
    costs the rasteriser (every pair counts) and blurs silhouettes."""
    scale_reg_weight: float = 0.1
    max_scale: float = 0.1
    """Gaussian scales above this (in the normalised world) are penalised."""
    opacity_reg_weight: float = 0.0
    """Weight of the mean Gaussian opacity (an L1 prior, as 3DGS-MCMC's opacity term): Gaussians that the images do
    not need fade out, and below alpha 1/255 they cost the rasteriser no pairs (benchmarks/fewer_pairs.py)."""
    depth_spread_weight: float = 0.0
    """Weight of `losses.depth_spread_loss` in every training view: surfaces instead of thick semi-transparent clouds
    (no 3D truth; each view is rendered once more, so a step costs about half as much again). 0 trains without it."""
    ema_decay: float = 0.9999
    """EMA of the weights for evaluation and the viewer; 0 disables it."""
    bf16: bool = True
    """bf16 autocast for the network on CUDA (rendering stays float32)."""
    compile_network: bool = False
    """torch.compile the trained network when training on CUDA (in place: its weights and checkpoints are unchanged).
    Opt-in: the first steps pay the compilation and its gain is not yet measured on a GPU; ignored on CPU."""
    background_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    eval_skip_weight: float = 1.0
    """Skip-connection weight used in evaluation and as the viewer's default."""
    enable_collider: bool = False

    def __post_init__(self) -> None:
        check_shared_model_options(self)
        for name in LOSS_WEIGHTS:
            value = getattr(self, name)
            check_option(
                is_number_in(value, 0),
                f"--pipeline.model.{name.replace('_', '-')}",
                value,
                "a loss weight of 0 (off) or more",
            )
        check_option(
            self.privileged_kl_weight == 0 or self.privileged_code_std is not None,
            "--pipeline.model.privileged-kl-weight",
            self.privileged_kl_weight,
            "0, or a weight with a VAR's --pipeline.model.network.privileged-view True and its "
            "--pipeline.model.network.global-code-noise above 0 (the std its nats are counted against)",
        )
        check_option(
            self.code_prior_run is None or self.reads_code_prior,
            "--pipeline.model.code-prior-run",
            self.code_prior_run,
            "a diffusion run's config.yml, for a VAR with --pipeline.model.network.privileged-view True, "
            "--pipeline.model.network.global-code True and --pipeline.model.network.frozen-encoder True",
        )
        check_option(
            is_number_in(self.code_prior_share, 0, 1),
            "--pipeline.model.code-prior-share",
            self.code_prior_share,
            "a share in [0, 1]",
        )
        check_option(
            self.code_prior_temperature is None or is_number_in(self.code_prior_temperature, 0, 10),
            "--pipeline.model.code-prior-temperature",
            self.code_prior_temperature,
            "a temperature in [0, 10] (or None: the prior's own)",
        )
        check_option(
            is_number_in(self.lpips_start_step, 0),
            "--pipeline.model.lpips-start-step",
            self.lpips_start_step,
            "a step of 0 or more",
        )
        check_option(
            is_number_in(self.max_scale, 1e-9), "--pipeline.model.max-scale", self.max_scale, "a positive scale"
        )
        check_option(
            is_number_in(self.eval_skip_weight, 0, 1),
            "--pipeline.model.eval-skip-weight",
            self.eval_skip_weight,
            "a weight in [0, 1]",
        )

    @property
    def run_kind(self) -> RunKind:
        """'var' for a VAR network, 'regression' for the regression baseline."""
        return "var" if isinstance(self.network, VARNetConfig) else "regression"

    @property
    def reads_code_prior(self) -> bool:
        """Whether this network can train its decoder on a code prior's draws (`code_prior_run`): a VAR with a
        privileged view and a global code whose encoder is frozen."""
        n = self.network
        return self.run_kind == "var" and n.privileged_view and n.global_code and n.frozen_encoder  # type: ignore

    @property
    def privileged_code_std(self) -> Optional[float]:
        """The std the privileged KL counts nats against (`VARNetConfig.privileged_code_std`); None for a network
        that has none (the regression baseline, a VAR without a privileged view or global-code noise)."""
        return self.network.privileged_code_std if self.run_kind == "var" else None  # type: ignore[union-attr]


class ReconstructorModel(SceneModel):
    config: ReconstructorModelConfig

    def populate_modules(self) -> None:  # the base version adds a ray collider, which a splat model has no use for
        self.net = self.config.network.setup()
        self.is_var = self.config.run_kind == "var"
        self._code_prior: Optional[FrozenCodePrior] = None  # not a Module: never in a checkpoint
        self.setup_trained_network(self.config.trained_module, self.config.ema_decay)
        self.lpips = losses.maybe_lpips(self.config.lpips_net, required=self.config.lpips_weight > 0)
        self.setup_viewer_scenes()
        self.viewer_skip = ViewerSlider(
            "Skip weight",
            self.config.eval_skip_weight,
            0.0,
            1.0,
            0.05,
            cb_hook=lambda _: self._viewer_cache.clear(),
            disabled=not self.is_var,
        )

    # -- nerfstudio plumbing ----------------------------------------------------------------------------------
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        """The network's trainable parameters (a VAR with `frozen_encoder` leaves its encoder side out)."""
        return {"network": [p for p in self.net.parameters() if p.requires_grad]}

    def eval_net(self) -> torch.nn.Module:
        return self.averaged()

    # -- reconstruction -----------------------------------------------------------------------------------------
    def reconstruct(self, batch: Dict[str, Tensor], net: Optional[torch.nn.Module] = None, **kwargs) -> dict:
        """Gaussians from each scene's source view (view 0), in the source camera's frame."""
        images = batch["images"]
        self.check_image_size(images)
        self.compile_on_cuda(images.device)
        net = net or self.net
        if net.training and self.is_var and net.has_privileged_branch:
            kwargs.setdefault("privileged", privileged_inputs(batch))
            if self.config.code_prior_run is not None:
                kwargs.setdefault("code_redraw", self._prior_code_redraw(images.device))
        with self.autocast(images.device):
            return net(
                images[:, 0].permute(0, 3, 1, 2),
                batch["c2w"][:, 0],
                batch["K"][:, 0],
                batch["depth_near"],
                batch["depth_far"],
                **kwargs,
            )

    def _prior_code_redraw(self, device: torch.device) -> CodeRedraw:
        """What the network calls on each training latent to redraw a share of its global codes from the code prior
        (`code_prior_run`), loaded at the first training step so that inference never needs that run."""
        if self._code_prior is None:
            self._code_prior = load_frozen_code_prior(self.config.code_prior_run).to(device)
        prior, share, tau = self._code_prior, self.config.code_prior_share, self.config.code_prior_temperature
        return lambda input_mean, latent, kept: prior.redraw(input_mean, latent, share, eligible=kept, temperature=tau)

    @torch.no_grad()
    def generate(
        self,
        batch: Dict[str, Tensor],
        num_samples: int = 1,
        guidance_weight: Optional[float] = None,
        skip_weight: Optional[float] = None,
        seed: Optional[int] = None,
        eta: Optional[float] = None,
    ) -> Gaussians:
        """The one reconstruction of a batch of ONE scene, repeated `num_samples` times: Gaussians [N, ...]. (A
        deterministic model: guidance, seed and eta do not apply; the skip weight does for a VAR.)"""
        if batch["images"].shape[0] != 1:
            raise SplatdiffError("generate() takes a batch of one scene.")
        w = self.config.eval_skip_weight if skip_weight is None else skip_weight
        g = self.reconstruct(batch, net=self.eval_net(), skip_weight=w, sample_latent=False)["gaussians"]
        return g.map(lambda t: t.expand(num_samples, *t.shape[1:]))

    def forward(self, cameras: Cameras, batch: Optional[Dict[str, Tensor]] = None) -> Dict[str, Any]:
        """Training / eval-batch pass: reconstruct from view 0, render all views [B, V, H, W, *]."""
        if batch is None:
            raise SplatdiffError("The splatdiff models render from a batch of scenes; call forward(cameras, batch).")
        rec = self.reconstruct(batch)
        out = self.render_views(rec["gaussians"], batch["c2w"], batch["K"], batch["images"].shape[-2])
        return {**rec, **out}

    # -- losses and metrics -------------------------------------------------------------------------------------
    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        c = self.config
        pred = outputs["rgb"].flatten(0, 1)
        gt = batch["images"].flatten(0, 1)
        photo, _ = losses.photometric_loss(pred, gt, c.l2_weight, c.ssim_weight)
        loss_dict = {"photometric": photo}
        if c.hf_weight > 0:
            loss_dict["hf"] = c.hf_weight * losses.high_frequency_loss(pred, gt)
        if c.mask_weight > 0 and "masks" in batch:
            loss_dict["mask"] = c.mask_weight * (outputs["accumulation"] - batch["masks"]).abs().mean()
        if self.is_var and c.kl_weight > 0:
            loss_dict["kl"] = c.kl_weight * losses.kl_divergence(outputs["latent_mean"], outputs["latent_logvar"])
        std = c.privileged_code_std
        if c.privileged_kl_weight > 0 and std is not None:
            loss_dict["privileged_kl"] = c.privileged_kl_weight * losses.privileged_code_kl(
                outputs["privileged_shift"], std
            )
        if self.lpips is not None and c.lpips_weight > 0 and self.step >= c.lpips_start_step:
            loss_dict["lpips"] = c.lpips_weight * self.lpips(pred, gt)
        if c.scale_reg_weight > 0:
            loss_dict["scale_reg"] = c.scale_reg_weight * losses.scale_regulariser(
                outputs["gaussians"].scales, c.max_scale
            )
        if c.opacity_reg_weight > 0:
            loss_dict["opacity_reg"] = c.opacity_reg_weight * losses.opacity_regulariser(outputs["gaussians"].opacities)
        if c.depth_spread_weight > 0:
            w2c = invert_rigid(batch["c2w"].float())
            loss_dict["depth_spread"] = c.depth_spread_weight * losses.depth_spread_loss(
                outputs["gaussians"], w2c, batch["K"].float(), batch["images"].shape[-2]
            )
        return loss_dict

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        return {"psnr": psnr(outputs["rgb"].detach(), batch["images"])}

    @torch.no_grad()
    def evaluate_scene(
        self, batch: Dict[str, Tensor], skip_weight: Optional[float] = None
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Splatter Image's protocol for one scene (a batch of one: view 0 input, views 1.. targets)."""
        w = self.config.eval_skip_weight if skip_weight is None else skip_weight
        rec = self.reconstruct(batch, net=self.eval_net(), skip_weight=w, sample_latent=False)
        out = self.render_views(rec["gaussians"], batch["c2w"], batch["K"], batch["images"].shape[-2])
        pred, gt = out["rgb"][0], batch["images"][0]
        tgt_pred, tgt_gt = pred[1:], gt[1:]
        m = {
            "psnr": image_psnr(tgt_pred, tgt_gt),
            "psnr_pooled": psnr(tgt_pred, tgt_gt),
            "ssim": losses.ssim(tgt_pred, tgt_gt),
            "psnr_input": psnr(pred[:1], gt[:1]),
        }
        if "masks" in batch:
            m.update(object_metrics(tgt_pred, tgt_gt, batch["masks"][0, 1:]))
        if self.lpips is not None:
            m["lpips"] = self.lpips(tgt_pred, tgt_gt)
        if "depths" in batch:
            visible, occluded = visibility_masks(batch["depths"][0], batch["c2w"][0], batch["K"][0])
            m["psnr_visible"] = psnr(tgt_pred, tgt_gt, visible[1:])
            m["psnr_occluded"] = psnr(tgt_pred, tgt_gt, occluded[1:])
            if "masks" in batch:
                obj = batch["masks"][0, 1:] > 0.5
                m["psnr_objects_visible"] = psnr(tgt_pred, tgt_gt, visible[1:] & obj)
                m["psnr_objects_occluded"] = psnr(tgt_pred, tgt_gt, occluded[1:] & obj)
        return {k: float(v) for k, v in m.items()}, {"pred": pred, "gt": gt, "gaussians": rec["gaussians"]}

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        metrics, images = self.evaluate_scene(batch)
        row = torch.cat([torch.cat(list(images["gt"]), 1), torch.cat(list(images["pred"]), 1)], 0)
        return metrics, {"gt_vs_pred": row}

    # -- viewer ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def viewer_gaussians(self) -> Optional[Gaussians]:
        """Reconstruction of the eval scene chosen in the viewer's dropdown at the slider's skip weight."""
        k = float(self.viewer_skip.value)
        return self.cached_viewer_gaussians((k,), lambda batch: self.generate(batch, 1, skip_weight=k))
