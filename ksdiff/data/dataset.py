"""The dataset folder format (DESIGN.md section 1) with a validating reader, ``check`` and ``info``.

Layout::

    DATASET/
      dataset.json        {"name", "spec", "fps", "sample_rate", "splits": {"train": [...], "val": [...],
                           "test": [...]}, "format_version"}
      <clip_id>/
        audio.wav         16 kHz mono 16-bit PCM
        motion.npz        see ksdiff.face.motion
        transcript.txt    optional, UTF-8
        meta.json         optional: {"speaker", "emotion": {"valence", "arousal"}, "source", ...}
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE, audio_duration, write_wav
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion, load_motion, motion_problems
from ksdiff.utils.io import atomic_dir, write_json, write_text

DATASET_FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
_CLIP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass
class Clip:
    """One clip of a dataset (paths; loaded lazily)."""

    id: str
    root: Path

    @property
    def audio_path(self) -> Path:
        return self.root / "audio.wav"

    @property
    def motion_path(self) -> Path:
        return self.root / "motion.npz"

    def motion(self, validate: bool = True) -> Motion:
        return load_motion(self.motion_path, validate=validate)

    def audio(self) -> np.ndarray:
        from ksdiff.audio.decode import load_audio

        return load_audio(self.audio_path, allow_silent=True)

    def transcript(self) -> str | None:
        p = self.root / "transcript.txt"
        return p.read_text(encoding="utf-8").strip() if p.is_file() else None

    def meta(self) -> dict:
        p = self.root / "meta.json"
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


@dataclass
class Dataset:
    """A dataset folder. Use :func:`open_dataset` to read one, :class:`DatasetWriter` to make one."""

    root: Path
    name: str
    spec: str
    fps: float
    splits: dict[str, list[str]]
    sample_rate: int = SAMPLE_RATE
    extra: dict = field(default_factory=dict)

    def clip_ids(self, split: str | None = None) -> list[str]:
        if split is None or split == "all":
            return [c for s in SPLITS for c in self.splits.get(s, [])] + [
                c for s, ids in self.splits.items() if s not in SPLITS for c in ids]
        if split not in self.splits:
            raise KsdiffError(f"dataset has no split {split!r} (has {', '.join(self.splits)})", self.root)
        return list(self.splits[split])

    def clips(self, split: str | None = None) -> Iterator[Clip]:
        for cid in self.clip_ids(split):
            yield Clip(cid, self.root / cid)

    def clip(self, cid: str) -> Clip:
        return Clip(cid, self.root / cid)


def open_dataset(path: str | os.PathLike) -> Dataset:
    """Read ``dataset.json`` of the dataset at ``path`` (clips are not validated here; see :func:`check_dataset`)."""
    root = Path(path)
    meta_path = root / "dataset.json"
    if not root.is_dir():
        raise KsdiffError("dataset folder not found", root)
    if not meta_path.is_file():
        raise KsdiffError("not a ksdiff dataset (no dataset.json)", root)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KsdiffError(f"dataset.json is not valid JSON ({e})", meta_path) from None
    for key in ("spec", "fps", "splits"):
        if key not in meta:
            raise KsdiffError(f"dataset.json lacks {key!r}", meta_path)
    if int(meta.get("format_version", 1)) > DATASET_FORMAT_VERSION:
        raise KsdiffError(f"dataset format version {meta['format_version']} is newer than this ksdiff reads "
                          f"({DATASET_FORMAT_VERSION}); upgrade ksdiff", meta_path)
    known = {"name", "spec", "fps", "splits", "sample_rate", "format_version"}
    return Dataset(root=root, name=str(meta.get("name", root.name)), spec=str(meta["spec"]), fps=float(meta["fps"]),
                   splits={k: list(v) for k, v in meta["splits"].items()},
                   sample_rate=int(meta.get("sample_rate", SAMPLE_RATE)),
                   extra={k: v for k, v in meta.items() if k not in known})


def check_dataset(path: str | os.PathLike) -> list[str]:
    """Every problem of the dataset at ``path``, one line each as ``<file>: <problem>`` (empty when valid)."""
    try:
        ds = open_dataset(path)
    except KsdiffError as e:
        return [str(e)]
    problems: list[str] = []
    seen: dict[str, str] = {}
    for split, ids in ds.splits.items():
        for cid in ids:
            if cid in seen:
                problems.append(f"{ds.root / 'dataset.json'}: clip {cid!r} is in both {seen[cid]!r} and {split!r}")
            seen[cid] = split
    on_disk = {p.name for p in ds.root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    for orphan in sorted(on_disk - set(seen)):
        if (ds.root / orphan / "motion.npz").exists():
            problems.append(f"{ds.root / orphan}: clip folder is in no split")
    for clip in ds.clips():
        problems.extend(check_clip(clip, ds))
    return problems


def check_clip(clip: Clip, ds: Dataset) -> list[str]:
    """Problems of one clip: files present, audio readable, motion valid and as long as the audio."""
    out: list[str] = []
    if not clip.root.is_dir():
        return [f"{clip.root}: clip folder missing"]
    seconds = None
    if not clip.audio_path.is_file():
        out.append(f"{clip.audio_path}: audio missing")
    else:
        try:
            import wave

            with wave.open(str(clip.audio_path), "rb") as w:
                if w.getnchannels() != 1:
                    out.append(f"{clip.audio_path}: audio has {w.getnchannels()} channels, expected mono")
                if w.getframerate() != ds.sample_rate:
                    out.append(f"{clip.audio_path}: sample rate {w.getframerate()} Hz, expected {ds.sample_rate}")
                seconds = w.getnframes() / float(w.getframerate())
                if w.getnframes() == 0:
                    out.append(f"{clip.audio_path}: audio is empty")
        except (wave.Error, EOFError) as e:
            out.append(f"{clip.audio_path}: not a PCM wav ({e})")
    if not clip.motion_path.is_file():
        out.append(f"{clip.motion_path}: motion missing")
    else:
        try:
            m = load_motion(clip.motion_path, validate=False)
            out.extend(f"{clip.motion_path}: {p}" for p in
                       motion_problems(m, spec=ds.spec, fps=ds.fps, audio_seconds=seconds))
        except KsdiffError as e:
            out.append(str(e))
    meta = clip.root / "meta.json"
    if meta.is_file():
        try:
            json.loads(meta.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            out.append(f"{meta}: not valid JSON ({e})")
    return out


def dataset_info(path: str | os.PathLike) -> dict:
    """Summary: clips per split, hours, speakers, fps, spec, per-channel min/mean/max over all frames."""
    ds = open_dataset(path)
    per_split = {s: len(ids) for s, ids in ds.splits.items()}
    seconds = 0.0
    speakers: set[str] = set()
    mins = maxs = sums = None
    frames = 0
    channels: tuple[str, ...] = ()
    for clip in ds.clips():
        if clip.audio_path.is_file():
            seconds += audio_duration(clip.audio_path)
        spk = clip.meta().get("speaker")
        if spk:
            speakers.add(str(spk))
        if clip.motion_path.is_file():
            m = clip.motion(validate=False)
            channels = m.channels
            c = m.coeffs.astype(np.float64)
            mins = c.min(0) if mins is None else np.minimum(mins, c.min(0))
            maxs = c.max(0) if maxs is None else np.maximum(maxs, c.max(0))
            sums = c.sum(0) if sums is None else sums + c.sum(0)
            frames += len(c)
    ranges = {}
    if frames:
        ranges = {ch: {"min": float(mins[i]), "mean": float(sums[i] / frames), "max": float(maxs[i])}
                  for i, ch in enumerate(channels)}
    return {"name": ds.name, "root": str(ds.root), "spec": ds.spec, "fps": ds.fps, "clips": per_split,
            "hours": seconds / 3600.0, "seconds": seconds, "frames": frames, "speakers": sorted(speakers),
            "channels": ranges}


class DatasetWriter:
    """Builds a dataset folder atomically: clips are written into a hidden temporary folder, and the whole
    dataset appears at ``root`` only on :meth:`close` (so a failed import leaves nothing partial).

    Example::

        with DatasetWriter(out, spec="arkit", fps=25, name="facegood") as w:
            w.add_clip("clip0", wave, motion, transcript="...", meta={"speaker": "s1"})
    """

    def __init__(self, root: str | os.PathLike, spec: str, fps: float, name: str | None = None,
                 split_fracs: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                 extra: dict | None = None):
        self.root = Path(root)
        self.spec, self.fps = spec, float(fps)
        self.name = name or self.root.name
        self.split_fracs = split_fracs
        self._groups: dict[str, str] = {}
        self.seed = seed
        self.extra = extra or {}
        self.ids: list[str] = []
        self.splits: dict[str, list[str]] | None = None
        self._ctx = atomic_dir(self.root)
        self.tmp: Path = self._ctx.__enter__()

    def add_clip(self, cid: str, wave_: np.ndarray, motion: Motion, transcript: str | None = None,
                 meta: dict | None = None, source: str | os.PathLike | None = None) -> None:
        """Validate and write one clip. ``wave_`` is 16 kHz mono float32; ``motion`` must be in the dataset's
        spec and fps and as long as the audio."""
        if not _CLIP_ID.match(cid):
            raise KsdiffError(f"clip id {cid!r} must be letters, digits, '_', '-', '.'", source)
        if cid in self.ids:
            raise KsdiffError(f"duplicate clip id {cid!r}", source)
        problems = motion_problems(motion, spec=self.spec, fps=self.fps, audio_seconds=len(wave_) / SAMPLE_RATE)
        if problems:
            raise KsdiffError(problems[0], source)
        d = self.tmp / cid
        d.mkdir(parents=True)
        write_wav(d / "audio.wav", wave_)
        motion.save(d / "motion.npz")
        if transcript:
            write_text(d / "transcript.txt", transcript.strip() + "\n")
        if meta:
            write_json(d / "meta.json", meta)
        self.ids.append(cid)

    def set_splits(self, splits: dict[str, list[str]]) -> None:
        self.splits = splits

    def split_by_group(self, group_of: dict[str, str]) -> None:
        """Draw the default splits over groups (e.g. speakers: clip id -> group) instead of clips, so a group's
        clips share one split (:meth:`_group_splits`)."""
        self._groups = dict(group_of)

    def _group_splits(self) -> dict[str, list[str]]:
        """Groups in a seeded random order fill test, then val, to their fraction of the clips; a group bigger than
        the test share always trains (one speaker of 150 clips would otherwise be a third of the test)."""
        ids = sorted(self.ids)
        members: dict[str, list[str]] = {}
        for c in ids:
            members.setdefault(self._groups.get(c, c), []).append(c)
        names = sorted(members)
        order = [names[i] for i in np.random.default_rng(self.seed).permutation(len(names))]
        want = {"test": max(1, round(len(ids) * self.split_fracs[2])),
                "val": max(1, round(len(ids) * self.split_fracs[1]))}
        out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
        for g in order:
            dest = next((s for s in ("test", "val") if len(out[s]) < want[s] and len(members[g]) <= want["test"]),
                        "train")
            out[dest] += members[g]
        return {k: sorted(v) for k, v in out.items()}

    def _default_splits(self) -> dict[str, list[str]]:
        if self._groups:
            return self._group_splits()
        ids = sorted(self.ids)
        rng = np.random.default_rng(self.seed)
        order = [ids[i] for i in rng.permutation(len(ids))]
        n = len(order)
        if n < 3:
            return {"train": order, "val": [], "test": []}
        n_test = max(1, int(round(n * self.split_fracs[2])))
        n_val = max(1, int(round(n * self.split_fracs[1])))
        n_train = max(1, n - n_val - n_test)
        return {"train": sorted(order[:n_train]), "val": sorted(order[n_train:n_train + n_val]),
                "test": sorted(order[n_train + n_val:])}

    def close(self) -> Dataset:
        if not self.ids:
            self.abort()
            raise KsdiffError("no clips were imported; nothing written", self.root)
        splits = self.splits or self._default_splits()
        meta = {"name": self.name, "spec": self.spec, "fps": self.fps, "sample_rate": SAMPLE_RATE,
                "splits": splits, "format_version": DATASET_FORMAT_VERSION, **self.extra}
        write_json(self.tmp / "dataset.json", meta)
        self._ctx.__exit__(None, None, None)
        return open_dataset(self.root)

    def abort(self) -> None:
        try:
            raise RuntimeError("abort")
        except RuntimeError as e:
            try:
                self._ctx.__exit__(type(e), e, e.__traceback__)
            except RuntimeError:
                pass

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
