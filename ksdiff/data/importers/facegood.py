"""FACEGOOD-Audio2Face data (MIT) -> ``arkit`` clips.

The folder holds ``wav/<id>.wav`` (16 kHz) and ``bs_value/bs_value_<id>.npy``: (T, 116) weights of the FACEGOOD
rig at 30 fps (T = floor(seconds × 30)), columns named in order by ``shirley_1015_bs_name.npy`` (``bsname.txt``
lists the same names in a *different* order, so it is not used). ``arkit_mapping.csv`` maps the rig onto ARKit:
one rig channel, ``max(a,b,...)`` of several, or nothing; rows whose status is ``Invalid`` never move in this
data and are set to 0. Names are matched case-insensitively (the file writes ``browDownleft``, ``cheek_up``).
Weights are clipped to [0, 1]; the head channels are 0 (the data has no head motion).
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from ksdiff.data.importers import ImportedClip, check_finite, fit_motion, num_frames_for
from ksdiff.errors import KsdiffError
from ksdiff.face.specs import ARKIT_NAMES, get_spec

FACEGOOD_FPS = 30.0
NAMES_FILE = "shirley_1015_bs_name.npy"
MAPPING_FILE = "arkit_mapping.csv"
SPEAKER = "facegood_shirley"


def _load_py2_npy(path: Path) -> np.ndarray:
    """Load a FACEGOOD ``.npy`` written by Python 2.

    The value files are plain float arrays and load without pickle. The names file is an object array, which
    numpy can only read by unpickling: this is the ONE place in ksdiff where pickle loading is allowed, because
    the source is that known public dataset (FACEGOOD-Audio2Face, MIT) and the file is named exactly.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "created on Python 2 ... additional header parsing"
        try:
            return np.load(path, allow_pickle=False)
        except ValueError:
            if path.name != NAMES_FILE:
                raise KsdiffError("holds Python objects (pickle); refusing to unpickle it", path) from None
            return np.load(path, allow_pickle=True, encoding="latin1")


def read_names(root: Path) -> list[str]:
    """The 116 rig channel names, in column order."""
    p = root / NAMES_FILE
    if not p.is_file():
        raise KsdiffError(f"not a FACEGOOD folder (no {NAMES_FILE})", root)
    try:
        names = [str(n) for n in np.asarray(_load_py2_npy(p)).reshape(-1).tolist()]
    except (OSError, ValueError, EOFError) as e:
        raise KsdiffError(f"unreadable channel names ({e})", p) from None
    return names


def read_mapping(root: Path, rig_names: list[str]) -> dict[str, list[int]]:
    """ARKit name -> rig column indices whose max gives it (empty list = always 0)."""
    p = root / MAPPING_FILE
    if not p.is_file():
        raise KsdiffError(f"not a FACEGOOD folder (no {MAPPING_FILE})", root)
    rig = {n.lower(): i for i, n in enumerate(rig_names)}
    arkit = {n.lower(): n for n in ARKIT_NAMES}
    out: dict[str, list[int]] = {n: [] for n in ARKIT_NAMES}
    with open(p, encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        need = {"arkit", "facegood_expression", "status"}
        if not reader.fieldnames or not need <= {h.strip() for h in reader.fieldnames}:
            raise KsdiffError(f"mapping must have columns {', '.join(sorted(need))}", p)
        for line, row in enumerate(reader, start=2):
            name = arkit.get(row["arkit"].strip().lower())
            if name is None:
                raise KsdiffError(f"line {line}: {row['arkit']!r} is not an ARKit blendshape", p)
            expr = (row["facegood_expression"] or "").strip()
            if row["status"].strip().lower() == "invalid" or not expr:
                continue
            m = re.fullmatch(r"max\((.*)\)", expr)
            parts = [x.strip() for x in (m.group(1) if m else expr).split(",") if x.strip()]
            idx = []
            for part in parts:
                if part.lower() not in rig:
                    raise KsdiffError(f"line {line}: rig channel {part!r} (for {name}) is not in {NAMES_FILE}", p)
                idx.append(rig[part.lower()])
            out[name] = idx
    return out


def to_arkit(values: np.ndarray, mapping: dict[str, list[int]]) -> np.ndarray:
    """(T, 116) rig weights -> (T, 58) ``arkit`` coeffs (blendshapes clipped to [0, 1], head 0)."""
    spec = get_spec("arkit")
    out = np.zeros((values.shape[0], spec.dim))
    for j, name in enumerate(ARKIT_NAMES):
        idx = mapping.get(name) or []
        if idx:
            out[:, j] = values[:, idx].max(axis=1)
    out[:, :52] = np.clip(out[:, :52], 0.0, 1.0)
    return out


def iter_clips(srcs: list[str | os.PathLike], fps: float = 25.0, speaker: str | None = None,
               **_ignored) -> Iterator[ImportedClip]:
    """Yield one ``arkit`` clip per ``bs_value_<id>.npy`` with its ``wav/<id>.wav``, for each FACEGOOD folder."""
    from ksdiff.audio.decode import load_audio

    spec = get_spec("arkit")
    for src in srcs:
        root = Path(src)
        if not root.is_dir():
            raise KsdiffError("FACEGOOD source must be the data folder (with bs_value/, wav/)", root)
        names = read_names(root)
        mapping = read_mapping(root, names)
        values_dir = root / "bs_value"
        files = sorted(values_dir.glob("bs_value_*.npy")) if values_dir.is_dir() else []
        if not files:
            raise KsdiffError("no bs_value/bs_value_<id>.npy files", root)
        for f in files:
            cid = f.stem[len("bs_value_"):]
            wav = root / "wav" / f"{cid}.wav"
            if not wav.is_file():
                raise KsdiffError(f"no audio wav/{cid}.wav for this motion", f)
            try:
                values = np.asarray(_load_py2_npy(f), dtype=np.float64)
            except (OSError, ValueError, EOFError) as e:
                raise KsdiffError(f"unreadable blendshape values ({e})", f) from None
            if values.ndim != 2 or values.shape[1] != len(names):
                raise KsdiffError(f"expected (T, {len(names)}) values, got shape {values.shape}", f)
            check_finite(values, names, f)
            wave = load_audio(wav)
            T = num_frames_for(wave, fps)
            motion = fit_motion(to_arkit(values, mapping), spec.channels, "arkit", fps, T, src_fps=FACEGOOD_FPS,
                                source=f)
            meta = {"speaker": speaker or SPEAKER, "source": "facegood", "source_file": f.name,
                    "source_fps": FACEGOOD_FPS, "language": "zh",
                    # only mapped rig channels were animated: the rest (head, eyes, brows) is unknown, not still
                    "observed_channels": [n for n in ARKIT_NAMES if mapping.get(n)]}
            yield ImportedClip(id=cid, wave=wave, motion=motion, meta=meta, source=str(f))
