"""Decoder-only fine-tunes of the geometry VAR under the shipped denoiser, outside ns-train, scored on val.

The encoder and the privileged branch stay frozen, so every latent the shipped denoiser learned stays where it was
and the pair stays a pair; only the decoder side trains (`VARNetConfig.frozen_encoder` does the same in ns-train).

- `--arm plain`: the VAR's own training loss on the 500 training scenes (seed 0, `held_out_inputs` with all 24 views):
  per step `--batch` scenes, each with a random forced shape, source frame 0, one target on the hidden side (within
  60 degrees of opposite) and 3 more at random (the source is rendered too), the privileged view the most opposite of
  them; lr `--lr` with a cosine decay to 0.
- `--arm samples`: half the batch as above, the other half the shipped denoiser's OWN samples for the training scenes
  (a bank of `--samples-per-scene` per scene, drawn once), each decoded with its scene's skip features and trained
  towards the views of the shape whose code (the VAR's latent given that shape's privileged view) its global code
  lies nearest, 5 views each: a decoder taught to read the latents the denoiser actually draws.

Then the shipped denoiser's 20 samples per val input (the proving ground's seeds, guidance 0) are decoded by the tuned
decoder and judged (shape judge): "none" share, inputs with 2+ shapes, true shape found, each shape's share, and the
VAR alone given each shape's privileged view (followed). `--eval-only W` scores saved weights (`net.pt`) without
training (a VAR run folder's newest checkpoint too: the ns-train runs); `--eval-only shipped` scores the shipped
VAR.

    python benchmarks/decoder_tune.py --arm plain --out outputs/decoder-tune/plain      (about 18 min on 2 cores)
    python benchmarks/decoder_tune.py --eval-only outputs/decoder-tune/plain/net.pt
Writes benchmarks/results/decoder_tune_<name>_val.json and prints it.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label  # noqa: E402
from proving_ground import TRAIN_SPLIT  # noqa: E402
from shape_diagnostics import load_inputs  # noqa: E402

SHIPPED = ROOT / "checkpoints" / "shape"
HIDDEN = list(range(9, 16))
"""Frames of the 24-view orbit within 60 degrees of opposite to frame 0 (multiscene.hidden_side_frames)."""


def views(batch: dict, frames: list[int]) -> dict:
    """The batch ([1, F, ...]) restricted to `frames`, with its depth range."""
    out = {k: batch[k][:, frames] for k in ("images", "masks", "c2w", "K") if k in batch}
    out["depth_near"], out["depth_far"] = batch["depth_near"], batch["depth_far"]
    return out


def stack(batches: list[dict]) -> dict:
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def sample_bank(model, items, per_scene: int) -> list[tuple[int, int, torch.Tensor]]:
    """(scene index, the shape whose code is nearest, latent) for `per_scene` denoiser samples of each scene."""
    bank = []
    for i, item in enumerate(items):
        codes = torch.cat([model.encode_source(b, with_privileged=True)[0] for b in item.batches]).mean(dim=(2, 3))
        z, _ = model.latent_samples(item.batch, per_scene, 0.0, seed=10_000 + i)
        nearest = torch.cdist(z.mean(dim=(2, 3)).double(), codes.double()).argmin(dim=1)
        bank += [(i, int(nearest[j]), z[j].clone()) for j in range(per_scene)]
    return bank


def train(args, model, var_model, items) -> torch.nn.Module:
    """The decoder side of a copy of the denoiser's frozen VAR, trained by the arm's loop."""
    size = model.config.image_size
    bank = sample_bank(model, items, args.samples_per_scene) if args.arm == "samples" else []
    net = copy.deepcopy(model.var).train().requires_grad_(True)
    for module in net.encoder_side():
        module.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=args.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps))
    )
    var_model.step = 10**9  # past any LPIPS start (the geometry preset has none)
    gen = torch.Generator().manual_seed(1)
    draw = lambda n: int(torch.randint(n, (1,), generator=gen))  # noqa: E731
    t0 = time.perf_counter()
    per_kind = args.batch // 2 if bank else args.batch  # the samples arm: half reconstructions, half samples
    for step in range(args.steps):
        picked = []
        for _ in range(per_kind):
            item, hidden = items[draw(len(items))], HIDDEN[draw(len(HIDDEN))]
            rest = [f for f in range(1, 24) if f != hidden]
            picked.append(
                views(
                    item.batches[draw(3)],
                    [0, hidden] + [rest[int(j)] for j in torch.randperm(len(rest), generator=gen)[:3]],
                )
            )
        batch = stack(picked)
        out = var_model.reconstruct(batch, net=net)
        out.update(var_model.render_views(out["gaussians"], batch["c2w"], batch["K"], size))
        terms = var_model.get_loss_dict(out, batch)
        terms.pop("kl", None)  # the encoder is frozen
        loss = sum(terms.values())
        if bank:
            picked, latents = [], []
            for _ in range(per_kind):
                i, shape, z = bank[draw(len(bank))]
                picked.append(
                    views(items[i].batches[shape], [0] + [int(j) + 1 for j in torch.randperm(23, generator=gen)[:4]])
                )
                latents.append(z)
            sb, z = stack(picked), torch.stack(latents)
            with torch.no_grad():
                skip = net.encode(sb["images"][:, 0].permute(0, 3, 1, 2))[2]
            g = net.decode(z, skip, 1.0, sb["c2w"][:, 0], sb["K"][:, 0], sb["depth_near"], sb["depth_far"])
            so = {"gaussians": g, "latent_mean": z, "latent_logvar": torch.zeros_like(z)}
            so.update(var_model.render_views(g, sb["c2w"], sb["K"], size))
            sample_terms = var_model.get_loss_dict(so, sb)
            sample_terms.pop("kl", None)
            loss = loss + sum(sample_terms.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"step {step} loss {float(loss):.4f} {time.perf_counter() - t0:.0f} s", flush=True)
        if step % 500 == 499 or step == args.steps - 1:
            torch.save(net.state_dict(), args.out / "net.pt")
    return net.eval().requires_grad_(False)


@torch.no_grad()
def score(model, depth_range: tuple[float, float]) -> dict:
    """The shipped denoiser's samples on val through `model.var`, judged; and the VAR alone per forced shape."""
    size = model.config.image_size
    rows, followed = [], []
    for i, item in enumerate(load_inputs("val", size, depth_range)):
        b = item.batch
        z, skip = model.latent_samples(b, 20, 0.0, seed=i)  # the proving ground's seeds
        codes = torch.cat([model.encode_source(bb, with_privileged=True)[0] for bb in item.batches])
        for latents, sink in ((z, None), (codes, followed)):
            n = latents.shape[0]
            g = model.decode_latents(b, latents, skip, model.config.skip_weight)
            out = model.render_views(g, b["c2w"].expand(n, -1, -1, -1), b["K"].expand(n, -1, -1, -1), size)
            judged = [item.mode_of({k: v[j] for k, v in out.items()}) for j in range(n)]
            if sink is None:
                rows.append((item.true_mode, judged))
            else:
                sink += [judged[k] == k for k in range(n)]
    samples = [j for _, js in rows for j in js]
    return {
        "none": float(np.mean([j == -1 for j in samples])),
        "inputs_with_2plus_shapes": float(np.mean([len({j for j in js if j >= 0}) >= 2 for _, js in rows])),
        "inputs_true_shape_sampled": float(np.mean([t in js for t, js in rows])),
        "shape_shares": [float(np.mean([j == s for j in samples])) for s in range(3)],
        "var_follows_forced_shapes": float(np.mean(followed)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arm", choices=("plain", "samples"), default="plain")
    ap.add_argument(
        "--eval-only", default=None, help="score these weights (net.pt, or a VAR run folder) or 'shipped'; no training"
    )
    ap.add_argument("--name", default=None, help="the JSON's name (default: the arm, or the weights' folder)")
    ap.add_argument("--diffusion-run", type=Path, default=SHIPPED / "splatdiff-diffusion-small" / "shipped")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=16, help="scenes per step (samples: half of them bank samples)")
    ap.add_argument("--scenes", type=int, default=500, help="training scenes (seed 0, the first N)")
    ap.add_argument("--samples-per-scene", type=int, default=8)
    ap.add_argument("--out", type=Path, default=None, help="default: outputs/decoder-tune/<arm>")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--note", default="", help="what the scored weights are (recorded in the JSON)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from nerfstudio_splatdiff.completions import held_out_inputs
    from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

    model, run = load_inference_model(args.diffusion_run / "config.yml")
    result = {"device": device_label(), "date": date.today().isoformat(), "diffusion_run": str(args.diffusion_run)}
    if args.note:
        result["note"] = args.note
    if args.eval_only:
        weights = Path(args.eval_only)
        if args.eval_only == "shipped":
            name = "shipped"
        elif weights.is_dir():  # a VAR run folder (e.g. an ns-train run with `frozen_encoder`)
            from nerfstudio_splatdiff.models.var_checkpoint import load_frozen_var

            model.var, name = load_frozen_var(weights)[0], args.name or weights.name
        else:  # net.pt from this script
            model.var.load_state_dict(torch.load(weights, map_location="cpu"))
            name = args.name or weights.parent.name
        result["weights"] = args.eval_only
    else:
        args.out = args.out or ROOT / "outputs" / "decoder-tune" / args.arm
        args.out.mkdir(parents=True, exist_ok=True)
        var_model, _ = load_inference_model(SHIPPED / "splatdiff-var-small" / "shipped" / "config.yml")
        work = ROOT / "outputs" / "proving_ground_eval" / f"shape_train{args.scenes}"
        items = held_out_inputs(
            work,
            args.scenes,
            TRAIN_SPLIT[0],
            model.config.image_size,
            cache=work / "cache",
            frames=list(range(24)),
            mode_kind="shape",
            depth_range=run_depth_range(run),
        )
        model.var = train(args, model, var_model, items)
        name = args.name or args.arm
        result["training"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["val"] = score(model, run_depth_range(run))
    out = ROOT / "benchmarks" / "results" / f"decoder_tune_{name}_val.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
