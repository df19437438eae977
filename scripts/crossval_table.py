"""Summarise a grouped cross-validation (scripts/crossval_video.sh, scripts/crossval_style.sh): every held-out
clip's LVE for each method, averaged over clips and over people, how many people each method beats `static` on,
and paired bootstrap (resampling people, 10 000 draws, seed 0) 95 % intervals of each method's per-person LVE
minus `static`'s, and of the reference-style model minus the same model without a reference, minus the
reference's own mean pose, minus the style encoder alone (no anchoring) and minus the reference's motion alone
(no audio).

Layouts: REPORTS/fold<k>/<method>/metrics.json (one dataset, one FOLDS_JSON) or
REPORTS/fold<k>/<dataset>/<method>/metrics.json (several datasets, one FOLDS_JSON each, given in the same order as
the dataset folders sort). People are named <dataset>/<person> so two datasets' labels never merge.

Usage: python scripts/crossval_table.py REPORTS FOLDS_JSON [FOLDS_JSON ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ksdiff.utils.stats import bootstrap_interval

ORDER = ("static", "reference", "energy-jaw", "ksdiff", "ksdiff-ref-encoder", "ksdiff-ref-motion", "ksdiff-ref",
         "ksdiff-self")
PAIRS = (("ksdiff-ref", "ksdiff"), ("ksdiff-ref", "reference"), ("ksdiff-ref", "ksdiff-ref-encoder"),
         ("ksdiff-ref", "ksdiff-ref-motion"), ("ksdiff-ref-encoder", "ksdiff"), ("ksdiff-self", "ksdiff"))


def _collect(out: Path, folds_jsons: list[Path]) -> tuple[dict, dict[str, str], int]:
    """per[method][clip] = metrics, groups {clip: person}, k. Clip keys are <dataset>/<clip> with several datasets."""
    folds = [json.loads(p.read_text()) for p in folds_jsons]
    k = int(folds[0]["k"])
    single = (out / "fold0" / "static").is_dir()
    names = [""] if single else sorted(d.name for d in (out / "fold0").iterdir() if d.is_dir())
    if len(names) != len(folds):
        raise SystemExit(f"{len(names)} dataset folders under {out}/fold0 but {len(folds)} folds files")
    per: dict[str, dict[str, dict[str, float]]] = {}
    groups: dict[str, str] = {}
    for name, f in zip(names, folds):
        prefix = f"{name}/" if name else ""
        groups.update({prefix + c: prefix + p for c, p in f["groups"].items()})
        for fold in range(k):
            base = out / f"fold{fold}" / name
            for mdir in sorted(d for d in base.iterdir() if (d / "metrics.json").is_file()):
                res = json.loads((mdir / "metrics.json").read_text())["per_clip"]
                per.setdefault(mdir.name, {}).update({prefix + c: v for c, v in res.items()})
    return per, groups, k


def main(out: Path, folds_jsons: list[Path]) -> None:
    per, groups, k = _collect(out, folds_jsons)
    methods = [m for m in ORDER if m in per] + sorted(m for m in per if m not in ORDER)
    clips = sorted(per["static"])
    people = sorted({groups[c] for c in clips})

    def by_person(m: str, key: str) -> np.ndarray:
        return np.array([np.mean([per[m][c][key] for c in clips if groups[c] == p]) for p in people])

    lve = {m: by_person(m, "lve_mm") for m in methods}
    print(f"{len(clips)} held-out clips of {len(people)} people, {k} folds\n")
    print("| method | LVE mm (mean over clips) | LVE mm (mean over people) | mouth RMSE | jawOpen r | "
          "people better than static |")
    print("|---|---|---|---|---|---|")
    for m in methods:
        clip_lve = np.mean([per[m][c]["lve_mm"] for c in clips])
        rmse = np.mean([per[m][c]["mouth_rmse"] for c in clips])
        jaw = np.nanmean([per[m][c].get("jaw_r", np.nan) for c in clips])
        wins = "—" if m == "static" else f"{int((lve[m] < lve['static']).sum())} / {len(people)}"
        print(f"| {m} | {clip_lve:.3f} | {lve[m].mean():.3f} | {rmse:.4f} | {jaw:.3f} | {wins} |")
    print()
    pairs = [(m, "static") for m in methods if m != "static"] + [p for p in PAIRS if p[0] in lve and p[1] in lve]
    styled = {m: "ksdiff-" + m[len("ksdiff-ref-"):-len("-w0.5")] for m in methods  # CV_STYLES: with vs without
              if m.startswith("ksdiff-ref-") and m.endswith("-w0.5")}
    pairs += [(m, base) for m, base in styled.items() if base in lve]
    for a, b in pairs:
        d = lve[a] - lve[b]
        lo, hi = bootstrap_interval(d)
        print(f"{a} − {b}: {d.mean():+.3f} mm per person, 95 % bootstrap interval [{lo:+.3f}, {hi:+.3f}]")
    print("\nper clip (LVE mm):")
    print("| clip | person | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for c in clips:
        print(f"| {c} | {groups[c]} | " + " | ".join(f"{per[m][c]['lve_mm']:.3f}" for m in methods) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
