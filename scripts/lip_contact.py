"""Do the lips pass through each other? On the ICT head, per source, the share of frames whose inner lips are crossed
by more than 1 mm and 3 mm (``ksdiff.metrics.inner_lip_gap`` < −1, < −3), the deepest crossing, and the share of
frames with mouthClose above jawOpen + 0.05 (ARKit's lips cross there; real captures never go: docs/RESULTS.md,
"Lips that pass through each other"). Sources: the truth of every clip of a dataset (``--data``, repeatable), and a
checkpoint's output on every audio file of a folder (``--checkpoint CK --speech DIR``, its default settings;
``--raw`` leaves out ``FaceSpec.clip``, as models generated before 2026-11-30 session 11).

Usage: python scripts/lip_contact.py [--data DS ...] [--checkpoint CK --speech DIR [--seed 0] [--raw]]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ksdiff.face.models import get_face_model
from ksdiff.face.motion import Motion
from ksdiff.metrics import inner_lip_gap


def row(name: str, motions: list[Motion], face) -> str:
    gap = np.concatenate([inner_lip_gap(m, face) for m in motions])
    over = np.concatenate([m.channel("mouthClose") - m.channel("jawOpen") for m in motions])
    return (f"| {name} | {len(gap)} | {np.mean(over > 0.05):.1%} | {np.mean(gap < -1):.1%} | {np.mean(gap < -3):.1%} "
            f"| {gap.min():.1f} |")


def model_motions(checkpoint: str, speech: Path, seed: int, raw: bool) -> list[Motion]:
    import ksdiff
    from ksdiff.data.synth.pseudo import find_recordings

    animator = ksdiff.load_model(checkpoint)
    if raw:  # the output as the network gives it, blendshapes clipped to [0, 1] only
        spec = animator.spec
        animator.spec = type(spec)(**{**spec.__dict__, "at_most": ()})
    return [animator.animate(f, seed=seed) for f, _, _ in find_recordings([speech]) if f.parent == speech]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, action="append", default=[])
    ap.add_argument("--checkpoint")
    ap.add_argument("--speech", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--raw", action="store_true")
    a = ap.parse_args()
    if bool(a.checkpoint) != bool(a.speech):
        ap.error("--checkpoint and --speech go together")
    face = get_face_model("arkit", face="ict")
    print("| source | frames | mouthClose > jawOpen + 0.05 | lips crossed > 1 mm | > 3 mm | deepest mm |\n"
          "|---|---:|---:|---:|---:|---:|")
    for ds in a.data:
        from ksdiff.data.dataset import open_dataset

        print(row(f"{ds.name} (truth)", [c.motion() for c in open_dataset(ds).clips(None)], face), flush=True)
    if a.checkpoint:
        name = f"{Path(a.checkpoint).name} on {a.speech.name}, seed {a.seed}" + (" (raw)" if a.raw else "")
        print(row(name, model_motions(a.checkpoint, a.speech, a.seed, a.raw), face))


if __name__ == "__main__":
    main()
