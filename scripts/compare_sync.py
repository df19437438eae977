"""Two lip-sync-on-audio-alone reports of the same clips side by side (``ksdiff.evaluate_speech.compare_speech``):
per metric, each mean and the paired difference (B − A) with a 95 % bootstrap interval over the clips (10 000 draws,
seed 0). A side may be several reports (comma-separated, e.g. one per seed of scripts/speech_sync.py): each clip's
value is then their mean. ``ksdiff evaluate --speech DIR --checkpoint A --vs B --seeds N`` does all of it in one run.

Usage: python scripts/compare_sync.py A/metrics.json[,A2/metrics.json...] B/metrics.json[,B2/metrics.json...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ksdiff.evaluate_speech import SYNC_METRICS, compare_speech
from ksdiff.utils.stats import comparison_markdown


def _side(paths: str) -> dict:
    """{"clips": {clip: {metric: mean over the reports}}} of comma-separated reports (clips in all of them)."""
    reports = []
    for p in paths.split(","):
        try:
            reports.append(json.loads(Path(p).read_text())["clips"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"compare_sync: {p}: not a scripts/speech_sync.py report ({type(e).__name__}: {e})")
    clips = set.intersection(*(set(r) for r in reports))
    return {"clips": {c: {k: float(np.mean([r[c].get(k, np.nan) for r in reports])) for k in SYNC_METRICS}
                      for c in clips}}


def main(a_paths: str, b_paths: str) -> None:
    a, b = _side(a_paths), _side(b_paths)
    print(f"{len(set(a['clips']) & set(b['clips']))} clips in both\n")
    print(comparison_markdown(compare_speech(a, b)))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1], sys.argv[2])
