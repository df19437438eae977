"""Speech features for the model: encoder frames, prosody, transcript tokens, and their file format.

:func:`compute_features` runs the whole front-end on one wave. The per-dataset cache of these features
(``ksdiff prepare``) is :mod:`ksdiff.data.features`.
"""

from __future__ import annotations

import json
import os
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE, check_not_silent, load_audio
from ksdiff.audio.encoders import SpeechEncoder, get_encoder, num_frames
from ksdiff.audio.tokens import text_to_tokens, vocab_size
from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path

CACHE_FORMAT_VERSION = 1

#: The shortest audio ``ksdiff features`` and ``ksdiff generate`` accept, in seconds: 5 feature frames (2.5 motion
#: frames at 25 fps). Shorter audio has too little for pitch tracking (DIO's 50 ms) or a transcript (Whisper is
#: not run under 0.1 s), and under 10 ms not even one feature frame.
MIN_SECONDS = 0.1

__all__ = ["SpeechFeatures", "get_encoder", "resolve_encoder", "compute_features", "save_features", "load_features",
           "read_features_npz", "features_from_arrays", "MIN_SECONDS", "check_duration", "check_speech",
           "load_speech"]


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


def check_duration(seconds: float, path: str | os.PathLike | None = None) -> None:
    """Refuse audio shorter than :data:`MIN_SECONDS` (the one rule of ``features`` and ``generate``)."""
    if seconds < MIN_SECONDS:
        raise KsdiffError(f"audio is too short ({seconds:.3f} s); at least {MIN_SECONDS:g} s of speech is needed",
                          path)


def check_speech(wave: np.ndarray, path: str | os.PathLike | None = None) -> None:
    """Refuse audio ``features`` / ``generate`` cannot use: shorter than :data:`MIN_SECONDS`, or silent throughout
    (:func:`ksdiff.audio.decode.check_not_silent`: digital silence and near-silence alike)."""
    check_duration(len(wave) / SAMPLE_RATE, path)
    check_not_silent(wave, SAMPLE_RATE, path)


def load_speech(path: str | os.PathLike, max_seconds: float | None = None) -> np.ndarray:
    """Decode ``path`` (:func:`ksdiff.audio.decode.load_audio`; refused past ``max_seconds`` when given) and
    :func:`check_speech` it -> (N,) float32 16 kHz."""
    wave = load_audio(path, allow_silent=True, max_seconds=max_seconds)
    check_speech(wave, path)
    return wave


def resolve_encoder(encoder: str | SpeechEncoder, **options) -> SpeechEncoder:
    """An encoder object from a name (or the object itself)."""
    return encoder if isinstance(encoder, SpeechEncoder) else get_encoder(encoder, **options)


def compute_features(wave: np.ndarray, encoder: str | SpeechEncoder = "whisper-tiny", text: str | None = None,
                     tokens: str = "phonemes", transcribe: bool = True, language: str = "en-us",
                     transcriber: str = "shared", **encoder_options) -> SpeechFeatures:
    """Run the audio front-end on one utterance.

    Args:
        wave: (N,) float32 mono at 16 kHz.
        encoder: encoder name (``whisper-tiny``, ``hf:<dir>``, ``mel``) or an encoder object.
        text: the transcript; when None and ``transcribe``, the automatic one (Whisper tiny.en) is used.
        tokens: ``phonemes`` (espeak-ng, optional extra), ``chars`` or ``none``.
        transcribe: transcribe automatically when ``text`` is None (also gives ``words``).
        transcriber: ``shared`` (default with the whisper-tiny encoder): greedy decoding from the encoder windows
            the features are computed from (:class:`ksdiff.audio.transcript.EncoderTranscriber`, no second
            encoder pass); ``separate``: faster-whisper's own pipeline (beam 5, :func:`transcribe`), slower.
        language: espeak-ng voice for phoneme tokens.

    Returns:
        SpeechFeatures with feats (N', C), prosody (N', 2), tokens (L,), N' = round(N / 16000 × 50).
    """
    from ksdiff.audio.prosody import extract_prosody, normalize_prosody

    vocab_size(tokens)  # validate the kind before spending time
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    enc = resolve_encoder(encoder, **encoder_options)
    n = num_frames(len(wave))
    info: dict = {"seconds": len(wave) / SAMPLE_RATE}

    shared = _shared_transcriber(enc, len(wave)) if text is None and transcribe and transcriber == "shared" \
        else None
    # prosody (pyworld releases the GIL) runs in a thread while the encoder and the transcript run
    pros = _Background(lambda: extract_prosody(wave, num_frames=n))
    t0 = time.perf_counter()
    try:
        feats = enc.encode(wave, on_windows=shared.add) if shared is not None else enc.encode(wave)
    finally:
        raw = pros.result()
    info["time_encoder"] = time.perf_counter() - t0
    if feats.shape != (n, enc.dim):
        raise RuntimeError(f"encoder {enc.name} returned {feats.shape}, expected ({n}, {enc.dim})")
    prosody = normalize_prosody(raw)
    info["time_prosody"] = pros.seconds  # overlapped with the encoder: not on top of it
    info["voiced_fraction"] = raw.voiced_fraction
    info["f0_median_hz"] = raw.f0_median

    words: list[tuple[str, float, float]] = []
    if text is None and transcribe:
        text, words = _transcript(wave, shared, info)
    t0 = time.perf_counter()
    ids = text_to_tokens(text, tokens, language=language)
    info["time_tokens"] = time.perf_counter() - t0
    return SpeechFeatures(feats=np.asarray(feats, dtype=np.float32), prosody=prosody, tokens=ids, words=words,
                          rate=enc.rate, encoder=enc.name, text=text or "", token_kind=tokens, info=info)


