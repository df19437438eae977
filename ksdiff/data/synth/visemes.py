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


def target_vector(viseme: str) -> np.ndarray:
    """(len(TARGET_KEYS),) float64 target of a class."""
    t = TARGETS[viseme]
    return np.array([t.get(k, 0.0) for k in TARGET_KEYS], dtype=np.float64)


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
    S, K, T = len(segments), len(TARGET_KEYS), len(times)
    if S == 0:
        return np.zeros((T, K))
    c = np.array([0.5 * (s.start + s.end) for s in segments])
    h = np.array([0.5 * (s.end - s.start) for s in segments])
    w = np.maximum(plateau_frac * h, np.array([s.dominance.min_plateau for s in segments]))
    th_b = theta_scale * np.array([s.dominance.theta_before for s in segments])
    th_a = theta_scale * np.array([s.dominance.theta_after for s in segments])
    lip_rate = np.array([s.dominance.lip_rate for s in segments])
    alpha = np.array([s.dominance.alpha for s in segments])  # (S, 3)
    targets = np.stack([s.target for s in segments])  # (S, K)
    d = times[:, None] - c[None, :]  # (T, S)
    tau = np.maximum(np.abs(d) - w[None, :], 0.0) ** exponent
    theta = np.where(d < 0, th_b[None, :], th_a[None, :])
    out = np.zeros((T, K))
    for g in range(len(GROUPS)):
        keys = [k for k, key in enumerate(TARGET_KEYS) if GROUP_OF[key] == g]
        rate = theta * lip_rate[None, :] if GROUPS[g] == "lips" else theta
        D = np.exp(-rate * tau) * alpha[None, :, g]  # (T, S)
        den = D.sum(1, keepdims=True) + 1e-12
        out[:, keys] = (D @ targets[:, keys]) / den
    return out
