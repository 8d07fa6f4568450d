"""A warm start for a diffusion run with the code prior (`--pipeline.model.code-prior True`) from a denoiser
checkpoint that has none: the same weights and step, marked so that the prior starts from its initialisation
(runs.with_fresh_part). The denoiser goes on training from where it was; the prior trains beside it on its own loss.

    python benchmarks/code_prior_init.py --output outputs/code-prior-init \
        --checkpoint outputs/scratch2k/demo/splatdiff-diffusion-small/run/nerfstudio_models/step-000014199.ckpt
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from common import warm_start_parser, write_warm_start

    from nerfstudio_splatdiff.models.code_prior_source import PRIOR_PREFIX
    from nerfstudio_splatdiff.runs import with_fresh_part

    parser = warm_start_parser(__doc__, "a diffusion run's step-*.ckpt", "a new folder for the warm start")
    args = parser.parse_args()
    out, state = write_warm_start(args.checkpoint, args.output, lambda s: with_fresh_part(s, PRIOR_PREFIX))
    print(f"{out}: step {state.get('step')}, the code prior starts fresh")


if __name__ == "__main__":
    main()
