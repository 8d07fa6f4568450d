"""Fewer pairs: does an opacity (or scale) regulariser cut the rasteriser's work without costing quality?

Each variant continues the shipped splatdiff-var-small (a weights-only warm start from
checkpoints/demo/splatdiff-var-small) for the same number of steps on the proving-ground data, once without a
regulariser (`control`: the fair comparison, same steps) and once per regulariser setting. Then, on the proving
ground's held-out inputs (the true privileged view, as `var` in proving_ground.py), it measures per variant
- pairs per pixel: (Gaussian, pixel) overlaps with alpha >= 1/255, counted by the torch rasteriser, over all views;
- the training rasteriser's cost: numba forward + backward of 8 scenes x 4 views at 64x64, milliseconds;
- quality: PSNR over the targets (full, objects, objects on the hidden side) and object PSNR in the input view;
- opacities: mean, and the share of Gaussians below 1/255 (they cost nothing); the median size (largest axis) of
  the others, in input-view pixels and in the world.
Writes benchmarks/results/fewer_pairs_<device>.json (device and date inside) and prints a table.

    python benchmarks/fewer_pairs.py [--steps 300] [--scenes 20] [--measure-only]

Training runs go to outputs/fewer-pairs and resume when run again (a finished variant is skipped). The shipped
checkpoint itself is measured too (`shipped`), so each variant's change can be read against its starting point.
The committed results (2026-11-26) started from the 2,900-step VAR when the small preset capped scales at 2 pixels;
the preset caps them at 1 pixel since (that study's outcome), so `control` now has the 1-pixel cap and
`scale_cap_2px` is the other side of the comparison.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label, latest_step, tool  # noqa: E402
from proving_ground import SPLITS, scores  # noqa: E402

SEED = SPLITS["val"][0]  # choices are made on the validation split

METHOD = "splatdiff-var-small"
SHIPPED = ROOT / "checkpoints/demo" / METHOD / "shipped" / "config.yml"
VARIANTS = {
    "control": [],
    "opacity_0.01": ["--pipeline.model.opacity-reg-weight", "0.01"],
    "opacity_0.05": ["--pipeline.model.opacity-reg-weight", "0.05"],
    # (the network config is a tyro subcommand: flags after it apply to it)
    "scale_cap_1px": ["pipeline.model.network:var-net-config", "--pipeline.model.network.head.max-scale-px", "1.0"],
    "scale_cap_2px": ["pipeline.model.network:var-net-config", "--pipeline.model.network.head.max-scale-px", "2.0"],
}
"""Variant name -> the ns-train flags it adds to the preset (all start from the shipped weights)."""


def run_config(out: Path, name: str) -> Path:
    return out / "fewer-pairs" / METHOD / name / "config.yml"


def train(out: Path, data: Path, name: str, flags: list[str], steps: int) -> None:
    """Train (or resume, or skip when finished) one variant: `steps` steps after the shipped checkpoint's."""
    start = latest_step(SHIPPED)
    config = run_config(out, name)
    done = latest_step(config) if config.is_file() else -1
    if done >= start + steps:
        print(f"{name}: finished (step {done}), skipping")
        return
    if done > start:
        first = ["--load-dir", str(config.parent / "nerfstudio_models")]
    else:
        first = ["--load-checkpoint", str(next((SHIPPED.parent / "nerfstudio_models").glob("step-*.ckpt")))]
        done = start
    cmd = [tool("ns-train"), METHOD, "--max-num-iterations", str(start + steps - done), "--vis", "tensorboard"]
    cmd += ["--output-dir", str(out), "--experiment-name", "fewer-pairs", "--timestamp", name, *first]
    cmd += ["--steps-per-save", "100", *flags, "co3d-data", "--data", str(data)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def raster_ms(gaussians, c2w, K, size: int, repeats: int = 9) -> float:
    """Median milliseconds of one numba forward + backward over these scenes' views (as in a training step)."""
    from nerfstudio_splatdiff.splats.cameras import invert_rigid
    from nerfstudio_splatdiff.splats.render import render_gaussians

    times = []
    for _ in range(repeats + 1):
        g = gaussians.map(lambda t: t.detach().clone().requires_grad_(True))
        t0 = time.perf_counter()
        out = render_gaussians(g, invert_rigid(c2w), K, size, size, backend="numba")
        (out.rgb.sum() + out.alpha.sum()).backward()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times[1:]))


