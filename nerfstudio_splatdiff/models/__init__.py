"""Networks and nerfstudio models: splatter head, VAR, regression baseline, denoiser."""
