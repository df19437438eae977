"""Valence and arousal from facial motion (``arkit`` spec), per frame: emotion labels for data that has none.

Valence (unpleasant −1 … pleasant +1) is read from the lower face and the brows, arousal (calm −1 … excited +1)
from the eyes, the brows and how much the face moves::

    valence_raw = smile + ½ cheekSquint − frown − ½ browDown              (left/right averaged)
    arousal_raw = eyeWide + ½ browUp − ½ lids + k · clip(ln(energy / e0), −1, 1)
    valence = tanh(V_GAIN · (valence_raw − V_REST)),  arousal = tanh(A_GAIN · (arousal_raw − A_REST))

``browUp`` = browInnerUp + ½ mean(browOuterUp), ``lids`` = mean(eyeBlink) outside blinks (the median over a 2 s
window, so blinks do not count), ``energy`` = RMS speed (units / s) of the mouth, jaw and head-rotation channels
over a 1 s window. Each term is smoothed over ``smooth_s`` (emotion changes over seconds, not frames). The cues
follow FACS (AU12 lip-corner puller and AU6 cheek raiser for positive valence; AU15 lip-corner depressor and AU4
brow lowerer for negative; AU5 upper-lid raiser and AU1+2 brow raisers for arousal) and the link between arousal
and movement energy; the constants (:data:`CONSTANTS`) were fitted on the synthetic corpus with controlled emotion
(``SynthConfig(emotion=True)``, whose cues are :data:`ksdiff.data.synth.corpus.EMOTION_GAINS`) and are checked on
clips whose answer is obvious (tests/test_emotion.py). They measure what the face shows, not what the person feels.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

from ksdiff.errors import KsdiffError

#: Scales and rest points of the estimator (see the module docstring; ``energy_*`` in coefficient units per second).
#: Fitted on 48 clips of ``SynthConfig(seed=123, emotion=True)`` (clip means against the drawn v, a): valence_raw =
#: 0.13 + 0.39 v (r 0.95); eyes + brows − lids = 0.15 + 0.21 a (r 0.92); energy = 7.34 + 2.1 a (r 0.79), so
#: ln(energy / 7.34) = 0.26 a, so it enters at 0.8 to weigh like the eyes (clipped to ±1: a still face is calm, not
#: infinitely so); the gains make v = a = ±1 read about ±0.75 and keep tanh's slope near 1 around 0. Real faces
#: move differently (a tracker's jitter adds energy), so on real data compare arousal within a dataset rather than
#: across datasets.
CONSTANTS = {"v_gain": 2.6, "v_rest": 0.13, "a_gain": 2.5, "a_rest": 0.146, "energy_gain": 0.8,
             "energy_rest": 7.34}


def _mean(coeffs: np.ndarray, idx: dict[str, int], names: list[str]) -> np.ndarray:
    cols = [idx[n] for n in names if n in idx]
    return coeffs[:, cols].mean(axis=1) if cols else np.zeros(len(coeffs))


def motion_energy(coeffs: np.ndarray, channels: tuple[str, ...] | list[str], fps: float,
                  window_s: float = 1.0) -> np.ndarray:
    """(T,) RMS speed (units / s) of the mouth, jaw and head-rotation channels over ``window_s``."""
    from ksdiff.face.specs import ARKIT_HEAD, ARKIT_MOUTH

    idx = [i for i, n in enumerate(channels) if n in ARKIT_MOUTH or n in ARKIT_HEAD[:3]]
    if len(coeffs) < 2 or not idx:
        return np.zeros(len(coeffs))
    v = np.diff(coeffs[:, idx], axis=0, prepend=coeffs[:1, idx]) * fps
    return np.sqrt(uniform_filter1d((v ** 2).sum(axis=1), max(1, int(round(window_s * fps))), mode="nearest"))


def rest_of(motions: list) -> dict[str, float]:
    """A dataset's own rest points: the median over all its frames of the raw valence and arousal cues and of the
    motion energy, for :func:`estimate_emotion`'s ``rest`` (labels relative to how this dataset's faces usually
    look: a tracker's blendshapes have other baselines than an animator's or the synthetic model's).

    Args:
        motions: :class:`ksdiff.face.motion.Motion` objects (``arkit``) of one dataset.
    """
    energies, vs, cues = [], [], []
    for m in motions:
        coeffs = np.asarray(m.coeffs, np.float64)
        energies.append(motion_energy(coeffs, list(m.channels), m.fps))
        v, a = _raw(coeffs, list(m.channels), m.fps, energy_term=False)
        vs.append(v)
        cues.append(a)
    if not energies:
        raise KsdiffError("no motion to take rest points from")
    return {"v_rest": float(np.median(np.concatenate(vs))), "a_rest": float(np.median(np.concatenate(cues))),
            "energy_rest": float(max(np.median(np.concatenate(energies)), 1e-6))}


def _raw(coeffs: np.ndarray, channels: list[str], fps: float, energy_term: bool = True,
         constants: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(valence_raw, arousal_raw) per frame, before smoothing and scaling (with or without the energy term)."""
    c = constants or CONSTANTS
    idx = {n: i for i, n in enumerate(channels)}
    lr = lambda base: [base + "Left", base + "Right"]  # noqa: E731
    valence_raw = (_mean(coeffs, idx, lr("mouthSmile")) + 0.5 * _mean(coeffs, idx, lr("cheekSquint"))
                   - _mean(coeffs, idx, lr("mouthFrown")) - 0.5 * _mean(coeffs, idx, lr("browDown")))
    brow_up = coeffs[:, idx["browInnerUp"]] + 0.5 * _mean(coeffs, idx, lr("browOuterUp"))
    lids = median_filter(_mean(coeffs, idx, lr("eyeBlink")), size=max(1, int(round(2.0 * fps))) | 1,
                         mode="nearest")
    arousal_raw = _mean(coeffs, idx, lr("eyeWide")) + 0.5 * brow_up - 0.5 * lids
    if energy_term:
        energy = motion_energy(coeffs, channels, fps)
        arousal_raw = arousal_raw + c["energy_gain"] * np.clip(
            np.log(np.maximum(energy, 1e-6) / c["energy_rest"]), -1.0, 1.0)
    return valence_raw, arousal_raw


