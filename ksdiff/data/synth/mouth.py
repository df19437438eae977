"""The mouth of the synthetic face: visemes blended by dominance, jaw scaled by syllable energy, speaker style."""

from __future__ import annotations

import numpy as np

from ksdiff.data.synth.config import SynthConfig, VoiceStyle
from ksdiff.data.synth.visemes import (CHANNEL_MAP, CLOSE_SHARE, CLOSE_SHARE_OTHER, CLOSE_SHARE_TABLES, DOMINANCE,
                                       TARGET_KEYS, VOWELS, Segment, coarticulate, split_segments, target_vector)

_K = {k: i for i, k in enumerate(TARGET_KEYS)}
_JAW = [_K["jaw"], _K["lowerDown"]]
_ROUND = [_K["funnel"], _K["pucker"]]
_SPREAD = [_K["stretch"], _K["smile"]]


def segment_rms(wave: np.ndarray, sr: int, start: float, end: float) -> float:
    """RMS of ``wave`` between ``start`` and ``end`` seconds (0 for an empty span)."""
    a, b = int(round(start * sr)), int(round(end * sr))
    x = np.asarray(wave[max(a, 0):max(b, 0)], dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def vowel_gains(raw: list[tuple[str, float, float, int]], wave: np.ndarray, sr: int, cfg: SynthConfig
                ) -> list[float]:
    """Jaw gain of each raw segment (:func:`split_segments`): for vowels (segment RMS / reference)^energy_gamma,
    the reference being the ``energy_ref_pct`` percentile of the clip's vowel-segment RMS values, clipped to
    [energy_gain_min, energy_gain_max]; 1 for every other class."""
    rms = [segment_rms(wave, sr, s, e) for v, s, e, _ in raw]
    vowel_rms = [r for (v, _, _, _), r in zip(raw, rms) if v in VOWELS and r > 0]
    ref = float(np.percentile(vowel_rms, cfg.energy_ref_pct)) if vowel_rms else 1.0
    def gain(r: float) -> float:
        return float(np.clip((r / ref) ** cfg.energy_gamma if ref > 0 else 1.0, cfg.energy_gain_min,
                             cfg.energy_gain_max))

    return [gain(r) if v in VOWELS else 1.0 for (v, _, _, _), r in zip(raw, rms)]


def build_segments(rng: np.random.Generator, phones: list[tuple[str, float, float]], wave: np.ndarray, sr: int,
                   voice: VoiceStyle, cfg: SynthConfig) -> list[Segment]:
    """Viseme segments with their final targets: class target (the ``cfg.visemes`` table) × speaker gains × vowel
    energy gain (:func:`vowel_gains`, on jawOpen and mouthLowerDown) × jitter; with a table of
    :data:`CLOSE_SHARE_TABLES` mouthClose is then the class's share (:data:`CLOSE_SHARE`) of the segment's jawOpen."""
    raw = split_segments(phones, cfg.diphthong_split)
    out: list[Segment] = []
    for (v, s, e, _), gain in zip(raw, vowel_gains(raw, wave, sr, cfg)):
        tgt = target_vector(v, cfg.visemes)
        tgt[_JAW] *= voice.jaw_gain
        tgt[_ROUND] *= voice.round_gain
        tgt[_SPREAD] *= voice.spread_gain
        tgt[_JAW] *= gain
        if cfg.target_jitter > 0:
            tgt *= np.exp(cfg.target_jitter * rng.standard_normal(len(tgt)))
        if cfg.visemes in CLOSE_SHARE_TABLES:
            tgt[_K["close"]] = CLOSE_SHARE.get(v, CLOSE_SHARE_OTHER) * tgt[_K["jaw"]]
        out.append(Segment(v, s, e, np.clip(tgt, 0.0, 1.0), DOMINANCE[v]))
    return out


def mouth_channels(segments: list[Segment], times: np.ndarray, voice: VoiceStyle, cfg: SynthConfig
                   ) -> dict[str, np.ndarray]:
    """ARKit mouth channels at ``times`` (T,) → name -> (T,) float64 in [0, 1].

    Symmetric targets drive both sides, scaled by (1 ∓ asymmetry) on left / right; the voice's resting smile is
    added to mouthSmile and 0.4× of the smile shows in cheekSquint.
    """
    F = coarticulate(segments, times, plateau_frac=cfg.plateau_frac, exponent=cfg.dominance_exponent,
                     theta_scale=cfg.theta_scale)
    out: dict[str, np.ndarray] = {}
    a = voice.asymmetry
    for k, key in enumerate(TARGET_KEYS):
        for name in CHANNEL_MAP[key]:
            side = (1 - a) if name.endswith("Left") else (1 + a) if name.endswith("Right") else 1.0
            out[name] = F[:, k] * side
    for side, f in (("Left", 1 - a), ("Right", 1 + a)):
        out[f"mouthSmile{side}"] = out[f"mouthSmile{side}"] + voice.smile_bias * f
        out[f"cheekSquint{side}"] = 0.4 * out[f"mouthSmile{side}"]
    return {k: np.clip(v, 0.0, 1.0) for k, v in out.items()}
