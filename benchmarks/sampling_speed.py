"""Speed of the whole single-image sampler: N latents x `steps` DDIM steps in one batched denoiser call per step,
decoded by the VAR into N Gaussian scenes, each rendered once from the input camera.

Networks come from the method presets in method_configs/ (the paper size by default) with random weights: speed
does not depend on what the weights learned. Prints a table and writes JSON with the device and date.

    python benchmarks/sampling_speed.py --preset paper --num-samples 20 --steps 50 \
        --json benchmarks/results/sampling_speed.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import date
from pathlib import Path

import torch


def device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=("paper", "small"), default="paper")
    ap.add_argument("--num-samples", type=int, default=20)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance-weight", type=float, default=0.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from method_configs.splatdiff_methods import (
        splatdiff_diffusion,
        splatdiff_diffusion_small,
        splatdiff_var,
        splatdiff_var_small,
    )
    from nerfstudio_splatdiff.models.sampling import NoiseSchedule, sample_latents
    from nerfstudio_splatdiff.splats import render_gaussians

    var_spec, diff_spec = (
        (splatdiff_var, splatdiff_diffusion)
        if args.preset == "paper"
        else (splatdiff_var_small, splatdiff_diffusion_small)
    )
    dev = torch.device(args.device)
    size = diff_spec.config.pipeline.model.image_size
    var = var_spec.config.pipeline.model.network.setup().to(dev).eval()
    den = diff_spec.config.pipeline.model.denoiser.setup().to(dev).eval()
    bf16 = dev.type == "cuda"
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    N = args.num_samples
    image = torch.rand(1, 3, size, size, device=dev)
    K = torch.tensor([[1.2 * size, 0, size / 2], [0, 1.2 * size, size / 2], [0, 0, 1]], device=dev)
    c2w = torch.eye(4, device=dev)

    def call(x, t, c):
        with autocast():
            return den(x, t, c).float()

    def run() -> dict:
        times = {}
        sync(dev)
        t0 = time.perf_counter()
        with autocast():
            mean, _, skip = var.encode(image)
        z = sample_latents(call, mean.float(), N, NoiseSchedule(), "ddim", args.steps, args.guidance_weight, seed=0)[0]
        sync(dev)
        times["denoise_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        with autocast():
            raw = var.decode_raw(z, skip.expand(N, *skip.shape[1:]), 1.0)
        g = var.head(
            raw.float(),
            c2w.expand(N, 4, 4),
            K.expand(N, 3, 3),
            torch.full((N,), 1.0, device=dev),
            torch.full((N,), 3.0, device=dev),
        )
        out = render_gaussians(g, torch.eye(4, device=dev).expand(N, 1, 4, 4), K.expand(N, 1, 3, 3), size, size)
        sync(dev)
        times["decode_render_s"] = time.perf_counter() - t1
        times["total_s"] = time.perf_counter() - t0
        assert torch.isfinite(out.rgb).all()
        return times

    run()  # warm-up (cuDNN autotune, allocator)
    runs = [run() for _ in range(args.repeats)]
    best = min(runs, key=lambda r: r["total_s"])
    result = {
        "date": date.today().isoformat(),
        "device": device_name(dev),
        "preset": args.preset,
        "image_size": size,
        "num_samples": N,
        "steps": args.steps,
        "guidance_weight": args.guidance_weight,
        "scheduler": "ddim",
        "bf16": bf16,
        "repeats": args.repeats,
        "best": best,
        "seconds_per_sample": best["total_s"] / N,
        "denoiser_params_M": sum(p.numel() for p in den.parameters()) / 1e6,
        "var_params_M": sum(p.numel() for p in var.parameters()) / 1e6,
        "paper_reference": {"seconds_per_sample": 2.7, "seconds_for_20": 54.0},
    }
    print(
        f"{'device':<28}{'preset':<8}{'size':>6}{'N':>5}{'steps':>7}{'denoise s':>11}"
        f"{'decode+render s':>17}{'total s':>9}{'s/sample':>10}"
    )
    print(
        f"{result['device'][:27]:<28}{args.preset:<8}{size:>6}{N:>5}{args.steps:>7}{best['denoise_s']:>11.3f}"
        f"{best['decode_render_s']:>17.3f}{best['total_s']:>9.3f}{result['seconds_per_sample']:>10.4f}"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
