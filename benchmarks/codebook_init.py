"""A warm start for a VAR with a codebook for its global code (`--pipeline.model.network.global-code-entries K`) from
a VAR checkpoint that has none: the same weights and step, marked so that the codebook starts unseeded
(runs.with_fresh_part) and seeds itself by k-means++ on the first training batch (models/code_book.py). Train it with
`--pipeline.model.network.frozen-encoder True` to keep the latents a denoiser learned.

    python benchmarks/codebook_init.py --output outputs/codebook-init \
        --checkpoint <a VAR run>/nerfstudio_models/step-*.ckpt
(the shipped geometry VAR came from step 25,749 of the VAR shipped before it)
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

CODEBOOK_PREFIXES = ("_model.net.codebook.", "_model.ema.module.codebook.")
"""Where a VAR's pipeline state keeps its codebook: the trained network's and (in a full checkpoint) its EMA's."""


def with_fresh_codebook(state: dict) -> dict:
    """The pipeline state marked so that the codebook (and the EMA's, when the state has an EMA) may be missing."""
    from nerfstudio_splatdiff.runs import EMA_PREFIX, with_fresh_part

    state = with_fresh_part(state, CODEBOOK_PREFIXES[0])
    if any(k.startswith(EMA_PREFIX) for k in state):
        state = with_fresh_part(state, CODEBOOK_PREFIXES[1])
    return state


def main() -> None:
    from common import warm_start_parser, write_warm_start

    parser = warm_start_parser(__doc__, "a VAR run's step-*.ckpt (full or slim)", "a new folder for the warm start")
    args = parser.parse_args()
    out, state = write_warm_start(args.checkpoint, args.output, with_fresh_codebook)
    print(f"{out}: step {state.get('step')}, the codebook starts unseeded")


if __name__ == "__main__":
    main()
