"""nerfstudio Model `splatdiff-diffusion`: latent diffusion over the latents of a frozen VAR.

Training: the frozen VAR encodes the source view; the target is a latent SAMPLED from its posterior (for a
VAR with a privileged view, the posterior that also saw a view of the hidden side), the condition is the input-only
posterior mean (both scaled to unit variance; for a VAR with a global code, its spatial mean and the rest are scaled
apart, see `to_diffusion`); the condition is zeroed with probability `cond_drop_prob`
(classifier-free guidance) and, in the optional fine-tune phase, a random part of it is masked. Loss: epsilon-MSE.
Inference: N latents per input in one batched denoiser call per step, decoded by the VAR's reconstructor with the
input's skip features (scaled by `skip_weight`) into N complete Gaussian scenes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type, Union

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.viewer.viewer_elements import ViewerButton, ViewerSlider
from torch import Tensor
from torch.nn import Parameter

from nerfstudio_splatdiff.errors import SplatdiffError, check_option, is_number_in
from nerfstudio_splatdiff.models import losses
from nerfstudio_splatdiff.models.code_prior import GlobalCodePrior, GlobalCodePriorConfig
from nerfstudio_splatdiff.models.denoiser_net import DenoiserNetConfig
from nerfstudio_splatdiff.models.metrics import image_psnr, object_metrics, psnr, visibility_masks
from nerfstudio_splatdiff.models.privileged import privileged_inputs
from nerfstudio_splatdiff.models.sampling import (
    MAX_GUIDANCE,
    NoiseSchedule,
    SchedulerKind,
    check_sampling_args,
    sample_latents,
)
from nerfstudio_splatdiff.models.scene_model import (
    RunKind,
    SceneModel,
    SceneModelConfig,
    check_shared_model_options,
)
from nerfstudio_splatdiff.models.var_checkpoint import load_frozen_var
from nerfstudio_splatdiff.splats import Gaussians

MAX_CODE_OVERSAMPLE = 8
"""The most latents drawn per sample kept (`DiffusionModelConfig.code_oversample`): denoiser time grows with it."""


def scale_latent(
    z: Float[Tensor, "B C h w"], scale: Union[float, Tensor], scale_global: Union[float, Tensor]
) -> Float[Tensor, "B C h w"]:
    """Scales a latent's spatial mean by `scale_global` and the rest by `scale`; the inverse is the same call with
    the reciprocal scales (the result's spatial mean is the scaled mean)."""
    m = z.mean(dim=(2, 3), keepdim=True)
    return m * scale_global + (z - m) * scale


@dataclass
class DiffusionModelConfig(SceneModelConfig):
    _target: Type = field(default_factory=lambda: DiffusionModel)
    var_checkpoint: Optional[Path] = None
    """The frozen VAR: a splatdiff-var run's config.yml, its nerfstudio_models folder, or a .ckpt file."""
    denoiser: DenoiserNetConfig = field(default_factory=DenoiserNetConfig)
    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)
    image_size: int = 128
    cond_drop_prob: float = 0.2
    """Probability of zeroing the condition in training (classifier-free guidance)."""
    input_mask_prob: float = 0.0
    """Fine-tune phase: probability of masking a random half of the condition (the paper uses 0.5)."""
    global_code_scale: float = 1.0
    """Multiplies the global code's scale in the space the denoiser diffuses (not in its condition). Its noise is the
    spatial mean of h x w unit noises, so at 1 (unit variance, like the rest) the global code keeps h x w times each
    latent element's signal-to-noise ratio at every step: it is all but decided in the first, noisiest sampling
    steps and fixed after. 1 / sqrt(h x w) gives it the elements' ratio, so its decision is spread over the schedule
    (the shifted noise schedules of simple diffusion, for the one part that differs between completions)."""
    global_loss_weight: float = 1.0
    """Weight of the error on the noise's spatial mean (the VAR's global code, which carries the hidden side): the
    loss is the epsilon-MSE plus (weight - 1) x `losses.global_code_error`; 1 is the plain epsilon-MSE (the
    paper's). That part is only C of the latent's C x h x w numbers but the hardest to predict (a quarter of the
    shipped geometry denoiser's loss); weighting it 64x for 1,500 steps did not change the samples (README)."""
    code_prior: bool = False
    """Train a prior over the VAR's global code alone beside the denoiser (a mixture density network conditioned on the
    input, models/code_prior.py), on the same latents and its own loss, and at sampling draw each sample's global code
    from it while the denoiser draws the rest of the latent. Needs a VAR with a global code. On the geometry proving
    ground the denoiser's codes fall between the input's shape codes (README)."""
    code_prior_components: int = 6
    """With `code_prior`: its mixture components (`GlobalCodePriorConfig.components`)."""
    code_prior_width: int = 256
    """With `code_prior`: the hidden width of its MLP."""
    code_prior_depth: int = 2
    """With `code_prior`: the hidden layers of its MLP."""
    code_prior_temperature: float = 1.0
    """With `code_prior`: each component's std is multiplied by this at sampling (0 = the drawn component's mean)."""
    sample_code_from_prior: bool = True
    """With `code_prior`: draw the samples' global codes from it (False keeps the denoiser's own: the ablation of the
    same run)."""
    ema_decay: float = 0.9999
    bf16: bool = True
    compile_network: bool = False
    """torch.compile the trained network when training on CUDA (in place: its weights and checkpoints are unchanged).
    Opt-in: the first steps pay the compilation and its gain is not yet measured on a GPU; ignored on CPU."""
    background_color: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    scheduler: SchedulerKind = "ddim"
    num_steps: int = 50
    eta: float = 0.0
    """DDIM's eta: 0 follows the deterministic DDIM path, 1 adds fresh noise at every step (DDPM-like ancestral
    sampling, which corrects an imperfect denoiser's drift instead of following it)."""
    guidance_weight: float = 0.0
    """(1 + w) eps(x, c) - w eps(x, 0); 0 = no guidance."""
    noise_temperature: float = 1.0
    """Factor on the sampler's starting noise and (eta > 0) each step's fresh noise: below 1 draws samples nearer
    the learnt distribution's modes (a sampling knob, chosen on val like eta and guidance); 1 = the plain sampler."""
    code_snap_pull: float = 1.0
    """Over a VAR that snaps its codes to a codebook (`VARNetConfig.global_code_entries`): how far a sampled latent's
    global code moves to its nearest centroid (1 = onto it, the codes the decoder was trained on; 0.5 = half way,
    keeping half of what the denoiser drew for this input). A sampling knob chosen on val; no effect without one."""
    code_oversample: int = 1
    """Over a VAR that snaps its codes to a codebook: draw this many times the asked number of latents and keep those
    whose global code is least undecided between two centroids (`VARNet.code_ambiguity`; codes half way between two
    shapes are drawn as neither). 1 = every latent drawn is kept. A sampling knob chosen on val (it costs that factor
    in denoiser time); no effect without a codebook."""
    skip_weight: float = 1.0
    eval_num_samples: int = 20
    """N for the best-of-N oracle metrics in ns-eval."""
    seed: int = 0
    enable_collider: bool = False

    def __post_init__(self) -> None:
        """Sampling options are refused when the flags are parsed, not by splatdiff-sample after training."""
        check_shared_model_options(self)
        self.code_prior_config()  # its options are refused here too
        flag = "--pipeline.model"
        steps = self.schedule.num_train_timesteps
        check_option(
            is_number_in(self.num_steps, 1, steps),
            f"{flag}.num-steps",
            self.num_steps,
            f"a number of sampling steps from 1 to {steps} (the training schedule's)",
        )
        check_option(
            is_number_in(self.guidance_weight, 0, MAX_GUIDANCE),
            f"{flag}.guidance-weight",
            self.guidance_weight,
            f"a weight in [0, {MAX_GUIDANCE:g}] (0 = no guidance)",
        )
        check_option(
            is_number_in(self.eta, 0, 1),
            f"{flag}.eta",
            self.eta,
            "a DDIM eta in [0, 1] (0 = deterministic DDIM, 1 = ancestral)",
        )
        check_option(
            self.eta == 0 or self.scheduler == "ddim",
            f"{flag}.eta",
            self.eta,
            f"0 with --pipeline.model.scheduler {self.scheduler}, or --pipeline.model.scheduler ddim",
        )
        for name in ("skip_weight", "cond_drop_prob", "input_mask_prob", "code_snap_pull"):
            value = getattr(self, name)
            check_option(is_number_in(value, 0, 1), f"{flag}.{name.replace('_', '-')}", value, "a number in [0, 1]")
        check_option(
            is_number_in(self.eval_num_samples, 1), f"{flag}.eval-num-samples", self.eval_num_samples, "at least 1"
        )
        check_option(
            isinstance(self.code_oversample, int) and is_number_in(self.code_oversample, 1, MAX_CODE_OVERSAMPLE),
            f"{flag}.code-oversample",
            self.code_oversample,
            f"a whole factor from 1 to {MAX_CODE_OVERSAMPLE} (1 = keep every latent drawn)",
        )
        check_option(
            is_number_in(self.global_code_scale, 1e-3, 1e3),
            f"{flag}.global-code-scale",
            self.global_code_scale,
            "a factor in [0.001, 1000] (1 = the global code at unit variance like the rest)",
        )
        check_option(
            is_number_in(self.global_loss_weight, 0, 10_000),
            f"{flag}.global-loss-weight",
            self.global_loss_weight,
            "a weight in [0, 10000] (1 = the plain epsilon-MSE)",
        )

    def code_prior_config(self) -> GlobalCodePriorConfig:
        """The code prior's config from this model's flat `code_prior_*` fields (flat, so the config.yml of a run
        from before they existed still loads: every one has a plain default)."""
        return GlobalCodePriorConfig(
            components=self.code_prior_components,
            width=self.code_prior_width,
            depth=self.code_prior_depth,
            temperature=self.code_prior_temperature,
        )

    @property
    def run_kind(self) -> RunKind:
        return "diffusion"

    @property
    def needs_frozen_var(self) -> bool:
        return True

    @property
    def trained_module(self) -> str:
        return "denoiser"


