"""Statistics shared by the reports that compare two methods on the same clips."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def bootstrap_interval(d: np.ndarray, draws: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``d`` (N,) (e.g. paired per-clip differences B − A): ``draws``
    resamples of the N values with replacement, seeded, so a report is reproducible. (NaN, NaN) for an empty ``d``."""
    d = np.asarray(d, np.float64).reshape(-1)
    if len(d) == 0:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(d), size=(draws, len(d)))
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(d[idx].mean(axis=1), [tail, 100.0 - tail])
    return float(lo), float(hi)


def paired_comparison(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]], metrics: Iterable[str]
                      ) -> list[dict]:
    """Two methods' per-clip scores ({clip: {metric: value}}) paired clip by clip: per metric, over the clips both
    score (finite on both sides), each side's mean, the mean difference B − A and its 95 % bootstrap interval
    (:func:`bootstrap_interval`). Metrics no clip has on both sides are left out.

    Returns:
        [{"metric", "clips", "a", "b", "diff", "lo", "hi"}, ...] in ``metrics``' order
    """
    shared = sorted(set(a) & set(b))
    rows = []
    for k in metrics:
        both = [c for c in shared if np.isfinite(a[c].get(k, np.nan)) and np.isfinite(b[c].get(k, np.nan))]
        if not both:
            continue
        x, y = (np.array([side[c][k] for c in both], np.float64) for side in (a, b))
        lo, hi = bootstrap_interval(y - x)
        rows.append({"metric": k, "clips": len(both), "a": float(x.mean()), "b": float(y.mean()),
                     "diff": float((y - x).mean()), "lo": lo, "hi": hi})
    return rows


def comparison_markdown(rows: list[dict], a_name: str = "A", b_name: str = "B",
                        directions: dict[str, str] | None = None) -> str:
    """:func:`paired_comparison`'s rows as a markdown table; ``directions``: a mark per metric (e.g. "↓")."""
    d = directions or {}
    lines = [f"| metric | {a_name} | {b_name} | {b_name} − {a_name} | 95 % interval |", "|---|---:|---:|---:|---|"]
    lines += [f"| {r['metric']}{' ' + d[r['metric']] if r['metric'] in d else ''} ({r['clips']} clips) | "
              f"{r['a']:.3f} | {r['b']:.3f} | {r['diff']:+.3f} | [{r['lo']:+.3f}, {r['hi']:+.3f}] |" for r in rows]
    return "\n".join(lines)


__all__ = ["bootstrap_interval", "paired_comparison", "comparison_markdown"]
