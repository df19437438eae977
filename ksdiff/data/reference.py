"""A reference clip of a person's face motion, from whatever a user brings: a Live Link Face CSV (iPhone), a video
of their face (tracked with MediaPipe, ``ksdiff[track]``), or a ksdiff motion file (.npz). Used as the reference
style of :meth:`ksdiff.generate.Animator.animate` (``--style-from``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")


def load_reference(path: str | os.PathLike, max_seconds: float | None = 30.0) -> Motion:
    """The motion of a reference clip at its own frame rate (the first ``max_seconds`` of it).

    Raises:
        KsdiffError: the file is missing, of an unknown kind, unreadable, or holds no motion.
    """
    from ksdiff.face.specs import get_spec

    p = Path(path)
    if not p.is_file():
        raise KsdiffError("reference clip not found", p)
    suffix = p.suffix.lower()
    if suffix == ".npz":
        from ksdiff.face.motion import load_motion

        m = load_motion(p)
    elif suffix == ".csv":
        from ksdiff.data.importers.livelink import read_livelink_csv

        take = read_livelink_csv(p)
        if len(take.times) < 2:
            raise KsdiffError("the Live Link take has fewer than two frames", p)
        fps = 1.0 / float(np.median(np.diff(take.times)))
        m = Motion(take.to_coeffs().astype(np.float32), get_spec("arkit").channels, round(fps, 3), "arkit")
    elif suffix in VIDEO_SUFFIXES:
        from ksdiff.data.tracker import track_clip

        m = track_clip(p, fps=25.0, max_seconds=max_seconds, progress=False, need_speech=False).motion
    else:
        raise KsdiffError(f"a reference clip must be a Live Link CSV, a video ({', '.join(VIDEO_SUFFIXES)}) or a "
                          f"motion .npz, not {suffix or 'a file without a suffix'}", p)
    if max_seconds is not None and m.duration > max_seconds:
        m = Motion(m.coeffs[: int(round(max_seconds * m.fps))], m.channels, m.fps, m.spec)
    return m


def load_reference_audio(path: str | os.PathLike, audio: str | os.PathLike | None = None,
                         max_seconds: float | None = 30.0) -> np.ndarray | None:
    """The reference clip's own speech, aligned with its motion (16 kHz mono, its first ``max_seconds``; silence
    allowed): ``audio`` when given (e.g. the .mov Live Link Face records beside its CSV), else a video
    reference's own sound; None for a CSV or npz without ``audio``, or a video without an audio stream.

    Raises:
        KsdiffError: ``audio`` is missing or unreadable.
    """
    from ksdiff.audio.decode import SAMPLE_RATE, load_audio

    src = Path(audio) if audio is not None else Path(path)
    if audio is None and src.suffix.lower() not in VIDEO_SUFFIXES:
        return None
    wave = load_audio(src, allow_silent=True, allow_missing=audio is None)  # a muted video: its motion alone
    if not len(wave):
        return None
    return wave if max_seconds is None else wave[: int(round(max_seconds * SAMPLE_RATE))]
