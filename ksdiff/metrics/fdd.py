"""Upper-face dynamics deviation (CodeTalker)."""

from __future__ import annotations

import numpy as np


def upper_face_dynamics(verts: np.ndarray, neutral: np.ndarray, upper_idx: np.ndarray) -> float:
    """Per upper-face vertex, the std over time of its displacement (L2 norm) from the neutral; mean over
    vertices. verts: (T, V, 3); neutral: (V, 3)."""
    idx = np.asarray(upper_idx)
    disp = np.linalg.norm(np.asarray(verts, np.float64)[:, idx] - np.asarray(neutral, np.float64)[idx], axis=-1)
    return float(disp.std(axis=0).mean())


def fdd(pred: np.ndarray, gt: np.ndarray, neutral: np.ndarray, upper_idx: np.ndarray) -> float:
    """FDD = dynamics(gt) − dynamics(pred), see :func:`upper_face_dynamics` (vertex unit, mm).
    Positive: the prediction moves the upper face less than the truth."""
    return upper_face_dynamics(gt, neutral, upper_idx) - upper_face_dynamics(pred, neutral, upper_idx)
