#!/usr/bin/env bash
# Two checkpoints side by side on every test split (docs/MODEL_CARD.md): FACEGOOD, tracked videos and synthetic
# speech (each in its own recording domain's style, 2 seeds; guidance: the model's own, 1 on the videos as chosen on
# their val split), optionally the second tracked-video set and the real-speech pseudo clips (DS_VIDEO_EXTRA,
# DS_PSEUDO), and real speech without face truth (lip sync on audio alone, scripts/speech_sync.py).
# A model without a split's own style token uses OLD_STYLE_<split> (default: video for video_extra, its default
# style for pseudo); the new model uses the split's name where it has that token (NEW_STYLES="video_extra pseudo").
# Usage: scripts/compare_models.sh OLD NEW DS_FACEGOOD DS_VIDEO DS_SYNTH [SPEECH=../shared/data/speech] [OUT=reports/compare]
set -euo pipefail
old=$1; new=$2; fg=$3; vid=$4; synth=$5; speech=${6:-../shared/data/speech}; out=${7:-reports/compare}
K=${KSDIFF:-.venv/bin/ksdiff}; PY=${PYTHON:-.venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
new_styles=" ${NEW_STYLES:-video_extra pseudo} "
splits=("facegood:$fg:--guidance-model" "video:$vid:--guidance 1" "synth:$synth:--guidance-model")
[ -n "${DS_VIDEO_EXTRA:-}" ] && splits+=("video_extra:$DS_VIDEO_EXTRA:--guidance 1")
[ -n "${DS_PSEUDO:-}" ] && splits+=("pseudo:$DS_PSEUDO:--guidance-model")
for m in old new; do
  ck=$old; [ $m = new ] && ck=$new
  for triple in "${splits[@]}"; do
    name=${triple%%:*}; rest=${triple#*:}; data=${rest%%:*}; g=${rest#*:}
    [ "$g" = "--guidance-model" ] && g=""
    style=(--style "$name")
    if [ $m = old ] || [[ $new_styles != *" $name "* ]]; then   # a model without this split's token
      case $name in
        video_extra) style=(--style "${OLD_STYLE_video_extra:-video}") ;;
        pseudo) style=(); [ -n "${OLD_STYLE_pseudo:-}" ] && style=(--style "$OLD_STYLE_pseudo") ;;
      esac
    fi
    o="$out/$name/$m"
    # shellcheck disable=SC2086
    [ -f "$o/metrics.json" ] || $K evaluate --checkpoint "$ck" --data "$data" --split test --out "$o" --name "$m" \
      --seeds 2 "${style[@]}" $g --no-plots > /dev/null
  done
  [ -f "$out/speech/$m/metrics.json" ] || $PY "$here/speech_sync.py" "$ck" "$speech" "$out/speech/$m" > /dev/null
done
$PY - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for split in ("facegood", "video", "video_extra", "synth", "pseudo"):
    if not (out / split / "old").is_dir():
        continue
    for m in ("old", "new"):
        r = json.loads((out / split / m / "metrics.json").read_text())
        art = r["info"].get("articulation") or {}
        rows.append((split, m, r["mean"].get("lve_mm"), r["mean"].get("jaw_r"), art.get("ratio"), art.get("r"),
                     r["mean"].get("bilabial_closure")))
print("| test split | model | LVE mm | jawOpen r | articulation (median std ratio) | median mouth r | bilabial |")
print("|---|---|---:|---:|---:|---:|---:|")
f = lambda v: "—" if v is None or v != v else f"{v:.3f}"
for s, m, *vals in rows:
    print(f"| {s} | {m} | " + " | ".join(f(v) for v in vals) + " |")
print("\n| real speech (audio only) | env r | jaw std | mouth std (median) | bilabial closure |")
print("|---|---:|---:|---:|---:|")
for m in ("old", "new"):
    s = json.loads((out / "speech" / m / "metrics.json").read_text())["mean"]
    print(f"| {m} | " + " | ".join(f(s.get(k)) for k in ("env_r", "jaw_std", "mouth_std", "bilabial_closure")) + " |")
PY
