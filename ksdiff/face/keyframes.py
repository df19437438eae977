"""Ground-truth keyframe labels (paper Eq. 3): a function of motion alone, so the data pipeline (feature cache,
training batches) and the model's keyframe predictors (:mod:`ksdiff.model.keyframes`) both stand on it.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.spatial.transform import Rotation

from ksdiff.errors import KsdiffError
from ksdiff.face.specs import FaceSpec


def motion_variation(coeffs: np.ndarray, spec: FaceSpec) -> tuple[np.ndarray, np.ndarray]:
    """Inter-frame variation of the head and expression paths (Eq. 3, before smoothing).

    Head: ``delta_h[t] = theta_t + ||c'_t - c'_{t-1}||_2`` where ``theta_t`` is the geodesic angle of
    ``R_t R_{t-1}^T`` (the head rotation, axis-angle ``spec.head_rotation``) and ``c'`` are the other head-path
    channels. Expression: ``delta_e[t] = ||e_t - e_{t-1}||_2`` over the expression-path channels.
    ``delta[0] = 0`` (no previous frame).

    Args:
        coeffs: (T, C) motion in ``spec``'s channel order.
        spec: the face spec (its head / expression split, including ``jaw_path``).

    Returns:
        (delta_h, delta_e): two (T,) float64 arrays.
    """
    x = np.asarray(coeffs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != spec.dim:
        raise KsdiffError(f"motion must be (T, {spec.dim}) for spec {spec.name!r}, got shape {tuple(x.shape)}")
    T = x.shape[0]
    dh = np.zeros(T)
    de = np.zeros(T)
    if T < 2:
        return dh, de
    rot_idx = spec.head_rotation_idx
    other_idx = [i for i in spec.head_idx if i not in rot_idx]
    rot = Rotation.from_rotvec(x[:, rot_idx])
    theta = (rot[1:] * rot[:-1].inv()).magnitude()  # angle of R_t R_{t-1}^T, t = 1..T-1
    dh[1:] = theta
    if other_idx:
        dh[1:] += np.linalg.norm(np.diff(x[:, other_idx], axis=0), axis=1)
    de[1:] = np.linalg.norm(np.diff(x[:, spec.expression_idx], axis=0), axis=1)
    return dh, de


def pick_keyframes(delta: np.ndarray, sigma: float = 2.0, kappa: float = 1.0, min_gap: int = 5) -> np.ndarray:
    """Keyframes of one variation sequence: local maxima of the Gaussian-smoothed ``delta`` above
    ``mean + kappa * std`` (of the smoothed sequence), at least ``min_gap`` frames apart (the larger peak wins).

    Args:
        delta: (T,) variation.
        sigma: Gaussian smoothing in frames (0 = none).
        kappa: threshold in standard deviations above the mean.
        min_gap: minimum distance between two keyframes, in frames.

    Returns:
        (T,) uint8 in {0, 1}.
    """
    d = np.asarray(delta, dtype=np.float64)
    out = np.zeros(d.shape[0], dtype=np.uint8)
    if d.shape[0] < 3:
        return out
    s = gaussian_filter1d(d, sigma, mode="nearest") if sigma > 0 else d
    sd = float(s.std())
    if not np.isfinite(sd) or sd <= 1e-12 * max(1.0, float(np.abs(s).max())):
        return out  # (numerically) constant: no keyframe
    thr = float(s.mean()) + kappa * sd
    peaks, _ = find_peaks(s, height=thr, distance=max(int(min_gap), 1))
    out[peaks] = 1
    return out


def keyframe_labels(coeffs: np.ndarray, spec: FaceSpec, sigma: float = 2.0, kappa: float = 1.0,
                    min_gap: int = 5) -> np.ndarray:
    """Ground-truth keyframes of a motion sequence (paper Eq. 3).

    Args:
        coeffs: (T, C) float motion in ``spec``'s channel order (raw, not normalised).
        spec: face spec; its head path gives ``delta_h``, its expression path ``delta_e``.
        sigma: Gaussian smoothing of each variation sequence, in frames.
        kappa: per-sequence threshold ``mean + kappa * std`` of the smoothed variation.
        min_gap: keyframes of one path are at least this many frames apart.

    Returns:
        (T, 2) uint8: column 0 head-path keyframes, column 1 expression-path keyframes.
    """
    dh, de = motion_variation(coeffs, spec)
    return np.stack([pick_keyframes(dh, sigma, kappa, min_gap), pick_keyframes(de, sigma, kappa, min_gap)], axis=1)
