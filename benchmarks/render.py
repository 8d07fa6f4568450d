"""Rasteriser benchmark: forward + backward on a splatter-image-like scene (see README, Performance).

Cases, each in its own subprocess so that peak memory is clean:
  full   1 scene x 4 views, 128x128, 32,768 Gaussians: tiled torch rasteriser, the numba kernels (CPU; "numba"
         is the default backend, "numba_fast" its all-numba float64 projection) and gsplat (CUDA)
  small  64x64, 8,192 Gaussians: torch and numba vs the dense all-Gaussians-x-all-pixels reference (tests/)

pairs/s counts (Gaussian, pixel) pairs as the torch path does (alpha >= 1/255), for every backend.

    python benchmarks/render.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def splatter_like_scene(res: int, per_pixel: int, device: str, seed: int = 0, focal_at_128: float = 150.0):
    """Gaussians laid out like a splatter image, seen by the source camera and 3 cameras orbiting the centre."""
    from nerfstudio_splatdiff.splats import Gaussians

    g = torch.Generator().manual_seed(seed)
    f = focal_at_128 * res / 128.0
    c = res / 2.0
    ys, xs = torch.meshgrid(torch.arange(res) + 0.5, torch.arange(res) + 0.5, indexing="ij")
    dirs = torch.stack([(xs - c) / f, (ys - c) / f, torch.ones_like(xs)], -1).reshape(-1, 3)
    dirs = dirs.repeat_interleave(per_pixel, 0)
    n = dirs.shape[0]
    depth = 2.0 + torch.rand(n, 1, generator=g)
    means = dirs * depth
    quats = torch.randn(n, 4, generator=g)
    scales = 0.01 + 0.01 * torch.rand(n, 3, generator=g)
    opac = (0.5 + 0.05 * torch.randn(n, generator=g)).clamp(0.05, 0.95)
    colors = torch.rand(n, 3, generator=g)
    gs = Gaussians(means[None], quats[None], scales[None], opac[None], colors[None]).to(device)
    centre = torch.tensor([0.0, 0.0, 2.5])
    viewmats = []
    for deg in (0.0, 15.0, 30.0, 45.0):
        a = math.radians(deg)
        Ry = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        c2w = torch.eye(4)
        c2w[:3, :3] = Ry
        c2w[:3, 3] = centre - Ry @ centre  # rotate the source camera (at the origin) about the centre
        viewmats.append(torch.linalg.inv(c2w))
    viewmats = torch.stack(viewmats)[None].to(device)
    K = torch.tensor([[f, 0, c], [0, f, c], [0, 0, 1.0]])
    Ks = K.expand(1, 4, 3, 3).contiguous().to(device)
    return gs, viewmats, Ks


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_case(case: str, quick: bool, device: str, repeats: int) -> dict:
    """Time forward+backward (loss = mean rgb) of one rasteriser on one scene size; return its numbers."""
    from nerfstudio_splatdiff.splats.rasterize_torch import rasterize_torch

    res, per_px = (128, 2) if case.startswith("full") else (64, 2)
    if quick:
        res = res // 2
    gs, viewmats, Ks = splatter_like_scene(res, per_px, device)
    params = [t.requires_grad_(True) for t in (gs.means, gs.quats, gs.scales, gs.opacities, gs.colors)]
    bg = torch.zeros(1, 4, 3, device=device)
    if case.endswith("dense"):
        from reference_rasterizer import rasterize_dense as fn
    elif case.endswith("gsplat"):
        from nerfstudio_splatdiff.splats.rasterize_gsplat import rasterize_gsplat as fn
    elif "numba" in case:
        from functools import partial

        from nerfstudio_splatdiff.splats.rasterize_numba import rasterize_numba

        fn = partial(rasterize_numba, projection="numba" if case.endswith("fast") else "torch")
    else:
        fn = rasterize_torch
    stats: dict = {}
    compile_s = None
    times, out = [], None
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(repeats + 1):  # first run is warm-up
        _sync(device)
        t0 = time.perf_counter()
        # torch: stats are free; numba: counted by an extra pass, so only in the (untimed) warm-up run.
        kw = {"stats": stats} if fn is rasterize_torch or ("numba" in case and i == 0) else {}
        rgb, alpha, depth = fn(*params, viewmats, Ks, res, res, bg, **kw)
        rgb.mean().backward()
        _sync(device)
        if i > 0:
            times.append(time.perf_counter() - t0)
        elif "numba" in case:
            compile_s = time.perf_counter() - t0  # first call: loads (or compiles) the cached kernels
        out = {"rgb": rgb.detach().cpu(), "grads": [p.grad.detach().cpu() for p in params]}
        for p in params:
            p.grad = None
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 - base_rss
    ms = 1000 * sorted(times)[len(times) // 2]
    res_d = {"case": case, "ms": ms, "peak_mem_mb": peak, "num_gaussians": gs.num_gaussians, "res": res}
    if compile_s is not None:
        res_d["first_call_s"] = compile_s
    if stats:
        res_d["num_pairs"] = stats["num_pairs"]
        res_d["pairs_per_s"] = stats["num_pairs"] / (ms / 1000)
    torch.save(out, Path(os.environ.get("SPLATDIFF_BENCH_SCRATCH", tempfile.gettempdir())) / f"{case}.pt")
    return res_d


def numba_ok() -> bool:
    from nerfstudio_splatdiff.splats.rasterize_numba import numba_available

    return numba_available()


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest gradient difference relative to the largest gradient (float32 gradients reach 1e3-1e4)."""
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def _subprocess(case: str, quick: bool, device: str, repeats: int, scratch: str) -> dict:
    """One case in a fresh process (its own peak memory); its outputs and gradients land in `scratch`."""
    cmd = [sys.executable, __file__, "--case", case, "--device", device, "--repeats", str(repeats)]
    if quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SPLATDIFF_BENCH_SCRATCH": scratch})
    if out.returncode != 0:  # say why (the child's own error), not just that it failed
        raise SystemExit(f"benchmark case {case} on {device} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="half resolution (runs in well under 30 s on 2 cores)")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--cases",
        nargs="+",
        help="only these cases (default: all this device has; full_tiled, small_tiled and "
        "small_dense are always run: the summary is made of them)",
    )
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.quick, args.device, args.repeats)))
        return

    from rich.console import Console
    from rich.table import Table

    cases = ["full_tiled", "small_tiled", "small_dense"]
    if args.device == "cpu" and numba_ok():
        cases[1:1] = ["full_numba", "full_numba_fast", "small_numba"]
    if args.device == "cuda":
        cases.append("full_gsplat")
    if args.cases:
        unknown = sorted(set(args.cases) - set(cases))
        if unknown:
            raise SystemExit(f"unknown or unavailable case(s) {unknown}: choose from {cases}")
        cases = [c for c in cases if c in args.cases or c in ("full_tiled", "small_tiled", "small_dense")]
    results = {}
    console = Console()
    with tempfile.TemporaryDirectory() as scratch, console.status("benchmarking") as status:
        for case in cases:
            status.update(f"running {case}")
            reps = 1 if case == "small_dense" else args.repeats
            results[case] = _subprocess(case, args.quick, args.device, reps, scratch)
        saved = {case: torch.load(Path(scratch) / f"{case}.pt") for case in cases}
    err = float((saved["small_tiled"]["rgb"] - saved["small_dense"]["rgb"]).abs().max())
    dev_name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    )
    summary = {
        "device": dev_name,
        "date": date.today().isoformat(),
        "quick": args.quick,
        "torch": torch.__version__,
        "tiled_ms": results["full_tiled"]["ms"],
        "peak_mem_mb": results["full_tiled"]["peak_mem_mb"],
        "pairs_per_s": results["full_tiled"]["pairs_per_s"],
        "num_pairs": results["full_tiled"]["num_pairs"],
        "tiled_small_ms": results["small_tiled"]["ms"],
        "dense_small_ms": results["small_dense"]["ms"],
        "speedup_vs_dense": results["small_dense"]["ms"] / results["small_tiled"]["ms"],
        "max_abs_err_vs_dense": err,
        "cases": results,
    }
    if {"full_numba", "full_numba_fast", "small_numba"} <= results.keys():
        n, t = results["full_numba"], results["full_tiled"]
        summary.update(
            {
                "numba_ms": n["ms"],
                "numba_peak_mem_mb": n["peak_mem_mb"],
                "numba_pairs_per_s": n["pairs_per_s"],
                "numba_small_ms": results["small_numba"]["ms"],
                "numba_first_call_s": n.get("first_call_s"),
                "numba_speedup_vs_torch": t["ms"] / n["ms"],
                "numba_small_speedup_vs_torch": results["small_tiled"]["ms"] / results["small_numba"]["ms"],
                "numba_max_abs_err_vs_dense": float(
                    (saved["small_numba"]["rgb"] - saved["small_dense"]["rgb"]).abs().max()
                ),
                "numba_max_abs_err_vs_torch": float(
                    (saved["full_numba"]["rgb"] - saved["full_tiled"]["rgb"]).abs().max()
                ),
                "numba_max_grad_err_vs_torch": max(
                    _rel_err(a, b) for a, b in zip(saved["full_numba"]["grads"], saved["full_tiled"]["grads"])
                ),
                "numba_max_grad_err_vs_dense": max(
                    _rel_err(a, b) for a, b in zip(saved["small_numba"]["grads"], saved["small_dense"]["grads"])
                ),
                "numba_fast_ms": results["full_numba_fast"]["ms"],
                "numba_fast_max_abs_err_vs_torch": float(
                    (saved["full_numba_fast"]["rgb"] - saved["full_tiled"]["rgb"]).abs().max()
                ),
            }
        )
    if "full_gsplat" in results:
        summary["gsplat_ms"] = results["full_gsplat"]["ms"]
        summary["gsplat_peak_mem_mb"] = results["full_gsplat"]["peak_mem_mb"]
    table = Table(title=f"Rasteriser forward+backward on {dev_name}")
    for col in ("case", "res", "Gaussians", "ms", "peak MB", "pairs/s"):
        table.add_column(col, justify="right")
    for case, r in results.items():
        pps = f"{r['pairs_per_s']:.3g}" if "pairs_per_s" in r else "-"
        table.add_row(case, str(r["res"]), str(r["num_gaussians"]), f"{r['ms']:.0f}", f"{r['peak_mem_mb']:.0f}", pps)
    console.print(table)
    console.print(f"speedup vs dense: {summary['speedup_vs_dense']:.1f}x   max |tiled - dense|: {err:.2e}")
    if "numba_ms" in summary:
        console.print(
            f"numba: {summary['numba_speedup_vs_torch']:.1f}x the torch path (full), "
            f"{summary['numba_small_speedup_vs_torch']:.1f}x (small); max |numba - dense|: "
            f"{summary['numba_max_abs_err_vs_dense']:.2e}, "
            f"|numba - torch|: {summary['numba_max_abs_err_vs_torch']:.2e}; "
            f"gradients within {summary['numba_max_grad_err_vs_torch']:.1e} (torch) and "
            f"{summary['numba_max_grad_err_vs_dense']:.1e} (dense) of the largest; "
            f"first call {summary['numba_first_call_s']:.1f} s; "
            f"numba_fast: max |fast - torch| {summary['numba_fast_max_abs_err_vs_torch']:.2e}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
