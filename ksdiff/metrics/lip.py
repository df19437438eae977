"""Lip vertex error (FaceFormer / DiffSpeaker)."""

from __future__ import annotations

import numpy as np


def _lip_dist(pred: np.ndarray, gt: np.ndarray, lip_idx: np.ndarray) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} vertices differ in shape")
    idx = np.asarray(lip_idx)
    return np.linalg.norm(pred[:, idx] - gt[:, idx], axis=-1)  # (T, L)


def lve(pred: np.ndarray, gt: np.ndarray, lip_idx: np.ndarray) -> float:
    """Lip vertex error in the vertices' unit (mm): per frame the max over lip vertices of the L2 distance
    between prediction and truth, averaged over frames.

    Args:
        pred, gt: (T, V, 3) vertices. lip_idx: (L,) indices of lip vertices.
    """
    return float(_lip_dist(pred, gt, lip_idx).max(axis=1).mean())


def lve_squared(pred: np.ndarray, gt: np.ndarray, lip_idx: np.ndarray) -> float:
    """DiffSpeaker's LVE variant: per frame the max over lip vertices of the SQUARED L2 distance, mean over
    frames (unit²)."""
    return float((_lip_dist(pred, gt, lip_idx) ** 2).max(axis=1).mean())
