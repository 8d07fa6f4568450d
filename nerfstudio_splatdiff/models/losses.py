"""Training losses of the feed-forward reconstructors: L2 + SSIM, KL, LPIPS (lazily, offline-safe), a high-frequency
term that needs no downloaded weights, scale and opacity priors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from pytorch_msssim import ssim as _ssim
from torch import Tensor, nn

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats import Gaussians
from nerfstudio_splatdiff.splats.render import render_gaussians

LpipsNet = Literal["vgg", "alex"]
LPIPS_BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
"""The ImageNet weights lpips builds its backbone from, by the file name torchvision caches them under (the URLs of
VGG16_Weights.IMAGENET1K_V1 and AlexNet_Weights.IMAGENET1K_V1): named here because importing torchvision to ask
imports torch's compiler too (seconds), and every model looks for the file when it is built."""


def ssim(pred: Float[Tensor, "N H W 3"], gt: Float[Tensor, "N H W 3"]) -> Tensor:
    """Mean SSIM (11x11 Gaussian window, as in 3DGS / Splatter Image) of images in [0, 1]."""
    return _ssim(pred.permute(0, 3, 1, 2), gt.permute(0, 3, 1, 2), data_range=1.0, size_average=True)


def photometric_loss(
    pred: Float[Tensor, "N H W 3"], gt: Float[Tensor, "N H W 3"], l2_weight: float = 0.8, ssim_weight: float = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """l2_weight * MSE + ssim_weight * (1 - SSIM). Returns the loss and its parts."""
    mse = F.mse_loss(pred, gt)
    s = ssim(pred, gt)
    return l2_weight * mse + ssim_weight * (1 - s), {"mse": mse.detach(), "ssim": s.detach()}


LAPLACIAN_KERNEL = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))
"""The 3x3 discrete Laplacian: the second difference across and down, zero on any constant or linear ramp."""


def laplacian(img: Float[Tensor, "N H W C"], padding_mode: str = "replicate") -> Float[Tensor, "N H W C"]:
    """The discrete Laplacian of every channel (a high-pass filter: what blur removes). `replicate` padding keeps a
    flat border flat; `zeros` (the proving ground's HF-energy measure) treats the outside as black."""
    C = img.shape[-1]
    k = torch.tensor(LAPLACIAN_KERNEL, dtype=img.dtype, device=img.device)[None, None].repeat(C, 1, 1, 1)
    x = img.permute(0, 3, 1, 2)
    x = F.pad(x, (1, 1, 1, 1), mode="constant" if padding_mode == "zeros" else padding_mode)
    return F.conv2d(x, k, groups=C).permute(0, 2, 3, 1)


def high_frequency_loss(pred: Float[Tensor, "N H W 3"], gt: Float[Tensor, "N H W 3"]) -> Tensor:
    """Mean |Laplacian(pred) - Laplacian(gt)|: an L1 loss on the images' high frequencies (edges, texture, thin
    parts), which L2 under-weights (a blurred edge costs little squared error) and which LPIPS supplies only when its
    downloaded VGG weights are there. Blind to brightness offsets and smooth shading: it adds, never replaces, L2."""
    return (laplacian(pred) - laplacian(gt)).abs().mean()


def global_code_error(eps_pred: Float[Tensor, "B C h w"], eps: Float[Tensor, "B C h w"]) -> Tensor:
    """MSE of the error's spatial mean: how wrongly a denoiser predicts the noise on a latent's global code (the
    VAR's spatial mean, which carries the hidden side). The plain epsilon-MSE holds it once already, as C of its
    C x h x w numbers: that MSE is this plus the mean square of the error minus its spatial mean."""
    return F.mse_loss(eps_pred.mean(dim=(2, 3)), eps.mean(dim=(2, 3)))


def privileged_code_kl(shift: Float[Tensor, "B C"], code_std: float) -> Tensor:
    """KL(N(shift, s^2 I) || N(0, s^2 I)) = |shift|^2 / (2 s^2), in nats per scene (summed over channels, averaged
    over the batch): what a VAR's privileged view moves its global code by, measured against the global code's
    training noise of std s. The input-only posterior is the prior here, so only what the input cannot tell costs."""
    return (shift.float() ** 2).sum(dim=1).mean() / (2.0 * code_std**2)


