"""Load a trained VAR, frozen, from a `splatdiff-var` run: its config.yml, its nerfstudio_models folder, or one
of its .ckpt files. The EMA weights are used when the checkpoint has them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import torch
import yaml

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.var_net import VARNet, VARNetConfig

HOW = "pass --pipeline.model.var-checkpoint pointing at a splatdiff-var run's config.yml (or a .ckpt in its nerfstudio_models folder)"


def _latest_ckpt(folder: Path) -> Path:
    ckpts = sorted(folder.glob("step-*.ckpt"))
    if not ckpts:
        raise SplatdiffError(f"No checkpoint (step-*.ckpt) in {folder}: train the VAR first, or {HOW}.")
    return ckpts[-1]


def resolve_run(path: Path) -> Tuple[Path, Path]:
    """(config.yml, checkpoint) of a VAR run from any of the accepted paths."""
    path = Path(path).expanduser()
    if not path.exists():
        raise SplatdiffError(f"No VAR checkpoint at {path}: {HOW}.")
    if path.is_dir():
        folder = path if path.name == "nerfstudio_models" else path / "nerfstudio_models"
        return folder.parent / "config.yml", _latest_ckpt(folder)
    if path.suffix in (".yml", ".yaml"):
        local = path.parent / "nerfstudio_models"
        if local.is_dir():
            return path, _latest_ckpt(local)
        cfg = yaml.load(path.read_text(), Loader=yaml.Loader)
        return path, _latest_ckpt(Path(cfg.get_checkpoint_dir()))
    return path.parent.parent / "config.yml", path


def load_run_config(config_path: Path) -> Any:
    if not config_path.is_file():
        raise SplatdiffError(f"No config.yml at {config_path} next to the checkpoint: {HOW}.")
    return yaml.load(config_path.read_text(), Loader=yaml.Loader)


def load_frozen_var(path: Path) -> Tuple[VARNet, Any]:
    """The VAR network (eval mode, no gradients) and the run's model config (image size, background...)."""
    config_path, ckpt = resolve_run(path)
    run = load_run_config(config_path)
    model_cfg = run.pipeline.model
    if not isinstance(getattr(model_cfg, "network", None), VARNetConfig):
        raise SplatdiffError(f"{config_path} is a {run.method_name!r} run, not a splatdiff-var run: {HOW}.")
    net = model_cfg.network.setup()
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["pipeline"]
    prefix = "_model.ema.module." if any(k.startswith("_model.ema.module.") for k in state) else "_model.net."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        raise SplatdiffError(f"The weights in {ckpt} do not match the VAR described by {config_path} ({str(e)[:200]}...).") from e
    net.eval().requires_grad_(False)
    return net, model_cfg
