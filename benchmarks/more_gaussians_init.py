"""The M ablation without training from the start: a warm start for a VAR with more Gaussians per pixel.

Splatter Image draws every pixel's M Gaussians along its ray; a thin part behind the object (the geometry ground's
horn) needs Gaussians pushed far along or off their rays, so more of them per pixel may draw it (README "Results",
Ablations). This writes a trained VAR checkpoint with its output layer widened to `--gaussians-per-pixel` (the old
Gaussians keep their weights, the new ones start faint: `runs.with_more_gaussians_per_pixel`), as a file
`ns-train splatdiff-var-small --pipeline.model.network.head.gaussians-per-pixel N --load-checkpoint` warm-starts from.

    python benchmarks/more_gaussians_init.py --gaussians-per-pixel 4 --output outputs/m4-init \\
        --checkpoint checkpoints/shape/splatdiff-var-small/shipped/nerfstudio_models/step-000022749.ckpt
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from common import warm_start_parser, write_warm_start

    from nerfstudio_splatdiff.runs import with_more_gaussians_per_pixel

    parser = warm_start_parser(__doc__, "a VAR run's step-*.ckpt", "a new folder for the widened checkpoint")
    parser.add_argument("--gaussians-per-pixel", type=int, required=True, help="the new M (more than the run's)")
    parser.add_argument(
        "--opacity-bias",
        type=float,
        default=-2.0,
        help="opacity logit of the new Gaussians (-2: 12%% opaque, Splatter Image's own start; at -5 they never "
        "learned to be seen in 1,500 steps)",
    )
    args = parser.parse_args()
    old = {}

    def widen(pipeline: dict) -> dict:
        widened, old["m"] = with_more_gaussians_per_pixel(pipeline, args.gaussians_per_pixel, args.opacity_bias)
        return widened

    out, state = write_warm_start(args.checkpoint, args.output, widen)
    print(f"{out}: {old['m']} -> {args.gaussians_per_pixel} Gaussians per pixel, step {state.get('step')}")


if __name__ == "__main__":
    main()
