"""Lip sync measured on audio alone (no ground-truth motion needed)."""

from __future__ import annotations

import numpy as np

from ksdiff.audio.envelope import pearson, speech_envelope

BILABIALS = ("P", "B", "M")  # ARPAbet
JAW_CLOSED = 0.1  # jawOpen below this ...
LIPS_SHUT = 0.15  # ... and mouthClose or mouthPress above this (or jawOpen < 0.05 alone) = mouth closed


def bilabial_closure(jaw_open: np.ndarray, mouth_close: np.ndarray, mouth_press: np.ndarray,
                     phones: list[tuple[str, float, float]], fps: float) -> float:
    """Fraction of bilabial phones (/p b m/) whose centre frame shows a closed mouth.

    Closed means jawOpen < 0.1 and (mouthClose > 0.15 or mouthPress > 0.15 or jawOpen < 0.05): a shut jaw closes
    the lips even without a lip blendshape. Phones are (ARPAbet label, start s, end s); stress digits and case are
    ignored; other labels are skipped. NaN when the audio has no bilabial.
    """
    jaw, close, press = (np.asarray(a, np.float64) for a in (jaw_open, mouth_close, mouth_press))
    hits = n = 0
    for label, start, end in phones:
        if label.upper().rstrip("012") not in BILABIALS:
            continue
        t = min(len(jaw) - 1, max(0, int(round(0.5 * (start + end) * fps))))
        n += 1
        closed = jaw[t] < JAW_CLOSED and (close[t] > LIPS_SHUT or press[t] > LIPS_SHUT or jaw[t] < 0.05)
        hits += bool(closed)
    return hits / n if n else float("nan")


def envelope_correlation(mouth_open: np.ndarray, wave: np.ndarray, fps: float, sr: int = 16_000) -> float:
    """Pearson r of mouth opening (e.g. jawOpen, (T,)) with the speech envelope (linear RMS) at the same frames."""
    env = speech_envelope(wave, fps, num_frames=len(mouth_open), sr=sr)
    return pearson(mouth_open, env)
