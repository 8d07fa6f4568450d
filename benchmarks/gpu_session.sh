#!/usr/bin/env bash
# What a lent GPU is spent on, in one time-boxed go that starts training within its first minute and adds to what
# the previous lent GPU trained (a lent machine gives ~15 minutes in all, at most 10 per command, start-up included:
# run this with timeout_s ~590; BUDGET, the seconds it plans for, is 560 as set):
#   0. set-up (~15 s): the packages the machine lacks, from wheels carried in $WHEELS (see "Wheels" below), then
#      this project; the procedural data (`splatdiff-make-procedural $DATA_ARGS`: SCENES (2,000) scenes in each of
#      their 3 shapes, the paired data the geometry VAR needs, ~60 s per 300 scenes on 16 cores) made in the
#      background meanwhile; gsplat's CUDA extension prebuilt on a CPU machine (benchmarks/build_gsplat_cuda.sh,
#      carried in build/gsplat_cuda/) installed when it matches this machine's torch and Python, else the torch
#      rasteriser (gsplat's own JIT build takes ~4 minutes of the lease);
#   1. the model the geometry issue (#20) needs most, chosen by PLAN (below): $VAR_METHOD for T_STAGE1 seconds,
#      then $DIFFUSION_METHOD over it for T_DIFFUSION, each warm-started from the newest slim copy of the previous GPU
#      run (weights and step; fresh Adam), found under each of RESUME_ROOTS as checkpoints/<set>/<method>/shipped/
#      (committed, or carried) for the first set of SLIM_SETS that holds one (the highest step within it), else from
#      scratch; a plan whose VAR keeps its latents (a frozen encoder) pairs the newest slim denoiser with the new VAR
#      instead of training one (PAIR_DIFFUSION=1, with SLIM_ARGS: the sampler chosen on val);
#   2. slim copies of both runs (float16 inference weights, what the next run resumes from), one tar per method
#      with its loss curves (tensorboard events) under $RESULTS;
#   3. CHECKS=1: gsplat against the torch rasteriser (the cuda-marked tests) when gsplat is installed;
#   4. SPEED=1: benchmarks/train_speed.py with its profiler on this device (issue #21's targets: VAR-small and
#      diffusion-small at batch 32, the paper VAR at 128x128 batch 32), as long as the budget allows.
# Training is time-boxed (SIGINT; the newest complete checkpoint, saved every SAVE steps, is what is kept). The
# session log says when the first training step was done ("first training step ... s after the start").
#
# Plans (PLAN=...; each sets the defaults of the knobs below, and any knob set in the environment wins):
#   shipped (default since 2026-12-07): the shipped geometry VAR's decoder (checkpoints/shape, 27,250 steps: frozen
#     encoder, 6-entry codebook) T_STAGE1=300 s more at 32 scenes per step on the 2,000 paired scenes (seed 0; the
#     first 500 are the ones it trained on first), lr 1e-4 and 1e-5 after 2,000 steps of this call; no denoiser is
#     trained (the frozen encoder keeps its latents): the shipped one is paired with the new VAR at guidance 0 and
#     pull 0.5. Why: the geometry misses left (privileged view right, "none", the hidden side's sharpness) are the
#     decoder's, and 2,000 scenes instead of 500 moved it most (README "Why each miss happens"). Sets: gpu-shape
#     (this plan's earlier GPU runs), then shape.
#   scratch2k (the default 2026-12-05 to 12-06): the 64x64 geometry pair trained from scratch on the same 2,000
#     paired scenes (checkpoints/scratch2k: VAR 7,500, denoiser 14,200), the VAR at 32 scenes per step, lr 3e-4
#     and 3e-5 after 2,000 steps, source view frame 0, then its denoiser for T_DIFFUSION=90 s. Sets: gpu-scratch2k,
#     scratch2k.
#   gpu128: the 128x128 VAR and denoiser (splatdiff-var-gpu128 / -diffusion-gpu128, 1,500 VAR steps so far in
#     checkpoints/gpu) on 300 scenes. Set: gpu.
# Each plan writes its slim copies to its first set (SAVE_SET), so two plans never resume from each other.
# Size: what travels (tracked files + .whl + build/gsplat_cuda) must stay under 64 MiB, and the committed slim copies
# are ~160 MB. `PARK=1 bash benchmarks/gpu_session.sh` (here, before the call) moves every checkpoints/<set>/<method>
# the plan does not read (a set not in SLIM_SETS, or a method other than its VAR_METHOD and DIFFUSION_METHOD) to
# build/gpu_parked/ (ignored: it does not travel) and prints what will travel; `PARK=back` moves them back after the
# call (git status is clean again). The shipped plan: 25 MB tracked + 30 MB of wheels + 7 MB of gsplat.
# Usage (repo root), when a GPU is lent:
#   PREPARE=1 bash benchmarks/gpu_session.sh    here: the wheels (.whl/)
#   PARK=1 bash benchmarks/gpu_session.sh       here: only what the plan reads travels
#   RESULTS=$OUT bash benchmarks/gpu_session.sh on the device (timeout_s ~590; carry .whl, and build/gsplat_cuda and
#                                               build/gpu_resume where they exist)
#   PARK=back bash benchmarks/gpu_session.sh    here, then unpack the tars that came back in the repo root, and score
# What comes back (<= 8 files): <VAR_METHOD>.tar, <DIFFUSION_METHOD>.tar (checkpoints/$SAVE_SET/<method>/shipped/ and
# the run's loss curves in checkpoints/$SAVE_SET/<method>/events/), speed.tar, logs.tar, session.json. The next run
# resumes from them once unpacked in the repo root (`tar -xf splatdiff-var-small.tar`: checkpoints/..., committed or
# not: untracked files travel too) or in build/gpu_resume/ (ignored; carry it). The shipped plan's pair is scored
# on the CPU as the shipped one is: benchmarks/proving_ground.py --modes shape --split val --runs checkpoints/gpu-shape
#   --run-folder shipped --regression-run checkpoints/shape/splatdiff-regression-small/shipped --out-dir <a folder>
# with --scenes 120 (the rule for choosing a pair, README "How the numbers are made", before it replaces
# checkpoints/shape).
# CPU dry run of the whole plumbing at tiny settings (no wheels, the .venv, 4 scenes, no speed or checks):
#   DRY_RUN=1 RESULTS=/tmp/gpu-dry bash benchmarks/gpu_session.sh
# Knobs: PLAN; BUDGET T_STAGE1 T_DIFFUSION (seconds); SCENES VIEWS SAVE; DATA_ARGS (default "--kind object --modes
# shape --all-modes") or DATA_CMD (the whole data command; $DATA is the folder it must fill); VAR_METHOD
# DIFFUSION_METHOD; TRAIN_ARGS (extra ns-train flags for both runs); VAR_ARGS (the VAR run's recipe) and VAR_NET_ARGS
# (its network, which its checkpoint needs to load; a dry run keeps these); PAIR_DIFFUSION SLIM_ARGS SLIM_DATA;
# RESUME_ROOTS; SLIM_SETS SAVE_SET; WHEELS (folder of .whl; empty: already installed); GSPLAT_BUILD; CHECKS SPEED
# (1/0); WORK.
# Wheels (here, once, with network: `PREPARE=1 bash benchmarks/gpu_session.sh`, a minute): for Python 3.12 x86-64 (the
# device's), at the versions of the CPU .venv, what `ns-train` imports that the device's image does not have (WHEEL_PKGS),
# into .whl/ (ignored: carry it), then this project's own wheel built from the working tree; run it again after a
# code change (it replaces the project's wheel and keeps the others).
set -uo pipefail
# The whole script is one function, parsed before it runs: background jobs share the script file offset.
main() {
START=$SECONDS
DRY_RUN=${DRY_RUN:-0}
if [ "$DRY_RUN" = 1 ]; then  # the CPU plumbing check: tiny data, tiny batches, the .venv's tools
  : "${WHEELS=}" "${VAR_ARGS=}" "${SCENES:=4}" "${VIEWS:=6}" "${SAVE:=1}" "${T_STAGE1:=360}" "${BUDGET:=900}"
  : "${CHECKS:=0}" "${SPEED:=0}" "${WORK:=/tmp/splatdiff-gpu-dry}" "${RESUME_ROOTS:=$WORK/resume}"
  : "${TRAIN_ARGS:=--pipeline.datamanager.scenes-per-batch 1 --pipeline.datamanager.num-workers 0}"
  export PATH=$PWD/.venv/bin:$PATH
  # The presets this script trains, also where the .venv was installed before they existed (no entry points yet).
  export NERFSTUDIO_METHOD_CONFIGS=${NERFSTUDIO_METHOD_CONFIGS:-\
splatdiff-var-gpu128=method_configs.splatdiff_methods:splatdiff_var_gpu128,\
splatdiff-diffusion-gpu128=method_configs.splatdiff_methods:splatdiff_diffusion_gpu128}
fi
# 2,000 scenes (each in its 3 shapes; seed 0, the first 500 are the shipped pair's): the geometry VAR overfits 500
# (past ~9,000 steps it follows more forced shapes on training scenes and fewer on val,
# benchmarks/results/stage1_modes_shape_train_scratch.json). Cost before the first step, estimated from the 2-core
# rates: ~2 minutes of data on 15 processes, then the dataparser's preprocessing of 6,000 sequences in 8 processes
# (co3d-data --preprocess-workers; 5,700 took 3.3 minutes in 2 on the CPU machine), under a minute.
PLAN=${PLAN:-shipped}
case $PLAN in
shipped)
  # The decoder-only recipe of the shipped VAR's last CPU steps (README "How the shipped models were made": lr 1e-4,
  # 4 target views, source view frame 0, where the proving ground evaluates) at twice its CPU batch, and its network
  # (frozen encoder, 6-entry codebook), without which its checkpoint does not load.
  VAR_ARGS=${VAR_ARGS---pipeline.datamanager.scenes-per-batch 32 --pipeline.datamanager.num-target-views 4 \
--optimizers.network.optimizer.lr 1e-4 --optimizers.network.scheduler.milestones 2000 \
--pipeline.datamanager.source-window 0}
  VAR_NET_ARGS=${VAR_NET_ARGS-pipeline.model.network:var-net-config --pipeline.model.network.frozen-encoder True \
--pipeline.model.network.global-code-entries 6 --pipeline.model.network.global-code-snap-share 0.125}
  : "${T_STAGE1:=300}" "${T_DIFFUSION:=0}" "${PAIR_DIFFUSION:=1}" "${SLIM_SETS:=gpu-shape shape}"
  : "${SLIM_ARGS=--guidance-weight 0 --code-snap-pull 0.5}" "${SLIM_DATA:=data/demo-shape}"
  ;;
