"""Loss terms against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models import losses
from nerfstudio_splatdiff.splats import Gaussians


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM written out: 11-tap Gaussian window (sigma 1.5), valid filtering, C1=(0.01)^2, C2=(0.03)^2, per channel."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    g /= g.sum()

    def blur(img):  # separable valid convolution over H then W
        h = np.stack([np.convolve(col, g, mode="valid") for col in img.T]).T
        return np.stack([np.convolve(row, g, mode="valid") for row in h])

    vals = []
    for c in range(a.shape[-1]):
        p, q = a[..., c], b[..., c]
        mp, mq = blur(p), blur(q)
        vp, vq, cov = blur(p * p) - mp**2, blur(q * q) - mq**2, blur(p * q) - mp * mq
        c1, c2 = 0.01**2, 0.03**2
        vals.append(((2 * mp * mq + c1) * (2 * cov + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2))).mean())
    return float(np.mean(vals))


def test_photometric_loss_is_08_l2_plus_02_dssim():
    g = torch.Generator().manual_seed(0)
    gt = torch.rand(2, 24, 20, 3, generator=g, dtype=torch.float64)
    pred = (gt + 0.1 * torch.randn(2, 24, 20, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    loss, parts = losses.photometric_loss(pred, gt)
    mse = float(((pred - gt) ** 2).mean())
    s = np.mean([numpy_ssim(pred[i].numpy(), gt[i].numpy()) for i in range(2)])
    assert math.isclose(float(parts["mse"]), mse, rel_tol=1e-9)
    assert math.isclose(float(parts["ssim"]), s, rel_tol=1e-4)
    assert math.isclose(float(loss), 0.8 * mse + 0.2 * (1 - s), rel_tol=1e-4)


def test_kl_is_zero_for_a_standard_normal_and_matches_the_formula():
    assert float(losses.kl_divergence(torch.zeros(2, 4, 3, 3), torch.zeros(2, 4, 3, 3))) == 0.0
    mean = torch.tensor([1.0, 0.0])
    logvar = torch.tensor([0.0, math.log(2.0)])
    # element 1: 0.5 * (1 + 1 - 1 - 0) = 0.5; element 2: 0.5 * (0 + 2 - 1 - log 2)
    expected = (0.5 + 0.5 * (1 - math.log(2.0))) / 2
    assert math.isclose(float(losses.kl_divergence(mean, logvar)), expected, rel_tol=1e-6)


def test_scale_regulariser_penalises_only_large_scales():
    scales = torch.tensor([[0.05, 0.1, 0.2]])
    assert math.isclose(float(losses.scale_regulariser(scales, 0.1)), math.log(2.0) / 3, rel_tol=1e-6)


def test_opacity_regulariser_is_the_mean_opacity_with_an_even_gradient():
    opacities = torch.tensor([[0.0, 0.5, 1.0, 0.5]], requires_grad=True)
    value = losses.opacity_regulariser(opacities)
    value.backward()
    assert math.isclose(float(value), 0.5, rel_tol=1e-6)
    assert torch.allclose(opacities.grad, torch.full_like(opacities, 0.25))


def numpy_laplacian(img: np.ndarray) -> np.ndarray:
    """The 5-point Laplacian of an [H, W] image written out, the border replicated."""
    p = np.pad(img, 1, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]


def test_laplacian_matches_the_five_point_stencil_and_is_zero_on_ramps():
    g = torch.Generator().manual_seed(1)
    img = torch.rand(2, 9, 7, 3, generator=g, dtype=torch.float64)
    lap = losses.laplacian(img)
    for n in range(2):
        for c in range(3):
            np.testing.assert_allclose(lap[n, ..., c].numpy(), numpy_laplacian(img[n, ..., c].numpy()), atol=1e-12)
    yy, xx = torch.meshgrid(torch.arange(9.0).double(), torch.arange(7.0).double(), indexing="ij")
    ramp = (0.3 + 0.02 * xx - 0.01 * yy)[None, ..., None].repeat(1, 1, 1, 3)
    assert float(losses.laplacian(ramp)[:, 1:-1, 1:-1].abs().max()) < 1e-12  # the inside of a linear ramp is flat


def test_high_frequency_loss_sees_blur_but_not_a_brightness_offset():
    g = torch.Generator().manual_seed(2)
    gt = torch.rand(1, 16, 16, 3, generator=g)
    assert float(losses.high_frequency_loss(gt, gt)) == 0.0
    assert float(losses.high_frequency_loss(gt + 0.2, gt)) < 1e-6  # an offset: L2 pays, this term does not
    blurred = torch.nn.functional.avg_pool2d(gt.permute(0, 3, 1, 2), 3, stride=1, padding=1, count_include_pad=False)
    blurred = blurred.permute(0, 2, 3, 1).requires_grad_(True)
    value = losses.high_frequency_loss(blurred, gt)
    expected = np.mean(
        [
            np.abs(numpy_laplacian(blurred[0, ..., c].detach().numpy()) - numpy_laplacian(gt[0, ..., c].numpy()))
            for c in range(3)
        ]
    )
    assert math.isclose(float(value), float(expected), rel_tol=1e-5) and float(value) > 0.1
    value.backward()
    assert blurred.grad is not None and float(blurred.grad.abs().sum()) > 0


def test_lpips_plumbing_and_missing_weights(monkeypatch, tmp_path):
    net = losses.LPIPS("alex", random_backbone_for_tests=True)  # random backbone: plumbing only, never for numbers
    x = torch.rand(2, 32, 32, 3)
    assert float(net(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert float(net(x, torch.rand(2, 32, 32, 3))) > 0
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(
        SplatdiffError, match=r"LPIPS needs the vgg ImageNet weights at .*vgg16-397923af.pth.*lpips-weight 0"
    ):
        losses.maybe_lpips("vgg", required=True)
    assert losses.maybe_lpips("vgg", required=False) is None


def test_lpips_backbone_files_are_the_ones_torchvision_downloads():
    """The file names are written out (asking torchvision imports torch's compiler): they must stay torchvision's."""
    import torchvision.models as tvm

    urls = {"vgg": tvm.VGG16_Weights.IMAGENET1K_V1.url, "alex": tvm.AlexNet_Weights.IMAGENET1K_V1.url}
    assert {net: url.rsplit("/", 1)[1] for net, url in urls.items()} == losses.LPIPS_BACKBONE_FILES


def test_psnr_is_averaged_per_image_as_splatter_image_reports_it():
    from nerfstudio_splatdiff.models.metrics import image_psnr, psnr

    gt = torch.zeros(2, 4, 4, 3)
    pred = gt.clone()
    pred[0] += 0.1  # MSE 1e-2: 20 dB
    pred[1] += 0.01  # MSE 1e-4: 40 dB
    assert abs(float(image_psnr(pred, gt)) - 30.0) < 1e-4  # the mean of 20 and 40
    assert abs(float(psnr(pred, gt)) - (-10 * math.log10((1e-2 + 1e-4) / 2))) < 1e-4  # pooled: ~23 dB


def _layers(depths: list[float], opacity: float) -> Gaussians:
    """Gaussians so wide that their alpha is ~their opacity over a whole small image: one per depth, on the axis."""
    n = len(depths)
    return Gaussians(
        means=torch.tensor([[[0.0, 0.0, z] for z in depths]], dtype=torch.float64),
        quats=torch.tensor([[[1.0, 0, 0, 0]] * n], dtype=torch.float64),
        scales=torch.full((1, n, 3), 1e3, dtype=torch.float64),
        opacities=torch.full((1, n), opacity, dtype=torch.float64),
        colors=torch.full((1, n, 3), 0.5, dtype=torch.float64),
    )


def test_depth_spread_is_zero_for_one_surface_and_the_weighted_variance_for_two_layers():
    """Front-to-back weights a1 = a and a2 = a (1 - a) at depths 2 and 3: sum_i w_i (z_i - D)^2 with D their
    weighted mean, in every pixel; one layer has no spread. Two cameras (identity and a shifted one) per scene."""
    viewmats = torch.eye(4, dtype=torch.float64).repeat(1, 2, 1, 1)
    viewmats[0, 1, 2, 3] = 0.5  # the second camera half a unit further back: depths 2.5 and 3.5, same spread
    Ks = torch.tensor([[4.0, 0, 4], [0, 4.0, 4], [0, 0, 1]], dtype=torch.float64).repeat(1, 2, 1, 1)
    a = 0.5
    w = torch.tensor([a, a * (1 - a)], dtype=torch.float64)
    z = torch.tensor([2.0, 3.0], dtype=torch.float64)
    expected = float((w * (z - (w * z).sum() / w.sum()) ** 2).sum())
    two = losses.depth_spread_loss(_layers([2.0, 3.0], a), viewmats, Ks, 8)
    assert math.isclose(float(two), expected, rel_tol=1e-3)
    assert float(losses.depth_spread_loss(_layers([2.0], a), viewmats, Ks, 8)) < 1e-6 * expected
    closer = losses.depth_spread_loss(_layers([2.0, 2.5], a), viewmats, Ks, 8)  # thinner cloud, less spread
    assert float(closer) < 0.3 * float(two)


# -- the denoiser's loss on the global code ----------------------------------------------------------------------------
def test_global_code_error_is_the_spatial_mean_part_of_the_epsilon_mse():
    gen = torch.Generator().manual_seed(0)
    eps, pred = torch.randn(3, 4, 8, 8, generator=gen), torch.randn(3, 4, 8, 8, generator=gen)
    err = pred - eps
    centred = err - err.mean(dim=(2, 3), keepdim=True)
    g = losses.global_code_error(pred, eps)
    assert torch.allclose(g, (err.mean(dim=(2, 3)) ** 2).mean())
    assert torch.allclose(torch.nn.functional.mse_loss(pred, eps), g + (centred**2).mean())
    offset = torch.tensor([0.5, -1.0, 2.0, 0.0])[None, :, None, None]  # a uniform error per channel: all global
    assert torch.allclose(losses.global_code_error(eps + offset, eps), (offset**2).mean())
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0  # zero spatial mean: none
    assert float(losses.global_code_error(eps + checker, eps)) < 1e-12


@pytest.mark.parametrize("weight", [1.0, 64.0, 0.0])
def test_the_global_loss_weight_scales_only_the_global_codes_part(weight):
    from types import SimpleNamespace

    from nerfstudio_splatdiff.models.diffusion import DiffusionModel, DiffusionModelConfig

    gen = torch.Generator().manual_seed(1)
    eps = torch.randn(2, 4, 8, 8, generator=gen)
    offset = torch.tensor([0.5, -1.0, 2.0, 0.0])[None, :, None, None]
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 0.3 - 0.15
    model = SimpleNamespace(config=DiffusionModelConfig(global_loss_weight=weight))
    loss = DiffusionModel.get_loss_dict(model, {"eps_pred": eps + offset + checker, "eps": eps}, {})
    total = sum(loss.values())
    assert torch.allclose(total, weight * (offset**2).mean() + 0.15**2)  # the checker's part is weighted 1
    assert ("eps_mse_global" in loss) == (weight != 1.0)


def test_a_negative_global_loss_weight_is_one_clear_line():
    from nerfstudio_splatdiff.models.diffusion import DiffusionModelConfig

    with pytest.raises(SplatdiffError, match="global-loss-weight"):
        DiffusionModelConfig(global_loss_weight=-1.0)


def test_the_privileged_code_kl_is_the_kl_between_two_gaussians_of_the_code_noise_std():
    from torch.distributions import Normal, kl_divergence

    shift = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    assert math.isclose(float(losses.privileged_code_kl(shift, 2.0)), 25.0 / 8.0 / 2.0, rel_tol=1e-6)
    s = 0.7
    expected = kl_divergence(Normal(shift, s), Normal(torch.zeros_like(shift), s)).sum(dim=1).mean()
    assert math.isclose(float(losses.privileged_code_kl(shift, s)), float(expected), rel_tol=1e-5)
