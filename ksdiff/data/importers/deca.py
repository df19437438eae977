"""DECA / EMOCA / SPECTRE per-frame FLAME codes + audio -> ``flame`` clips.

A clip is a folder (or one ``.npz`` file) holding, in any of these layouts:

* one ``.npz`` with ``exp`` (T, 50), ``pose`` (T, 6), ``cam`` (T, 3) (also read under EMOCA's names
  ``expcode`` / ``posecode``);
* per-frame ``.npz`` files (``000001.npz`` ...), each with ``exp`` (50,), ``pose`` (6,), ``cam`` (3,);
* per-frame folders (``000001/`` ..., as EMOCA's ``save_codes`` writes them) with ``exp.npy``, ``pose.npy``,
  ``cam.npy``.

Frames are ordered by the numbers in their names. ``pose[0:3]`` -> ``globalRotX/Y/Z``, ``pose[3:6]`` ->
``jawRotX/Y/Z`` (DECA's jaw), ``cam`` -> ``camScale, camTx, camTy``. Expression vectors longer than 50 keep the
first 50 (FLAME's are ordered by variance); shorter ones are zero-padded. Files are read with
``allow_pickle=False`` only: per-frame ``.npy`` dicts (pickles) are refused with a hint to convert them.

The audio is ``--audio``, a same-stem audio/video file beside the folder or npz, or ``audio.*`` / the only audio
file inside the folder; the codes are at ``src_fps`` (default: the npz's own ``fps`` if it has one, else 25) and
are resampled onto the dataset's frames.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ksdiff.data.importers import (ImportedClip, clip_id, find_audio, find_transcript, fit_motion,
                                   length_notes, num_frames_for)
from ksdiff.errors import KsdiffError
from ksdiff.face.specs import FLAME_EXP, get_spec

KEYS: dict[str, tuple[str, ...]] = {
    "exp": ("exp", "expcode", "expression", "exp_params", "expression_params"),
    "pose": ("pose", "posecode", "pose_params"),
    "cam": ("cam", "camera", "cam_params"),
}
DEFAULT_SRC_FPS = 25.0
DIMS = {"exp": len(FLAME_EXP), "pose": 6, "cam": 3}


def _frame_key(p: Path) -> tuple:
    nums = [int(n) for n in re.findall(r"\d+", p.stem if p.is_file() else p.name)]
    return (nums, p.name)


def _pick(arrays: dict[str, np.ndarray], what: str, source: Path) -> np.ndarray:
    for k in KEYS[what]:
        if k in arrays:
            return np.asarray(arrays[k], dtype=np.float64)
    raise KsdiffError(f"no {what!r} array (looked for {', '.join(KEYS[what])}; found "
                      f"{', '.join(sorted(arrays)) or 'nothing'})", source)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise KsdiffError("expected an .npz archive of named arrays", path)
            return {k: z[k] for k in z.files}
    except KsdiffError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise KsdiffError("holds pickled Python objects; ksdiff never unpickles. Save plain arrays "
                              "(np.savez(path, exp=..., pose=..., cam=...))", path) from None
        raise KsdiffError(f"unreadable npz ({e})", path) from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise KsdiffError(f"unreadable npz ({type(e).__name__}: {e})", path) from None


def _load_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise KsdiffError("holds a pickled Python object (a per-frame dict?); ksdiff never unpickles. "
                              "Save per-frame .npz files or one npz with exp (T,50), pose (T,6), cam (T,3)",
                              path) from None
        raise KsdiffError(f"unreadable npy ({e})", path) from None
    except (OSError, EOFError) as e:
        raise KsdiffError(f"unreadable npy ({type(e).__name__}: {e})", path) from None


def _fit_dim(a: np.ndarray, what: str, source: Path) -> np.ndarray:
    """(T, D) -> (T, DIMS[what]): expressions are cut or zero-padded; pose and cam must match exactly."""
    want = DIMS[what]
    if a.shape[1] == want:
        return a
    if what != "exp":
        raise KsdiffError(f"{what} has {a.shape[1]} values per frame, expected {want}", source)
    if a.shape[1] > want:
        return a[:, :want]
    return np.concatenate([a, np.zeros((a.shape[0], want - a.shape[1]))], axis=1)


def _stack(frames: list[dict[str, np.ndarray]], sources: list[Path]) -> dict[str, np.ndarray]:
    out = {}
    for what in KEYS:
        rows = []
        for arrays, src in zip(frames, sources):
            a = _pick(arrays, what, src).reshape(-1)
            if rows and a.size != rows[0].size:
                raise KsdiffError(f"{what} has {a.size} values here but {rows[0].size} in earlier frames", src)
            rows.append(a)
        out[what] = np.stack(rows)
    return out


def read_codes(src: str | os.PathLike) -> dict[str, np.ndarray]:
    """FLAME codes of one clip (a folder or an npz): ``exp`` (T, 50), ``pose`` (T, 6), ``cam`` (T, 3) float64,
    plus ``fps`` () when a sequence npz records its frame rate."""
    p = Path(src)
    if p.is_file():
        if p.suffix.lower() != ".npz":
            raise KsdiffError("expected a clip folder or an .npz with exp, pose, cam", p)
        arrays, sources = [_load_npz(p)], [p]
        seq = True
    elif p.is_dir():
        npz = sorted((f for f in p.iterdir() if f.suffix.lower() == ".npz"), key=_frame_key)
        npy = sorted((f for f in p.iterdir() if f.suffix.lower() == ".npy"), key=_frame_key)
        dirs = sorted((d for d in p.iterdir() if d.is_dir() and _has_frame_codes(d)), key=_frame_key)
        if len(npz) == 1 and not dirs:
            arrays, sources = [_load_npz(npz[0])], [npz[0]]
            seq = np.asarray(_pick(arrays[0], "exp", npz[0])).ndim == 2
        elif npz:
            arrays, sources, seq = [_load_npz(f) for f in npz], npz, False
        elif dirs:
            arrays, sources = [], []
            for d in dirs:
                wanted = {k for names in KEYS.values() for k in names}
                arrays.append({f.stem: _load_npy(f) for f in d.iterdir()
                               if f.suffix.lower() == ".npy" and f.stem in wanted})
                sources.append(d)
            seq = False
        elif npy:
            _load_npy(npy[0])  # a per-frame dict raises the pickle error here
            raise KsdiffError("per-frame .npy arrays without names; save per-frame .npz files with exp, pose, cam "
                              "or one npz for the clip", p)
        else:
            raise KsdiffError("no FLAME codes here (an npz with exp/pose/cam, per-frame npz files, or per-frame "
                              "folders with exp.npy/pose.npy/cam.npy)", p)
    else:
        raise KsdiffError("no such file or folder", p)
    if seq:
        codes = {}
        for what in KEYS:
            a = _pick(arrays[0], what, sources[0])
            if a.ndim == 1:
                a = a[None]
            if a.ndim != 2:
                raise KsdiffError(f"{what} must be (T, D), got shape {a.shape}", sources[0])
            codes[what] = a
        lengths = {k: len(v) for k, v in codes.items()}
        if len(set(lengths.values())) != 1:
            raise KsdiffError("exp, pose and cam have different frame counts ("
                              + ", ".join(f"{k} {v}" for k, v in lengths.items()) + ")", sources[0])
    else:
        codes = _stack(arrays, sources)
    out = {k: _fit_dim(v, k, p) for k, v in codes.items()}
    if seq and "fps" in arrays[0] and np.asarray(arrays[0]["fps"]).size == 1:
        out["fps"] = np.asarray(arrays[0]["fps"], dtype=np.float64).reshape(())  # as ksdiff's DECA export writes
    return out


def _has_frame_codes(d: Path) -> bool:
    return any((d / f"{k}.npy").is_file() for k in KEYS["exp"])


def is_clip(p: Path) -> bool:
    """Whether folder ``p`` itself holds one clip's codes (rather than clip subfolders)."""
    if p.is_file():
        return p.suffix.lower() == ".npz"
    return any(f.suffix.lower() in (".npz", ".npy") for f in p.iterdir() if f.is_file()) or any(
        _has_frame_codes(d) for d in p.iterdir() if d.is_dir())


