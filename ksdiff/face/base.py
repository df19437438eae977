"""The face-model interface every model implements (motion coefficients -> vertices in mm), and the asset lookup
they share. The models themselves are in :mod:`ksdiff.face.ict`, :mod:`ksdiff.face.flame` and
:mod:`ksdiff.face.schematic`; :func:`ksdiff.face.models.get_face_model` picks one.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Iterator

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion


def user_data_dir() -> Path:
    """Where ``ksdiff assets`` writes face assets: ``$XDG_DATA_HOME/ksdiff`` (default ``~/.local/share/ksdiff``)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "ksdiff"


def find_asset(path: str | os.PathLike | None, env_var: str, candidates: list[Path], what: str,
               missing_hint: str, required: bool = True) -> Path | None:
    """Locate a face-model file: ``path``, then ``$env_var``, then the first existing of ``candidates``.

    A given ``path`` or environment variable that does not exist is always an error; when nothing is found,
    raise ``"no <what>: <missing_hint>"`` if ``required``, else return None.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise KsdiffError(f"{what} not found", p)
        return p
    env = os.environ.get(env_var)
    if env:
        p = Path(env)
        if not p.is_file():
            raise KsdiffError(f"{what} not found (from ${env_var})", p)
        return p
    for cand in candidates:
        if cand.is_file():
            return cand
    if required:
        raise KsdiffError(f"no {what}: {missing_hint}")
    return None


class FaceModel(ABC):
    """Maps per-frame motion coefficients to a face's vertices.

    Attributes:
        name: ``"ict"``, ``"flame"`` or ``"schematic"``.
        spec: the face spec whose motion it reads (``"arkit"`` or ``"flame"``).
        neutral: (V, 3) float32 rest vertices in mm.
        triangles: (F, 3) int32 all triangles (empty for the schematic face).
        render_triangles: (F', 3) int32 the triangles drawn by the rasterisers (interior parts that look
            wrong from outside are left out).
        cull_triangles: (F',) bool or None: render triangles of a closed outer surface whose back faces may be
            culled (the rest is drawn two-sided).
        frame_vertices: vertex indices the camera frames (None: all).
        vertex_colors: (V, 3) float32 albedo in [0, 1] per vertex (skin, lips, teeth, eyes).
        lip_vertices: (L,) int64 vertex indices of the lips (lip vertex error).
        upper_face_vertices: (U,) int64 vertex indices of the upper face (FDD).
        is_mesh: False for the 2D schematic face, which is drawn, not rasterised.
    """

    name: str = ""
    spec: str = ""
    units: str = "mm"
    is_mesh: bool = True
    cull_triangles: np.ndarray | None = None
    frame_vertices: np.ndarray | None = None
    neutral: np.ndarray
    triangles: np.ndarray
    render_triangles: np.ndarray
    vertex_colors: np.ndarray
    lip_vertices: np.ndarray
    upper_face_vertices: np.ndarray

    @property
    def num_vertices(self) -> int:
        return int(self.neutral.shape[0])

    @abstractmethod
    def vertices(self, motion: Motion, indices: np.ndarray | None = None) -> np.ndarray:
        """Vertices of every frame of ``motion``.

        Args:
            motion: (T, C) coefficients in this model's spec (channels are matched by name; channels the
                model does not know are ignored, missing ones count as 0).
            indices: optional (K,) vertex indices: compute only those (cheap lip / upper-face subsets).

        Returns:
            (T, V, 3) float32 in mm, or (T, K, 3) with ``indices``.
        """

    def iter_vertices(self, motion: Motion, chunk: int = 128) -> Iterator[np.ndarray]:
        """Yield (t, V, 3) float32 blocks of at most ``chunk`` frames (bounded memory for long motions)."""
        for start in range(0, motion.num_frames, chunk):
            sub = Motion(motion.coeffs[start:start + chunk], motion.channels, motion.fps, motion.spec)
            yield self.vertices(sub)

    def check_motion(self, motion: Motion) -> None:
        """Raise :class:`KsdiffError` if ``motion`` cannot drive this model (wrong spec, no known channel)."""
        if motion.spec and motion.spec != self.spec and not (self.name == "schematic"):
            raise KsdiffError(f"the {self.name} face model reads {self.spec!r} motion, this motion is "
                              f"{motion.spec!r} (use --face schematic, or a face model for {motion.spec!r})")


def channel_matrix(motion: Motion, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The columns ``names`` of ``motion`` as (T, len(names)) float32, zeros for channels it lacks."""
    pos = {c: i for i, c in enumerate(motion.channels)}
    out = np.zeros((motion.num_frames, len(names)), dtype=np.float32)
    for j, n in enumerate(names):
        i = pos.get(n)
        if i is not None:
            out[:, j] = motion.coeffs[:, i]
    return out
