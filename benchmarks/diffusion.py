"""Evidence for stage 2: latent diffusion against the regression baseline and the VAR on held-out procedural scenes.

Trains `splatdiff-diffusion-small` over the VAR from benchmarks/var_vs_regression.py, then scores every test scene
(frame 0 the input, all other frames targets) for regression, VAR, diffusion with 1 sample and diffusion best-of-N
(chosen per scene by PSNR over the targets), split into the regions the input saw (visible) and did not (occluded).
Also: diversity, seconds per sample, back-side mode coverage, and high-frequency energy (blur) in the occluded
region. Writes benchmarks/results/diffusion.json and two figures.

    python benchmarks/diffusion.py [--iterations 800] [--num-samples 20]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label, latest_step, tool  # noqa: E402

EVIDENCE = ROOT / "outputs" / "evidence" / "var_vs_regression"
MODE_RULE = ("back view = the frame whose camera is farthest in azimuth from the input; mean RGB of the sample's "
             "render over the ground-truth object mask of that view, normalised to unit brightness, assigned to the "
             "nearest (Euclidean) normalised mode colour of the generator's palette; renders whose normalised colour "
             "is within 0.2 of grey (no hue to speak of) show no mode (-1)")  # fmt: skip
MIN_CHROMA = 0.2


def train_diffusion(data: Path, var_config: Path, out: Path, iterations: int) -> tuple[Path, float]:
    t0 = time.perf_counter()
    subprocess.run([tool("ns-train"), "splatdiff-diffusion-small", "--max-num-iterations", str(iterations),
                    "--vis", "tensorboard", "--output-dir", str(out), "--experiment-name", "diffusion", "--timestamp", "run",
                    "--steps-per-eval-image", "100000", "--steps-per-eval-batch", "100000", "--steps-per-save", "500",
                    "--pipeline.model.var-checkpoint", str(var_config), "co3d-data", "--data", str(data)], check=True)  # fmt: skip
    return out / "diffusion" / "splatdiff-diffusion-small" / "run" / "config.yml", time.perf_counter() - t0


def shown(path: Path) -> str:
    """A path as recorded in the results: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def laplacian_energy(img: torch.Tensor, region: torch.Tensor) -> float:
    """Mean squared Laplacian (a high-frequency energy) of images [V,H,W,3] over a region [V,H,W,1]."""
    k = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).to(img)[None, None].repeat(3, 1, 1, 1)
    lap = F.conv2d(img.permute(0, 3, 1, 2), k, padding=1, groups=3).permute(0, 2, 3, 1)
    r = region.to(img.dtype)
    return float(((lap**2).mean(-1, keepdim=True) * r).sum() / r.sum().clamp(min=1))


def classify_mode(img: torch.Tensor, mask: torch.Tensor, palette: np.ndarray) -> int:
    m = mask[..., 0] > 0.5
    if m.sum() == 0:
        return -1
    c = img[m].mean(0).cpu().numpy()
    c = c / max(np.linalg.norm(c), 1e-6)
    if np.linalg.norm(c - 1 / np.sqrt(3)) < MIN_CHROMA:
        return -1  # a grey blur shows no mode
    p = palette / np.linalg.norm(palette, axis=1, keepdims=True)
    return int(np.argmin(np.linalg.norm(p - c, axis=1)))


