"""The depth (capacity) ablation without training from the start: a warm start for a VAR with more residual blocks.

Overfitting 8 training scenes for 600 steps, the shipped geometry VAR draws the horns it misses when it has all
1,500 paired sequences to fit (README "Results"), so the network can draw them and the bottleneck may be its
capacity. This writes a trained VAR checkpoint with `--layers-per-block` residual blocks per encoder level (one more
per decoder level), the new ones starting as the identity (`runs.with_more_layers_per_block`), as a file
`ns-train splatdiff-var-small --pipeline.model.network:var-net-config --pipeline.model.network.layers-per-block N
--load-checkpoint` warm-starts from.

    python benchmarks/deeper_init.py --layers-per-block 2 --output outputs/deeper-init \\
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

    from nerfstudio_splatdiff.runs import with_more_layers_per_block

    parser = warm_start_parser(__doc__, "a VAR run's step-*.ckpt", "a new folder for the deepened checkpoint")
    parser.add_argument("--layers-per-block", type=int, required=True, help="the new number (more than the run's)")
    args = parser.parse_args()
    old = {}

    def deepen(pipeline: dict) -> dict:
        deeper, old["layers"] = with_more_layers_per_block(pipeline, args.layers_per_block)
        return deeper

    out, state = write_warm_start(args.checkpoint, args.output, deepen)
    print(f"{out}: {old['layers']} -> {args.layers_per_block} layers per block, step {state.get('step')}")


if __name__ == "__main__":
    main()
