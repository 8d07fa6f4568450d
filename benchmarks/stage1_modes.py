"""Does stage 1 carry the hidden side? A quick check of a privileged-view VAR alone (no diffusion model needed).

For held-out proving-ground inputs (the forced-mode copies `benchmarks/proving_ground.py` uses), the VAR encodes
the input with each mode's privileged view. It reports
- `forced_mode_follows`: the rendered back view shows the mode of the privileged view it was given (K per input);
- `privileged_mode_accuracy`: the same for the true privileged view only;
- `latent_mode_gap` vs `posterior_std`: how far apart the latent means of the K modes are (mean absolute
  difference, per element and of the spatial mean) against the posterior noise; a gap well below the noise is
  what a decoder learns to ignore.
Run it on a training run's newest checkpoint while training goes on (one thread); writes JSON and prints a table.

    python benchmarks/stage1_modes.py [--run outputs/train-demo/demo/splatdiff-var-small/run] [--scenes 10]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label, latest_step  # noqa: E402
from proving_ground import SEED  # noqa: E402


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run", type=Path, default=ROOT / "outputs" / "train-demo" / "demo" / "splatdiff-var-small" / "run"
    )
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--work", type=Path, default=ROOT / "outputs" / "proving_ground_eval")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "stage1_modes.json")
    ap.add_argument("--figure", type=Path, default=None, help="also save back views of 6 inputs: K true, K rendered")
    ap.add_argument("--threads", type=int, default=1, help="leave the other core to a training run")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from rich.console import Console

    from nerfstudio_splatdiff.completions import held_out_inputs
    from nerfstudio_splatdiff.models.privileged import privileged_inputs
    from nerfstudio_splatdiff.runs import load_inference_model

    config = args.run / "config.yml"
    model, _ = load_inference_model(config)
    net = model.eval_net()
    if not getattr(model, "is_var", False) or not net.has_privileged_branch:
        raise SystemExit(f"{config} is not a VAR with a privileged view (splatdiff-var-small).")
    size = model.config.image_size
    items = held_out_inputs(args.work, 20, SEED, size, 3, cache=args.work / "cache")[: args.scenes]
    follows, right, gaps, pooled_gaps, stds, rows = [], [], [], [], [], []
    for item in items:
        batch = item.batch
        means, row = [], [b["images"][0, item.back] for b in item.batches]
        for k, forced in enumerate(item.batches):
            out = model.reconstruct(
                batch, net=net, skip_weight=1.0, sample_latent=False, privileged=privileged_inputs(forced)
            )
            g = out["gaussians"]
            back = model.render_views(g, batch["c2w"], batch["K"], size)["rgb"][0, item.back]
            mode = item.judge(back)
            row.append(back)
            follows.append(mode == k)
            if k == item.true_mode:
                right.append(mode == k)
            means.append(out["latent_mean"][0])
            stds.append(float(torch.exp(0.5 * out["latent_logvar"]).mean()))
        rows.append(row)
        for a, b in itertools.combinations(means, 2):
            gaps.append(float((a - b).abs().mean()))
            pooled_gaps.append(float((a.mean(dim=(1, 2)) - b.mean(dim=(1, 2))).abs().mean()))
    result = {
        "device": device_label(),
        "date": date.today().isoformat(),
        "run": str(args.run),
        "step": latest_step(config) + 1,
        "scenes": len(items),
        "forced_mode_follows": float(np.mean(follows)),
        "privileged_mode_accuracy": float(np.mean(right)),
        "latent_mode_gap": float(np.mean(gaps)),
        "latent_mode_gap_spatial_mean": float(np.mean(pooled_gaps)),
        "posterior_std": float(np.mean(stds)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    Console().print(result)
    if args.figure is not None:
        from nerfstudio_splatdiff.splats.images import contact_sheet, save_png

        save_png(args.figure, contact_sheet(rows[:6]))


if __name__ == "__main__":
    main()
