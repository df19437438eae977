#!/usr/bin/env bash
# Train and evaluate a list of model variants over several seeds: docs/RESULTS.md ("Listening", "Table 3").
# Each run trains on the synthetic corpus + FACEGOOD and is evaluated on the FACEGOOD and synthetic test splits
# (each in its own style) and on the real speech clips of ../shared/data/speech (lip sync on audio alone,
# scripts/speech_sync.py); then scripts/variants_table.py prints mean ± std over seeds and every run.
# Usage: scripts/variants.sh VARIANTS DS_SYNTH DS_FACEGOOD [OUT=reports/variants] [RUNS=runs/variants]
#   VARIANTS: a file of `name: ksdiff train arguments` lines (scripts/variants/*.txt; `all:` goes to every one).
# Env: STEPS (600), SEEDS ("0 1 2"), ONLY (names to run, default all), PARALLEL (2; OMP_NUM_THREADS=1 each),
#      SPEECH (../shared/data/speech; empty = skip), TRAIN (1; 0 = only evaluate finished runs, e.g. while
#      another instance trains: never two instances training the same runs), GUIDANCES (empty: every run at its
#      stored guidance; e.g. "1 1.25 1.5 2": each run's guidance chosen on the FACEGOOD *val* split by LVE, then
#      used for every test split and the real speech: OUT/guidance/RUN.txt).
# Resumable: finished runs and reports are kept, unfinished runs continue with --resume.
set -euo pipefail
spec=$1; synth=$2; fg=$3; out=${4:-reports/variants}; runs=${5:-runs/variants}
K=${KSDIFF:-.venv/bin/ksdiff}; PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
here=$(cd "$(dirname "$0")" && pwd)
steps=${STEPS:-600}; par=${PARALLEL:-2}; speech=${SPEECH-../shared/data/speech}
declare -A ov=()
names=()
while IFS= read -r line; do
  [[ $line =~ ^([A-Za-z0-9_]+):[[:space:]]*(.*)$ ]] || continue
  ov[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
  [ "${BASH_REMATCH[1]}" = all ] || names+=("${BASH_REMATCH[1]}")
done < "$spec"
variants=${ONLY:-${names[*]}}
throttle() { while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do sleep 3; done; }
mkdir -p "$runs" "$out"
for seed in ${SEEDS:-0 1 2}; do
  for v in $variants; do
    r="$runs/$v-s$seed"
    [ "${TRAIN:-1}" = 1 ] || continue
    if [ -f "$r/train_state.json" ] && $PY "$here/run_done.py" "$r"; then continue; fi
    if [ -f "$r/train_state.json" ]; then
      $K train --out "$r" --resume --quiet >> "$r.log" 2>&1 &
    else
      # shellcheck disable=SC2086
      $K train ${ov[$v]} ${ov[all]:-} --data "$synth" --data "$fg" --out "$r" --force --quiet train.steps=$steps \
        train.seed=$seed train.val_every=$((steps / 2)) > "$r.log" 2>&1 &
    fi
    throttle
  done
done
wait
for seed in ${SEEDS:-0 1 2}; do
  for v in $variants; do
    r="$runs/$v-s$seed"
    [ -f "$r/model.safetensors" ] && $PY "$here/run_done.py" "$r" || continue
    gopt=()
    if [ -n "${GUIDANCES:-}" ]; then
      for g in $GUIDANCES; do
        o="$out/val/$v-s$seed-g$g"
        [ -f "$o/metrics.json" ] || $K evaluate --checkpoint "$r/model.safetensors" --data "$fg" --split val \
          --out "$o" --name "$v" --style facegood --guidance "$g" --no-plots > /dev/null &
        throttle
      done
      wait
      mkdir -p "$out/guidance"
      $PY "$here/pick_guidance.py" "$out/val" "$v-s$seed" $GUIDANCES > "$out/guidance/$v-s$seed.txt"
      gopt=(--guidance "$(cat "$out/guidance/$v-s$seed.txt")")
    fi
    for pair in "facegood:$fg" "synth:$synth"; do
      name=${pair%%:*}; d=${pair#*:}; o="$out/$name/$v-s$seed"
      [ -f "$o/metrics.json" ] || $K evaluate --checkpoint "$r/model.safetensors" --data "$d" --split test --out "$o" \
        --name "$v" --style "$name" "${gopt[@]}" --no-plots > /dev/null &
      throttle
    done
    o="$out/speech/$v-s$seed"
    if [ -n "$speech" ] && [ ! -f "$o/metrics.json" ]; then
      $PY "$here/speech_sync.py" "$r/model.safetensors" "$speech" "$o" "${gopt[@]}" > /dev/null &
      throttle
    fi
  done
done
wait
$PY "$here/variants_table.py" "$out" "$runs"
