#!/usr/bin/env bash
# The recipe of the shipped default model (ksdiff/assets/default.safetensors, "v3"): data, command, seed.
# The models it replaced: v2 (configs/v2.yaml, same data script before the mouthClose share; git show 16dcc07:ksdiff/
# assets/default.safetensors) and configs/shipped.yaml (git show 7627a31:scripts/train_default.sh for its recipe).
# Usage: scripts/train_default.sh [SHARED=../shared] [DATA=data/v2] [RUN=runs/v3]
set -euo pipefail
shared=${1:-../shared}; data=${2:-data/v2}; run=${3:-runs/v3}
K=${KSDIFF:-.venv/bin/ksdiff}
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# 1. data (synthetic with calibrated visemes and emotion, real voices with procedural targets, FACEGOOD, the tracked
#    videos synced and labelled; features cached): scripts/prepare_v2_data.sh
"$here/prepare_v2_data.sh" "$shared" "$data"
# 2. train: configs/v3.yaml = v2.yaml (shipped.yaml: the full model, one style token per dataset, character tokens;
#    + the reference-style encoder + valence/arousal) with 7000 steps and one DataLoader worker, seed 0 (~100 min with
#    2 threads on the 2-core CPU). The shipped run began with an 8000-step horizon and was resumed at step 3203 with
#    --steps 7000, so this command reproduces it up to that change (configs/v3.yaml).
$K train --config v3 --data "$data/synth" --data "$data/pseudo" --data "$data/facegood" --data "$data/video" \
  --data "$data/video_extra" --out "$run"
# 3. ship, with the generation defaults chosen for v2 on held-out data (docs/RESULTS.md, "v2's generation defaults")
"${PYTHON:-.venv/bin/python}" "$here/set_generation.py" "$run/model.safetensors" ksdiff/assets/default.safetensors \
  generation.smooth=0.75 data.default_style=pseudo data.reference_style=facegood
