"""Articulation: how far the predicted mouth moves compared with the truth, channel by channel.

Mean errors (LVE, RMSE) reward a mouth that stays near the average: a model that moves the mouth at the right
moments with a tenth of the amplitude scores well. This metric says so directly: per mouth channel, the standard
deviation of the prediction over that of the truth (1 = as much movement, < 1 under-articulated) and their Pearson
correlation; then the median over the mouth channels that move in the truth.
"""

from __future__ import annotations

import numpy as np

from ksdiff.audio.envelope import pearson

#: A truth channel moving less than this (std, coefficient units) does not count: its ratio would be noise.
MIN_TRUTH_STD = 0.01

#: Per-channel std of a real iPhone Live Link Face capture of English speech (20 s, ARKit units; quoted in issue 14,
#: left channel where the capture gives one side): the amplitude a real face reaches. The calibrated visemes of the
#: synthetic corpus are scaled to it (``scripts/calibrate_visemes.py``), and :func:`capture_ratio` measures a
#: prediction for speech that has no face truth against it.
IPHONE_CAPTURE_STD: dict[str, float] = {"jawOpen": 0.09, "mouthFunnel": 0.107, "mouthPucker": 0.101,
                                        "mouthLowerDownLeft": 0.123, "mouthUpperUpLeft": 0.110,
                                        "mouthStretchLeft": 0.058, "mouthSmileLeft": 0.12}


def mouth_channels(channels: tuple[str, ...] | list[str]) -> list[str]:
    """The mouth channels of a spec: ARKit jaw*, mouth*, tongueOut, cheekPuff; FLAME expression and jaw."""
    from ksdiff.face.specs import ARKIT_MOUTH

    return [c for c in channels if c in ARKIT_MOUTH or c.startswith(("exp", "jawRot"))]


def articulation(pred: np.ndarray, truth: np.ndarray, channels: tuple[str, ...] | list[str],
                 min_std: float = MIN_TRUTH_STD) -> dict:
    """Per mouth channel std ratio and correlation of ``pred`` against ``truth`` (both (T, C) in ``channels``'
    order; frames may come from several clips stacked).

    Returns:
        ``{"ratio": median std ratio, "r": median r, "channels": {name: {"std_ratio", "r", "truth_std",
        "pred_std"}}}`` over the mouth channels whose truth std is at least ``min_std`` (NaN medians when none).
    """
    P, G = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    per: dict[str, dict[str, float]] = {}
    for name in mouth_channels(channels):
        i = list(channels).index(name)
        sg, sp = float(G[:, i].std()), float(P[:, i].std())
        if sg < min_std:
            continue
        per[name] = {"std_ratio": sp / sg, "r": float(pearson(P[:, i], G[:, i])), "truth_std": sg, "pred_std": sp}
    ratios = [v["std_ratio"] for v in per.values()]
    rs = [v["r"] for v in per.values() if np.isfinite(v["r"])]
    return {"ratio": float(np.median(ratios)) if ratios else float("nan"),
            "r": float(np.median(rs)) if rs else float("nan"), "channels": per}


def capture_ratio(pred: np.ndarray, channels: tuple[str, ...] | list[str],
                  reference: dict[str, float] | None = None) -> float:
    """Median over the channels of ``reference`` (default :data:`IPHONE_CAPTURE_STD`) of the std of ``pred``
    ((T, C) in ``channels``' order, one clip) over the reference's std: articulation on audio alone, against how far
    a real captured face moves (1 = as far; NaN when ``pred`` has none of the channels)."""
    ref = IPHONE_CAPTURE_STD if reference is None else reference
    P = np.asarray(pred, np.float64)
    ratios = [float(P[:, list(channels).index(c)].std()) / s for c, s in ref.items() if c in channels]
    return float(np.median(ratios)) if ratios else float("nan")
