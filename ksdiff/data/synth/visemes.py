"""Phones → visemes → ARKit mouth weights, with Cohen–Massaro coarticulation.

Every espeak-ng phoneme mnemonic is sorted into a viseme class (:func:`classify`); diphthongs become two
sub-segments (``aI`` → AA then IY). Each class has

* a **target**: ARKit weights of the mouth (:data:`TARGETS`, symmetric names; ``stretch`` drives both
  ``mouthStretchLeft/Right`` and so on, see :data:`CHANNEL_MAP`), and
* a **dominance** per articulator group — jaw, lips, tongue — (:data:`DOMINANCE`): a magnitude α, an
  anticipatory rate θ⁻ and a carry-over rate θ⁺ (1/s) and a minimum plateau half-width.

Cohen & Massaro (1993): segment s with centre c_s and half-duration h_s has the negative-exponential dominance

    D_s(t) = α_s · exp(−θ_s · max(0, |t − c_s| − w_s)^c)      θ_s = θ⁻ before c_s, θ⁺ after,

with plateau half-width w_s = max(plateau_frac · h_s, min_plateau) and exponent c (1 = negative exponential).
Each channel k of a group is the dominance-weighted average of the segments' targets,
F_k(t) = Σ_s D_s(t) T_{s,k} / Σ_s D_s(t). Strong classes (bilabials, labiodentals) win over their neighbours, so
the lips close at /p b m/ whatever surrounds them; weak ones (/t d k s/ on the lips) let the rounding of a
neighbouring vowel spread over them (anticipatory rounding in "stew").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: symmetric target names -> ARKit channels they drive
CHANNEL_MAP: dict[str, tuple[str, ...]] = {
    "jaw": ("jawOpen",),
    "jawFwd": ("jawForward",),
    "close": ("mouthClose",),
    "funnel": ("mouthFunnel",),
    "pucker": ("mouthPucker",),
    "stretch": ("mouthStretchLeft", "mouthStretchRight"),
    "press": ("mouthPressLeft", "mouthPressRight"),
    "rollLower": ("mouthRollLower",),
    "rollUpper": ("mouthRollUpper",),
    "lowerDown": ("mouthLowerDownLeft", "mouthLowerDownRight"),
    "upperUp": ("mouthUpperUpLeft", "mouthUpperUpRight"),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "shrugLower": ("mouthShrugLower",),
    "shrugUpper": ("mouthShrugUpper",),
    "tongue": ("tongueOut",),
}
TARGET_KEYS: tuple[str, ...] = tuple(CHANNEL_MAP)

#: articulator group of each target key (dominance is given per group)
GROUP_OF: dict[str, int] = {k: (0 if k in ("jaw", "jawFwd") else 2 if k == "tongue" else 1) for k in TARGET_KEYS}
GROUPS = ("jaw", "lips", "tongue")

#: viseme targets (ARKit weights before the speaker's gains); keys missing are 0
TARGETS: dict[str, dict[str, float]] = {
    # silence: jaw shut, lips lightly together
    "SIL": {"jaw": 0.01, "press": 0.03},
    # consonants
    "PBM": {"jaw": 0.04, "close": 0.30, "press": 0.55, "rollLower": 0.15, "rollUpper": 0.10, "shrugLower": 0.10},
    "FV": {"jaw": 0.08, "close": 0.05, "rollLower": 0.55, "upperUp": 0.30, "funnel": 0.05},
    "TH": {"jaw": 0.10, "tongue": 0.30, "lowerDown": 0.12, "upperUp": 0.05},
    "TD": {"jaw": 0.07, "lowerDown": 0.12, "upperUp": 0.08, "stretch": 0.08},
    "L": {"jaw": 0.12, "lowerDown": 0.15, "tongue": 0.06},
    "SZ": {"jaw": 0.03, "stretch": 0.25, "smile": 0.12, "lowerDown": 0.12, "upperUp": 0.12},
    "SH": {"jaw": 0.06, "funnel": 0.50, "pucker": 0.25, "upperUp": 0.20, "lowerDown": 0.20, "jawFwd": 0.08},
    "KG": {"jaw": 0.12, "lowerDown": 0.10},
    "R": {"jaw": 0.08, "funnel": 0.28, "pucker": 0.35},
    "W": {"jaw": 0.06, "pucker": 0.80, "funnel": 0.30, "close": 0.05},
    "Y": {"jaw": 0.06, "stretch": 0.22, "smile": 0.15, "upperUp": 0.05},
    # vowels
    "AA": {"jaw": 0.70, "lowerDown": 0.30, "upperUp": 0.10, "stretch": 0.05},
    "AE": {"jaw": 0.58, "lowerDown": 0.35, "upperUp": 0.15, "stretch": 0.25, "smile": 0.05},
    "AH": {"jaw": 0.40, "lowerDown": 0.15},
    "EH": {"jaw": 0.46, "lowerDown": 0.25, "stretch": 0.20, "smile": 0.05},
    "IH": {"jaw": 0.28, "stretch": 0.25, "smile": 0.12, "upperUp": 0.05},
    "IY": {"jaw": 0.20, "stretch": 0.40, "smile": 0.28, "upperUp": 0.10},
    "ER": {"jaw": 0.28, "funnel": 0.38, "pucker": 0.22, "upperUp": 0.05},
    "AO": {"jaw": 0.55, "funnel": 0.45, "pucker": 0.18, "lowerDown": 0.10},
    "OW": {"jaw": 0.42, "funnel": 0.50, "pucker": 0.32},
    "UH": {"jaw": 0.26, "funnel": 0.30, "pucker": 0.40},
    "UW": {"jaw": 0.18, "funnel": 0.35, "pucker": 0.70, "close": 0.05},
}
#: viseme targets fitted to tracked real speakers (docs/SYNTH.md, "Calibrated visemes"): 36 A/V-synced clips of
#: ../shared/data/video + video_extra (train splits, 8849 frames, 33 people), pocketsphinx phones, non-negative least
#: squares through the coarticulation model pulled towards the hand-set shape by a cross-validated weight, then each
#: key scaled to the std of a real iPhone Live Link capture (jawOpen, mouthFunnel, mouthPucker, mouthLowerDown,
#: mouthUpperUp, mouthStretch, mouthSmile; issue 14) or of the tracked clips (the other keys). jawOpen keeps the
#: hand-set shape, rescaled (MediaPipe's jawOpen is too noisy to shape it). Keys the data cannot measure
#: (tongueOut, jawForward, mouthPress, mouthShrugUpper) keep the hand-set values. Written by
#: `python scripts/calibrate_visemes.py OUT VIDEO_DS VIDEO_EXTRA_DS --exclude mimictalk_German_20s`
#: (OUT/calibrated_targets.py; the datasets `ksdiff track`ed and `ksdiff dataset sync --apply`ed).
CALIBRATED_TARGETS: dict[str, dict[str, float]] = {
    "SIL": {"jaw": 0.01, "press": 0.03},
    "PBM": {"jaw": 0.027, "close": 0.214, "funnel": 0.016, "pucker": 0.198, "press": 0.55, "rollLower": 0.179,
        "rollUpper": 0.195, "shrugLower": 0.218},
    "FV": {"jaw": 0.055, "close": 0.07, "pucker": 0.029, "rollLower": 0.332, "rollUpper": 0.157, "upperUp": 0.009,
        "shrugLower": 0.373},
    "TH": {"jaw": 0.068, "funnel": 0.014, "pucker": 0.042, "rollLower": 0.036, "rollUpper": 0.15, "lowerDown": 0.003,
        "upperUp": 0.071, "shrugLower": 0.017, "tongue": 0.3},
    "TD": {"jaw": 0.048, "close": 0.025, "funnel": 0.038, "pucker": 0.024, "stretch": 0.042, "rollLower": 0.06,
        "rollUpper": 0.107, "lowerDown": 0.137, "upperUp": 0.259, "smile": 0.21},
    "L": {"jaw": 0.082, "close": 0.026, "funnel": 0.025, "pucker": 0.05, "rollLower": 0.042, "rollUpper": 0.116,
        "lowerDown": 0.14, "upperUp": 0.015, "shrugLower": 0.015, "tongue": 0.06},
    "SZ": {"jaw": 0.02, "close": 0.007, "stretch": 0.133, "rollLower": 0.026, "rollUpper": 0.045, "lowerDown": 0.03,
        "upperUp": 0.211, "smile": 0.155},
    "SH": {"jaw": 0.041, "jawFwd": 0.08, "funnel": 0.373, "pucker": 0.09, "rollLower": 0.022, "rollUpper": 0.194,
        "lowerDown": 0.047, "upperUp": 0.155},
    "KG": {"jaw": 0.082, "close": 0.069, "funnel": 0.043, "pucker": 0.055, "rollUpper": 0.045, "lowerDown": 0.305,
        "upperUp": 0.196, "smile": 0.158},
    "R": {"jaw": 0.055, "close": 0.077, "funnel": 0.32, "pucker": 0.295, "rollLower": 0.057, "rollUpper": 0.209},
    "W": {"jaw": 0.041, "close": 0.267, "funnel": 0.28, "pucker": 0.503, "rollLower": 0.122, "rollUpper": 0.439},
    "Y": {"jaw": 0.041, "close": 0.03, "funnel": 0.033, "pucker": 0.06, "stretch": 0.117, "rollUpper": 0.082,
        "smile": 0.04},
    "AA": {"jaw": 0.477, "close": 0.025, "funnel": 0.171, "pucker": 0.038, "stretch": 0.027, "rollUpper": 0.07,
        "lowerDown": 0.363, "upperUp": 0.089, "smile": 0.144},
    "AE": {"jaw": 0.395, "close": 0.005, "funnel": 0.053, "stretch": 0.133, "rollUpper": 0.026, "lowerDown": 0.497,
        "upperUp": 0.35, "smile": 0.514},
    "AH": {"jaw": 0.273, "close": 0.029, "funnel": 0.086, "pucker": 0.096, "rollLower": 0.1, "rollUpper": 0.175,
        "lowerDown": 0.082, "upperUp": 0.099, "shrugLower": 0.013},
    "AO": {"jaw": 0.375, "close": 0.221, "funnel": 0.426, "pucker": 0.256, "rollLower": 0.041, "rollUpper": 0.313,
        "lowerDown": 0.004},
    "EH": {"jaw": 0.314, "close": 0.006, "funnel": 0.078, "stretch": 0.106, "rollUpper": 0.033, "lowerDown": 0.466,
        "upperUp": 0.327, "smile": 0.336},
    "ER": {"jaw": 0.191, "close": 0.023, "funnel": 0.285, "pucker": 0.113, "rollLower": 0.017, "rollUpper": 0.067,
        "upperUp": 0.022, "shrugLower": 0.003},
    "IH": {"jaw": 0.191, "close": 0.001, "pucker": 0.013, "stretch": 0.133, "rollLower": 0.062, "rollUpper": 0.105,
        "lowerDown": 0.104, "upperUp": 0.215, "smile": 0.171, "shrugLower": 0.001},
    "IY": {"jaw": 0.136, "close": 0.007, "funnel": 0.047, "stretch": 0.212, "rollLower": 0.021, "rollUpper": 0.057,
        "lowerDown": 0.475, "upperUp": 0.313, "smile": 0.272},
    "OW": {"jaw": 0.286, "close": 0.092, "funnel": 0.421, "pucker": 0.232, "rollLower": 0.022, "rollUpper": 0.162},
    "UH": {"jaw": 0.177, "close": 0.071, "funnel": 0.28, "pucker": 0.208, "rollLower": 0.026, "rollUpper": 0.479,
        "shrugLower": 0.057},
    "UW": {"jaw": 0.123, "close": 0.127, "funnel": 0.312, "pucker": 0.304, "rollLower": 0.013, "rollUpper": 0.22},
}
#: mouthClose of the ``calibrated`` table as a share of the segment's jawOpen, after the speaker's and the syllable's
#: gains: ARKit's mouthClose closes the lips *against* the jaw's opening, so it is a share of the jaw, never a weight
#: of its own (the table's own per-viseme values, fitted key by key, closed open vowels: /AO/ 0.221 on a jaw of
#: 0.375). The median mouthClose / jawOpen of the MediaPipe-tracked ``video_extra`` faces (frames with jawOpen >
#: 0.1) at the centres of pocketsphinx-aligned phones: /p b m/ 0.85 (69 phones), vowels 0.137 (797); every class
#: but PBM takes the vowels' share. docs/SYNTH.md, "mouthClose and the jaw".
CLOSE_SHARE: dict[str, float] = {"PBM": 0.85}
CLOSE_SHARE_OTHER = 0.137
#: the target tables whose mouthClose is a share of the jaw (:data:`CLOSE_SHARE`); the others keep their own weights
CLOSE_SHARE_TABLES = frozenset({"calibrated"})
#: the target tables a corpus can use (SynthConfig.visemes)
TARGET_TABLES: dict[str, dict[str, dict[str, float]]] = {"hand": TARGETS, "calibrated": CALIBRATED_TARGETS}
VOWELS = frozenset({"AA", "AE", "AH", "EH", "IH", "IY", "ER", "AO", "OW", "UH", "UW"})


@dataclass(frozen=True)
class Dominance:
    """Cohen–Massaro dominance of one viseme class.

    Attributes:
        alpha: magnitude per articulator group (jaw, lips, tongue).
        theta_before: anticipatory rate (1/s): how fast dominance falls off before the segment.
        theta_after: carry-over rate (1/s): how fast it falls off after the segment.
        min_plateau: the dominance stays at α within at least this many seconds of the segment centre.
        lip_rate: multiplies θ for the lips group only (< 1: the lip shape, e.g. a vowel's rounding, reaches
            further into the neighbours than its jaw opening does).
    """

    alpha: tuple[float, float, float]
    theta_before: float
    theta_after: float
    min_plateau: float = 0.0
    lip_rate: float = 1.0


_VOWEL_DOM = Dominance((1.0, 1.0, 1.0), 70.0, 60.0, lip_rate=0.5)
#: dominance per viseme class
DOMINANCE: dict[str, Dominance] = {
    "SIL": Dominance((1.0, 1.0, 0.5), 40.0, 40.0),
    "PBM": Dominance((6.0, 10.0, 1.0), 120.0, 120.0, 0.020),
    "FV": Dominance((2.5, 7.0, 1.0), 120.0, 120.0, 0.020),
    "TH": Dominance((1.5, 0.5, 5.0), 80.0, 80.0, 0.015),
    "TD": Dominance((1.5, 0.2, 1.0), 80.0, 80.0),
    "L": Dominance((1.0, 0.2, 1.0), 80.0, 80.0),
    "SZ": Dominance((2.0, 0.2, 1.0), 80.0, 80.0),
    "SH": Dominance((1.5, 2.0, 1.0), 80.0, 80.0, 0.015),
    "KG": Dominance((1.0, 0.15, 0.5), 80.0, 80.0),
    "R": Dominance((1.0, 1.2, 0.5), 70.0, 70.0),
    "W": Dominance((1.2, 4.0, 0.5), 80.0, 80.0, 0.015),
    "Y": Dominance((1.0, 0.8, 0.5), 80.0, 80.0),
    **{v: _VOWEL_DOM for v in sorted(VOWELS)},
}

# espeak-ng English mnemonics (stress marks removed) -> (viseme class(es), ARPAbet)
_CONSONANTS: dict[str, tuple[str, str]] = {
    "p": ("PBM", "P"), "b": ("PBM", "B"), "m": ("PBM", "M"),
    "f": ("FV", "F"), "v": ("FV", "V"),
    "T": ("TH", "TH"), "D": ("TH", "DH"),
    "t": ("TD", "T"), "d": ("TD", "D"), "n": ("TD", "N"), "t#": ("TD", "T"), "t2": ("TD", "T"),
    "d#": ("TD", "D"), "n-": ("TD", "N"),
    "l": ("L", "L"), "l/": ("L", "L"), "@L": ("L", "L"),
    "s": ("SZ", "S"), "z": ("SZ", "Z"),
    "S": ("SH", "SH"), "Z": ("SH", "ZH"), "tS": ("SH", "CH"), "dZ": ("SH", "JH"),
    "k": ("KG", "K"), "g": ("KG", "G"), "N": ("KG", "NG"), "h": ("KG", "HH"), "x": ("KG", "HH"), "?": ("KG", "T"),
    "r": ("R", "R"), "r-": ("R", "R"), "*": ("TD", "D"),
    "w": ("W", "W"), "W": ("W", "W"),
    "j": ("Y", "Y"), ";": ("Y", "Y"),
}
_VOWELS_MAP: dict[str, tuple[tuple[str, ...], str]] = {
    "A:": (("AA",), "AA"), "aa": (("AA",), "AA"), "A": (("AA",), "AA"), "0": (("AO",), "AA"),
    "a": (("AE",), "AE"), "&": (("AE",), "AE"),
    "V": (("AH",), "AH"), "@": (("AH",), "AH"), "@2": (("AH",), "AH"), "@5": (("AH",), "AH"), "a#": (("AH",), "AH"),
    "@-": (("AH",), "AH"), "@1": (("AH",), "AH"),
    "E": (("EH",), "EH"), "e": (("EH",), "EH"),
    "I": (("IH",), "IH"), "I2": (("IH",), "IH"), "I#": (("IH",), "IH"), "i": (("IY",), "IY"), "i:": (("IY",), "IY"),
    "3": (("ER",), "ER"), "3:": (("ER",), "ER"), "@r": (("ER",), "ER"),
    "O:": (("AO",), "AO"), "O": (("AO",), "AO"), "O2": (("AO",), "AO"),
    "U": (("UH",), "UH"), "u:": (("UW",), "UW"), "u": (("UW",), "UW"),
    # diphthongs and vowel + r: two sub-segments
    "aI": (("AA", "IY"), "AY"), "aI@": (("AA", "IY"), "AY"), "aI3": (("AA", "ER"), "AY"),
    "aU": (("AA", "UW"), "AW"), "eI": (("EH", "IY"), "EY"), "oU": (("OW", "UW"), "OW"), "OI": (("AO", "IY"), "OY"),
    "i@": (("IY", "AH"), "IH"), "i@3": (("IY", "ER"), "IH"), "e@": (("EH", "AH"), "EH"), "U@": (("UH", "AH"), "UH"),
    "A@": (("AA", "ER"), "AA"), "O@": (("AO", "ER"), "AO"), "o@": (("OW", "ER"), "AO"),
}


def strip_stress(mnemonic: str) -> tuple[str, int]:
    """(mnemonic without stress marks, stress) where stress is 1 for ``'`` (primary), 2 for ``,``, else 0."""
    stress = 1 if "'" in mnemonic else 2 if "," in mnemonic else 0
    return mnemonic.replace("'", "").replace(",", "").replace("%", "").replace("=", ""), stress


