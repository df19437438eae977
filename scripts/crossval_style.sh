#!/usr/bin/env bash
# Grouped 4-fold cross-validation of the reference-style recipe over every person of the tracked videos (issue 15):
# each video dataset is split into 4 folds with all clips of a person in one fold (its people file); fold k trains
# CV_CONFIG (default v2: the shipped recipe + the style encoder + emotion) on synthetic speech, FACEGOOD and fold k's
# training clips of every video dataset, and is scored on fold k's held-out clips of each, in that dataset's style,
# guidance 1 (as chosen on the video val split), against
#   static      the train clips' mean face,
#   reference   the mean pose of the reference the model gets (the person's resting face, no speech),
#   ksdiff      the same model without a reference,
#   ksdiff-ref  with the reference protocol `other` (the person's other held-out clip, else the clip's first
#               REF_SECONDS (2; the GRID clips last 3 s), left out of every method's score) and its audio, the
#               face's typical pose anchored to the reference's beyond its speech, shrunk halfway to the style
#               token's training median face (ksdiff.generate.anchor_face; the half chosen by scripts/crossval_nested.py
#               over CV_WEIGHTS, which adds ksdiff-ref-w<W> for each W, e.g. CV_WEIGHTS="0.25 0.75 1"),
#   ksdiff-ref-motion   the same from the reference's motion alone (no audio, as a Live Link CSV comes),
#   ksdiff-ref-encoder  with the reference, without the anchoring (the style encoder alone),
# then scripts/crossval_table.py (per person, paired bootstrap). docs/RESULTS.md, "Style from a reference".
# Usage: scripts/crossval_style.sh DS_SYNTH DS_FACEGOOD OUT RUNS VIDEO_DS:PEOPLE_JSON [VIDEO_DS:PEOPLE_JSON ...]
# CV_OVERRIDES (default "train.steps=1500"), CV_PARALLEL (2; OMP_NUM_THREADS=1 each), CV_SEEDS (2), REF_PROTOCOL
# (other; self: every clip's own first REF_SECONDS, even where the person has another clip), CV_STYLES (style tokens
# to score ksdiff-<token> (no reference) and ksdiff-ref-<token>-w<W> in, besides each dataset's own).
set -euo pipefail
synth=$1; fg=$2; out=$3; runs=$4; shift 4
K=${KSDIFF:-.venv/bin/ksdiff}; PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
folds=4; par=${CV_PARALLEL:-2}; seeds=${CV_SEEDS:-2}
here=$(cd "$(dirname "$0")" && pwd)
names=(); fjson=()
for pair in "$@"; do
  ds=${pair%%:*}; people=${pair#*:}; name=$(basename "$ds")
  [ -f "$runs/data/$name/folds.json" ] || $K dataset folds "$ds" --out "$runs/data/$name" -k $folds --groups "$people"
  names+=("$name"); fjson+=("$runs/data/$name/folds.json")
done
for f in $(seq 0 $((folds - 1))); do
  data=(--data "$synth" --data "$fg"); for n in "${names[@]}"; do data+=(--data "$runs/data/$n/fold$f"); done
  # shellcheck disable=SC2086
  "$here/train_resumable.sh" "$runs/fold$f" "$runs/fold$f.log" --config "${CV_CONFIG:-v2}" "${data[@]}" \
    ${CV_OVERRIDES:-train.steps=1500} &
  while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do sleep 10; done
done
wait
i=0
for pair in "$@"; do
  people=${pair#*:}; n=${names[$i]}; i=$((i + 1))
  for f in $(seq 0 $((folds - 1))); do
    d="$runs/data/$n/fold$f"; o="$out/fold$f/$n"; ck="$runs/fold$f/model.safetensors"
    ref=(--reference "${REF_PROTOCOL:-other}" --people "$people" --reference-seconds "${REF_SECONDS:-2}")
    ev() { [ -f "$1/metrics.json" ] || $K evaluate "${@:2}" --data "$d" --split test --out "$1" --no-plots > /dev/null; }
    ev "$o/static" --baseline static "${ref[@]}"
    ev "$o/reference" --baseline reference "${ref[@]}"
    gen=(--checkpoint "$ck" --seeds "$seeds" --style "$n" --guidance 1 "${ref[@]}")
    ev "$o/ksdiff" "${gen[@]}" --name ksdiff --no-reference-input
    ev "$o/ksdiff-ref-encoder" "${gen[@]}" --name ksdiff-ref-encoder --no-anchor
    ev "$o/ksdiff-ref-motion" "${gen[@]}" --name ksdiff-ref-motion --no-reference-audio
    ev "$o/ksdiff-ref" "${gen[@]}" --name ksdiff-ref
    for w in ${CV_WEIGHTS:-}; do ev "$o/ksdiff-ref-w$w" "${gen[@]}" --name "ksdiff-ref-w$w" --reference-weight "$w"; done
    for st in ${CV_STYLES:-}; do  # another style token for every dataset (e.g. the checkpoint's default, facegood)
      ev "$o/ksdiff-$st" --checkpoint "$ck" --seeds "$seeds" --style "$st" --guidance 1 "${ref[@]}" \
        --name "ksdiff-$st" --no-reference-input
      for w in 0.5 ${CV_WEIGHTS:-}; do
        ev "$o/ksdiff-ref-$st-w$w" --checkpoint "$ck" --seeds "$seeds" --style "$st" --guidance 1 "${ref[@]}" \
          --name "ksdiff-ref-$st-w$w" --reference-weight "$w"
      done
    done
  done
done
$PY "$here/crossval_table.py" "$out" "${fjson[@]}"
