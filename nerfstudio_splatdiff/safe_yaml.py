"""Loading a run's config.yml without running code hidden in it.

nerfstudio writes `config.yml` with `yaml.dump` and reads it back with `yaml.Loader`, which constructs any Python
object the file names: `!!python/object/apply:os.system ["..."]` runs a shell command. `load_config_yaml` uses a
safe loader that only knows what a splatdiff run's config.yml holds:

- `!!python/object:<class>`: dataclasses (the config classes) of nerfstudio, nerfstudio_splatdiff and
  method_configs, filled field by field (no constructor or `__post_init__` runs, as with yaml.Loader);
- `!!python/name:<class>`: the classes those configs point at (`_target`): classes of the same packages and
  torch optimisers / learning-rate schedulers;
- `!!python/object/apply:<class>`: only `pathlib` paths and `Enum` members of those packages;
- `!!python/tuple`, and plain YAML.

Anything else (another tag, a function, a module outside those packages) is refused before any module is imported.

`load_config_yaml(path, classes_from=...)` imports only the classes of the packages it names and reads every other
config object as an `UnloadedConfig` (its fields, no class, nothing imported): the inference commands read a
run's model config and a few values (sizes, colours, depth ranges), and the classes of the rest (nerfstudio's
trainer, pipeline, datamanager, optimisers) import its viewer, tensorboard and torchvision: seconds of start-up.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import pathlib
from pathlib import Path
from typing import Any, Optional, Tuple

import yaml

from nerfstudio_splatdiff.errors import SplatdiffError

CONFIG_PACKAGES = ("nerfstudio", "nerfstudio_splatdiff", "method_configs")
"""Packages whose dataclasses and classes a config.yml may name."""
TARGET_PACKAGES = CONFIG_PACKAGES + ("torch.optim",)
"""Packages whose classes a config may point at with `!!python/name:` (`_target`, optimiser classes)."""
PATH_CLASSES = ("PosixPath", "WindowsPath", "Path", "PurePosixPath", "PureWindowsPath", "PurePath")
RUN_CONFIG_CLASS = "nerfstudio.engine.trainer.TrainerConfig"
"""The class of a run's config (what ns-train writes at the top of config.yml)."""


class UnloadedConfig:
    """A config object whose class was left unimported (see `load_config_yaml`): the fields config.yml gives, as
    attributes, and the class's dotted name in `__config_class__` (for an Enum member too: its value is in `args`)."""

    def __init__(self, config_class: str, **fields: Any) -> None:
        self.__dict__.update(fields)
        self.__dict__["__config_class__"] = config_class

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "__config_class__")
        return f"UnloadedConfig[{self.__config_class__}]({fields})"


class UnloadedClass(str):
    """The dotted name of a class that config.yml points at (a `_target`) and that was left unimported."""


class UnsafeConfigError(yaml.constructor.ConstructorError):
    """A tag the safe loader refuses."""


def _in_packages(dotted: str, packages: tuple) -> bool:
    return any(dotted == p or dotted.startswith(p + ".") for p in packages)


def _inside(suffix: str, packages: tuple, node: yaml.Node) -> Tuple[str, str]:
    """(module, name) of what a tag names; refused unless the module lies inside `packages`."""
    module_name, _, attr = suffix.rpartition(".")
    if not module_name or not attr or not _in_packages(module_name, packages):
        raise UnsafeConfigError(
            None, None, f"refusing {suffix!r}: only classes of {', '.join(packages)} are allowed", node.start_mark
        )
    return module_name, attr


def _resolve(suffix: str, packages: tuple, node: yaml.Node) -> Any:
    """The object a tag names, importing its module only when it lies inside `packages`."""
    module_name, attr = _inside(suffix, packages, node)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is None or not module_name.startswith(e.name):
            raise  # a broken install, not a bad config
        raise UnsafeConfigError(
            None, None, f"no module {module_name!r} (the config names {suffix!r})", node.start_mark
        ) from e
    obj = getattr(module, attr, None)
    if obj is None:
        raise UnsafeConfigError(None, None, f"{module_name!r} has no {attr!r}", node.start_mark)
    if not isinstance(obj, type) or not _in_packages(obj.__module__, packages):
        raise UnsafeConfigError(
            None, None, f"refusing {suffix!r}: not a class of {', '.join(packages)}", node.start_mark
        )
    return obj


class ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader plus exactly the tags a splatdiff config.yml uses (see the module docstring)."""

    classes_from: Optional[tuple] = None
    """Import only the classes of these packages (None: every class, as nerfstudio does)."""

    def leaves_unloaded(self, suffix: str, packages: tuple, node: yaml.Node) -> bool:
        """Whether what a tag names is left unimported (it lies outside `classes_from`); refused, as when importing,
        unless it lies inside `packages`."""
        module_name, _ = _inside(suffix, packages, node)
        return self.classes_from is not None and not _in_packages(module_name, self.classes_from)


def _construct_tuple(loader: ConfigLoader, node: yaml.Node) -> tuple:
    return tuple(loader.construct_sequence(node, deep=True))


def _construct_name(loader: ConfigLoader, suffix: str, node: yaml.Node) -> Any:
    if loader.leaves_unloaded(suffix, TARGET_PACKAGES, node):
        return UnloadedClass(suffix)
    cls = _resolve(suffix, TARGET_PACKAGES, node)
    if _in_packages(cls.__module__, ("torch.optim",)):
        import torch

        if not issubclass(cls, (torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler)):
            raise UnsafeConfigError(None, None, f"refusing {suffix!r}: not an optimiser or scheduler", node.start_mark)
    return cls


def _construct_object(loader: ConfigLoader, suffix: str, node: yaml.Node):
    if loader.leaves_unloaded(suffix, CONFIG_PACKAGES, node):
        record = UnloadedConfig(suffix)
        yield record
        vars(record).update(loader.construct_mapping(node, deep=True))
        return
    cls = _resolve(suffix, CONFIG_PACKAGES, node)
    if not dataclasses.is_dataclass(cls):
        raise UnsafeConfigError(
            None, None, f"refusing {suffix!r}: only config dataclasses are allowed", node.start_mark
        )
    instance = cls.__new__(cls)
    yield instance  # (as yaml.Loader does, so anchors inside the object resolve)
    state = loader.construct_mapping(node, deep=True)
    instance.__dict__.update(state)


def _construct_apply(loader: ConfigLoader, suffix: str, node: yaml.Node) -> Any:
    module_name, _, attr = suffix.rpartition(".")
    if module_name == "pathlib" and attr in PATH_CLASSES:
        cls: Any = getattr(pathlib, attr)
    elif loader.leaves_unloaded(suffix, CONFIG_PACKAGES, node):
        cls = None
    else:
        cls = _resolve(suffix, CONFIG_PACKAGES, node)
        if not issubclass(cls, enum.Enum):
            raise UnsafeConfigError(
                None, None, f"refusing to call {suffix!r}: only paths and enum values", node.start_mark
            )
    if isinstance(node, yaml.SequenceNode):
        args, kwds = loader.construct_sequence(node, deep=True), {}
    else:
        value = loader.construct_mapping(node, deep=True)
        if set(value) - {"args", "kwds"}:
            raise UnsafeConfigError(None, None, f"refusing {suffix!r} with state", node.start_mark)
        args, kwds = value.get("args", []), value.get("kwds", {})
    if not all(isinstance(a, (str, int, float)) for a in list(args) + list(kwds.values())):
        raise UnsafeConfigError(None, None, f"refusing {suffix!r}: arguments must be plain values", node.start_mark)
    if cls is None:
        return UnloadedConfig(suffix, args=list(args), kwds=kwds)
    return cls(*args, **kwds)


ConfigLoader.add_constructor("tag:yaml.org,2002:python/tuple", _construct_tuple)
ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/name:", _construct_name)
ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object:", _construct_object)
ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/object/apply:", _construct_apply)


def load_config_yaml(path: Path, classes_from: Optional[tuple] = None) -> Any:
    """A run's config (a nerfstudio TrainerConfig) from its config.yml with the safe loader; one clear error when
    the file is missing, is not YAML, is not a run config, or names anything outside the config classes.

    With `classes_from` (package names), only the classes of those packages are imported and built; every other
    config object is an `UnloadedConfig` holding its fields (the run config itself too), every other class a
    `_target` points at an `UnloadedClass`. A tag naming anything outside the config packages is refused either
    way; what is left unloaded is neither imported nor called (so it is not checked to be a dataclass or Enum)."""
    path = Path(path)
    if not path.is_file():
        raise SplatdiffError(f"No config.yml at {path}: pass the config.yml of a splatdiff run.")
    try:
        text = path.read_text(encoding="utf8")
    except (OSError, UnicodeDecodeError) as e:
        raise SplatdiffError(f"Cannot read {path} as a text config.yml ({e.__class__.__name__}).") from e
    loader = ConfigLoader(text)
    loader.classes_from = classes_from
    try:
        config = loader.get_single_data()
    except UnsafeConfigError as e:
        raise SplatdiffError(
            f"Refusing to load {path}: {e.problem} (line {e.problem_mark.line + 1}). A config.yml "
            "may only hold splatdiff/nerfstudio config classes; only load runs you trust."
        ) from None
    except yaml.constructor.ConstructorError as e:
        where = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        raise SplatdiffError(
            f"Refusing to load {path}: {e.problem}{where}. A config.yml may only hold "
            "splatdiff/nerfstudio config classes; only load runs you trust."
        ) from None
    except yaml.YAMLError as e:
        raise SplatdiffError(
            f"{path} is not valid YAML ({str(e).splitlines()[0]}): pass the config.yml that ns-train wrote."
        ) from None
    finally:
        loader.dispose()
    if classes_from is not None:
        held = getattr(config, "__config_class__", type(config).__name__)
        is_run = isinstance(config, UnloadedConfig) and held == RUN_CONFIG_CLASS
    else:
        from nerfstudio.engine.trainer import TrainerConfig

        held, is_run = type(config).__name__, isinstance(config, TrainerConfig)
    if not is_run:
        raise SplatdiffError(
            f"{path} is not a nerfstudio run config (it holds a {held}): pass the config.yml that ns-train wrote."
        )
    return config
