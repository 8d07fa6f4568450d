"""Splatter Image head: rays, depth range, world transform, rotations and the output-layer initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.splatter_head import LAYOUT, SplatterHead, SplatterHeadConfig
from nerfstudio_splatdiff.splats.geometry import covariance_3d, quat_to_rotmat


def camera(B=2, H=6, W=8):
    """Two different OpenCV camera-to-world poses and pixel intrinsics for an H x W output."""
    g = torch.Generator().manual_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(B, 3, 3, generator=g, dtype=torch.float64))
    Q = Q * torch.sign(torch.linalg.det(Q))[:, None, None]
    c2w = torch.eye(4, dtype=torch.float64).repeat(B, 1, 1)
    c2w[:, :3, :3] = Q
    c2w[:, :3, 3] = torch.randn(B, 3, generator=g, dtype=torch.float64)
    K = torch.tensor([[9.0, 0, 4.2], [0, 10.0, 2.9], [0, 0, 1]], dtype=torch.float64).repeat(B, 1, 1)
    return c2w, K


def raw_with(B, M, H, W, seed=1, **channel_values):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(B, M, 15, H, W, generator=g, dtype=torch.float64)
    for name, value in channel_values.items():
        start, n = LAYOUT[name]
        raw[:, :, start : start + n] = value
    return raw.reshape(B, M * 15, H, W)


def test_zero_offsets_put_means_on_pixel_rays_at_predicted_depth():
    B, M, H, W = 2, 2, 6, 8
    c2w, K = camera(B, H, W)
    raw = raw_with(B, M, H, W, offset=0.0)
    near, far = torch.tensor([0.5, 1.0], dtype=torch.float64), torch.tensor([3.0, 5.0], dtype=torch.float64)
    gs = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=M))(raw, c2w, K, near, far)
    assert gs.means.shape == (B, M * H * W, 3)
    # Back to camera space, then project: every mean must land on its own pixel centre.
    w2c = torch.linalg.inv(c2w)
    cam = gs.means @ w2c[:, :3, :3].transpose(-1, -2) + w2c[:, None, :3, 3]
    u = cam[..., 0] / cam[..., 2] * K[:, None, 0, 0] + K[:, None, 0, 2]
    v = cam[..., 1] / cam[..., 2] * K[:, None, 1, 1] + K[:, None, 1, 2]
    n = torch.arange(M * H * W)
    assert torch.allclose(u, ((n % W) + 0.5).to(u).expand_as(u), atol=1e-9)
    assert torch.allclose(v, (((n // W) % H) + 0.5).to(v).expand_as(v), atol=1e-9)
    # The camera-space z is the predicted depth in the per-scene range.
    depth_raw = raw.reshape(B, M, 15, H, W)[:, :, LAYOUT["depth"][0]].reshape(B, -1)
    expected = torch.sigmoid(depth_raw) * (far - near)[:, None] + near[:, None]
    assert torch.allclose(cam[..., 2], expected, atol=1e-9)


def test_rotation_and_scale_are_carried_into_world_space():
    B, M, H, W = 2, 1, 3, 4
    c2w, K = camera(B, H, W)
    raw = raw_with(B, M, H, W)
    near, far = torch.ones(B, dtype=torch.float64), 2 * torch.ones(B, dtype=torch.float64)
    gs = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=M))(raw, c2w, K, near, far)
    x = raw.reshape(B, M, 15, H, W).permute(0, 1, 3, 4, 2).reshape(B, -1, 15)
    q_cam = x[..., 8:12]
    scales = torch.exp(x[..., 5:8])
    R = c2w[:, None, :3, :3]
    cov_world_expected = R @ covariance_3d(q_cam, scales) @ R.transpose(-1, -2)
    assert torch.allclose(covariance_3d(gs.quats, gs.scales), cov_world_expected, atol=1e-9)
    assert torch.allclose(torch.linalg.det(quat_to_rotmat(gs.quats)), torch.ones(1, dtype=torch.float64))
    assert torch.allclose(gs.opacities, torch.sigmoid(x[..., 0]))
    assert torch.allclose(gs.colors, 0.5 + 0.28209479177387814 * x[..., 12:15])


def test_output_layer_initialisation_matches_splatter_image():
    cfg = SplatterHeadConfig(gaussians_per_pixel=2)
    head = SplatterHead(cfg)
    conv = nn.Conv2d(16, head.out_channels, 1)
    head.init_output_layer(conv)
    c2w, K = camera(1, 4, 4)
    raw = conv(torch.zeros(1, 16, 4, 4)).double()  # zero features: the biases alone
    gs = head(raw, c2w, K, torch.tensor([1.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64))
    assert torch.allclose(gs.opacities, torch.sigmoid(torch.tensor(-2.0, dtype=torch.float64)))
    assert torch.allclose(gs.scales, torch.tensor(0.02, dtype=torch.float64))
    assert torch.allclose(gs.colors, torch.tensor(0.5, dtype=torch.float64))
    # Gains: the scale rows are ~300x smaller than the depth rows (0.003 vs 1.0).
    w = conv.weight.detach().reshape(2, 15, -1)
    assert w[:, 5:8].abs().max() < 0.01 * w[:, 1:2].abs().max()
    assert 0.05 < w[:, 2:5].abs().max() / w[:, 1:2].abs().max() < 0.2


def test_head_rejects_wrong_channel_count_and_cameras(unchecked_annotations):
    head = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=2))
    c2w, K = camera(1, 4, 4)
    near, far = torch.ones(1, dtype=torch.float64), 2 * torch.ones(1, dtype=torch.float64)
    with pytest.raises(SplatdiffError, match="expects 30 channels"):
        head(torch.zeros(1, 15, 4, 4, dtype=torch.float64), c2w, K, near, far)
    with pytest.raises(SplatdiffError, match="c2w"):
        head(torch.zeros(1, 30, 4, 4, dtype=torch.float64), c2w[0], K, near, far)
    assert math.isclose(head.config.scale_bias, math.log(0.02))


def test_scale_cap_bounds_the_footprint_in_pixels():
    B, M, H, W = 1, 1, 3, 4
    c2w, K = camera(B, H, W)
    raw = raw_with(B, M, H, W, scale=torch.linspace(-6, 6, 3)[:, None, None].expand(3, H, W).double())
    near, far = torch.full((1,), 2.0, dtype=torch.float64), torch.full((1,), 2.0 + 1e-9, dtype=torch.float64)
    capped = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=M, max_scale_px=3.0))(raw, c2w, K, near, far)
    plain = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=M))(raw, c2w, K, near, far)
    cap = 3.0 * 2.0 / 9.0  # 3 px at depth 2 with the smaller focal (9 px)
    assert (capped.scales < cap).all() and (capped.scales <= plain.scales).all()
    small = plain.scales < 0.01 * cap
    assert torch.allclose(capped.scales[small], plain.scales[small], rtol=0.02)  # unchanged where far below the cap


def test_ray_scale_cap_lengthens_only_the_axis_along_the_ray():
    """With max_ray_scale_px, an unrotated Gaussian's third axis (along the input camera's ray) may grow to that
    many pixels, while the two across the ray keep max_scale_px; without it, all three share max_scale_px."""
    B, M, H, W = 1, 1, 3, 4
    c2w, K = camera(B, H, W)
    raw = raw_with(B, M, H, W, scale=torch.full((3, H, W), 8.0, dtype=torch.float64))  # far above both caps
    near, far = torch.full((1,), 2.0, dtype=torch.float64), torch.full((1,), 2.0 + 1e-9, dtype=torch.float64)
    pixel = 2.0 / 9.0  # one pixel at depth 2 with the smaller focal (9 px)
    needle = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=M, max_scale_px=1.0, max_ray_scale_px=8.0))
    scales = needle(raw, c2w, K, near, far).scales
    assert torch.allclose(scales[..., :2], torch.full_like(scales[..., :2], pixel), rtol=0.01)
    assert torch.allclose(scales[..., 2], torch.full_like(scales[..., 2], 8 * pixel), rtol=0.01)
    same = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=M, max_scale_px=1.0))(raw, c2w, K, near, far).scales
    assert torch.allclose(same, torch.full_like(same, pixel), rtol=0.01)
    assert torch.allclose(scales[..., :2], same[..., :2])


def test_ray_scale_cap_needs_the_scale_cap():
    with pytest.raises(SplatdiffError, match="max-ray-scale-px"):
        SplatterHeadConfig(max_ray_scale_px=8.0)
