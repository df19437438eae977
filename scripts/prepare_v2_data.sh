#!/usr/bin/env bash
# The data of the next default model (issues 14 and 15): every domain the project has, the tracked videos A/V-synced
# and labelled (who is who, valence/arousal), val/test splits that hold people out: the data of the shipped v2 model
# (scripts/train_default.sh).
# Run end to end on 2026-11-30 (beside two trainings at low priority, so its wall time measures nothing; stages:
# synth 77 s, features 329 s, the pseudo corpus 293 s when run alone in an earlier session).
# Usage: scripts/prepare_v2_data.sh [SHARED=../shared] [DATA=data/v2]
set -euo pipefail
shared=${1:-../shared}; data=${2:-data/v2}
K=${KSDIFF:-.venv/bin/ksdiff}
here=$(cd "$(dirname "$0")" && pwd)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$data"
# 1. synthetic English with exact targets: the 8 espeak-ng voices and the neural voice in two styles (ksdiff[voice]),
#    visemes calibrated on real speakers (docs/SYNTH.md), each clip with a drawn valence/arousal it shows
$K synth --out "$data/synth" --minutes 30 --seed 0 --visemes calibrated --emotion --quiet --force \
  --voices us_m1 us_f3 gb_m3 gb_f2 rp_m1 us_m7 sc_f4 us_f5 joe_n1 joe_n2
sed -i 's/"name": "synth-seed0"/"name": "synth"/' "$data/synth/dataset.json"    # style token: synth
# 2. real voices, procedural targets ("pseudo" clips): 422 clips, 59 min, 231 speakers, val/test speakers held out
#    (../shared/data/speech stays out: its 15 clips are the lip-sync-on-audio-alone test set)
$K synth --from-speech "$shared/data/speech_extra" --out "$data/pseudo" --visemes calibrated --quiet --force
# 3. real animator-made mouth motion (Mandarin)
$K import facegood "$shared/data/facegood" --out "$data/facegood" --force
# 4. real tracked faces, synced to their sound; who is who; emotion labels from the faces
$K track "$shared/data/video" --out "$data/video" --sync --force
$K dataset people "$data/video" --groups "$here/video_people.json"
$K track "$shared/data/video_extra/styletalk" "$shared/data/video_extra/edtalk" "$shared/data/video_extra/grid" \
  --out "$data/video_extra" --sync --force                                       # German mimictalk left out
$K dataset people "$data/video_extra" --groups "$here/video_extra_people.json"
$K dataset split "$data/video_extra" --groups "$here/video_extra_people.json" \
  --val styletalk_KristiNoem grid_lbbc2a --test styletalk_andrew_clip_1 grid_pwij3p grid_sbwe5n
for d in video video_extra; do $K dataset emotion "$data/$d"; done
# 5. features (cached; training would compute them on first use anyway)
for d in synth pseudo facegood video video_extra; do
  $K prepare "$data/$d" --encoder whisper-tiny --tokens chars --quiet
done
for d in synth pseudo facegood video video_extra; do $K dataset check "$data/$d"; done