def classify(mnemonic: str) -> tuple[tuple[str, ...], str]:
    """Viseme class(es) and ARPAbet label of an espeak-ng phoneme mnemonic.

    Pauses (``_``, ``_:``, ``_!`` ...) are ``SIL`` / ``SIL``. Unknown mnemonics fall back to AH (if they look like
    a vowel) or KG (a neutral consonant).
    """
    base, _ = strip_stress(mnemonic)
    if not base or base.startswith("_"):
        return ("SIL",), "SIL"
    if base in _CONSONANTS:
        cls, arpa = _CONSONANTS[base]
        return (cls,), arpa
    if base in _VOWELS_MAP:
        return _VOWELS_MAP[base]
    if base[0] in "aeiouAEIOUV@30&":
        return ("AH",), "AH"
    return ("KG",), "K"


@dataclass
class Segment:
    """One viseme segment: class, start/end (s), target (len(TARGET_KEYS),) and dominance."""

    viseme: str
    start: float
    end: float
    target: np.ndarray
    dominance: Dominance


def split_segments(phones: list[tuple[str, float, float]], diphthong_split: float = 0.55
                   ) -> list[tuple[str, float, float, int]]:
    """Phones → viseme segments (viseme, start, end, index of the phone), diphthongs split at ``diphthong_split``.

    Adjacent pauses are merged into one SIL segment.
    """
    out: list[tuple[str, float, float, int]] = []
    for i, (p, s, e) in enumerate(phones):
        classes, _ = classify(p)
        if len(classes) == 1:
            if classes[0] == "SIL" and out and out[-1][0] == "SIL":
                out[-1] = ("SIL", out[-1][1], e, out[-1][3])
            else:
                out.append((classes[0], s, e, i))
        else:
            m = s + diphthong_split * (e - s)
            out.append((classes[0], s, m, i))
            out.append((classes[1], m, e, i))
    return out


