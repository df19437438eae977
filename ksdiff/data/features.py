"""The per-dataset feature cache: :func:`prepare_dataset` (``ksdiff prepare``) runs the audio front-end
(:func:`ksdiff.audio.features.compute_features`) on every clip of a dataset and caches the result, with the keyframe
labels of the clip's motion, at::

    DATASET/.cache/features/<key>/settings.json     what produced this folder (encoder settings, tokens, ...)
    DATASET/.cache/features/<key>/<clip>.npz        feats, prosody, tokens, words, text, keyframes, signatures

``<key>`` = ``<encoder slug>-<tokens>-<hash>`` where the hash covers the encoder's settings (for ``hf:<dir>`` a
fingerprint of its config and weight files), the token kind and language, whether transcripts were automatic, and
the cache format version. Each clip file is written atomically and records a hash of the clip's audio, transcript
and motion, so a run can be interrupted and resumed, and an edited clip is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import numpy as np

from ksdiff.audio.encoders import SpeechEncoder, encoder_settings
from ksdiff.audio.features import (
    CACHE_FORMAT_VERSION,
    SpeechFeatures,
    compute_features,
    features_from_arrays,
    read_features_npz,
    resolve_encoder,
    save_features,
)
from ksdiff.audio.tokens import TOKEN_KINDS
from ksdiff.data.dataset import open_dataset
from ksdiff.errors import KsdiffError
from ksdiff.face.keyframes import keyframe_labels
from ksdiff.face.specs import get_spec
from ksdiff.utils.io import write_json

__all__ = ["prepare_dataset", "load_clip_features", "cache_key", "cache_dir"]



def _slug(name: str) -> str:
    if name.startswith("hf:"):
        base, _, layer = name[3:].rpartition("@") if "@" in name[3:] else (name[3:], "", "")
        name = "hf-" + Path(base.rstrip("/\\")).name + (f"-l{layer}" if layer else "")
    return re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")[:48] or "encoder"


def _key_settings(enc: SpeechEncoder, tokens: str, transcribe: bool, language: str) -> dict:
    from ksdiff.audio.prosody import F0_CEIL, F0_FLOOR

    s = encoder_settings(enc)
    if enc.name.startswith("hf:"):
        s["name"] = _slug(enc.name)  # the folder's fingerprint identifies it, not where it lives
    return {"format_version": CACHE_FORMAT_VERSION, "encoder": s, "tokens": tokens,
            "language": language if tokens == "phonemes" else None, "transcribe": bool(transcribe),
            "prosody": {"method": "pyworld-dio-stonemask", "f0_floor": F0_FLOOR, "f0_ceil": F0_CEIL,
                        "energy": "rms-db-40ms"}}


def cache_key(encoder: str | SpeechEncoder = "whisper-tiny", tokens: str = "phonemes", transcribe: bool = True,
              language: str = "en-us", **encoder_options) -> str:
    """Name of the cache folder for these settings: ``<encoder slug>-<tokens>-<10-hex hash of all settings>``."""
    enc = resolve_encoder(encoder, **encoder_options)
    s = _key_settings(enc, tokens, transcribe, language)
    digest = hashlib.sha1(json.dumps(s, sort_keys=True).encode()).hexdigest()[:10]
    return f"{_slug(enc.name)}-{tokens}-{digest}"


def cache_dir(dataset_dir: str | os.PathLike, key: str) -> Path:
    """DATASET/.cache/features/<key>."""
    return Path(dataset_dir) / ".cache" / "features" / key


def _file_sig(path: Path) -> str:
    if not path.is_file():
        return ""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _clip_keyframes(clip, spec_name: str, fn) -> np.ndarray | None:
    if fn is None or not clip.motion_path.is_file():
        return None
    m = clip.motion()
    spec = get_spec(spec_name)
    coeffs = m.select(list(spec.channels)) if tuple(m.channels) != tuple(spec.channels) else m.coeffs
    return np.asarray(fn(coeffs, spec), dtype=np.uint8)


def _clip_state(clip, key: str, path: Path, kf_fn) -> tuple[str, dict | None, dict]:
    """('valid' | 'keyframes' (features fine, keyframes stale) | 'missing', cached arrays, current signatures)."""
    sigs = {"audio_sig": _file_sig(clip.audio_path), "transcript_sig": _file_sig(clip.root / "transcript.txt"),
            "motion_sig": _file_sig(clip.motion_path)}
    if not path.is_file():
        return "missing", None, sigs
    d = read_features_npz(path)
    need = {"feats", "prosody", "tokens", "words", "rate", "encoder", "key", "audio_sig", "transcript_sig"}
    if d is None or not need <= set(d) or str(d["key"]) != key:
        return "missing", None, sigs
    if str(d["audio_sig"]) != sigs["audio_sig"] or str(d["transcript_sig"]) != sigs["transcript_sig"]:
        return "missing", None, sigs
    if d["feats"].ndim != 2 or d["prosody"].shape != (d["feats"].shape[0], 2) or not np.isfinite(d["feats"]).all():
        return "missing", None, sigs
    if kf_fn is not None and sigs["motion_sig"] and (
            "keyframes" not in d or str(d.get("motion_sig", "")) != sigs["motion_sig"]):
        return "keyframes", d, sigs
    return "valid", d, sigs


def _compute_clip(clip, enc: SpeechEncoder, tokens: str, transcribe: bool, language: str) -> SpeechFeatures:
    wave = clip.audio()
    text = clip.transcript()
    lang = str(clip.meta().get("language") or "en")
    if not lang.lower().startswith("en"):
        transcribe = False  # Whisper tiny.en would invent English words for other languages: no tokens instead
    return compute_features(wave, enc, text=text, tokens=tokens, transcribe=transcribe, language=language)


def _write_clip(path: Path, sf: SpeechFeatures, key: str, sigs: dict) -> None:
    save_features(path, sf, extra={"key": key, **sigs})


def load_clip_features(dataset_dir: str | os.PathLike, clip_id: str, encoder: str | SpeechEncoder = "whisper-tiny",
                       tokens: str = "phonemes", transcribe: bool = True, language: str = "en-us",
                       **encoder_options) -> SpeechFeatures:
    """Features of one dataset clip from the cache ``ksdiff prepare`` writes; computed and cached when missing or
    stale. ``keyframes`` holds the clip's keyframe labels (T, 2) when its motion exists."""
    ds = open_dataset(dataset_dir)
    clip = ds.clip(clip_id)
    if not clip.root.is_dir():
        raise KsdiffError(f"dataset has no clip {clip_id!r}", ds.root)
    enc = resolve_encoder(encoder, **encoder_options)
    key = cache_key(enc, tokens, transcribe, language)
    path = cache_dir(ds.root, key) / f"{clip_id}.npz"
    kf_fn = keyframe_labels
    state, d, sigs = _clip_state(clip, key, path, kf_fn)
    if state == "valid":
        return features_from_arrays(d)
    if state == "keyframes":
        sf = features_from_arrays(d)
    else:
        _write_settings(ds.root, key, enc, tokens, transcribe, language)
        sf = _compute_clip(clip, enc, tokens, transcribe, language)
    sf.keyframes = _clip_keyframes(clip, ds.spec, kf_fn)
    _write_clip(path, sf, key, sigs)
    return sf


