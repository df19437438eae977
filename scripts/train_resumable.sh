#!/usr/bin/env bash
# Train a run, or continue it at its last save, or do nothing when it has saved its last step: the building block
# of the multi-run scripts (crossval_*.sh), so that rerunning one after an interruption picks up where it stopped.
# Usage: scripts/train_resumable.sh RUN LOG [ksdiff train arguments, without --out ...]
set -euo pipefail
run=$1; log=$2; shift 2
K=${KSDIFF:-.venv/bin/ksdiff}; PY=${PYTHON:-.venv/bin/python}
here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$run/train_state.json" ] && $PY "$here/run_done.py" "$run"; then
  :                                                    # trained already (saved at its last step)
elif [ -f "$run/train_state.json" ]; then              # interrupted: continue at its last save
  $K train --out "$run" --resume >> "$log" 2>&1
else
  $K train "$@" --out "$run" > "$log" 2>&1
fi
