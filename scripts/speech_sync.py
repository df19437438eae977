"""Lip sync on audio alone, on real speech: animate every clip of a folder (no face truth needed) with a checkpoint
at its own generation defaults (style, guidance, sampler; the transcript from Whisper when the model reads text,
as a user gets it) and report, per clip and on average, the Pearson r of jawOpen with the speech envelope
(``ksdiff.metrics.envelope_correlation``) and jawOpen's standard deviation and 95th percentile (how far the
mouth opens). Writes OUT/metrics.json.
Usage: python scripts/speech_sync.py CHECKPOINT SPEECH_DIR OUT [--seed 0] [--style NAME] [--limit N] [--guidance G]
(--limit: the first N audio files in name order, e.g. N LibriSpeech readers of ../shared/data/speech_extra)."""

import argparse
import json
from pathlib import Path

import numpy as np

import ksdiff
from ksdiff.audio.features import load_speech
from ksdiff.data.importers import AUDIO_SUFFIXES
from ksdiff.metrics import envelope_correlation
from ksdiff.utils.io import atomic_path

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("speech", type=Path)
ap.add_argument("out", type=Path)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--style", default=None)
ap.add_argument("--limit", type=int, default=0)
ap.add_argument("--guidance", type=float, default=None)
a = ap.parse_args()
animator = ksdiff.load_model(a.checkpoint)
clips: dict[str, dict[str, float]] = {}
files = sorted(p for p in a.speech.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
for f in files[: a.limit or None]:
    wave = load_speech(f)  # decoded once: the same wave is animated and scored
    motion = animator.animate(wave, seed=a.seed, style=a.style, guidance=a.guidance)
    jaw = motion.channel("jawOpen")
    clips[f.name] = {"env_r": float(envelope_correlation(jaw, wave, motion.fps)), "jaw_std": float(jaw.std()),
                     "jaw_p95": float(np.percentile(jaw, 95))}
    print(f.name, clips[f.name], flush=True)
mean = {k: float(np.mean([c[k] for c in clips.values()])) for k in ("env_r", "jaw_std", "jaw_p95")}
a.out.mkdir(parents=True, exist_ok=True)
with atomic_path(a.out / "metrics.json") as tmp:
    Path(tmp).write_text(json.dumps({"checkpoint": str(a.checkpoint), "seed": a.seed, "mean": mean, "clips": clips},
                                    indent=1))
print("mean", mean)