class DiffusionModel(SceneModel):
    config: DiffusionModelConfig

    def populate_modules(self) -> None:
        c = self.config
        if c.var_checkpoint is None:
            raise SplatdiffError(
                "splatdiff-diffusion needs a trained VAR: pass --pipeline.model.var-checkpoint "
                "outputs/<run>/splatdiff-var/<timestamp>/config.yml."
            )
        self.var, var_cfg = load_frozen_var(c.var_checkpoint)
        if var_cfg.image_size != c.image_size:
            raise SplatdiffError(
                f"The VAR was trained on {var_cfg.image_size}x{var_cfg.image_size} images but this "
                f"diffusion preset is for {c.image_size}x{c.image_size}; use the matching preset."
            )
        if var_cfg.network.latent_channels != c.denoiser.latent_channels:
            raise SplatdiffError(
                f"The VAR's latent has {var_cfg.network.latent_channels} channels, the denoiser expects "
                f"{c.denoiser.latent_channels}."
            )
        self.denoiser = c.denoiser.setup()
        self.setup_trained_network(c.trained_module, c.ema_decay)
        self.code_prior: Optional[GlobalCodePrior] = None
        if c.code_prior:
            if not self.var.has_global_code:
                raise SplatdiffError(
                    "--pipeline.model.code-prior True needs a VAR with a global code "
                    "(--pipeline.model.network.global-code True); train without the prior for this VAR."
                )
            side = self.var.latent_size(c.image_size)
            cond_features = c.denoiser.cond_channels * side * side
            self.code_prior = GlobalCodePrior(c.code_prior_config(), c.denoiser.latent_channels, cond_features)
        # 1 / std of the latents (of their spatial means for `latent_scale_global`), set from the first batch
        self.register_buffer("latent_scale", torch.zeros(()))
        self.register_buffer("latent_scale_global", torch.zeros(()))
        self._scales_known = False  # see `_scales_set`
        self.train_scheduler = c.schedule.training_scheduler()
        self.lpips = losses.maybe_lpips("vgg", required=False)
        self.setup_viewer_scenes()
        self.viewer_guidance = ViewerSlider("Guidance weight", c.guidance_weight, 0.0, 5.0, 0.1, cb_hook=self._knob)
        self.viewer_skip = ViewerSlider("Skip weight", c.skip_weight, 0.0, 1.0, 0.05, cb_hook=self._knob)
        self.viewer_eta = ViewerSlider(  # DPM-Solver++ has no eta: there the slider stays at the run's 0
            "DDIM eta",
            c.eta,
            0.0,
            1.0,
            0.05,
            disabled=c.scheduler != "ddim",
            cb_hook=self._knob,
            hint="0: the deterministic DDIM path; 1: fresh noise at every step (DDPM-like)",
        )
        self.viewer_sample = ViewerSlider("Sample index", 0, 0, 7, 1, cb_hook=self._knob)
        self.viewer_resample = ViewerButton("Resample", cb_hook=self._resample)
        self._viewer_seed = c.seed

    def _knob(self, _=None) -> None:
        self._viewer_cache.clear()

    def _resample(self, _=None) -> None:
        self._viewer_seed += 1
        self._viewer_cache.clear()

    def train(self, mode: bool = True):
        super().train(mode)
        self.var.eval()  # frozen: never in training mode
        return self

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {"denoiser": list(self.denoiser.parameters())}
        if self.code_prior is not None:
            groups["code_prior"] = list(self.code_prior.parameters())
        return groups

    def frozen_parts(self) -> Dict[str, str]:
        """The frozen VAR, loaded from `var_checkpoint` (see `SceneModel.frozen_parts`)."""
        return {"var.": str(self.config.var_checkpoint)}

    def eval_denoiser(self) -> torch.nn.Module:
        return self.averaged()

    # -- latents ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_source(self, batch: Dict[str, Tensor], with_privileged: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
        """(posterior mean, logvar, skip features) of each scene's source view, from the frozen VAR; with
        `with_privileged`, the VAR's privileged branch also sees a view of the hidden side (the complete-scene
        latent)."""
        images = batch["images"]
        self.check_image_size(images)
        privileged = privileged_inputs(batch) if with_privileged else None
        with self.autocast(images.device):
            mean, logvar, skip = self.var.encode(images[:, 0].permute(0, 3, 1, 2), privileged)
        return mean.float(), logvar.float(), skip

    def _set_scales(self, mean: Tensor, logvar: Tensor) -> None:
        """Stable Diffusion's trick, from the first batch: bring the latents to unit variance. With the VAR's global
        code (`VARNetConfig.global_code`) the spatial mean (which carries the hidden side) and the rest (the input's
        detail) get a scale each, so neither drowns the other in the denoiser's loss."""
        if self._scales_set():
            return
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        if self.var.has_global_code:
            m = z.mean(dim=(2, 3), keepdim=True)
            self.latent_scale.fill_(1.0 / float((z - m).std().clamp(min=1e-6)))
            self.latent_scale_global.fill_(1.0 / float(m.std().clamp(min=1e-6)))
        else:
            self.latent_scale.fill_(1.0 / float(z.std().clamp(min=1e-6)))
            self.latent_scale_global.fill_(float(self.latent_scale))
        self._scales_known = True

    def _scales_set(self) -> bool:
        """Whether the latent scales have been set (by training, or loaded with a trained run). Read from the device
        once, then remembered: a set scale never returns to 0 except through a state dict, and loading one forgets
        it. (On a GPU every read of a device value waits for all queued work: read every step, three reads stalled
        each diffusion training step.)"""
        if not self._scales_known:
            self._scales_known = float(self.latent_scale) > 0.0
        return self._scales_known

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._scales_known = False  # the loaded scales may be unset: read them again when next needed

    def _scales(self) -> Tuple[Tensor, Tensor]:
        """(residual, spatial-mean) scales; 1 before training has set them."""
        if not self._scales_set():
            one = torch.ones((), device=self.latent_scale.device)
            return one, one
        return self.latent_scale, self.latent_scale_global

    def to_condition(self, z: Tensor) -> Tensor:
        """VAR latent of the input -> the denoiser's condition, in unit-variance space (`scale_latent` with this run's
        scales)."""
        return scale_latent(z, *self._scales())

    def _diffused_scales(self) -> Tuple[Tensor, Tensor]:
        """The scales of the latent the denoiser diffuses: the condition's, the global code's times
        `global_code_scale`."""
        scale, scale_global = self._scales()
        return scale, scale_global * self.config.global_code_scale

    def to_diffusion(self, z: Tensor) -> Tensor:
        """VAR latent -> the space the denoiser diffuses in (unit variance, the global code's times
        `global_code_scale`)."""
        return scale_latent(z, *self._diffused_scales())

    def from_diffusion(self, x: Tensor) -> Tensor:
        """The inverse of `to_diffusion`."""
        return scale_latent(x, *(1.0 / s for s in self._diffused_scales()))

    def forward(self, cameras: Cameras, batch: Optional[Dict[str, Tensor]] = None) -> Dict[str, Tensor]:
        if batch is None:
            raise SplatdiffError("splatdiff-diffusion trains from a batch of scenes; call forward(cameras, batch).")
        mean, logvar, _ = self.encode_source(batch)  # the condition: what the input image alone shows
        if self.var.has_privileged_branch:  # the target: a complete-scene latent (input + a hidden-side view)
            mean_z, logvar_z, _ = self.encode_source(batch, with_privileged=True)
        else:  # the paper: a sample of the input's own posterior
            mean_z, logvar_z = mean, logvar
        self._set_scales(mean_z, logvar_z)
        z0 = self.to_diffusion(mean_z + torch.randn_like(mean_z) * torch.exp(0.5 * logvar_z))
        cond = self.to_condition(mean)
        out: Dict[str, Tensor] = {}
        if self.code_prior is not None:  # the whole condition (no guidance drop), the sampled latent's global code
            out["code_nll"] = self.code_prior.nll(cond, self.input_code(mean), z0.mean(dim=(2, 3)))
        B = z0.shape[0]
        if self.training:
            drop = torch.rand(B, device=z0.device) < self.config.cond_drop_prob
            cond = torch.where(drop[:, None, None, None], torch.zeros_like(cond), cond)
            if self.config.input_mask_prob > 0:
                cond = cond * self._random_half_masks(cond)
        noise = torch.randn_like(z0)
        t = torch.randint(0, self.train_scheduler.config.num_train_timesteps, (B,), device=z0.device)
        noisy = self.train_scheduler.add_noise(z0, noise, t)
        self.compile_on_cuda(z0.device)
        with self.autocast(z0.device):
            eps = self.denoiser(noisy, t, cond)
        return {**out, "eps_pred": eps.float(), "eps": noise}

    @property
    def draws_codes_from_prior(self) -> bool:
        """Whether samples take their global codes from the code prior (`code_prior`, `sample_code_from_prior`)."""
        return self.code_prior is not None and self.config.sample_code_from_prior

    def input_code(self, mean: Tensor) -> Tensor:
        """The global code of the input-only latent in the space the denoiser diffuses: where the code prior's
        components are offsets from."""
        return self.to_diffusion(mean).mean(dim=(2, 3))

    def _random_half_masks(self, cond: Tensor) -> Tensor:
        """Per sample, with probability input_mask_prob, a mask that hides a random half (left/right/top/bottom)."""
        B, _, h, w = cond.shape
        masks = torch.ones(B, 1, h, w, device=cond.device)
        for b in torch.nonzero(torch.rand(B) < self.config.input_mask_prob).flatten().tolist():
            side = int(torch.randint(4, ()))
            if side == 0:
                masks[b, :, :, : w // 2] = 0
            elif side == 1:
                masks[b, :, :, w // 2 :] = 0
            elif side == 2:
                masks[b, :, : h // 2] = 0
            else:
                masks[b, :, h // 2 :] = 0
        return masks

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        loss = {"eps_mse": F.mse_loss(outputs["eps_pred"], outputs["eps"])}
        extra = self.config.global_loss_weight - 1.0
        if extra != 0.0:
            loss["eps_mse_global"] = extra * losses.global_code_error(outputs["eps_pred"], outputs["eps"])
        if "code_nll" in outputs:  # its own parameters: it does not change the denoiser's gradient
            loss["code_nll"] = outputs["code_nll"]
        return loss

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        pred = outputs["eps_pred"].detach()
        metrics = {
            "eps_mse": F.mse_loss(pred, outputs["eps"]),
            "eps_mse_global": losses.global_code_error(pred, outputs["eps"]),
        }
        if "code_nll" in outputs:
            metrics["code_nll"] = outputs["code_nll"].detach()
        return metrics

    # -- sampling ---------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        batch: Dict[str, Tensor],
        num_samples: int,
        guidance_weight: Optional[float] = None,
        skip_weight: Optional[float] = None,
        seed: Optional[int] = None,
        eta: Optional[float] = None,
    ) -> Gaussians:
        """N complete Gaussian scenes for the source view of a batch of ONE scene: Gaussians [N, ...]. Knobs left
        None are the run's."""
        c = self.config
        k = c.skip_weight if skip_weight is None else skip_weight
        z, skip = self.latent_samples(batch, num_samples, guidance_weight, k, seed, eta)
        return self.decode_latents(batch, z, skip, k)

    @torch.no_grad()
    def latent_samples(
        self,
        batch: Dict[str, Tensor],
        num_samples: int,
        guidance_weight: Optional[float] = None,
        skip_weight: Optional[float] = None,
        seed: Optional[int] = None,
        eta: Optional[float] = None,
    ) -> Tuple[Float[Tensor, "N C h w"], Tensor]:
        """The first half of `sample`: N latents in the VAR's own space (not the denoiser's scaled one), and the
        input's skip features to decode them with (`decode_latents`; `skip_weight` is only checked here, with the other
        knobs, before any work). Diagnostics compare these latents with the VAR's own. With the code prior
        (`code_prior`, `sample_code_from_prior`), each latent's spatial mean is a code drawn from the prior. Over a VAR
        that snaps its codes to a codebook, each latent's code is snapped the same way (`VARNet.snap_latent`), after
        keeping the N least undecided of `code_oversample` x N drawn."""
        c = self.config
        w = c.guidance_weight if guidance_weight is None else guidance_weight
        k = c.skip_weight if skip_weight is None else skip_weight
        eta = c.eta if eta is None else eta
        check_sampling_args(num_samples, w, k, c.num_steps, eta, c.scheduler, c.noise_temperature)
        if batch["images"].shape[0] != 1:
            raise SplatdiffError("sample() takes a batch of one scene.")
        mean, _, skip = self.encode_source(batch)
        den = self.eval_denoiser()
        drawn = num_samples * c.code_oversample if self.var.snaps_codes else num_samples

        def call(x, t, cond):
            with self.autocast(x.device):
                return den(x, t, cond).float()

        x = sample_latents(
            call,
            self.to_condition(mean),
            drawn,
            c.schedule,
            c.scheduler,
            c.num_steps,
            w,
            c.seed if seed is None else seed,
            eta,
            c.noise_temperature,
        )[0]
        if self.code_prior is not None and self.draws_codes_from_prior:
            seed = c.seed if seed is None else seed
            cond, anchor, tau = self.to_condition(mean), self.input_code(mean), c.code_prior_temperature
            code = self.code_prior.sample(cond, anchor, drawn, seed=seed + 1, temperature=tau)
            x = x - x.mean(dim=(2, 3), keepdim=True) + code[:, :, None, None]
        z = self.from_diffusion(x)
        if self.var.snaps_codes:  # the codes its decoder was trained on (VARNetConfig.global_code_entries)
            if drawn > num_samples:  # the least undecided, in the order drawn
                keep = self.var.code_ambiguity(z, mean).argsort(stable=True)[:num_samples].sort().values
                z = z[keep]
            z = self.var.snap_latent(z, mean, pull=c.code_snap_pull)
        return z, skip

    @torch.no_grad()
    def decode_latents(
        self, batch: Dict[str, Tensor], z: Float[Tensor, "N C h w"], skip: Tensor, skip_weight: float
    ) -> Gaussians:
        """The second half of `sample`: the frozen VAR decodes N latents of ONE scene into Gaussians [N, ...]."""
        N = z.shape[0]
        rep = lambda key: batch[key][:, 0].expand(N, *batch[key].shape[2:])  # noqa: E731
        with self.autocast(z.device):
            return self.var.decode(
                z,
                skip.expand(N, *skip.shape[1:]),
                skip_weight,
                rep("c2w"),
                rep("K"),
                batch["depth_near"].expand(N),
                batch["depth_far"].expand(N),
            )

    def generate(
        self,
        batch: Dict[str, Tensor],
        num_samples: int = 1,
        guidance_weight: Optional[float] = None,
        skip_weight: Optional[float] = None,
        seed: Optional[int] = None,
        eta: Optional[float] = None,
    ) -> Gaussians:
        """N different complete scenes for a batch of ONE scene (see `sample`)."""
        return self.sample(batch, num_samples, guidance_weight, skip_weight, seed, eta)

    @torch.no_grad()
    def evaluate_scene(
        self, batch: Dict[str, Tensor], num_samples: Optional[int] = None
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """1-sample metrics, best-of-N (per scene, by PSNR over the targets), diversity, and seconds per sample."""
        N = num_samples or self.config.eval_num_samples
        size = batch["images"].shape[-2]
        t0 = time.perf_counter()
        g = self.sample(batch, N)
        seconds = (time.perf_counter() - t0) / N
        batch["c2w"].shape[1]
        preds = []
        for n in range(N):  # render sample by sample to bound memory
            preds.append(self.render_views(g.scene(n), batch["c2w"], batch["K"], size)["rgb"][0])
        preds = torch.stack(preds)  # [N, V, H, W, 3]
        gt = batch["images"][0]
        per_sample = torch.stack([image_psnr(preds[n, 1:], gt[1:]) for n in range(N)])
        best = int(per_sample.argmax())
        m: Dict[str, Tensor] = {
            "psnr": per_sample[0],
            "psnr_pooled": psnr(preds[0, 1:], gt[1:]),
            "ssim": losses.ssim(preds[0, 1:], gt[1:]),
            "psnr_input": psnr(preds[0, :1], gt[:1]),
            "psnr_best": per_sample[best],
            "ssim_best": losses.ssim(preds[best, 1:], gt[1:]),
            "seconds_per_sample": torch.tensor(seconds),
        }
        std = preds[:, 1:].std(dim=0).mean(dim=-1, keepdim=True) if N > 1 else torch.zeros_like(gt[1:, ..., :1])
        m["diversity"] = std.mean()
        if "masks" in batch:
            mk = batch["masks"][0, 1:]
            m.update(object_metrics(preds[0, 1:], gt[1:], mk))
            m["psnr_objects_best"] = object_metrics(preds[best, 1:], gt[1:], mk)["psnr_objects"]
        if self.lpips is not None:
            m["lpips"] = self.lpips(preds[0, 1:], gt[1:])
            m["lpips_best"] = self.lpips(preds[best, 1:], gt[1:])
        if "depths" in batch:
            visible, occluded = visibility_masks(batch["depths"][0], batch["c2w"][0], batch["K"][0])
            for name, region in (("visible", visible[1:]), ("occluded", occluded[1:])):
                m[f"psnr_{name}"] = psnr(preds[0, 1:], gt[1:], region)
                m[f"psnr_{name}_best"] = psnr(preds[best, 1:], gt[1:], region)
                m[f"diversity_{name}"] = (std * region).sum() / region.sum().clamp(min=1)
        metrics = {k: float(v) for k, v in m.items()}
        metrics["num_samples"] = float(N)
        return metrics, {"pred": preds[0], "gt": gt, "samples": preds, "gaussians": g}

    def get_image_metrics_and_images(self, outputs, batch) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        metrics, images = self.evaluate_scene(batch, num_samples=min(4, self.config.eval_num_samples))
        row = torch.cat([torch.cat(list(images["gt"]), 1)] + [torch.cat(list(s), 1) for s in images["samples"]], 0)
        return metrics, {"gt_then_samples": row}

    @torch.no_grad()
    def viewer_gaussians(self) -> Optional[Gaussians]:
        """The sample chosen by the slider, of all the slider's samples drawn in one batched call per knob setting."""
        w, k, seed = float(self.viewer_guidance.value), float(self.viewer_skip.value), self._viewer_seed
        eta = float(self.viewer_eta.value)
        n = int(self.viewer_sample.max) + 1
        g = self.cached_viewer_gaussians((w, k, eta, seed), lambda batch: self.sample(batch, n, w, k, seed, eta))
        return None if g is None else g.scene(min(int(self.viewer_sample.value), g.batch_size - 1))