scratch2k)
  # 4x its CPU batch, lr 3e-4 with a fresh Adam and 3e-5 after 2,000 steps of this call (its last CPU steps were at
  # 3e-5 and gained 5 points of shapes followed), the source view always frame 0 (from a neighbour's input the
  # hidden part's direction is ambiguous; 5 points of shapes followed, docs/results_history.md "Where the codes lie").
  VAR_ARGS=${VAR_ARGS---pipeline.datamanager.scenes-per-batch 32 --optimizers.network.optimizer.lr 3e-4 \
--optimizers.network.scheduler.milestones 2000 --pipeline.datamanager.source-window 0}
  : "${T_STAGE1:=240}" "${T_DIFFUSION:=90}" "${SLIM_SETS:=gpu-scratch2k scratch2k}"
  ;;
gpu128)
  : "${VAR_METHOD:=splatdiff-var-gpu128}" "${DIFFUSION_METHOD:=splatdiff-diffusion-gpu128}" "${SCENES:=300}"
  : "${VAR_ARGS=}" "${T_STAGE1:=240}" "${T_DIFFUSION:=90}" "${SLIM_SETS:=gpu}"
  ;;
*)
  echo "PLAN=$PLAN is not a plan: use shipped, scratch2k or gpu128 (this script's header says what each trains)." >&2
  return 2
  ;;
