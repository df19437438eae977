#!/usr/bin/env bash
# Reproduce docs/RESULTS.md: the baselines and the default model on the test splits of FACEGOOD and of the
# tracked videos. Usage: scripts/results.sh DS_FACEGOOD DS_VIDEO KSDIFF_CKPT DIFFSPEAKER_CKPT [OUT=reports]
# (datasets made with `ksdiff import facegood ...` and `ksdiff track ...`; checkpoints from `ksdiff train`).
set -euo pipefail
fg=$1; vid=$2; ck=$3; ds_ck=$4; out=${5:-reports}
K=${KSDIFF:-.venv/bin/ksdiff}
# guidance scale of the shipped model per domain, chosen on each dataset's *val* split (docs/RESULTS.md):
# FACEGOOD 2.0 (val LVE 2.61 at 1, 2.18 at 2), tracked videos 1.0 (3.04 at 1, 3.09 at 1.5)
for triple in "facegood:$fg:2.0" "video:$vid:1.0"; do
  name=${triple%%:*}; rest=${triple#*:}; data=${rest%:*}; g=${rest##*:}
  $K evaluate --baseline static     --data "$data" --split test --out "$out/$name/static"
  $K evaluate --baseline energy-jaw --data "$data" --split test --out "$out/$name/energy-jaw"
  $K evaluate --checkpoint "$ds_ck" --data "$data" --split test --out "$out/$name/diffspeaker" \
     --name diffspeaker --sampler ddim --steps 50 --window 0 --seeds 2
  # the shipped model has one style token per training dataset (data.style=dataset): evaluate each test split in
  # its own recording domain's style ("facegood", "video"), as DiffSpeaker evaluates with a training speaker's style
  $K evaluate --checkpoint "$ck"    --data "$data" --split test --out "$out/$name/ksdiff" --name ksdiff --seeds 2 \
     --style "$name" --guidance "$g"
  $K evaluate --checkpoint "$ck"    --data "$data" --split test --out "$out/$name/ksdiff-g1" --name "ksdiff (guidance 1)" \
     --seeds 2 --style "$name" --guidance 1
done
.venv/bin/python - "$out" <<'PY'
import sys
from pathlib import Path
from ksdiff.evaluate import load_result, markdown_table
out = Path(sys.argv[1])
for name in ("facegood", "video"):
    res = {m: load_result(out / name / m / "metrics.json") for m in ("static", "energy-jaw", "diffspeaker", "ksdiff-g1",
                                                                    "ksdiff")}
    print(f"### {name}\n")
    print(markdown_table(res))
PY
