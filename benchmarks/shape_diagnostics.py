"""Why does (or doesn't) a privileged VAR draw the hidden shape? Two checks on the geometry proving ground's inputs.

- `capacity`: can the Splatter Image itself hold the three shapes? No network: the splatter head's raw outputs for
  one input (M Gaussians per pixel, the preset's scale cap) are fitted directly, by Adam, to every evaluated view of
  each forced shape, then judged like a model's render (completions.ShapeJudge). If this fails, no VAR can succeed.
- `probe`: does the privileged branch tell the shapes apart? Each input is encoded with each shape's privileged view;
  the branch's correction of the latent (its spatial mean, centred per input) is classified by leave-one-out nearest
  centroid over all inputs. High accuracy with renders that ignore it means the decoder does not use the code; low
  accuracy means the branch does not extract the shape.
- `horns`: what a missed horn is. Each input is encoded with the horn's privileged view; on the horn-only pixels of
  the judged views (the horn's true mask minus the round back's) it reports, for followed and missed horns apart, the
  mean rendered opacity, the share of those pixels that are opaque (> 0.5), the share that are opaque AND within the
  judge's depth tolerance, and the blended depth's error there. Opaque but off in depth is a misplaced surface (too
  short, thick or off its axis) or a semi-transparent cloud (`losses.depth_spread_loss` tells them apart: on the
  shipped VAR, misplaced); transparent is a horn not drawn at all. It also reports how far back the TRUE
  horn reaches in the input camera (its horn-only surface points in every view, unprojected with the true depths)
  against the splatter depth range: a pixel's Gaussians sit at sigmoid(x) * (far - near) + near along its ray (plus a
  small offset), so what lies beyond `far` cannot be drawn, and what lies just before it only with a saturated sigmoid.
`--split train` runs a check on the first 20 training scenes (proving_ground.TRAIN_SPLIT): fit, not generalisation.

    python benchmarks/shape_diagnostics.py capacity [--inputs 3 --steps 50 --gaussians-per-pixel 2 --max-scale-px 1]
    python benchmarks/shape_diagnostics.py probe --run checkpoints/shape/splatdiff-var-small/shipped
    python benchmarks/shape_diagnostics.py horns --split train
Writes benchmarks/results/shape_<check>_<split>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label, latest_step  # noqa: E402
from proving_ground import SPLITS, TRAIN_SPLIT, geometry_vs_truth  # noqa: E402

DIAGNOSTIC_SPLITS = {**SPLITS, "train": TRAIN_SPLIT}
"""The held-out splits, and `train`: the first 20 training scenes (proving_ground.TRAIN_SPLIT)."""


def load_inputs(split: str, size: int = 64, depth_range: tuple[float, float] = (-1.0, 1.0)):
    """The split's inputs, with the splatter depth range of the run they are for (runs.run_depth_range)."""
    from nerfstudio_splatdiff.completions import held_out_inputs

    seed, scenes = DIAGNOSTIC_SPLITS[split]
    work = ROOT / "outputs" / "proving_ground_eval" / f"shape_{split}"
    return held_out_inputs(
        work, scenes, seed, size, 3, cache=work / "cache", mode_kind="shape", depth_range=depth_range
    )


