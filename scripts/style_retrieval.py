"""Does the style vector know who is who? For people the model never saw, with two or more clips each: every clip's
style vector (the model's style encoder on the clip's first SECONDS of motion), and for each clip whether the
nearest other clip (cosine similarity) is the same person's (rank-1 retrieval), against chance and against the
same retrieval on the raw per-channel mean + std of the normalised motion (what the encoder's pooling starts from).

Give one model per group of held-out clips, CHECKPOINT:DS1[,DS2] (the `test` clips of the datasets; e.g. each fold
model of scripts/crossval_style.sh with that fold's datasets: similarities are only compared within one model), and
--people JSON files for who is who (scripts/video_people.json, scripts/video_extra_people.json).
Usage: python scripts/style_retrieval.py CK:DS[,DS] [CK:DS[,DS] ...] --people A.json [B.json] [--seconds 4]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from ksdiff.data.dataset import open_dataset
from ksdiff.data.folds import read_groups
from ksdiff.generate import load_model


def fold_vectors(ck: str, datasets: list[str], people: dict[str, str], seconds: float
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(person labels, style vectors (N, R), raw moments (N, 2C)) of every test clip of ``datasets`` under one model."""
    animator = load_model(ck)
    model = animator.model
    labels, sv, raw = [], [], []
    for path in datasets:
        ds = open_dataset(path)
        for c in ds.splits["test"]:
            ref = animator.reference_motion(ds.clip(c).motion())[: int(round(seconds * animator.fps))]
            x = model.normalize(torch.from_numpy(ref)[None])
            with torch.no_grad():
                sv.append(model.style_encoder(x, torch.ones(x.shape[:2], dtype=torch.bool))[0].numpy())
            raw.append(np.concatenate([x[0].mean(0).numpy(), x[0].std(0).numpy()]))
            labels.append(f"{ds.name}/{people.get(c, c)}")
    return labels, np.array(sv), np.array(raw)


def rank1(labels: list[str], v: np.ndarray) -> list[bool]:
    """For each clip whose person has another clip here: is its nearest other clip (cosine) that person's?"""
    u = v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-9)
    sim = u @ u.T
    np.fill_diagonal(sim, -np.inf)
    return [labels[int(np.argmax(sim[i]))] == labels[i] for i in range(len(labels)) if labels.count(labels[i]) > 1]


def chance(labels: list[str]) -> list[float]:
    return [(labels.count(lab) - 1) / (len(labels) - 1) for lab in labels if labels.count(lab) > 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs", nargs="+")
    ap.add_argument("--people", nargs="+", required=True)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    people: dict[str, str] = {}
    for p in a.people:
        people.update(read_groups(p))
    hits = {"style encoder": [], "raw mean + std of the normalised motion": [], "chance": []}
    for pair in a.pairs:
        ck, dss = pair.split(":", 1)
        labels, sv, raw = fold_vectors(ck, dss.split(","), people, a.seconds)
        hits["style encoder"] += rank1(labels, sv)
        hits["raw mean + std of the normalised motion"] += rank1(labels, raw)
        hits["chance"] += chance(labels)
    print(f"{len(hits['chance'])} query clips (people with 2+ held-out clips), nearest among their fold's held-out "
          f"clips, first {a.seconds:g} s of each\n")
    print("| vectors | rank-1 same person |")
    print("|---|---:|")
    for k, v in hits.items():
        print(f"| {k} | {np.mean(v):.2f} |")

if __name__ == "__main__":
    main()
