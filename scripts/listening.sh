#!/usr/bin/env bash
# Does the full model (transcript + keyframes) learn to listen? The shipped recipe's data style and guidance with
# the transcript path on, its fixes one by one, against the shipped "w/o transcript" variant; several seeds;
# evaluated on the FACEGOOD and synthetic test splits; the validation diagnostics (speech dependence, attention
# mass) read from each run's metrics.jsonl. docs/RESULTS.md, "Listening".
# Usage: scripts/listening.sh DS_SYNTH DS_FACEGOOD [OUT=reports/listening] [RUNS=runs/listening]
# Env: STEPS (600), SEEDS ("0 1 2"), VARIANTS (all below), PARALLEL (2; OMP_NUM_THREADS=1 each).
set -euo pipefail
synth=$1; fg=$2; out=${3:-reports/listening}; runs=${4:-runs/listening}
K=${KSDIFF:-.venv/bin/ksdiff}; PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
here=$(cd "$(dirname "$0")" && pwd)
steps=${STEPS:-600}; par=${PARALLEL:-2}
declare -A ov=(
  [no_text]="model.transcript=false"
  [full]="model.transcript=true"
  [gated]="model.transcript=true model.denoiser.text_attention=gated"
  [gated_kel]="model.transcript=true model.denoiser.text_attention=gated model.kel.encoder_grad=0.1 model.denoiser.keyframe_drop_prob=0.3 model.denoiser.keyframe_jitter=1"
  [gated_encgrad]="model.transcript=true model.denoiser.text_attention=gated model.kel.encoder_grad=0.1"
  [gated_kfdrop]="model.transcript=true model.denoiser.text_attention=gated model.denoiser.keyframe_drop_prob=0.3 model.denoiser.keyframe_jitter=1"
  [full_kel]="model.transcript=true model.kel.encoder_grad=0.1 model.denoiser.keyframe_drop_prob=0.3 model.denoiser.keyframe_jitter=1"
)
variants=${VARIANTS:-"no_text full gated gated_kel gated_encgrad gated_kfdrop full_kel"}
mkdir -p "$runs" "$out"
for seed in ${SEEDS:-0 1 2}; do
  for v in $variants; do
    r="$runs/$v-s$seed"
    if [ -f "$r/train_state.json" ] && $PY "$here/run_done.py" "$r"; then continue; fi
    if [ -f "$r/train_state.json" ]; then
      $K train --out "$r" --resume --quiet >> "$r.log" 2>&1 &
    else
      # shellcheck disable=SC2086
      $K train --config shipped --data "$synth" --data "$fg" --out "$r" --force --quiet train.steps=$steps \
        train.seed=$seed train.val_every=$((steps / 2)) ${ov[$v]} > "$r.log" 2>&1 &
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do sleep 5; done
  done
done
wait
for seed in ${SEEDS:-0 1 2}; do
  for v in $variants; do
    r="$runs/$v-s$seed"
    for pair in "facegood:$fg" "synth:$synth"; do
      name=${pair%%:*}; d=${pair#*:}; o="$out/$name/$v-s$seed"
      [ -f "$o/metrics.json" ] || $K evaluate --checkpoint "$r/model.safetensors" --data "$d" --split test --out "$o" \
        --name "$v" --style "$name" > /dev/null &
      while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do sleep 2; done
    done
  done
done
wait
$PY "$here/listening_table.py" "$out" "$runs"
