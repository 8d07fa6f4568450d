"""Training speed: steps per second of the small presets, split into data, network and rasteriser time.

Each method is built from its preset in method_configs/ (nerfstudio's own Trainer, pipeline, optimisers and
callbacks) on a small procedural object dataset, then `--steps` training iterations are timed after `--warmup`.
Per step:
  data        waiting for `datamanager.next_train` (the batch; worker processes as the preset sets them)
  rasteriser  inside `render_gaussians`: forward, and backward from its outputs' gradients to its inputs'
  network     everything else: networks forward + backward, losses, optimiser step, callbacks (EMA)
States: "init" (random weights); "trained" when a run is given with --checkpoint (its weights, e.g. the shipped
checkpoints/demo runs; `--shipped` uses those). diffusion-small trains over a frozen VAR: --var-checkpoint
(default: the shipped VAR).

    python benchmarks/train_speed.py [--methods var-small regression-small diffusion-small] [--steps 10]
        [--shipped | --checkpoint RUN/config.yml ...] [--device cpu|cuda] [--backend auto|torch|numba|gsplat]
        [--batch B] [--device-scenes auto|on|off] [--profile STEPS]

`var` (the paper preset, 128x128) is timed only when asked for (--methods var): the GPU target of issue #11.

Writes benchmarks/results/train_speed_<cpu|cuda>.json (device, date, settings, numbers) and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label  # noqa: E402

METHODS = {
    "var-small": "splatdiff_var_small",
    "var": "splatdiff_var",
    "regression-small": "splatdiff_regression_small",
    "diffusion-small": "splatdiff_diffusion_small",
}
SHIPPED = {
    "var-small": ROOT / "checkpoints/demo/splatdiff-var-small/shipped/config.yml",
    "diffusion-small": ROOT / "checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml",
}


class RenderTimer:
    """Wraps `render_gaussians` where the models call it: forward time, and backward time measured between the
    gradient reaching its outputs and the gradient leaving through its inputs (identity autograd markers)."""

    def __init__(self) -> None:
        self.forward_s = 0.0
        self.backward_s = 0.0
        self.calls = 0
        self._bwd_start: dict[int, float] = {}

    def reset(self) -> None:
        self.forward_s = self.backward_s = 0.0
        self.calls = 0
        self._bwd_start.clear()

    def wrap(self, render):
        timer = self

        class Mark(torch.autograd.Function):
            @staticmethod
            def forward(ctx, key, where, *ts):
                ctx.key, ctx.where = key, where
                return tuple(t.view_as(t) for t in ts)

            @staticmethod
            def backward(ctx, *grads):
                now = time.perf_counter()
                if ctx.where == "out":
                    timer._bwd_start[ctx.key] = now
                elif ctx.key in timer._bwd_start:
                    timer.backward_s += now - timer._bwd_start.pop(ctx.key)
                return (None, None, *grads)

        def timed(gaussians, *args, **kwargs):
            key = timer.calls
            timer.calls += 1
            grad = torch.is_grad_enabled() and gaussians.means.requires_grad
            if grad:
                names = ("means", "quats", "scales", "opacities", "colors")
                marked = Mark.apply(key, "in", *(getattr(gaussians, n) for n in names))
                gaussians = type(gaussians)(**dict(zip(names, marked)))
            t0 = time.perf_counter()
            out = render(gaussians, *args, **kwargs)
            timer.forward_s += time.perf_counter() - t0
            if grad:
                rgb, alpha, depth = Mark.apply(key, "out", out.rgb, out.alpha, out.depth)
                out = type(out)(rgb=rgb, alpha=alpha, depth=depth)
            return out

        return timed


def ensure_data(root: Path) -> Path:
    """A small procedural object dataset (the small presets refuse other kinds), generated once."""
    from nerfstudio_splatdiff.data.procedural.generate import generate_dataset

    if not (root / "procedural" / "frame_annotations.jgz").is_file():
        print(f"generating 16 procedural object scenes in {root} (once)")
        generate_dataset(root, scenes=16, views=12, resolution=64, seed=7, kind="object")
    return root


def run_config(path: Path):
    from nerfstudio_splatdiff.runs import load_run_config

    return load_run_config(Path(path))


def build_trainer(
    method: str,
    data: Path,
    device: str,
    out_dir: Path,
    var_checkpoint: Path | None,
    workers: int | None,
    batch: int | None = None,
    device_scenes: str = "auto",
    widths: list[int] | None = None,
):
    import method_configs.splatdiff_methods as presets

    config = copy.deepcopy(getattr(presets, METHODS[method]).config)
    config.vis = "tensorboard"
    config.output_dir = out_dir
    config.experiment_name = "train_speed"
    config.timestamp = method
    config.machine.device_type = device
    config.steps_per_save = 10**9
    config.steps_per_eval_batch = config.steps_per_eval_image = config.steps_per_eval_all_images = 10**9
    dm = config.pipeline.datamanager
    dm.data = data
    dm.dataparser.data = data
    if workers is not None:
        dm.num_workers = workers
    if batch is not None:
        dm.scenes_per_batch = batch
    dm.device_scenes = device_scenes
    if widths is not None and not method.startswith("diffusion"):  # a narrower network: what would it save?
        net = config.pipeline.model.network
        net.block_out_channels = tuple(widths)
        net.norm_num_groups = min(net.norm_num_groups, min(widths))
    if method.startswith("diffusion"):
        config.pipeline.model.var_checkpoint = var_checkpoint
    if method == "var":  # the paper preset's LPIPS phase starts at step 300,000, far beyond a timing, and needs
        config.pipeline.model.lpips_weight = 0.0  # VGG weights a fresh machine may not have
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    return trainer


def load_weights(trainer, checkpoint: Path) -> int:
    """The run's newest checkpoint into the training pipeline (slim inference copies load too). Returns its step."""
    from nerfstudio_splatdiff.models.var_checkpoint import load_checkpoint, resolve_run

    _, source = resolve_run(checkpoint)
    ckpt, loaded = load_checkpoint(source)
    step = int(loaded.get("step", 0))
    trainer.pipeline.load_pipeline(loaded["pipeline"], step)
    return step