esac
VAR_NET_ARGS=${VAR_NET_ARGS-}
PAIR_DIFFUSION=${PAIR_DIFFUSION:-0}
SLIM_ARGS=${SLIM_ARGS-}
SLIM_DATA=${SLIM_DATA:-data/proving-shape-paired}
# The set this session's slim copies are written to (checkpoints/<set>/<method>/shipped/, inside the tars): the
# plan's first, so that two plans' GPU runs never resume from each other.
SAVE_SET=${SAVE_SET:-${SLIM_SETS%% *}}
VAR_METHOD=${VAR_METHOD:-splatdiff-var-small}
DIFFUSION_METHOD=${DIFFUSION_METHOD:-splatdiff-diffusion-small}
if [ "${PREPARE:-0}" = 1 ]; then  # here, with network, before the call: the wheels the device installs from
  local pins
  pins=$(.venv/bin/python -c "
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(' '.join(f'{n}=={version(n)}' for n in sys.argv[1:]))
except PackageNotFoundError as e:
    sys.exit(f'{e.name} is not installed in .venv: run make install first, or leave it out of WHEEL_PKGS.')" ${WHEEL_PKGS:-nerfstudio nerfacc gsplat diffusers tyro \
    docstring_parser viser msgspec websockets plyfile lpips pytorch-msssim pyquaternion splines tensorly rawpy fpsample \
    pathos ppft dill multiprocess defusedxml truststore PySocks appdirs typeguard}) || return 1
  local pin fallback="" device_wheel=(.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl)
  for pin in $pins; do  # the .venv's version, else the newest with a wheel for the device (one line says which)
    "${device_wheel[@]}" "$pin" >/dev/null 2>&1 && continue
    "${device_wheel[@]}" "${pin%%==*}" >/dev/null 2>&1 || {
      echo "Could not download a wheel of ${pin%%==*} for Python 3.12 x86-64 (no network, or none exists): put one in .whl/ by hand and run PREPARE=1 again." >&2
      return 1
    }
    fallback="$fallback ${pin%%==*}"
  done
  [ -z "$fallback" ] || echo "no wheel at the .venv's version, so the newest:$fallback"
  rm -f .whl/nerfstudio_splatdiff-*.whl
  .venv/bin/pip wheel -q --no-deps --no-build-isolation -w .whl . || return 1
  echo "wheels: $(ls .whl | wc -l) files, $(du -sh .whl | cut -f1) in .whl/ (carry it)"
  return 0
fi
if [ -n "${PARK:-}" ]; then  # here, before (PARK=1) and after (PARK=back) the call: what travels
  local park=build/gpu_parked dir group method
  if [ "$PARK" = back ]; then
    for dir in "$park"/*/*/; do
      [ -d "$dir" ] || continue
      group=$(basename "$(dirname "$dir")")
      mkdir -p "checkpoints/$group" && mv "$dir" "checkpoints/$group/" && rmdir --ignore-fail-on-non-empty "$park/$group"
    done
    rmdir "$park" 2>/dev/null
    echo "checkpoints/: $(cd checkpoints && ls -d ./*/* | tr '\n' ' ')"
    return 0
  fi
  for dir in checkpoints/*/*/; do
    group=$(basename "$(dirname "$dir")") method=$(basename "$dir")
    case " $SLIM_SETS " in *" $group "*) [[ " $VAR_METHOD $DIFFUSION_METHOD " = *" $method "* ]] && continue ;; esac
    mkdir -p "$park/$group" && mv "$dir" "$park/$group/"
    rmdir "checkpoints/$group" 2>/dev/null
  done
  echo "PLAN=$PLAN: checkpoints/ keeps $(cd checkpoints && ls -d ./*/* | tr '\n' ' ')(the rest is in $park;" \
    "PARK=back returns it)"
  echo "travels: $(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1) bytes tracked + \
$(du -sb .whl 2>/dev/null | cut -f1) bytes of .whl (at most 64 MiB = 67108864 in all, with build/gsplat_cuda)"
  return 0
