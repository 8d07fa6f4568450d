"""How fast does the CO3D dataparser build its cache, in one process and in several?

`ns-train ... co3d-data` preprocesses every sequence once (crop, resize, masks, depths, camera normalisation) and
caches the result; a fresh machine pays this before the first training step (a 2,000-scene paired proving ground is
6,000 sequences). `--preprocess-workers` spreads it over processes. This times `load_co3d_split` on the first
`--sequences` training sequences of a CO3D-format dataset, once per worker count, each into a new temporary cache
(deleted afterwards; the user's cache is not touched), checks that every count gives the same scenes, and writes
benchmarks/results/preprocess_speed_<device>.json (device and date inside) and a table.

    python benchmarks/preprocess_speed.py --data data/proving-shape-paired [--sequences 300] [--workers 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import device_label  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a CO3D-format root (e.g. made by the data stage)")
    ap.add_argument("--sequences", type=int, default=300, help="time the first this many training sequences")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time, in order")
    ap.add_argument("--resolution", type=int, default=64, help="the small presets' image side")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default: results/preprocess_speed_<dev>.json)")
    args = ap.parse_args()

    from nerfstudio_splatdiff.data.co3d import Co3dSettings, load_co3d_split
    from nerfstudio_splatdiff.errors import SplatdiffError, install_one_line_errors

    install_one_line_errors()
    if not (args.data.is_dir() and args.sequences > 0 and all(w >= 1 for w in args.workers)):
        raise SplatdiffError("Pass an existing --data folder, --sequences >= 1 and --workers counts >= 1.")
    rows, names = [], None
    for workers in args.workers:
        with tempfile.TemporaryDirectory(prefix="splatdiff-preprocess-") as tmp:
            t0 = time.perf_counter()
            scenes, _ = load_co3d_split(
                args.data, None, "fewview_dev", "train", Co3dSettings(resolution=args.resolution),
                cache_root=Path(tmp), max_sequences=args.sequences, workers=workers,
            )  # fmt: skip
            seconds = time.perf_counter() - t0
        got = [s.name for s in scenes]
        if names is not None and got != names:
            raise SplatdiffError(f"{workers} workers gave other scenes than {args.workers[0]}: a preprocessing bug.")
        names = got
        rows.append({"workers": workers, "sequences": len(got), "seconds": seconds, "per_second": len(got) / seconds})
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = base / r["seconds"]
    device = device_label()
    result = {
        "device": device,
        "date": date.today().isoformat(),
        "cores": os.cpu_count(),
        "data": str(args.data),
        "resolution": args.resolution,
        "rows": rows,
        "note": "load_co3d_split on the first --sequences training sequences, a fresh cache per worker count",
    }
    out = args.out or ROOT / "benchmarks/results" / f"preprocess_speed_{'gpu' if 'CPU' not in device else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{device}, {os.cpu_count()} cores, {args.data}")
    print(f"{'workers':>8} {'sequences':>10} {'seconds':>8} {'seq/s':>7} {'speedup':>8}")
    for r in rows:
        print(
            f"{r['workers']:>8} {r['sequences']:>10} {r['seconds']:>8.1f} {r['per_second']:>7.1f} {r['speedup']:>7.2f}x"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
