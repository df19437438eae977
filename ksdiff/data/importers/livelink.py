"""Live Link Face (Epic's iPhone app) CSV + audio -> ``arkit`` clips.

The layout, timecodes and head-angle convention are defined once in :mod:`ksdiff.export.livelink` (shared with the
writer). Here: a strict reader (every row must be complete and numeric; a truncated file is an error, never a
silently shorter clip) and the importer.

Time comes from the ``Timecode`` column (the first row is t = 0; a pass through midnight is unwrapped), so dropped
frames and any capture rate are handled; the motion is then resampled onto the dataset's frame grid, the head
rotation by slerp. The audio (the take's .mov, or a .wav beside the CSV) is assumed to start at the first row.
Eye angles are read but not stored (the ``arkit`` spec has no eye rotation); head translation is 0 (the app
records none).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ksdiff.data.importers import (ImportedClip, check_finite, clip_id, find_audio, find_transcript, fit_motion,
                                   length_notes, num_frames_for)
from ksdiff.errors import KsdiffError
from ksdiff.export.livelink import (BLENDSHAPE_COLUMNS, EYE_COLUMNS, HEAD_COLUMNS, TIMECODE_COLUMN, euler_to_rotvec,
                                    parse_timecode, unwrap_times)
from ksdiff.face.specs import get_spec


@dataclass
class LiveLinkTake:
    """One Live Link Face CSV, as read.

    Attributes:
        times: (T,) float64 seconds from the first row.
        blendshapes: (T, 52) float64 in the arkit spec's order.
        head: (T, 3) float64 HeadYaw, HeadPitch, HeadRoll (radians; zeros when the file has no head columns).
        eyes: (T, 6) float64 Left/Right eye yaw, pitch, roll (zeros when absent).
        start: timecode of the first row, seconds since midnight.
    """

    times: np.ndarray
    blendshapes: np.ndarray
    head: np.ndarray
    eyes: np.ndarray
    start: float

    @property
    def duration(self) -> float:
        """Seconds covered: last row time + one median frame interval."""
        if len(self.times) < 2:
            return 0.0
        return float(self.times[-1] + np.median(np.diff(self.times)))

    def to_coeffs(self) -> np.ndarray:
        """(T, 58) float64 in the ``arkit`` spec: blendshapes clipped to [0, 1], head axis-angle, zero translation."""
        spec = get_spec("arkit")
        out = np.zeros((len(self.times), spec.dim))
        out[:, :52] = np.clip(self.blendshapes, 0.0, 1.0)
        out[:, spec.index(("headRotX", "headRotY", "headRotZ"))] = euler_to_rotvec(*self.head.T)
        return out


def is_livelink_csv(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a CSV whose header starts with ``Timecode`` and has blendshape columns."""
    p = Path(path)
    if not (p.is_file() and p.suffix.lower() == ".csv"):
        return False
    try:
        with open(p, encoding="utf-8-sig", errors="replace") as f:
            header = f.readline().strip().lower().split(",")
    except OSError:
        return False
    return bool(header) and header[0] == TIMECODE_COLUMN.lower() and "jawopen" in header


