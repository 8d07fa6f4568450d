"""Learning-rate schedules whose state holds plain Python floats.

nerfstudio's ExponentialDecayScheduler computes with numpy, so its saved state holds numpy scalars, which
torch >= 2.6's safe `torch.load` (used by ns-eval / ns-viewer) refuses. This one computes with `math`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Type

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer, lr_scheduler


@dataclass
class ExponentialLRSchedulerConfig(SchedulerConfig):
    """Exponential decay from the optimizer's lr to `lr_final` over `max_steps`, then constant."""

    _target: Type = field(default_factory=lambda: ExponentialLRScheduler)
    lr_final: float = 1e-5
    max_steps: int = 100_000


class ExponentialLRScheduler(Scheduler):
    config: ExponentialLRSchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        ratio = math.log(self.config.lr_final / lr_init)
        steps = max(self.config.max_steps, 1)

        def factor(step: int) -> float:
            return float(math.exp(ratio * min(step / steps, 1.0)))

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
