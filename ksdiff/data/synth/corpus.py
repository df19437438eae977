"""Generate the synthetic talking-face corpus: text → espeak-ng speech with exact phone timings → ARKit motion.

Each clip is a pure function of (config, clip index): clip i draws everything from
``numpy.random.default_rng([seed, i])`` and espeak-ng is reseeded and reloaded per utterance, so the same seed
gives byte-identical files.

Per clip, besides ``audio.wav``, ``motion.npz``, ``transcript.txt``, the folder holds

* ``meta.json``: {"speaker", "source": "synth", "voice", "rate", "pitch", "pitch_range", "phones": [[ARPAbet,
  start, end], ...]} (phones in the form ``ksdiff.metrics.bilabial_closure`` takes; pauses are ``SIL``);
* ``phones.json``: the full ground truth — phones with espeak mnemonic, ARPAbet label and stress; viseme
  segments; words; pitch accents; blinks; brow raises (all times in seconds).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE
from ksdiff.data.synth.config import SynthConfig, VoiceStyle
from ksdiff.data.synth.head import f0_track, find_accents, head_and_face
from ksdiff.data.synth.mouth import build_segments, mouth_channels
from ksdiff.data.synth.text import make_sentence
from ksdiff.data.synth.tts import Utterance, synthesize
from ksdiff.data.synth.visemes import classify, strip_stress
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion
from ksdiff.face.specs import get_spec
from ksdiff.utils.io import write_json

PHONES_FORMAT_VERSION = 1


@dataclass
class SynthClip:
    """One generated clip (everything that is written to its folder)."""

    id: str
    speaker: str
    text: str
    wave: np.ndarray  # (N,) float32, 16 kHz
    motion: Motion
    phones: list[tuple[str, float, float]]  # espeak mnemonics with stress marks
    words: list[tuple[str, float, float]]
    segments: list[tuple[str, float, float]]  # viseme segments
    accents: list[tuple[float, float]]
    events: dict = field(default_factory=dict)
    tts: dict = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.wave) / float(SAMPLE_RATE)

    def arpabet_phones(self) -> list[list]:
        """[[ARPAbet label, start, end], ...] with pauses as SIL (the metrics' phone format)."""
        return [[classify(p)[1], _r(s), _r(e)] for p, s, e in self.phones]

    def meta(self) -> dict:
        return {"speaker": self.speaker, "source": "synth", **self.tts, "phones": self.arpabet_phones()}

    # a pseudo clip (real speech, procedural targets) says so in tts["source"]: see ksdiff.data.synth.pseudo

    def ground_truth(self) -> dict:
        return {
            "format_version": PHONES_FORMAT_VERSION,
            "phones": [{"phone": classify(p)[1], "espeak": p, "stress": strip_stress(p)[1], "start": _r(s),
                        "end": _r(e)} for p, s, e in self.phones],
            "visemes": [[v, _r(s), _r(e)] for v, s, e in self.segments],
            "words": [[w, _r(s), _r(e)] for w, s, e in self.words],
            "accents": [[_r(t), _r(st)] for t, st in self.accents],
            **{k: v for k, v in sorted(self.events.items())},
        }


def _r(x: float) -> float:
    return round(float(x), 6)


def _speak(rng: np.random.Generator, voice: VoiceStyle, cfg: SynthConfig) -> tuple[str, Utterance, float, float, dict]:
    """A sentence whose padded length is within [min_seconds, max_seconds]: (text, utterance, lead, tail, tts)."""
    rate = int(np.clip(voice.rate + rng.integers(-cfg.rate_jitter, cfg.rate_jitter + 1), cfg.rate_min, cfg.rate_max))
    pitch = int(np.clip(voice.pitch + rng.integers(-cfg.pitch_jitter, cfg.pitch_jitter + 1),
                        cfg.pitch_min, cfg.pitch_max))
    tts = {"voice": voice.voice, "rate": rate, "pitch": pitch, "pitch_range": int(voice.pitch_range)}
    lo, hi = cfg.min_phrases, cfg.max_phrases
    last = None
    for _ in range(cfg.max_tries):
        n = int(rng.integers(lo, hi + 1))
        text = make_sentence(rng, n)
        lead = float(rng.uniform(*cfg.lead_silence))
        tail = float(rng.uniform(*cfg.tail_silence))
        utt = synthesize(text, voice=voice.voice, rate=rate, pitch=pitch, pitch_range=voice.pitch_range,
                         seed=int(rng.integers(2 ** 31)))
        total = lead + utt.duration + tail
        last = (text, utt, lead, tail, tts)
        if cfg.min_seconds <= total <= cfg.max_seconds:
            return last
        if total > cfg.max_seconds:
            hi = max(cfg.min_phrases, n - 1)
            lo = min(lo, hi)
        else:
            lo = min(n + 1, cfg.max_phrases + 3)
            hi = max(hi, lo)
    raise KsdiffError(f"could not make a sentence between {cfg.min_seconds:g} and {cfg.max_seconds:g} s "
                      f"with voice {voice.voice!r} in {cfg.max_tries} tries (last: {last[1].duration:.1f} s)")


def synth_clip(index: int, cfg: SynthConfig) -> SynthClip:
    """Generate clip ``index`` of the corpus defined by ``cfg`` (deterministic)."""
    rng = np.random.default_rng([int(cfg.seed), int(index)])
    voice = cfg.voices[index % len(cfg.voices)]
    text, utt, lead, tail, tts = _speak(rng, voice, cfg)
    sr = SAMPLE_RATE
    n_lead, n_tail = int(round(lead * sr)), int(round(tail * sr))
    wave = np.concatenate([np.zeros(n_lead, np.float32), utt.wave, np.zeros(n_tail, np.float32)])
    if cfg.noise_dbfs is not None:
        wave = wave + (10.0 ** (cfg.noise_dbfs / 20.0) * rng.standard_normal(len(wave))).astype(np.float32)
    wave = np.clip(wave, -1.0, 1.0).astype(np.float32)
    off = n_lead / sr
    phones = [(p, s + off, e + off) for p, s, e in utt.phones]
    words = [(w, s + off, e + off) for w, s, e in utt.words]
    return clip_from_phones(rng, wave, phones, words, voice, cfg, f"{voice.name}-{index:05d}", voice.name, text, tts)


def clip_from_phones(rng: np.random.Generator, wave: np.ndarray, phones: list[tuple[str, float, float]],
                     words: list[tuple[str, float, float]], voice: VoiceStyle, cfg: SynthConfig, clip_id: str,
                     speaker: str, text: str, tts: dict) -> SynthClip:
    """The motion of speech ``wave`` (N,) 16 kHz whose phones (espeak mnemonics, seconds) are known: visemes
    with coarticulation, prosody-locked head and brows, blinks (the generative model of docs/SYNTH.md). Pauses
    are added before the first and after the last phone to cover the whole audio."""
    sr = SAMPLE_RATE
    duration = len(wave) / sr
    phones = [(p, max(0.0, s), min(e, duration)) for p, s, e in phones if s < duration]
    first = phones[0][1] if phones else duration
    phones = ([("_", 0.0, first)] if first > 0 else []) + phones
    end = phones[-1][2]
    if end < duration:
        phones.append(("_", end, duration))

    fps = float(cfg.fps)
    T = int(round(duration * fps))
    times = np.arange(T) / fps
    segments = build_segments(rng, phones, wave, sr, voice, cfg)
    mouth = mouth_channels(segments, times, voice, cfg)
    f0, f0_t = f0_track(wave, sr, cfg)
    accents = find_accents(phones, f0, f0_t, cfg)
    face, events = head_and_face(rng, times, fps, phones, accents, voice, cfg)

    spec = get_spec("arkit")
    coeffs = np.zeros((T, spec.dim), dtype=np.float64)
    for name, values in {**mouth, **face}.items():
        coeffs[:, spec.channels.index(name)] = values
    if cfg.emotion:
        valence, arousal = (float(x) for x in rng.uniform(-1.0, 1.0, 2))
        apply_emotion(coeffs, spec.channels, valence, arousal)
        tts = {**tts, "emotion": [round(valence, 4), round(arousal, 4)]}
    spec.clip(coeffs)  # blendshapes in [0, 1], mouthClose at most jawOpen (a viseme's closure can ask for more)
    motion = Motion(coeffs.astype(np.float32), spec.channels, fps, "arkit")
    return SynthClip(id=clip_id, speaker=speaker, text=text, wave=wave, motion=motion,
                     phones=phones, words=words, segments=[(s.viseme, s.start, s.end) for s in segments],
                     accents=accents, events=events, tts=tts)


#: How a clip shows its emotion (valence v, arousal a in [-1, 1]); added to the neutral motion, in ARKit units.
EMOTION_GAINS = {
    "smile": 0.30,       # mouthSmileLeft/Right += 0.30 max(v, 0); cheekSquint += half of it
    "frown": 0.30,       # mouthFrownLeft/Right += 0.30 max(-v, 0)
    "brow_down": 0.25,   # browDownLeft/Right += 0.25 max(-v, 0)
    "eye_wide": 0.25,    # eyeWideLeft/Right += 0.25 max(a, 0)
    "brow_up": 0.20,     # browInnerUp += 0.20 max(a, 0)
    "lids": 0.12,        # eyeBlinkLeft/Right += 0.12 max(-a, 0) (heavy lids when calm)
    "mouth_energy": 0.35,  # mouth and jaw channels' movement about their mean x (1 + 0.35 a)
    "head_energy": 0.50,   # head rotation's movement about its mean x (1 + 0.5 a)
}


def apply_emotion(coeffs: np.ndarray, channels: tuple[str, ...], valence: float, arousal: float) -> None:
    """Show (valence, arousal) on an ``arkit`` motion (T, C) in place (:data:`EMOTION_GAINS`): smile and cheeks for
    positive valence, frown and lowered brows for negative; wide eyes and raised brows for high arousal, heavier
    lids for low; and more (or less) articulation and head movement with arousal. Bounded channels are clipped by
    the caller."""
    from ksdiff.face.specs import ARKIT_HEAD, ARKIT_MOUTH

    g = EMOTION_GAINS
    idx = {n: i for i, n in enumerate(channels)}
    pos_v, neg_v, pos_a, neg_a = max(valence, 0.0), max(-valence, 0.0), max(arousal, 0.0), max(-arousal, 0.0)
    for i in [idx[c] for c in ARKIT_MOUTH if c in idx]:
        m = coeffs[:, i].mean()
        coeffs[:, i] = m + (coeffs[:, i] - m) * (1.0 + g["mouth_energy"] * arousal)
    for i in [idx[c] for c in ARKIT_HEAD[:3] if c in idx]:
        m = coeffs[:, i].mean()
        coeffs[:, i] = m + (coeffs[:, i] - m) * (1.0 + g["head_energy"] * arousal)
    for side in ("Left", "Right"):
        coeffs[:, idx[f"mouthSmile{side}"]] += g["smile"] * pos_v
        coeffs[:, idx[f"cheekSquint{side}"]] += 0.5 * g["smile"] * pos_v
        coeffs[:, idx[f"mouthFrown{side}"]] += g["frown"] * neg_v
        coeffs[:, idx[f"browDown{side}"]] += g["brow_down"] * neg_v
        coeffs[:, idx[f"eyeWide{side}"]] += g["eye_wide"] * pos_a
        coeffs[:, idx[f"eyeBlink{side}"]] += g["lids"] * neg_a
    coeffs[:, idx["browInnerUp"]] += g["brow_up"] * pos_a


def check_output(out: str | os.PathLike, force: bool) -> Path:
    """The dataset folder to write: refused when it exists (unless ``force``) or is not a ksdiff dataset."""
    out = Path(out)
    if out.exists():
        if not force:
            raise KsdiffError("output already exists (use --force to replace it)", out)
        if not out.is_dir() or (any(out.iterdir()) and not (out / "dataset.json").is_file()):
            raise KsdiffError("refusing to replace something that is not a ksdiff dataset", out)
    return out


def build_corpus(out: str | os.PathLike, cfg: SynthConfig, force: bool = False,
                 progress: Callable[[SynthClip, float], None] | None = None) -> dict:
    """Generate clips until ``cfg.minutes`` of audio and write them as an ``arkit`` dataset at ``out`` (atomic).

    Returns:
        summary dict: clips, seconds, speakers, out.
    """
    from ksdiff.data.dataset import DatasetWriter

    cfg.validate()
    out = check_output(out, force)
    target = cfg.minutes * 60.0
    total = 0.0
    speakers: set[str] = set()
    extra = {"source": "synth", "synth": _jsonable(cfg.to_dict())}
    with DatasetWriter(out, spec="arkit", fps=cfg.fps, name=f"synth-seed{cfg.seed}", seed=cfg.seed,
                       extra=extra) as writer:
        i = 0
        while total < target:
            clip = synth_clip(i, cfg)
            writer.add_clip(clip.id, clip.wave, clip.motion, transcript=clip.text, meta=clip.meta())
            write_json(writer.tmp / clip.id / "phones.json", clip.ground_truth())
            total += clip.duration
            speakers.add(clip.speaker)
            if progress is not None:
                progress(clip, total)
            i += 1
    return {"out": str(out), "clips": i, "seconds": total, "speakers": sorted(speakers)}


def _jsonable(obj):
    return json.loads(json.dumps(obj))


def load_phones(clip_dir: str | os.PathLike) -> list[tuple[str, float, float]]:
    """(ARPAbet, start, end) phones of a synthetic clip folder (from meta.json), pauses as ``SIL``."""
    p = Path(clip_dir) / "meta.json"
    if not p.is_file():
        raise KsdiffError("clip has no meta.json with phones", clip_dir)
    meta = json.loads(p.read_text(encoding="utf-8"))
    return [(str(a), float(s), float(e)) for a, s, e in meta.get("phones", [])]


def print_progress(clip: SynthClip, total: float) -> None:  # pragma: no cover - console output
    print(f"  {clip.id}  {clip.duration:5.2f} s  total {total / 60:6.2f} min  {clip.text[:60]}", file=sys.stderr)
