"""Prosody at the speech-feature rate (DPSE input h_p, DESIGN.md section 2): f0 and energy, per-utterance normalised.

f0: pyworld DIO + StoneMask at a 20 ms frame period (frame j at j × 20 ms, the encoders' grid);
energy: RMS in dB of a 40 ms window centred on each frame (:func:`ksdiff.audio.envelope.speech_envelope`).
Normalisation (per utterance): log-f0 z-scored over the voiced frames, unvoiced frames 0; energy dB z-scored over
all frames.

Long audio is analysed in pieces of :data:`CHUNK_S` seconds, each with :data:`MARGIN_S` of context on both sides
(DIO's filters and StoneMask look a few pitch periods around a frame), so memory is bounded by one piece whatever
the length (DIO on a whole 30 min file needed 3.2 GB). Audio up to ``CHUNK_S`` is one piece, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE
from ksdiff.audio.encoders import FRAME_RATE, fit_length, num_frames as _num_frames
from ksdiff.audio.envelope import speech_envelope

F0_FLOOR = 60.0  # Hz: below any adult speaking voice
F0_CEIL = 800.0  # Hz: above children's and sung speech
CHUNK_S = 60.0  # seconds of audio per piece (DIO needs ~110 bytes per sample: ~110 MB for 60 s at 16 kHz)
MARGIN_S = 2.0  # seconds of context each side of a piece (over 100 periods of the lowest f0)


@dataclass
class RawProsody:
    """Un-normalised prosody at ``rate`` Hz: ``f0`` (N',) Hz (0 = unvoiced) and ``energy_db`` (N',)."""

    f0: np.ndarray
    energy_db: np.ndarray
    rate: float = FRAME_RATE

    @property
    def voiced(self) -> np.ndarray:
        return self.f0 > 0

    @property
    def voiced_fraction(self) -> float:
        return float(self.voiced.mean()) if len(self.f0) else 0.0

    @property
    def f0_median(self) -> float:
        v = self.f0[self.f0 > 0]
        return float(np.median(v)) if len(v) else 0.0


def extract_prosody(wave: np.ndarray, num_frames: int | None = None, sr: int = SAMPLE_RATE,
                    rate: float = FRAME_RATE, f0_floor: float = F0_FLOOR, f0_ceil: float = F0_CEIL) -> RawProsody:
    """f0 (Hz, 0 where unvoiced) and energy (RMS dB) of ``wave`` at ``rate`` Hz.

    Args:
        wave: (N,) float mono at ``sr``.
        num_frames: N' (default round(N / sr × rate), the encoders' length).

    Returns:
        RawProsody with f0 (N',) float32 and energy_db (N',) float32.
    """
    wave = np.asarray(wave).reshape(-1)
    n = int(round(len(wave) / sr * rate)) if num_frames is None else int(num_frames)
    if n == 0:
        return RawProsody(np.zeros(0, np.float32), np.zeros(0, np.float32), rate)
    hop = sr / rate  # samples per frame
    chunk, margin = int(round(CHUNK_S * rate)), int(round(MARGIN_S * rate))  # frames
    if hop != int(hop):  # pieces must start on a frame's sample
        chunk = n
    f0 = np.zeros(n, np.float32)
    energy = np.zeros(n, np.float32)
    for j0 in range(0, n, chunk):
        j1 = min(n, j0 + chunk)
        a = max(0, j0 - margin)  # first frame analysed, with context
        b = n if j1 == n else j1 + margin
        s0 = int(round(a * hop))
        piece = wave[s0:int(round(b * hop)) + int(round(hop))]  # frame b-1 plus a frame's worth of samples after it
        f0[j0:j1] = _f0(piece, b - a, sr, rate, f0_floor, f0_ceil)[j0 - a:j1 - a]
        # the envelope window spans one frame each side of its centre: give the piece that context too
        c0 = max(0, int(round(j0 * hop)) - int(round(hop)))
        env = speech_envelope(wave[c0:int(round(j1 * hop)) + int(round(hop))], fps=rate,
                              num_frames=j1 - j0 + (1 if c0 else 0), sr=sr, db=True)
        energy[j0:j1] = env[1:] if c0 else env
    return RawProsody(f0, energy, rate)


def _f0(wave: np.ndarray, n: int, sr: int, rate: float, f0_floor: float, f0_ceil: float) -> np.ndarray:
    """pyworld DIO + StoneMask f0 of ``wave`` (Hz, 0 unvoiced) at ``rate`` Hz -> (n,) float32."""
    import pyworld

    wave = np.asarray(wave, dtype=np.float64)
    if len(wave) >= int(sr * 0.05) and np.abs(wave).max() > 0:
        f0, t = pyworld.dio(wave, sr, f0_floor=f0_floor, f0_ceil=f0_ceil, frame_period=1000.0 / rate)
        f0 = pyworld.stonemask(wave, f0, t, sr)
    else:  # too short for DIO's analysis window, or digital silence
        f0 = np.zeros(n)
    f0 = np.where(np.isfinite(f0) & (f0 > 0), f0, 0.0)
    return fit_length(f0.astype(np.float32), n)


def normalize_prosody(raw: RawProsody) -> np.ndarray:
    """Per-utterance normalisation (DESIGN.md section 2) -> (N', 2) float32: column 0 log-f0 z-score over voiced
    frames (unvoiced 0), column 1 energy-dB z-score over all frames."""
    out = np.zeros((len(raw.f0), 2), np.float32)
    voiced = raw.f0 > 0
    if voiced.any():
        lf0 = np.log(raw.f0[voiced].astype(np.float64))
        std = lf0.std()
        out[voiced, 0] = (lf0 - lf0.mean()) / (std if std > 1e-6 else 1.0)
    if len(raw.energy_db):
        e = raw.energy_db.astype(np.float64)
        std = e.std()
        out[:, 1] = (e - e.mean()) / (std if std > 1e-6 else 1.0)
    return out


def compute_prosody(wave: np.ndarray, num_frames: int | None = None, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Normalised prosody h_p of ``wave``: (N', 2) float32 at 50 Hz, N' = ``num_frames`` or round(seconds × 50).

    Column 0: log-f0 z-scored over voiced frames (unvoiced 0); column 1: energy dB z-scored.
    """
    if num_frames is None:
        num_frames = _num_frames(len(wave), sr)
    return normalize_prosody(extract_prosody(wave, num_frames=num_frames, sr=sr))