def codes_to_coeffs(codes: dict[str, np.ndarray]) -> np.ndarray:
    """exp (T,50), pose (T,6), cam (T,3) -> (T, 59) in the ``flame`` spec's channel order."""
    spec = get_spec("flame")
    T = len(codes["exp"])
    out = np.zeros((T, spec.dim))
    out[:, spec.index(FLAME_EXP)] = codes["exp"]
    out[:, spec.index(("globalRotX", "globalRotY", "globalRotZ"))] = codes["pose"][:, 0:3]
    out[:, spec.index(("jawRotX", "jawRotY", "jawRotZ"))] = codes["pose"][:, 3:6]
    out[:, spec.index(("camScale", "camTx", "camTy"))] = codes["cam"]
    return out


def iter_clips(srcs: list[str | os.PathLike], fps: float = 25.0, audio: list[str] | None = None,
               src_fps: float | None = None, speaker: str | None = None,
               **_ignored) -> Iterator[ImportedClip]:
    """Yield one ``flame`` clip per clip folder / npz (a folder of clip folders is expanded).

    ``src_fps``: frame rate of the codes; default: the npz's own ``fps`` when it has one, else 25.
    """
    from ksdiff.audio.decode import SAMPLE_RATE, load_audio

    if src_fps is not None and (not np.isfinite(src_fps) or src_fps <= 0):
        raise KsdiffError(f"--src-fps must be positive, got {src_fps}")
    clips: list[Path] = []
    for s in srcs:
        p = Path(s)
        if not p.exists():
            raise KsdiffError("no such file or folder", p)
        if is_clip(p):
            clips.append(p)
        else:
            subs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith(".") and is_clip(d))
            if not subs:
                raise KsdiffError("no FLAME codes here or in its subfolders", p)
            clips.extend(subs)
    if audio and len(audio) != len(clips):
        raise KsdiffError(f"--audio given {len(audio)} times but there are {len(clips)} clips")
    spec = get_spec("flame")
    for i, c in enumerate(clips):
        codes = read_codes(c)
        file_fps = codes.pop("fps", None)
        rate = float(src_fps) if src_fps is not None else float(file_fps) if file_fps is not None else DEFAULT_SRC_FPS
        if not np.isfinite(rate) or rate <= 0:
            raise KsdiffError(f"fps in the file must be positive, got {rate}; give --src-fps", c)
        audio_path = Path(audio[i]) if audio else find_audio(c, folder=c if c.is_dir() else None)
        if audio_path is None:
            raise KsdiffError("no audio for this clip (a same-name .wav/.mp4 beside it, audio.* inside it, or "
                              "--audio)", c)
        wave = load_audio(audio_path)
        T = num_frames_for(wave, fps)
        motion = fit_motion(codes_to_coeffs(codes), spec.channels, "flame", fps, T, src_fps=rate, source=c)
        meta = {"source": "deca", "source_file": c.name, "audio_file": audio_path.name, "source_fps": rate,
                "motion_seconds": round(len(codes["exp"]) / rate, 3)}
        if speaker:
            meta["speaker"] = speaker
        yield ImportedClip(id=clip_id(c.stem if c.is_file() else c.name), wave=wave, motion=motion,
                           transcript=find_transcript(c), meta=meta, source=str(c),
                           notes=length_notes(len(codes["exp"]) / rate, len(wave) / SAMPLE_RATE))
