"""Emotion labels for datasets that have none: valence and arousal per frame, estimated from each clip's own facial
motion (:func:`ksdiff.face.emotion.estimate_emotion`, rest points the dataset's own) and written into the clip's
``meta.json`` as ``"emotion": {"valence": [...], "arousal": [...], "fps": F, "source": "estimated"}``, which
training reads when ``model.denoiser.emotion`` is on (:func:`ksdiff.train.data.load_clips`).

Clips that already carry an emotion (the synthetic corpus with ``emotion=True`` writes the exact ``[valence,
arousal]`` it drew) keep it unless ``overwrite`` is asked for; even then exact labels are never replaced by
estimates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ksdiff.errors import KsdiffError


def label_emotion(path: str | os.PathLike, overwrite: bool = False,
                  progress: Callable[[str, np.ndarray | None, str], None] | None = None) -> dict[str, str]:
    """Estimate and store per-frame valence/arousal for every clip of the ``arkit`` dataset at ``path``.

    Returns clip id -> what happened (``estimated``, ``kept: exact`` or ``kept: estimated``);
    ``progress(clip_id, (T, 2) labels or None, what)`` per clip.
    """
    from ksdiff.data.dataset import open_dataset
    from ksdiff.face.emotion import estimate_emotion, rest_of
    from ksdiff.utils.io import write_json

    ds = open_dataset(path)
    if ds.spec != "arkit":
        raise KsdiffError(f"emotion labels need an ARKit dataset, this one is {ds.spec!r}", path)
    clips = list(ds.clips())
    if not clips:
        raise KsdiffError("dataset has no clips", path)
    motions = {c.id: c.motion() for c in clips}
    rest = rest_of(list(motions.values()))
    out: dict[str, str] = {}
    for c in clips:
        meta = c.meta()
        old = meta.get("emotion")
        exact = old is not None and not (isinstance(old, dict) and old.get("source") == "estimated")
        if old is not None and (exact or not overwrite):
            out[c.id] = "kept: exact" if exact else "kept: estimated"
            if progress is not None:
                progress(c.id, None, out[c.id])
            continue
        m = motions[c.id]
        va = estimate_emotion(m.coeffs, m.channels, m.fps, rest=rest)
        meta["emotion"] = {"valence": np.round(va[:, 0], 3).tolist(), "arousal": np.round(va[:, 1], 3).tolist(),
                           "fps": m.fps, "source": "estimated", "rest": rest}
        write_json(Path(c.root) / "meta.json", meta)
        out[c.id] = "estimated"
        if progress is not None:
            progress(c.id, va, "estimated")
    return out
