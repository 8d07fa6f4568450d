"""Counting the places code reads a tensor's value on the host (`.item()`, `float(t)`, `bool(t)`, `.tolist()`...).
On a GPU each such read waits for all the work queued so far, so a training step that reads device values stalls
the host; on CPU the reads are what the same code would do on a GPU, so tests count them here."""

from __future__ import annotations

from torch.overrides import TorchFunctionMode

READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist")


class HostReads(TorchFunctionMode):
    """Inside `with HostReads() as reads:`, `reads.names` lists every host read of a tensor value, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in READS:
            self.names.append(name)
        return func(*args, **(kwargs or {}))
