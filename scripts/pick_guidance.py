"""Print the guidance scale whose validation report has the lowest LVE (ties: the higher jawOpen r), from
scripts/variants.sh's OUT/val/RUN-gG/metrics.json reports.
Usage: python scripts/pick_guidance.py VAL_DIR RUN G1 [G2 ...]"""

import json
import sys
from pathlib import Path

val, run, scales = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
scores = {}
for g in scales:
    mean = json.loads((val / f"{run}-g{g}" / "metrics.json").read_text())["mean"]
    scores[g] = (mean["lve_mm"], -mean.get("jaw_r", 0.0))
print(min(scores, key=scores.get))
