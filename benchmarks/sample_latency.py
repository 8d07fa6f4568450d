"""Latency of `splatdiff-sample` as a user sees it: one photo, 4 samples, the whole command in a fresh process
(start-up, model loading, sampling, rendering, writing), timed from outside as wall and CPU (user + sys) seconds.

Cases: `help` (`--help`: the start-up floor of the command itself), `default` (default settings: .ply files,
turntable GIFs and the contact sheet) and `no_turntable` (`--no-turntable`: .ply files and the contact sheet, the
fast path). `--cold` adds both sampling cases with an empty numba cache (NUMBA_CACHE_DIR pointed at a new folder):
the first run on a fresh machine, which compiles the rasteriser's kernels. The phases the command times itself
(load, sampling, render, write; from its summary.json) are listed too; `other` is the rest of the wall time,
mostly imports. On a busy machine wall time includes waiting for the CPU: compare CPU seconds there.

    python benchmarks/sample_latency.py [--repeats 3] [--cold] [--image photo.png] [--load-config run/config.yml]

Writes benchmarks/results/sample_latency_<device>.json (device and date inside) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import device_label, tool  # noqa: E402

SHIPPED = ROOT / "checkpoints/demo/splatdiff-diffusion-small/shipped/config.yml"
TARGETS = {"default": 10.0, "no_turntable": 3.0}
"""Wall-second targets of issue #11 (2 cores, start-up included)."""
PHASES = ("load_seconds", "sampling_seconds", "render_seconds", "write_seconds")


def test_photo(folder: Path) -> Path:
    """A 256x192 JPEG of a simple object (a shaded box and a disc on white): any photo does for timing."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 192), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.polygon([(90, 60), (170, 50), (180, 140), (95, 150)], fill=(120, 60, 40))
    draw.polygon([(170, 50), (200, 70), (205, 150), (180, 140)], fill=(80, 40, 25))
    draw.ellipse((60, 90, 110, 120), fill=(40, 90, 160))
    path = folder / "photo.jpg"
    img.save(path, quality=92)
    return path


def run_case(command: list, extra: list, env: dict, cwd: Path) -> dict:
    """Run the command once: its wall and CPU seconds and peak memory (os.wait4: this child alone), and the phases
    it recorded in its summary.json."""
    out_dir = cwd / f"out_{time.monotonic_ns()}"
    cmd = [*command, *extra] if extra == ["--help"] else [*command, "--output-dir", str(out_dir), *extra]
    log = cwd / "log.txt"
    with open(log, "w") as f:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{log.read_text()[-3000:]}")
    row = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "max_rss_mb": usage.ru_maxrss / 1024}
    summary = out_dir / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        image = s["images"][0]
        row["load_s"] = s["load_seconds"]
        for key in PHASES[1:]:
            if key in image:
                row[key.replace("_seconds", "_s")] = image[key]
        row["other_s"] = wall - sum(row.get(k.replace("_seconds", "_s"), 0.0) for k in PHASES)
    return row


def median_row(rows: list) -> dict:
    """Per field, the median over repeats (the run nearest the middle for odd counts)."""
    keys = rows[0].keys()
    return {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in keys}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--load-config", type=Path, default=SHIPPED, help="run to sample with (default: the shipped one)")
    ap.add_argument("--image", type=Path, help="photo to sample from (default: a generated test photo)")
    ap.add_argument("--num-samples", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=1, help="runs per case; the table shows medians")
    ap.add_argument("--cold", action="store_true", help="also time both cases with an empty numba cache")
    ap.add_argument("--cases", nargs="+", default=["help", "default", "no_turntable"])
    ap.add_argument(
        "--command",
        nargs="+",
        help="time this command instead of the installed splatdiff-sample (e.g. `python old_sample.py`)",
    )
    ap.add_argument("--json", type=Path, help="write here instead of benchmarks/results/sample_latency_<device>.json")
    ap.add_argument("--note", default="", help="free text kept in the JSON (e.g. what else ran on the machine)")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    config = args.load_config.resolve()
    if not config.is_file():
        raise SystemExit(f"No config.yml at {config}: pass --load-config of a splatdiff run.")
    # The command runs in a temporary folder: paths given relative to here are made absolute.
    command = [str(Path(c).absolute()) if Path(c).exists() else c for c in args.command or [tool("splatdiff-sample")]]
    flags = {"help": ["--help"], "default": [], "no_turntable": ["--no-turntable"]}
    console = Console()
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="sample_latency_") as tmp:
        work = Path(tmp)  # the command runs here: relative paths in the config resolve against the run folder
        image = args.image.resolve() if args.image else test_photo(work)
        base = [*command, "--load-config", str(config), "--image", str(image), "--num-samples", str(args.num_samples)]
        cases = [(name, flags[name], {}) for name in args.cases]
        if args.cold:
            cases += [(f"{n}_cold_numba", flags[n], {"cold": True}) for n in args.cases if n != "help"]
        with console.status("timing splatdiff-sample") as status:
            for name, extra, opts in cases:
                rows = []
                for r in range(args.repeats):
                    status.update(f"{name} ({r + 1}/{args.repeats})")
                    env = dict(os.environ)
                    if opts.get("cold"):
                        env["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(dir=work, prefix="numba_cache_")
                    rows.append(run_case(base if extra != ["--help"] else command, extra, env, work))
                results[name] = {"flags": extra, "runs": rows, **median_row(rows)}
    label = device_label()
    load = os.getloadavg()
    summary = {
        "device": label,
        "date": date.today().isoformat(),
        "cores": len(os.sched_getaffinity(0)),
        "load_average_1_5_15": list(load),
        "busy_note": "wall includes waiting for the CPU when the load average exceeds the cores; compare cpu_s",
        "python": sys.version.split()[0],
        "command": [str(c) for c in command],
        "config": str(config),
        "image": str(args.image or "generated test photo"),
        "num_samples": args.num_samples,
        "repeats": args.repeats,
        "targets_wall_s": TARGETS,
        "note": args.note,
        "cases": results,
    }
    slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
    path = args.json or ROOT / "benchmarks" / "results" / f"sample_latency_{slug}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")

    table = Table(title=f"splatdiff-sample, 1 photo, {args.num_samples} samples: {label}, load {load[0]:.1f}")
    for col in ("case", "wall s", "cpu s", "load", "sampling", "render", "write", "other", "target"):
        table.add_column(col, justify="left" if col == "case" else "right")
    for name, row in results.items():
        target = next((t for key, t in TARGETS.items() if name.startswith(key)), None)
        cells = [f"{row[k]:.2f}" if k in row else "-" for k in ("load_s", "sampling_s", "render_s", "write_s")]
        other = f"{row['other_s']:.2f}" if "other_s" in row else "-"
        table.add_row(
            name, f"{row['wall_s']:.2f}", f"{row['cpu_s']:.2f}", *cells, other, "-" if target is None else f"{target:g}"
        )
    console.print(table)
    console.print(f"Wrote {path}")


if __name__ == "__main__":
    main()
