"""The paper's recipe at equal compute: a warm start for an input-only VAR from a privileged-view VAR checkpoint.

The equal-compute comparison (benchmarks/proving_ground.py, README "Results") gives the paper's recipe and ours the
same training history up to a shared checkpoint, then the same number of steps each, its own way: ours keeps the
privileged branch, the paper's VAR trains on the input view alone (`splatdiff-var-small-input-only` with the same
global code, so the two networks differ in that branch only). This writes the shared checkpoint without the branch's
weights, as a checkpoint file the input-only run can `--load-checkpoint` (step and every other weight unchanged).

    python benchmarks/paper_recipe_init.py --output outputs/paper-shape-init \
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

    from nerfstudio_splatdiff.runs import without_privileged_branch

    parser = warm_start_parser(__doc__, "a privileged-view VAR's step-*.ckpt", "a new folder for the input-only init")
    args = parser.parse_args()
    out, state = write_warm_start(args.checkpoint, args.output, without_privileged_branch)
    removed = len(state["pipeline"]) - len(without_privileged_branch(state["pipeline"]))
    print(f"{out}: {removed} privileged-branch tensors removed, step {state.get('step')}")


if __name__ == "__main__":
    main()
