"""Summarise a grouped cross-validation (scripts/crossval_video.sh): every held-out clip's LVE for each method,
averaged over clips and over people, how many people each method beats `static` on, and a paired bootstrap
(resampling people, 10 000 draws, seed 0) 95 % interval of ksdiff's LVE minus each baseline's.

Usage: python scripts/crossval_table.py REPORTS_CV FOLDS_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

METHODS = ("static", "energy-jaw", "ksdiff")


def main(out: Path, folds_json: Path) -> None:
    folds = json.loads(folds_json.read_text())
    groups: dict[str, str] = folds["groups"]
    per: dict[str, dict[str, dict[str, float]]] = {m: {} for m in METHODS}
    for k in range(int(folds["k"])):
        for m in METHODS:
            res = json.loads((out / f"fold{k}" / m / "metrics.json").read_text())
            per[m].update(res["per_clip"])
    clips = sorted(per["static"])
    people = sorted({groups[c] for c in clips})

    def by_person(m: str, key: str) -> np.ndarray:
        return np.array([np.mean([per[m][c][key] for c in clips if groups[c] == p]) for p in people])

    lve = {m: by_person(m, "lve_mm") for m in METHODS}
    print(f"{len(clips)} held-out clips of {len(people)} people, {folds['k']} folds\n")
    print("| method | LVE mm (mean over clips) | LVE mm (mean over people) | mouth RMSE | jawOpen r | "
          "people better than static |")
    print("|---|---|---|---|---|---|")
    for m in METHODS:
        clip_lve = np.mean([per[m][c]["lve_mm"] for c in clips])
        rmse = np.mean([per[m][c]["mouth_rmse"] for c in clips])
        jaw = np.mean([per[m][c]["jaw_r"] for c in clips])
        wins = "—" if m == "static" else f"{int((lve[m] < lve['static']).sum())} / {len(people)}"
        print(f"| {m} | {clip_lve:.3f} | {lve[m].mean():.3f} | {rmse:.4f} | {jaw:.3f} | {wins} |")
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(people), size=(10000, len(people)))
    print()
    for base in ("static", "energy-jaw"):
        d = lve["ksdiff"] - lve[base]
        boot = d[idx].mean(axis=1)
        lo, hi = np.percentile(boot, [2.5, 97.5])
        print(f"ksdiff − {base}: {d.mean():+.3f} mm per person, 95 % bootstrap interval [{lo:+.3f}, {hi:+.3f}]")
    print("\nper clip (LVE mm):")
    print("| clip | person | " + " | ".join(METHODS) + " |")
    print("|---|---|" + "---|" * len(METHODS))
    for c in clips:
        print(f"| {c} | {groups[c]} | " + " | ".join(f"{per[m][c]['lve_mm']:.3f}" for m in METHODS) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
