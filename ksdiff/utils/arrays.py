"""Small array helpers shared by the training data pipeline and generation."""

from __future__ import annotations

import numpy as np


def fit_rows(x: np.ndarray, n: int) -> np.ndarray:
    """Trim (N, ...) to ``n`` rows, or pad by repeating the last row (encoder rounding is a frame or two; an empty
    input pads with zeros).

    Returns:
        (n, ...) array of ``x``'s dtype (contiguous).
    """
    if len(x) >= n:
        return np.ascontiguousarray(x[:n])
    if len(x) == 0:
        return np.zeros((n,) + x.shape[1:], dtype=x.dtype)
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)], axis=0)
