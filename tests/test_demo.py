"""The README's first command, reduced: `splatdiff-demo` with the shipped checkpoint on a few fresh procedural
scenes writes every promised output and says how to open the viewer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cli_helpers import run_cli
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow


def test_demo_with_the_shipped_checkpoint(tmp_path, monkeypatch):
    shipped = REPO / "checkpoints" / "demo" / "splatdiff-diffusion-small" / "shipped" / "config.yml"
    assert shipped.is_file(), "the demo checkpoint must ship in the repository (make train-demo writes it)"
    out = run_cli(
        [
            BIN / "splatdiff-demo",
            "--scenes",
            "1",
            "--max-inputs",
            "1",
            "--num-samples",
            "2",
            "--data",
            tmp_path / "data",
            "--output-dir",
            tmp_path / "demo",
        ],
        cwd=REPO,
    )
    assert "ns-viewer --load-config" in out.stdout and "--viewer.websocket-host 127.0.0.1" in out.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["run"]["kind"] == "diffusion" and len(summary["images"]) == 1
    folder = Path(summary["images"][0]["folder"])
    assert {f"sample_0{i}.ply" for i in range(2)} | {"contact_sheet.png"} <= {p.name for p in folder.iterdir()}
    sheet = Image.open(folder / "contact_sheet.png")
    assert sheet.size[1] > 2 * 128  # two samples, one row each
    # One row per input: input, input view re-rendered, 2 samples' hidden sides, the 3 true completions (64 px each).
    completions = Image.open(tmp_path / "demo" / "completions.png")
    assert completions.size[0] >= 7 * 64 and 64 <= completions.size[1] < 2 * 64
