#!/usr/bin/env bash
# Two checkpoints side by side on every test split (docs/MODEL_CARD.md): FACEGOOD, tracked videos and synthetic
# speech (each in its own recording domain's style, 2 seeds; guidance: the model's own, 1 on the videos as chosen on
# their val split), and real speech without face truth (lip sync on audio alone, scripts/speech_sync.py).
# Usage: scripts/compare_models.sh OLD NEW DS_FACEGOOD DS_VIDEO DS_SYNTH [SPEECH=../shared/data/speech] [OUT=reports/compare]
set -euo pipefail
old=$1; new=$2; fg=$3; vid=$4; synth=$5; speech=${6:-../shared/data/speech}; out=${7:-reports/compare}
K=${KSDIFF:-.venv/bin/ksdiff}; PY=${PYTHON:-.venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
for m in old new; do
  ck=$old; [ $m = new ] && ck=$new
  for triple in "facegood:$fg:" "video:$vid:--guidance 1" "synth:$synth:"; do
    name=${triple%%:*}; rest=${triple#*:}; data=${rest%%:*}; g=${rest#*:}
    o="$out/$name/$m"
    # shellcheck disable=SC2086
    [ -f "$o/metrics.json" ] || $K evaluate --checkpoint "$ck" --data "$data" --split test --out "$o" --name "$m" \
      --seeds 2 --style "$name" $g --no-plots > /dev/null
  done
  [ -f "$out/speech/$m/metrics.json" ] || $PY "$here/speech_sync.py" "$ck" "$speech" "$out/speech/$m" > /dev/null
done
$PY - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
cols = [("facegood", "lve_mm"), ("facegood", "jaw_r"), ("video", "lve_mm"), ("video", "jaw_r"), ("synth", "lve_mm"),
        ("synth", "jaw_r"), ("synth", "bilabial_closure"), ("speech", "env_r"), ("speech", "jaw_std")]
print("| model | " + " | ".join(f"{s} {k}" for s, k in cols) + " |")
print("|---|" + "---:|" * len(cols))
for m in ("old", "new"):
    vals = [json.loads((out / s / m / "metrics.json").read_text())["mean"].get(k, float("nan")) for s, k in cols]
    print(f"| {m} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
PY