def _write_settings(root: Path, key: str, enc: SpeechEncoder, tokens: str, transcribe: bool, language: str) -> None:
    p = cache_dir(root, key) / "settings.json"
    if not p.is_file():
        write_json(p, {"key": key, "encoder_name": enc.name, **_key_settings(enc, tokens, transcribe, language)})


def prepare_dataset(dataset_dir: str | os.PathLike, encoder: str | SpeechEncoder = "whisper-tiny",
                    tokens: str = "phonemes", transcribe: bool = True, language: str = "en-us",
                    split: str | None = None, force: bool = False, progress: bool = True,
                    **encoder_options) -> dict:
    """Compute and cache features, prosody, tokens and keyframe labels for every clip of a dataset (resumable).

    Clips whose cache file exists, loads, has the same key and matches the clip's current audio/transcript are
    skipped (only their keyframes are refreshed when the motion changed). With ``force`` everything is recomputed.

    Returns:
        summary dict: key, cache_dir, clips, computed, skipped, keyframes_updated, no_text (clips without tokens),
        seconds (audio), elapsed.
    """
    from tqdm import tqdm

    if tokens not in TOKEN_KINDS:
        raise KsdiffError(f"--tokens must be one of {', '.join(TOKEN_KINDS)}, not {tokens!r}")
    if tokens == "phonemes":
        from ksdiff.audio.tokens import _espeak_backend

        _espeak_backend(language)  # fail now, not after an hour of encoding
    ds = open_dataset(dataset_dir)
    enc = resolve_encoder(encoder, **encoder_options)
    key = cache_key(enc, tokens, transcribe, language)
    out_dir = cache_dir(ds.root, key)
    _write_settings(ds.root, key, enc, tokens, transcribe, language)
    kf_fn = keyframe_labels
    ids = ds.clip_ids(split)
    summary = {"key": key, "cache_dir": str(out_dir), "clips": len(ids), "computed": 0, "skipped": 0,
               "keyframes_updated": 0, "no_text": 0, "seconds": 0.0, "keyframes": kf_fn is not None}
    t_start = time.perf_counter()
    bar = tqdm(ids, desc=f"prepare {key}", unit="clip", disable=not progress, dynamic_ncols=True)
    for cid in bar:
        clip = ds.clip(cid)
        path = out_dir / f"{cid}.npz"
        state, d, sigs = ("missing", None, None) if force else _clip_state(clip, key, path, kf_fn)
        if sigs is None:
            sigs = {"audio_sig": _file_sig(clip.audio_path), "transcript_sig": _file_sig(clip.root / "transcript.txt"),
                    "motion_sig": _file_sig(clip.motion_path)}
        if state == "valid":
            summary["skipped"] += 1
            summary["seconds"] += float(d["feats"].shape[0]) / float(d["rate"])
            continue
        if state == "keyframes":
            sf = features_from_arrays(d)
            summary["keyframes_updated"] += 1
        else:
            if not clip.audio_path.is_file():
                raise KsdiffError("clip audio missing (run ksdiff dataset check)", clip.audio_path)
            sf = _compute_clip(clip, enc, tokens, transcribe, language)
            summary["computed"] += 1
        if tokens != "none" and len(sf.tokens) == 0:
            summary["no_text"] += 1
        sf.keyframes = _clip_keyframes(clip, ds.spec, kf_fn)
        _write_clip(path, sf, key, sigs)
        summary["seconds"] += sf.duration
    summary["elapsed"] = time.perf_counter() - t_start
    return summary
