"""Evaluate a trained splatdiff run on your own capture with `ns-eval`, whatever data it trained on.

A run trained on `nerfstudio-scenes` evaluates on its captures with plain `ns-eval --load-config <run>/config.yml`.
This script evaluates any other run (e.g. the shipped proving-ground checkpoint) on a capture or a folder of them:
it writes a copy of the run's config.yml whose dataparser is `nerfstudio-scenes` on `--data` (at the model's input
size, the small presets' procedural-only check off, checkpoints still read from the run's folder), runs `ns-eval` on
it (frame `--input-frame` of each test scene is the input, every other frame a target; the evaluation frames are
printed), and writes the results with the settings to `--output`.

    python benchmarks/eval_capture.py --load-config checkpoints/demo/splatdiff-var-small/shipped/config.yml \\
        --data ../shared/data/real/instant_ngp_fox --output benchmarks/results/eval_capture_fox_var.json

The config copy and ns-eval's renders go to a temporary folder (kept with --work-dir).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label, tool  # noqa: E402


def capture_config(config_path: Path, data: Path, input_frame: int, cache_dir: Path) -> object:
    """The run's config (read with the safe loader) pointed at `data` through the nerfstudio-scenes dataparser."""
    from nerfstudio_splatdiff.data.dataparsers import NerfstudioScenesDataParserConfig
    from nerfstudio_splatdiff.models.var_checkpoint import load_run_config

    run = load_run_config(config_path)
    run_folder = config_path.resolve().parent
    if (run.experiment_name, run.method_name, run.timestamp) != tuple(run_folder.parts[-3:]):
        sys.exit(f"{config_path} is not in <output>/<experiment>/<method>/<timestamp>/, where ns-eval looks for it.")
    run.output_dir = run_folder.parents[2]  # ns-eval reads the checkpoints from the run's own folder
    model = run.pipeline.model
    if getattr(model, "var_checkpoint", None) is not None and not Path(model.var_checkpoint).is_absolute():
        for parent in run_folder.parents:  # recorded relative to where training ran
            if (parent / model.var_checkpoint).exists():
                model.var_checkpoint = parent / model.var_checkpoint
                break
    dm = run.pipeline.datamanager
    dm.dataparser = NerfstudioScenesDataParserConfig(
        data=data.resolve(), resolution=model.image_size, input_frame=input_frame, cache_dir=cache_dir
    )
    dm.data = run.data = data.resolve()
    dm.scene_kind = None  # the small presets refuse anything but procedural objects; this is a measurement
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="a capture folder, or a folder of them")
    parser.add_argument("--input-frame", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True, help="results JSON")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the config copy and renders here")
    args = parser.parse_args()
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="eval_capture_"))
    work.mkdir(parents=True, exist_ok=True)
    run = capture_config(args.load_config, args.data, args.input_frame, work / "cache")
    config = work / "config.yml"
    config.write_text(yaml.dump(run))
    t0 = time.perf_counter()
    out = subprocess.run(
        [
            tool("ns-eval"),
            "--load-config",
            str(config),
            "--output-path",
            str(work / "eval.json"),
            "--render-output-path",
            str(work / "renders"),
        ],
        capture_output=True,
        text=True,
    )
    print(out.stdout[-4000:], out.stderr[-4000:] if out.returncode else "")
    if out.returncode != 0:
        sys.exit(f"ns-eval failed (exit {out.returncode})")
    frames = [ln.strip() for ln in out.stdout.splitlines() if ": input " in ln]
    record = {
        "date": date.today().isoformat(),
        "device": device_label(),  # ns-eval takes the GPU when there is one
        "run": str(args.load_config),
        "data": str(args.data),
        "input_frame": args.input_frame,
        "evaluation_frames": frames,
        "seconds": round(time.perf_counter() - t0, 1),
        "results": json.loads((work / "eval.json").read_text())["results"],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["results"], indent=2))


if __name__ == "__main__":
    main()
