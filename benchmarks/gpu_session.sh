#!/usr/bin/env bash
# What a lent GPU is spent on, most important first, in one time-boxed go (a lent machine gives ~15 minutes in
# all, at most 10 per command, start-up included: run this with timeout_s ~590; about 9 minutes as set):
#   0. set-up: the packages the machine lacks, from wheels carried in $WHEELS (see "Wheels" below), then this
#      project (no network there); a 5-second import check that stops everything at once if that failed;
#   1. the proving-ground model: splatdiff-var-small warm-started from the shipped checkpoints/demo VAR (weights
#      only, fresh optimiser), with splatdiff-regression-small and splatdiff-var-small-input-only trained from
#      scratch beside it (the baselines' equal-compute catch-up), then splatdiff-diffusion-small warm-started from
#      the shipped denoiser over the new VAR;
#   2. slim inference-only copies of all four runs, each packed with its loss curves (tensorboard) and log into
#      one tar under $RESULTS (what comes back from the machine: few files, each < 16 MB);
#   3. train_speed.py on this device: VAR-small at batch 16 with the training scenes resident on the GPU and with
#      the DataLoader, the paper preset at 128x128, batch 32 (torch rasteriser: gsplat JIT-builds for ~4 minutes).
# The training runs keep their scenes on the GPU (the datamanager's device_scenes "auto"; data/device_scenes.py).
# Training is time-boxed (SIGINT; the newest complete checkpoint, saved every SAVE steps, is used).
#
# Usage (repo root):  RESULTS=$OUT bash benchmarks/gpu_session.sh
# Knobs: T_STAGE1 T_DIFFUSION (seconds); SCENES; BATCH; SAVE; WHEELS (folder of .whl; empty: already installed).
# Wheels (here, once; Python 3.12 x86-64, the versions of the CPU .venv):
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl  NAME==VERSION ...
#   for: nerfstudio nerfacc gsplat diffusers tyro docstring_parser viser msgspec websockets plyfile lpips
#   pytorch-msssim pyquaternion splines tensorly rawpy fpsample pathos ppft dill multiprocess defusedxml
#   truststore PySocks appdirs typeguard (what `ns-train` imports that the machine's image does not have);
#   and this project's own wheel, built from the working tree just before the run:
#   rm -f .whl/nerfstudio_splatdiff-*.whl && .venv/bin/pip wheel -q --no-deps --no-build-isolation -w .whl .
set -uo pipefail
# The whole script is one function, parsed before it runs: background jobs share the script file offset.
main() {
RESULTS=${RESULTS:-benchmarks/results/gpu}
T_STAGE1=${T_STAGE1:-170}
T_DIFFUSION=${T_DIFFUSION:-90}
SCENES=${SCENES:-500}
BATCH=${BATCH:-32}
SAVE=${SAVE:-100}
WHEELS=${WHEELS-.whl}
WORK=${WORK:-/tmp/splatdiff-gpu}
DATA=${DATA:-$WORK/data}
RUNS=$WORK/gpu
SLIM=$WORK/slim
SHIPPED=checkpoints/demo
mkdir -p "$RESULTS" "$WORK"
log() { echo "[$(date +%T)] $*" | tee -a "$RESULTS/session.log"; }

# 0. set-up.
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl >"$RESULTS/install.log" 2>&1 || { log "install failed"; tail -20 "$RESULTS/install.log"; return 1; }
  export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
export HF_HUB_OFFLINE=1 SPLATDIFF_RENDER_BACKEND=torch PYTHONUNBUFFERED=1
python3 -c "import method_configs.splatdiff_methods, nerfstudio_splatdiff.pipeline, nerfstudio.scripts.train" \
  >"$RESULTS/import.log" 2>&1 || { log "import check failed"; tail -20 "$RESULTS/import.log"; return 1; }
log "device $(python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')")"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$RESULTS/nvidia_smi.txt" 2>&1

if [ ! -f "$DATA/procedural/frame_annotations.jgz" ]; then
  splatdiff-make-procedural --kind object --output "$DATA" --scenes "$SCENES" --views 24 --resolution 128 \
    --seed 0 --workers 16 >"$RESULTS/make_procedural.log" 2>&1 || { log "data failed"; return 1; }
