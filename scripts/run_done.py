"""Exit 0 when the training run in RUN_DIR has saved its last step (train_state.json's step >= config train.steps),
1 otherwise. Periodic and timed saves write model.safetensors mid-run, so its presence does not mean "done".
Usage: python scripts/run_done.py RUN_DIR"""

import json
import sys
from pathlib import Path

import yaml

run = Path(sys.argv[1])
step = json.loads((run / "train_state.json").read_text())["step"]
steps = yaml.safe_load((run / "config.yaml").read_text())["train"]["steps"]
sys.exit(0 if int(step) >= int(steps) else 1)
