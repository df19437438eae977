"""Beat Align (Bailando, Li et al. 2022) between head motion and speech."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import argrelextrema, find_peaks
from scipy.spatial.transform import Rotation

from ksdiff.audio.envelope import speech_envelope

MOTION_SIGMA = 5.0  # frames: smoothing of the head speed before taking minima (DESIGN.md section 7)
BEAT_SIGMA = 3.0  # frames: tolerance of the alignment kernel


def head_speed(head_rotvec: np.ndarray, fps: float) -> np.ndarray:
    """Angular speed of the head (rad/s): geodesic angle between consecutive rotations × fps.
    head_rotvec: (T, 3) axis-angle. Returns (T,) with speed[0] = speed[1]."""
    r = Rotation.from_rotvec(np.asarray(head_rotvec, np.float64))
    if len(r) < 2:
        return np.zeros(len(r))
    rel = r[1:] * r[:-1].inv()
    s = rel.magnitude() * fps
    return np.concatenate([s[:1], s])


def motion_beats(head_rotvec: np.ndarray, fps: float, sigma: float = MOTION_SIGMA) -> np.ndarray:
    """Motion beats: frame indices of local minima of the Gaussian-smoothed (σ frames) head speed."""
    speed = gaussian_filter1d(head_speed(head_rotvec, fps), sigma, mode="nearest")
    return argrelextrema(speed, np.less)[0]


def speech_beats(wave: np.ndarray, fps: float, num_frames: int | None = None, sr: int = 16_000) -> np.ndarray:
    """Speech beats: energy-onset peaks, frame indices.

    Onset strength = positive part of the frame-to-frame rise of the speech envelope in dB (smoothed with a
    Gaussian of σ = 1 frame); beats are its peaks that exceed mean + 1 std, at least 0.2 s apart, in frames
    whose energy is within 40 dB of the clip's loudest frame (so noise in pauses does not count).
    """
    env = speech_envelope(wave, fps, num_frames=num_frames, sr=sr, db=True).astype(np.float64)
    onset = np.maximum(np.diff(env, prepend=env[:1]), 0.0)
    onset = gaussian_filter1d(onset, 1.0, mode="nearest")
    peaks, _ = find_peaks(onset, height=onset.mean() + onset.std(), distance=max(1, int(round(0.2 * fps))))
    return peaks[env[peaks] > env.max() - 40.0]


def beat_align(motion_beat_frames: np.ndarray, speech_beat_frames: np.ndarray, sigma: float = BEAT_SIGMA) -> float:
    """BA = mean over speech beats b of exp(−min_m (m − b)² / (2 σ²)), with m the motion beats (frames).
    0 when there are no motion beats; NaN when there are no speech beats."""
    s = np.asarray(speech_beat_frames, np.float64)
    m = np.asarray(motion_beat_frames, np.float64)
    if len(s) == 0:
        return float("nan")
    if len(m) == 0:
        return 0.0
    d2 = ((s[:, None] - m[None, :]) ** 2).min(axis=1)
    return float(np.exp(-d2 / (2 * sigma ** 2)).mean())
