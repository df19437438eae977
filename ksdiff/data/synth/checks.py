"""Checks of a synthetic corpus: is the ground truth what the generative model promises?

``corpus_report(dataset)`` measures, over every clip of a dataset that has phone timings in ``meta.json``:

bilabial_closure
    share of /p b m/ phones whose centre frame shows a closed mouth, pooled over clips, as defined by
    :func:`ksdiff.metrics.bilabial_closure` (jawOpen − mouthClose < 0.05, or jawOpen < 0.1 with mouthPress > 0.15).
jaw_envelope_r
    Pearson r of jawOpen with the speech envelope (:func:`ksdiff.audio.envelope.speech_envelope`, linear RMS)
    of all clips' frames concatenated (``jaw_envelope_r_mean``: the mean of per-clip r).
head_low_frac / mouth_high_frac
    band energy shares. For each clip and each channel of a path, the channel's mean is removed and its power
    spectrum |rfft|² taken; powers are summed over the path's channels and over clips.
    ``head_low_frac`` = power below ``split_hz`` (2 Hz) / all power, over the head path
    (headRotX/Y/Z in rad, headTx/Ty/Tz in cm); ``mouth_high_frac`` = power at or above 2 Hz / all power, over the
    mouth channels (:data:`ksdiff.face.specs.ARKIT_MOUTH`: jaw*, mouth*, tongueOut, cheekPuff).
speakers
    per speaker: 95th percentiles of jawOpen and of max(mouthPucker, mouthFunnel) (the articulation styles).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ksdiff.audio.envelope import pearson, speech_envelope
from ksdiff.data.dataset import open_dataset
from ksdiff.data.synth.corpus import load_phones
from ksdiff.errors import KsdiffError
from ksdiff.face.specs import ARKIT_HEAD, ARKIT_MOUTH
from ksdiff.metrics import bilabial_closure
from ksdiff.metrics.lipsync import BILABIALS


def band_power(x: np.ndarray, fps: float, split_hz: float) -> tuple[float, float]:
    """(power below split_hz, power at or above it) of (T, C) channels, each mean-removed, summed over channels.

    The DC bin is excluded (it is zero after mean removal)."""
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    p = np.abs(np.fft.rfft(x, axis=0)) ** 2  # (F, C)
    f = np.fft.rfftfreq(len(x), d=1.0 / fps)
    low = float(p[(f > 0) & (f < split_hz)].sum())
    high = float(p[f >= split_hz].sum())
    return low, high


class _Tally:
    """Running sums of the corpus checks over clips (see :func:`corpus_report`)."""

    def __init__(self, split_hz: float):
        self.split_hz = split_hz
        self.n_bil = self.hits = 0.0
        self.jaws: list[np.ndarray] = []
        self.envs: list[np.ndarray] = []
        self.rs: list[float] = []
        self.head = [0.0, 0.0]
        self.mouth = [0.0, 0.0]
        self.seconds = 0.0
        self.blinks = self.accents = self.clips = 0
        self.per_speaker: dict[str, dict[str, list]] = {}

    def add(self, clip) -> None:
        phones = load_phones(clip.root)
        m = clip.motion()
        wave = clip.audio()
        jaw, close, press = m.channel("jawOpen"), m.channel("mouthClose"), m.channel("mouthPressLeft")
        nb = sum(1 for p, _, _ in phones if p.upper().rstrip("012") in BILABIALS)
        if nb:
            self.n_bil += nb
            self.hits += bilabial_closure(jaw, close, press, phones, m.fps) * nb
        env = speech_envelope(wave, m.fps, num_frames=m.num_frames)
        self.jaws.append(jaw)
        self.envs.append(env)
        self.rs.append(pearson(jaw, env))
        for acc, names in ((self.head, ARKIT_HEAD), (self.mouth, ARKIT_MOUTH)):
            lo, hi = band_power(m.select(names), m.fps, self.split_hz)
            acc[0] += lo
            acc[1] += hi
        spk = self.per_speaker.setdefault(str(clip.meta().get("speaker", "?")), {"jaw": [], "round": []})
        spk["jaw"].append(jaw)
        spk["round"].append(np.maximum(m.channel("mouthPucker"), m.channel("mouthFunnel")))
        self.seconds += len(wave) / 16000.0
        gt = clip.root / "phones.json"
        if gt.is_file():
            d = json.loads(gt.read_text(encoding="utf-8"))
            self.blinks += len(d.get("blinks", []))
            self.accents += len(d.get("accents", []))
        self.clips += 1

    def report(self) -> dict:
        minutes = self.seconds / 60.0
        (head_lo, head_hi), (mouth_lo, mouth_hi) = self.head, self.mouth
        return {
            "clips": self.clips,
            "seconds": round(self.seconds, 3),
            "bilabials": int(self.n_bil),
            "bilabial_closure": self.hits / self.n_bil if self.n_bil else float("nan"),
            "jaw_envelope_r": pearson(np.concatenate(self.jaws), np.concatenate(self.envs)),
            "jaw_envelope_r_mean": float(np.mean(self.rs)),
            "head_low_frac": head_lo / (head_lo + head_hi) if head_lo + head_hi > 0 else float("nan"),
            "mouth_high_frac": mouth_hi / (mouth_lo + mouth_hi) if mouth_lo + mouth_hi > 0 else float("nan"),
            "split_hz": self.split_hz,
            "blinks_per_min": self.blinks / minutes if minutes else 0.0,
            "accents_per_min": self.accents / minutes if minutes else 0.0,
            "speakers": {k: {"jaw_p95": float(np.percentile(np.concatenate(v["jaw"]), 95)),
                             "rounding_p95": float(np.percentile(np.concatenate(v["round"]), 95))}
                         for k, v in sorted(self.per_speaker.items())},
        }


def corpus_report(dataset: str | os.PathLike, split: str | None = None, split_hz: float = 2.0,
                  max_clips: int | None = None) -> dict:
    """The checks above over the clips of ``dataset`` (all splits by default).

    Returns:
        dict with clips, seconds, bilabials, bilabial_closure, jaw_envelope_r, jaw_envelope_r_mean,
        head_low_frac, mouth_high_frac, blinks_per_min, accents_per_min (when phones.json is present), speakers.
    """
    ds = open_dataset(dataset)
    if ds.spec != "arkit":
        raise KsdiffError(f"corpus_report needs an arkit dataset, not {ds.spec!r}", ds.root)
    tally = _Tally(split_hz)
    for clip in ds.clips(split):
        if max_clips is not None and tally.clips >= max_clips:
            break
        tally.add(clip)
    if not tally.clips:
        raise KsdiffError("dataset has no clips to check", ds.root)
    return tally.report()
