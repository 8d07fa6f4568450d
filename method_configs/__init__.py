"""Method configurations: the only place hyperparameters live (registered with nerfstudio via entry points)."""