fi
RESULTS=${RESULTS:-benchmarks/results/gpu}
BUDGET=${BUDGET:-560}
SCENES=${SCENES:-2000}
VIEWS=${VIEWS:-24}
SAVE=${SAVE:-250}
DATA_ARGS=${DATA_ARGS:---kind object --modes shape --all-modes}
TRAIN_ARGS=${TRAIN_ARGS:-}
CHECKS=${CHECKS:-1}
SPEED=${SPEED:-1}
WHEELS=${WHEELS-.whl}
GSPLAT_BUILD=${GSPLAT_BUILD:-build/gsplat_cuda}
RESUME_ROOTS=${RESUME_ROOTS:-. build/gpu_resume}
WORK=${WORK:-/tmp/splatdiff-gpu}
DATA=${DATA:-$WORK/data}
DATA_CMD=${DATA_CMD:-splatdiff-make-procedural $DATA_ARGS --output $DATA --scenes $SCENES --views $VIEWS \
--resolution 128 --seed 0 --workers $(($(nproc) > 2 ? $(nproc) - 1 : 1))}
RUNS=$WORK/gpu
OUTS=$WORK/out  # slim copies as checkpoints/$SAVE_SET/<method>/shipped, relative to here (and to the repo root)
REPO=$PWD
mkdir -p "$RESULTS" "$WORK" "$OUTS"
RESULTS=$(cd "$RESULTS" && pwd)
log() { echo "[$(date +%T) +$((SECONDS - START))s] $*" | tee -a "$RESULTS/session.log"; }
left() { echo $((BUDGET - (SECONDS - START))); }
declare -A FACTS  # what session.json records
FACTS[plan]=$PLAN
log "gpu_session start (plan $PLAN, dry run: $DRY_RUN)"

