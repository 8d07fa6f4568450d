"""The installed package: nerfstudio's CLI still works, geometry helpers invert, the render benchmark runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from nerfstudio_splatdiff.splats.geometry import quat_multiply, quat_to_rotmat, rotmat_to_quat

BIN = Path(sys.executable).parent


def test_ns_train_help_still_works():
    out = subprocess.run([str(BIN / "ns-train"), "--help"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "splatfacto" in out.stdout


def test_rotmat_quat_round_trip_and_composition():
    q = torch.randn(1000, 4, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    R = quat_to_rotmat(q)
    assert torch.allclose(rotmat_to_quat(R), q, atol=1e-10)
    q2 = torch.randn(1000, 4, dtype=torch.float64)
    assert torch.allclose(quat_to_rotmat(quat_multiply(q, q2)), R @ quat_to_rotmat(q2), atol=1e-10)


def test_render_benchmark_quick_writes_its_json(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    subprocess.run(
        # the torch path against the dense reference (the numba cases are checked in test_rasterizer_numba.py)
        [sys.executable, str(repo / "benchmarks" / "render.py"), "--quick", "--repeats", "1", "--json", str(out)]
        + ["--cases", "full_tiled", "small_tiled", "small_dense"],
        check=True,
        timeout=300,
    )
    res = json.loads(out.read_text())
    for key in (
        "device",
        "tiled_ms",
        "peak_mem_mb",
        "pairs_per_s",
        "tiled_small_ms",
        "dense_small_ms",
        "speedup_vs_dense",
        "max_abs_err_vs_dense",
    ):
        assert key in res, key
    assert res["max_abs_err_vs_dense"] < 1e-4
    assert res["speedup_vs_dense"] > 1.0 and res["pairs_per_s"] > 0
