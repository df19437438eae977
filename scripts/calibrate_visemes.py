"""Fit the synthetic face's viseme targets to tracked real speakers and check the fit on held-out clips
(docs/SYNTH.md, "Calibrated visemes"; the model: ksdiff/data/synth/calibrate.py).

For every clip of the given ARKit datasets (tracked videos: `ksdiff track` output, or Live Link captures imported
with `ksdiff import`): transcript (the clip's transcript.txt, else Whisper tiny.en), pocketsphinx phone alignment,
then the design of the coarticulation model. Targets are fitted on the FIT splits and scored on the others:
per target key, Pearson r and std ratio (model / real) of the model's mouth against the real mouth, for the
hand-set table and the fitted one. Alignments are cached in OUT/align/ (re-runs are fast).

Usage: python scripts/calibrate_visemes.py OUT DATASET [DATASET ...] [--fit-splits train] [--exclude ID ...]
                                          [--hand-shape KEY ...]
Writes OUT/fit.json (targets, R², support, held-out scores) and prints the tables.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from ksdiff.data.dataset import open_dataset
from ksdiff.data.synth.calibrate import CLASSES, ClipDesign, calibrate_table, clip_design, fit_targets
from ksdiff.data.synth.config import SynthConfig
from ksdiff.data.synth.visemes import TARGET_KEYS, TARGETS
from ksdiff.errors import KsdiffError
from ksdiff.metrics.articulation import IPHONE_CAPTURE_STD
from ksdiff.utils.io import write_json

ap = argparse.ArgumentParser()
ap.add_argument("out", type=Path)
ap.add_argument("datasets", nargs="+", type=Path)
ap.add_argument("--fit-splits", default="train")
ap.add_argument("--exclude", nargs="*", default=[])
ap.add_argument("--hand-shape", nargs="*", default=["jaw"],
                help="keys that keep the hand-set shape and only get the amplitude (default: jaw — MediaPipe's "
                     "jawOpen follows the speech envelope at r 0.19-0.39 per clip where FACEGOOD's animators reach "
                     "0.75; fitted to it, the corpus's jaw falls from r 0.73 to 0.38, docs/SYNTH.md)")
a = ap.parse_args()
cfg = SynthConfig()
(a.out / "align").mkdir(parents=True, exist_ok=True)


def aligned(clip, wave):
    cache = a.out / "align" / f"{clip.id}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    from ksdiff.audio.transcript import transcribe
    from ksdiff.data.synth.tts import align_phones

    text = clip.transcript() or transcribe(wave).text
    phones, words = align_phones(wave, text)
    res = {"text": text, "phones": phones, "words": words}
    write_json(cache, res)
    return res


fit_splits = set(a.fit_splits.split(","))
groups: dict[str, list[ClipDesign]] = {"fit": [], "held": []}
for root in a.datasets:
    ds = open_dataset(root)
    for split, ids in ds.splits.items():
        for cid in ids:
            if cid in a.exclude:
                continue
            clip = ds.clip(cid)
            wave, m = clip.audio(), clip.motion()
            try:
                al = aligned(clip, wave)
            except KsdiffError as e:
                print(f"{split:5s} {cid:40s} skipped: {e}", flush=True)
                continue
            observed = set(clip.meta().get("observed_channels") or m.channels)
            d = clip_design(cid, wave, 16000, [tuple(p) for p in al["phones"]], m.coeffs, m.channels, m.fps, cfg,
                            observed)
            groups["fit" if split in fit_splits else "held"].append(d)
            print(f"{split:5s} {cid:40s} {m.num_frames / m.fps:5.1f} s  {al['text'][:60]!r}", flush=True)

fit = fit_targets(groups["fit"])
hand = {c: {k: TARGETS[c].get(k, 0.0) for k in TARGET_KEYS} for c in CLASSES}


def scores(table: dict, clips: list[ClipDesign]) -> dict:
    out = {}
    for k, key in enumerate(TARGET_KEYS):
        if not all(c.observed[k] for c in clips):
            continue
        t = np.array([table[c].get(key, 0.0) for c in CLASSES])
        pred = np.concatenate([c.design[k] @ t for c in clips])
        real = np.concatenate([c.motion[:, k] for c in clips])
        r = float(np.corrcoef(pred, real)[0, 1]) if pred.std() > 0 and real.std() > 0 else float("nan")
        out[key] = {"r": r, "std_ratio": float(pred.std() / max(real.std(), 1e-9)), "real_std": float(real.std())}
    return out


#: amplitude aimed at per key: the 20 s real iPhone Live Link capture quoted in issue 14 (std over the capture, in
#: ARKit units, left channel where the capture gives one side); other keys: the tracked clips' own std
IPHONE = "iPhone Live Link capture (issue 14)"
CAPTURE_CHANNEL = {"jaw": "jawOpen", "funnel": "mouthFunnel", "pucker": "mouthPucker", "lowerDown": "mouthLowerDownLeft",
                   "upperUp": "mouthUpperUpLeft", "stretch": "mouthStretchLeft", "smile": "mouthSmileLeft"}
REFERENCE_STD = {key: (IPHONE_CAPTURE_STD[ch], IPHONE) for key, ch in CAPTURE_CHANNEL.items()}
calibrated, how = calibrate_table(groups["fit"], hand, REFERENCE_STD, hand_shape=tuple(a.hand_shape))
held = {"hand": scores(hand, groups["held"]), "fitted": scores(fit.targets, groups["held"]),
        "calibrated": scores(calibrated, groups["held"])}
print(f"\nfitted on {len(groups['fit'])} clips ({fit.frames} frames), scored on {len(groups['held'])} held-out")
print(f"{'key':11s} {'R2 fit':>7s} | {'held r: hand':>12s} {'fitted':>7s} {'calib':>6s} | {'std: hand':>9s} "
      f"{'calib':>6s} {'real':>6s} | calibrated shape (cv r hand/fitted), x scale -> reference")
for key in held["fitted"]:
    h, f, c = held["hand"][key], held["fitted"][key], held["calibrated"][key]
    hw = how.get(key)
    note = (f"pull {hw.prior_weight:g} (cv r free {hw.cv_r['0.0']:.2f}, chosen {hw.cv_r[str(hw.prior_weight)]:.2f}, "
            f"hand {hw.cv_r['inf']:.2f}) x{hw.scale:.2f} -> {hw.reference_std:.3f} {hw.reference}") if hw else \
        "hand (the data does not measure it: unobserved, still, or cv r < 0.1)"
    print(f"{key:11s} {fit.r2[key]:7.3f} | {h['r']:12.3f} {f['r']:7.3f} {c['r']:6.3f} | "
          f"{h['std_ratio'] * h['real_std']:9.3f} {c['std_ratio'] * c['real_std']:6.3f} {f['real_std']:6.3f} | {note}")
print(f"\n{'class':5s} {'support':>8s}  " + " ".join(f"{k[:8]:>8s}" for k in fit.r2))
for c in CLASSES:
    print(f"{c:5s} {fit.support[c]:8.0f}  " + " ".join(f"{fit.targets[c][k]:8.3f}" for k in fit.r2))
    print(f"{'hand':>5s} {'':8s}  " + " ".join(f"{hand[c][k]:8.3f}" for k in fit.r2))
    print(f"{'calib':>5s} {'':8s}  " + " ".join(f"{calibrated[c][k]:8.3f}" for k in fit.r2))
write_json(a.out / "fit.json", {"calibrated": calibrated, "how": {k: vars(v) for k, v in how.items()},
                                "targets": fit.targets, "r2": fit.r2, "frames": fit.frames, "support": fit.support,
                                "fit_clips": [c.id for c in groups["fit"]],
                                "held_clips": [c.id for c in groups["held"]], "held": held})


def literal(table: dict) -> str:
    """The table as the Python literal of ksdiff/data/synth/visemes.py (3 decimals, zeros left out, ≤ 120 chars)."""
    out = ["CALIBRATED_TARGETS: dict[str, dict[str, float]] = {"]
    for c, row in table.items():
        items = [f'"{k}": {round(v, 3)}' for k, v in row.items() if round(v, 3) > 0]
        line = f'    "{c}": {{'
        for i, it in enumerate(items):
            add = it + (", " if i < len(items) - 1 else "},")
            if len(line) + len(add.rstrip()) > 119:
                out.append(line.rstrip())
                line = "        "
            line += add
        out.append(line.rstrip() if items else f'    "{c}": {{}},')
    return "\n".join(out + ["}"]) + "\n"


(a.out / "calibrated_targets.py").write_text(literal(calibrated), encoding="utf-8")
print(f"\nwrote {a.out / 'fit.json'} and {a.out / 'calibrated_targets.py'}")
