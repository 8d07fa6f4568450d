"""Variational AutoReconstructor network: image -> latent Gaussian (1/8 resolution, 4 channels) -> Splatter Image.

Encoder and decoder are diffusers' AutoencoderKL building blocks (Stable-Diffusion-VAE shaped, built from a
config, never downloaded). The decoder's output layer is the splatter head's M x 15 channels. The encoder's
first-layer features reach the decoder's full-resolution block through a skip connection that training zeroes
at random (so the latent must carry the scene) and inference scales by `skip_weight` in [0, 1].

Optional (`privileged_view`, off in the paper's recipe): in training a separate branch sees one view of the hidden
side WITH its pose and corrects the latent mean (models/privileged.py explains why and how), so the latent carries
what the input view cannot show. The encoder is then a conditional-VAE posterior; the input-only encoding gives
the diffusion model's condition, and stage 2 learns to sample complete-scene latents from the input alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Tuple, Type, Union

import torch
from jaxtyping import Float
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import SplatdiffError, check_network_shape, check_option, is_number_in
from nerfstudio_splatdiff.models.code_book import GlobalCodebook
from nerfstudio_splatdiff.models.diffusers_blocks import Decoder, Encoder
from nerfstudio_splatdiff.models.privileged import PrivilegedBranch
from nerfstudio_splatdiff.models.splatter_head import SplatterHead, SplatterHeadConfig
from nerfstudio_splatdiff.splats.gaussians import Gaussians

Privileged = Tuple[Tensor, Tensor, Tensor]
"""A privileged view: image [B, 3, H, W] in [0, 1], camera-to-world [B, 4, 4] relative to the input, K [B, 3, 3]."""

CodeRedraw = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]
"""(input-only posterior mean, sampled latent, which scenes kept their privileged view or None for all) -> the latent
with some scenes' global codes replaced (`FrozenCodePrior.redraw`)."""


