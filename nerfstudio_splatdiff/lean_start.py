"""Start-up trimming for the inference commands: import-time work they never need, done later or not at all.

Loading any run's config.yml imports nerfstudio's trainer, which imports its viewer and, through it,
`nerfstudio.models.splatfacto`. That module wraps a small helper in `torch.compile` when it is imported, and
`torch.compile` imports torch's inductor compiler: about 2 s of CPU on a busy 2-core machine (measured with
benchmarks/sample_latency.py), for a helper no splatdiff command calls. `defer_nerfstudio_compile` makes such
decorators compile on the helper's first call instead, so nothing changes but when the compiler loads.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable

LAZY_MARK = "_splatdiff_lazy"
"""Attribute set on the replacement `torch_compile`, so a second call finds it already in place."""


def defer_nerfstudio_compile() -> None:
    """Make nerfstudio's `torch_compile(...)` decorators compile on first call, for this process.

    Only the decorator form (`@torch_compile(**options)`) is deferred; `torch_compile(module_or_function)` still
    compiles at once, as before. Does nothing when splatfacto is already imported (its decorator has run)."""
    if "nerfstudio.models.splatfacto" in sys.modules:
        return
    import nerfstudio.utils.misc as misc

    eager = misc.torch_compile
    if getattr(eager, LAZY_MARK, False):
        return

    def torch_compile(*args: Any, **kwargs: Any) -> Any:
        if args:
            return eager(*args, **kwargs)

        def decorate(fn: Callable) -> Callable:
            compiled: list = []

            @functools.wraps(fn)
            def call(*a: Any, **k: Any) -> Any:
                if not compiled:
                    compiled.append(eager(**kwargs)(fn))
                return compiled[0](*a, **k)

            return call

        return decorate

    setattr(torch_compile, LAZY_MARK, True)
    misc.torch_compile = torch_compile