def time_steps(trainer, timer: RenderTimer, steps: int, warmup: int, start_step: int, device: str) -> dict:
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    dm = trainer.pipeline.datamanager
    next_train = dm.next_train
    data_s = [0.0]

    def timed_next_train(step):
        t0 = time.perf_counter()
        out = next_train(step)
        data_s[0] += time.perf_counter() - t0
        return out

    dm.next_train = timed_next_train
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    trainer.pipeline.train()
    for i in range(warmup + steps):
        step = start_step + i
        data_s[0] = 0.0
        timer.reset()
        sync()
        t0 = time.perf_counter()
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        loss, _, _ = trainer.train_iteration(step)
        for cb in trainer.callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        sync()
        total = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise SystemExit(f"step {step}: the loss is not finite")
        if i >= warmup:
            rast = timer.forward_s + timer.backward_s
            rows.append(
                {
                    "step_s": total,
                    "data_s": data_s[0],
                    "raster_s": rast,
                    "raster_fwd_s": timer.forward_s,
                    "raster_bwd_s": timer.backward_s,
                    "network_s": total - data_s[0] - rast,
                }
            )
    dm.next_train = next_train
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    med["steps_per_s"] = 1.0 / med["step_s"]
    med["steps_timed"] = steps
    return med


PROFILE_LABELS = ("data", "forward + loss", "rasteriser forward", "optimiser", "after-step callbacks (EMA)")
"""The parts of a step `profile_steps` labels (record_function "step: <label>"); the backward is the rest."""
HOST_SYNC_EVENTS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def profile_steps(trainer, steps: int, start_step: int, device: str) -> dict:
    """`steps` more training steps under torch.profiler, each part labelled (PROFILE_LABELS): milliseconds per step
    of each part (CPU wall time of its range; device time of its kernels on CUDA), the backward as the rest, host
    reads of tensor values per step (`aten::_local_scalar_dense`: .item(), float(), bool() of a tensor; each one
    waits for all queued GPU work) and, on CUDA, explicit synchronisations per step; and the op table."""
    from nerfstudio.engine.callbacks import TrainingCallbackLocation
    from torch.profiler import ProfilerActivity, profile, record_function

    import nerfstudio_splatdiff.models.scene_model as scene_model

    def labelled(label, fn):
        def call(*args, **kwargs):
            with record_function(f"step: {label}"):
                return fn(*args, **kwargs)

        return call

    pipeline, dm, optimizers = trainer.pipeline, trainer.pipeline.datamanager, trainer.optimizers
    steppers = ("optimizer_scaler_step_all", "optimizer_scaler_step_some")  # nerfstudio's Trainer calls one of them
    originals = (dm.next_train, pipeline.get_train_loss_dict, *(getattr(optimizers, n) for n in steppers))
    render = scene_model.render_gaussians
    dm.next_train = labelled("data", dm.next_train)
    pipeline.get_train_loss_dict = labelled("forward + loss", pipeline.get_train_loss_dict)
    for name in steppers:
        setattr(optimizers, name, labelled("optimiser", getattr(optimizers, name)))
    scene_model.render_gaussians = labelled("rasteriser forward", render)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    try:
        sync()
        with profile(activities=activities) as prof:
            for i in range(steps):
                step = start_step + i
                with record_function("step"):
                    for cb in trainer.callbacks:
                        cb.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
                    trainer.train_iteration(step)
                    with record_function("step: after-step callbacks (EMA)"):
                        for cb in trainer.callbacks:
                            cb.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
                sync()
    finally:
        dm.next_train, pipeline.get_train_loss_dict, step_all, step_some = originals
        optimizers.optimizer_scaler_step_all, optimizers.optimizer_scaler_step_some = step_all, step_some
        scene_model.render_gaussians = render
    events = {e.key: e for e in prof.key_averages()}

    def ms(key: str, kind: str) -> float:
        e = events.get(key)
        if e is None:
            return 0.0
        total = e.cpu_time_total if kind == "cpu" else getattr(e, "device_time_total", 0.0)
        return round(total / 1000 / steps, 3)

    parts = {label: ms(f"step: {label}", "cpu") for label in PROFILE_LABELS}
    step_ms = ms("step", "cpu")
    outer = ("data", "forward + loss", "optimiser", "after-step callbacks (EMA)")  # disjoint; the rasteriser is inside
    parts["backward and the rest"] = round(step_ms - sum(parts[k] for k in outer), 3)
    out = {
        "profiled_steps": steps,
        "step_ms": step_ms,
        "cpu_ms_per_step": parts,
        "host_reads_per_step": events["aten::_local_scalar_dense"].count / steps
        if "aten::_local_scalar_dense" in events
        else 0.0,
    }
    if cuda:
        out["device_ms_per_step"] = {label: ms(f"step: {label}", "device") for label in PROFILE_LABELS}
        out["syncs_per_step"] = sum(events[k].count for k in HOST_SYNC_EVENTS if k in events) / steps
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    out["table"] = prof.key_averages().table(sort_by=sort, row_limit=25)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=[m for m in METHODS if m.endswith("small")])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per method and state (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "numba", "gsplat"),
        help="render backend (sets SPLATDIFF_RENDER_BACKEND; auto: numba on CPU, gsplat on CUDA)",
    )
    ap.add_argument(
        "--checkpoint",
        type=Path,
        nargs="*",
        default=[],
        help="runs (config.yml) whose weights give the trained state; the method is read from the run",
    )
    ap.add_argument("--shipped", action="store_true", help="the trained state of the shipped checkpoints/demo runs")
    ap.add_argument(
        "--var-checkpoint",
        type=Path,
        default=SHIPPED["var-small"],
        help="the frozen VAR under diffusion-small (default: the shipped one)",
    )
    ap.add_argument("--data", type=Path, help="a procedural object dataset (default: generated once in the cache)")
    ap.add_argument("--num-workers", type=int, help="data loader workers (default: the preset's)")
    ap.add_argument("--batch", type=int, help="scenes per batch (default: the preset's)")
    ap.add_argument(
        "--widths",
        type=int,
        nargs=4,
        help="encoder/decoder widths of the VAR and regression networks instead of the preset's (init only)",
    )
    ap.add_argument(
        "--device-scenes",
        default="auto",
        choices=("auto", "on", "off"),
        help="training scenes resident on the device (auto: on CUDA when they fit; see the datamanager config)",
    )
    ap.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="STEPS",
        help="after the timing, profile this many more steps (torch.profiler: data, network, rasteriser, optimiser, "
        "host reads) and print the op table",
    )
    ap.add_argument("--json", type=Path, help="default: benchmarks/results/train_speed_<device>.json")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.backend != "auto":
        os.environ["SPLATDIFF_RENDER_BACKEND"] = args.backend

    import nerfstudio_splatdiff.models.scene_model as scene_model
    from nerfstudio_splatdiff.splats.render import default_backend

    timer = RenderTimer()
    scene_model.render_gaussians = timer.wrap(scene_model.render_gaussians)
    cache = Path(os.environ.get("SPLATDIFF_CACHE", Path.home() / ".cache" / "nerfstudio-splatdiff"))
    data = ensure_data(args.data or cache / "train_speed_data")

    trained: dict[str, Path] = {}
    for path in list(args.checkpoint) + ([p for p in SHIPPED.values() if p.is_file()] if args.shipped else []):
        name = run_config(path).method_name.removeprefix("splatdiff-")
        if name not in METHODS:
            raise SystemExit(f"{path} is a {name!r} run; this benchmark times {', '.join(METHODS)}.")
        trained[name] = path
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods:
            for state in ["init"] + (["trained"] if method in trained and args.widths is None else []):
                t0 = time.perf_counter()
                try:
                    trainer = build_trainer(
                        method,
                        data,
                        args.device,
                        Path(tmp),
                        args.var_checkpoint,
                        args.num_workers,
                        args.batch,
                        args.device_scenes,
                        args.widths,
                    )
                    start = load_weights(trainer, trained[method]) if state == "trained" else 0
                except Exception as e:  # one method failing (e.g. a checkpoint of an older model) spoils no other
                    results.append({"method": method, "state": state, "error": f"{type(e).__name__}: {e}"[:500]})
                    print(f"{method} ({state}): {results[-1]['error']}")
                    continue
                row = time_steps(trainer, timer, args.steps, args.warmup, start, args.device)
                if args.profile > 0:
                    row["profile"] = profile_steps(trainer, args.profile, start + args.warmup + args.steps, args.device)
                    print(row["profile"]["table"])
                    print({k: v for k, v in row["profile"].items() if k != "table"})
                row.update(method=method, state=state, setup_s=time.perf_counter() - t0)
                if state == "trained":
                    row["checkpoint"] = str(trained[method])
                dm = trainer.pipeline.datamanager.config
                row.update(
                    widths=None
                    if method.startswith("diffusion")
                    else list(trainer.pipeline.model.config.network.block_out_channels),
                    resident_scenes=trainer.pipeline.datamanager.device_scenes is not None,
                    scenes_per_batch=dm.scenes_per_batch,
                    views=1 + dm.num_target_views,
                    image_size=trainer.pipeline.model.config.image_size,
                )
                results.append(row)
                print(f"{method} ({state}): {row['step_s']:.3f} s/step")
                del trainer

    summary = {
        "device": device_label(args.device),
        "date": date.today().isoformat(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "render_backend": default_backend(args.device),
        "steps": args.steps,
        "warmup": args.warmup,
        "note": "medians per step; rasteriser = render_gaussians forward + backward; network = the rest of the step",
        "results": results,
    }
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Training step on {summary['device']} ({summary['render_backend']} rasteriser), median s/step")
    for col in ("method", "state", "batch", "steps/s", "step", "data", "network", "raster fwd", "raster bwd"):
        table.add_column(col, justify="right")
    for r in results:
        if "error" in r:
            table.add_row(r["method"], r["state"], "-", "failed", *["-"] * 5)
            continue
        table.add_row(
            r["method"],
            r["state"],
            f"{r['scenes_per_batch']}x{r['views']} @{r['image_size']}",
            f"{r['steps_per_s']:.2f}",
            f"{r['step_s']:.3f}",
            f"{r['data_s']:.3f}",
            f"{r['network_s']:.3f}",
            f"{r['raster_fwd_s']:.3f}",
            f"{r['raster_bwd_s']:.3f}",
        )
    Console().print(table)
    out = (
        args.json
        or ROOT / "benchmarks" / "results" / f"train_speed_{'cuda' if args.device.startswith('cuda') else 'cpu'}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