@dataclass
class VARNetConfig(InstantiateConfig):
    _target: Type = field(default_factory=lambda: VARNet)
    block_out_channels: Tuple[int, ...] = (128, 256, 512, 512)
    """Widths per level; 4 levels give the 1/8-resolution latent. (128, 256, 512, 512) is SD-VAE's."""
    layers_per_block: int = 2
    norm_num_groups: int = 32
    latent_channels: int = 4
    mid_block_attention: bool = True
    skip_dropout: float = 0.5
    """Probability that a training sample's skip features are zeroed."""
    privileged_view: bool = False
    """A branch that sees a view of the hidden side with its pose informs the latent in training (module docstring)."""
    privileged_drop: float = 0.1
    """With `privileged_view`: probability that a training sample's privileged view is withheld (input-only latent)."""
    privileged_width: int = 32
    """Width of the privileged branch's first layer."""
    privileged_grid: int = 8
    """The branch writes its correction on this grid (resized to the latent's size when they differ)."""
    global_code: bool = False
    """The latent's spatial mean is a global code: the decoder's convolutions see the latent minus its mean, and the
    mean reaches the decoder only through a small MLP that scales and shifts its features (FiLM) after the mid block
    and before the output layer. Pooling averages the posterior noise away (8x at an 8x8 latent) while a scene-wide
    code (what the privileged branch writes) passes whole, and it cannot disturb the input view's reconstruction
    until the decoder has learned to use it. Without it the decoder treated the privileged corrections as noise and
    the branch learned to shrink them (models/privileged.py)."""
    global_code_width: int = 64
    """Hidden width of the global code's MLP."""
    global_code_noise: float = 0.0
    """With `global_code`: std of Gaussian noise added to each channel of the global code of a sampled training latent.
    Pooling leaves the decoder a posterior noise of ~0.01 there, so it never learns what an imprecise code means, while
    a denoiser's samples miss their shape's code by ~2 (shape_diagnostics.py nones). Meant to teach the decoder to
    read a nearby code as that shape; 1.0 for 1,500 steps at lr 3e-5 did not (README). It is also the std that the
    model's `privileged_kl_weight` counts the privileged view's nats against. 0 = none (the paper's)."""
    global_code_entries: int = 0
    """With `privileged_view` and `global_code`: the shift the privileged view adds to the global code is snapped to
    the nearest of this many centroids, learnt by online k-means in training (models/code_book.py), and so is a
    sampled latent's code (`snap_latent`): the decoder only ever sees a few codes per input, each one hidden side, so
    a sample between two shapes' codes is drawn as the nearer shape, not as neither. 0 = a continuous code (the
    paper's)."""
    global_code_snap_share: float = 1.0
    """With `global_code_entries`: the share of training scenes whose privileged shift is snapped (each scene drawn
    at random every step; the others keep their own shift). Below 1 the decoder learns both the centroids and the
    codes between them, and a privileged encoding outside training is left unsnapped (the forced shape it shows is
    drawn as it is), while a sampled latent is still snapped (`snap_latent`). 1 = every shift snapped, in training
    and eval (the codebook's first form)."""
    frozen_encoder: bool = False
    """The encoder and the privileged branch do not train (no gradients, left out of the optimiser); only the decoder
    side does (post-quant conv, decoder, skip projection, global code FiLM). A decoder fine-tune over a VAR that a
    denoiser was already trained on: its latents stay exactly where the denoiser learned them, so the pair stays a
    pair (README, "Where the codes lie"). False trains everything (the paper's)."""
    head: SplatterHeadConfig = field(default_factory=SplatterHeadConfig)
    pretrained_autoencoder: Optional[Path] = None
    """Optional local AutoencoderKL weights (a diffusers folder) to start the encoder/decoder from."""

    @property
    def snaps_codes(self) -> bool:
        """Whether a VAR built from this config snaps its global code's shift to a codebook (`global_code_entries`)."""
        return self.global_code_entries > 0

    def __post_init__(self) -> None:
        flag = "--pipeline.model.network"
        check_network_shape(flag, self.block_out_channels, self.norm_num_groups, self.layers_per_block)
        check_option(
            is_number_in(self.latent_channels, 1), f"{flag}.latent-channels", self.latent_channels, "at least 1"
        )
        check_option(
            is_number_in(self.global_code_noise, 0, 100) and (self.global_code or self.global_code_noise == 0),
            f"{flag}.global-code-noise",
            self.global_code_noise,
            f"a std in [0, 100], with {flag}.global-code True (or 0)",
        )
        check_option(
            self.global_code_entries == 0
            or (is_number_in(self.global_code_entries, 2) and self.privileged_view and self.global_code),
            f"{flag}.global-code-entries",
            self.global_code_entries,
            f"0, or 2 or more with {flag}.privileged-view True and {flag}.global-code True",
        )
        check_option(
            is_number_in(self.global_code_snap_share, 0, 1)
            and self.global_code_snap_share > 0
            and (self.global_code_entries > 0 or self.global_code_snap_share == 1),
            f"{flag}.global-code-snap-share",
            self.global_code_snap_share,
            f"a share in (0, 1], with {flag}.global-code-entries above 0 (or 1)",
        )
        for name in ("skip_dropout", "privileged_drop"):
            value = getattr(self, name)
            check_option(
                is_number_in(value, 0, 1), f"{flag}.{name.replace('_', '-')}", value, "a probability in [0, 1]"
            )
        if self.privileged_view:  # its GroupNorms split 2x, 4x the width into 8 groups
            check_option(
                is_number_in(self.privileged_width, 4) and self.privileged_width % 4 == 0,
                f"{flag}.privileged-width",
                self.privileged_width,
                "a positive multiple of 4",
            )
            check_option(
                is_number_in(self.privileged_grid, 1), f"{flag}.privileged-grid", self.privileged_grid, "at least 1"
            )

    @property
    def privileged_code_std(self) -> Optional[float]:
        """The std that the privileged view's nats are counted against (the global code's training noise,
        `global_code_noise`), or None when this VAR has no privileged view or no such noise."""
        if self.privileged_view and self.global_code_noise > 0:
            return float(self.global_code_noise)
        return None


class FiLM:
    """Per-sample, per-channel scale and shift of feature maps: x * (1 + gamma) + beta."""

    def __init__(self, gamma: Float[Tensor, "B C"], beta: Float[Tensor, "B C"]) -> None:
        self.gamma, self.beta = gamma, beta

    def __call__(self, x: Float[Tensor, "B C H W"]) -> Float[Tensor, "B C H W"]:
        return x * (1 + self.gamma[:, :, None, None].to(x.dtype)) + self.beta[:, :, None, None].to(x.dtype)


class GlobalFiLM(nn.Module):
    """The latent's spatial mean -> one FiLM per decoder width in `widths` (see `VARNetConfig.global_code`).
    The output layer starts at zero: every FiLM starts as the identity."""

    def __init__(self, latent_channels: int, width: int, widths: Tuple[int, ...]) -> None:
        super().__init__()
        self.widths = widths
        self.mlp = nn.Sequential(nn.Linear(latent_channels, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU())
        self.out = nn.Linear(width, 2 * sum(widths))
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, mean: Float[Tensor, "B C 1 1"]) -> list[FiLM]:
        params = self.out(self.mlp(mean.float().flatten(1))).split([2 * w for w in self.widths], dim=1)
        return [FiLM(*p.chunk(2, dim=1)) for p in params]


