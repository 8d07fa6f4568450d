"""nerfstudio-splatdiff: complete Gaussian splats from a single image with latent diffusion."""

__version__ = "0.1.0"
