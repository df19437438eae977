"""Head-motion diversity."""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial.transform import Rotation


def head_angles_deg(head_rotvec: np.ndarray) -> np.ndarray:
    """(T, 3) axis-angle (radians) → (T, 3) Euler angles (pitch x, yaw y, roll z; intrinsic 'XYZ') in degrees."""
    return np.degrees(Rotation.from_rotvec(np.asarray(head_rotvec, np.float64)).as_euler("XYZ"))


def head_diversity(head_rotvecs: list[np.ndarray]) -> float:
    """Diversity of head motion: for each sequence the std over time of each head rotation angle (degrees),
    averaged over the three angles, then over sequences. head_rotvecs: list of (T_i, 3) axis-angle arrays."""
    vals = [head_angles_deg(r).std(axis=0).mean() for r in head_rotvecs if len(r) > 1]
    return float(np.mean(vals)) if vals else 0.0


def sample_diversity(samples: list[np.ndarray]) -> float:
    """Mean pairwise distance between samples for the same audio drawn with different seeds: for each pair,
    the mean over frames of the L2 distance between frames. samples: list of (T, C) arrays (≥ 2)."""
    if len(samples) < 2:
        return 0.0
    d = [float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1).mean())
         for a, b in itertools.combinations(samples, 2)]
    return float(np.mean(d))
