#!/usr/bin/env bash
# Grouped 4-fold cross-validation of the shipped recipe on the tracked videos: every clip (18 people, 21 clips) is
# held out once, with all clips of the same person (scripts/video_people.json) in the same fold. Per fold: the
# shipped recipe (configs/shipped.yaml, synth + FACEGOOD + the fold's training videos) and the baselines fitted on
# the fold's training videos, all scored on the fold's held-out clips. docs/RESULTS.md, "Cross-validation".
# Usage: scripts/crossval_video.sh DS_SYNTH DS_FACEGOOD DS_VIDEO [OUT=reports/cv] [RUNS=runs/cv]
# (~15 min of training per fold on this 2-core CPU; OMP_NUM_THREADS=1 lets two folds train side by side:
#  CV_PARALLEL=2, the default). CV_CONFIG (default shipped) and CV_OVERRIDES (e.g. "data.recenter=false") pick
#  the recipe under test.
set -euo pipefail
synth=$1; fg=$2; vid=$3; out=${4:-reports/cv}; runs=${5:-runs/cv}
K=${KSDIFF:-.venv/bin/ksdiff}; PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
folds=4; par=${CV_PARALLEL:-2}
here=$(cd "$(dirname "$0")" && pwd)
$K dataset folds "$vid" --out "$runs/data" -k $folds --groups "$here/video_people.json"
for f in $(seq 0 $((folds - 1))); do
  # shellcheck disable=SC2086
  "$here/train_resumable.sh" "$runs/fold$f" "$runs/fold$f.log" --config "${CV_CONFIG:-shipped}" --data "$synth" \
    --data "$fg" --data "$runs/data/fold$f" ${CV_OVERRIDES:-} &
  while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do sleep 10; done
done
wait
for f in $(seq 0 $((folds - 1))); do
  d="$runs/data/fold$f"; o="$out/fold$f"
  $K evaluate --baseline static     --data "$d" --split test --out "$o/static"    
  $K evaluate --baseline energy-jaw --data "$d" --split test --out "$o/energy-jaw"
  # the video domain's style and guidance 1, as for the fixed test split (scripts/results.sh)
  $K evaluate --checkpoint "$runs/fold$f/model.safetensors" --data "$d" --split test --out "$o/ksdiff" \
    --name ksdiff --seeds 2 --style video --guidance 1
done
$PY "$here/crossval_table.py" "$out" "$runs/data/folds.json"
