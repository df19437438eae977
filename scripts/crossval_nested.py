"""Choose a setting inside a grouped cross-validation without looking at the people it is scored on: for each fold
k, among the methods given (e.g. the same model at several --reference-weight values), the one with the lowest LVE
per person over the *other* folds' held-out people (fold k's people trained nothing it is chosen on: they are
held out of every model scored here); fold k's people are then scored with that choice. Prints each fold's choice
and the nested result against `static` (paired bootstrap over people, as scripts/crossval_table.py).

Usage: python scripts/crossval_nested.py REPORTS METHOD[,METHOD...] FOLDS_JSON [FOLDS_JSON ...]
(REPORTS and FOLDS_JSON as scripts/crossval_table.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from crossval_table import _collect  # noqa: E402

from ksdiff.utils.stats import bootstrap_interval  # noqa: E402


def main(out: Path, methods: list[str], folds_jsons: list[Path]) -> None:
    per, groups, k = _collect(out, folds_jsons)
    fold_of = _fold_of(out, k)

    def person_lve(method: str, folds: set[int]) -> dict[str, float]:
        by: dict[str, list[float]] = {}
        for clip, m in per[method].items():
            if fold_of[clip] in folds:
                by.setdefault(groups[clip], []).append(m["lve_mm"])
        return {p: float(np.mean(v)) for p, v in by.items()}

    nested: dict[str, float] = {}
    for f in range(k):
        others = set(range(k)) - {f}
        score = {m: np.mean(list(person_lve(m, others).values())) for m in methods}
        best = min(score, key=score.get)
        print(f"fold {f}: " + ", ".join(f"{m} {s:.3f}" for m, s in score.items()) + f" -> {best}")
        nested.update(person_lve(best, {f}))
    static = person_lve("static", set(range(k)))
    people = sorted(static)
    d = np.array([nested[p] - static[p] for p in people])
    lo, hi = bootstrap_interval(d)
    print(f"nested choice: {np.mean([nested[p] for p in people]):.3f} mm per person vs static "
          f"{np.mean([static[p] for p in people]):.3f}: {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}], better for "
          f"{int((d < 0).sum())} / {len(people)} people")


def _fold_of(out: Path, k: int) -> dict[str, int]:
    """{clip key (as _collect names it): the fold whose held-out clips it is} from the reports' layout."""
    import json

    single = (out / "fold0" / "static").is_dir()
    fold_of: dict[str, int] = {}
    for f in range(k):
        for base in [out / f"fold{f}"] if single else sorted(d for d in (out / f"fold{f}").iterdir() if d.is_dir()):
            prefix = "" if single else f"{base.name}/"
            res = json.loads((base / "static" / "metrics.json").read_text())["per_clip"]
            fold_of.update({prefix + c: f for c in res})
    return fold_of


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(","), [Path(p) for p in sys.argv[3:]])
