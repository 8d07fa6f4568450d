"""Gaussian splats: the batched container, projection, rendering (CPU tiled rasteriser or gsplat) and .ply I/O."""

from nerfstudio_splatdiff.splats.gaussians import Gaussians
from nerfstudio_splatdiff.splats.render import RenderOutput, render_gaussians

__all__ = ["Gaussians", "RenderOutput", "render_gaussians"]
