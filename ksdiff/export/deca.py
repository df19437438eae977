"""Export a ``flame`` motion as DECA-style per-frame FLAME codes.

One ``.npz`` holding, for T frames, the arrays DECA / EMOCA / SPECTRE produce per frame, stacked over time:

``exp``   (T, 50) FLAME expression coefficients (``exp00`` ... ``exp49``)
``pose``  (T, 6)  ``pose[0:3]`` global head rotation (axis-angle), ``pose[3:6]`` jaw rotation (axis-angle)
``cam``   (T, 3)  orthographic camera ``scale, tx, ty``
``shape`` (T, 100) identity (zeros: ksdiff predicts no identity; fill in your subject's code)
``fps``   () frames per second

This is one of the layouts the DECA importer (:mod:`ksdiff.data.importers.deca`) reads, so an export imports back
unchanged. The layout does not depend on ``jaw_path``: the jaw is always ``pose[3:6]``.
"""

from __future__ import annotations

import os

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.specs import FLAME_CAM, FLAME_EXP, FLAME_GLOBAL, FLAME_JAW, get_spec
from ksdiff.utils.io import atomic_path

DECA_SHAPE_DIM = 100  # DECA's identity code size


def deca_arrays(motion) -> dict[str, np.ndarray]:
    """A ``flame`` :class:`ksdiff.face.motion.Motion` (T, 59) as DECA arrays ``exp`` (T, 50), ``pose`` (T, 6),
    ``cam`` (T, 3), ``shape`` (T, 100) float32 and ``fps``."""
    spec = get_spec("flame")
    if motion.spec != "flame" or set(motion.channels) != set(spec.channels):
        raise KsdiffError(f"DECA export needs a 'flame' motion (got spec {motion.spec!r} with "
                          f"{len(motion.channels)} channels); export arkit motion as livelink or npz")
    T = motion.num_frames
    return {
        "exp": motion.select(FLAME_EXP).astype(np.float32),
        "pose": motion.select(FLAME_GLOBAL + FLAME_JAW).astype(np.float32),
        "cam": motion.select(FLAME_CAM).astype(np.float32),
        "shape": np.zeros((T, DECA_SHAPE_DIM), dtype=np.float32),
        "fps": np.float32(motion.fps),
    }


def write_deca_npz(motion, path: str | os.PathLike) -> None:
    """Write :func:`deca_arrays` of ``motion`` to ``path`` (.npz), atomically."""
    arrays = deca_arrays(motion)
    if not all(np.isfinite(a).all() for a in arrays.values()):
        raise KsdiffError("motion has NaN/inf values; nothing written", path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
