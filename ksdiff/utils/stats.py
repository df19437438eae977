"""Statistics shared by the reports that compare two methods on the same clips."""

from __future__ import annotations

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


__all__ = ["bootstrap_interval"]
