"""A codebook for a trained privileged VAR's global code, fitted after training (no training step): k-means on the
shifts its privileged branch adds to the global code over training scenes, written as a copy of the VAR run whose
`global_code_entries` is K and whose codebook holds those centroids (models/code_book.py).

Why: a codebook trained with the decoder (`--pipeline.model.network.global-code-entries`) cut "none" on val but the
decoder, retrained on the snapped codes, followed fewer forced shapes. Here the decoder stays exactly as trained; the
centroids are means of codes it was trained on (the shifts of one shape cluster across inputs: models/code_book.py),
so a diffusion sample's code, snapped to one (`DiffusionModel.latent_samples`), is one the decoder knows. A
privileged encoding is snapped too (`VARNet.encode_parts`), so the privileged rows measure what snapping costs.

The shifts come from the first `--train-scenes` scenes of the training seed (seed 0; regenerated under
outputs/codebook_fit/), each encoded with each shape's privileged view: never a val or test scene. Each K writes
<output>/entries-<K>/ (config.yml + nerfstudio_models/<the run's checkpoint name>); pair it with a denoiser through
`splatdiff-slim-run --load-config <diffusion run> --var-config <output>/entries-<K>/config.yml`. Prints, per K, the
inertia and how pure the clusters are (the share of shifts whose cluster's majority shape is their own).

    python benchmarks/codebook_fit.py --run checkpoints/shape/splatdiff-var-small/shipped --entries 3 6 12 \
        --output outputs/codebook-fit
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


@torch.no_grad()
def training_shifts(net, items) -> tuple[torch.Tensor, torch.Tensor]:
    """([scenes x shapes, C] shifts of the global code by each shape's privileged view, [scenes x shapes] shapes)."""
    from nerfstudio_splatdiff.models.privileged import privileged_inputs

    shifts, shapes = [], []
    for item in items:
        image = item.batch["images"][:, 0].permute(0, 3, 1, 2)
        for k, b in enumerate(item.batches):
            correction = net.encode_parts(image, privileged_inputs(b))[1]
            shifts.append(correction[0].mean(dim=(1, 2)).float())
            shapes.append(k)
    return torch.stack(shifts), torch.tensor(shapes)


def purity(assign: torch.Tensor, shapes: torch.Tensor, k: int) -> tuple[float, list[list[int]]]:
    """(share of points whose cluster's majority shape is their own, [k clusters][shapes] counts)."""
    counts = torch.zeros(k, int(shapes.max()) + 1, dtype=torch.long)
    counts.index_put_((assign, shapes), torch.ones_like(assign), accumulate=True)
    return float(counts.max(dim=1).values.sum() / len(assign)), counts.tolist()


def write_codebook_run(run: Path, centroids: torch.Tensor, counts: torch.Tensor, output: Path) -> Path:
    """A copy of the VAR run folder `run` with a codebook of these centroids: its config with `global_code_entries`,
    its newest checkpoint with the codebook buffers (the network's, and its EMA's when it has one). Returns the new
    config.yml."""
    import yaml
    from codebook_init import CODEBOOK_PREFIXES

    from nerfstudio_splatdiff.models.var_checkpoint import load_checkpoint, load_run_config, resolve_run
    from nerfstudio_splatdiff.safety import atomic_torch_save, atomic_write_text

    config_path, source = resolve_run(run)
    cfg = load_run_config(config_path)
    cfg.pipeline.model.network.global_code_entries = int(centroids.shape[0])
    ckpt, loaded = load_checkpoint(source)
    state = dict(loaded["pipeline"])
    dtype = next(v.dtype for k, v in state.items() if k.startswith("_model.net.") and v.is_floating_point())
    net_prefix, ema_prefix = CODEBOOK_PREFIXES
    has_ema = any(k.startswith("_model.ema.") for k in state)
    for prefix in (net_prefix, ema_prefix) if has_ema else (net_prefix,):
        state[prefix + "centroids"] = centroids.to(dtype)
        state[prefix + "counts"] = counts.to(dtype)
    out = output / "nerfstudio_models" / ckpt.name
    out.parent.mkdir(parents=True)
    atomic_torch_save({**loaded, "pipeline": state}, out)
    new_config = output / "config.yml"
    atomic_write_text(new_config, yaml.dump(cfg))
    return new_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a privileged VAR run folder (config.yml)")
    parser.add_argument("--entries", type=int, nargs="+", required=True, help="codebook sizes K, one copy each")
    parser.add_argument("--output", type=Path, required=True, help="a new folder for the copies")
    parser.add_argument("--train-scenes", type=int, default=200, help="training scenes (seed 0) to fit on")
    parser.add_argument("--seed", type=int, default=0, help="k-means seed")
    args = parser.parse_args()

    from nerfstudio_splatdiff.completions import held_out_inputs
    from nerfstudio_splatdiff.errors import SplatdiffError, install_one_line_errors
    from nerfstudio_splatdiff.models.code_book import fit_kmeans
    from nerfstudio_splatdiff.runs import load_inference_model, run_depth_range

    install_one_line_errors()
    if args.output.exists():
        raise SplatdiffError(f"{args.output} already exists: pass a new folder (this writes one, never into one).")
    if args.train_scenes < 1:
        raise SplatdiffError(f"--train-scenes {args.train_scenes}: pass 1 or more training scenes to fit on.")
    if any(not 2 <= k <= 3 * args.train_scenes for k in args.entries):
        raise SplatdiffError(
            f"--entries {args.entries}: pass sizes from 2 to {3 * args.train_scenes} (3 shifts per training scene)."
        )
    model, run = load_inference_model(args.run / "config.yml")
    net = model.eval_net()
    if not (net.has_privileged_branch and net.has_global_code) or net.snaps_codes:
        raise SplatdiffError(f"{args.run} is not a privileged VAR with a global code and no codebook yet.")
    work = ROOT / "outputs" / "codebook_fit" / f"train_{args.train_scenes}"
    size, depths = model.config.image_size, run_depth_range(run)
    items = held_out_inputs(
        work, args.train_scenes, 0, size, 3, cache=work / "cache", mode_kind="shape", depth_range=depths
    )
    shifts, shapes = training_shifts(net, items)
    gen = torch.Generator().manual_seed(args.seed)
    for k in args.entries:
        centroids, assign, inertia = fit_kmeans(shifts, k, generator=gen)
        pure, table = purity(assign, shapes, k)
        counts = torch.bincount(assign, minlength=k).float()
        config = write_codebook_run(args.run, centroids, counts, args.output / f"entries-{k}")
        print(
            f"K={k}: inertia {inertia:.4f} (spread {float(shifts.var(0).sum()):.4f}), purity {pure:.1%}, "
            f"clusters x shapes {table} -> {config}"
        )


if __name__ == "__main__":
    main()
