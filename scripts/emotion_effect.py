"""How much the emotion input moves the face, on real speech, and what it costs in lip sync (issue 15).

For every English clip of SPEECH_DIR (transcript from its ``transcripts.tsv``, else Whisper's, once per clip) and
every seed, the checkpoint animates the clip at valence in LEVELS (arousal 0) and at arousal in LEVELS (valence 0).
Per seed, the least-squares slope over all clips of
  - mean mouthSmile (left and right) against valence, and mean browInnerUp against valence (expected negative),
  - mean motion energy (``ksdiff.face.emotion.motion_energy``: RMS speed of mouth, jaw and head, units/s) and
    mean eyeWide against arousal,
with the mean over seeds and a 95 % t interval over seeds, and whether the level means rise monotonically in every
seed. Then the lip-sync cost: jawOpen r with the truth on DS_FACEGOOD's test split without an emotion and at
valence -1 / +1 (arousal 0), and the largest relative change.
Writes OUT/emotion_effect.json; prints a markdown table.
Usage: python scripts/emotion_effect.py CHECKPOINT SPEECH_DIR DS_FACEGOOD OUT [--seeds 3] [--levels -1,0,1]
       [--not-english German1.wav,french1.wav,japan1.wav] [--style NAME]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import stats

import ksdiff
from ksdiff.audio.envelope import pearson
from ksdiff.audio.features import load_speech
from ksdiff.data.dataset import open_dataset
from ksdiff.data.synth.pseudo import find_recordings
from ksdiff.face.emotion import motion_energy
from ksdiff.utils.io import atomic_path

MEASURES = {  # name: (condition it should follow, function of a Motion)
    "mouthSmile": ("valence", lambda m: float((m.channel("mouthSmileLeft") + m.channel("mouthSmileRight")).mean() / 2)),
    "browInnerUp": ("valence", lambda m: float(m.channel("browInnerUp").mean())),
    "energy": ("arousal", lambda m: float(motion_energy(m.coeffs, m.channels, m.fps).mean())),
    "eyeWide": ("arousal", lambda m: float((m.channel("eyeWideLeft") + m.channel("eyeWideRight")).mean() / 2)),
}


def sweep(animator, clips: list[tuple[str, np.ndarray, str]], levels: list[float], seeds: int,
          style: str | None) -> dict:
    """{measure: (seeds, levels) mean over clips} for the measure's own condition; each distinct (valence, arousal)
    is generated once per clip and seed ((0, 0) serves both sweeps)."""
    res = {k: np.zeros((seeds, len(levels))) for k in MEASURES}
    for s in range(seeds):
        done: dict[tuple[float, float], dict[str, float]] = {}  # emotion -> every measure's mean over clips
        for j, lv in enumerate(levels):
            for k, (cond, _) in MEASURES.items():
                emo = (lv, 0.0) if cond == "valence" else (0.0, lv)
                if emo not in done:
                    ms = [animator.animate(wave, text=text, seed=s, emotion=emo, style=style) for _, wave, text in clips]
                    done[emo] = {n: float(np.mean([f(m) for m in ms])) for n, (_, f) in MEASURES.items()}
                res[k][s, j] = done[emo][k]
        print(f"seed {s} done", flush=True)
    return res


def _monotone(row: np.ndarray, tol: float = 1e-4) -> bool:
    """Non-decreasing (or non-increasing) across the levels, and not flat."""
    d = np.diff(row)
    return bool(abs(row[-1] - row[0]) > tol and (np.all(d >= -tol) or np.all(d <= tol)))


def summarise(res: dict, levels: list[float]) -> dict:
    out = {}
    for k, a in res.items():
        slopes = np.array([np.polyfit(levels, row, 1)[0] for row in a])
        half = stats.t.ppf(0.975, len(slopes) - 1) * slopes.std(ddof=1) / np.sqrt(len(slopes)) \
            if len(slopes) > 1 else float("nan")
        mono = bool(all(_monotone(row) for row in a))
        out[k] = {"condition": MEASURES[k][0], "slope": float(slopes.mean()), "ci95": [float(slopes.mean() - half),
                  float(slopes.mean() + half)], "per_seed": slopes.tolist(), "monotone_every_seed": mono,
                  "level_means": a.mean(axis=0).tolist()}
    return out


def facegood_jaw(animator, data: Path, seeds: int, style: str | None) -> dict:
    ds = open_dataset(data)
    out = {}
    for name, emo in (("none", None), ("v-1", (-1.0, 0.0)), ("v+1", (1.0, 0.0))):
        rs = []
        for cid in ds.splits["test"]:
            clip = ds.clip(cid)
            gt = clip.motion()
            for s in range(seeds):
                m = animator.animate(clip.audio(), text="", seed=s, emotion=emo, style=style)
                n = min(len(gt.coeffs), m.num_frames)
                rs.append(pearson(m.channel("jawOpen")[:n], gt.channel("jawOpen")[:n]))
        out[name] = float(np.mean(rs))
    out["max_rel_change"] = max(abs(out[k] - out["none"]) / abs(out["none"]) for k in ("v-1", "v+1"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("speech", type=Path)
    ap.add_argument("facegood", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--levels", default="-1,0,1")
    ap.add_argument("--not-english", default="German1.wav,french1.wav,japan1.wav")
    ap.add_argument("--style", default=None)
    a = ap.parse_args()
    levels = [float(x) for x in a.levels.split(",")]
    skip = set(filter(None, a.not_english.split(",")))
    animator = ksdiff.load_model(a.checkpoint)
    clips = []
    for f, text, _ in find_recordings([a.speech]):  # transcript: a same-stem .txt or transcripts.tsv, else Whisper
        if f.name in skip or f.parent != a.speech:
            continue
        wave = load_speech(f)
        if not text:
            from ksdiff.audio.transcript import transcribe

            text = transcribe(wave).text
        clips.append((f.name, wave, text))
    effect = summarise(sweep(animator, clips, levels, a.seeds, a.style), levels)
    jaw = facegood_jaw(animator, a.facegood, a.seeds, None)
    a.out.mkdir(parents=True, exist_ok=True)
    with atomic_path(a.out / "emotion_effect.json") as tmp:
        Path(tmp).write_text(json.dumps({"checkpoint": a.checkpoint, "clips": [c[0] for c in clips],
                                         "levels": levels, "seeds": a.seeds, "effect": effect,
                                         "facegood_jaw_r": jaw}, indent=1))
    print(f"{len(clips)} English clips, {a.seeds} seeds, levels {levels}\n")
    print("| measure | follows | slope per unit (mean over seeds) | 95 % interval | monotone in every seed | "
          "level means |")
    print("|---|---|---:|---|---|---|")
    for k, e in effect.items():
        print(f"| {k} | {e['condition']} | {e['slope']:+.4f} | [{e['ci95'][0]:+.4f}, {e['ci95'][1]:+.4f}] | "
              f"{'yes' if e['monotone_every_seed'] else 'no'} | "
              + ", ".join(f"{v:.4f}" for v in e["level_means"]) + " |")
    print(f"\nFACEGOOD test jawOpen r: none {jaw['none']:.3f}, valence -1 {jaw['v-1']:.3f}, valence +1 "
          f"{jaw['v+1']:.3f}; largest relative change {100 * jaw['max_rel_change']:.1f} %")


if __name__ == "__main__":
    main()
