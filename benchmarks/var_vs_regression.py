"""Evidence for stage 1: the VAR against the Splatter-Image-like regression baseline on held-out procedural scenes.

Both train with the same data, renderer, losses, batch and number of steps (the CPU presets at 64x64), then
ns-eval scores the test split (frame 0 the input, all other frames targets). Writes
benchmarks/results/var_vs_regression.json and benchmarks/results/var_vs_regression.png
(per scene: input | regression, VAR, ground truth from 3 novel views).

    python benchmarks/var_vs_regression.py [--iterations 900] [--data data/procedural]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label, latest_step, tool  # noqa: E402

METHODS = {"regression": "splatdiff-regression-small", "var": "splatdiff-var-small"}
KEYS = ("psnr", "ssim", "psnr_objects", "ssim_objects", "psnr_visible", "psnr_occluded", "psnr_objects_visible",
        "psnr_objects_occluded", "psnr_input", "lpips", "num_scenes")  # fmt: skip


def ensure_data(data: Path) -> None:
    if (data / "procedural" / "frame_annotations.jgz").is_file():
        return
    subprocess.run([tool("splatdiff-make-procedural"), "--output", str(data), "--scenes", "200", "--views", "24",
                    "--resolution", "128", "--seed", "0", "--workers", "2", "--preview"], check=True)  # fmt: skip


def train(method: str, data: Path, out: Path, iterations: int) -> tuple[Path, float]:
    t0 = time.perf_counter()
    cmd = [tool("ns-train"), method, "--max-num-iterations", str(iterations), "--vis", "tensorboard",
           "--output-dir", str(out), "--experiment-name", "var_vs_regression", "--timestamp", "run",
           "--steps-per-eval-image", "100000", "--steps-per-eval-batch", "100000", "--steps-per-save", "500",
           "co3d-data", "--data", str(data)]  # fmt: skip
    subprocess.run(cmd, check=True)
    return out / "var_vs_regression" / method / "run" / "config.yml", time.perf_counter() - t0


def evaluate(config: Path, out: Path) -> dict:
    subprocess.run([tool("ns-eval"), "--load-config", str(config), "--output-path", str(out),
                    "--render-output-path", str(out.with_suffix(""))], check=True)  # fmt: skip
    return json.loads(out.read_text())["results"]


@torch.no_grad()
def figure(configs: dict[str, Path], path: Path, num_scenes: int = 6, num_views: int = 3) -> None:
    """Rows: scenes. Columns: input, then for each of 3 novel views regression | VAR | ground truth."""
    from nerfstudio.utils.eval_utils import eval_setup

    from nerfstudio_splatdiff.splats.images import contact_sheet, save_png

    pipes = {name: eval_setup(cfg, test_mode="test")[1] for name, cfg in configs.items()}
    loader = pipes["var"].datamanager.fixed_indices_eval_dataloader
    rows = []
    for i in range(min(num_scenes, len(loader))):
        _, batch = loader.get(i)
        preds = {name: p.model.evaluate_scene(batch)[1]["pred"] for name, p in pipes.items()}
        n = batch["images"].shape[1]
        views = torch.linspace(n // 4, 3 * n // 4, num_views).round().long().tolist()  # the far side of the orbit
        row = [batch["images"][0, 0]]
        for v in views:
            row += [preds["regression"][v], preds["var"][v], batch["images"][0, v]]
        rows.append(row)
    save_png(path, contact_sheet(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=900)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "procedural")
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "evidence")
    ap.add_argument("--var-config", type=Path, help="an existing VAR run to evaluate (skips its training)")
    ap.add_argument("--regression-config", type=Path, help="an existing regression run to evaluate (skips its training)")
    ap.add_argument("--train-seconds", type=float, help="wall time of the reused runs' training, for the record")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    ensure_data(args.data)
    configs, results, times, steps = {}, {}, {}, {}
    given = {"var": args.var_config, "regression": args.regression_config}
    for name, method in METHODS.items():
        if given[name] is not None:
            configs[name], times[name] = given[name], args.train_seconds
        else:
            configs[name], times[name] = train(method, args.data, args.work, args.iterations)
        steps[name] = latest_step(configs[name])
        results[name] = evaluate(configs[name], args.work / f"eval_{name}.json")
    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    figure(configs, out_dir / "var_vs_regression.png")
    r, v = results["regression"], results["var"]
    summary = {
        "date": date.today().isoformat(),
        "device": device_label(),
        "data": "procedural, 200 scenes x 24 views (seed 0), trained at 64x64; test split = held-out scenes",
        "protocol": "frame 0 of each test scene is the input, every other frame a target (Splatter Image)",
        "iterations": steps,
        "train_seconds": times,
        "methods": METHODS,
        "metrics": {name: {k: res[k] for k in KEYS if k in res} for name, res in results.items()},
        "lpips_note": r.get("lpips_note"),
        "targets": {
            "var_visible_psnr_within_0.5db_of_regression": v["psnr_visible"] >= r["psnr_visible"] - 0.5,
            "both_objects_psnr_at_least_20db": min(v["psnr_objects"], r["psnr_objects"]) >= 20.0,
        },
        "figure": "benchmarks/results/var_vs_regression.png",
    }
    (out_dir / "var_vs_regression.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
