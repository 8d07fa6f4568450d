"""Camera conventions: PyTorch3D NDC (CO3D) <-> OpenCV <-> OpenGL, checked on synthetic and real CO3D cameras."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.splats.cameras import (
    invert_rigid,
    ndc_to_pixel_intrinsics,
    nearest_point_to_axes,
    opencv_c2w_to_opengl_c2w,
    project_points,
    pytorch3d_to_opencv_w2c,
)


def random_rotation(seed: int) -> torch.Tensor:
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return Q * torch.sign(torch.linalg.det(Q))


def test_pytorch3d_to_opencv_flips_x_and_y():
    R, T = random_rotation(0), torch.tensor([0.3, -0.2, 4.0], dtype=torch.float64)
    X = torch.randn(5, 3, dtype=torch.float64)
    cam_p3d = X @ R + T  # PyTorch3D row-vector convention: +X left, +Y up, +Z forward
    w2c = pytorch3d_to_opencv_w2c(R, T)
    cam_cv = X @ w2c[:3, :3].T + w2c[:3, 3]
    assert torch.allclose(cam_cv, cam_p3d * torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(invert_rigid(w2c) @ w2c, torch.eye(4, dtype=torch.float64), atol=1e-12)


def test_ndc_isotropic_on_a_non_square_image():
    """Shorter side spans NDC [-1, 1]; +X_ndc is left, +Y_ndc is up; the principal point shifts the centre."""
    H, W = 200, 300
    K = ndc_to_pixel_intrinsics(torch.tensor([2.0, 2.0]), torch.tensor([0.1, -0.2]), H, W, "ndc_isotropic")
    assert torch.allclose(K[0, 0], torch.tensor(200.0)) and torch.allclose(K[1, 1], torch.tensor(200.0))
    assert torch.allclose(K[0, 2], torch.tensor(150.0 - 0.1 * 100))  # +px moves the centre left
    assert torch.allclose(K[1, 2], torch.tensor(100.0 + 0.2 * 100))  # -py moves the centre down
    K2 = ndc_to_pixel_intrinsics(torch.tensor([2.0, 2.0]), torch.zeros(2), H, W, "ndc_norm_image_bounds")
    assert torch.allclose(K2[0, 0], torch.tensor(300.0)) and torch.allclose(K2[1, 1], torch.tensor(200.0))
    with pytest.raises(SplatdiffError, match="Unknown intrinsics_format 'screen'"):
        ndc_to_pixel_intrinsics(torch.ones(2), torch.zeros(2), H, W, "screen")


def test_opengl_camera_looks_down_minus_z():
    c2w_cv = invert_rigid(
        pytorch3d_to_opencv_w2c(random_rotation(1), torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64))
    )
    c2w_gl = opencv_c2w_to_opengl_c2w(c2w_cv)
    ahead_cv = c2w_cv @ torch.tensor([0.0, 0.0, 2.0, 1.0], dtype=torch.float64)
    ahead_gl = c2w_gl @ torch.tensor([0.0, 0.0, -2.0, 1.0], dtype=torch.float64)
    up_cv = c2w_cv @ torch.tensor([0.0, -1.0, 0.0, 0.0], dtype=torch.float64)  # OpenCV +Y is down
    up_gl = c2w_gl @ torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(ahead_cv, ahead_gl) and torch.allclose(up_cv, up_gl)
    assert torch.allclose(opencv_c2w_to_opengl_c2w(c2w_gl), c2w_cv)


def test_real_co3d_apple_scene_centre_projects_into_every_image(real_data):
    """Real CO3D v2 cameras (PyTorch3D R, T, ndc_isotropic focal): the point nearest all optical axes is the
    object; it must project inside all 20 portrait images with positive depth."""
    seq = real_data / "posediffusion_co3d" / "apple_seq_unknown"
    cams = np.load(seq / "gt_cameras.npz")
    frames = sorted(seq.glob("*.jpg"))
    assert len(frames) == len(cams["gtR"]) == 20
    W, H = Image.open(frames[0]).size
    assert H > W  # portrait, so isotropic NDC matters
    R = torch.from_numpy(cams["gtR"]).double()
    T = torch.from_numpy(cams["gtT"]).double()
    w2c = pytorch3d_to_opencv_w2c(R, T)
    K = ndc_to_pixel_intrinsics(torch.from_numpy(cams["gtFL"]).double(), torch.zeros(20, 2, dtype=torch.float64), H, W)
    centre = nearest_point_to_axes(invert_rigid(w2c))
    uv, z = project_points(centre.expand(20, 1, 3), w2c, K)
    uv, z = uv[:, 0], z[:, 0]
    assert (z > 0).all()
    assert ((uv[:, 0] > 0) & (uv[:, 0] < W) & (uv[:, 1] > 0) & (uv[:, 1] < H)).all()
    # The object stays near the image centre in a CO3D turntable capture (within 30% of the size).
    assert (
        (uv - torch.tensor([W / 2, H / 2], dtype=torch.float64)).abs()
        < torch.tensor([0.3 * W, 0.3 * H], dtype=torch.float64)
    ).all()
    # The mistake this guards against: forgetting the x/y flip puts the centre behind the cameras.
    naive = torch.eye(4, dtype=torch.float64).repeat(20, 1, 1)
    naive[:, :3, :3], naive[:, :3, 3] = R.transpose(-1, -2), T
    _, z_naive = project_points(nearest_point_to_axes(invert_rigid(naive)).expand(20, 1, 3), naive, K)
    assert not ((z_naive > 0).all() and torch.allclose(z_naive, z))
