"""The exponential moving average of a trained network, updated every training step without reading the device.

torch's `AveragedModel.update_parameters` reads its step counter `n_averaged` on the host twice per update; on a
GPU each such read waits for every kernel queued so far, so the CPU cannot queue the next step while the GPU runs
this one. `StepEMA` computes exactly what `AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay),
use_buffers=True)` computes, with the same state dict, and reads the counter once (whether averaging has begun),
then remembers it (forgotten when a state dict is loaded).
"""

from __future__ import annotations

import itertools
from typing import Optional

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class StepEMA(AveragedModel):
    """EMA copy of `module` (parameters and buffers) with decay `decay`: the first update copies the weights, each
    later one moves the copy by (1 - decay) towards them."""

    def __init__(self, module: nn.Module, decay: float) -> None:
        super().__init__(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self._started: Optional[bool] = None  # None: not read from `n_averaged` yet

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._started = None  # the loaded counter decides again

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._started is None:
            self._started = bool(self.n_averaged > 0)  # the one read, on the first update after setup or a load
        mine = [t.detach() for t in itertools.chain(self.module.parameters(), self.module.buffers())]
        theirs = [t.detach().to(m.device) for m, t in zip(mine, itertools.chain(model.parameters(), model.buffers()))]
        if not self._started:
            for m, t in zip(mine, theirs):
                m.copy_(t)
        else:
            groups: dict[tuple, tuple[list[Tensor], list[Tensor]]] = {}
            for m, t in zip(mine, theirs):
                group = groups.setdefault((m.device, m.dtype), ([], []))
                group[0].append(m), group[1].append(t)
            for (device, _), (ms, ts) in groups.items():
                self.multi_avg_fn(ms, ts, self.n_averaged.to(device))
        self._started = True
        self.n_averaged += 1