def target_vector(viseme: str, table: str = "hand") -> np.ndarray:
    """(len(TARGET_KEYS),) float64 target of a class, from the ``table`` of :data:`TARGET_TABLES`."""
    t = TARGET_TABLES[table][viseme]
    return np.array([t.get(k, 0.0) for k in TARGET_KEYS], dtype=np.float64)


def _dominance(segments: list[Segment], times: np.ndarray, plateau_frac: float, exponent: float,
               theta_scale: float) -> np.ndarray:
    """(len(GROUPS), T, S) Cohen–Massaro dominance D_s(t) of each segment per articulator group."""
    S, T = len(segments), len(times)
    c = np.array([0.5 * (s.start + s.end) for s in segments])
    h = np.array([0.5 * (s.end - s.start) for s in segments])
    w = np.maximum(plateau_frac * h, np.array([s.dominance.min_plateau for s in segments]))
    th_b = theta_scale * np.array([s.dominance.theta_before for s in segments])
    th_a = theta_scale * np.array([s.dominance.theta_after for s in segments])
    lip_rate = np.array([s.dominance.lip_rate for s in segments])
    alpha = np.array([s.dominance.alpha for s in segments])  # (S, 3)
    d = times[:, None] - c[None, :]  # (T, S)
    tau = np.maximum(np.abs(d) - w[None, :], 0.0) ** exponent
    theta = np.where(d < 0, th_b[None, :], th_a[None, :])
    out = np.zeros((len(GROUPS), T, S))
    for g in range(len(GROUPS)):
        rate = theta * lip_rate[None, :] if GROUPS[g] == "lips" else theta
        out[g] = np.exp(-rate * tau) * alpha[None, :, g]  # (T, S)
    return out


