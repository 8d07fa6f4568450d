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
