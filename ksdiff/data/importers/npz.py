"""A motion ``.npz`` with named channels + audio -> clips of its face spec.

The file holds ``coeffs`` (T, C), ``channels`` (C names) and ``fps`` (ksdiff's own motion format, or anything
written the same way), and ``spec`` unless ``--spec`` names it; with neither, the spec whose channel set matches
is used. Channels are matched to the spec case-insensitively and reordered; unknown channels are dropped (and
listed in ``meta.json``); missing ones are an error unless ``fill_missing`` (then 0). Values are kept as they are
(no clipping), NaN/inf is an error. The audio is ``--audio`` or a same-stem audio/video file beside the npz (or
the only audio file in its folder, as in a ksdiff dataset clip folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from ksdiff.data.importers import (
    ImportedClip,
    check_finite,
    clip_id,
    find_audio,
    find_transcript,
    fit_motion,
    length_notes,
    num_frames_for,
)
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import load_motion
from ksdiff.face.specs import SPEC_NAMES, get_spec


def to_spec(coeffs: np.ndarray, channels: tuple[str, ...], spec: str, fill_missing: bool = False,
            source=None) -> tuple[np.ndarray, list[str]]:
    """Reorder (T, C) columns named ``channels`` into ``spec``'s order.

    Returns:
        (T, spec.dim) float64 and the list of dropped (unknown) channel names.
    """
    s = get_spec(spec)
    pos: dict[str, int] = {}
    for i, c in enumerate(channels):
        key = c.lower()
        if key in pos:
            raise KsdiffError(f"channel {c!r} appears twice", source)
        pos[key] = i
    missing = [c for c in s.channels if c.lower() not in pos]
    if missing and not fill_missing:
        raise KsdiffError(f"{len(missing)} channels of the {spec} spec are missing: {', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''} (use --fill-missing to set them to 0)", source)
    out = np.zeros((coeffs.shape[0], s.dim))
    for j, c in enumerate(s.channels):
        if c.lower() in pos:
            out[:, j] = coeffs[:, pos[c.lower()]]
    wanted = {c.lower() for c in s.channels}
    dropped = [c for c in channels if c.lower() not in wanted]
    return out, dropped


def guess_spec(channels: tuple[str, ...]) -> str | None:
    """The spec whose channels are all present in ``channels`` (case-insensitive), if exactly one."""
    have = {c.lower() for c in channels}
    hits = [n for n in SPEC_NAMES if {c.lower() for c in get_spec(n).channels} <= have]
    return hits[0] if len(hits) == 1 else None


def find_files(src: str | os.PathLike) -> list[Path]:
    p = Path(src)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(p.glob("*.npz")) or sorted(p.glob("*/motion.npz"))
        if not files:
            raise KsdiffError("no .npz files here", p)
        return files
    raise KsdiffError("no such file or folder", p)


def iter_clips(srcs: list[str | os.PathLike], fps: float = 25.0, audio: list[str] | None = None,
               spec: str | None = None, speaker: str | None = None, fill_missing: bool = False,
               **_ignored) -> Iterator[ImportedClip]:
    """Yield one clip per npz (a folder gives its ``*.npz``, or ``*/motion.npz`` as in a dataset)."""
    from ksdiff.audio.decode import SAMPLE_RATE, load_audio

    if spec is not None and spec not in SPEC_NAMES:
        raise KsdiffError(f"unknown face spec {spec!r} (known: {', '.join(SPEC_NAMES)})")
    files = [f for s in srcs for f in find_files(s)]
    if audio and len(audio) != len(files):
        raise KsdiffError(f"--audio given {len(audio)} times but there are {len(files)} npz files")
    for i, f in enumerate(files):
        m = load_motion(f, validate=False)
        if m.coeffs.shape[1] != len(m.channels):
            raise KsdiffError(f"coeffs has {m.coeffs.shape[1]} columns but {len(m.channels)} channel names", f)
        if not np.isfinite(m.fps) or m.fps <= 0:
            raise KsdiffError(f"fps must be positive, got {m.fps}", f)
        if m.num_frames == 0:
            raise KsdiffError("motion has no frames", f)
        check_finite(m.coeffs, m.channels, f)
        if spec and m.spec and m.spec != spec:
            raise KsdiffError(f"file says spec {m.spec!r} but --spec is {spec!r}", f)
        want = spec or m.spec or guess_spec(m.channels)
        if not want:
            raise KsdiffError("the file names no face spec and its channels match none; give --spec", f)
        if want not in SPEC_NAMES:
            raise KsdiffError(f"unknown face spec {want!r} (known: {', '.join(SPEC_NAMES)})", f)
        coeffs, dropped = to_spec(m.coeffs, m.channels, want, fill_missing=fill_missing, source=f)
        audio_path = Path(audio[i]) if audio else find_audio(f, folder=f.parent)
        if audio_path is None:
            raise KsdiffError(f"no audio beside this file (looked for {f.stem}.wav/.flac/.mp4/...); give --audio", f)
        wave = load_audio(audio_path)
        T = num_frames_for(wave, fps)
        motion = fit_motion(coeffs, get_spec(want).channels, want, fps, T, src_fps=m.fps, source=f)
        meta = {"source": "npz", "source_file": f.name, "audio_file": audio_path.name, "source_fps": m.fps,
                "motion_seconds": round(m.duration, 3)}
        if dropped:
            meta["dropped_channels"] = dropped
        if speaker:
            meta["speaker"] = speaker
        name = f.parent.name if f.stem == "motion" else f.stem
        transcript = find_transcript(f.parent if f.stem == "motion" else f)
        yield ImportedClip(id=clip_id(name), wave=wave, motion=motion, transcript=transcript,
                           meta=meta, source=str(f),
                           notes=length_notes(m.duration, len(wave) / SAMPLE_RATE))
