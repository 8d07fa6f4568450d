"""Start-up trimming for the inference commands: import-time work they never need, done later or not at all.

- `lean_diffusers`: diffusers' blocks and schedulers without the rest of diffusers (torch's compiler front end,
  every autoencoder, transformer and U-Net of its model packages); models/diffusers_blocks.py imports through it.
- `defer_nerfstudio_compile`: commands that set up a whole pipeline (the viewer, export) import nerfstudio's
  trainer, which imports its viewer and, through it, `nerfstudio.models.splatfacto`. That module wraps a small
  helper in `torch.compile` when it is imported, and `torch.compile` imports torch's inductor compiler: about 2 s of
  CPU on a busy 2-core machine, for a helper no splatdiff command calls. This makes such decorators compile on the
  helper's first call instead, so nothing changes but when the compiler loads.

(splatdiff-sample reads a run's config.yml without nerfstudio's trainer at all: `load_inference_config`.)
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from contextlib import contextmanager
from typing import Any, Callable, Iterator

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


DEFERRED_DIFFUSERS_PACKAGES = (
    "diffusers.models.autoencoders",
    "diffusers.models.transformers",
    "diffusers.models.unets",
)
"""diffusers packages whose `__init__` imports every model they hold (some forty autoencoders; every transformer, with
scipy.stats and torchvision; every U-Net). splatdiff uses three modules of them (unet_2d, its blocks, vae), so each
module imports on its own and a package's `__init__` runs only when the package itself is asked for a name."""
RAN_INIT = "_splatdiff_ran_init"
"""Set in a `DeferredPackage` once its `__init__` has run."""


class DeferredPackage(types.ModuleType):
    """A package in sys.modules whose `__init__` has not run yet. Its submodules import as usual (`__path__` is the
    package's), and the first other name asked of the package itself runs the real `__init__` into it, so
    `from diffusers.models.autoencoders import AutoencoderKL` and `diffusers.AutoencoderKL` still work."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or self.__dict__.get(RAN_INIT):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        self.__dict__[RAN_INIT] = True
        self.__spec__.loader.exec_module(self)
        return getattr(self, name)


def defer_package_init(name: str) -> None:
    """Put a `DeferredPackage` for the package `name` in sys.modules (its parent imports as usual); nothing when the
    package is already imported."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.submodule_search_locations is None or spec.loader is None:
        raise ImportError(f"{name} is not a package")
    module = DeferredPackage(name)
    module.__spec__, module.__loader__, module.__file__ = spec, spec.loader, spec.origin
    module.__path__, module.__package__ = list(spec.submodule_search_locations), name
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)


@contextmanager
def unimportable(name: str) -> Iterator[None]:
    """Within the block, `import name` raises ImportError (as if the module did not exist), unless it is already
    imported; afterwards it imports as usual."""
    if name in sys.modules:
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def lean_diffusers() -> None:
    """Make diffusers' blocks and schedulers import without the rest of diffusers; call it before importing them.

    Two things cost seconds of CPU and buy splatdiff nothing: `diffusers.utils.torch_utils` imports `torch._dynamo`
    (torch's compiler front end) for one decorator, `maybe_allow_in_graph`, which only matters to `torch.compile`
    (splatdiff never compiles), and it falls back to a plain decorator when `torch._dynamo` does not import; and the
    package `__init__`s of `DEFERRED_DIFFUSERS_PACKAGES`. So diffusers itself imports while `torch._dynamo` is
    unimportable (it imports as usual afterwards), and those packages are deferred. No module, class or weight
    changes: the same classes come from the same files. Nothing happens to what is already imported."""
    with unimportable("torch._dynamo"):
        import diffusers  # noqa: F401
    for name in DEFERRED_DIFFUSERS_PACKAGES:
        defer_package_init(name)
