"""How much of a tracked clip's jawOpen speech can explain: per clip of a dataset split, the Pearson r with the
tracked jawOpen of
  oracle    the procedural target of the clip's own audio (transcript: the clip's, else Whisper; pocketsphinx
            forced alignment; the synthetic corpus's calibrated viseme model, ``ksdiff.data.synth.pseudo``), i.e.
            exact speech timing and a plausible mouth for every phone,
  envelope  the speech envelope (dB),
  model     a checkpoint's jawOpen (optional; its default settings, seed 0),
and their means over the split. A model cannot be expected to beat the oracle by much on a clip where the face
does not follow the speech (a tracker that misses the jaw, a lag the sync could not fix, a mouth not speaking):
the oracle's mean is a practical ceiling of jawOpen r on that split. docs/RESULTS.md, "What the tracked clips allow".

Usage: python scripts/speech_ceiling.py DATASET SPLIT [--checkpoint CK] [--style S] [--guidance G] [--out JSON]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ksdiff.audio.envelope import pearson, speech_envelope
from ksdiff.data.dataset import open_dataset
from ksdiff.data.synth.config import SynthConfig
from ksdiff.data.synth.pseudo import pseudo_clip
from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path


def _jaw(coeffs: np.ndarray, channels: tuple[str, ...], T: int) -> np.ndarray:
    return np.asarray(coeffs[:T, list(channels).index("jawOpen")], np.float64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset", type=Path)
    ap.add_argument("split")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--style", default=None)
    ap.add_argument("--guidance", type=float, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    ds = open_dataset(a.dataset)
    model = None
    if a.checkpoint:
        from ksdiff.generate import load_model

        model = load_model(a.checkpoint)
    cfg = SynthConfig(fps=ds.fps, visemes="calibrated")
    rows: dict[str, dict[str, float]] = {}
    print("| clip | s | oracle r | envelope r | model r |\n|---|---:|---:|---:|---:|")
    for i, cid in enumerate(ds.clip_ids(a.split)):
        clip = ds.clip(cid)
        gt, wave = clip.motion(), clip.audio()
        try:
            oracle = pseudo_clip(wave, clip.transcript(), "oracle", cid, cfg, index=i).motion
        except KsdiffError as e:
            print(f"| {cid} | skipped: {e.problem} |")
            continue
        oracle = oracle if abs(oracle.fps - gt.fps) < 1e-6 else oracle.resample(gt.fps)
        T = min(gt.num_frames, oracle.num_frames)
        truth = _jaw(gt.coeffs, gt.channels, T)
        row = {"seconds": gt.duration, "oracle": pearson(_jaw(oracle.coeffs, oracle.channels, T), truth),
               "envelope": pearson(speech_envelope(wave, gt.fps, num_frames=T, db=True), truth)}
        if model is not None:
            kw = {} if a.guidance is None else {"guidance": a.guidance}
            pred = model.animate(wave, text=clip.transcript(), seed=0, style=a.style, num_frames=gt.num_frames, **kw)
            row["model"] = pearson(_jaw(pred.coeffs, pred.channels, T), truth)
        rows[cid] = row
        print(f"| {cid} | {row['seconds']:.1f} | {row['oracle']:+.3f} | {row['envelope']:+.3f} | "
              + (f"{row['model']:+.3f} |" if "model" in row else "– |"), flush=True)
    keys = ["oracle", "envelope"] + (["model"] if model is not None else [])
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in keys}
    print(f"| **mean of {len(rows)} clips** | | " + " | ".join(f"**{mean[k]:+.3f}**" for k in keys)
          + (" | – |" if model is None else " |"))
    if a.out:
        with atomic_path(a.out) as tmp:
            Path(tmp).write_text(json.dumps({"per_clip": rows, "mean": mean}, indent=1))


if __name__ == "__main__":
    main()
