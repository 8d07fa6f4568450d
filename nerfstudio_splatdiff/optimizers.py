"""nerfstudio's Adam config with torch's fused Adam on CUDA.

torch's default Adam on CUDA is the `foreach` one: a handful of kernel launches per group of parameter tensors
per step. `fused=True` does every parameter's update in one launch, which matters for networks of many small
tensors in short steps (launch-bound on a GPU). torch's fused Adam computes the same update up to floating-point
order; on CPU this config builds exactly the optimiser nerfstudio's AdamOptimizerConfig builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Type

import torch
from nerfstudio.engine.optimizers import AdamOptimizerConfig


@dataclass
class FusedAdamOptimizerConfig(AdamOptimizerConfig):
    """Adam (`torch.optim.Adam`), fused where every parameter is a CUDA tensor."""

    _target: Type = torch.optim.Adam
    weight_decay: float = 0.0
    """The weight decay (nerfstudio's field, re-declared as a float: its default there is the int 0)."""
    fused: bool = True
    """Use torch's fused Adam kernel when every parameter is on a CUDA device (one launch per step); the default
    foreach Adam otherwise (CPU, or parameters on mixed devices) and when False."""

    def uses_fused(self, params: list) -> bool:
        """Whether `setup` builds the fused kernel for these parameters (tensors or param-group dicts)."""
        tensors = [p for g in params for p in (g["params"] if isinstance(g, dict) else [g])]
        return self.fused and bool(tensors) and all(p.is_cuda for p in tensors)

    def setup(self, params: Iterable) -> torch.optim.Optimizer:
        params = list(params)
        kwargs = {k: v for k, v in vars(self).items() if k not in ("_target", "max_norm", "fused")}
        if self.uses_fused(params):
            kwargs["fused"] = True
        return self._target(params, **kwargs)
