"""Does stage 1 carry the hidden side? A quick check of a privileged-view VAR alone (no diffusion model needed).

For held-out proving-ground inputs (the forced-mode copies `benchmarks/proving_ground.py` uses), the VAR encodes
the input with each mode's privileged view. It reports
- `forced_mode_follows`: the rendered back view shows the mode of the privileged view it was given (K per input);
- `privileged_mode_accuracy`: the same for the true privileged view only;
- `latent_mode_gap` vs `posterior_std`: how far apart the latent means of the K modes are (mean absolute
  difference, per element and of the spatial mean) against the posterior noise; a gap well below the noise is
  what a decoder learns to ignore.
Run it on a training run's newest checkpoint while training goes on (one thread); writes JSON and prints a table.

On the geometry proving ground (`--modes shape`) the modes are judged by silhouette and depth (completions.SHAPE_RULE),
and it also reports the true privileged view's hidden-side silhouette IoU and depth error against the true shape.
`--split train` scores the first 20 TRAINING scenes instead (seed 0, the data stage's; nothing is chosen there): beside
val it tells recall from fitting, since a VAR that recalls hidden sides by scene follows far better there, while misses
on both say the network cannot draw what the privileged view says.

    python benchmarks/stage1_modes.py [--run outputs/train-demo/demo/splatdiff-var-small/run] [--scenes 10]
    python benchmarks/stage1_modes.py --modes shape --run outputs/train-shape/demo/splatdiff-var-small/run
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
from proving_ground import SPLITS, TRAIN_SPLIT, geometry_vs_truth, laplacian_energy, per_image_psnr  # noqa: E402

STAGE1_SPLITS = {**SPLITS, "train": TRAIN_SPLIT}
"""The held-out splits, and `train`: the first 20 training scenes (proving_ground.TRAIN_SPLIT)."""


@torch.no_grad()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--run", type=Path, default=ROOT / "outputs" / "train-demo" / "demo" / "splatdiff-var-small" / "run"
    )
    ap.add_argument("--scenes", type=int, default=10)
    ap.add_argument("--modes", choices=("colour", "shape"), default="colour", help="which proving ground")
    ap.add_argument(
        "--split",
        choices=tuple(STAGE1_SPLITS),
        default="val",
        help="val: choose here; test: report here; train: the first 20 training scenes (fit, not generalisation)",
    )
    ap.add_argument(
        "--split-scenes",
        type=int,
        default=None,
        help="draw this many scenes from the split's seed instead of its own 20 / 24 (a larger, less noisy val: "
        "the first ones are the split's own, none was trained on); then --work defaults to <modes>_<split><N>",
    )
    ap.add_argument("--work", type=Path, default=None, help="default: outputs/proving_ground_eval/<modes>_<split>")
    ap.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/stage1_modes[_shape].json")
    ap.add_argument(
        "--figure", type=Path, default=None, help="also save the judged views of 6 inputs: K true, then K rendered"
    )
    ap.add_argument("--threads", type=int, default=1, help="leave the other core to a training run")
    ap.add_argument(
        "--history",
        type=Path,
        default=None,
        help="also append the result to this JSON list (a training run's checkpoints, compared on the val split)",
    )
    ap.add_argument("--note", default="", help="what this checkpoint is (recorded in the JSON)")
    args = ap.parse_args()
    seed, split_scenes = STAGE1_SPLITS[args.split]
    folder = f"{args.modes}_{args.split}"
    if args.split_scenes is not None:
        if args.split == "train" or args.split_scenes < 1:
            raise SystemExit("Pass --split-scenes a count of 1 or more, with --split val or test.")
        split_scenes = args.split_scenes
        folder += str(split_scenes)
    args.work = args.work or ROOT / "outputs" / "proving_ground_eval" / folder
    suffix = "" if (args.modes, args.split) == ("colour", "val") else f"_{args.modes}_{args.split}"
    args.out = args.out or ROOT / "benchmarks" / "results" / f"stage1_modes{suffix}.json"
    torch.set_num_threads(args.threads)
    from rich.console import Console

    from nerfstudio_splatdiff.completions import held_out_inputs
    from nerfstudio_splatdiff.data.multiscene import hidden_side_frames
    from nerfstudio_splatdiff.models.privileged import privileged_inputs
    from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

    config = args.run / "config.yml"
    model, run = load_inference_model(config)
    net = model.eval_net()
    if not getattr(model, "is_var", False) or not net.has_privileged_branch:
        raise SystemExit(f"{config} is not a VAR with a privileged view (splatdiff-var-small).")
    size = model.config.image_size
    items = held_out_inputs(
        args.work,
        split_scenes,
        seed,
        size,
        3,
        cache=args.work / "cache",
        mode_kind=args.modes,
        depth_range=run_depth_range(run),
    )[: args.scenes]
    follows, right, gaps, pooled_gaps, stds, rows, geometry, psnr_in = [], [], [], [], [], [], [], []
    hf: dict[str, list[tuple[float, float]]] = {"input": [], "hidden": []}  # (render, truth) per input
    judged: dict[int, list[int]] = {k: [] for k in range(3)}  # forced mode -> the modes its renders were judged
    for item in items:
        batch = item.batch
        views = item.shape_judge.views if args.modes == "shape" else [item.back]
        means, row = [], [b["images"][0, v] for b in item.batches for v in views]
        for k, forced in enumerate(item.batches):
            out = model.reconstruct(
                batch, net=net, skip_weight=1.0, sample_latent=False, privileged=privileged_inputs(forced)
            )
            g = out["gaussians"]
            rendered = {key: v[0] for key, v in model.render_views(g, batch["c2w"], batch["K"], size).items()}
            mode = item.mode_of(rendered)
            row += [rendered["rgb"][v] for v in views]
            follows.append(mode == k)
            judged[k].append(mode)
            if k == item.true_mode:
                right.append(mode == k)
                geometry.append(geometry_vs_truth(item, rendered))
                m = batch["masks"][0, :1]
                psnr_in.append(per_image_psnr(rendered["rgb"][:1] * m, batch["images"][0, :1] * m)[0])
                hidden = [v for v in hidden_side_frames(batch["c2w"][0]) if v > 0]
                for part, vs in (("input", [0]), ("hidden", hidden)):
                    region = batch["masks"][0, vs] > 0.5
                    truth = laplacian_energy(batch["images"][0, vs], region)
                    hf[part].append((laplacian_energy(rendered["rgb"][vs], region), truth))
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
        "forced_mode_judged": {
            f"forced_{k}": {str(m): v.count(m) for m in sorted(set(v))} for k, v in judged.items()
        },  # per forced mode: how its renders were judged (-1 = none)
        "privileged_mode_accuracy": float(np.mean(right)),
        "latent_mode_gap": float(np.mean(gaps)),
        "latent_mode_gap_spatial_mean": float(np.mean(pooled_gaps)),
        "posterior_std": float(np.mean(stds)),
        "proving_ground": args.modes,
        "split": args.split,
        "split_seed": seed,  # the scenes are the first `scenes` of this seed's
        "psnr_objects_input": float(np.mean(psnr_in)),
        **{  # how many times less high-frequency energy the render has than the truth (proving_ground.py's measure)
            f"hf_energy_{part}_below_truth": float(np.nanmean([t for _, t in v]) / np.nanmean([r for r, _ in v]))
            for part, v in hf.items()
        },
        **{key: float(np.nanmean([g[key] for g in geometry])) for key in geometry[0]},
        "note": args.note,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    if args.history is not None:
        past = json.loads(args.history.read_text()) if args.history.is_file() else []
        args.history.parent.mkdir(parents=True, exist_ok=True)
        args.history.write_text(json.dumps(past + [result], indent=2))
    Console().print(result)
    if args.figure is not None:
        from nerfstudio_splatdiff.splats.images import contact_sheet, save_png

        save_png(args.figure, contact_sheet(rows[:6]))


if __name__ == "__main__":
    main()
