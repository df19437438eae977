"""The speech envelope at a motion frame rate: the one definition used by the tracker report, the synthetic
corpus checks, the ``energy-jaw`` baseline and the lip-sync metric."""

from __future__ import annotations

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE


def speech_envelope(wave: np.ndarray, fps: float, num_frames: int | None = None, sr: int = SAMPLE_RATE,
                    db: bool = False) -> np.ndarray:
    """RMS energy of ``wave`` in a window of 2 frame periods centred on each motion frame.

    Args:
        wave: (N,) mono float audio at ``sr``.
        fps: motion frame rate; frame t is centred at t / fps seconds.
        num_frames: T (default round(N / sr × fps)).
        db: return 20·log10(rms + 1e-5) instead of linear RMS.

    Returns:
        (T,) float32 envelope.
    """
    wave = np.asarray(wave, dtype=np.float64).reshape(-1)
    if num_frames is None:
        num_frames = int(round(len(wave) / sr * fps))
    half = int(round(sr / fps))  # window = 2 frame periods
    sq = np.concatenate([[0.0], np.cumsum(wave * wave)])
    centres = np.round(np.arange(num_frames) * sr / fps).astype(np.int64)
    lo = np.clip(centres - half, 0, len(wave))
    hi = np.clip(centres + half, 0, len(wave))
    n = np.maximum(hi - lo, 1)
    rms = np.sqrt((sq[hi] - sq[lo]) / n)
    if db:
        rms = 20.0 * np.log10(rms + 1e-5)
    return rms.astype(np.float32)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equal-length 1-D arrays (0.0 when either is constant)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0
