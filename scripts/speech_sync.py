"""Lip sync on audio alone, on real speech: animate every clip of a folder (no face truth needed) with a checkpoint
at its own generation defaults (style, guidance, sampler, smoothing; the transcript from Whisper when the model
reads text, as a user gets it) and report, per clip and on average, the Pearson r of jawOpen with the speech
envelope (``ksdiff.metrics.envelope_correlation``), jawOpen's standard deviation and 95th percentile (how far the
mouth opens), the median std over the mouth channels (how much the whole mouth moves; a real iPhone capture of
English speech: 0.10), the r of the inner-lip opening on the ICT head with the envelope (``lip_env_r``: the
vertical gap between the inner lips, 0 where they meet, which all mouth channels make, where ``env_r`` reads jawOpen
alone), the capture ratio
(``ksdiff.metrics.capture_ratio``: median over the channels issue 14's iPhone capture quotes of the clip's std over
the capture's; 1 = a real face's amplitude), and on English clips the bilabial closure
(``ksdiff.metrics.bilabial_closure``: the share of /p b m/ whose centre frame shows a closed mouth; phones from
pocketsphinx, ``align_long``, on the folder's ``transcripts.tsv`` text where it has one, else Whisper's; cached in
OUT/../phones). Writes OUT/metrics.json.
Usage: python scripts/speech_sync.py CHECKPOINT SPEECH_DIR OUT [--seed 0] [--style NAME] [--limit N] [--guidance G]
       [--smooth SIGMA] [--not-english a.wav,b.wav]
(--limit: the first N audio files in name order, e.g. N LibriSpeech readers of ../shared/data/speech_extra;
--not-english: clips without bilabial scoring, default the German, French and Japanese clips of
../shared/data/speech)."""

import argparse
import functools
import json
from pathlib import Path

import numpy as np

import ksdiff
from ksdiff.audio.features import load_speech
from ksdiff.data.synth.pseudo import find_recordings
from ksdiff.metrics import bilabial_closure, capture_ratio, envelope_correlation, inner_lip_gap
from ksdiff.metrics.articulation import mouth_channels
from ksdiff.utils.io import atomic_path

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("speech", type=Path)
ap.add_argument("out", type=Path)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--style", default=None)
ap.add_argument("--limit", type=int, default=0)
ap.add_argument("--guidance", type=float, default=None)
ap.add_argument("--smooth", type=float, default=None)
ap.add_argument("--not-english", default="German1.wav,french1.wav,japan1.wav")
a = ap.parse_args()
not_english = set(filter(None, a.not_english.split(",")))
# the folder's own audio files with their transcripts (a same-stem .txt or transcripts.tsv), in name order
recordings = [(f, t) for f, t, _ in find_recordings([a.speech]) if f.parent == a.speech]


def phones_of(f: Path, text: str | None, wave: np.ndarray) -> list:
    """ARPAbet phones of an English clip (cached: the same for every checkpoint)."""
    from ksdiff.audio.align import align_long

    cache = a.out.parent / "phones" / f"{f.name}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    try:
        ph = [[s.label, s.start, s.end] for s in align_long(wave, text).phones]
    except Exception as e:  # noqa: BLE001 - an unalignable clip is reported, not fatal
        print(f"{f.name}: no alignment ({e})", flush=True)
        ph = []
    cache.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache) as tmp:
        Path(tmp).write_text(json.dumps(ph))
    return ph


@functools.lru_cache(maxsize=1)
def ict_head():
    """The ICT head when its asset is found and has the 68 landmarks, else None (loaded once)."""
    from ksdiff.face.ict import find_ict_asset
    from ksdiff.face.models import get_face_model

    if find_ict_asset(None, required=False) is None:
        return None
    face = get_face_model("arkit", face="ict")
    return face if face.landmarks68 is not None and len(face.landmarks68) == 68 else None


def lip_opening(motion) -> np.ndarray | None:
    """(T,) mm between the inner lips on the ICT head (``ksdiff.metrics.inner_lip_gap``), 0 where they meet or
    cross: the mouth opening every mouth channel contributes to, not only the jaw. None without the ICT asset."""
    face = ict_head() if motion.spec == "arkit" else None
    return None if face is None else np.maximum(inner_lip_gap(motion, face), 0.0)


animator = ksdiff.load_model(a.checkpoint)
clips: dict[str, dict[str, float]] = {}
for f, text in recordings[: a.limit or None]:
    wave = load_speech(f)  # decoded once: the same wave is animated and scored
    motion = animator.animate(wave, seed=a.seed, style=a.style, guidance=a.guidance, smooth=a.smooth)
    jaw = motion.channel("jawOpen")
    mouth = motion.select(mouth_channels(motion.channels))
    clips[f.name] = {"env_r": float(envelope_correlation(jaw, wave, motion.fps)), "jaw_std": float(jaw.std()),
                     "jaw_p95": float(np.percentile(jaw, 95)), "mouth_std": float(np.median(mouth.std(axis=0))),
                     "capture_ratio": capture_ratio(motion.coeffs, motion.channels)}
    opening = lip_opening(motion)
    clips[f.name]["lip_env_r"] = float("nan") if opening is None else float(envelope_correlation(opening, wave,
                                                                                                 motion.fps))
    if f.name not in not_english:
        phones = phones_of(f, text, wave)
        lips = (motion.channel("mouthClose"), motion.channel("mouthPressLeft"))
        clips[f.name]["bilabial_closure"] = float(bilabial_closure(jaw, *lips, phones, motion.fps)) if phones \
            else float("nan")
    print(f.name, clips[f.name], flush=True)
mean = {k: float(np.nanmean([c.get(k, np.nan) for c in clips.values()]))
        for k in ("env_r", "lip_env_r", "jaw_std", "jaw_p95", "mouth_std", "capture_ratio", "bilabial_closure")}
a.out.mkdir(parents=True, exist_ok=True)
with atomic_path(a.out / "metrics.json") as tmp:
    Path(tmp).write_text(json.dumps({"checkpoint": str(a.checkpoint), "seed": a.seed, "mean": mean, "clips": clips},
                                    indent=1))
print("mean", mean)
