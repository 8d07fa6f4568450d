"""Load a trained VAR, frozen, from a `splatdiff-var` run: its config.yml, its nerfstudio_models folder, or one
of its .ckpt files. The EMA weights are used when the checkpoint has them.

config.yml is read with the safe loader (`safe_yaml.py`) and checkpoints with `weights_only=True`; from a folder
the newest checkpoint that loads is used (a truncated newest one is skipped, and named)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Tuple

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.scene_model import SceneModelConfig
from nerfstudio_splatdiff.models.var_net import VARNet
from nerfstudio_splatdiff.safe_yaml import load_config_yaml
from nerfstudio_splatdiff.safety import (
    CheckpointUnreadable,
    list_checkpoints,
    load_checkpoint_file,
    load_newest_checkpoint,
)

HOW = (
    "pass --pipeline.model.var-checkpoint pointing at a splatdiff-var run's config.yml "
    "(or a .ckpt in its nerfstudio_models folder)"
)


def _checkpoint_folder(folder: Path) -> Path:
    if not list_checkpoints(folder):
        raise SplatdiffError(f"No checkpoint (step-*.ckpt) in {folder}: train the VAR first, or {HOW}.")
    return folder


def resolve_run(path: Path) -> Tuple[Path, Path]:
    """(config.yml, checkpoint source) of a run from any of the accepted paths; the source is a nerfstudio_models
    folder (its newest loadable checkpoint is used) or one .ckpt file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SplatdiffError(f"No VAR checkpoint at {path}: {HOW}.")
    if path.is_dir():
        folder = path if path.name == "nerfstudio_models" else path / "nerfstudio_models"
        return folder.parent / "config.yml", _checkpoint_folder(folder)
    if path.suffix in (".yml", ".yaml"):
        local = path.parent / "nerfstudio_models"
        if local.is_dir():
            return path, _checkpoint_folder(local)
        cfg = load_config_yaml(path)
        return path, _checkpoint_folder(Path(cfg.get_checkpoint_dir()))
    return path.parent.parent / "config.yml", path


def load_checkpoint(source: Path) -> Tuple[Path, Dict[str, Any]]:
    """(checkpoint file, its contents) from a `resolve_run` source, loaded as weights only."""
    source = Path(source)
    if source.is_dir():
        return load_newest_checkpoint(source, f"train the run first, or {HOW}")
    try:
        return source, load_checkpoint_file(source)
    except CheckpointUnreadable as e:
        raise SplatdiffError(f"Cannot load {source}: {e}.") from None


INFERENCE_PACKAGES = ("nerfstudio_splatdiff.models",)
"""The packages whose config classes `load_inference_config` builds: the model and its networks."""


def load_run_config(config_path: Path) -> Any:
    """A run's config.yml, read with the safe loader (see safe_yaml.py)."""
    if not Path(config_path).is_file():
        raise SplatdiffError(f"No config.yml at {config_path} next to the checkpoint: {HOW}.")
    return load_config_yaml(Path(config_path))


def load_inference_config(config_path: Path) -> Any:
    """A run's config.yml as inference reads it: the model config (`run.pipeline.model`) built as when training,
    every other config object an `UnloadedConfig` with the same fields (`run.method_name`,
    `run.pipeline.datamanager.background_color`...), and none of nerfstudio's trainer, pipeline or dataset classes
    imported (safe_yaml.py). Not for setting up a pipeline, resuming training or writing the config back."""
    if not Path(config_path).is_file():
        raise SplatdiffError(f"No config.yml at {config_path} next to the checkpoint: {HOW}.")
    return load_config_yaml(Path(config_path), classes_from=INFERENCE_PACKAGES)


def load_frozen_var(path: Path) -> Tuple[VARNet, Any]:
    """The VAR network (eval mode, no gradients) and the run's model config (image size, background...)."""
    config_path, source = resolve_run(path)
    run = load_inference_config(config_path)
    model_cfg = run.pipeline.model
    if not isinstance(model_cfg, SceneModelConfig) or model_cfg.run_kind != "var":
        raise SplatdiffError(f"{config_path} is a {run.method_name!r} run, not a splatdiff-var run: {HOW}.")
    net = model_cfg.network.setup()
    ckpt, loaded = load_checkpoint(source)
    state = loaded["pipeline"]
    prefix = "_model.ema.module." if any(k.startswith("_model.ema.module.") for k in state) else "_model.net."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:200]  # torch's message has a line per tensor: one line here
        raise SplatdiffError(
            f"The weights in {ckpt} do not match the VAR described by {config_path} ({detail}...)."
        ) from e
    net.eval().requires_grad_(False)
    return net, model_cfg