def estimate_emotion(coeffs: np.ndarray, channels: tuple[str, ...] | list[str], fps: float,
                     smooth_s: float = 1.0, rest: dict[str, float] | None = None) -> np.ndarray:
    """Valence and arousal of an ``arkit`` motion.

    Args:
        coeffs: (T, C) raw coefficients; channels: their names (ARKit blendshapes and head rotation).
        fps: frame rate; smooth_s: moving-average window of the result (seconds).
        rest: rest points replacing :data:`CONSTANTS`' (``v_rest``, ``a_rest``, ``energy_rest``; e.g. a dataset's
            own, :func:`rest_of`); None: those fitted on the synthetic corpus.

    Returns:
        (T, 2) float32 in [-1, 1]: valence, arousal per frame.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    idx = {n: i for i, n in enumerate(channels)}
    need = ("mouthSmileLeft", "mouthFrownLeft", "browDownLeft", "eyeWideLeft", "browInnerUp")
    missing = [n for n in need if n not in idx]
    if missing:
        raise KsdiffError(f"emotion estimation needs ARKit blendshapes; missing {', '.join(missing)}")
    if len(coeffs) == 0:
        return np.zeros((0, 2), np.float32)
    c = {**CONSTANTS, **(rest or {})}
    valence_raw, arousal_raw = _raw(coeffs, list(channels), fps, constants=c)
    w = max(1, int(round(smooth_s * fps)))
    valence = np.tanh(c["v_gain"] * (uniform_filter1d(valence_raw, w, mode="nearest") - c["v_rest"]))
    arousal = np.tanh(c["a_gain"] * (uniform_filter1d(arousal_raw, w, mode="nearest") - c["a_rest"]))
    return np.stack([valence, arousal], axis=1).astype(np.float32)


class EmotionCurve:
    """Valence and arousal over time, set by the user: values at given seconds, linearly interpolated between them
    and held before the first and after the last.

    Args:
        times: (K,) seconds, strictly increasing.
        values: (K, 2) valence, arousal in [-1, 1].
    """

    def __init__(self, times: np.ndarray, values: np.ndarray, source: str = "emotion curve") -> None:
        t = np.asarray(times, dtype=np.float64).reshape(-1)
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape != (len(t), 2) or len(t) == 0:
            raise KsdiffError(f"needs rows of (time_s, valence, arousal), got {v.shape} values for {len(t)} times",
                              source)
        if not (np.isfinite(t).all() and np.isfinite(v).all()):
            raise KsdiffError("times and values must be finite numbers", source)
        if len(t) > 1 and not (np.diff(t) > 0).all():
            raise KsdiffError("times must increase from row to row", source)
        if np.abs(v).max() > 1.0 + 1e-6:
            raise KsdiffError(f"valence and arousal must lie in [-1, 1], got up to {np.abs(v).max():.3g}", source)
        self.times, self.values, self.source = t, v, source

    @classmethod
    def read(cls, path) -> "EmotionCurve":
        """Read a CSV (or whitespace-separated) file of ``time_s, valence, arousal`` rows; a header row and
        ``#`` comments are skipped."""
        import re
        from pathlib import Path

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise KsdiffError(f"cannot read the emotion curve ({e})", p) from None
        rows: list[list[float]] = []
        for n, line in enumerate(text.splitlines(), 1):
            cells = [c for c in re.split(r"[,;\s]+", line.strip()) if c]
            if not cells or cells[0].startswith("#"):
                continue
            try:
                if len(cells) < 3:
                    raise ValueError
                rows.append([float(c) for c in cells[:3]])
            except ValueError:
                if rows or any(ch.isdigit() for ch in line):  # only a first line of words is a header
                    raise KsdiffError(f"line {n}: expected three numbers 'time_s, valence, arousal'", p) from None
        if not rows:
            raise KsdiffError("no rows of 'time_s, valence, arousal'", p)
        a = np.array(rows, dtype=np.float64)
        return cls(a[:, 0], a[:, 1:3], str(p))

    def at(self, times: np.ndarray) -> np.ndarray:
        """(T, 2) float32 valence/arousal at ``times`` (T,) seconds."""
        t = np.asarray(times, dtype=np.float64)
        return np.stack([np.interp(t, self.times, self.values[:, 0]),
                         np.interp(t, self.times, self.values[:, 1])], axis=1).astype(np.float32)
