"""Training data: clips of one or more datasets as random crops of (speech features, motion, keyframes, tokens).

Each item covers one time span in both streams: ``T`` motion frames at the config's ``fps`` and
``N' = round(T × rate / fps)`` feature frames at the encoder's ``rate`` (50 Hz). Crop starts are restricted to
frames where both grids meet exactly (every frame at 25 fps; every 3rd frame at 30 fps) when the two rates are
integers. Clips shorter than a crop are padded and masked.

Features come from each dataset's feature cache (``ksdiff.data.features.load_clip_features``), computed and
cached on first use; motion of any fps is resampled to the config fps; ground-truth keyframes (Eq. 3) are
computed on the whole clip and cropped with it.

The order of items is a pure function of (seed, step): :class:`StreamSampler` walks seeded epochs of a
:class:`~torch.utils.data.DistributedSampler` and hands every item its own crop seed, so a resumed run sees
exactly the batches the uninterrupted run would have seen, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset as TorchDataset
from torch.utils.data import DistributedSampler

from ksdiff.data.dataset import Dataset, open_dataset
from ksdiff.errors import KsdiffError
from ksdiff.face.specs import FaceSpec, get_spec
from ksdiff.utils.arrays import fit_rows

#: Standard deviations below this are raised to it (channels that never move would otherwise blow up).
STD_FLOOR = 1e-3


@dataclass
class ClipData:
    """One clip, loaded.

    Attributes:
        key: ``<dataset name>/<clip id>``.
        motion: (T, C) float32 at the config fps, in the spec's channel order.
        keyframes: (T, 2) uint8 ground-truth keyframes (head, expression).
        feats: (N', F) float32 speech features at ``rate`` Hz, or None when not preloaded.
        prosody: (N', 2) float32 or None when not preloaded.
        tokens: (L,) int64 transcript tokens of the whole clip (0 = padding).
        words: (word, start_s, end_s) timings of the transcript, or [].
        speaker: ``<dataset name>/<speaker>`` or None.
        emotion: (T, 2) float32 valence/arousal, or None.
        observed: (C,) bool: channels the clip's motion really observes (``meta.json`` ``observed_channels``;
            all when absent). Unobserved channels are left out of the losses and the statistics.
        person: ``<dataset name>/<person>`` whose clips give each other reference styles (``meta.json``
            ``person``, else ``speaker``), or None.
    """

    key: str
    dataset_dir: Path
    clip_id: str
    motion: np.ndarray
    keyframes: np.ndarray
    feats: np.ndarray | None
    prosody: np.ndarray | None
    tokens: np.ndarray
    words: list
    speaker: str | None
    emotion: np.ndarray | None
    rate: float
    feat_dim: int
    feature_path: Path | None = None
    observed: np.ndarray | None = None
    person: str | None = None

    def observed_mask(self) -> np.ndarray:
        return np.ones(self.motion.shape[1], bool) if self.observed is None else self.observed


def open_datasets(paths: list[str | os.PathLike], jaw_path: str = "expression") -> tuple[list[Dataset], FaceSpec]:
    """Open the datasets and check that they share one face spec."""
    if not paths:
        raise KsdiffError("no training data: give --data DATASET (or data.datasets in the config)")
    dss = [open_dataset(p) for p in paths]
    specs = {d.spec for d in dss}
    if len(specs) > 1:
        raise KsdiffError("datasets have different face specs (" +
                          ", ".join(f"{d.root}: {d.spec}" for d in dss) + "); train on one spec at a time")
    names = [d.name for d in dss]
    if len(set(names)) != len(names):
        raise KsdiffError(f"two datasets share the name {sorted(n for n in names if names.count(n) > 1)[0]!r}; "
                          "rename one in its dataset.json (clip keys are <name>/<clip>)")
    return dss, get_spec(dss[0].spec, jaw_path)


def load_features(ds_root: Path, clip_id: str, encoder: str, tokens: str, transcribe: bool,
                  language: str = "en-us"):
    """A clip's :class:`ksdiff.audio.features.SpeechFeatures` from the dataset's cache (computed and cached when
    missing or stale)."""
    from ksdiff.data.features import load_clip_features

    return load_clip_features(ds_root, clip_id, encoder, tokens=tokens, transcribe=transcribe, language=language)


def _cache_path(ds_root: Path, clip_id: str, encoder: str, tokens: str, transcribe: bool,
                language: str) -> Path | None:
    """The feature-cache file ``load_clip_features`` just wrote for a clip (None if it is not there)."""
    from ksdiff.data.features import cache_dir, cache_key

    p = cache_dir(ds_root, cache_key(encoder, tokens, transcribe, language)) / f"{clip_id}.npz"
    return p if p.is_file() else None


def _emotion(meta: dict, T: int, src_fps: float, fps: float) -> np.ndarray | None:
    """(T, 2) valence/arousal of a clip at ``fps`` from its ``meta.json``: ``"emotion": [v, a]`` (the synthetic
    corpus) or ``{"valence": v or [...], "arousal": a or [...], "fps": F}`` (per frame at F, default the
    dataset's; :func:`ksdiff.data.labels.label_emotion`); None when there is none."""
    emo = meta.get("emotion")
    if isinstance(emo, (list, tuple)) and len(emo) == 2 and all(np.isscalar(x) for x in emo):
        emo = {"valence": emo[0], "arousal": emo[1]}
    if not isinstance(emo, dict) or "valence" not in emo or "arousal" not in emo:
        return None
    v, a = emo["valence"], emo["arousal"]
    if np.isscalar(v) and np.isscalar(a):
        return np.tile(np.array([[float(v), float(a)]], dtype=np.float32), (T, 1))
    va = np.stack([np.asarray(v, dtype=np.float64), np.asarray(a, dtype=np.float64)], axis=1)  # per frame
    t_src = np.arange(len(va)) / float(emo.get("fps", src_fps))
    t = np.arange(T) / fps
    return np.stack([np.interp(t, t_src, va[:, 0]), np.interp(t, t_src, va[:, 1])], axis=1).astype(np.float32)


def load_clips(datasets: list[Dataset], split: str, spec: FaceSpec, fps: float, encoder: str, tokens: str,
               transcribe: bool = True, keyframe_sigma: float = 2.0, keyframe_kappa: float = 1.0,
               keyframe_min_gap: int = 5, preload: bool = True, max_clips: int | None = None,
               progress: bool = False, language: str = "en-us", style_by: str = "speaker") -> list[ClipData]:
    """Load every clip of ``split`` (in every dataset that has that split), computing missing features.

    Motion is resampled to ``fps`` (rotation-aware). Returns clips in a fixed order (dataset order, then the
    split's order).
    """
    from ksdiff.face.keyframes import keyframe_labels

    jobs = [(ds, cid) for ds in datasets if split in ds.splits for cid in ds.clip_ids(split)]
    if max_clips is not None:
        jobs = jobs[:max_clips]
    it = jobs
    if progress and jobs:
        from tqdm import tqdm

        it = tqdm(jobs, desc=f"{split} clips", unit="clip", leave=False)
    out: list[ClipData] = []
    for ds, cid in it:
        clip = ds.clip(cid)
        m = clip.motion()
        if m.spec and m.spec != spec.name:
            raise KsdiffError(f"motion is in spec {m.spec!r}, the dataset says {spec.name!r}", clip.motion_path)
        if abs(m.fps - fps) > 1e-6:
            m = m.resample(fps)
        coeffs = np.ascontiguousarray(m.coeffs, dtype=np.float32)
        if coeffs.shape[0] < 2:
            continue
        kf = keyframe_labels(coeffs, spec, sigma=keyframe_sigma, kappa=keyframe_kappa, min_gap=keyframe_min_gap)
        sf = load_features(ds.root, cid, encoder, tokens, transcribe, language)
        meta = clip.meta()
        who = meta.get("person") or meta.get("speaker")
        observed = None
        if isinstance(meta.get("observed_channels"), list):
            names = set(map(str, meta["observed_channels"]))
            unknown = names - set(spec.channels)
            if unknown:
                raise KsdiffError(f"observed_channels names channels not in the {spec.name} spec: "
                                  f"{', '.join(sorted(unknown)[:4])}", clip.root / "meta.json")
            observed = np.array([c in names for c in spec.channels], dtype=bool)
        out.append(ClipData(
            key=f"{ds.name}/{cid}", dataset_dir=ds.root, clip_id=cid, motion=coeffs, keyframes=kf.astype(np.uint8),
            feats=np.asarray(sf.feats, dtype=np.float32) if preload else None,
            prosody=np.asarray(sf.prosody, dtype=np.float32) if preload else None,
            tokens=np.asarray(sf.tokens, dtype=np.int64).reshape(-1), words=list(sf.words or []),
            speaker=style_key(ds.name, meta, style_by),
            emotion=_emotion(meta, len(coeffs), ds.fps, fps),
            rate=float(sf.rate), feat_dim=int(np.asarray(sf.feats).shape[1]),
            feature_path=None if preload else _cache_path(ds.root, cid, encoder, tokens, transcribe, language),
            observed=observed, person=f"{ds.name}/{who}" if who else None))
    return out


def style_key(dataset: str, meta: dict, style_by: str = "speaker") -> str | None:
    """The style token a clip trains (``data.style``): its dataset's name, or ``<dataset>/<speaker>`` (None when
    ``meta.json`` names no speaker)."""
    spk = meta.get("speaker")
    return dataset if style_by == "dataset" else (f"{dataset}/{spk}" if spk else None)


def typical_faces(items: Iterable[tuple[str | None, np.ndarray, np.ndarray]]) -> dict[str, list[float | None]]:
    """Each style token's typical face: the per-channel median (C,) over the frames of its training clips that
    observe the channel (None: no clip observes it). A median, as :func:`ksdiff.generate.anchor_face` moves the
    output's median to it (the output's median moved to a mean would lift every skewed channel, e.g. jawOpen).
    Stored in checkpoints (``typical_faces``).

    Args:
        items: (style token or None, motion (T, C), observed (C,) bool) per training clip; None is skipped.
    """
    cols: dict[str, list[list[np.ndarray]]] = {}
    for key, motion, observed in items:
        if not key:
            continue
        x = np.asarray(motion, np.float32)
        per = cols.setdefault(key, [[] for _ in range(x.shape[1])])
        for j in np.flatnonzero(observed):
            per[j].append(x[:, j])
    return {k: [float(np.median(np.concatenate(c))) if c else None for c in per] for k, per in sorted(cols.items())}


def dataset_typical_faces(paths: list[str | os.PathLike], style_by: str = "speaker", split: str = "train",
                          fps: float | None = None) -> dict[str, list[float | None]]:
    """:func:`typical_faces` of the ``split`` clips of datasets (motion only, no features; resampled to ``fps``
    as training does): for a checkpoint trained before checkpoints stored them (``scripts/add_typical_faces.py``)."""
    def items() -> Iterator[tuple[str | None, np.ndarray, np.ndarray]]:
        for path in paths:
            ds = open_dataset(path)
            for clip in ds.clips(split) if split in ds.splits else []:
                meta, m = clip.meta(), clip.motion()
                m = m if fps is None or abs(m.fps - fps) < 1e-6 else m.resample(fps)
                obs = set(meta["observed_channels"]) if isinstance(meta.get("observed_channels"), list) else None
                observed = np.array([obs is None or c in obs for c in m.channels])
                yield style_key(ds.name, meta, style_by), m.coeffs, observed

    return typical_faces(items())


def recenter_clips(clips: list[ClipData], spec: FaceSpec,
                   centres: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Identity-neutral motion targets, in place: each clip's channels minus the clip's own per-channel median
    plus its dataset's centre; bounded channels clipped to [0, 1]; unobserved channels untouched.

    Args:
        clips: loaded clips (``key`` = ``<dataset>/<clip>``); their ``motion`` is replaced.
        centres: per dataset name, (C,) centres; None computes them from ``clips`` (the frame-weighted mean of
            the clip medians, over the clips that observe each channel) — pass the training set's to the val set.

    Returns:
        the centres used, per dataset name.
    """
    groups: dict[str, list[ClipData]] = {}
    for c in clips:
        groups.setdefault(c.key.split("/", 1)[0], []).append(c)
    bounded = np.array([ch in set(spec.bounded) for ch in spec.channels], bool)
    out = dict(centres or {})
    for name, group in groups.items():
        medians = [np.median(c.motion, axis=0) for c in group]
        if name not in out:
            w = np.stack([c.observed_mask() * len(c.motion) for c in group]).astype(np.float64)  # (N, C)
            tot = w.sum(axis=0)
            out[name] = (np.where(tot > 0, (w * np.stack(medians)).sum(axis=0) / np.maximum(tot, 1e-9), 0.0)
                         .astype(np.float32))
        for c, med in zip(group, medians):
            obs = c.observed_mask()
            x = c.motion.copy()
            x[:, obs] += (out[name] - med)[obs]
            x[:, bounded & obs] = np.clip(x[:, bounded & obs], 0.0, 1.0)
            c.motion = np.ascontiguousarray(x, dtype=np.float32)
    return out


@dataclass
class DataStats:
    """Statistics of the training split.

    Attributes:
        mean / std: (C,) per-channel motion normalisation (std floored at :data:`STD_FLOOR`).
        keyframe_pos: (2,) fraction of keyframe frames per path (head, expression), over the clips observing it.
        keyframe_frames: (2,) frames those fractions were counted over.
        frames: number of motion frames they were computed over.

    The keyframe BCE weight w1 of the training set is derived from :meth:`overall_keyframe_rate` with the model
    config's bounds (``ksdiff.train.loop.prepare``, ``ksdiff.diffusion.losses.class_ratio_weight``).
    """

    mean: np.ndarray
    std: np.ndarray
    keyframe_pos: np.ndarray
    frames: int
    keyframe_frames: np.ndarray | None = None

    def overall_keyframe_rate(self) -> float:
        """Keyframe frames / frames over both paths together (counting only paths a clip observes)."""
        n = self.keyframe_frames if self.keyframe_frames is not None else np.ones(2)
        return float((self.keyframe_pos * n).sum() / max(float(n.sum()), 1.0))


def compute_stats(clips: list[ClipData], spec: FaceSpec | None = None) -> DataStats:
    """Per-channel mean / std of the motion over the frames of the clips that observe each channel (float64 sums;
    a channel no clip observes gets mean 0, std 1), and keyframe rates per path over the clips that observe any
    channel of that path (all clips when ``spec`` is None)."""
    if not clips:
        raise KsdiffError("the training split has no clips")
    C = clips[0].motion.shape[1]
    s1, s2, n = np.zeros(C), np.zeros(C), np.zeros(C)
    kpos, kn = np.zeros(2), np.zeros(2)
    paths = [spec.head_idx, spec.expression_idx] if spec is not None else [list(range(C))] * 2
    for c in clips:
        x = c.motion.astype(np.float64)
        obs = c.observed_mask()
        s1 += np.where(obs, x.sum(0), 0.0)
        s2 += np.where(obs, (x * x).sum(0), 0.0)
        n += np.where(obs, len(x), 0)
        for j, idx in enumerate(paths):
            if obs[idx].any():
                kpos[j] += c.keyframes[:, j].sum()
                kn[j] += len(x)
    seen = n > 0
    mean = np.where(seen, s1 / np.maximum(n, 1), 0.0)
    var = np.maximum(s2 / np.maximum(n, 1) - mean * mean, 0.0)
    std = np.where(seen, np.maximum(np.sqrt(var), STD_FLOOR), 1.0)
    pos = kpos / np.maximum(kn, 1)
    return DataStats(mean.astype(np.float32), std.astype(np.float32), pos.astype(np.float32),
                     sum(len(c.motion) for c in clips), kn)


def _crop_step(fps: float, rate: float) -> int:
    """Smallest motion-frame step at which the motion and feature grids meet exactly (1 when they never do)."""
    try:
        f, r = Fraction(fps).limit_denominator(1000), Fraction(rate).limit_denominator(1000)
    except (ValueError, OverflowError):
        return 1
    ratio = r / f  # feature frames per motion frame
    return ratio.denominator if ratio.denominator <= 10 else 1


class ClipCrops(TorchDataset):
    """Crops of clips as dicts of numpy arrays (see :func:`collate`).

    Index with ``(clip_index, crop_seed)`` (what :class:`StreamSampler` yields) for a random crop, or with a plain
    int for the deterministic crop ``crop_seed = clip_index`` (validation).

    Args:
        clips: loaded clips.
        fps: motion frame rate.
        crop_frames: motion frames per crop (0 = whole clips).
        speakers: the style vocabulary (one-hot); None = no style.
        emotion: emit valence/arousal.
        encoder / tokens / transcribe / language: to re-read features when clips were not preloaded, and to
            tokenize the words of a crop.
        reference: (shortest, longest) seconds of a reference clip of the same person to emit with each crop
            (:meth:`reference_window`); None = none.
    """

    def __init__(self, clips: list[ClipData], fps: float, crop_frames: int, speakers: list[str] | None = None,
                 emotion: bool = False, encoder: str = "mel", tokens: str = "chars", transcribe: bool = False,
                 reference: tuple[float, float] | None = None,
                 language: str = "en-us"):
        if not clips:
            raise KsdiffError("no clips to train on")
        self.clips = clips
        self.fps = float(fps)
        self.rate = clips[0].rate
        self.feat_dim = clips[0].feat_dim
        self.crop_frames = int(crop_frames)
        self.speakers = list(speakers) if speakers is not None else None
        self._spk_index = {s: i for i, s in enumerate(self.speakers or [])}
        self.emotion = emotion
        self.reference = None if reference is None else (float(reference[0]), float(reference[1]))
        self._by_person: dict[str, list[int]] = {}
        for j, c in enumerate(clips):
            if c.person:
                self._by_person.setdefault(c.person, []).append(j)
        self.encoder, self.tokens_kind, self.transcribe, self.language = encoder, tokens, transcribe, language
        self.step = _crop_step(self.fps, self.rate)
        self._token_memo: dict[tuple[int, int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def repeats(self, sampling: str = "duration") -> list[int]:
        """Draws of each clip per epoch: ``duration`` = the crops it holds (at least 1), ``clip`` = 1 each."""
        if sampling == "clip" or self.crop_frames <= 0:
            return [1] * len(self.clips)
        if sampling != "duration":
            raise KsdiffError(f"data.sampling must be 'duration' or 'clip', got {sampling!r}")
        return [max(1, int(round(len(c.motion) / self.crop_frames))) for c in self.clips]

    def feat_frames(self, motion_frames: int) -> int:
        return int(round(motion_frames * self.rate / self.fps))

    def _clip_features(self, c: ClipData) -> tuple[np.ndarray, np.ndarray]:
        if c.feats is not None and c.prosody is not None:
            return c.feats, c.prosody
        if c.feature_path is not None:  # read the cache file directly (no re-validation per item)
            from ksdiff.audio.features import load_features as read_feature_file

            sf = read_feature_file(c.feature_path)
        else:
            sf = load_features(c.dataset_dir, c.clip_id, self.encoder, self.tokens_kind, self.transcribe,
                               self.language)
        return np.asarray(sf.feats, dtype=np.float32), np.asarray(sf.prosody, dtype=np.float32)

    def _crop_tokens(self, i: int, c: ClipData, t0: int, n: int) -> np.ndarray:
        """Tokens of the words spoken inside frames [t0, t0 + n) (the whole transcript for a whole clip or when
        there are no word timings)."""
        T = len(c.motion)
        if (t0 == 0 and n >= T) or not c.words or self.tokens_kind == "none":
            return c.tokens
        from ksdiff.audio.tokens import window_tokens, words_in_window

        span = words_in_window(c.words, t0 / self.fps, (t0 + n) / self.fps)
        if span is None:
            return np.zeros(0, dtype=np.int64)
        key = (i, *span)
        if key not in self._token_memo:
            self._token_memo[key] = window_tokens(c.words, span, self.tokens_kind, self.language)
        return self._token_memo[key]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        if isinstance(key, (tuple, list)):
            i, seed = int(key[0]), int(key[1])
        else:
            i, seed = int(key), int(key)
        c = self.clips[i]
        T = len(c.motion)
        want = self.crop_frames if self.crop_frames > 0 else T
        n = min(want, T)
        t0 = 0
        if T > n:
            starts = (T - n) // self.step + 1
            t0 = int(np.random.default_rng([seed, i]).integers(starts)) * self.step
        feats, prosody = self._clip_features(c)
        n0 = int(round(t0 * self.rate / self.fps))
        nf = self.feat_frames(n)
        f = fit_rows(feats[n0:n0 + nf], nf)
        p = fit_rows(prosody[n0:n0 + nf], nf)
        item = {
            "key": c.key, "t0": t0, "pad_frames": want,
            "feats": f, "prosody": p,
            "motion": c.motion[t0:t0 + n], "keyframes": c.keyframes[t0:t0 + n],
            "tokens": self._crop_tokens(i, c, t0, n),
            "observed": c.observed_mask(),
        }
        if self.speakers is not None:
            style = np.zeros(len(self.speakers), dtype=np.float32)
            j = self._spk_index.get(c.speaker or "")
            if j is not None:
                style[j] = 1.0
            item["style"], item["has_style"] = style, j is not None
        if self.emotion:
            if c.emotion is not None:
                item["emotion"], item["has_emotion"] = c.emotion[t0:t0 + n], True
            else:
                item["emotion"], item["has_emotion"] = np.zeros((n, 2), np.float32), False
        if self.reference is not None:
            ref = self.reference_window(i, t0, n, seed)
            item["ref_motion"] = ref if ref is not None else np.zeros((1, c.motion.shape[1]), np.float32)
            item["has_ref"] = ref is not None
        return item

    def reference_window(self, i: int, t0: int, n: int, seed: int) -> np.ndarray | None:
        """A reference clip (Tr, C) for crop [t0, t0 + n) of clip ``i``: a window of random length in
        ``self.reference`` seconds from another clip of the same person when there is one, else from the part of
        the same clip outside the crop (the longer side) when it holds at least the shortest length, else the
        whole clip; None for a clip without a person."""
        c = self.clips[i]
        if c.person is None:
            return None
        rng = np.random.default_rng([seed, i, 11])
        lo, hi = (max(1, int(round(x * self.fps))) for x in self.reference)
        want = int(rng.integers(lo, max(lo, hi) + 1))
        others = [j for j in self._by_person.get(c.person, []) if j != i]
        if others:
            src = self.clips[others[int(rng.integers(len(others)))]].motion
            a, b = 0, len(src)
        else:
            src, T = c.motion, len(c.motion)
            a, b = (0, t0) if t0 >= T - (t0 + n) else (t0 + n, T)
            if b - a < lo:
                a, b = 0, T
        L = min(want, b - a)
        start = a + int(rng.integers(b - a - L + 1))
        return np.ascontiguousarray(src[start:start + L])


def collate(items: list[dict], fps: float, rate: float) -> dict:
    """Pad items into a batch (see ``KSDiff.training_loss``).

    Returns a dict of tensors: feats (B, N', F), prosody (B, N', 2), feat_mask (B, N') bool, motion (B, T, C),
    motion_mask (B, T) bool, keyframes (B, T, 2) float, tokens (B, L) long, token_mask (B, L) bool,
    channel_mask (B, C) bool (observed channels), [style (B, S), style_mask (B,)],
    [emotion (B, T, 2), emotion_mask (B,)], [ref_motion (B, Tr, C), ref_frames (B, Tr) bool, ref_mask (B,)],
    and ``keys`` (list of clip keys).
    N' = round(T × rate / fps): both streams span the same time.
    """
    B = len(items)
    T = max(max(it["pad_frames"], len(it["motion"])) for it in items)
    N = int(round(T * rate / fps))
    L = max(1, max(len(it["tokens"]) for it in items))
    F = items[0]["feats"].shape[1]
    C = items[0]["motion"].shape[1]
    feats = torch.zeros(B, N, F)
    prosody = torch.zeros(B, N, 2)
    feat_mask = torch.zeros(B, N, dtype=torch.bool)
    motion = torch.zeros(B, T, C)
    motion_mask = torch.zeros(B, T, dtype=torch.bool)
    keyframes = torch.zeros(B, T, 2)
    tokens = torch.zeros(B, L, dtype=torch.long)
    token_mask = torch.zeros(B, L, dtype=torch.bool)
    for b, it in enumerate(items):
        n, nf, nt = len(it["motion"]), min(len(it["feats"]), N), len(it["tokens"])
        feats[b, :nf] = torch.from_numpy(np.ascontiguousarray(it["feats"][:nf]))
        prosody[b, :nf] = torch.from_numpy(np.ascontiguousarray(it["prosody"][:nf]))
        feat_mask[b, :nf] = True
        motion[b, :n] = torch.from_numpy(np.ascontiguousarray(it["motion"]))
        motion_mask[b, :n] = True
        keyframes[b, :n] = torch.from_numpy(it["keyframes"].astype(np.float32))
        if nt:
            tokens[b, :nt] = torch.from_numpy(it["tokens"])
            token_mask[b, :nt] = True
    batch: dict = {"feats": feats, "prosody": prosody, "feat_mask": feat_mask, "motion": motion,
                   "motion_mask": motion_mask, "keyframes": keyframes, "tokens": tokens, "token_mask": token_mask,
                   "channel_mask": torch.from_numpy(np.stack([it["observed"] for it in items])),
                   "keys": [it["key"] for it in items]}
    if "style" in items[0]:
        batch["style"] = torch.from_numpy(np.stack([it["style"] for it in items]))
        batch["style_mask"] = torch.tensor([bool(it["has_style"]) for it in items])
    if "emotion" in items[0]:
        emo = torch.zeros(B, T, 2)
        for b, it in enumerate(items):
            emo[b, :len(it["emotion"])] = torch.from_numpy(it["emotion"])
        batch["emotion"] = emo
        batch["emotion_mask"] = torch.tensor([bool(it["has_emotion"]) for it in items])
    if "ref_motion" in items[0]:
        batch.update(collate_references([it["ref_motion"] for it in items], [it["has_ref"] for it in items]))
    return batch


class Collate:
    """Picklable collate function (for DataLoader workers)."""

    def __init__(self, fps: float, rate: float):
        self.fps, self.rate = fps, rate

    def __call__(self, items: list[dict]) -> dict:
        return collate(items, self.fps, self.rate)


def batch_to(batch: dict, device: torch.device) -> dict:
    """Move the tensors of a batch to ``device`` (other entries as they are)."""
    return {k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in batch.items()}


class StreamSampler(DistributedSampler):
    """An endless, resumable stream of ``(clip_index, crop_seed)`` for one rank.

    Epoch e is :class:`DistributedSampler`'s shuffled shard for this rank at epoch e (seeded by ``seed``); epochs
    follow each other without end. Item k of the stream (k = step × per-rank batch + position) gets the crop seed
    ``hash(seed, rank, k)``. ``start`` skips the first items, so resuming at step s with ``start = s × batch``
    yields exactly the items the uninterrupted run would have drawn. ``repeats[i]``: how many times clip i is in
    an epoch (default once; :meth:`ClipCrops.repeats`), each time with its own crop.
    """

    def __init__(self, dataset: TorchDataset, num_replicas: int = 1, rank: int = 0, seed: int = 0, start: int = 0,
                 repeats: list[int] | None = None):
        n = len(dataset)  # type: ignore[arg-type]
        reps = [1] * n if repeats is None else [int(r) for r in repeats]
        if len(reps) != n or min(reps, default=1) < 1:
            raise ValueError("repeats needs one count >= 1 per item")
        self._items = np.repeat(np.arange(n), reps)
        super().__init__(range(len(self._items)), num_replicas=num_replicas, rank=rank, shuffle=True,  # type: ignore
                         seed=seed, drop_last=False)
        self.start = int(start)

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        per_epoch = self.num_samples
        k = self.start
        while True:
            epoch, pos = divmod(k, per_epoch)
            self.set_epoch(epoch)
            order = list(super().__iter__())
            for p in range(pos, per_epoch):
                yield int(self._items[order[p]]), _item_seed(self.seed, self.rank, k)
                k += 1

    def __len__(self) -> int:
        return 2 ** 62


def _item_seed(seed: int, rank: int, k: int) -> int:
    """A 63-bit seed per (seed, rank, item) from numpy's SeedSequence."""
    return int(np.random.SeedSequence([seed, rank, k]).generate_state(1, np.uint64)[0]) >> 1


def crop_frames(crop_seconds: float, fps: float) -> int:
    """Motion frames of a crop (0 = whole clips)."""
    return 0 if crop_seconds <= 0 else max(1, int(math.floor(crop_seconds * fps + 0.5)))


def collate_references(refs: list[np.ndarray], present: list[bool]) -> dict[str, torch.Tensor]:
    """Reference clips (Tr_b, C) padded into ref_motion (B, Tr, C), ref_frames (B, Tr) bool and ref_mask (B,)."""
    Tr = max(len(r) for r in refs)
    motion = torch.zeros(len(refs), Tr, refs[0].shape[1])
    frames = torch.zeros(len(refs), Tr, dtype=torch.bool)
    for b, r in enumerate(refs):
        motion[b, :len(r)] = torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32))
        frames[b, :len(r)] = True
    return {"ref_motion": motion, "ref_frames": frames, "ref_mask": torch.tensor([bool(p) for p in present])}
