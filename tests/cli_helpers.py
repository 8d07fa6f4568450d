"""Helpers for tests that run the installed command-line tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_cli(cmd: list, env_extra: dict | None = None, check: bool = True, cwd: Path | None = None):
    """Run one of the installed commands with the test environment; on failure show its output."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    out = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env, timeout=900, cwd=cwd)
    if check and out.returncode != 0:
        raise AssertionError(f"{cmd[0]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def train_cmd(method: str, data: Path, out: Path, cache: Path, iters: int, *extra: str) -> list:
    """A short CPU `ns-train` command line on the co3d-data parser, logging every step to tensorboard."""
    return [
        Path(sys.executable).parent / "ns-train",
        method,
        "--max-num-iterations",
        str(iters),
        "--vis",
        "tensorboard",
        "--output-dir",
        out,
        "--logging.steps-per-log",
        "1",
        "--steps-per-eval-batch",
        "1000",
        "--steps-per-eval-image",
        "1000",
        "--steps-per-save",
        "1000",
        "--pipeline.datamanager.scenes-per-batch",
        "4",
        "--pipeline.datamanager.num-workers",
        "0",
        *extra,
        "co3d-data",
        "--data",
        data,
        "--cache-dir",
        cache,
    ]