fi
log "data ready"

train() {  # method seconds workers extra-args...: one time-boxed run in $RUNS/<method>/run
  local method=$1 seconds=$2 workers=$3
  shift 3
  timeout -s INT "$seconds" ns-train "$method" --max-num-iterations 1000000 --vis tensorboard --output-dir "$WORK" \
    --experiment-name gpu --timestamp run --steps-per-save "$SAVE" --steps-per-eval-image 1000000 \
    --steps-per-eval-batch 1000000 --pipeline.datamanager.num-workers "$workers" \
    --pipeline.datamanager.scenes-per-batch "$BATCH" "$@" co3d-data --data "$DATA" \
    >"$RESULTS/train_${method}.log" 2>&1
  log "$method stopped (exit $?) at $(ls "$RUNS/$method/run/nerfstudio_models" 2>/dev/null | sort -V | tail -1)"
}
shipped_ckpt() { ls "$SHIPPED/$1/shipped/nerfstudio_models"/step-*.ckpt | sort -V | tail -1; }

# 1. stage 1 side by side (the VAR gets the most loader workers), then stage 2.
train splatdiff-var-small "$T_STAGE1" 6 --load-checkpoint "$(shipped_ckpt splatdiff-var-small)" &
p1=$!
train splatdiff-regression-small "$T_STAGE1" 3 &
p2=$!
train splatdiff-var-small-input-only "$T_STAGE1" 3 &
p3=$!
wait "$p1" "$p2" "$p3"
train splatdiff-diffusion-small "$T_DIFFUSION" 10 --load-checkpoint "$(shipped_ckpt splatdiff-diffusion-small)" \
  --pipeline.model.var-checkpoint "$RUNS/splatdiff-var-small/run/config.yml"

# 2. slim copies + loss curves + logs, one tar per method.
splatdiff-slim-run --load-config "$RUNS/splatdiff-diffusion-small/run/config.yml" --output-dir "$SLIM" \
  --experiment-name demo --data data/demo >"$RESULTS/slim.log" 2>&1
for m in splatdiff-regression-small splatdiff-var-small-input-only; do
  splatdiff-slim-run --load-config "$RUNS/$m/run/config.yml" --output-dir "$SLIM" --experiment-name demo \
    --data data/demo >>"$RESULTS/slim.log" 2>&1
done
log "slim exit $? ($(ls "$SLIM/demo" 2>/dev/null | tr '\n' ' '))"
for m in splatdiff-var-small splatdiff-diffusion-small splatdiff-regression-small splatdiff-var-small-input-only; do
  tar -cf "$RESULTS/$m.tar" -C "$WORK" "slim/demo/$m" $(cd "$WORK" && ls -d gpu/$m/run/events.* gpu/$m/run/config.yml \
    2>/dev/null) 2>>"$RESULTS/slim.log"
done
log "packed"

# 3. speed on this device, for issue #11's GPU targets (torch rasteriser: gsplat's CUDA extension JIT-builds for
#    ~4 minutes): VAR-small at 64x64, batch 16, training scenes resident on the GPU and then through the DataLoader
#    (is the input the bottleneck?), and the paper preset at 128x128, batch 32.
speed() {  # name seconds train_speed-args...
  local name=$1 seconds=$2
  shift 2
  timeout "$seconds" python3 benchmarks/train_speed.py --device cuda --backend torch --data "$DATA" --steps 20 \
    --json "$RESULTS/train_speed_cuda_$name.json" "$@" >"$RESULTS/train_speed_$name.log" 2>&1
  log "train speed $name exit $?"
}
speed small_resident 55 --methods var-small --batch 16 --device-scenes on --shipped
speed small_loader 55 --methods var-small --batch 16 --device-scenes off --num-workers 6
speed paper_resident 70 --methods var --batch 32 --device-scenes on
# What comes back is at most 8 files: the four tars, the three speed JSONs, and every log in one tar.
(cd "$RESULTS" && tar -cf logs.tar ./*.log ./*.txt && rm -f ./*.log ./*.txt)
}
main "$@"