def capacity(args) -> dict:
    """Fit raw splatter channels to each forced shape of the first `inputs` inputs; judge the fits."""
    from nerfstudio_splatdiff.models.splatter_head import SplatterHead, SplatterHeadConfig
    from nerfstudio_splatdiff.splats.cameras import invert_rigid
    from nerfstudio_splatdiff.splats.render import render_gaussians

    cap = None if args.max_scale_px <= 0 else args.max_scale_px
    head = SplatterHead(SplatterHeadConfig(gaussians_per_pixel=args.gaussians_per_pixel, max_scale_px=cap))
    init = torch.nn.Conv2d(1, head.out_channels, 1)
    head.init_output_layer(init)  # its biases: where the head's output layer starts every Gaussian
    fits, t0 = [], time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    for item in load_inputs(args.split)[: args.inputs]:
        for k, batch in enumerate(item.batches):
            size = batch["images"].shape[-2]
            noise = 0.3 * torch.randn(1, head.out_channels, size, size, generator=gen)
            raw = (init.bias.detach()[None, :, None, None] + noise).requires_grad_()
            opt = torch.optim.Adam([raw], lr=args.lr)
            viewmats, bg = invert_rigid(batch["c2w"].float()), torch.ones(3)

            def render():
                g = head(raw, batch["c2w"][:, 0], batch["K"][:, 0], batch["depth_near"], batch["depth_far"])
                return render_gaussians(g, viewmats, batch["K"].float(), size, size, background=bg)

            for _ in range(args.steps):
                out = render()
                loss = ((out.rgb - batch["images"]) ** 2).mean() + 0.1 * (out.alpha - batch["masks"]).abs().mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                out = render()
                rendered = {"rgb": out.rgb[0], "accumulation": out.alpha[0], "depth": out.depth[0]}
                item.true_mode = k  # score the fit against the shape it was fitted to
                fits.append(
                    {
                        "scene": item.name,
                        "shape": k,
                        "judged": item.mode_of(rendered),
                        **geometry_vs_truth(item, rendered),
                    }
                )
    return {
        "gaussians_per_pixel": args.gaussians_per_pixel,
        "max_scale_px": cap,
        "steps": args.steps,
        "fits": fits,
        "judged_as_fitted": float(np.mean([f["judged"] == f["shape"] for f in fits])),
        "hidden_silhouette_iou": float(np.mean([f["hidden_silhouette_iou"] for f in fits])),
        "shape_score": float(np.mean([f["shape_score"] for f in fits])),
        "seconds": time.perf_counter() - t0,
    }


@torch.no_grad()
def probe(args) -> dict:
    """Leave-one-out nearest-centroid accuracy of the privileged branch's latent correction (its spatial mean,
    centred per input), and the confusion matrix (rows: the shape shown, columns: the shape the probe calls)."""
    from nerfstudio_splatdiff.models.privileged import privileged_inputs
    from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

    model, run = load_inference_model(args.run / "config.yml")
    net = model.eval_net()
    if not net.has_privileged_branch:
        raise SystemExit(f"{args.run} is not a VAR with a privileged view.")
    codes = []
    for item in load_inputs(args.split, model.config.image_size, run_depth_range(run)):
        image = item.batch["images"][:, 0].permute(0, 3, 1, 2)
        base = net.encode(image)[0]
        codes.append(
            [(net.encode(image, privileged_inputs(b))[0] - base)[0].mean(dim=(1, 2)).numpy() for b in item.batches]
        )
    x = np.array(codes)  # [inputs, 3 shapes, latent channels]
    x = x - x.mean(axis=1, keepdims=True)
    flat, labels = x.reshape(-1, x.shape[-1]), np.tile(np.arange(3), len(x))
    confusion = np.zeros((3, 3), dtype=int)
    for i in range(len(flat)):
        rest = np.arange(len(flat)) != i
        centroids = np.stack([flat[rest & (labels == k)].mean(0) for k in range(3)])
        confusion[labels[i], int(np.argmin(((centroids - flat[i]) ** 2).sum(1)))] += 1
    return {
        "run": str(args.run),
        "step": latest_step(args.run / "config.yml") + 1,
        "inputs": len(x),
        "probe_accuracy": float(np.trace(confusion) / confusion.sum()),
        "confusion": confusion.tolist(),
        "chance": 1 / 3,
        "centroids": {f"shape_{k}": x[:, k].mean(0).round(3).tolist() for k in range(3)},
        "spread": x.reshape(-1, x.shape[-1]).std(0).round(3).tolist(),
    }


def horn_depths_in_input_camera(item, horn: int, round_back: int) -> torch.Tensor:
    """Input-camera z of the true horn's surface points seen in every view (horn mask minus round-back mask)."""
    batch, plain = item.batches[horn], item.batches[round_back]
    c2w, K = batch["c2w"][0], batch["K"][0]
    w2c0 = torch.linalg.inv(c2w[0])
    zs = []
    for v in range(1, c2w.shape[0]):
        only = (batch["masks"][0, v, ..., 0] > 0.5) & ~(plain["masks"][0, v, ..., 0] > 0.5)
        rows, cols = torch.nonzero(only, as_tuple=True)
        pixels = torch.stack([cols + 0.5, rows + 0.5, torch.ones_like(cols, dtype=torch.float32)], -1)
        cam = (torch.linalg.inv(K[v]) @ pixels.T).T * batch["depths"][0, v, rows, cols, 0][:, None]
        world = cam @ c2w[v, :3, :3].T + c2w[v, :3, 3]
        zs.append((world @ w2c0[:3, :3].T + w2c0[:3, 3])[:, 2])
    return torch.cat(zs)


