#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one go: gsplat cross-check tests and the rasteriser benchmark with gsplat.
# Run from the repo root in an environment with the project installed; results land in benchmarks/results/.
set -euo pipefail
name=$(python -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_'))")
stamp=$(date +%Y-%m-%d)
python -m pytest -q -rs -m cuda tests/ 2>&1 | tee "benchmarks/results/cuda_tests_${name}_${stamp}.txt"
python benchmarks/render.py --device cuda --json "benchmarks/results/render_${name}_${stamp}.json"