class _Background:
    """``fn()`` in a thread from now; :meth:`result` waits for it and returns its value or raises its error."""

    def __init__(self, fn) -> None:
        self._out: dict = {}
        self.seconds = 0.0

        def run() -> None:
            t = time.perf_counter()
            try:
                self._out["value"] = fn()
            except BaseException as e:  # re-raised in the caller's thread
                self._out["error"] = e
            self.seconds = time.perf_counter() - t

        self._thread = threading.Thread(target=run, daemon=True, name="ksdiff-background")
        self._thread.start()

    def result(self):
        self._thread.join()
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


def _shared_transcriber(enc: SpeechEncoder, num_samples: int):
    """An :class:`ksdiff.audio.transcript.EncoderTranscriber` over a whisper-tiny encoder's windows (int8
    decoding: 2x faster, the same words), or None for other encoders."""
    from ksdiff.audio.encoders import WhisperEncoder, _ct2_whisper
    from ksdiff.audio.transcript import EncoderTranscriber

    if not isinstance(enc, WhisperEncoder):
        return None
    decoder = _ct2_whisper(str(enc.model_dir), "int8", enc.threads)
    return EncoderTranscriber(decoder, num_frames(num_samples), enc.window_starts(num_samples))


def _transcript(wave: np.ndarray, shared, info: dict) -> tuple[str, list[tuple[str, float, float]]]:
    """(text, words) from the shared transcriber (its decoding time moved from the encoder's to the transcript's)
    or from faster-whisper's own pipeline; times into ``info``."""
    if shared is not None:
        tr = shared.result()
        info["time_transcript"] = shared.seconds
        info["time_encoder"] -= shared.seconds
        return tr.text, tr.words
    from ksdiff.audio.transcript import transcribe

    t0 = time.perf_counter()
    tr = transcribe(wave)
    info["time_transcript"] = time.perf_counter() - t0
    return tr.text, tr.words


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


def read_features_npz(path: Path) -> dict | None:
    """The arrays of a feature file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None


def features_from_arrays(d: dict) -> SpeechFeatures:
    """SpeechFeatures from the arrays of a feature file."""
    words = [tuple(w) for w in json.loads(str(d["words"]))]
    kf = d.get("keyframes")
    return SpeechFeatures(feats=d["feats"].astype(np.float32), prosody=d["prosody"].astype(np.float32),
                          tokens=d["tokens"].astype(np.int64), words=[(str(a), float(b), float(c)) for a, b, c in words],
                          rate=float(d["rate"]), encoder=str(d["encoder"]), text=str(d["text"]),
                          token_kind=str(d["token_kind"]), keyframes=None if kf is None else kf.astype(np.uint8),
                          info=json.loads(str(d["info"])) if "info" in d else {})


def load_features(path: str | os.PathLike) -> SpeechFeatures:
    """Read features written by :func:`save_features`."""
    d = read_features_npz(Path(path))
    if d is None or not {"feats", "prosody", "tokens", "words", "rate", "encoder"} <= set(d):
        raise KsdiffError("not a ksdiff speech-feature file", path)
    return features_from_arrays(d)
