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

from nerfstudio_splatdiff.errors import check_option, is_number_in


@dataclass
class ExponentialLRSchedulerConfig(SchedulerConfig):
    """Exponential decay from the optimizer's lr to `lr_final` over `max_steps`, then constant."""

    _target: Type = field(default_factory=lambda: ExponentialLRScheduler)
    lr_final: float = 1e-5
    max_steps: int = 100_000

    def __post_init__(self) -> None:
        check_option(
            is_number_in(self.lr_final, 1e-30),
            "--optimizers.denoiser.scheduler.lr-final",
            self.lr_final,
            "a positive learning rate",
        )
        check_option(
            is_number_in(self.max_steps, 1), "--optimizers.denoiser.scheduler.max-steps", self.max_steps, "at least 1"
        )


class ExponentialLRScheduler(Scheduler):
    config: ExponentialLRSchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        ratio = math.log(self.config.lr_final / lr_init)
        steps = max(self.config.max_steps, 1)

        def factor(step: int) -> float:
            return float(math.exp(ratio * min(step / steps, 1.0)))

        return lr_scheduler.LambdaLR(optimizer, lr_lambda=factor)
