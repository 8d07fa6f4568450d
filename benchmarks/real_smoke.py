"""Overfit smoke test of the paper presets on real images: does `splatdiff-var` (and `splatdiff-diffusion` over it)
learn on real captures? What a CO3D or RealEstate10K user checks before spending days of GPU time.

Data (read from the real samples, `$SPLATDIFF_REAL_DATA` or ../shared/data/real; written in the formats the
dataparsers read into a temporary folder, nothing copied into the repository):
  co3d   posediffusion_co3d/apple_seq_unknown: 20 CO3D v2 frames with their cameras (PyTorch3D R, T and
         ndc_isotropic focal, exactly CO3D's annotation fields), as a one-sequence CO3D category (`co3d-data`)
  re10k  globalsplat_re10k_demo: 3 RealEstate10K scenes (9-12 frames each) as a pixelSplat chunk (`re10k-data`)
Both splits hold the same scenes: an overfit test, not a generalisation one.

Per dataset: the preset's VAR trained for `--steps` (nerfstudio's Trainer, pipeline, datamanager and optimiser from
method_configs/, built in this process as `ns-train` builds them), then the preset's diffusion model over it for
`--diffusion-steps`. Reported: the training loss over the first and last tenth of the steps, and the input-view
PSNR (view 0 rendered from its own reconstruction; for diffusion, from one sample) and target-view PSNR of every
scene before and after training. The EMA is off (decay 0): the smoke test judges the network being trained, which
an EMA of 0.9999 would hide for thousands of steps. LPIPS is off (its VGG weights may not be on the machine).

    python benchmarks/real_smoke.py    # CPU: 64x64, narrow widths, batch 2, 30 + 30 steps per dataset
    python benchmarks/real_smoke.py --full --device cuda --steps 2000 --diffusion-steps 2000   # the presets as set

Writes benchmarks/results/real_smoke_<cpu|cuda>.json (device, date, settings, numbers) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label  # noqa: E402

DEFAULT_REAL = ROOT.parent / "shared" / "data" / "real"
APPLE = "posediffusion_co3d/apple_seq_unknown"
RE10K_DEMO = "globalsplat_re10k_demo/scenes"


def write_co3d_apple(real: Path, root: Path) -> Path:
    """The PoseDiffusion apple frames as a one-sequence CO3D v2 category `apple` under `root`: the frames copied,
    frame_annotations.jgz with their cameras as CO3D stores them, and one set list whose train and test splits
    both hold every frame."""
    from nerfstudio_splatdiff.data.co3d_format import write_jgz

    src = real / APPLE
    cams = np.load(src / "gt_cameras.npz")
    frames = sorted(src.glob("*.jpg"))
    if len(frames) != len(cams["gtR"]):
        raise SystemExit(f"{src}: {len(frames)} frames but {len(cams['gtR'])} cameras")
    seq = "apple_seq_unknown"
    (root / "apple" / seq / "images").mkdir(parents=True, exist_ok=True)
    annotations, entries = [], []
    for i, frame in enumerate(frames):
        number = int(frame.stem.removeprefix("frame"))
        rel = f"apple/{seq}/images/{frame.name}"
        shutil.copyfile(frame, root / rel)
        W, H = Image.open(frame).size
        annotations.append(
            {
                "sequence_name": seq,
                "frame_number": number,
                "image": {"path": rel, "size": [H, W]},
                "viewpoint": {
                    "R": cams["gtR"][i].tolist(),
                    "T": cams["gtT"][i].tolist(),
                    "focal_length": cams["gtFL"][i].tolist(),
                    "principal_point": [0.0, 0.0],  # not stored with the sample: CO3D's are ~0 (centre)
                    "intrinsics_format": "ndc_isotropic",
                },
            }
        )
        entries.append([seq, number, rel])
    write_jgz(root / "apple" / "frame_annotations.jgz", annotations)
    write_jgz(root / "apple" / "sequence_annotations.jgz", [{"sequence_name": seq, "category": "apple"}])
    (root / "apple" / "set_lists").mkdir(exist_ok=True)
    lists = {"train": entries, "val": entries, "test": entries}
    (root / "apple" / "set_lists" / "set_lists_fewview_dev.json").write_text(json.dumps(lists))
    return root


def write_re10k_demo(real: Path, root: Path) -> Path:
    """The GlobalSplat RealEstate10K demo scenes (256x256 PNGs, pixel K, OpenCV c2w) as one pixelSplat chunk in
    both `train/` and `test/` under `root`."""
    entries = []
    for scene in sorted((real / RE10K_DEMO).iterdir()):
        info = json.loads((scene / "cameras.json").read_text())
        images, cams = [], []
        for view in info["views"]:
            buf = io.BytesIO()
            img = Image.open(scene / view["image"]).convert("RGB")
            W, H = img.size
            img.save(buf, format="JPEG", quality=95)
            images.append(torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8))
            K, w2c = np.array(view["intrinsic"]), np.linalg.inv(np.array(view["c2w"]))
            cams.append([K[0, 0] / W, K[1, 1] / H, K[0, 2] / W, K[1, 2] / H, 0.0, 0.0, *w2c[:3].reshape(-1)])
        entries.append(
            {
                "url": "",
                "timestamps": torch.arange(len(images)) * 33333,
                "cameras": torch.tensor(cams, dtype=torch.float32),
                "images": images,
                "key": scene.name,
            }
        )
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        torch.save(entries, root / split / "000000.torch")
        (root / split / "index.json").write_text(json.dumps({e["key"]: "000000.torch" for e in entries}))
    return root


def build_trainer(method: str, dataset: str, data: Path, out: Path, args, var_config: Path | None = None):
    """The preset's Trainer for this dataset, reduced unless --full (see the module docstring), set up."""
    import method_configs.splatdiff_methods as presets
    from nerfstudio_splatdiff.data.dataparsers import Co3dDataParserConfig, Re10kDataParserConfig

    config = copy.deepcopy(getattr(presets, method.replace("-", "_")).config)
    config.vis = "tensorboard"
    config.output_dir, config.experiment_name, config.timestamp = out, dataset, "smoke"
    config.machine.device_type = args.device
    config.steps_per_save = config.steps_per_eval_batch = config.steps_per_eval_image = 10**9
    config.steps_per_eval_all_images = 10**9
    dm, model = config.pipeline.datamanager, config.pipeline.model
    size = model.image_size if args.full else args.size
    if dataset == "co3d":
        dm.dataparser = Co3dDataParserConfig(data=data, resolution=size, cache_dir=out / "cache")
    else:
        dm.dataparser = Re10kDataParserConfig(data=data, resolution=size, cache_dir=out / "cache")
    dm.data = data
    dm.num_workers = 0
    if args.batch is not None or not args.full:
        dm.scenes_per_batch = args.batch or 2
    model.image_size = size
    model.ema_decay = 0.0
    if method == "splatdiff-var":
        model.lpips_weight = 0.0
        if not args.full:
            model.network.block_out_channels = tuple(args.widths)
            model.network.norm_num_groups = min(model.network.norm_num_groups, min(args.widths))
            model.network.privileged_grid = size // 8
    else:
        model.var_checkpoint = var_config
        model.num_steps = args.sampling_steps
        if not args.full:
            model.denoiser.block_out_channels = tuple(args.denoiser_widths)
            model.denoiser.attention_levels = tuple(range(1, len(args.denoiser_widths)))
            model.denoiser.norm_num_groups = min(model.denoiser.norm_num_groups, min(args.denoiser_widths))
    if args.lr is not None:
        for group in config.optimizers.values():
            group["optimizer"].lr = args.lr
    config.save_config()
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


