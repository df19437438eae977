"""Head, brows and blinks of the synthetic face: slow and prosody-driven, unlike the phone-driven mouth.

* **Pitch accents**: a primary-stressed vowel (espeak marks it with ``'``) whose f0 peak (pyworld DIO +
  StoneMask on the synthesised audio) rises at least ``accent_threshold`` semitones above the clip's median f0.
  Strength = rise / ``accent_full``, clipped to [0, 1]; accents closer than ``accent_min_gap`` keep the stronger.
* **Nods**: a Gaussian bump on headRotX (chin down) at each accent, ``nod_lag`` after the f0 peak, with a little
  yaw and roll; plus slow drift: low-pass filtered Gaussian noise. Rotating about a neck pivot moves the head, so
  translation = drift + (R·p − p).
* **Brows**: browInnerUp / browOuterUp raises on some accents (attack–decay shape) plus slow drift.
* **Blinks**: Poisson in time (the voice's rate per minute) and at phrase boundaries; ≈150 ms each.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfiltfilt
from scipy.spatial.transform import Rotation

from ksdiff.data.synth.config import SynthConfig, VoiceStyle
from ksdiff.data.synth.visemes import VOWELS, classify, strip_stress


def lowpass_noise(rng: np.random.Generator, num: int, fps: float, cutoff: float, std: float) -> np.ndarray:
    """(num,) Gaussian noise low-passed at ``cutoff`` Hz (2nd-order Butterworth, zero phase), scaled to ``std``.

    Generated with a 4 s margin each side so the ends have no filter transient.
    """
    pad = int(round(4.0 * fps))
    x = rng.standard_normal(num + 2 * pad)
    sos = butter(2, min(cutoff / (fps / 2.0), 0.99), output="sos")
    y = sosfiltfilt(sos, x)[pad:pad + num]
    s = float(y.std())
    return y * (std / s) if s > 0 else y


def f0_track(wave: np.ndarray, sr: int, cfg: SynthConfig) -> tuple[np.ndarray, np.ndarray]:
    """f0 (Hz, 0 = unvoiced) and its times (s) with pyworld DIO + StoneMask."""
    import pyworld

    x = np.asarray(wave, dtype=np.float64)
    f0, t = pyworld.dio(x, sr, f0_floor=cfg.f0_floor, f0_ceil=cfg.f0_ceil, frame_period=cfg.f0_period)
    f0 = pyworld.stonemask(x, f0, t, sr)
    return f0, t


def find_accents(phones: list[tuple[str, float, float]], f0: np.ndarray, f0_times: np.ndarray,
                 cfg: SynthConfig) -> list[tuple[float, float]]:
    """Pitch accents as (time s, strength in (0, 1]), sorted by time.

    Args:
        phones: espeak mnemonics with stress marks, (label, start, end).
        f0, f0_times: (F,) f0 in Hz (0 unvoiced) and frame times.
    """
    voiced = f0 > 0
    if not voiced.any():
        return []
    ref = float(np.median(np.log2(f0[voiced])))
    cands: list[tuple[float, float]] = []
    for label, s, e in phones:
        classes, _ = classify(label)
        _, stress = strip_stress(label)
        if stress != 1 or not any(c in VOWELS for c in classes):
            continue
        sel = (f0_times >= s) & (f0_times < e) & voiced
        if not sel.any():
            continue
        idx = np.where(sel)[0]
        k = idx[int(np.argmax(f0[idx]))]
        rise = 12.0 * (np.log2(f0[k]) - ref)  # semitones above the median
        if rise >= cfg.accent_threshold:
            cands.append((float(f0_times[k]), float(min(1.0, rise / cfg.accent_full))))
    # enforce the minimum gap, strongest first
    kept: list[tuple[float, float]] = []
    for t, st in sorted(cands, key=lambda a: (-a[1], a[0])):
        if all(abs(t - u) >= cfg.accent_min_gap for u, _ in kept):
            kept.append((t, st))
    return sorted(kept)


def _attack_decay(times: np.ndarray, t0: float, attack: float, decay: float) -> np.ndarray:
    """Smooth bump peaking (at 1) at t0: raised-cosine rise over ``attack`` s before, Gaussian fall (σ = decay) after."""
    d = times - t0
    up = np.where((d > -attack) & (d <= 0), 0.5 * (1 + np.cos(np.pi * d / attack)), 0.0)
    down = np.where(d > 0, np.exp(-0.5 * (d / decay) ** 2), 0.0)
    return up + down


def pauses(phones: list[tuple[str, float, float]], min_dur: float) -> list[tuple[float, float]]:
    """(start, end) of pauses inside the speech (after the first and before the last spoken phone)."""
    spoken = [i for i, (p, _, _) in enumerate(phones) if classify(p)[0][0] != "SIL"]
    if not spoken:
        return []
    out = []
    i = spoken[0]
    while i <= spoken[-1]:
        if classify(phones[i][0])[0][0] == "SIL":
            j = i
            while j + 1 <= spoken[-1] and classify(phones[j + 1][0])[0][0] == "SIL":
                j += 1
            s, e = phones[i][1], phones[j][2]
            if e - s >= min_dur:
                out.append((s, e))
            i = j + 1
        else:
            i += 1
    return out


def blink_times(rng: np.random.Generator, duration: float, phones: list[tuple[str, float, float]],
                voice: VoiceStyle, cfg: SynthConfig) -> list[float]:
    """Blink onsets (s): Poisson at ``voice.blink_rate`` per minute, plus phrase-boundary blinks; sorted, at least
    ``blink_min_gap`` apart, all ending inside the clip."""
    cands: list[float] = []
    rate = voice.blink_rate / 60.0
    t = float(rng.exponential(1.0 / rate)) if rate > 0 else duration
    while t < duration:
        cands.append(t)
        t += float(rng.exponential(1.0 / rate))
    for s, e in pauses(phones, cfg.blink_pause_min):
        if rng.random() < cfg.blink_pause_prob:
            cands.append(s + float(rng.uniform(0.0, min(0.1, e - s))))
    span = cfg.blink_close + cfg.blink_hold + cfg.blink_open
    out: list[float] = []
    for t in sorted(cands):
        if t + span <= duration and (not out or t - out[-1] >= cfg.blink_min_gap):
            out.append(t)
    return out


def blink_curve(times: np.ndarray, onsets: list[float], amps: list[float], cfg: SynthConfig) -> np.ndarray:
    """(T,) eyelid closure in [0, 1]: raised-cosine close, hold, raised-cosine open for each blink."""
    out = np.zeros_like(times)
    c, h, o = cfg.blink_close, cfg.blink_hold, cfg.blink_open
    for t0, a in zip(onsets, amps):
        d = times - t0
        v = np.zeros_like(times)
        m = (d >= 0) & (d < c)
        v[m] = 0.5 * (1 - np.cos(np.pi * d[m] / c))
        v[(d >= c) & (d < c + h)] = 1.0
        m = (d >= c + h) & (d < c + h + o)
        v[m] = 0.5 * (1 + np.cos(np.pi * (d[m] - c - h) / o))
        out = np.maximum(out, a * v)
    return out


def head_and_face(rng: np.random.Generator, times: np.ndarray, fps: float,
                  phones: list[tuple[str, float, float]], accents: list[tuple[float, float]],
                  voice: VoiceStyle, cfg: SynthConfig) -> tuple[dict[str, np.ndarray], dict]:
    """Head pose, brows and blinks at ``times`` (T,).

    Returns:
        channels: name -> (T,) float64 for headRotX/Y/Z (rad), headTx/Ty/Tz (cm), browInnerUp,
            browOuterUpLeft/Right, eyeBlinkLeft/Right, eyeSquintLeft/Right.
        events: {"blinks": [onset s ...], "brow_raises": [time s ...]} (ground truth, sorted).
    """
    T = len(times)
    g = voice.head_gain
    rot = np.stack([lowpass_noise(rng, T, fps, cfg.drift_cutoff, s * g) for s in cfg.drift_std], axis=1)
    brow = np.abs(lowpass_noise(rng, T, fps, cfg.brow_cutoff, cfg.brow_drift))
    brow_raises: list[float] = []
    for t_acc, strength in accents:
        bump = np.exp(-0.5 * ((times - t_acc - cfg.nod_lag) / cfg.nod_sigma) ** 2)
        pitch = cfg.nod_amp * g * strength * float(rng.uniform(0.7, 1.3))
        rot[:, 0] += pitch * bump
        rot[:, 1] += cfg.nod_yaw * pitch * float(rng.uniform(-1, 1)) * bump
        rot[:, 2] += cfg.nod_roll * pitch * float(rng.uniform(-1, 1)) * bump
        if strength > 0.8 or rng.random() < cfg.brow_prob:
            brow += cfg.brow_amp * voice.brow_gain * strength * float(rng.uniform(0.7, 1.2)) * _attack_decay(
                times, t_acc, cfg.brow_attack, cfg.brow_decay)
            brow_raises.append(t_acc)
    trans = np.stack([lowpass_noise(rng, T, fps, cfg.trans_cutoff, s * g) for s in cfg.trans_std], axis=1)
    p = np.asarray(cfg.pivot, dtype=np.float64)
    trans += Rotation.from_rotvec(rot).apply(p) - p
    onsets = blink_times(rng, float(times[-1]) + 1.0 / fps if T else 0.0, phones, voice, cfg)
    amps = [float(rng.uniform(*cfg.blink_amp)) for _ in onsets]
    blink = blink_curve(times, onsets, amps, cfg)
    a = voice.asymmetry
    ch = {
        "headRotX": rot[:, 0], "headRotY": rot[:, 1], "headRotZ": rot[:, 2],
        "headTx": trans[:, 0], "headTy": trans[:, 1], "headTz": trans[:, 2],
        "browInnerUp": brow,
        "browOuterUpLeft": cfg.brow_outer * brow * (1 - a), "browOuterUpRight": cfg.brow_outer * brow * (1 + a),
        "eyeBlinkLeft": blink, "eyeBlinkRight": blink,
        "eyeSquintLeft": cfg.blink_squint * blink, "eyeSquintRight": cfg.blink_squint * blink,
    }
    return ch, {"blinks": [round(t, 6) for t in onsets], "brow_raises": [round(t, 6) for t in brow_raises]}