def measure(name: str, config: Path, inputs, size: int) -> dict:
    """Pairs, rasteriser time, quality and opacities of one VAR run on the held-out inputs."""
    from nerfstudio_splatdiff.data.multiscene import hidden_side_frames
    from nerfstudio_splatdiff.models.privileged import privileged_inputs
    from nerfstudio_splatdiff.runs import load_inference_model
    from nerfstudio_splatdiff.splats import Gaussians
    from nerfstudio_splatdiff.splats.cameras import invert_rigid
    from nerfstudio_splatdiff.splats.rasterize_torch import rasterize_torch

    model, step = load_inference_model(config)[0], latest_step(config)
    rows, pairs, pixels, opac, faint, recs, sizes, world = [], 0, 0, [], [], [], [], []
    bg = torch.tensor(model.config.background_color)
    for item in inputs:
        batch = item.batch
        with torch.no_grad():
            g = model.reconstruct(
                batch, net=model.eval_net(), skip_weight=1.0, sample_latent=False, privileged=privileged_inputs(batch)
            )["gaussians"]
            stats: dict = {}
            V = batch["c2w"].shape[1]
            viewmats, Ks = invert_rigid(batch["c2w"].float()), batch["K"].float()
            rgb, _, _ = rasterize_torch(
                g.means, g.quats, g.scales, g.opacities, g.colors, viewmats, Ks, size, size, bg.expand(1, V, 3),
                stats=stats,
            )  # fmt: skip
        pairs += stats["num_pairs"]
        pixels += V * size * size
        hidden = [v for v in hidden_side_frames(batch["c2w"][0]) if v > 0]
        rows.append(scores(rgb[0], batch, hidden))
        opac.append(float(g.opacities.mean()))
        seen = g.opacities[0] >= 1 / 255  # the Gaussians that can cost pairs: their size in input-view pixels
        px = g.scales[0].amax(-1) * batch["K"][0, 0, 0, 0] / g.means[0, :, 2].clamp(min=1e-3)
        sizes.append(px[seen])
        world.append(g.scales[0].amax(-1)[seen])
        faint.append(float((g.opacities < 1 / 255).float().mean()))
        recs.append((g, batch["c2w"][:, :4].float(), batch["K"][:, :4].float()))
    # the training rasteriser's cost: 8 scenes x 4 views (input + 3 targets), as one splatdiff-var-small step
    eight = recs[:8]
    g8 = Gaussians.cat([r[0] for r in eight])
    ms = raster_ms(g8, torch.cat([r[1] for r in eight]), torch.cat([r[2] for r in eight]), size)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return {
        "step": step,
        "pairs_per_pixel": pairs / pixels,
        "raster_fwd_bwd_ms_8x4": ms,
        "mean_opacity": float(np.mean(opac)),
        "faint_share": float(np.mean(faint)),
        "median_scale_px": float(torch.cat(sizes).median()),
        "median_scale_world": float(torch.cat(world).median()),
        **mean,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="training steps per variant after the shipped ones")
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "proving")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "fewer-pairs")
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "proving_ground_eval")
    ap.add_argument("--measure-only", action="store_true", help="measure the variants trained so far")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not SHIPPED.is_file():
        raise SystemExit(f"No shipped VAR at {SHIPPED}.")
    if not args.measure_only:
        if not (args.data / "procedural" / "frame_annotations.jgz").is_file():
            raise SystemExit(f"No proving-ground data at {args.data}: run `benchmarks/train_demo.sh data` first.")
        for name, flags in VARIANTS.items():
            train(args.out, args.data, name, flags, args.steps)

    from rich.console import Console
    from rich.table import Table

    from nerfstudio_splatdiff.completions import held_out_inputs

    size = 64
    inputs = held_out_inputs(args.work, args.scenes, SEED, size, 3, cache=args.work / "cache")
    configs = {"shipped": SHIPPED, **{n: run_config(args.out, n) for n in VARIANTS}}
    results = {n: measure(n, c, inputs, size) for n, c in configs.items() if c.is_file()}
    device = device_label("cpu")
    report = {
        "device": device,
        "date": date.today().isoformat(),
        "steps_per_variant": args.steps,
        "scenes": len(inputs),
        "variants": {n: VARIANTS.get(n, "shipped checkpoint, no further training") for n in results},
        "results": results,
    }
    path = args.json or ROOT / "benchmarks" / "results" / f"fewer_pairs_{'cpu' if 'CPU' in device else 'cuda'}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    table = Table(title=f"fewer pairs ({device}, {len(inputs)} held-out inputs)")
    cols = ("step", "pairs_per_pixel", "raster_fwd_bwd_ms_8x4", "psnr", "psnr_objects", "psnr_objects_hidden",
            "psnr_objects_input", "mean_opacity", "faint_share", "median_scale_px")  # fmt: skip
    table.add_column("variant")
    for c in cols:
        table.add_column(c.replace("_", " "))
    for n, r in results.items():
        table.add_row(n, *[f"{r[c]:.4g}" for c in cols])
    Console().print(table)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
