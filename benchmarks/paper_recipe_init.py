"""The paper's recipe at equal compute: a warm start for an input-only VAR from a privileged-view VAR checkpoint.

The equal-compute comparison (benchmarks/proving_ground.py, README "Results") gives the paper's recipe and ours the
same training history up to a shared checkpoint, then the same number of steps each, its own way: ours keeps the
privileged branch, the paper's VAR trains on the input view alone (`splatdiff-var-small-input-only` with the same
global code, so the two networks differ in that branch only). This writes the shared checkpoint without the branch's
weights, as a checkpoint file the input-only run can `--load-checkpoint` (step and every other weight unchanged).

    python benchmarks/paper_recipe_init.py --output outputs/paper-shape-init \
        --checkpoint checkpoints/shape/splatdiff-var-small/shipped/nerfstudio_models/step-000016749.ckpt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from nerfstudio_splatdiff.errors import SplatdiffError, install_one_line_errors
    from nerfstudio_splatdiff.models.var_checkpoint import load_checkpoint
    from nerfstudio_splatdiff.runs import without_privileged_branch
    from nerfstudio_splatdiff.safety import atomic_torch_save

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="a privileged-view VAR's step-*.ckpt")
    parser.add_argument("--output", type=Path, required=True, help="a new folder for the input-only init")
    args = parser.parse_args()
    install_one_line_errors()
    if not args.checkpoint.is_file():
        raise SplatdiffError(
            f"No checkpoint file at {args.checkpoint}: pass a VAR run's nerfstudio_models/step-*.ckpt."
        )
    if args.output.exists():
        raise SplatdiffError(f"{args.output} already exists: pass a new folder (this writes one, never into one).")
    _, state = load_checkpoint(args.checkpoint)  # weights only; one clear line when unreadable
    stripped = {**state, "pipeline": without_privileged_branch(state["pipeline"])}
    removed = len(state["pipeline"]) - len(stripped["pipeline"])
    out = args.output / "nerfstudio_models" / args.checkpoint.name
    out.parent.mkdir(parents=True)
    atomic_torch_save(stripped, out)
    print(f"{out}: {removed} privileged-branch tensors removed, step {stripped.get('step')}")


if __name__ == "__main__":
    main()
