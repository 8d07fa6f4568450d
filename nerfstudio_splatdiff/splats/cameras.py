"""Camera conventions: PyTorch3D NDC (CO3D), OpenCV and OpenGL / nerfstudio.

- PyTorch3D (CO3D): row vectors, X_cam = X_world @ R + T; camera +X left, +Y up, +Z forward; intrinsics in NDC
  ('ndc_isotropic' in CO3D v2, legacy 'ndc_norm_image_bounds').
- OpenCV: column vectors, X_cam = R X_world + t; +X right, +Y down, +Z forward; pixel intrinsics K with the
  pixel centre of pixel (i, j) at (j + 0.5, i + 0.5). The renderer takes OpenCV world-to-camera matrices.
- OpenGL / nerfstudio: camera-to-world with +X right, +Y up, +Z backward (the camera looks down -Z).
"""

from __future__ import annotations

from typing import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from nerfstudio_splatdiff.errors import SplatdiffError

INTRINSICS_FORMATS = ("ndc_isotropic", "ndc_norm_image_bounds")
_FLIP_XY = torch.tensor([-1.0, -1.0, 1.0])


def make_rigid(R: Float[Tensor, "*b 3 3"], t: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 4 4"]:
    """Stack a rotation and a translation into homogeneous 4x4 matrices."""
    out = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(M: Float[Tensor, "*b 4 4"]) -> Float[Tensor, "*b 4 4"]:
    """Inverse of rigid transforms without a general matrix inverse."""
    R = M[..., :3, :3].transpose(-1, -2)
    return make_rigid(R, -(R @ M[..., :3, 3:4])[..., 0])


def pytorch3d_to_opencv_w2c(R: Float[Tensor, "*b 3 3"], T: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 4 4"]:
    """PyTorch3D (R, T) as stored by CO3D -> OpenCV world-to-camera:
    R_cv = diag(-1,-1,1) R^T, t_cv = diag(-1,-1,1) T."""
    flip = _FLIP_XY.to(R)
    return make_rigid(flip[:, None] * R.transpose(-1, -2), flip * T)


def opencv_w2c_to_pytorch3d(w2c: Float[Tensor, "*b 4 4"]) -> tuple[Float[Tensor, "*b 3 3"], Float[Tensor, "*b 3"]]:
    """Inverse of `pytorch3d_to_opencv_w2c`: OpenCV world-to-camera -> PyTorch3D (R, T) as CO3D stores them."""
    flip = _FLIP_XY.to(w2c)
    R = (flip[:, None] * w2c[..., :3, :3]).transpose(-1, -2)
    return R, flip * w2c[..., :3, 3]


def pixel_to_ndc_isotropic(K: Float[Tensor, "*b 3 3"], height: int, width: int) -> tuple[Tensor, Tensor]:
    """OpenCV pixel K -> CO3D v2 'ndc_isotropic' (focal_length [*, 2], principal_point [*, 2])."""
    s = min(width, height) / 2.0
    focal = torch.stack([K[..., 0, 0], K[..., 1, 1]], -1) / s
    pp = torch.stack([width / 2.0 - K[..., 0, 2], height / 2.0 - K[..., 1, 2]], -1) / s
    return focal, pp


def opencv_c2w_to_opengl_c2w(c2w: Float[Tensor, "*b 4 4"]) -> Float[Tensor, "*b 4 4"]:
    """Flip the camera's y and z axes (the same operation converts back)."""
    return c2w * torch.tensor([1.0, -1.0, -1.0, 1.0]).to(c2w)


opengl_c2w_to_opencv_c2w = opencv_c2w_to_opengl_c2w


def ndc_to_pixel_intrinsics(
    focal: Float[Tensor, "*b 2"],
    principal_point: Float[Tensor, "*b 2"],
    height: int,
    width: int,
    intrinsics_format: str = "ndc_isotropic",
) -> Float[Tensor, "*b 3 3"]:
    """PyTorch3D NDC focal / principal point of an image of size (height, width) -> OpenCV pixel K."""
    if intrinsics_format == "ndc_isotropic":
        s = torch.tensor([min(width, height) / 2.0] * 2)
    elif intrinsics_format == "ndc_norm_image_bounds":
        s = torch.tensor([width / 2.0, height / 2.0])
    else:
        raise SplatdiffError(
            f"Unknown intrinsics_format {intrinsics_format!r}: CO3D cameras must be one of {INTRINSICS_FORMATS}."
        )
    s = s.to(focal)
    half = torch.tensor([width / 2.0, height / 2.0]).to(focal)
    f = focal * s
    c = half - principal_point * s
    K = torch.zeros(*focal.shape[:-1], 3, 3, dtype=focal.dtype, device=focal.device)
    K[..., 0, 0], K[..., 1, 1] = f[..., 0], f[..., 1]
    K[..., 0, 2], K[..., 1, 2] = c[..., 0], c[..., 1]
    K[..., 2, 2] = 1.0
    return K


def project_points(
    points: Float[Tensor, "*b N 3"], w2c: Float[Tensor, "*b 4 4"], K: Float[Tensor, "*b 3 3"]
) -> tuple[Float[Tensor, "*b N 2"], Float[Tensor, "*b N"]]:
    """OpenCV projection of world points: pixel coordinates (x, y) and camera depth z."""
    cam = points @ w2c[..., :3, :3].transpose(-1, -2) + w2c[..., None, :3, 3]
    z = cam[..., 2]
    uv = cam[..., :2] / z[..., None]
    return uv * torch.stack([K[..., 0, 0], K[..., 1, 1]], -1)[..., None, :] + K[..., None, :2, 2], z


def nearest_point_to_axes(c2w: Float[Tensor, "V 4 4"]) -> Float[Tensor, "3"]:
    """The point nearest (least squares) to all cameras' optical axes (OpenCV c2w: the axis is +Z).

    For an object-centric capture (CO3D) this is the object the cameras look at.
    """
    origins = c2w[:, :3, 3].double()
    dirs = c2w[:, :3, 2].double()
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    P = (
        torch.eye(3, dtype=dirs.dtype, device=dirs.device) - dirs[:, :, None] * dirs[:, None, :]
    )  # projectors orthogonal to each axis
    A = P.sum(0)
    b = (P @ origins[:, :, None]).sum(0)
    if torch.linalg.matrix_rank(A) < 3:
        raise SplatdiffError("The cameras' optical axes are all parallel, so they do not look at a common point.")
    return torch.linalg.solve(A, b)[:, 0].to(c2w.dtype)


CAMERA_FAULTS = (
    "the camera has NaN or inf values; fix or drop this frame.",
    "the camera rotation is not orthonormal; fix or drop this frame.",
    "the focal length is not positive; fix or drop this frame.",
)
"""What `camera_faults` checks, in its order (the first that holds is the one reported)."""


def camera_faults(w2c: Tensor, K: Tensor) -> Bool[Tensor, "3"]:
    """Whether the cameras have NaN/inf values, a rotation that is not orthonormal, a non-positive focal length
    (CAMERA_FAULTS' order), as one tensor on their device: a caller reads them all with one host sync (on a GPU
    every read of a device value waits for all queued work; the renderer checks its cameras on every call)."""
    R = w2c[..., :3, :3].double()
    skew = (R @ R.transpose(-1, -2) - torch.eye(3, dtype=R.dtype, device=R.device)).abs().amax()
    return torch.stack(
        [
            ~(torch.isfinite(w2c).all() & torch.isfinite(K).all()),
            skew > 1e-3,
            (K[..., 0, 0] <= 0).any() | (K[..., 1, 1] <= 0).any(),
        ]
    )


def raise_camera_fault(faults: Sequence[bool], where: str) -> None:
    """The error for the first fault that holds (`camera_faults` read on the host), if any."""
    for fault, message in zip(faults, CAMERA_FAULTS):
        if fault:
            raise SplatdiffError(f"{where}: {message}")


def check_finite_camera(w2c: Tensor, K: Tensor, where: str) -> None:
    """One clear error for a camera with NaN/inf, a non-rotation, or a non-positive focal length."""
    raise_camera_fault(camera_faults(w2c, K).tolist(), where)


def nerfstudio_cameras(c2w: Float[Tensor, "*b 4 4"], K: Float[Tensor, "*b 3 3"], width: int, height: int):
    """nerfstudio `Cameras` (OpenGL camera-to-world) of OpenCV c2w + pixel K, keeping the batch shape."""
    from nerfstudio.cameras.cameras import Cameras, CameraType  # nerfstudio import is slow; only when needed

    gl = opencv_c2w_to_opengl_c2w(c2w)[..., :3, :4]
    ones = torch.ones_like(K[..., 0, 0:1])
    return Cameras(
        camera_to_worlds=gl,
        fx=K[..., 0, 0:1],
        fy=K[..., 1, 1:2],
        cx=K[..., 0, 2:3],
        cy=K[..., 1, 2:3],
        width=(ones * width).long(),
        height=(ones * height).long(),
        camera_type=CameraType.PERSPECTIVE,
    )