def blend_weights(segments: list[Segment], times: np.ndarray, plateau_frac: float = 0.5,
                  exponent: float = 1.0, theta_scale: float = 1.0) -> np.ndarray:
    """Normalised dominance of each segment at ``times``, per articulator group (arguments as :func:`coarticulate`).

    Returns:
        (len(GROUPS), T, S) float64: W[g, t, s] = D_s(t) / Σ_s' D_s'(t) for group g; a channel of group g is
        ``W[g] @ targets`` — linear in the targets, which is what :mod:`ksdiff.data.synth.calibrate` fits.
    """
    if not segments:
        return np.zeros((len(GROUPS), len(times), 0))
    D = _dominance(segments, times, plateau_frac, exponent, theta_scale)
    return D / (D.sum(2, keepdims=True) + 1e-12)


def coarticulate(segments: list[Segment], times: np.ndarray, plateau_frac: float = 0.5,
                 exponent: float = 1.0, theta_scale: float = 1.0) -> np.ndarray:
    """Cohen–Massaro blend of the segments' targets at ``times``.

    Args:
        segments: S segments with targets (K,) over :data:`TARGET_KEYS`.
        times: (T,) seconds.
        plateau_frac: plateau half-width as a fraction of the segment's half-duration.
        exponent: c in exp(−θ·τ^c) (1 = negative exponential).
        theta_scale: multiplies every class's θ (> 1: crisper articulation, < 1: more coarticulation).

    Returns:
        (T, K) float64 blended targets.
    """
    K, T = len(TARGET_KEYS), len(times)
    if not segments:
        return np.zeros((T, K))
    D = _dominance(segments, times, plateau_frac, exponent, theta_scale)
    targets = np.stack([s.target for s in segments])  # (S, K)
    out = np.zeros((T, K))
    for g in range(len(GROUPS)):
        keys = [k for k, key in enumerate(TARGET_KEYS) if GROUP_OF[key] == g]
        out[:, keys] = (D[g] @ targets[:, keys]) / (D[g].sum(1, keepdims=True) + 1e-12)
    return out