@torch.no_grad()
def evaluate(trainer, samples: int) -> dict:
    """Input-view and target-view PSNR, averaged over the evaluation scenes (the training scenes here)."""
    model = trainer.pipeline.model
    model.eval()
    rows = []
    for _, batch in trainer.pipeline.datamanager.fixed_indices_eval_dataloader:
        if model.config.run_kind == "diffusion":
            metrics, _ = model.evaluate_scene(batch, num_samples=samples)
        else:
            metrics, _ = model.evaluate_scene(batch)
        rows.append(metrics)
    model.train()
    return {k: round(statistics.fmean(r[k] for r in rows), 3) for k in ("psnr_input", "psnr")}


def train(trainer, steps: int, samples: int) -> dict:
    """`steps` training iterations as nerfstudio's Trainer runs them (callbacks included), evaluated before and
    after; the loss curve is kept every step."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    before = evaluate(trainer, samples)
    losses = []
    trainer.pipeline.train()
    t0 = time.perf_counter()
    for step in range(steps):
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        loss, _, _ = trainer.train_iteration(step)
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        losses.append(float(loss.detach()))
        if not np.isfinite(losses[-1]):
            raise SystemExit(f"step {step}: the loss is not finite")
    seconds = time.perf_counter() - t0
    after = evaluate(trainer, samples)
    tenth = max(1, steps // 10)
    first, last = statistics.fmean(losses[:tenth]), statistics.fmean(losses[-tenth:])
    return {
        "steps": steps,
        "train_seconds": round(seconds, 1),
        "loss_first_tenth": round(first, 5),
        "loss_last_tenth": round(last, 5),
        "loss_falls": last < first,
        "before": before,
        "after": after,
        "psnr_input_rises": after["psnr_input"] > before["psnr_input"],
        "loss_curve_every_10": [round(v, 5) for v in losses[::10]],
    }


def write_summary(args, results: list, out: Path) -> dict:
    """The JSON of what has been measured so far (written after every stage: a run cut short keeps its numbers)."""
    summary = {
        "device": device_label(args.device),
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "settings": {
            "full_presets": args.full,
            "image_size": None if args.full else args.size,
            "var_widths": None if args.full else args.widths,
            "denoiser_widths": None if args.full else args.denoiser_widths,
            "batch": args.batch or ("preset" if args.full else 2),
            "lr": args.lr or "preset",
            "ema_decay": 0.0,
            "lpips": "off",
            "diffusion_eval": f"{args.samples} sample(s), {args.sampling_steps} DDIM steps",
        },
        "note": "overfit smoke test: train and evaluation scenes are the same real scenes; psnr_input is view 0 "
        "rendered from its own reconstruction (diffusion: from a sample), psnr the other views",
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    return summary


def say(row: dict) -> None:
    loss = f"loss {row['loss_first_tenth']} -> {row['loss_last_tenth']}"
    print(f"{row['dataset']} {row['method']}: {loss}, PSNR {row['before']} -> {row['after']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", choices=("co3d", "re10k"), default=["co3d", "re10k"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30, help="VAR training steps per dataset")
    ap.add_argument("--diffusion-steps", type=int, default=30, help="diffusion training steps (0: none)")
    ap.add_argument("--full", action="store_true", help="the presets' own image size and widths (a GPU)")
    ap.add_argument("--size", type=int, default=64, help="image side when not --full")
    ap.add_argument("--widths", type=int, nargs=4, default=[32, 64, 64, 64], help="VAR widths when not --full")
    ap.add_argument("--denoiser-widths", type=int, nargs="+", default=[32, 64, 64], help="when not --full")
    ap.add_argument(
        "--batch", type=int, help="scenes per batch, drawn with replacement (default: 2, --full: the preset's)"
    )
    ap.add_argument("--lr", type=float, help="learning rate instead of the preset's")
    ap.add_argument("--sampling-steps", type=int, default=20, help="DDIM steps of the diffusion evaluation")
    ap.add_argument("--samples", type=int, default=1, help="diffusion samples per scene in the evaluation")
    ap.add_argument("--real-data", type=Path, default=Path(os.environ.get("SPLATDIFF_REAL_DATA", DEFAULT_REAL)))
    ap.add_argument("--json", type=Path, help="default: benchmarks/results/real_smoke_<cpu|cuda>.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not (args.real_data / APPLE).is_dir() or not (args.real_data / RE10K_DEMO).is_dir():
        raise SystemExit(f"the real samples are not at {args.real_data}: pass --real-data or SPLATDIFF_REAL_DATA")
    torch.manual_seed(0)
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    out = args.json or ROOT / "benchmarks" / "results" / f"real_smoke_{kind}.json"

    results: list = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for dataset in args.datasets:
            write = write_co3d_apple if dataset == "co3d" else write_re10k_demo
            data = write(args.real_data, tmp / "data" / dataset)
            trainer = build_trainer("splatdiff-var", dataset, data, tmp / "runs", args)
            row = {"dataset": dataset, "method": "splatdiff-var", **train(trainer, args.steps, args.samples)}
            row["scenes"] = len(trainer.pipeline.datamanager.train_scenes)
            row["widths"] = list(trainer.pipeline.model.config.network.block_out_channels)
            results.append(row)
            say(row)
            write_summary(args, results, out)
            if args.diffusion_steps <= 0:
                continue
            trainer.save_checkpoint(args.steps - 1)
            var_config = trainer.config.get_base_dir() / "config.yml"
            del trainer
            trainer = build_trainer("splatdiff-diffusion", dataset, data, tmp / "runs", args, var_config)
            row = {
                "dataset": dataset,
                "method": "splatdiff-diffusion",
                **train(trainer, args.diffusion_steps, args.samples),
            }
            row["widths"] = list(trainer.pipeline.model.config.denoiser.block_out_channels)
            results.append(row)
            say(row)
            write_summary(args, results, out)
            del trainer

    from rich.console import Console
    from rich.table import Table

    summary = write_summary(args, results, out)
    table = Table(title=f"Real-image overfit smoke test on {summary['device']}")
    for col in ("data", "method", "steps", "s", "loss first/last tenth", "input PSNR", "target PSNR"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(
            r["dataset"],
            r["method"],
            str(r["steps"]),
            f"{r['train_seconds']:.0f}",
            f"{r['loss_first_tenth']:.4f} -> {r['loss_last_tenth']:.4f}",
            f"{r['before']['psnr_input']:.2f} -> {r['after']['psnr_input']:.2f}",
            f"{r['before']['psnr']:.2f} -> {r['after']['psnr']:.2f}",
        )
    Console().print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
