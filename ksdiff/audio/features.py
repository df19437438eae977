"""Speech features for the model: encoder frames, prosody, transcript tokens; and the per-dataset feature cache.

:func:`compute_features` runs the whole front-end on one wave. :func:`prepare_dataset` (``ksdiff prepare``) runs it
on every clip of a dataset and caches the result, with the keyframe labels of the clip's motion, at::

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
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE
from ksdiff.audio.encoders import SpeechEncoder, encoder_settings, get_encoder, num_frames
from ksdiff.audio.tokens import TOKEN_KINDS, text_to_tokens, vocab_size
from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path, write_json

CACHE_FORMAT_VERSION = 1

__all__ = ["SpeechFeatures", "get_encoder", "compute_features", "prepare_dataset", "load_clip_features",
           "cache_key", "cache_dir", "save_features", "load_features"]


@dataclass
class SpeechFeatures:
    """Everything the model hears of one utterance.

    Attributes:
        feats: (N', C) float32 encoder features at ``rate`` Hz.
        prosody: (N', 2) float32: log-f0 z-score over voiced frames (unvoiced 0), energy-dB z-score.
        tokens: (L,) int64 transcript token ids (0 = padding, never a real token); empty when there is no text.
        words: (word, start_s, end_s) per word from the automatic transcript, or [].
        rate: feature frames per second (50).
        encoder: encoder name (``get_encoder`` accepts it).
        text: the transcript the tokens came from ("" when none).
        token_kind: ``phonemes`` / ``chars`` / ``none``.
        keyframes: (T, 2) uint8 ground-truth keyframes of the clip's motion (head, expression), when prepared from
            a dataset with motion; else None.
        info: statistics and per-stage seconds (``seconds``, ``voiced_fraction``, ``f0_median_hz``, ``time_*``).
    """

    feats: np.ndarray
    prosody: np.ndarray
    tokens: np.ndarray
    words: list[tuple[str, float, float]]
    rate: float
    encoder: str
    text: str = ""
    token_kind: str = "none"
    keyframes: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.feats.shape[0])

    @property
    def dim(self) -> int:
        return int(self.feats.shape[1])

    @property
    def duration(self) -> float:
        return self.num_frames / self.rate


def _resolve_encoder(encoder: str | SpeechEncoder, **options) -> SpeechEncoder:
    return encoder if isinstance(encoder, SpeechEncoder) else get_encoder(encoder, **options)


def compute_features(wave: np.ndarray, encoder: str | SpeechEncoder = "whisper-tiny", text: str | None = None,
                     tokens: str = "phonemes", transcribe: bool = True, language: str = "en-us",
                     **encoder_options) -> SpeechFeatures:
    """Run the audio front-end on one utterance.

    Args:
        wave: (N,) float32 mono at 16 kHz.
        encoder: encoder name (``whisper-tiny``, ``hf:<dir>``, ``mel``) or an encoder object.
        text: the transcript; when None and ``transcribe``, the automatic one (Whisper tiny.en) is used.
        tokens: ``phonemes`` (espeak-ng, optional extra), ``chars`` or ``none``.
        transcribe: transcribe automatically when ``text`` is None (also gives ``words``).
        language: espeak-ng voice for phoneme tokens.

    Returns:
        SpeechFeatures with feats (N', C), prosody (N', 2), tokens (L,), N' = round(N / 16000 × 50).
    """
    from ksdiff.audio.prosody import extract_prosody, normalize_prosody

    vocab_size(tokens)  # validate the kind before spending time
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    enc = _resolve_encoder(encoder, **encoder_options)
    n = num_frames(len(wave))
    info: dict = {"seconds": len(wave) / SAMPLE_RATE}

    t0 = time.perf_counter()
    feats = enc.encode(wave)
    info["time_encoder"] = time.perf_counter() - t0
    if feats.shape != (n, enc.dim):
        raise RuntimeError(f"encoder {enc.name} returned {feats.shape}, expected ({n}, {enc.dim})")

    t0 = time.perf_counter()
    raw = extract_prosody(wave, num_frames=n)
    prosody = normalize_prosody(raw)
    info["time_prosody"] = time.perf_counter() - t0
    info["voiced_fraction"] = raw.voiced_fraction
    info["f0_median_hz"] = raw.f0_median

    words: list[tuple[str, float, float]] = []
    if text is None and transcribe:
        from ksdiff.audio.transcript import transcribe as _transcribe

        t0 = time.perf_counter()
        tr = _transcribe(wave)
        info["time_transcript"] = time.perf_counter() - t0
        text, words = tr.text, tr.words
    t0 = time.perf_counter()
    ids = text_to_tokens(text, tokens, language=language)
    info["time_tokens"] = time.perf_counter() - t0
    return SpeechFeatures(feats=feats.astype(np.float32), prosody=prosody, tokens=ids, words=words,
                          rate=enc.rate, encoder=enc.name, text=text or "", token_kind=tokens, info=info)


# ------------------------------------------------------------------------------------------------ files


def save_features(path: str | os.PathLike, sf: SpeechFeatures, extra: dict | None = None) -> None:
    """Write ``sf`` (and ``extra`` string/array fields) to an ``.npz``, atomically."""
    arrays = {
        "feats": sf.feats.astype(np.float32), "prosody": sf.prosody.astype(np.float32),
        "tokens": sf.tokens.astype(np.int64), "words": np.array(json.dumps(sf.words)),
        "rate": np.float64(sf.rate), "encoder": np.array(sf.encoder), "text": np.array(sf.text),
        "token_kind": np.array(sf.token_kind), "info": np.array(json.dumps(sf.info)),
        "format_version": np.int32(CACHE_FORMAT_VERSION),
    }
    if sf.keyframes is not None:
        arrays["keyframes"] = np.asarray(sf.keyframes, dtype=np.uint8)
    for k, v in (extra or {}).items():
        arrays[k] = np.array(v)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def _read_npz(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None


def _from_arrays(d: dict) -> SpeechFeatures:
    words = [tuple(w) for w in json.loads(str(d["words"]))]
    kf = d.get("keyframes")
    return SpeechFeatures(feats=d["feats"].astype(np.float32), prosody=d["prosody"].astype(np.float32),
                          tokens=d["tokens"].astype(np.int64), words=[(str(a), float(b), float(c)) for a, b, c in words],
                          rate=float(d["rate"]), encoder=str(d["encoder"]), text=str(d["text"]),
                          token_kind=str(d["token_kind"]), keyframes=None if kf is None else kf.astype(np.uint8),
                          info=json.loads(str(d["info"])) if "info" in d else {})


def load_features(path: str | os.PathLike) -> SpeechFeatures:
    """Read features written by :func:`save_features`."""
    d = _read_npz(Path(path))
    if d is None or not {"feats", "prosody", "tokens", "words", "rate", "encoder"} <= set(d):
        raise KsdiffError("not a ksdiff speech-feature file", path)
    return _from_arrays(d)


# ------------------------------------------------------------------------------------------------ cache


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
    enc = _resolve_encoder(encoder, **encoder_options)
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


def _keyframe_fn():
    """keyframe_labels, or None (with a warning) when the model package does not provide it."""
    try:
        from ksdiff.model.keyframes import keyframe_labels
    except ImportError as e:  # pragma: no cover - depends on the checkout
        warnings.warn(f"keyframe labels skipped: ksdiff.model.keyframes is not importable ({e})", stacklevel=3)
        return None
    return keyframe_labels


def _clip_keyframes(clip, spec_name: str, fn) -> np.ndarray | None:
    if fn is None or not clip.motion_path.is_file():
        return None
    from ksdiff.face.specs import get_spec

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
    d = _read_npz(path)
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
    from ksdiff.data.dataset import open_dataset

    ds = open_dataset(dataset_dir)
    clip = ds.clip(clip_id)
    if not clip.root.is_dir():
        raise KsdiffError(f"dataset has no clip {clip_id!r}", ds.root)
    enc = _resolve_encoder(encoder, **encoder_options)
    key = cache_key(enc, tokens, transcribe, language)
    path = cache_dir(ds.root, key) / f"{clip_id}.npz"
    kf_fn = _keyframe_fn()
    state, d, sigs = _clip_state(clip, key, path, kf_fn)
    if state == "valid":
        return _from_arrays(d)
    if state == "keyframes":
        sf = _from_arrays(d)
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

    from ksdiff.data.dataset import open_dataset

    if tokens not in TOKEN_KINDS:
        raise KsdiffError(f"--tokens must be one of {', '.join(TOKEN_KINDS)}, not {tokens!r}")
    if tokens == "phonemes":
        from ksdiff.audio.tokens import _espeak_backend

        _espeak_backend(language)  # fail now, not after an hour of encoding
    ds = open_dataset(dataset_dir)
    enc = _resolve_encoder(encoder, **encoder_options)
    key = cache_key(enc, tokens, transcribe, language)
    out_dir = cache_dir(ds.root, key)
    _write_settings(ds.root, key, enc, tokens, transcribe, language)
    kf_fn = _keyframe_fn()
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
            sf = _from_arrays(d)
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
