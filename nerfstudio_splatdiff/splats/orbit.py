"""Orbit cameras around a point: used by demos, turntables and benchmarks."""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

from nerfstudio_splatdiff.splats.cameras import invert_rigid, make_rigid


def look_at_w2c(eye: Float[Tensor, "3"], target: Float[Tensor, "3"], up: Float[Tensor, "3"]) -> Float[Tensor, "4 4"]:
    """OpenCV world-to-camera matrix of a camera at `eye` looking at `target` (+Y down in the image is -up)."""
    z = target - eye
    z = z / z.norm()
    x = torch.linalg.cross(z, up)
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    c2w = make_rigid(torch.stack([x, y, z], dim=1), eye)
    return invert_rigid(c2w)


def orbit_w2c(
    num_views: int, radius: float, elevation_deg: float = 20.0, target=(0.0, 0.0, 0.0), start_deg: float = 0.0
) -> Float[Tensor, "V 4 4"]:
    """`num_views` cameras evenly spaced in azimuth around `target` (world +Z up), all looking at it."""
    t = torch.tensor(target, dtype=torch.float32)
    up = torch.tensor([0.0, 0.0, 1.0])
    el = math.radians(elevation_deg)
    mats = []
    for i in range(num_views):
        az = math.radians(start_deg) + 2 * math.pi * i / num_views
        eye = t + radius * torch.tensor([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
        mats.append(look_at_w2c(eye, t, up))
    return torch.stack(mats)


def intrinsics(fov_deg: float, width: int, height: int) -> Float[Tensor, "3 3"]:
    """Pinhole K with the given horizontal field of view and a centred principal point."""
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def turntable_c2w(depth: float, num_views: int, elevation_deg: float = 0.0) -> Float[Tensor, "V 4 4"]:
    """Cameras orbiting an object at `depth` in front of the input camera (OpenCV frame: x right, y down, z forward),
    about the input camera's vertical axis, at the input camera's distance; view 0 is the input camera itself when
    the elevation is 0. Returns camera-to-world matrices in the input camera's frame."""
    centre = torch.tensor([0.0, 0.0, depth])
    up = torch.tensor([0.0, -1.0, 0.0])
    el = math.radians(elevation_deg)
    mats = []
    for i in range(num_views):
        az = 2 * math.pi * i / num_views
        offset = torch.tensor([math.sin(az) * math.cos(el), -math.sin(el), -math.cos(az) * math.cos(el)])
        mats.append(invert_rigid(look_at_w2c(centre + depth * offset, centre, up)))
    return torch.stack(mats)