def _read_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise KsdiffError("Live Link CSV not found", path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError:
        raise KsdiffError("not a text CSV file", path) from None
    except csv.Error as e:
        raise KsdiffError(f"not a valid CSV ({e})", path) from None
    if not rows:
        raise KsdiffError("empty file (no header)", path)
    return rows


def _value_columns(header: list[str], path: Path) -> tuple[int, list[int | None]]:
    """(timecode column, the columns of the 52 blendshapes + head + eyes; None for an absent optional one)."""
    pos = {h.lower(): i for i, h in enumerate(header)}
    if TIMECODE_COLUMN.lower() not in pos:
        raise KsdiffError(f"not a Live Link Face CSV (no {TIMECODE_COLUMN!r} column in the header)", path)
    missing = [c for c in BLENDSHAPE_COLUMNS if c.lower() not in pos]
    if missing:
        raise KsdiffError(f"missing {len(missing)} blendshape columns: {', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''}", path)
    shape_cols: list[int | None] = [pos[c.lower()] for c in BLENDSHAPE_COLUMNS]
    return pos[TIMECODE_COLUMN.lower()], shape_cols + [pos.get(c.lower()) for c in HEAD_COLUMNS + EYE_COLUMNS]


def _row_values(row: list[str], r: int, header: list[str], value_cols: list[int | None], path: Path) -> list[float]:
    vals = []
    for c in value_cols:
        if c is None:
            vals.append(0.0)
            continue
        try:
            vals.append(float(row[c]))
        except ValueError:
            raise KsdiffError(f"line {r}, column {header[c]}: {row[c].strip()[:20]!r} is not a number",
                              path) from None
    return vals


def _parse_rows(rows: list[list[str]], header: list[str], tc_col: int, value_cols: list[int | None],
                path: Path) -> tuple[list[float], list[int], list[str], list[list[float]]]:
    """(timecodes in s, line numbers, timecode texts, values) of the non-empty data rows."""
    n = len(header)
    stamps: list[float] = []
    line_no: list[int] = []
    texts: list[str] = []
    values: list[list[float]] = []
    for r, row in enumerate(rows[1:], start=2):  # r = line number in the file
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != n:
            raise KsdiffError(f"line {r} has {len(row)} of {n} fields"
                              f"{' (truncated file?)' if len(row) < n else ''}", path)
        try:
            stamps.append(parse_timecode(row[tc_col]))
            line_no.append(r)
            texts.append(row[tc_col].strip())
        except ValueError as e:
            raise KsdiffError(f"line {r}: {e}", path) from None
        values.append(_row_values(row, r, header, value_cols, path))
    if not stamps:
        raise KsdiffError("no frames (header only)", path)
    return stamps, line_no, texts, values


def read_livelink_csv(path: str | os.PathLike) -> LiveLinkTake:
    """Read a Live Link Face CSV strictly.

    Column names are matched case-insensitively (``BlendShapeCount`` or ``BlendshapeCount``); all 52 blendshape
    columns and ``Timecode`` are required, head and eye columns are optional.

    Raises:
        KsdiffError: missing file or columns, a short (truncated) or over-long row, a value that is not a number,
            a bad timecode, time running backwards, or no rows.
    """
    path = Path(path)
    rows = _read_rows(path)
    header = [h.strip() for h in rows[0]]
    tc_col, value_cols = _value_columns(header, path)
    stamps, line_no, texts, values = _parse_rows(rows, header, tc_col, value_cols, path)
    arr = np.asarray(values, dtype=np.float64)
    check_finite(arr, [header[c] if c is not None else "?" for c in value_cols], path)
    times = unwrap_times(np.asarray(stamps))
    dt = np.diff(times)
    if (dt < 0).any():
        i = int(np.argmax(dt < 0)) + 1
        raise KsdiffError(f"timecode goes backwards at line {line_no[i]} ({texts[i]} after {texts[i - 1]})", path)
    keep = np.concatenate([[True], dt > 0])  # a repeated timecode is the same frame written twice
    arr, times = arr[keep], times[keep]
    return LiveLinkTake(times=times, blendshapes=arr[:, :52], head=arr[:, 52:55], eyes=arr[:, 55:61],
                        start=float(stamps[0]))


def find_takes(src: str | os.PathLike) -> list[Path]:
    """The Live Link CSVs of ``src``: the file itself, or the Live Link CSVs in a take folder (or in each take
    folder of a folder of takes)."""
    p = Path(src)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise KsdiffError("no such file or folder", p)
    found = sorted(f for f in p.iterdir() if is_livelink_csv(f) and not f.stem.endswith("_cal"))
    if not found:
        for sub in sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".")):
            found.extend(sorted(f for f in sub.iterdir() if is_livelink_csv(f) and not f.stem.endswith("_cal")))
    if not found:
        raise KsdiffError("no Live Link Face CSV here (a CSV whose header starts with Timecode)", p)
    return found


def iter_clips(srcs: list[str | os.PathLike], fps: float = 25.0, audio: list[str] | None = None,
               speaker: str | None = None, **_ignored) -> Iterator[ImportedClip]:
    """Yield one ``arkit`` clip per Live Link take.

    Args:
        srcs: CSV files, take folders, or folders of take folders.
        fps: dataset frame rate.
        audio: one audio/video file per take, in order (default: the same-stem .wav/.mov beside each CSV, or the
            take folder's only audio/video file).
        speaker: written to each clip's ``meta.json``.
    """
    from ksdiff.audio.decode import SAMPLE_RATE, load_audio

    takes = [t for s in srcs for t in find_takes(s)]
    if audio and len(audio) != len(takes):
        raise KsdiffError(f"--audio given {len(audio)} times but there are {len(takes)} takes "
                          f"({', '.join(t.name for t in takes[:4])}{' ...' if len(takes) > 4 else ''})")
    spec = get_spec("arkit")
    for i, csv_path in enumerate(takes):
        take = read_livelink_csv(csv_path)
        audio_path = Path(audio[i]) if audio else find_audio(csv_path, folder=csv_path.parent)
        if audio_path is None:
            raise KsdiffError(f"no audio beside this CSV (looked for {csv_path.stem}.wav/.mov/...); give --audio",
                              csv_path)
        wave = load_audio(audio_path)
        T = num_frames_for(wave, fps)
        motion = fit_motion(take.to_coeffs(), spec.channels, "arkit", fps, T, times=take.times, source=csv_path)
        meta = {"source": "livelink", "source_file": csv_path.name, "audio_file": audio_path.name,
                "motion_seconds": round(take.duration, 3), "timecode_start": round(take.start, 4)}
        if speaker:
            meta["speaker"] = speaker
        yield ImportedClip(id=clip_id(csv_path.stem), wave=wave, motion=motion,
                           transcript=find_transcript(csv_path), meta=meta, source=str(csv_path),
                           notes=length_notes(take.duration, len(wave) / SAMPLE_RATE))
