"""Fit the viseme targets of the synthetic face to real ARKit motion of people speaking (docs/SYNTH.md,
"Calibrated visemes").

The mouth model is linear in its targets: a channel k of articulator group g is

    F_k(t) = Σ_s W_g(t, s) · gain_s,k · T_{class(s), k}        (:func:`ksdiff.data.synth.visemes.blend_weights`)

with W the normalised Cohen–Massaro dominance of the aligned phone segments and gain the vowel energy gain on the
jaw keys. Given recordings with real motion (tracked video, a Live Link capture) and their phone alignment, the
class targets T_{c,k} are a non-negative least-squares fit of the real motion (each clip's rest pose removed) on
the design A_k(t, c) = Σ_{s ∈ c} W_g(t, s) · gain_s,k, pooled over every frame of every clip. Dominance, timing
and gains stay as they are; only the targets (the shapes and their amplitudes) are learnt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ksdiff.data.synth.config import SynthConfig
from ksdiff.data.synth.mouth import vowel_gains
from ksdiff.data.synth.visemes import (CHANNEL_MAP, DOMINANCE, GROUP_OF, TARGET_KEYS, Segment, blend_weights,
                                       split_segments)

#: viseme classes in a fixed order (the rows of a fitted table)
CLASSES: tuple[str, ...] = tuple(DOMINANCE)


@dataclass
class ClipDesign:
    """One clip ready to fit: design per target key and the real motion in target keys.

    Attributes:
        id: clip name.
        design: (K, T, C) A_k(t, c) for every target key k and class c.
        motion: (T, K) real motion in target keys (mean of the left and right channels), rest removed.
        observed: (K,) which keys the source measures (a tracker that does not see the tongue: False).
    """

    id: str
    design: np.ndarray
    motion: np.ndarray
    observed: np.ndarray


def key_motion(coeffs: np.ndarray, channels: tuple[str, ...] | list[str]) -> np.ndarray:
    """(T, 52) ARKit motion → (T, K) in :data:`TARGET_KEYS` (left/right pairs averaged)."""
    idx = {c: i for i, c in enumerate(channels)}
    return np.stack([np.mean([coeffs[:, idx[n]] for n in CHANNEL_MAP[k]], axis=0) for k in TARGET_KEYS], axis=1)


def rest_pose(motion: np.ndarray, silent: np.ndarray, pct: float = 10.0) -> np.ndarray:
    """(K,) a clip's resting mouth: the median over its silent frames when it has ≥ 5 of them, else the
    ``pct`` percentile of every frame."""
    if int(silent.sum()) >= 5:
        return np.median(motion[silent], axis=0)
    return np.percentile(motion, pct, axis=0)


def clip_design(clip_id: str, wave: np.ndarray, sr: int, phones: list[tuple[str, float, float]],
                coeffs: np.ndarray, channels: tuple[str, ...] | list[str], fps: float, cfg: SynthConfig,
                observed: set[str] | None = None) -> ClipDesign:
    """The design of one clip: ``phones`` (espeak mnemonics, seconds) aligned to ``wave`` (N,), real motion
    ``coeffs`` (T, 52) at ``fps`` with ARKit ``channels``; ``observed``: the ARKit channels the source measures
    (None = all)."""
    T = coeffs.shape[0]
    times = np.arange(T) / fps
    raw = split_segments(phones, cfg.diphthong_split)
    gains = vowel_gains(raw, wave, sr, cfg)
    segs = [Segment(v, s, e, np.zeros(len(TARGET_KEYS)), DOMINANCE[v]) for v, s, e, _ in raw]
    W = blend_weights(segs, times, cfg.plateau_frac, cfg.dominance_exponent, cfg.theta_scale)  # (G, T, S)
    onehot = np.zeros((len(segs), len(CLASSES)))
    onehot[np.arange(len(segs)), [CLASSES.index(v) for v, *_ in raw]] = 1.0
    jaw_keys = {"jaw", "lowerDown"}
    design = np.zeros((len(TARGET_KEYS), T, len(CLASSES)))
    for k, key in enumerate(TARGET_KEYS):
        g = np.asarray(gains) if key in jaw_keys else np.ones(len(segs))
        design[k] = W[GROUP_OF[key]] @ (onehot * g[:, None])
    motion = key_motion(np.asarray(coeffs, dtype=np.float64), channels)
    sil = design[0][:, CLASSES.index("SIL")] > 0.9
    motion = motion - rest_pose(motion, sil)[None, :]
    seen = np.array([observed is None or all(n in observed for n in CHANNEL_MAP[k]) for k in TARGET_KEYS])
    return ClipDesign(clip_id, design, motion, seen)


@dataclass
class Fit:
    """Fitted targets and how well they explain the motion they were fitted to.

    Attributes:
        targets: class -> {key: weight} (keys the data does not observe are absent).
        r2: key -> fraction of the real motion's variance the fitted model explains.
        frames: frames pooled.
        support: class -> dominance-weighted frames of that class (how much data set its row).
    """

    targets: dict[str, dict[str, float]]
    r2: dict[str, float]
    frames: int
    support: dict[str, float] = field(default_factory=dict)


#: classes whose targets are not fitted: silence is the rest pose the real motion is measured from
FIXED_CLASSES: tuple[str, ...] = ("SIL",)


def _fit_key(clips: list[ClipDesign], key: str, prior: np.ndarray | None = None, lam: float = 0.0
             ) -> np.ndarray:
    """(C,) non-negative targets of one key: least squares on the pooled frames, pulled towards ``prior``
    (rescaled to the data by its own least-squares factor) with weight ``lam`` relative to the mean diagonal of
    AᵀA (0: a free fit). :data:`FIXED_CLASSES` keep the prior's value (0 without one)."""
    from scipy.optimize import nnls

    k = TARGET_KEYS.index(key)
    A = np.concatenate([c.design[k] for c in clips])
    y = np.concatenate([c.motion[:, k] for c in clips])
    fixed = np.array([c in FIXED_CLASSES for c in CLASSES])
    base = np.zeros(len(CLASSES)) if prior is None else np.where(fixed, prior, 0.0)
    y = y - A @ base
    A = A[:, ~fixed]
    out = base.copy()
    if prior is None or lam <= 0:
        out[~fixed] = nnls(A, y)[0]
        return out
    p0 = prior[~fixed]
    p = A @ p0
    s0 = max(float(p @ y) / max(float(p @ p), 1e-12), 0.0)
    w = np.sqrt(lam * np.mean(np.sum(A * A, axis=0)))
    out[~fixed] = nnls(np.concatenate([A, w * np.eye(A.shape[1])]), np.concatenate([y, w * s0 * p0]))[0]
    return out


