"""Two scripts/speech_sync.py reports of the same clips side by side: per metric, each mean and the paired
difference (B − A) with a 95 % bootstrap interval over the clips (10 000 draws, seed 0). A side may be several
reports (comma-separated, e.g. one per seed): each clip's value is then their mean.

Usage: python scripts/compare_sync.py A/metrics.json[,A2/metrics.json...] B/metrics.json[,B2/metrics.json...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

KEYS = ("env_r", "lip_env_r", "jaw_std", "mouth_std", "capture_ratio", "bilabial_closure")


def _side(paths: str) -> dict[str, dict[str, float]]:
    """{clip: {metric: mean over the reports}} of comma-separated reports (clips in all of them)."""
    reports = []
    for p in paths.split(","):
        try:
            reports.append(json.loads(Path(p).read_text())["clips"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise SystemExit(f"compare_sync: {p}: not a scripts/speech_sync.py report ({type(e).__name__}: {e})")
    clips = set.intersection(*(set(r) for r in reports))
    return {c: {k: float(np.mean([r[c].get(k, np.nan) for r in reports])) for k in KEYS} for c in clips}


def main(a_paths: str, b_paths: str) -> None:
    a, b = _side(a_paths), _side(b_paths)
    clips = sorted(set(a) & set(b))
    print(f"{len(clips)} clips in both\n\n| metric | A | B | B − A | 95 % interval |\n|---|---:|---:|---:|---|")
    rng = np.random.default_rng(0)
    for k in KEYS:
        both = [c for c in clips if np.isfinite(a[c].get(k, np.nan)) and np.isfinite(b[c].get(k, np.nan))]
        if not both:
            continue
        x, y = np.array([a[c][k] for c in both]), np.array([b[c][k] for c in both])
        d = y - x
        lo, hi = np.percentile(d[rng.integers(0, len(d), (10000, len(d)))].mean(axis=1), [2.5, 97.5])
        print(f"| {k} ({len(both)} clips) | {x.mean():.3f} | {y.mean():.3f} | {d.mean():+.3f} | [{lo:+.3f}, {hi:+.3f}] |")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1], sys.argv[2])
