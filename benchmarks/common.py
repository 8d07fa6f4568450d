"""Helpers the benchmark scripts share: finding the installed CLI tools, naming the device, reading a run's step."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path


def tool(name: str) -> str:
    """Path of an installed console script (next to this Python, else on PATH)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} is not installed: run `make install` (or pip install -e .) first.")
    return found


def device_label(device: str = "auto") -> str:
    """'NVIDIA H200' or 'CPU (x86_64, 2 threads)': what the results were measured on. Imports torch only here, so a
    benchmark that times other processes (sample_latency.py) stays small while they run."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def latest_step(config: Path) -> int:
    """Training step of the newest checkpoint next to a run's config.yml (-1 when there is none)."""
    ckpts = sorted((Path(config).parent / "nerfstudio_models").glob("step-*.ckpt"))
    return int(ckpts[-1].stem.split("-")[1]) if ckpts else -1


def warm_start_parser(doc: str, checkpoint_help: str, output_help: str = "a new folder for the warm start"):
    """The command line every warm-start script shares (its docstring's first paragraph as the description,
    --checkpoint and --output); a script adds its own options to it."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help=checkpoint_help)
    parser.add_argument("--output", type=Path, required=True, help=output_help)
    return parser


def write_warm_start(checkpoint: Path, output: Path, change_pipeline) -> tuple[Path, dict]:
    """Writes `checkpoint` with its pipeline state passed through `change_pipeline` (state -> new state) as
    <output>/nerfstudio_models/<same name>, a file `ns-train --load-checkpoint` warm-starts from (weights and step).
    One clear line when the checkpoint is missing or unreadable or `output` exists; returns the file and the loaded
    state (for the caller's summary line)."""
    from nerfstudio_splatdiff.errors import SplatdiffError, install_one_line_errors
    from nerfstudio_splatdiff.models.var_checkpoint import load_checkpoint
    from nerfstudio_splatdiff.safety import atomic_torch_save

    install_one_line_errors()
    if not checkpoint.is_file():
        raise SplatdiffError(f"No checkpoint file at {checkpoint}: pass a VAR run's nerfstudio_models/step-*.ckpt.")
    if output.exists():
        raise SplatdiffError(f"{output} already exists: pass a new folder (this writes one, never into one).")
    _, state = load_checkpoint(checkpoint)  # weights only; one clear line when unreadable
    changed = {**state, "pipeline": change_pipeline(state["pipeline"])}
    out = output / "nerfstudio_models" / checkpoint.name
    out.parent.mkdir(parents=True)
    atomic_torch_save(changed, out)
    return out, state