def fit_targets(clips: list[ClipDesign], max_weight: float = 1.0) -> Fit:
    """Non-negative least squares of every observed key's real motion on its design, pooled over ``clips``;
    targets clipped to ``max_weight``."""
    if not clips:
        raise ValueError("no clips to fit")
    observed = np.all([c.observed for c in clips], axis=0)
    targets: dict[str, dict[str, float]] = {c: {} for c in CLASSES}
    r2: dict[str, float] = {}
    for k, key in enumerate(TARGET_KEYS):
        if not observed[k]:
            continue
        x = np.minimum(_fit_key(clips, key), max_weight)
        A = np.concatenate([c.design[k] for c in clips])
        y = np.concatenate([c.motion[:, k] for c in clips])
        r2[key] = float(1.0 - np.var(y - A @ x) / max(np.var(y), 1e-12))
        for ci, c in enumerate(CLASSES):
            targets[c][key] = float(x[ci])
    jaw = np.concatenate([c.design[0] for c in clips])
    support = {c: float(jaw[:, i].sum()) for i, c in enumerate(CLASSES)}
    return Fit(targets, r2, int(sum(c.motion.shape[0] for c in clips)), support)


def predict(clips: list[ClipDesign], table: dict[str, dict[str, float]], key: str) -> np.ndarray:
    """The viseme model's ``key`` channel over ``clips`` (concatenated frames) with the class targets ``table``."""
    k = TARGET_KEYS.index(key)
    t = np.array([table[c].get(key, 0.0) for c in CLASSES])
    return np.concatenate([c.design[k] @ t for c in clips])


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-9 and b.std() > 1e-9 else float("nan")


#: strengths of the pull towards the hand-set shape tried in the cross-validation (0: free fit; ∞: hand shape)
PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.03, 0.1, 0.3, 1.0, 3.0, float("inf"))
#: a key whose best cross-validated r stays below this is not measured by the data (e.g. MediaPipe's mouthPress)
#: and keeps its hand-set values
MIN_CV_R = 0.1