# 0. set-up.
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$WHEELS"/*.whl >"$RESULTS/install.log" 2>&1 || { log "install failed"; tail -20 "$RESULTS/install.log"; return 1; }
  export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
  log "installed"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
data_pid=""
if [ ! -f "$DATA/procedural/frame_annotations.jgz" ]; then
  $DATA_CMD >"$RESULTS/make_procedural.log" 2>&1 &
  data_pid=$!
fi
python3 -c "import method_configs.splatdiff_methods, nerfstudio_splatdiff.pipeline, nerfstudio.scripts.train" \
  >"$RESULTS/import.log" 2>&1 || { log "import check failed"; tail -20 "$RESULTS/import.log"; return 1; }
FACTS[device]=$(python3 -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')")
FACTS[torch]=$(python3 -c "import torch; print(torch.__version__)")
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$RESULTS/nvidia_smi.txt" 2>&1
log "device ${FACTS[device]}, torch ${FACTS[torch]}"

# gsplat: the prebuilt extension where it was built for this torch and Python, else the torch rasteriser.
backend=torch
if [ -f "$GSPLAT_BUILD/csrc.so" ] && [ "${FACTS[device]}" != cpu ]; then
  built=$(python3 -c "import json; i = json.load(open('$GSPLAT_BUILD/BUILD_INFO.json')); print(i['torch'], \
i['python'])" 2>/dev/null)
  here=$(python3 -c "import sys, torch; print(torch.__version__, '%d.%d' % sys.version_info[:2])")
  if [ "$built" = "$here" ]; then
    site=$(python3 -c "import gsplat, os; print(os.path.dirname(gsplat.__file__))")
    cp "$GSPLAT_BUILD/csrc.so" "$site/csrc.so" && python3 -c "import torch, gsplat.csrc" >"$RESULTS/gsplat.log" 2>&1 \
      && backend=gsplat || log "prebuilt gsplat did not load: $(tail -1 "$RESULTS/gsplat.log")"
  else
    log "prebuilt gsplat is for torch/Python $built, this machine has $here"
  fi
elif [ ! -f "$GSPLAT_BUILD/csrc.so" ]; then
  log "no prebuilt gsplat in $GSPLAT_BUILD (benchmarks/build_gsplat_cuda.sh)"
fi
[ "${FACTS[device]}" = cpu ] && backend=auto  # a dry run: the CPU's own default (numba)
if [ "$backend" = torch ]; then export SPLATDIFF_RENDER_BACKEND=torch; else unset SPLATDIFF_RENDER_BACKEND; fi
FACTS[rasteriser]=$backend
log "rasteriser: $backend"

newest_slim() {  # the slim checkpoint a method resumes from, or nothing: the first of SLIM_SETS (checkpoints/<set>/)
  # that holds the method wins, and within it the highest step under any of RESUME_ROOTS
  local set root found
  for set in $SLIM_SETS; do
    found=$(for root in $RESUME_ROOTS; do
      ls "$root"/checkpoints/"$set"/"$1"/shipped/nerfstudio_models/step-*.ckpt 2>/dev/null
    done | awk -F'step-' '{print $NF "\t" $0}' | sort -n | tail -1 | cut -f2)
    [ -n "$found" ] && { echo "$found"; return; }
  done
}
last_saved() { ls "$RUNS/$1/run/nerfstudio_models"/step-*.ckpt 2>/dev/null | sort -V | tail -1; }
step_of() { local n=${1##*step-}; [ -n "$1" ] && echo $((10#${n%.ckpt})) || echo -; }

if [ -n "$data_pid" ]; then
  wait "$data_pid" || { log "data failed: $(tail -2 "$RESULTS/make_procedural.log")"; return 1; }
fi
log "data ready ($DATA)"

train() {  # method seconds extra-args...: one time-boxed run in $RUNS/<method>/run, resumed from its newest slim
  local method=$1 seconds=$2 resume
  shift 2
  if [ "$seconds" -le 0 ]; then  # `timeout 0` means NO limit: a 0-second stage would train until the call is killed
    log "$method: skipped (T = $seconds s)"
    return
  fi
  resume=$(newest_slim "$method")
  local from=(); [ -n "$resume" ] && from=(--load-checkpoint "$resume")
  FACTS[${method}_resumed_from]=${resume:-scratch}
  log "$method: ${seconds} s from ${resume:-scratch}"
  rm -rf "$RUNS/$method/run"
  # shellcheck disable=SC2086
  timeout -s INT "$seconds" ns-train "$method" --max-num-iterations 1000000 --vis tensorboard --output-dir "$WORK" \
    --experiment-name gpu --timestamp run --steps-per-save "$SAVE" --steps-per-eval-image 1000000 \
    --steps-per-eval-batch 1000000 "${from[@]}" $TRAIN_ARGS "$@" co3d-data --data "$DATA" \
    >"$RESULTS/train_${method}.log" 2>&1 &
  local pid=$! first=""
  while kill -0 "$pid" 2>/dev/null; do  # nerfstudio prints its first stats line after the first step
    if [ -z "$first" ] && grep -q -E "Printing max of|Step \(% Done\)" "$RESULTS/train_${method}.log" 2>/dev/null; then
      first=$((SECONDS - START))
      log "$method: first training step done $first s after the start"
    fi
    sleep 1
  done
  wait "$pid"
  local rc=$? saved
  saved=$(last_saved "$method")
  FACTS[${method}_first_step_s]=${first:--}
  FACTS[${method}_steps]="$(step_of "$resume") -> $(step_of "$saved")"
  log "$method stopped (exit $rc) at $(step_of "$saved") (from $(step_of "$resume"))"
}

# 1. the VAR, then the denoiser over it (this session's VAR, else the newest slim one).
# shellcheck disable=SC2086
train "$VAR_METHOD" "$T_STAGE1" $VAR_ARGS $VAR_NET_ARGS
var_config=""
if [ -n "$(last_saved "$VAR_METHOD")" ]; then
  var_config=$RUNS/$VAR_METHOD/run/config.yml
elif [ -n "$(newest_slim "$VAR_METHOD")" ]; then
  var_config=$(dirname "$(dirname "$(newest_slim "$VAR_METHOD")")")/config.yml
fi
if [ -n "$var_config" ] && [ "$(left)" -gt $((T_DIFFUSION + 40)) ]; then
  train "$DIFFUSION_METHOD" "$T_DIFFUSION" --pipeline.model.var-checkpoint "$var_config"
else
  log "diffusion skipped (VAR config '${var_config}', $(left) s left)"
fi

# 2. slim copies (the diffusion run's also writes its VAR's) + loss curves, one tar per method.
slim() {  # config extra-args...
  local config=$1
  shift
  (cd "$OUTS" && splatdiff-slim-run --load-config "$config" --output-dir checkpoints --experiment-name "$SAVE_SET" \
    --data "$SLIM_DATA" --overwrite "$@" >>"$RESULTS/slim.log" 2>&1)
}
paired=$(newest_slim "$DIFFUSION_METHOD")
if [ -n "$(last_saved "$DIFFUSION_METHOD")" ]; then
  # shellcheck disable=SC2086
  slim "$RUNS/$DIFFUSION_METHOD/run/config.yml" $SLIM_ARGS
elif [ "$PAIR_DIFFUSION" = 1 ] && [ -n "$(last_saved "$VAR_METHOD")" ] && [ -n "$paired" ]; then
  # the denoiser's slim copy, over the VAR this session trained (a frozen encoder keeps its latents)
  [ "${paired:0:1}" = / ] || paired=$REPO/$paired
  FACTS[${DIFFUSION_METHOD}_paired_from]=$paired
  # shellcheck disable=SC2086
  slim "$(dirname "$(dirname "$paired")")/config.yml" --var-config "$RUNS/$VAR_METHOD/run/config.yml" $SLIM_ARGS
elif [ -n "$(last_saved "$VAR_METHOD")" ]; then
  slim "$RUNS/$VAR_METHOD/run/config.yml"
fi
log "slim exit $? ($(ls "$OUTS/checkpoints/$SAVE_SET" 2>/dev/null | tr '\n' ' '))"
for m in "$VAR_METHOD" "$DIFFUSION_METHOD"; do
  [ -d "$OUTS/checkpoints/$SAVE_SET/$m" ] || continue
  tar -cf "$RESULTS/$m.tar" -C "$OUTS" "checkpoints/$SAVE_SET/$m" \
    --transform "s,^gpu/$m/run/,checkpoints/$SAVE_SET/$m/events/," \
    -C "$WORK" $(cd "$WORK" && ls -d gpu/"$m"/run/events.* 2>/dev/null) 2>>"$RESULTS/slim.log"
  size=$(stat -c %s "$RESULTS/$m.tar")
  [ "$size" -le $((16 * 1024 * 1024)) ] || log "WARNING: $m.tar is $size bytes, over the 16 MiB a file may come back"
  FACTS[${m}_tar_bytes]=$size
done
log "packed"

# 3. gsplat against the torch rasteriser.
if [ "$CHECKS" = 1 ] && [ "$backend" = gsplat ] && [ "$(left)" -gt 60 ]; then
  timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_rasterizer.py >"$RESULTS/cuda_tests.log" 2>&1
  FACTS[gsplat_cross_check]=$(tail -1 "$RESULTS/cuda_tests.log")
  log "gsplat cross-check: ${FACTS[gsplat_cross_check]}"
fi

# 4. speed and profile on this device, most wanted first, while the budget lasts.
speed() {  # name seconds train_speed-args...
  local name=$1 seconds=$2
  shift 2
  if [ "$(left)" -lt "$seconds" ]; then log "speed $name skipped ($(left) s left)"; return; fi
  timeout "$seconds" python3 benchmarks/train_speed.py --device cuda --data "$DATA" --steps 20 --profile 5 \
    --json "$RESULTS/train_speed_cuda_$name.json" "$@" >"$RESULTS/train_speed_$name.log" 2>&1
  log "train speed $name exit $?"
}
if [ "$SPEED" = 1 ]; then
  speed var_small_b32 45 --methods var-small --batch 32 --device-scenes on
  speed diffusion_small_b32 40 --methods diffusion-small --batch 32 --device-scenes on
  speed paper_var_128_b32 60 --methods var --batch 32 --device-scenes on
fi

# What comes back is at most 8 files: the two tars, speed.tar, logs.tar and session.json.
FACTS[total_s]=$((SECONDS - START))
for k in "${!FACTS[@]}"; do printf '%s\t%s\n' "$k" "${FACTS[$k]}"; done | python3 -c "
import json, sys, datetime
facts = dict(line.rstrip('\n').split('\t', 1) for line in sys.stdin if '\t' in line)
facts['date'] = datetime.date.today().isoformat()
facts['script'] = 'benchmarks/gpu_session.sh'
json.dump(dict(sorted(facts.items())), open('$RESULTS/session.json', 'w'), indent=1)"
(cd "$RESULTS" && ls ./train_speed_cuda_*.json >/dev/null 2>&1 && tar -cf speed.tar ./train_speed_cuda_*.json \
  && rm -f ./train_speed_cuda_*.json)
log "done in $((SECONDS - START)) s"
(cd "$RESULTS" && tar -cf logs.tar ./*.log ./*.txt 2>/dev/null && rm -f ./*.log ./*.txt)
cd "$REPO" || true
}
main "$@"