def code_shift(latent: Float[Tensor, "N C h w"], input_mean: Float[Tensor, "1 C h w"]) -> Float[Tensor, "N C"]:
    """Each latent's global code (spatial mean) less the input-only latent's: the shift a codebook snaps."""
    return latent.mean(dim=(2, 3)) - input_mean.mean(dim=(2, 3))


class VARNet(nn.Module):
    def __init__(self, config: VARNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        levels = len(c.block_out_channels)
        self.head: SplatterHead = c.head.setup()
        self.encoder = Encoder(
            in_channels=3,
            out_channels=c.latent_channels,
            down_block_types=("DownEncoderBlock2D",) * levels,
            block_out_channels=c.block_out_channels,
            layers_per_block=c.layers_per_block,
            norm_num_groups=c.norm_num_groups,
            double_z=True,
            mid_block_add_attention=c.mid_block_attention,
        )
        self.decoder = Decoder(
            in_channels=c.latent_channels,
            out_channels=self.head.out_channels,
            up_block_types=("UpDecoderBlock2D",) * levels,
            block_out_channels=c.block_out_channels,
            layers_per_block=c.layers_per_block,
            norm_num_groups=c.norm_num_groups,
            mid_block_add_attention=c.mid_block_attention,
        )
        self.quant_conv = nn.Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(c.latent_channels, c.latent_channels, 1)
        # Skip: encoder conv_in features (width C0) -> input of the decoder's last, full-resolution block (C1).
        self.skip_proj = nn.Conv2d(c.block_out_channels[0], c.block_out_channels[min(1, levels - 1)], 1)
        self.downsample = 2 ** (levels - 1)
        self.privileged: Optional[PrivilegedBranch] = None
        if c.privileged_view:
            self.privileged = PrivilegedBranch(
                c.latent_channels, c.privileged_width, c.privileged_grid, self.downsample
            )
        self.global_film: Optional[GlobalFiLM] = None
        if c.global_code:  # registered last: checkpoints from before it keep their parameter order
            widths = (c.block_out_channels[-1], c.block_out_channels[0])
            self.global_film = GlobalFiLM(c.latent_channels, c.global_code_width, widths)
        self.codebook: Optional[GlobalCodebook] = None
        if c.global_code_entries > 0:  # registered after the FiLM: older checkpoints keep their order
            self.codebook = GlobalCodebook(c.global_code_entries, c.latent_channels)
        if c.pretrained_autoencoder is not None:
            self.load_autoencoder(c.pretrained_autoencoder)
        self.head.init_output_layer(self.decoder.conv_out)
        if c.frozen_encoder:
            for module in self.encoder_side():
                module.requires_grad_(False)

    def encoder_side(self) -> list[nn.Module]:
        """The modules that make the latent (what `frozen_encoder` keeps fixed): encoder, its output conv, and the
        privileged branch when there is one."""
        return [self.encoder, self.quant_conv] + ([self.privileged] if self.privileged is not None else [])

    def load_autoencoder(self, path: Path) -> None:
        """Start from local AutoencoderKL weights (everything but the decoder's output layer, whose width differs)."""
        from diffusers import AutoencoderKL

        if not Path(path).exists():
            raise SplatdiffError(
                f"No AutoencoderKL weights at {path}; pass a local diffusers folder or drop the option."
            )
        vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True)
        own = self.state_dict()
        theirs = {k: v for k, v in vae.state_dict().items() if k in own and own[k].shape == v.shape}
        self.load_state_dict(theirs, strict=False)

    @property
    def has_privileged_branch(self) -> bool:
        """Whether this VAR's latent can be informed by a privileged view of the hidden side."""
        return self.privileged is not None

    def latent_size(self, image_size: int) -> int:
        """Side of the latent this VAR encodes a square image of side `image_size` into."""
        return image_size // self.downsample

    @property
    def has_global_code(self) -> bool:
        """Whether the decoder reads the latent's spatial mean as a global code (`VARNetConfig.global_code`)."""
        return self.global_film is not None

    def encode(
        self, images: Float[Tensor, "B 3 H W"], privileged: Optional[Privileged] = None, keep: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """(mean, logvar) of the latent [B, 4, H/8, W/8] and the skip features [B, C0, H, W]; images in [0, 1].
        `privileged` (image, c2w relative to the input, K; a `privileged_view` VAR only; None = input only) corrects
        the latent mean, for the samples where `keep` [B] is true, and never reaches the skip features."""
        mean, correction, logvar, skip = self.encode_parts(images, privileged, keep)
        return mean + correction, logvar, skip

    def encode_parts(
        self, images: Float[Tensor, "B 3 H W"], privileged: Optional[Privileged] = None, keep: Optional[Tensor] = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """`encode` before its sum: the input-only mean, the privileged branch's correction of it (zeros without a
        privileged view, and where `keep` is false), the logvar and the skip features."""
        H, W = images.shape[-2:]
        if H % self.downsample or W % self.downsample:
            raise SplatdiffError(f"Image size {H}x{W} must be a multiple of {self.downsample} for this VAR.")
        enc = self.encoder
        skip = enc.conv_in(images * 2 - 1)
        x = skip
        for block in enc.down_blocks:
            x = block(x)
        x = enc.mid_block(x)
        x = enc.conv_out(enc.conv_act(enc.conv_norm_out(x)))
        mean, logvar = self.quant_conv(x).chunk(2, dim=1)
        correction = torch.zeros_like(mean)
        if privileged is not None:
            if self.privileged is None:
                raise SplatdiffError("This VAR was built without `privileged_view`; encode the input image alone.")
            delta = self.privileged(*privileged, latent_hw=tuple(mean.shape[-2:]))
            if self.codebook is not None:
                delta = self._snapped_shift(delta, keep)
            if keep is not None:
                delta = delta * keep.to(delta.dtype)[:, None, None, None]
            correction = delta.to(mean.dtype)
        return mean, correction, logvar.clamp(-30.0, 20.0), skip

    def _snapped_shift(self, delta: Float[Tensor, "B C h w"], keep: Optional[Tensor]) -> Float[Tensor, "B C h w"]:
        """The privileged correction with its spatial mean (the global code's shift) snapped to the codebook, after a
        training step of its online k-means on the shifts of the scenes that kept their view (straight-through: a
        gradient reaches the shift as if unsnapped). With `global_code_snap_share` below 1 only that share of the
        training scenes is snapped, and nothing outside training."""
        shift = delta.mean(dim=(2, 3))
        share = self.config.global_code_snap_share
        if self.training:
            self.codebook.update(shift if keep is None else shift[keep])
        elif share < 1:  # a privileged encoding is drawn as it is; only sampled latents are snapped
            return delta
        snapped = self.codebook.snap(shift)
        if self.training and share < 1:  # these scenes keep their own shift this step
            own = torch.rand(shift.shape[0], device=shift.device) >= share
            snapped = torch.where(own[:, None], shift, snapped)
        return delta + (snapped - shift).detach()[:, :, None, None]

    @property
    def snaps_codes(self) -> bool:
        """Whether this VAR snaps the global code's shift to a codebook (`VARNetConfig.global_code_entries`): a
        latent sampled for it must be snapped too (`snap_latent`)."""
        return self.codebook is not None

    def _codebook(self) -> GlobalCodebook:
        """The codebook that snap_latent and code_ambiguity need; one clear line when this VAR has none."""
        if self.codebook is None:
            raise SplatdiffError(
                "This VAR has no codebook for its global code: use a VAR trained with "
                "--pipeline.model.network.global-code-entries K, or sample without a codebook pull."
            )
        return self.codebook

    def snap_latent(
        self, latent: Float[Tensor, "N C h w"], input_mean: Float[Tensor, "1 C h w"], pull: float = 1.0
    ) -> Float[Tensor, "N C h w"]:
        """Sampled latents with their global code's shift from the input-only latent `input_mean` (the posterior
        mean of the input alone) snapped to the nearest centroid: the codes this VAR's decoder was trained on.
        `pull` below 1 moves the shift only that share of the way (0 leaves the latents as they are)."""
        codebook = self._codebook()
        if not 0.0 <= pull <= 1.0:
            raise SplatdiffError(f"The codebook pull must be in [0, 1] (1 = onto the nearest centroid), got {pull}.")
        shift = code_shift(latent, input_mean)
        return latent + pull * (codebook.snap(shift) - shift)[:, :, None, None]

    def code_ambiguity(
        self, latent: Float[Tensor, "N C h w"], input_mean: Float[Tensor, "1 C h w"]
    ) -> Float[Tensor, " N"]:
        """How undecided each latent's global-code shift (as in `snap_latent`) is between its two nearest centroids
        (`GlobalCodebook.ambiguity`: 0 = on a centroid, 1 = half way between two)."""
        return self._codebook().ambiguity(code_shift(latent, input_mean))

    def decode_raw(
        self, latent: Tensor, skip: Optional[Tensor], skip_weight: Union[float, Tensor] = 1.0
    ) -> Float[Tensor, "B C H W"]:
        """Latent (+ weighted skip features) -> raw splatter channels [B, M*15, H, W]."""
        dec = self.decoder
        film = None
        if self.global_film is not None:  # the spatial mean goes to the global code only (VARNetConfig.global_code)
            mean = latent.mean(dim=(2, 3), keepdim=True)
            film, latent = self.global_film(mean), latent - mean
        x = dec.conv_in(self.post_quant_conv(latent))
        x = dec.mid_block(x, None)
        if film is not None:
            x = film[0](x)
        for i, block in enumerate(dec.up_blocks):
            if i == len(dec.up_blocks) - 1 and skip is not None:
                w = torch.as_tensor(skip_weight, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
                x = x + w * self.skip_proj(skip)
            x = block(x, None)
        x = dec.conv_norm_out(x)
        if film is not None:
            x = film[1](x)
        return dec.conv_out(dec.conv_act(x))

    def decode(
        self,
        latent: Tensor,
        skip: Optional[Tensor],
        skip_weight: Union[float, Tensor],
        c2w: Float[Tensor, "B 4 4"],
        K: Float[Tensor, "B 3 3"],
        depth_near: Float[Tensor, " B"],
        depth_far: Float[Tensor, " B"],
    ) -> Gaussians:
        """Latent (+ skip features scaled by `skip_weight`) -> Gaussians [B, ...] seen from the input camera `c2w`, `K`
        between `depth_near` and `depth_far`. The decoder runs under the caller's autocast; the splatter head (the
        geometry) always in float32. The end of `forward`, and how the diffusion model turns its samples into scenes."""
        raw = self.decode_raw(latent, skip, skip_weight)
        with torch.autocast(raw.device.type, enabled=False):
            return self.head(raw.float(), c2w.float(), K.float(), depth_near.float(), depth_far.float())

    def forward(
        self,
        images: Float[Tensor, "B 3 H W"],
        c2w: Float[Tensor, "B 4 4"],
        K: Float[Tensor, "B 3 3"],
        depth_near: Float[Tensor, " B"],
        depth_far: Float[Tensor, " B"],
        skip_weight: Union[float, Tensor] = 1.0,
        sample_latent: Optional[bool] = None,
        latent: Optional[Tensor] = None,
        privileged: Optional[Privileged] = None,
        code_redraw: Optional[CodeRedraw] = None,
    ) -> dict:
        """Reconstruct Gaussians. In training the latent is sampled (reparameterised), skips are dropped at random
        and so is the privileged view; in eval the posterior mean is used unless `sample_latent`. A given `latent`
        (e.g. from the diffusion model) replaces the encoder's. `code_redraw` (training only) changes the sampled
        latent's global code (ReconstructorModelConfig.code_prior_run)."""
        keep = None
        if privileged is not None and self.training and self.config.privileged_drop > 0:
            keep = torch.rand(images.shape[0], device=images.device) >= self.config.privileged_drop
        input_mean, correction, logvar, skip = self.encode_parts(images, privileged, keep)
        mean = input_mean + correction
        if sample_latent is None:
            sample_latent = self.training
        if latent is None:
            latent = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if sample_latent else mean
            if sample_latent and self.training and self.config.global_code_noise > 0:
                noise = torch.randn(*mean.shape[:2], 1, 1, device=mean.device, dtype=mean.dtype)
                latent = latent + self.config.global_code_noise * noise
            if code_redraw is not None and self.training:
                latent = code_redraw(input_mean.detach(), latent.detach(), keep)
        w = torch.as_tensor(skip_weight, dtype=images.dtype, device=images.device).expand(images.shape[0])
        if self.training and self.config.skip_dropout > 0:
            keep = (torch.rand(images.shape[0], device=images.device) >= self.config.skip_dropout).to(images.dtype)
            w = w * keep
        gaussians = self.decode(latent, skip, w, c2w, K, depth_near, depth_far)
        return {
            "gaussians": gaussians,
            "latent_mean": mean,
            "latent_logvar": logvar,
            "privileged_shift": correction.float().mean(dim=(2, 3)),
            "latent": latent,
            "skip_weight": w,
        }