@dataclass
class KeyCalibration:
    """How one target key of the calibrated table was set.

    Attributes:
        prior_weight: the pull towards the hand-set shape that cross-validated best (0 = free fit, inf = the
            hand-set shape, rescaled).
        cv_r: cross-validated Pearson r with the real motion at every weight tried.
        scale: factor applied to the fitted shape so that its std over the fit clips equals ``reference_std``.
        reference_std: the amplitude aimed at, and where it comes from (``reference``).
    """

    prior_weight: float
    cv_r: dict[str, float]
    scale: float
    reference_std: float
    reference: str


def _scale_to_std(f: np.ndarray, v: np.ndarray, ref: float) -> float:
    """s ≥ 0 with std(f + s·v) = ref (the larger root; 0 if even s = 0 overshoots)."""
    cov = float(np.mean((f - f.mean()) * (v - v.mean())))
    vv, ff = float(v.var()), float(f.var())
    disc = cov * cov - vv * (ff - ref * ref)
    return max(0.0, (-cov + np.sqrt(max(disc, 0.0))) / vv)


def _shape(clips: list[ClipDesign], key: str, prior: np.ndarray, lam: float) -> np.ndarray:
    return prior.copy() if np.isinf(lam) else _fit_key(clips, key, prior, lam)


def calibrate_table(clips: list[ClipDesign], hand: dict[str, dict[str, float]],
                    reference_std: dict[str, tuple[float, str]], folds: int = 3, hand_shape: tuple[str, ...] = ()
                    ) -> tuple[dict[str, dict[str, float]], dict[str, KeyCalibration]]:
    """A calibrated target table. Per observed key that moves in the data: the class targets are a non-negative
    least-squares fit pulled towards the hand-set shape, with the pull (:data:`PRIOR_WEIGHTS`) that correlates
    best with held-out clips in a ``folds``-fold cross-validation over ``clips``; then scaled to the amplitude
    ``reference_std[key] = (std, source)`` (default: the real motion's own std over ``clips``). Keys the data
    does not observe, that never move in it, or that it cannot predict (cross-validated r < :data:`MIN_CV_R`)
    keep the hand-set values. Keys in ``hand_shape`` keep the hand-set shape (pull ∞) and only get the amplitude."""
    observed = np.all([c.observed for c in clips], axis=0)
    table = {c: dict(hand[c]) for c in CLASSES}
    how: dict[str, KeyCalibration] = {}
    parts = [clips[i::folds] for i in range(folds)]
    for k, key in enumerate(TARGET_KEYS):
        real = np.concatenate([c.motion[:, k] for c in clips])
        prior = np.array([hand[c].get(key, 0.0) for c in CLASSES])
        if not observed[k] or real.std() < 1e-3 or not prior.any():
            continue
        cv: dict[str, float] = {}
        for lam in PRIOR_WEIGHTS:
            rs = []
            for i in range(folds):
                t = _shape([c for j, p in enumerate(parts) if j != i for c in p], key, prior, lam)
                y = np.concatenate([c.motion[:, k] for c in parts[i]])
                rs.append(_r(np.concatenate([c.design[k] @ t for c in parts[i]]), y))
            cv[str(lam)] = float(np.nanmean(rs)) if not np.all(np.isnan(rs)) else float("nan")
        best = max(PRIOR_WEIGHTS, key=lambda lam: np.nan_to_num(cv[str(lam)], nan=-1.0))
        best = float("inf") if key in hand_shape else best
        if np.nan_to_num(cv[str(best)], nan=-1.0) < MIN_CV_R:
            continue
        t = _shape(clips, key, prior, best)
        fixed = np.array([c in FIXED_CLASSES for c in CLASSES])
        f = np.concatenate([c.design[k] @ np.where(fixed, t, 0.0) for c in clips])  # not scaled
        v = np.concatenate([c.design[k] @ np.where(fixed, 0.0, t) for c in clips])
        if v.std() < 1e-9:
            continue
        ref, where = reference_std.get(key, (float(real.std()), "tracked std"))
        scale = _scale_to_std(f, v, ref)
        for ci, c in enumerate(CLASSES):
            if c not in FIXED_CLASSES:
                table[c][key] = float(min(1.0, t[ci] * scale))
        how[key] = KeyCalibration(float(best), cv, scale, float(ref), where)
    return table, how
