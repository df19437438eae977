"""Grouped k-fold cross-validation splits of a dataset.

A test split of two or three clips ranks methods by luck (one person's resting face can decide it); k-fold
cross-validation holds every clip out once. Clips of the same person must stay in the same fold, otherwise the
model has seen the test face: ``groups`` maps clip id → person (default: each clip's ``meta.json`` ``speaker``).

Each fold is a dataset folder of its own, without copies::

    OUT/fold<k>/dataset.json     {"name": <the source's name>, "splits": {"train": [...], "test": [...]}, ...}
    OUT/fold<k>/<clip> -> SOURCE/<clip>      (symlinks; the source's feature cache is shared the same way)
    OUT/folds.json               {"source", "k", "seed", "groups", "folds": [[clip, ...], ...]}

The source's name is kept, so a model trained on ``fold<k>`` has the same style tokens (``data.style: dataset``)
as one trained on the source.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from ksdiff.data.dataset import open_dataset
from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_dir, write_json


def read_groups(path: str | os.PathLike) -> dict[str, str]:
    """A groups file: JSON ``{"person": ["clip", ...], ...}`` → ``{clip: person}`` (keys starting with ``_`` are
    comments)."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KsdiffError(f"not a groups file ({e})", path) from None
    if not isinstance(d, dict) or not all(isinstance(v, list) for v in d.values()):
        raise KsdiffError('groups file must be a JSON object {"person": ["clip id", ...]}', path)
    out: dict[str, str] = {}
    for person, clips in d.items():
        if person.startswith("_"):
            continue
        for c in clips:
            if c in out:
                raise KsdiffError(f"clip {c!r} is in two groups ({out[c]!r}, {person!r})", path)
            out[str(c)] = str(person)
    return out


def assign_folds(clip_group: dict[str, str], k: int, seed: int = 0) -> list[list[str]]:
    """Split clips into ``k`` folds with every group whole; groups are shuffled (``seed``), then each goes to the
    fold with the fewest clips so far (ties: lowest index). Returns k sorted lists of clip ids."""
    groups: dict[str, list[str]] = {}
    for c, g in clip_group.items():
        groups.setdefault(g, []).append(c)
    if k < 2:
        raise KsdiffError(f"cross-validation needs at least 2 folds (got {k})")
    if len(groups) < k:
        raise KsdiffError(f"{len(groups)} groups cannot fill {k} folds")
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    names.sort(key=lambda g: -len(groups[g]))  # stable: big groups first, shuffled within a size
    folds: list[list[str]] = [[] for _ in range(k)]
    for g in names:
        i = min(range(k), key=lambda j: (len(folds[j]), j))
        folds[i].extend(groups[g])
    return [sorted(f) for f in folds]


def make_folds(dataset: str | os.PathLike, k: int, out: str | os.PathLike, groups: str | os.PathLike | None = None,
               seed: int = 0, splits: tuple[str, ...] = ("train", "val", "test")) -> list[Path]:
    """Write ``k`` fold datasets of ``dataset`` under ``out`` (see the module doc); returns their folders.

    Clips of every split in ``splits`` take part. With ``groups`` (a groups file), every such clip must be in it.
    """
    ds = open_dataset(dataset)
    clips = [c for s in splits if s in ds.splits for c in ds.splits[s]]
    if not clips:
        raise KsdiffError(f"no clips in splits {', '.join(splits)}", ds.root)
    if groups is not None:
        given = read_groups(groups)
        missing = [c for c in clips if c not in given]
        if missing:
            raise KsdiffError(f"{len(missing)} clips are in no group (e.g. {missing[0]!r})", groups)
        clip_group = {c: given[c] for c in clips}
    else:
        clip_group = {c: str(ds.clip(c).meta().get("speaker") or c) for c in clips}
    folds = assign_folds(clip_group, k, seed)
    src_meta = json.loads((ds.root / "dataset.json").read_text(encoding="utf-8"))
    out = Path(out)
    dirs = []
    for i, test in enumerate(folds):
        with atomic_dir(out / f"fold{i}") as tmp:
            for c in clips:
                (tmp / c).symlink_to((ds.root / c).resolve(), target_is_directory=True)
            if (ds.root / ".cache").is_dir():
                (tmp / ".cache").symlink_to((ds.root / ".cache").resolve(), target_is_directory=True)
            meta = dict(src_meta, name=ds.name,
                        splits={"train": [c for c in clips if c not in test], "test": list(test)},
                        folds={"source": str(ds.root.resolve()), "fold": i, "k": k, "seed": seed})
            write_json(tmp / "dataset.json", meta)
        dirs.append(out / f"fold{i}")
    write_json(out / "folds.json", {"source": str(ds.root.resolve()), "k": k, "seed": seed,
                                    "groups": clip_group, "folds": folds})
    return dirs


def resplit(dataset: str | os.PathLike, val: list[str], test: list[str],
            groups: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Set a dataset's splits: ``val`` and ``test`` clip ids, every other clip ``train`` (dataset.json rewritten
    atomically; clips untouched). With ``groups`` a named clip brings every clip of its person along, so no person
    is in two splits.

    Raises:
        KsdiffError: an unknown clip id, or one clip (or person) asked for in both val and test.
    """
    ds = open_dataset(dataset)
    known = ds.clip_ids()
    person = read_groups(groups) if groups is not None else {}
    missing = [c for c in list(val) + list(test) if c not in known]
    if missing:
        raise KsdiffError(f"no clip {missing[0]!r} in this dataset", ds.root)

    def expand(ids: list[str]) -> set[str]:
        people = {person[c] for c in ids if c in person}
        return set(ids) | {c for c in known if person.get(c) in people}

    v, t = expand(list(val)), expand(list(test))
    both = sorted(v & t)
    if both:
        raise KsdiffError(f"clip {both[0]!r} (or its person) is asked for in both val and test", ds.root)
    splits = {"train": [c for c in known if c not in v and c not in t], "val": [c for c in known if c in v],
              "test": [c for c in known if c in t]}
    meta = json.loads((ds.root / "dataset.json").read_text(encoding="utf-8"))
    meta["splits"] = splits
    write_json(ds.root / "dataset.json", meta)
    return splits