@torch.no_grad()
def horns(args) -> dict:
    """Followed and missed horns of a privileged VAR, on the horn-only pixels of the judged views (see the module
    docstring)."""
    from nerfstudio_splatdiff.completions import SHAPE_DEPTH_TOL
    from nerfstudio_splatdiff.data.procedural.shapes import SHAPE_MODES
    from nerfstudio_splatdiff.models.privileged import privileged_inputs
    from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

    horn, round_back = SHAPE_MODES.index("horn"), SHAPE_MODES.index("none")
    model, run = load_inference_model(args.run / "config.yml")
    net, size = model.eval_net(), model.config.image_size
    if not net.has_privileged_branch:
        raise SystemExit(f"{args.run} is not a VAR with a privileged view.")
    rows = []
    for item in load_inputs(args.split, size, run_depth_range(run)):
        out = model.reconstruct(
            item.batch, net=net, skip_weight=1.0, sample_latent=False, privileged=privileged_inputs(item.batches[horn])
        )
        render = {
            k: v[0] for k, v in model.render_views(out["gaussians"], item.batch["c2w"], item.batch["K"], size).items()
        }
        judge = item.shape_judge
        only = (judge.masks[horn] > 0.5) & ~(judge.masks[round_back] > 0.5)
        alpha, depth = render["accumulation"][judge.views][only], render["depth"][judge.views][only]
        error = (depth - judge.depths[horn][only]).abs()
        opaque = alpha > 0.5
        near, far = float(item.batch["depth_near"].reshape(-1)[0]), float(item.batch["depth_far"].reshape(-1)[0])
        reach = horn_depths_in_input_camera(item, horn, round_back)
        rows.append(
            {
                "scene": item.name,
                "followed": item.mode_of(render) == horn,
                "horn_only_pixels": int(only.sum()),
                "mean_opacity": float(alpha.mean()),
                "opaque_share": float(opaque.float().mean()),
                "opaque_and_depth_right_share": float((opaque & (error < SHAPE_DEPTH_TOL)).float().mean()),
                "depth_error_where_opaque": float(error[opaque].mean()) if opaque.any() else float("nan"),
                "true_horn_reach_beyond_far": float(reach.max()) - far,
                "true_horn_share_beyond_far": float((reach > far).float().mean()),
                "true_horn_share_in_last_tenth_of_range": float((reach > far - 0.1 * (far - near)).float().mean()),
            }
        )
    keys = [k for k in rows[0] if k not in ("scene", "followed")]
    summary = {
        group: {"inputs": len(sel), **{k: float(np.nanmean([r[k] for r in sel])) for k in keys}}
        for group, sel in (
            ("followed", [r for r in rows if r["followed"]]),
            ("missed", [r for r in rows if not r["followed"]]),
        )
        if sel
    }
    return {"run": str(args.run), "step": latest_step(args.run / "config.yml") + 1, "summary": summary, "inputs": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=("capacity", "probe", "horns"))
    ap.add_argument("--split", choices=tuple(DIAGNOSTIC_SPLITS), default="val", help="train: fit, not generalisation")
    ap.add_argument("--run", type=Path, default=ROOT / "checkpoints/shape/splatdiff-var-small/shipped")
    ap.add_argument("--inputs", type=int, default=3, help="capacity: inputs fitted (each once per shape)")
    ap.add_argument("--steps", type=int, default=50, help="capacity: Adam steps per fit")
    ap.add_argument("--lr", type=float, default=0.05, help="capacity: Adam learning rate on the raw channels")
    ap.add_argument("--gaussians-per-pixel", type=int, default=2)
    ap.add_argument("--max-scale-px", type=float, default=1.0, help="capacity: the head's scale cap (0: none)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"device": device_label(), "date": date.today().isoformat(), "check": args.check, "split": args.split}
    result.update({"capacity": capacity, "probe": probe, "horns": horns}[args.check](args))
    out = args.out or ROOT / "benchmarks" / "results" / f"shape_{args.check}_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "fits"}, indent=2))


if __name__ == "__main__":
    main()
