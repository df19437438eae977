"""Simple alternatives a user could pick, with the same call as the real model:
``animate(wave, fps, num_frames=None, text=None) -> Motion``.

- ``static``: the training mean face on every frame.
- ``energy-jaw``: procedural lip sync; each mouth channel an affine function of the speech envelope (dB) at a
  lag chosen on the training set, fitted by least squares; every other channel at its training mean.
(``diffspeaker`` is the KSDiff code with every addition switched off: ``configs/ablations/diffspeaker.yaml``.)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ksdiff.audio.envelope import speech_envelope
from ksdiff.data.dataset import open_dataset
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion
from ksdiff.face.specs import ARKIT_MOUTH, get_spec
from ksdiff.utils.io import write_json

BASELINES = ("static", "energy-jaw")
LAGS = tuple(range(-4, 5))  # frames; positive = motion follows the audio


@dataclass
class Baseline:
    """A fitted baseline. ``gains``/``offsets`` map channel → affine coefficients on the envelope (dB)."""

    kind: str
    spec: str
    channels: tuple[str, ...]
    mean: np.ndarray
    lag: int = 0
    gains: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, float] = field(default_factory=dict)

    def animate(self, wave: np.ndarray, fps: float, num_frames: int | None = None, text: str | None = None) -> Motion:
        """Motion for 16 kHz mono ``wave`` at ``fps``; T = num_frames or round(seconds × fps)."""
        T = num_frames if num_frames is not None else int(round(len(wave) / 16000 * fps))
        coeffs = np.tile(self.mean.astype(np.float32), (T, 1))
        if self.kind == "energy-jaw" and self.gains:
            env = _shift(speech_envelope(wave, fps, num_frames=T, db=True), self.lag)
            bounded = set(get_spec(self.spec).bounded)
            for ch, g in self.gains.items():
                c = self.channels.index(ch)
                y = g * env + self.offsets[ch]
                coeffs[:, c] = np.clip(y, 0.0, 1.0) if ch in bounded else y
        return Motion(coeffs, self.channels, fps, self.spec)

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, {"kind": self.kind, "spec": self.spec, "channels": list(self.channels),
                          "mean": self.mean.tolist(), "lag": self.lag, "gains": self.gains,
                          "offsets": self.offsets, "format": "ksdiff-baseline", "format_version": 1})

    @staticmethod
    def load(path: str | os.PathLike) -> "Baseline":
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise KsdiffError(f"not a baseline file ({e})", path) from None
        if d.get("format") != "ksdiff-baseline":
            raise KsdiffError("not a ksdiff baseline file", path)
        return Baseline(d["kind"], d["spec"], tuple(d["channels"]), np.asarray(d["mean"], np.float32),
                        int(d["lag"]), dict(d["gains"]), dict(d["offsets"]))


def _shift(x: np.ndarray, lag: int) -> np.ndarray:
    """y[t] = x[t − lag] with edge values held."""
    if lag == 0:
        return x
    idx = np.clip(np.arange(len(x)) - lag, 0, len(x) - 1)
    return x[idx]


def fit_baseline(kind: str, dataset: str | os.PathLike, split: str = "train") -> Baseline:
    """Fit ``static`` or ``energy-jaw`` on ``split`` of a dataset."""
    if kind not in BASELINES:
        raise KsdiffError(f"unknown baseline {kind!r} (known: {', '.join(BASELINES)})")
    ds = open_dataset(dataset)
    motions, envs = [], []
    channels: tuple[str, ...] = ()
    for clip in ds.clips(split):
        m = clip.motion()
        channels = m.channels
        motions.append(m.coeffs.astype(np.float64))
        if kind == "energy-jaw":
            envs.append(speech_envelope(clip.audio(), m.fps, num_frames=m.num_frames, db=True).astype(np.float64))
    if not motions:
        raise KsdiffError(f"split {split!r} has no clips to fit on", dataset)
    allm = np.concatenate(motions)
    base = Baseline(kind, ds.spec, channels, allm.mean(0).astype(np.float32))
    if kind == "static":
        return base
    mouth = [c for c in channels if c in ARKIT_MOUTH] if ds.spec == "arkit" else \
        [c for c in channels if c.startswith(("jaw", "exp"))]
    jaw = channels.index("jawOpen") if "jawOpen" in channels else channels.index(mouth[0])
    best_lag, best_r = 0, -np.inf
    for lag in LAGS:
        x = np.concatenate([_shift(e, lag) for e in envs])
        r = np.corrcoef(x, allm[:, jaw])[0, 1] if allm[:, jaw].std() > 0 else 0.0
        if r > best_r:
            best_lag, best_r = lag, r
    x = np.concatenate([_shift(e, best_lag) for e in envs])
    A = np.stack([x, np.ones_like(x)], axis=1)
    base.lag = best_lag
    for ch in mouth:
        y = allm[:, channels.index(ch)]
        if y.std() < 1e-6:
            continue
        (g, b), *_ = np.linalg.lstsq(A, y, rcond=None)
        base.gains[ch], base.offsets[ch] = float(g), float(b)
    return base
