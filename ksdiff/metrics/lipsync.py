"""Lip sync measured on audio alone (no ground-truth motion needed)."""

from __future__ import annotations

import numpy as np

from ksdiff.audio.envelope import pearson, speech_envelope

BILABIALS = ("P", "B", "M")  # ARPAbet
LIPS_GAP = 0.05  # jawOpen − mouthClose below this: the lips touch (ARKit's mouthClose closes them against the jaw)
JAW_CLOSED = 0.1  # or jawOpen below this ...
LIPS_SHUT = 0.15  # ... with mouthPress above this = mouth closed


def bilabial_closure(jaw_open: np.ndarray, mouth_close: np.ndarray, mouth_press: np.ndarray,
                     phones: list[tuple[str, float, float]], fps: float) -> float:
    """Fraction of bilabial phones (/p b m/) whose centre frame shows a closed mouth.

    Closed means jawOpen − mouthClose < 0.05 (the jaw's opening less the lips' closure against it: ARKit's
    mouthClose closes the lips on an open jaw, so a shut jaw alone or a closure on an open jaw both count), or
    jawOpen < 0.1 with mouthPress > 0.15. On the MediaPipe-tracked `video_extra` clips it finds 79 % of real /p b m/
    closed against 29 % of vowel centres (docs/METRICS.md). Phones are (ARPAbet label, start s, end s); stress
    digits and case are ignored; other labels are skipped. NaN when the audio has no bilabial.
    """
    jaw, close, press = (np.asarray(a, np.float64) for a in (jaw_open, mouth_close, mouth_press))
    hits = n = 0
    for label, start, end in phones:
        if label.upper().rstrip("012") not in BILABIALS:
            continue
        t = min(len(jaw) - 1, max(0, int(round(0.5 * (start + end) * fps))))
        n += 1
        closed = jaw[t] - close[t] < LIPS_GAP or (jaw[t] < JAW_CLOSED and press[t] > LIPS_SHUT)
        hits += bool(closed)
    return hits / n if n else float("nan")


def envelope_correlation(mouth_open: np.ndarray, wave: np.ndarray, fps: float, sr: int = 16_000) -> float:
    """Pearson r of mouth opening (e.g. jawOpen, (T,)) with the speech envelope (linear RMS) at the same frames."""
    env = speech_envelope(wave, fps, num_frames=len(mouth_open), sr=sr)
    return pearson(mouth_open, env)


def inner_lip_gap(motion, face) -> np.ndarray:
    """(T,) mm the upper inner lip's midpoint stands above the lower's (68-landmark points 62 and 66) on ``face``
    (a face model with ``landmarks68``, e.g. the ICT head), head pose left out: > 0 open, ≈ 0 closed, < 0 lips
    pushed through each other. ``motion``: a :class:`ksdiff.face.motion.Motion` in the face's spec."""
    from ksdiff.face.motion import Motion

    head = np.array([c.startswith(("head", "global", "cam")) for c in motion.channels])
    still = Motion(np.where(head, 0.0, motion.coeffs).astype(np.float32), motion.channels, motion.fps, motion.spec)
    v = face.vertices(still, np.array([face.landmarks68[62], face.landmarks68[66]]))
    return (v[:, 0, 1] - v[:, 1, 1]).astype(np.float64)  # y is up (the head frame, ksdiff.face.specs)


def lip_envelope_correlation(motion, wave: np.ndarray, face, sr: int = 16_000) -> float:
    """Pearson r of the inner-lip opening (:func:`inner_lip_gap` on ``face``, clipped at 0: lips that meet or cross
    are shut) with the speech envelope: the opening every mouth channel makes, where :func:`envelope_correlation`
    on jawOpen reads the jaw alone. ``motion``: a Motion in ``face``'s spec; ``wave``: (N,) at ``sr``."""
    return envelope_correlation(np.maximum(inner_lip_gap(motion, face), 0.0), wave, motion.fps, sr=sr)
