"""Trained runs on disk: loading a run's model for inference (no dataset needed, wherever the run folder now
lives), and slim inference-only copies of runs (what the repository ships for the demo).

A slim run is a normal nerfstudio run folder (`config.yml` + `nerfstudio_models/step-N.ckpt`) whose checkpoint
holds only the weights inference uses, in float16: the EMA weights stored as the trained network, no optimiser
state, no EMA copy and (for a diffusion run) no copy of the frozen VAR, which loads from its own run. The
pipeline recognises it by `SLIM_MARKER` and loads it non-strictly, checking that only those parts are absent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
import yaml

from nerfstudio_splatdiff.errors import SplatdiffError
from nerfstudio_splatdiff.models.var_checkpoint import load_run_config, resolve_run
from nerfstudio_splatdiff.scripts.cli import run_command

SLIM_MARKER = "_splatdiff_slim"
EMA_PREFIX = "_model.ema."
SLIM_DROPPED_PREFIXES = (EMA_PREFIX, "_model.var.")
"""State-dict prefixes a slim checkpoint leaves out (the EMA copy; a diffusion model's frozen VAR)."""


def load_model_state(model: torch.nn.Module, pipeline_state: Dict[str, torch.Tensor]) -> None:
    """Load a checkpoint's pipeline state into the model: strictly, except that a slim checkpoint may lack exactly
    the EMA copy and the frozen VAR."""
    state = {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in pipeline_state.items()}
    slim = state.pop(SLIM_MARKER, None) is not None
    model_state = {k[len("_model.") :]: v for k, v in state.items() if k.startswith("_model.")}
    missing, unexpected = model.load_state_dict(model_state, strict=False)
    bad = [k for k in missing if not (slim and f"_model.{k}".startswith(SLIM_DROPPED_PREFIXES))] + list(unexpected)
    if bad:
        raise SplatdiffError(f"The checkpoint does not match the model in config.yml (e.g. {bad[:3]}); load it with "
                             "the config.yml of the run that wrote it (or write the slim copy again).")  # fmt: skip


def _find_relative(path: Path, config_path: Path) -> Path:
    """A path recorded relative to where training ran: as given if it exists, else against the config's parents."""
    if path.is_absolute() or path.exists():
        return path
    for parent in config_path.resolve().parents:
        if (parent / path).exists():
            return parent / path
    return path


def load_inference_model(config_path: Path, device: str = "cpu") -> Tuple[Any, Any]:
    """(model in eval mode, run config) of a splatdiff run, built without its dataset. The checkpoint is the newest
    in the nerfstudio_models folder next to config.yml, so a moved or shipped run folder still loads."""
    from nerfstudio.data.scene_box import SceneBox

    config_path = Path(config_path)
    if not config_path.is_file():
        raise SplatdiffError(f"No config.yml at {config_path}: pass --load-config outputs/<exp>/<method>/<timestamp>/config.yml.")
    run = load_run_config(config_path)
    model_cfg = run.pipeline.model
    if hasattr(model_cfg, "var_checkpoint") and model_cfg.var_checkpoint is not None:
        model_cfg.var_checkpoint = _find_relative(Path(model_cfg.var_checkpoint), config_path)
    folder = config_path.parent / "nerfstudio_models"
    _, ckpt = resolve_run(folder if folder.is_dir() else config_path)
    model = model_cfg.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=0,
                            metadata={}, device=device)  # fmt: skip
    load_model_state(model, torch.load(ckpt, map_location="cpu", weights_only=False)["pipeline"])
    return model.to(device).eval(), run


def slim_pipeline_state(state: Dict[str, torch.Tensor], trained_name: str) -> Dict[str, torch.Tensor]:
    """The pipeline state with the EMA weights (when present) as `_model.<trained_name>.*`, float16, nothing else
    that inference does not read."""
    ema = {k[len(EMA_PREFIX + "module.") :]: v for k, v in state.items() if k.startswith(EMA_PREFIX + "module.")}
    out: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(SLIM_DROPPED_PREFIXES):
            continue
        prefix = f"_model.{trained_name}."
        if key.startswith(prefix) and key[len(prefix) :] in ema:
            value = ema[key[len(prefix) :]]
        out[key] = value.half() if value.is_floating_point() else value
    out[SLIM_MARKER] = torch.ones(())
    return out


def write_slim_run(config_path: Path, output_dir: Path, experiment: str, data: Optional[Path] = None,
                   var_config: Optional[Path] = None) -> Path:  # fmt: skip
    """Copy a run as a slim run under output_dir/experiment/<method>/shipped; returns the new config.yml."""
    config_path, ckpt = resolve_run(config_path)
    run = load_run_config(config_path)
    model = run.pipeline.model
    trained_name = "denoiser" if hasattr(model, "var_checkpoint") else "net"
    if trained_name == "denoiser":
        if var_config is None:
            raise SplatdiffError("A diffusion run's slim copy needs its VAR's slim copy: write that first (SlimRun does).")
        model.var_checkpoint = var_config
    loaded = torch.load(ckpt, map_location="cpu", weights_only=False)
    run.output_dir, run.experiment_name, run.timestamp = output_dir, experiment, "shipped"
    run.load_dir, run.load_checkpoint, run.vis = None, None, "viewer"
    if data is not None:
        run.data = data
        run.pipeline.datamanager.data = data
        run.pipeline.datamanager.dataparser.data = data
    folder = run.get_checkpoint_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("step-*.ckpt"):
        old.unlink()
    state = slim_pipeline_state(loaded["pipeline"], trained_name)
    torch.save({"step": loaded["step"], "pipeline": state}, folder / f"step-{loaded['step']:09d}.ckpt")
    new_config = folder.parent / "config.yml"
    new_config.write_text(yaml.dump(run), "utf8")
    return new_config


@dataclass
class SlimRun:
    """Write an inference-only, float16 copy of a trained splatdiff run (and, for a diffusion run, of its VAR)."""

    load_config: Path
    """The run's config.yml (splatdiff-var, -regression or -diffusion)."""
    output_dir: Path = Path("checkpoints")
    experiment_name: str = "demo"
    data: Optional[Path] = None
    """Dataset path to record in the copied configs (the viewer and ns-eval read it); default: unchanged."""

    def main(self) -> None:
        run = load_run_config(resolve_run(self.load_config)[0])
        var_config = None
        if hasattr(run.pipeline.model, "var_checkpoint"):
            var_config = write_slim_run(run.pipeline.model.var_checkpoint, self.output_dir, self.experiment_name, self.data)
            print(f"VAR       -> {var_config}")
        out = write_slim_run(self.load_config, self.output_dir, self.experiment_name, self.data, var_config)
        print(f"{run.method_name:<9} -> {out}")


def entrypoint() -> None:
    run_command(SlimRun)


if __name__ == "__main__":
    entrypoint()
