"""Store each style token's typical face (``typical_faces``, the training data's median face per token; see
``ksdiff.train.data.typical_faces``) in a checkpoint trained before checkpoints stored it, from the same datasets
(their train split; motion only). The weights are untouched.

Usage: python scripts/add_typical_faces.py CHECKPOINT OUT [DATASET ...]
DATASETs default to the checkpoint's own data.datasets; give them (same order) when they have moved.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ksdiff.train.checkpoint import load_checkpoint, save_checkpoint
from ksdiff.train.data import dataset_typical_faces


def main(ck: Path, out: Path, datasets: list[str]) -> None:
    state, config, meta = load_checkpoint(ck)
    data = config.get("data") or {}
    paths = datasets or list(data.get("datasets") or [])
    style_by = "dataset" if data.get("style") == "dataset" else "speaker"
    config["typical_faces"] = dataset_typical_faces(paths, style_by, fps=float(config["fps"]))
    extra = {k: v for k, v in meta.items() if k not in ("kind", "format_version", "config")}
    save_checkpoint(out, state, config, extra)
    print(f"{out}: typical faces of {', '.join(config['typical_faces'])}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
