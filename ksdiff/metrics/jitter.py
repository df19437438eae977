"""Jitter: mean jerk."""

from __future__ import annotations

import numpy as np


def jitter(x: np.ndarray, fps: float) -> float:
    """Mean jerk magnitude: the L2 norm over channels (or vertex coordinates) of the third finite difference
    times fps³, averaged over frames (and vertices). x: (T, C) or (T, V, 3). Unit: x's unit / s³."""
    x = np.asarray(x, np.float64)
    if x.shape[0] < 4:
        return 0.0
    j = np.diff(x, n=3, axis=0) * fps ** 3
    return float(np.linalg.norm(j, axis=-1).mean())