def back_view(c2w: torch.Tensor) -> int:
    """The frame whose viewing direction is most opposite to the input's (view 0)."""
    fwd = c2w[:, :3, 2]
    return int(torch.argmin(fwd @ fwd[0]))


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=800)
    ap.add_argument("--num-samples", type=int, default=20)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "procedural")
    ap.add_argument("--max-scenes", type=int, default=None)
    ap.add_argument("--var-config", type=Path, default=EVIDENCE / "splatdiff-var-small" / "run" / "config.yml")
    ap.add_argument("--regression-config", type=Path, default=EVIDENCE / "splatdiff-regression-small" / "run" / "config.yml",
                    help="the regression baseline run; 'none' leaves the baseline out (its columns and targets)")
    ap.add_argument("--diffusion-config", type=Path, help="an existing diffusion run to evaluate (skips training)")
    ap.add_argument("--train-seconds", type=float, help="wall time of the reused diffusion run's training, for the record")
    ap.add_argument("--guidance-weight", type=float, help="override the run's guidance weight for the samples")
    ap.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from nerfstudio.utils.eval_utils import eval_setup
    from rich.progress import track

    from nerfstudio_splatdiff.data.procedural.generate import mode_palette
    from nerfstudio_splatdiff.models.metrics import psnr, visibility_masks
    from nerfstudio_splatdiff.splats.images import contact_sheet, save_png

    var_cfg = args.var_config
    reg_cfg = None if str(args.regression_config).lower() == "none" else args.regression_config
    baselines = ("regression", "var") if reg_cfg is not None else ("var",)
    if args.diffusion_config is not None:
        diff_cfg, train_s = args.diffusion_config, args.train_seconds
    else:
        diff_cfg, train_s = train_diffusion(args.data, var_cfg, ROOT / "outputs" / "evidence", args.iterations)
    pipes = {name: eval_setup(cfg, test_mode="test")[1] for name, cfg in
             (("regression", reg_cfg), ("var", var_cfg), ("diffusion", diff_cfg)) if cfg is not None}  # fmt: skip
    diff = pipes["diffusion"].model
    if args.guidance_weight is not None:
        diff.config.guidance_weight = args.guidance_weight
    loader = pipes["diffusion"].datamanager.fixed_indices_eval_dataloader
    scenes = pipes["diffusion"].datamanager.eval_scenes
    n_scenes = min(len(loader), args.max_scenes or len(loader))
    rows: dict[str, list] = {k: [] for k in (*baselines, "diffusion_1", f"diffusion_best_of_{args.num_samples}")}
    hf: dict[str, list] = {k: [] for k in (*baselines, "diffusion_1", "ground_truth")}
    modes_per_input, diversity, div_vis, div_occ, sec = [], [], [], [], []
    fig_rows = []
    for i in track(range(n_scenes), description="scoring held-out scenes"):
        _, batch = loader.get(i)
        gt = batch["images"][0]
        vis, occ = visibility_masks(batch["depths"][0], batch["c2w"][0], batch["K"][0])
        vis, occ = vis[1:], occ[1:]
        obj = batch["masks"][0, 1:] > 0.5
        preds = {name: pipes[name].model.evaluate_scene(batch)[1]["pred"] for name in baselines}
        dm, dimg = diff.evaluate_scene(batch, num_samples=args.num_samples)
        samples = dimg["samples"]  # [N, V, H, W, 3]
        best = int(torch.stack([psnr(s[1:], gt[1:]) for s in samples]).argmax())
        preds["diffusion_1"] = samples[0]
        preds[f"diffusion_best_of_{args.num_samples}"] = samples[best]
        for name, p in preds.items():
            t = p[1:]
            rows[name].append({
                "psnr": float(psnr(t, gt[1:])), "psnr_visible": float(psnr(t, gt[1:], vis)),
                "psnr_occluded": float(psnr(t, gt[1:], occ)),
                "psnr_objects": float(psnr(t * batch["masks"][0, 1:], gt[1:] * batch["masks"][0, 1:])),
                "psnr_objects_visible": float(psnr(t, gt[1:], vis & obj)),
                "psnr_objects_occluded": float(psnr(t, gt[1:], occ & obj)),
            })  # fmt: skip
        for name in (*baselines, "diffusion_1"):
            hf[name].append(laplacian_energy(preds[name][1:], occ & obj))
        hf["ground_truth"].append(laplacian_energy(gt[1:], occ & obj))
        diversity.append(dm["diversity"]), div_vis.append(dm["diversity_visible"]), div_occ.append(dm["diversity_occluded"])
        sec.append(dm["seconds_per_sample"])
        b = back_view(batch["c2w"][0])
        palette = mode_palette(int(scenes[i].meta.get("num_modes", 3)))
        found = [classify_mode(s[b], batch["masks"][0, b], palette) for s in samples]
        modes_per_input.append({"scene": scenes[i].name, "true_mode": scenes[i].meta.get("back_mode"), "sample_modes": found,
                                "baseline_modes": {n: classify_mode(preds[n][b], batch["masks"][0, b], palette) for n in baselines}})  # fmt: skip
        if len(fig_rows) < 6:
            fig_rows.append([gt[0]] + [preds[n][b] for n in baselines] + [samples[k][b] for k in range(4)] + [gt[b]])
    out_dir = args.out_dir
    save_png(out_dir / "diffusion_back_views.png", contact_sheet(fig_rows))
    # guidance x skip grid for one scene (back view).
    _, batch = loader.get(0)
    b = back_view(batch["c2w"][0])
    grid = []
    for w in (0.0, 0.5, 2.0):
        row = []
        for k in (1.0, 0.5, 0.0):
            g = diff.sample(batch, 1, guidance_weight=w, skip_weight=k, seed=0)
            row.append(diff.render_views(g, batch["c2w"][:, b : b + 1], batch["K"][:, b : b + 1], gt.shape[1])["rgb"][0, 0])
        grid.append(row)
    save_png(out_dir / "diffusion_guidance_skip_grid.png", contact_sheet(grid))

    def mean(rs, k):
        vals = np.array([r[k] for r in rs], dtype=np.float64)
        return float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")

    table = {name: {k: mean(rs, k) for k in rs[0]} for name, rs in rows.items()}
    best_key = f"diffusion_best_of_{args.num_samples}"
    distinct = [len({m for m in r["sample_modes"] if m >= 0}) for r in modes_per_input]
    covered = [r["true_mode"] in r["sample_modes"] for r in modes_per_input]
    summary = {
        "date": date.today().isoformat(),
        "device": device_label(),
        "data": "procedural test split (held-out scenes), 64x64, SI protocol",
        "iterations": {"diffusion": latest_step(diff_cfg), "var": latest_step(var_cfg), "regression": latest_step(reg_cfg) if reg_cfg else None},
        "diffusion_train_seconds": train_s, "var_context_view": bool(getattr(diff.var.config, "context_view", False)),
        "num_samples": args.num_samples, "sampler": f"{diff.config.scheduler}, {diff.config.num_steps} steps",
        "guidance_weight": diff.config.guidance_weight, "skip_weight": diff.config.skip_weight,
        "metrics": table,
        "diversity": {"all": float(np.mean(diversity)), "visible": float(np.mean(div_vis)), "occluded": float(np.mean(div_occ))},
        "seconds_per_sample": float(np.mean(sec)),
        "high_frequency_energy_occluded_objects": {k: float(np.mean(v)) for k, v in hf.items()},
        "mode_coverage": {"rule": MODE_RULE, "fraction_inputs_with_2plus_modes": float(np.mean([d >= 2 for d in distinct])),
                          "fraction_inputs_whose_true_mode_is_sampled": float(np.mean(covered)), "per_input": modes_per_input},
        "targets": {
            "best_of_n_occluded_psnr_beats_regression_by_1db": table[best_key]["psnr_occluded"] >= table["regression"]["psnr_occluded"] + 1 if reg_cfg else None,
            "best_of_n_occluded_psnr_beats_var_by_1db": table[best_key]["psnr_occluded"] >= table["var"]["psnr_occluded"] + 1,
            "one_sample_visible_within_0.5db_of_var": table["diffusion_1"]["psnr_visible"] >= table["var"]["psnr_visible"] - 0.5,
            "2plus_modes_for_80pct_inputs": float(np.mean([d >= 2 for d in distinct])) >= 0.8,
            "regression_occluded_blurrier_than_diffusion": float(np.mean(hf["regression"])) < float(np.mean(hf["diffusion_1"])) if reg_cfg else None,
        },
        "figures": {"back_views": f"{shown(out_dir)}/diffusion_back_views.png (input | {' | '.join(baselines)} | 4 samples | ground truth)",
                    "guidance_skip_grid": f"{shown(out_dir)}/diffusion_guidance_skip_grid.png (rows guidance 0, 0.5, 2; columns skip 1, 0.5, 0)"},
    }  # fmt: skip
    (out_dir / "diffusion.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "mode_coverage"}, indent=2))


if __name__ == "__main__":
    main()
