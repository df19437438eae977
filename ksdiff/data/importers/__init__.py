"""Importers: real motion sources into the dataset format (DESIGN.md section 6).

One module per source, each yielding :class:`ImportedClip` objects whose audio is 16 kHz mono and whose motion is
already at the dataset's fps and exactly as long as the audio (T = round(seconds × fps)):

=============  ======  ==========================================================================
kind           spec    source
=============  ======  ==========================================================================
``livelink``   arkit   Live Link Face CSV (+ its wav/mov), or a take folder as the app exports it
``facegood``   arkit   the FACEGOOD-Audio2Face data folder (116-channel rig mapped onto ARKit)
``deca``       flame   DECA / EMOCA per-frame codes (exp, pose, cam) + audio
``npz``        any     a motion npz with named channels (``coeffs``, ``channels``, ``fps``) + audio
=============  ======  ==========================================================================

:func:`import_dataset` writes them through :class:`ksdiff.data.dataset.DatasetWriter` (atomic: a failed import
leaves nothing behind).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ksdiff.errors import KsdiffError

#: kind -> (module, spec it produces or None when the source says).
KINDS: dict[str, str] = {"livelink": "livelink", "facegood": "facegood", "deca": "deca", "npz": "npz"}
DEFAULT_FPS = 25.0

#: Audio (and video with an audio stream) files looked for beside a motion file, in order of preference.
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".mp3", ".m4a", ".aac", ".ogg", ".opus", ".aiff", ".aif",
                                   ".mov", ".mp4", ".mkv", ".webm")


@dataclass
class ImportedClip:
    """One clip ready for :meth:`DatasetWriter.add_clip`.

    Attributes:
        id: clip id (letters, digits, ``_ - .``).
        wave: (N,) float32 audio at 16 kHz.
        motion: :class:`ksdiff.face.motion.Motion` at the dataset fps with T = round(N / 16000 × fps).
        transcript: text or None.
        meta: ``meta.json`` content (speaker, source, ...).
        source: the file the motion came from (for error messages).
        notes: things the user should know (e.g. motion much shorter than the audio), printed by the CLI.
    """

    id: str
    wave: np.ndarray
    motion: object
    transcript: str | None = None
    meta: dict = field(default_factory=dict)
    source: str | None = None
    notes: list[str] = field(default_factory=list)


def clip_id(name: str) -> str:
    """A valid clip id from a file or folder name (other characters become ``_``)."""
    cid = re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("._-")
    return cid or "clip"


def unique_id(cid: str, taken: set[str]) -> str:
    """``cid`` or ``cid-2``, ``cid-3`` ... not in ``taken`` (which is updated)."""
    out, k = cid, 2
    while out in taken:
        out, k = f"{cid}-{k}", k + 1
    taken.add(out)
    return out


def find_audio(path: str | os.PathLike, folder: str | os.PathLike | None = None) -> Path | None:
    """The audio that belongs to the motion file or folder ``path``: a file with the same stem and an audio or
    video suffix beside it; for a folder also ``audio.*`` inside it or the folder's only audio file."""
    p = Path(path)
    stem = p.stem if p.is_file() else p.name
    for suf in AUDIO_SUFFIXES:
        cand = p.with_name(stem + suf)
        if cand.is_file():
            return cand
    search = Path(folder) if folder is not None else (p if p.is_dir() else None)
    if search is not None and search.is_dir():
        for suf in AUDIO_SUFFIXES:
            cand = search / f"audio{suf}"
            if cand.is_file():
                return cand
        found = sorted(f for f in search.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
        # Live Link take folders hold the video plus a "_raw" copy; prefer the one without it.
        preferred = [f for f in found if not f.stem.endswith("_raw")]
        found = preferred or found
        if len(found) == 1:
            return found[0]
    return None


def find_transcript(path: str | os.PathLike) -> str | None:
    """Text of a same-stem ``.txt`` beside ``path`` (or ``transcript.txt`` inside a folder), if any."""
    p = Path(path)
    for cand in (p.with_suffix(".txt"), p / "transcript.txt" if p.is_dir() else None):
        if cand is not None and cand.is_file():
            text = cand.read_text(encoding="utf-8", errors="replace").strip()
            return text or None
    return None


def fit_motion(coeffs: np.ndarray, channels: tuple[str, ...], spec: str, dst_fps: float, num_frames: int,
               src_fps: float | None = None, times: np.ndarray | None = None, source=None):
    """Resample source motion onto the dataset's frame grid and trim/pad it to ``num_frames``.

    Args:
        coeffs: (T, C) source values at ``src_fps`` or at ``times`` (T,) seconds from the first frame.
        channels: C names (the spec's, in its order).
        spec: face spec name; its rotation groups are interpolated by slerp.
        num_frames: frames wanted (round(audio seconds × dst_fps)); frames beyond the source hold its last value.

    Returns:
        Motion (num_frames, C) at ``dst_fps``.
    """
    from ksdiff.face.motion import Motion, resample_coeffs
    from ksdiff.face.specs import SPEC_NAMES, get_spec

    coeffs = np.asarray(coeffs, dtype=np.float64)
    if coeffs.ndim != 2 or coeffs.shape[0] == 0:
        raise KsdiffError(f"no motion frames (shape {coeffs.shape})", source)
    check_finite(coeffs, channels, source)
    channels = tuple(channels)
    groups = []
    if spec in SPEC_NAMES:
        for group in get_spec(spec).rotations:
            if all(g in channels for g in group):
                groups.append([channels.index(g) for g in group])
    out = resample_coeffs(coeffs, src_fps if src_fps is not None else dst_fps, dst_fps, num_frames=num_frames,
                          rotation_groups=groups, times=times)
    return Motion(out, channels, dst_fps, spec)


def check_finite(coeffs: np.ndarray, channels: Iterable[str], source=None) -> None:
    """Raise :class:`KsdiffError` naming the first frame and channels when ``coeffs`` (T, C) has NaN/inf."""
    bad = ~np.isfinite(np.asarray(coeffs, dtype=np.float64))
    if bad.any():
        chans = list(channels)
        rows = np.where(bad.any(axis=1))[0]
        cols = [chans[c] if c < len(chans) else str(c) for c in np.where(bad.any(axis=0))[0]]
        raise KsdiffError(f"{int(bad.sum())} NaN/inf values in {len(rows)} frames (first frame {rows[0]}; "
                          f"channels {', '.join(cols[:4])}{' ...' if len(cols) > 4 else ''})", source)


def length_notes(motion_seconds: float, audio_seconds: float) -> list[str]:
    """A note when the source motion and the audio differ in length by more than 0.5 s and 5 %."""
    diff = motion_seconds - audio_seconds
    if abs(diff) <= max(0.5, 0.05 * audio_seconds):
        return []
    how = "trimmed to the audio" if diff > 0 else "its last frame held to the end of the audio"
    return [f"motion lasts {motion_seconds:.2f} s but the audio {audio_seconds:.2f} s ({how})"]


def num_frames_for(wave: np.ndarray, fps: float) -> int:
    """T = round(audio seconds × fps) for 16 kHz ``wave`` (N,)."""
    from ksdiff.audio.decode import SAMPLE_RATE

    return int(round(len(wave) / SAMPLE_RATE * fps))


def get_importer(kind: str) -> Callable[..., Iterator[ImportedClip]]:
    """The ``iter_clips(srcs, fps=..., **options)`` generator of importer ``kind``."""
    if kind not in KINDS:
        raise KsdiffError(f"unknown import kind {kind!r} (known: {', '.join(KINDS)})")
    return importlib.import_module(f"{__name__}.{KINDS[kind]}").iter_clips


def import_dataset(kind: str, srcs: list[str | os.PathLike], out: str | os.PathLike, fps: float = DEFAULT_FPS,
                   force: bool = False, name: str | None = None, spec: str | None = None,
                   progress: Callable[[ImportedClip], None] | None = None, **options):
    """Import ``srcs`` with importer ``kind`` into a new dataset folder ``out`` (atomically).

    Args:
        kind: ``livelink``, ``facegood``, ``deca`` or ``npz``.
        srcs: source files/folders, as the importer takes them.
        fps: the dataset's motion frame rate.
        force: replace an existing ``out`` (otherwise refuse it).
        spec: for ``npz``: the face spec when the files do not say.
        options: importer options (``audio``, ``src_fps``, ``speaker``, ...).

    Returns:
        the written :class:`ksdiff.data.dataset.Dataset`.
    """
    from ksdiff.data.dataset import DatasetWriter

    out = Path(out)
    if not fps or not np.isfinite(fps) or fps <= 0:
        raise KsdiffError(f"--fps must be positive, got {fps}")
    if out.exists() and not force:
        raise KsdiffError("output already exists; use --force to replace it", out)
    for s in srcs:
        if Path(s).resolve() == out.resolve():
            raise KsdiffError("the output folder is also a source", out)
    iter_clips = get_importer(kind)
    if spec is not None:
        options["spec"] = spec
    new_parents = [p for p in out.resolve().parents if not p.exists()]  # removed again if the import fails
    clips = iter_clips(srcs, fps=float(fps), **options)
    writer = None
    try:
        taken: set[str] = set()
        for clip in clips:
            if writer is None:
                writer = DatasetWriter(out, spec=clip.motion.spec, fps=fps, name=name or out.name,
                                       extra={"source": kind})
            elif clip.motion.spec != writer.spec:
                raise KsdiffError(f"clip is in spec {clip.motion.spec!r} but earlier clips are in "
                                  f"{writer.spec!r}; import them into separate datasets", clip.source)
            cid = unique_id(clip.id, taken)
            writer.add_clip(cid, clip.wave, clip.motion, transcript=clip.transcript, meta=clip.meta,
                            source=clip.source)
            if progress is not None:
                clip.id = cid
                progress(clip)
        if writer is None:
            raise KsdiffError("no clips found to import", srcs[0] if srcs else None)
        return writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        for p in new_parents:  # deepest first
            try:
                p.rmdir()
            except OSError:
                break
        raise
