#!/usr/bin/env bash
# Trains the shipped proving-ground model (what `make train-demo` runs). Every stage saves often and, when run
# again, resumes from its newest checkpoint (a finished stage is skipped), so a killed session loses little.
#
#   benchmarks/train_demo.sh [data|var|baselines|diffusion|paper-diffusion|slim|all]...    (default: all)
#
# Stages: data (500 proving-ground scenes, `--kind object`), var (splatdiff-var-small: the privileged-view VAR),
# baselines (splatdiff-regression-small and splatdiff-var-small-input-only: the paper's recipe), diffusion
# (splatdiff-diffusion-small over the var run), slim (float16 inference copies into checkpoints/demo).
# Steps and paths come from the environment: VAR_STEPS, BASELINE_STEPS, DIFFUSION_STEPS, DATA, OUT. MODES=shape makes
# the geometry proving ground instead (`--modes shape`: the hidden sides differ in shape only). SCENES (default 500)
# scenes; PAIRED=1 writes each of them once per mode (`--all-modes`: 3 x SCENES sequences, the same input view with
# every completion, so the VAR can only learn the hidden side from its privileged view). VAR_INIT and
# DIFFUSION_INIT (a checkpoint, e.g. a shipped slim one) warm-start a stage that has no checkpoint of its own yet: its
# weights and step, so the stage's step count includes the init's. VAR_FLAGS / DIFFUSION_FLAGS: extra ns-train flags
# (e.g. "--save-only-latest-checkpoint False --steps-per-save 500" keeps a checkpoint every 500 steps to score
# afterwards, ~68 MB each for the VAR with its optimiser state; by default only the newest is kept).
# BASELINES: which baselines the baselines stage trains (default "input-only regression").
# INPUT_ONLY_INIT / INPUT_ONLY_FLAGS do the same for the baselines stage's input-only VAR (the paper's recipe at equal
# compute: benchmarks/paper_recipe_init.py), and `paper-diffusion` trains a denoiser over that VAR's latents.
# REGRESSION_INIT / REGRESSION_FLAGS: the same for its regression baseline (e.g. a regression trained on the colour
# ground, carried on to the shape ground like our VAR).
set -euo pipefail
# The whole script is one function, parsed before it runs: editing this file while a stage trains cannot change what
# the running script does next.
main() {
cd "$(dirname "$0")/.."
BIN=${VENV:-.venv}/bin
DATA=${DATA:-data/proving}
OUT=${OUT:-outputs/train-demo}
VAR_STEPS=${VAR_STEPS:-4000}
BASELINE_STEPS=${BASELINE_STEPS:-1500}
DIFFUSION_STEPS=${DIFFUSION_STEPS:-3000}
MODES=${MODES:-colour}
SCENES=${SCENES:-500}
PAIRED=${PAIRED:-0}
VAR_INIT=${VAR_INIT:-}
DIFFUSION_INIT=${DIFFUSION_INIT:-}
read -r -a VAR_FLAGS <<<"${VAR_FLAGS:-}"
read -r -a DIFFUSION_FLAGS <<<"${DIFFUSION_FLAGS:-}"
BASELINES=${BASELINES:-input-only regression}
INPUT_ONLY_INIT=${INPUT_ONLY_INIT:-}
read -r -a INPUT_ONLY_FLAGS <<<"${INPUT_ONLY_FLAGS:-}"
REGRESSION_INIT=${REGRESSION_INIT:-}
read -r -a REGRESSION_FLAGS <<<"${REGRESSION_FLAGS:-}"
RUNS=$OUT/demo

last_step() {  # newest saved step of a run folder, or -1
  local ckpts
  ckpts=$(ls "$1"/nerfstudio_models/step-*.ckpt 2>/dev/null | sort -V | tail -1)
  if [ -z "$ckpts" ]; then echo -1; return; fi
  local n=${ckpts##*step-}
  echo $((10#${n%.ckpt}))
}

ckpt_step() {  # the step a checkpoint file name says (step-000003999.ckpt -> 3999)
  local n=${1##*step-}
  echo $((10#${n%.ckpt}))
}

train() {  # train METHOD STEPS INIT [extra ns-train flags...]: train or resume a run in $RUNS/METHOD/run
  local method=$1 steps=$2 init=$3
  shift 3
  local run=$RUNS/$method/run
  local done_step resume=()
  done_step=$(last_step "$run")
  if [ "$done_step" -lt 0 ] && [ -n "$init" ]; then
    echo "$method: warm start from $init"
    done_step=$(ckpt_step "$init")
    resume=(--load-checkpoint "$init")
  fi
  if [ "$done_step" -ge $((steps - 1)) ]; then
    echo "$method: finished ($((done_step + 1)) steps), skipping"
    return
  fi
  if [ "$done_step" -ge 0 ] && [ ${#resume[@]} -eq 0 ]; then
    echo "$method: resuming after step $done_step"
    resume=(--load-dir "$run/nerfstudio_models")
  fi
  # nerfstudio counts --max-num-iterations from the step it resumes at: ask for the steps still missing.
  "$BIN/ns-train" "$method" --max-num-iterations $((steps - done_step - 1)) --vis tensorboard \
    --output-dir "$(dirname "$RUNS")" --experiment-name "$(basename "$RUNS")" --timestamp run "${resume[@]}" "$@" co3d-data --data "$DATA"
}

stage() {
  case $1 in
  data)
    paired=()
    if [ "$PAIRED" = 1 ]; then paired=(--all-modes); fi
    test -f "$DATA/procedural/frame_annotations.jgz" || "$BIN/splatdiff-make-procedural" --kind object \
      --modes "$MODES" --output "$DATA" --scenes "$SCENES" --views 24 --resolution 128 --seed 0 --workers 2 --preview \
      "${paired[@]}"
    ;;
  var) train splatdiff-var-small "$VAR_STEPS" "$VAR_INIT" "${VAR_FLAGS[@]}" ;;
  baselines)
    for b in $BASELINES; do
      case $b in
      input-only) train splatdiff-var-small-input-only "$BASELINE_STEPS" "$INPUT_ONLY_INIT" "${INPUT_ONLY_FLAGS[@]}" ;;
      regression) train splatdiff-regression-small "$BASELINE_STEPS" "$REGRESSION_INIT" "${REGRESSION_FLAGS[@]}" ;;
      *) echo "unknown baseline '$b' in BASELINES: use input-only and/or regression" >&2; exit 2 ;;
      esac
    done
    ;;
  diffusion)
    train splatdiff-diffusion-small "$DIFFUSION_STEPS" "$DIFFUSION_INIT" "${DIFFUSION_FLAGS[@]}" \
      --pipeline.model.var-checkpoint "$RUNS/splatdiff-var-small/run/config.yml"
    ;;
  paper-diffusion)  # the paper's recipe: a denoiser over the input-only VAR, in $OUT/paper (not over ours)
    input_only=$RUNS/splatdiff-var-small-input-only/run/config.yml
    RUNS=$OUT/paper
    train splatdiff-diffusion-small "$DIFFUSION_STEPS" "$DIFFUSION_INIT" "${DIFFUSION_FLAGS[@]}" \
      --pipeline.model.var-checkpoint "$input_only"
    RUNS=$OUT/demo
    ;;
  slim)
    "$BIN/splatdiff-slim-run" --load-config "$RUNS/splatdiff-diffusion-small/run/config.yml" \
      --output-dir checkpoints --experiment-name demo --data data/demo
    ;;
  all) for s in data var baselines diffusion slim; do stage "$s"; done ;;
  *) echo "unknown stage '$1': use data, var, baselines, diffusion, paper-diffusion, slim or all" >&2; exit 2 ;;
  esac
}

for s in "${@:-all}"; do stage "$s"; done
}
main "$@"
