"""Lip sync on audio alone, on real speech, one seed: ``ksdiff.evaluate_speech`` (the same measures as ``ksdiff
evaluate --speech DIR``: jawOpen and inner-lip envelope r, jawOpen std / p95, median mouth std, capture ratio,
bilabial closure on English clips), kept as the command docs/RESULTS.md's numbers were made with. Phones are cached
in OUT/../phones, shared by every checkpoint scored beside OUT. Writes OUT/metrics.json.
Usage: python scripts/speech_sync.py CHECKPOINT SPEECH_DIR OUT [--seed 0] [--style NAME] [--limit N] [--guidance G]
       [--smooth SIGMA] [--not-english a.wav,b.wav]
(--limit: the first N audio files in name order, e.g. N LibriSpeech readers of ../shared/data/speech_extra;
--not-english: clips without bilabial scoring, default the German, French and Japanese clips of
../shared/data/speech)."""

import argparse
import json
from pathlib import Path

from ksdiff.evaluate_speech import evaluate_speech
from ksdiff.utils.io import write_text

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
report = evaluate_speech(a.checkpoint, a.speech, seeds=(a.seed,), not_english=filter(None, a.not_english.split(",")),
                         phones_dir=a.out.parent / "phones", limit=a.limit, progress=lambda n: print(n, flush=True),
                         style=a.style, guidance=a.guidance, smooth=a.smooth)
a.out.mkdir(parents=True, exist_ok=True)
write_text(a.out / "metrics.json", json.dumps({"seed": a.seed, **report}, indent=1))
print("mean", report["mean"])
