#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one time-boxed go (a lent GPU machine gives ~10 minutes per command):
#   1. gsplat: build its CUDA extension, run the CUDA cross-check tests and the rasteriser benchmark (background).
#   2. stage 1: splatdiff-var-small and splatdiff-regression-small on 200 procedural scenes, side by side.
#   3. stage 2: splatdiff-diffusion-small over that VAR.
#   4. slim inference-only copies of the VAR and diffusion runs (checkpoints/demo).
#   5. evidence: benchmarks/var_vs_regression.py and benchmarks/diffusion.py on the held-out scenes; sampling speed
#      at 128x128 with the paper-size networks.
# Training is time-boxed (timeout interrupts ns-train; the newest complete checkpoint, saved every SAVE steps, is used).
# Usage (repo root, project installed):  RESULTS=dir bash benchmarks/gpu_session.sh
# Knobs (seconds): T_STAGE1 T_DIFFUSION T_GSPLAT; SCENES; BATCH; DEVICE_TAG.
set -uo pipefail
# The whole script is one function, parsed before it runs: background jobs share the script file offset.
main() {
RESULTS=${RESULTS:-benchmarks/results/gpu}
T_STAGE1=${T_STAGE1:-200}
T_DIFFUSION=${T_DIFFUSION:-80}
T_GSPLAT=${T_GSPLAT:-330}
SCENES=${SCENES:-200}
BATCH=${BATCH:-16}
SAVE=${SAVE:-200}
WORK=${WORK:-outputs/gpu}
DATA=${DATA:-data/procedural}
mkdir -p "$RESULTS" "$WORK"
log() { echo "[$(date +%T)] $*"; }
tag=$(python3 -c "import torch; print(torch.cuda.get_device_name().replace(' ', '_') if torch.cuda.is_available() else 'cpu')")
log "device $tag"

if [ ! -f "$DATA/procedural/frame_annotations.jgz" ]; then
  splatdiff-make-procedural --output "$DATA" --scenes "$SCENES" --views 24 --resolution 128 --seed 0 --workers 8 >"$RESULTS/make_procedural.log" 2>&1
fi
log "data ready"

# 1. gsplat in the background (its first call JIT-builds the CUDA extension).
(
  export MAX_JOBS=8  # leave cores for the training data loaders while gsplat compiles
  timeout "$T_GSPLAT" python3 -m pytest -q -rs -m cuda tests/ >"$RESULTS/cuda_tests.txt" 2>&1
  echo "exit $?" >>"$RESULTS/cuda_tests.txt"
  timeout 60 python3 benchmarks/render.py --device cuda --json "$RESULTS/render_gsplat.json" >"$RESULTS/render_gsplat.log" 2>&1
) &
gsplat_pid=$!

train() {  # method seconds extra-args...
  local method=$1 seconds=$2
  shift 2
  timeout -s INT "$seconds" ns-train "$method" --max-num-iterations 1000000 --vis tensorboard --output-dir "$WORK" \
    --experiment-name gpu --timestamp run --steps-per-save "$SAVE" --steps-per-eval-image 1000000 \
    --steps-per-eval-batch 1000000 --pipeline.datamanager.num-workers 4 "$@" co3d-data --data "$DATA" \
    >"$RESULTS/train_${method}.log" 2>&1
  local code=$?
  # A kill during a checkpoint write leaves a truncated newest file: drop it (the previous one stays).
  python3 - "$WORK/gpu/$method/run/nerfstudio_models" <<'PY'
import sys, torch
from pathlib import Path
for ckpt in sorted(Path(sys.argv[1]).glob("step-*.ckpt"))[::-1]:
    try:
        torch.load(ckpt, map_location="cpu", weights_only=False)
        break
    except Exception:
        print(f"dropping truncated {ckpt}")
        ckpt.unlink()
PY
  log "$method stopped (exit $code) at $(ls "$WORK/gpu/$method/run/nerfstudio_models" 2>/dev/null | tail -1)"
}

# 2. stage 1, both methods side by side on the one GPU (torch rasteriser: gsplat may still be building).
export SPLATDIFF_RENDER_BACKEND=torch
t0=$(date +%s)
train splatdiff-var-small "$T_STAGE1" --pipeline.datamanager.scenes-per-batch "$BATCH" &
var_pid=$!
train splatdiff-regression-small "$T_STAGE1" --pipeline.datamanager.scenes-per-batch "$BATCH" &
reg_pid=$!
wait "$var_pid" "$reg_pid"
stage1_s=$(( $(date +%s) - t0 ))
VAR=$WORK/gpu/splatdiff-var-small/run/config.yml
REG=$WORK/gpu/splatdiff-regression-small/run/config.yml

# 3. stage 2.
t0=$(date +%s)
train splatdiff-diffusion-small "$T_DIFFUSION" --pipeline.model.var-checkpoint "$VAR"
diffusion_s=$(( $(date +%s) - t0 ))
DIFF=$WORK/gpu/splatdiff-diffusion-small/run/config.yml

# 4. slim copies for the demo (first, so they exist even if the time box ends the run).
splatdiff-slim-run --load-config "$DIFF" --output-dir checkpoints --experiment-name demo --data data/demo \
  >"$RESULTS/slim.log" 2>&1
log "slim exit $?"

# 5. evidence.
timeout 120 python3 benchmarks/var_vs_regression.py --data "$DATA" --var-config "$VAR" --regression-config "$REG" \
  --train-seconds "$stage1_s" --work "$WORK" --out-dir "$RESULTS" >"$RESULTS/var_vs_regression.log" 2>&1
log "var_vs_regression exit $?"
timeout 150 python3 benchmarks/diffusion.py --data "$DATA" --var-config "$VAR" --regression-config "$REG" \
  --diffusion-config "$DIFF" --train-seconds "$diffusion_s" --out-dir "$RESULTS" >"$RESULTS/diffusion.log" 2>&1
log "diffusion evidence exit $?"
unset SPLATDIFF_RENDER_BACKEND
timeout 60 python3 benchmarks/sampling_speed.py --preset paper --num-samples 20 --steps 50 \
  --json "$RESULTS/sampling_speed_paper_128.json" >"$RESULTS/sampling_speed.log" 2>&1
log "sampling speed exit $?"

wait "$gsplat_pid"
log "gsplat checks done: $(tail -1 "$RESULTS/cuda_tests.txt")"
}
main "$@"
