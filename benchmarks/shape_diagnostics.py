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
- `nones`: where a diffusion run's "none" samples come from. Per input, the VAR's latent given each shape's privileged
  view is that shape's code; each sample's latent (`DiffusionModel.latent_samples`, the proving ground's seeds) is
  placed by its spatial mean (the global code, which carries the hidden side) against the input's three codes:
  "at" a shape when within a third of the way to the input's next code (NEAR_CODE), otherwise "between". A "none"
  sample near no code is the denoiser's (a blend, or off the codes altogether); one at a shape whose own code the VAR
  also draws as "none" (or as another shape) for this input is the decoder's miss; one at a shape the VAR draws right
  is off in the rest of its latent (the denoiser's again). Also the shares of the shapes the denoiser's latents sit
  at (a fair sampler: 1/3 each), against the shapes the judge sees; and how many samples are still "none" once their
  global code is moved onto the nearest code with the rest of their latent kept (what the global code's miss costs),
  and once each is re-encoded with its own render of the privileged view (a test-time snap that needs no truth).
  Figure: per input, its codes and samples in the plane of the codes (docs/images/shape_nones_<split>.png).
- `codes`: can a denoiser know where an input's shape codes lie? Each held-out input's three codes, as offsets from the
  global code of its input-only latent (the denoiser's condition), are predicted by what training scenes (seed 0,
  `--train-scenes`) teach: each shape's mean offset, the mean of the 20 training inputs with the nearest conditions,
  and ridge regression on the condition (its alpha chosen on a fifth of the training scenes). Scored like `nones`
  (error over the distance to the input's next code; "at" within NEAR_CODE). Also how the offsets' departures split
  into a part all three shapes of an input share and each shape's own, and the denoiser's own estimate of the global
  code along its sampling path: the x0 its noise prediction implies at every step, against the input's codes.
- `bodies`: do the "none" samples follow what view 0 cannot show of the body? The horn and block reach back a multiple
  of the body's extent along camera 0's line of sight (data/procedural/shapes.py), which view 0 shows for a sphere
  or an upright cylinder (their radius) but not for a yawed box or ellipsoid. If that hidden extent made the judge
  want a length the input cannot tell, the visible-extent bodies would have fewer "none" samples. No model runs:
  the per-input sample modes of a proving-ground JSON (`--results`) against each input's body, regenerated from its
  seed (`--split` must be the JSON's).
`--split train` runs a check on the first 20 training scenes (proving_ground.TRAIN_SPLIT): fit, not generalisation.

    python benchmarks/shape_diagnostics.py capacity [--inputs 3 --steps 50 --gaussians-per-pixel 2 --max-scale-px 1]
    python benchmarks/shape_diagnostics.py probe --run checkpoints/shape/splatdiff-var-small/shipped
    python benchmarks/shape_diagnostics.py horns --split train
    python benchmarks/shape_diagnostics.py nones --run checkpoints/shape/splatdiff-diffusion-small/shipped
    python benchmarks/shape_diagnostics.py codes --run checkpoints/shape/splatdiff-diffusion-small/shipped
    python benchmarks/shape_diagnostics.py bodies --results benchmarks/results/proving_ground_shape_val.json
Writes benchmarks/results/shape_<check>_<split>.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import re
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
    for item in load_inputs(args.split)[: args.inputs or 3]:
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


NEAR_CODE = 1 / 3
"""A sample's latent is "at" a shape's code when its spatial mean lies within this share of the distance from that code
to the nearest other code of the same input (so no two codes' neighbourhoods overlap), otherwise "between" codes."""


def code_gaps(codes: torch.Tensor) -> torch.Tensor:
    """Each code's distance to its input's nearest other code: [..., K, C] -> [..., K]."""
    d = torch.cdist(codes.double(), codes.double())
    return (d + torch.diag(torch.full((codes.shape[-2],), float("inf"), dtype=d.dtype))).min(dim=-1).values


def place_latents(sample_means: torch.Tensor, codes: torch.Tensor, near: float = NEAR_CODE) -> tuple[list, list, list]:
    """Per sample (spatial means [N, C]) against one input's shape codes ([K, C]): (the index of the code it is at, or
    -1 when it is near none; its distance to the nearest code over that code's distance to the next code; the index
    of the nearest code)."""
    d = torch.cdist(sample_means.double(), codes.double())  # [N, K]
    gaps = code_gaps(codes)  # [K]
    nearest = d.argmin(dim=1)
    relative = d.gather(1, nearest[:, None])[:, 0] / gaps[nearest]
    placed = torch.where(relative <= near, nearest, torch.full_like(nearest, -1))
    return placed.tolist(), relative.tolist(), nearest.tolist()


def plane_coordinates(sample_means: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The plane through an input's three shape codes ([3, C]): (the codes' 2D coordinates in it [3, 2], the samples'
    projections [N, 2], the samples' distances from the plane [N]). Code 0 is the origin and code 1 lies on the x
    axis."""
    c, x = codes.double(), sample_means.double()
    e1 = (c[1] - c[0]) / (c[1] - c[0]).norm()
    v = c[2] - c[0] - ((c[2] - c[0]) @ e1) * e1
    e2 = v / v.norm()
    basis = torch.stack([e1, e2], dim=1)  # [C, 2], orthonormal columns
    rel = x - c[0]
    xy = rel @ basis
    return (c - c[0]) @ basis, xy, (rel - xy @ basis.T).norm(dim=1)


def barycentric(codes_xy: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Weights [N, 3] of the three codes (2D, [3, 2]) that give each point [N, 2]; they sum to 1, and a point beyond
    a code or off the triangle's side has a negative one."""
    a = torch.linalg.solve(
        torch.stack([codes_xy[1] - codes_xy[0], codes_xy[2] - codes_xy[0]], dim=1), (xy - codes_xy[0]).T
    ).T
    return torch.cat([1 - a.sum(dim=1, keepdim=True), a], dim=1)


def nones_figure(rows: list, path: Path, shapes: list[str]) -> None:
    """Per input (the first 6): its shape codes and its samples in the plane of the codes, each sample coloured by
    the shape the judge saw (grey: "none"), each code with its "at" disc (NEAR_CODE of the way to its next code)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["tab:blue", "tab:orange", "tab:green"]
    shown = rows[:6]
    cols = min(3, len(shown))
    fig, axes = plt.subplots((len(shown) + cols - 1) // cols, cols, figsize=(3.6 * cols, 3.4 * 2), squeeze=False)
    for ax in axes.flat[len(shown) :]:
        ax.axis("off")
    for ax, r in zip(axes.flat, shown):
        codes, xy = np.array(r["codes_xy"]), np.array(r["samples_xy"])
        gaps = [min(np.linalg.norm(codes[k] - codes[j]) for j in range(3) if j != k) for k in range(3)]
        for k in range(3):
            ax.add_patch(plt.Circle(codes[k], NEAR_CODE * gaps[k], color=colours[k], alpha=0.12))
            ax.scatter(*codes[k], marker="*", s=260, color=colours[k], edgecolor="black", zorder=3)
        for (px, py), j in zip(xy, r["judged"]):
            ax.scatter(px, py, s=22, color="0.6" if j == -1 else colours[j], edgecolor="black", linewidth=0.3)
        ax.set_title(f"{r['scene']} (true: {shapes[r['true_shape']]})", fontsize=9)
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    handles = [plt.Line2D([], [], marker="*", ls="", color=c, markeredgecolor="black", ms=12) for c in colours]
    handles.append(plt.Line2D([], [], marker="o", ls="", color="0.6", markeredgecolor="black"))
    labels = [f"{n} code / sample judged {n}" for n in shapes] + ['sample judged "none"']
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("diffusion samples' global codes in the plane of the input's three shape codes", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def none_cause(judged: int, placed: int, oracle: list[int]) -> str:
    """Why a sample is what the judge says: 'judged' (a shape), or for a "none": 'between' (its latent is near no
    shape's code: the denoiser's), 'decoder' (at a code the VAR draws wrong for this input too), 'off' (at a code the
    VAR draws right: the rest of the latent is off, the denoiser's again)."""
    if judged != -1:
        return "judged"
    if placed == -1:
        return "between"
    return "decoder" if oracle[placed] != placed else "off"


@torch.no_grad()
def nones(args) -> dict:
    """Where a diffusion run's "none" samples come from (see the module docstring)."""
    from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

    config = args.run / "config.yml"
    model, run = load_inference_model(config)
    if model.config.run_kind != "diffusion":
        raise SystemExit(f"{args.run} is not a diffusion run: pass --run <a splatdiff-diffusion run folder>.")
    size, rows = model.config.image_size, []
    for i, item in enumerate(load_inputs(args.split, size, run_depth_range(run))[: args.inputs]):
        batch = item.batch
        codes = torch.cat([model.encode_source(b, with_privileged=True)[0] for b in item.batches])  # [K, C, h, w]
        z, skip = model.latent_samples(batch, args.num_samples, args.guidance_weight, seed=i)  # the proving ground's
        k = model.config.skip_weight

        def rendered(latents: torch.Tensor) -> dict:
            g = model.decode_latents(batch, latents, skip, k)
            n = latents.shape[0]
            return model.render_views(g, batch["c2w"].expand(n, -1, -1, -1), batch["K"].expand(n, -1, -1, -1), size)

        def judged(latents: torch.Tensor, out: dict | None = None) -> list[int]:
            out = rendered(latents) if out is None else out
            return [item.mode_of({key: v[j] for key, v in out.items()}) for j in range(latents.shape[0])]

        oracle = judged(codes)
        z_code, code = z.mean(dim=(2, 3)), codes.mean(dim=(2, 3))  # the global codes: [N, C], [K, C]
        placed, relative, nearest = place_latents(z_code, code)
        codes_xy, samples_xy, off_plane = plane_coordinates(z_code, code)
        gap = float(torch.pdist(code.double()).min())
        sample_renders = rendered(z)
        sample_judged = judged(z, sample_renders)
        # test-time re-encoding: each sample's own render of the privileged view, through the privileged branch
        n = z.shape[0]
        own = {key: batch[key].expand(n, *batch[key].shape[1:]) for key in ("c2w", "K", "depth_near", "depth_far")}
        own["images"] = sample_renders["rgb"].clamp(0, 1)
        reencoded_judged = judged(model.encode_source(own, with_privileged=True)[0])
        # the same samples with their global code moved onto the nearest code (the rest of the latent kept)
        snapped = z + (code[nearest] - z_code)[..., None, None]
        snapped_judged = judged(snapped)
        rows.append(
            {
                "scene": item.name,
                "true_shape": item.true_mode,
                "oracle_judged": oracle,
                "placed": placed,
                "distance_to_code_over_gap": [round(r, 3) for r in relative],
                "judged": sample_judged,
                "nearest": nearest,
                "judged_with_global_code_on_nearest": snapped_judged,
                "judged_reencoded": reencoded_judged,
                "codes_xy": codes_xy.round(decimals=3).tolist(),
                "samples_xy": samples_xy.round(decimals=3).tolist(),
                "off_plane_over_smallest_gap": (off_plane / gap).round(decimals=3).tolist(),
                "largest_code_weight": barycentric(codes_xy, samples_xy).max(dim=1).values.round(decimals=3).tolist(),
                "cause": [none_cause(j, p, oracle) for j, p in zip(sample_judged, placed)],
            }
        )
    from nerfstudio_splatdiff.data.procedural.shapes import SHAPE_MODES

    figure = args.figure or ROOT / "docs" / "images" / f"shape_nones_{args.split}.png"
    nones_figure(rows, figure, ["nothing" if m == "none" else m for m in SHAPE_MODES])
    K = len(rows[0]["oracle_judged"])
    causes = [c for r in rows for c in r["cause"]]
    placed = [p for r in rows for p in r["placed"]]
    judged_all = [j for r in rows for j in r["judged"]]
    share = lambda xs, v: float(np.mean([x == v for x in xs]))  # noqa: E731
    return {
        "run": str(args.run),
        "step": latest_step(config) + 1,
        "inputs": len(rows),
        "samples_per_input": args.num_samples,
        "guidance_weight": model.config.guidance_weight if args.guidance_weight is None else args.guidance_weight,
        "near_code": NEAR_CODE,
        "distance_to_code_over_gap_median": float(np.median([x for r in rows for x in r["distance_to_code_over_gap"]])),
        "off_plane_over_smallest_gap_median": float(
            np.median([x for r in rows for x in r["off_plane_over_smallest_gap"]])
        ),
        "share_with_a_code_weighted_above_0.8_in_the_plane": float(
            np.mean([w > 0.8 for r in rows for w in r["largest_code_weight"]])
        ),
        "judged_none": share(judged_all, -1),
        "judged_none_with_global_code_on_nearest": share(
            [j for r in rows for j in r["judged_with_global_code_on_nearest"]], -1
        ),
        "judged_none_reencoded": share([j for r in rows for j in r["judged_reencoded"]], -1),
        "reencoded_inputs_true_shape_sampled": float(np.mean([r["true_shape"] in r["judged_reencoded"] for r in rows])),
        "inputs_true_shape_sampled": float(np.mean([r["true_shape"] in r["judged"] for r in rows])),
        "none_causes": {c: share(causes, c) for c in ("between", "decoder", "off")},
        "latent_at_shape": {**{f"shape_{s}": share(placed, s) for s in range(K)}, "between": share(placed, -1)},
        "judged_shape": {**{f"shape_{s}": share(judged_all, s) for s in range(K)}, "none": share(judged_all, -1)},
        "judged_given_latent_at": {
            f"shape_{s}": {
                str(j): sum(1 for p, jj in zip(placed, judged_all) if p == s and jj == j) for j in range(-1, K)
            }
            for s in range(-1, K)
        },
        "oracle_follows": float(np.mean([r["oracle_judged"][s] == s for r in rows for s in range(K)])),
        "figure": str(figure.relative_to(ROOT) if figure.is_relative_to(ROOT) else figure),
        "inputs_per_row": rows,
    }


def code_offsets(cond_means: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Each input's shape codes ([N, K, C]) as offsets from the global code of its input-only latent ([N, C]), the
    denoiser's condition: what a denoiser must add to what it is shown."""
    return codes - cond_means[:, None]


def offset_error_over_gap(pred: torch.Tensor, offsets: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Per input and shape ([N, K]): the distance from a predicted offset to the true one over that code's distance to
    the input's next code (the scale on which `place_latents` calls a latent "at" a code)."""
    return (pred.double() - offsets.double()).norm(dim=2) / code_gaps(codes)


def knn_offsets(train_x: torch.Tensor, train_y: torch.Tensor, x: torch.Tensor, k: int) -> torch.Tensor:
    """The mean offsets ([M, K, C]) of the k training inputs whose conditions (flattened, [N, D]) are nearest to each of
    `x` ([M, D])."""
    idx = torch.cdist(x.double(), train_x.double()).topk(k, largest=False).indices
    return train_y.double()[idx].mean(dim=1)


def ridge_offsets(train_x: torch.Tensor, train_y: torch.Tensor, x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Ridge regression (standardised features, in its dual form: N training inputs, D >> N features) from the
    condition ([N, D]) to the offsets ([N, K, C]), evaluated at `x` ([M, D])."""
    X, Y = train_x.double(), train_y.double().flatten(1)
    mu, sd = X.mean(0), X.std(0) + 1e-6
    Xn, xn, ym = (X - mu) / sd, (x.double() - mu) / sd, Y.mean(0)
    a = torch.linalg.solve(Xn @ Xn.T + alpha * torch.eye(len(Xn), dtype=Xn.dtype), Y - ym)
    return (xn @ Xn.T @ a + ym).reshape(-1, *train_y.shape[1:])


def shared_and_own(offsets: torch.Tensor, codes: torch.Tensor) -> tuple[float, float]:
    """How the offsets' departures from their per-shape means ([N, K, C]) split into a part every shape of an input
    shares (their mean over shapes) and each shape's own: the medians of their norms, over the input's smallest gap."""
    e = offsets.double() - offsets.double().mean(0, keepdim=True)
    e = e / torch.stack([torch.pdist(c.double()).min() for c in codes])[:, None, None]
    shared = e.mean(dim=1, keepdim=True)
    return float(shared.norm(dim=2).median()), float((e - shared).norm(dim=2).median())


def codes(args) -> dict:
    """Can a denoiser know where an input's shape codes lie? Fitted on training scenes, scored on the split."""
    from nerfstudio_splatdiff.completions import held_out_inputs
    from nerfstudio_splatdiff.models.sampling import sample_latents
    from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

    config = args.run / "config.yml"
    model, run = load_inference_model(config)
    if model.config.run_kind != "diffusion":
        raise SystemExit(f"{args.run} is not a diffusion run: pass --run <a splatdiff-diffusion run folder>.")
    size, depth_range = model.config.image_size, run_depth_range(run)
    work = ROOT / "outputs" / "proving_ground_eval" / f"shape_train{args.train_scenes}"
    seed = TRAIN_SPLIT[0]
    cache = work / "cache"
    train = held_out_inputs(
        work, args.train_scenes, seed, size, cache=cache, mode_kind="shape", depth_range=depth_range
    )
    held = load_inputs(args.split, size, depth_range)[: args.inputs]

    def features(items) -> tuple[torch.Tensor, ...]:
        """(the denoiser's conditions [N, C, h, w], the codes' offsets [N, K, C], the codes [N, K, C])."""
        cond, m, c = [], [], []
        for item in items:
            mean = model.encode_source(item.batch)[0]
            cond.append(model.to_condition(mean)[0])
            m.append(mean.mean(dim=(2, 3))[0])
            shape_codes = torch.cat([model.encode_source(b, with_privileged=True)[0] for b in item.batches])
            c.append(shape_codes.mean(dim=(2, 3)))
        cond, m, c = torch.stack(cond), torch.stack(m), torch.stack(c)
        return cond, code_offsets(m, c), c

    cond_tr, y_tr, c_tr = features(train)
    cond, y, c = features(held)
    x_tr, x = cond_tr.flatten(1), cond.flatten(1)
    split = len(train) * 4 // 5  # the ridge's alpha is chosen on the last fifth of the training scenes
    fit, choose = slice(0, split), slice(split, None)

    def held_error(a: float) -> float:
        pred = ridge_offsets(x_tr[fit], y_tr[fit], x_tr[choose], a)
        return float(offset_error_over_gap(pred, y_tr[choose], c_tr[choose]).median())

    alpha = min((1.0, 10.0, 100.0, 1000.0, 10000.0), key=held_error)
    predictions = {
        "the_training_mean_offset_of_each_shape": y_tr.double().mean(0, keepdim=True).expand(len(held), -1, -1),
        "nearest_20_training_inputs": knn_offsets(x_tr, y_tr, x, 20),
        f"ridge_alpha_{alpha:g}": ridge_offsets(x_tr, y_tr, x, alpha),
    }
    predictors = {}
    for name, pred in predictions.items():
        err = offset_error_over_gap(pred, y, c)
        predictors[name] = {
            "median_error_over_gap": float(err.median()),
            "share_within_near_code": float((err <= NEAR_CODE).double().mean()),
        }
    shared, own = shared_and_own(y, c)
    # the denoiser's own estimate of the global code along its sampling path (x0 from each step's noise prediction)
    alphas_cumprod = model.train_scheduler.alphas_cumprod
    den = model.eval_denoiser()
    path: dict[int, list[float]] = {}
    for i in range(len(held)):
        codes_i = c[i].double()

        def call(xt: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            with model.autocast(xt.device):
                eps = den(xt, t, cond).float()
            ab = alphas_cumprod[int(t[0])]
            x0 = model.from_diffusion((xt - (1 - ab).sqrt() * eps) / ab.sqrt()).mean(dim=(2, 3)).double()
            _, relative, _ = place_latents(x0[: args.num_samples], codes_i)  # the conditional half under guidance
            path.setdefault(int(t[0]), []).extend(relative)
            return eps

        c_model = model.config
        sample_latents(
            call,
            cond[i : i + 1],
            args.num_samples,
            c_model.schedule,
            c_model.scheduler,
            c_model.num_steps,
            c_model.guidance_weight if args.guidance_weight is None else args.guidance_weight,
            i,
            c_model.eta,
        )
    steps = sorted(path, reverse=True)
    return {
        "run": str(args.run),
        "step": latest_step(config) + 1,
        "training_scenes": len(train),
        "inputs": len(held),
        "near_code": NEAR_CODE,
        "offset_predictors": predictors,
        "offset_departures_over_gap": {"shared_by_the_inputs_shapes_median": shared, "own_to_each_shape_median": own},
        "sampling_path_x0_distance_to_nearest_code_over_gap_median": {str(t): float(np.median(path[t])) for t in steps},
    }


VISIBLE_EXTENT_BODIES = ("Sphere", "Cylinder")
"""Bodies whose extent along camera 0's line of sight view 0 shows (a radius); a yawed box or ellipsoid hides it."""


def bodies(args) -> dict:
    """`bodies` (module docstring): "none" shares and true-shape hits by body kind, and against the hidden extent."""
    from nerfstudio_splatdiff.data.procedural.scenes import camera_center, sample_scene

    if args.results is None:
        raise SystemExit("bodies needs --results <a proving_ground_shape_<split>.json>")
    loaded = json.loads(Path(args.results).read_text())
    if loaded.get("split") != args.split:
        raise SystemExit(f"{args.results} is the {loaded.get('split')!r} split; pass --split {loaded.get('split')}")
    seed = DIAGNOSTIC_SPLITS[args.split][0]
    rows = []
    for item in loaded["modes"]["per_input"]:
        scene = sample_scene(
            seed, int(item["scene"].split("_")[-1]), 24, 64, 3, mode=0, kind="object", mode_kind="shape"
        )
        body = scene.scene.primitives[0]
        u = body.center - camera_center(scene.w2c[0])
        u = u / np.linalg.norm(u)
        side = np.cross(u, [0.0, 0.0, 1.0])
        side = side / np.linalg.norm(side)
        visible = max(body.extent(side), body.extent(np.cross(side, u)))
        modes = item["sample_modes"]
        rows.append(
            {
                "scene": item["scene"],
                "body": type(body).__name__,
                "hidden_over_visible_extent": round(float(body.extent(u) / visible), 3),
                "none": float(np.mean([m == -1 for m in modes])),
                "true_shape_sampled": item["true_mode"] in modes,
            }
        )
    group = lambda rs: {  # noqa: E731
        "inputs": len(rs),
        "none": round(float(np.mean([r["none"] for r in rs])), 4) if rs else None,
        "inputs_true_shape_sampled": round(float(np.mean([r["true_shape_sampled"] for r in rs])), 4) if rs else None,
    }
    kinds = sorted({r["body"] for r in rows})
    log_ratio = np.abs(np.log([r["hidden_over_visible_extent"] for r in rows]))
    return {
        "results": str(args.results),
        "run": loaded.get("runs", {}).get("diffusion"),
        "by_body": {k: group([r for r in rows if r["body"] == k]) for k in kinds},
        "visible_extent_bodies": group([r for r in rows if r["body"] in VISIBLE_EXTENT_BODIES]),
        "hidden_extent_bodies": group([r for r in rows if r["body"] not in VISIBLE_EXTENT_BODIES]),
        "correlation_none_with_abs_log_extent_ratio": round(
            float(np.corrcoef([r["none"] for r in rows], log_ratio)[0, 1]), 3
        ),
        "inputs_per_row": rows,
    }


def compact_lists(text: str) -> str:
    """Indented JSON with every list of plain values (numbers, strings without commas) on one line."""
    one_line = lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]"  # noqa: E731
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", one_line, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=("capacity", "probe", "horns", "nones", "codes", "bodies"))
    ap.add_argument("--split", choices=tuple(DIAGNOSTIC_SPLITS), default="val", help="train: fit, not generalisation")
    ap.add_argument("--run", type=Path, default=ROOT / "checkpoints/shape/splatdiff-var-small/shipped")
    ap.add_argument("--inputs", type=int, default=None, help="the first inputs only (capacity: 3; others: all)")
    ap.add_argument("--steps", type=int, default=50, help="capacity: Adam steps per fit")
    ap.add_argument("--lr", type=float, default=0.05, help="capacity: Adam learning rate on the raw channels")
    ap.add_argument("--gaussians-per-pixel", type=int, default=2)
    ap.add_argument("--max-scale-px", type=float, default=1.0, help="capacity: the head's scale cap (0: none)")
    ap.add_argument("--num-samples", type=int, default=20, help="nones: samples per input (the proving ground's 20)")
    ap.add_argument("--guidance-weight", type=float, default=None, help="nones: default, the run's own")
    ap.add_argument("--figure", type=Path, default=None, help="nones: default docs/images/shape_nones_<split>.png")
    ap.add_argument("--train-scenes", type=int, default=500, help="codes: training scenes the predictors are fitted on")
    ap.add_argument("--results", type=Path, default=None, help="bodies: a proving-ground JSON of the same split")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    result = {"device": device_label(), "date": date.today().isoformat(), "check": args.check, "split": args.split}
    checks = {"capacity": capacity, "probe": probe, "horns": horns, "nones": nones, "codes": codes, "bodies": bodies}
    result.update(checks[args.check](args))
    out = args.out or ROOT / "benchmarks" / "results" / f"shape_{args.check}_{args.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(compact_lists(json.dumps(result, indent=2)))
    print(json.dumps({k: v for k, v in result.items() if k not in ("fits", "inputs_per_row")}, indent=2))


if __name__ == "__main__":
    main()
