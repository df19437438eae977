#!/usr/bin/env bash
# The recipe of the shipped default model (ksdiff/assets/default.safetensors): data, command, seed.
# Usage: scripts/train_default.sh [SHARED=../shared] [DATA=data] [RUN=runs/default]
set -euo pipefail
shared=${1:-../shared}; data=${2:-data}; run=${3:-runs/default}
K=${KSDIFF:-.venv/bin/ksdiff}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# 1. data: synthetic English speech (covers the phones), real paired mouth animation, real tracked video
$K synth --out "$data/synth" --minutes 20 --seed 0 --quiet                       # 183 clips, 20 min, 8 voices
sed -i 's/"name": "synth-seed0"/"name": "synth"/' "$data/synth/dataset.json"      # style token names: synth,
$K import facegood "$shared/data/facegood" --out "$data/facegood"                # facegood, video
                                                                                 # (6 clips, 10 min, mouth only)
$K track "$shared/data/video" --out "$data/video"                                # 21 clips, 2.4 min, full face + head
# 2. features (cached; train would compute them on first use anyway)
for d in synth facegood video; do $K prepare "$data/$d" --encoder whisper-tiny --tokens chars --quiet; done
# 3. train: configs/shipped.yaml = default.yaml (the full model) + one style token per dataset (recording domain),
#    character tokens, the FACEGOOD style and guidance 1.25 as generation defaults; 3000 steps, seed 0 (56 min on
#    this 2-core CPU with OMP_NUM_THREADS=1 while two other trainings ran; ~30 min alone)
$K train --config shipped --data "$data/synth" --data "$data/facegood" --data "$data/video" --out "$run"
# 4. ship
cp "$run/model.safetensors" ksdiff/assets/default.safetensors
