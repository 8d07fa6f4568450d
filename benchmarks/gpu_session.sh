#!/usr/bin/env bash
# What a lent GPU is spent on, most important first, in one time-boxed go (a lent machine gives ~15 minutes in
# all, at most 10 per command; run this with a timeout that leaves room to rerun it):
#   1. the proving-ground model: splatdiff-var-small (privileged view) from the shipped demo run when it is there,
#      splatdiff-regression-small and splatdiff-var-small-input-only side by side, then splatdiff-diffusion-small;
#   2. slim inference-only copies into checkpoints/demo (first, so they come back even if the box ends the run);
#   3. evidence: benchmarks/proving_ground.py on the held-out scenes, and train_speed.py on this device;
#   4. gsplat's CUDA cross-checks (its extension JIT-builds for ~4 minutes: last, in the background).
# Training is time-boxed (SIGINT; the newest complete checkpoint, saved every SAVE steps, is used). The torch
# rasteriser runs on CUDA from the first second; gsplat is not waited for.
# Usage (repo root, project installed):  RESULTS=dir bash benchmarks/gpu_session.sh
# Knobs (seconds): T_STAGE1 T_DIFFUSION T_GSPLAT; SCENES; BATCH.
set -uo pipefail
# The whole script is one function, parsed before it runs: background jobs share the script file offset.
main() {
RESULTS=${RESULTS:-benchmarks/results/gpu}
T_STAGE1=${T_STAGE1:-240}
T_DIFFUSION=${T_DIFFUSION:-90}
T_GSPLAT=${T_GSPLAT:-300}
SCENES=${SCENES:-500}
BATCH=${BATCH:-32}
SAVE=${SAVE:-250}
WORK=${WORK:-outputs/gpu}
DATA=${DATA:-data/proving}
RUNS=$WORK/gpu
mkdir -p "$RESULTS" "$WORK"
log() { echo "[$(date +%T)] $*"; }
log "device $(python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')")"

if [ ! -f "$DATA/procedural/frame_annotations.jgz" ]; then
  splatdiff-make-procedural --kind object --output "$DATA" --scenes "$SCENES" --views 24 --resolution 128 --seed 0 \
    --workers 16 >"$RESULTS/make_procedural.log" 2>&1
fi
log "data ready"

train() {  # method seconds extra-args...: resume from a run already in $RUNS (e.g. the CPU-trained one)
  local method=$1 seconds=$2
  shift 2
  local run=$RUNS/$method/run resume=()
  ls "$run"/nerfstudio_models/step-*.ckpt >/dev/null 2>&1 && resume=(--load-dir "$run/nerfstudio_models")
  timeout -s INT "$seconds" ns-train "$method" --max-num-iterations 1000000 --vis tensorboard --output-dir "$WORK" \
    --experiment-name gpu --timestamp run --steps-per-save "$SAVE" --steps-per-eval-image 1000000 \
    --steps-per-eval-batch 1000000 --pipeline.datamanager.num-workers 4 \
    --pipeline.datamanager.scenes-per-batch "$BATCH" "${resume[@]}" "$@" co3d-data --data "$DATA" \
    >"$RESULTS/train_${method}.log" 2>&1
  log "$method stopped (exit $?) at $(ls "$run/nerfstudio_models" 2>/dev/null | sort -V | tail -1)"
}

# Start from the CPU-trained shipped runs when this checkout has them (outputs/train-demo is not committed, so on
# a fresh machine every stage starts from scratch).
if [ -d outputs/train-demo/demo ] && [ ! -d "$RUNS" ]; then
  mkdir -p "$RUNS" && cp -r outputs/train-demo/demo/. "$RUNS/"
fi

# 1. stage 1: the three stage-1 runs side by side on the one GPU.
export SPLATDIFF_RENDER_BACKEND=torch
train splatdiff-var-small "$T_STAGE1" &
p1=$!
train splatdiff-regression-small "$T_STAGE1" &
p2=$!
train splatdiff-var-small-input-only "$T_STAGE1" &
p3=$!
wait "$p1" "$p2" "$p3"
train splatdiff-diffusion-small "$T_DIFFUSION" --pipeline.model.var-checkpoint "$RUNS/splatdiff-var-small/run/config.yml"

# 2. slim copies for the demo.
splatdiff-slim-run --load-config "$RUNS/splatdiff-diffusion-small/run/config.yml" --output-dir checkpoints \
  --experiment-name demo --data data/demo --overwrite >"$RESULTS/slim.log" 2>&1
log "slim exit $?"

# 3. evidence.
timeout 150 python3 benchmarks/proving_ground.py --runs "$RUNS" --out-dir "$RESULTS" \
  --figure "$RESULTS/proving_ground.png" >"$RESULTS/proving_ground.log" 2>&1
log "proving ground exit $?"
unset SPLATDIFF_RENDER_BACKEND
timeout 60 python3 benchmarks/train_speed.py --device cuda >"$RESULTS/train_speed.log" 2>&1
log "train speed exit $?"

# 4. gsplat, with what time is left.
timeout "$T_GSPLAT" python3 -m pytest -q -rs -m cuda tests/ >"$RESULTS/cuda_tests.txt" 2>&1
echo "exit $?" >>"$RESULTS/cuda_tests.txt"
log "gsplat checks done: $(tail -1 "$RESULTS/cuda_tests.txt")"
}
main "$@"
