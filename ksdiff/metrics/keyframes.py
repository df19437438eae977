"""Keyframe precision / recall / F1 with a frame tolerance."""

from __future__ import annotations

import numpy as np


def keyframe_prf(pred: np.ndarray, true: np.ndarray, tol: int = 2) -> tuple[float, float, float]:
    """Precision, recall and F1 of predicted keyframes against true ones.

    A predicted keyframe matches a true one at most ``tol`` frames away; matching is one-to-one (greedy by
    distance). pred, true: (T,) binary masks (values > 0.5 count as keyframes).

    Returns (precision, recall, f1); precision is 1 when nothing is predicted and nothing is true.
    """
    p = np.flatnonzero(np.asarray(pred) > 0.5)
    t = np.flatnonzero(np.asarray(true) > 0.5)
    if len(p) == 0 and len(t) == 0:
        return 1.0, 1.0, 1.0
    if len(p) == 0 or len(t) == 0:
        return 0.0, 0.0, 0.0
    pairs = sorted((abs(int(a) - int(b)), i, j) for i, a in enumerate(p) for j, b in enumerate(t)
                   if abs(int(a) - int(b)) <= tol)
    used_p, used_t, hits = set(), set(), 0
    for _, i, j in pairs:
        if i not in used_p and j not in used_t:
            used_p.add(i)
            used_t.add(j)
            hits += 1
    prec, rec = hits / len(p), hits / len(t)
    f1 = 2 * prec * rec / (prec + rec) if hits else 0.0
    return float(prec), float(rec), float(f1)