def kl_divergence(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)), averaged over all latent elements (so its weight is size-free)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def scale_regulariser(scales: Tensor, max_scale: float) -> Tensor:
    """Penalise Gaussians larger than `max_scale` (in log space), which otherwise smear over the whole image."""
    return F.relu(torch.log(scales) - torch.log(torch.tensor(max_scale, device=scales.device))).mean()


def opacity_regulariser(opacities: Tensor) -> Tensor:
    """Mean opacity (an L1 prior on opacities, which lie in [0, 1]): pushes Gaussians the images do not need to 0."""
    return opacities.mean()


def lpips_backbone_file(net: LpipsNet) -> Path:
    """Where torchvision looks for the LPIPS backbone's ImageNet weights (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]


def lpips_available(net: LpipsNet = "vgg") -> bool:
    return lpips_backbone_file(net).is_file()


class LPIPS(nn.Module):
    """LPIPS distance for images in [0, 1], built only when its backbone weights are on disk (no downloads)."""

    def __init__(self, net: LpipsNet = "vgg", random_backbone_for_tests: bool = False) -> None:
        super().__init__()
        path = lpips_backbone_file(net)
        if not random_backbone_for_tests and not path.is_file():
            raise SplatdiffError(
                f"LPIPS needs the {net} ImageNet weights at {path}: copy {path.name} there (it is what torchvision "
                "downloads), or train without LPIPS by setting --pipeline.model.lpips-weight 0."
            )
        import lpips

        self.net = lpips.LPIPS(net=net, pnet_rand=random_backbone_for_tests, verbose=False)
        self.net.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> "LPIPS":
        return super().train(False)  # always in eval mode (dropout off)

    def forward(self, pred: Float[Tensor, "N H W 3"], gt: Float[Tensor, "N H W 3"]) -> Tensor:
        return self.net(pred.permute(0, 3, 1, 2) * 2 - 1, gt.permute(0, 3, 1, 2) * 2 - 1).mean()


def maybe_lpips(net: LpipsNet, required: bool) -> Optional[LPIPS]:
    """An LPIPS module if its weights exist; if `required` and they do not, the clear error above."""
    if lpips_available(net) or required:
        return LPIPS(net)
    return None


def depth_spread_loss(
    gaussians: Gaussians, viewmats: Float[Tensor, "B V 4 4"], Ks: Float[Tensor, "B V 3 3"], size: int
) -> Tensor:
    """Mean over the pixels of every view of sum_i w_i (z_i - E[z])^2: how far the depths of the Gaussians a pixel
    sees spread around their blended depth (the distortion idea of Mip-NeRF 360, in the form 2DGS uses). It is 0
    where each ray meets one thin opaque surface and large for the thick, semi-transparent clouds a part drawn without
    commitment becomes (on the geometry ground it thinned them 3x but drew no more horns: README, Results). It
    uses no 3D truth, only the model's own Gaussians and the training cameras (OpenCV world-to-camera
    `viewmats`): each view is rendered once more with every Gaussian's colour replaced by (z, z^2, 0), its depth in
    that view, over a black background."""
    B, V = viewmats.shape[:2]
    per_view = gaussians.map(lambda t: t.repeat_interleave(V, 0))  # [B*V, N, ...]: one copy per view
    w2c = viewmats.reshape(B * V, 4, 4)
    z = (per_view.means @ w2c[:, :3, :3].transpose(-1, -2) + w2c[:, None, :3, 3])[..., 2]
    per_view = replace(per_view, colors=torch.stack([z, z * z, torch.zeros_like(z)], -1))
    black = torch.zeros(3, dtype=z.dtype, device=z.device)
    out = render_gaussians(per_view, w2c[:, None], Ks.reshape(B * V, 1, 3, 3), size, size, background=black)
    first, second, alpha = out.rgb[..., 0], out.rgb[..., 1], out.alpha[..., 0]
    return (second - first * first / alpha.clamp(min=1e-6)).clamp(min=0).mean()
