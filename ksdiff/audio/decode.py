"""Decode any common audio (or the audio stream of a video) to 16 kHz mono float32 with PyAV + soxr, streaming."""

from __future__ import annotations

import itertools
import os
import re
import wave
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path

SAMPLE_RATE = 16_000  # Hz; every speech encoder here expects 16 kHz mono
#: Audio whose loudest 40 ms (RMS, the prosody energy window) stays below this level is silent throughout: no
#: speech to hear (16-bit digital silence, a muted microphone, a noise floor). Speech recorded at any usable level
#: peaks 30-60 dB above it. The one silence rule of the project (decoding, features, generate, serve, importers).
SILENCE_DBFS = -60.0


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, allow_silent: bool = False, *,
               max_seconds: float | None = None, allow_missing: bool = False) -> np.ndarray:
    """Decode ``path`` (wav/flac/mp3/m4a/aac/aiff/ogg, or a video's audio stream) to mono float32 at ``sr``.

    Decoding streams: frames are averaged to mono and resampled (soxr, high quality) block by block, so memory
    stays near the size of the result (230 MB per hour at 16 kHz), never the decoded multi-channel source.

    Args:
        max_seconds: refuse audio longer than this: the container's declared duration is checked first (when it
            is clearly over), and decoding stops as soon as the decoded audio passes the limit (a header can lie).
        allow_missing: a file without an audio stream (a muted video) gives an empty wave instead of an error.

    Returns:
        wave: float32 array (N,), N ≈ seconds × sr, values in [-1, 1].

    Raises:
        KsdiffError: the file is missing, is not audio, has no audio stream, is empty, is longer than
            ``max_seconds``, or is silent throughout (unless ``allow_silent``).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise KsdiffError("audio file not found", path)
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                if allow_missing:
                    return np.zeros(0, np.float32)
                raise KsdiffError("no audio stream in this file", path)
            if max_seconds is not None:
                _check_declared_duration(container, streams[0], max_seconds, path)
            wav = _decode_mono(container, streams[0], sr, max_seconds, path)
    except KsdiffError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as e:  # type: ignore[attr-defined]
        raise KsdiffError(f"not readable as audio ({_short(e)})", path) from None
    if len(wav) == 0:
        raise KsdiffError("audio is empty (no samples decoded)", path)
    if not allow_silent:
        check_not_silent(wav, sr, path)
    return wav


def loudest_level_db(wave: np.ndarray, block: int = SAMPLE_RATE // 50) -> float:
    """Level of the loudest 2 × ``block`` samples of ``wave`` (RMS in dBFS; 40 ms at 16 kHz), in O(block) memory.

    wave: (N,) float mono in [-1, 1]. Returns -inf for digital silence.
    """
    wave = np.asarray(wave).reshape(-1)
    n = len(wave) // block * block
    ms = np.zeros(max(1, n // block + (len(wave) > n)), np.float64)
    step = block * 8192  # 2.6 M samples per chunk at 16 kHz
    for i in range(0, n, step):
        seg = wave[i:min(i + step, n)].astype(np.float64).reshape(-1, block)
        ms[i // block:i // block + len(seg)] = np.mean(seg * seg, axis=1)
    if len(wave) > n:
        ms[-1] = np.mean(np.square(wave[n:], dtype=np.float64))
    pair = (ms[:-1] + ms[1:]) / 2 if len(ms) > 1 else ms
    peak = float(pair.max())
    return 10 * float(np.log10(peak)) if peak > 0 else float("-inf")


def check_not_silent(wave: np.ndarray, sr: int = SAMPLE_RATE, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`KsdiffError` when ``wave`` (N,) at ``sr`` Hz is silent throughout: its loudest 40 ms stays
    below :data:`SILENCE_DBFS` (digital silence and near-silence alike)."""
    level = loudest_level_db(wave, max(1, sr // 50))
    if level < SILENCE_DBFS:
        shown = "digital silence" if level == float("-inf") else f"loudest 40 ms at {level:.1f} dBFS"
        raise KsdiffError(f"audio is silent throughout ({shown}; speech must rise above {SILENCE_DBFS:g} dBFS): "
                          "check the recording, or raise its level", path)


def _too_long(max_seconds: float, path: Path, seconds: float | None = None) -> KsdiffError:
    said = f"audio is {seconds:.0f} s long, over" if seconds is not None else "audio is longer than"
    return KsdiffError(f"{said} the {max_seconds:g} s limit", path)


def _check_declared_duration(container, stream, max_seconds: float, path: Path) -> None:
    """Refuse early when the container says the audio is clearly longer than ``max_seconds`` (2 % + 1 s of slack:
    durations estimated from the bitrate are approximate). A header that says less proves nothing."""
    declared = None
    if stream.duration is not None and stream.time_base is not None:
        declared = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        declared = container.duration / 1_000_000  # AV_TIME_BASE
    if declared is not None and declared > max_seconds * 1.02 + 1.0:
        raise _too_long(max_seconds, path, declared)


def _decode_mono(container, stream, sr: int, max_seconds: float | None, path: Path) -> np.ndarray:
    """Decode ``stream`` frame by frame to mono and resample it to ``sr`` in blocks of ~1 s.

    Returns the (N,) float32 wave at ``sr``, grown in place (realloc: no second copy of the result at any time).
    Raises KsdiffError on NaN/inf samples or once the decoded audio passes ``max_seconds``.
    """
    import av
    import soxr

    src_rate = stream.codec_context.sample_rate or stream.rate
    # Convert to planar float keeping the channels, then average them here: FFmpeg's own downmix of an
    # unnamed 2-channel layout ("2 channels", common in wav) scales by sqrt(2) and clips.
    converter = av.AudioResampler(format="fltp", rate=src_rate)
    rs = soxr.ResampleStream(src_rate, sr, 1, dtype="float32", quality="HQ") if src_rate != sr else None
    limit = None if max_seconds is None else int(np.ceil(max_seconds * src_rate))
    wav = np.empty(60 * sr, dtype=np.float32)  # grows by doubling
    n = decoded = 0
    block: list[np.ndarray] = []

    def flush(last: bool) -> None:
        nonlocal n
        x = np.concatenate(block) if block else np.zeros(0, np.float32)
        block.clear()
        if not np.isfinite(x).all():
            raise KsdiffError("audio contains NaN or inf samples", path)
        y = rs.resample_chunk(x, last=last) if rs is not None else x
        if n + len(y) > len(wav):
            wav.resize(max(2 * len(wav), n + len(y)), refcheck=False)
        wav[n:n + len(y)] = y
        n += len(y)

    for frame in itertools.chain(container.decode(stream), [None]):  # None: flush the converter
        for conv in converter.resample(frame):
            mono = conv.to_ndarray().mean(axis=0, dtype=np.float32)
            decoded += len(mono)
            if limit is not None and decoded > limit:
                raise _too_long(max_seconds, path)
            block.append(mono)
            if sum(len(b) for b in block) >= src_rate:
                flush(last=False)
    flush(last=True)
    wav.resize(n, refcheck=False)
    return wav


def _short(e: Exception) -> str:
    """The gist of a decoder exception: no errno, no repeated file name."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    msg = re.sub(r"^\[Errno -?\d+\]\s*", "", msg)
    msg = re.sub(r":\s*'[^']*'$", "", msg)
    return msg[:160]


def write_wav(path: str | os.PathLike, wave_: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write mono float audio as 16-bit PCM wav, atomically."""
    x = np.asarray(wave_, dtype=np.float32).reshape(-1)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_path(path, suffix=".wav") as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(sr))
            w.writeframes(pcm.tobytes())


def audio_duration(path: str | os.PathLike) -> float:
    """Duration in seconds of a 16-bit PCM wav written by :func:`write_wav` (cheap: reads the header only);
    falls back to decoding for other files."""
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            return w.getnframes() / float(w.getframerate())
    except (wave.Error, EOFError, OSError):
        return len(load_audio(path, allow_silent=True)) / SAMPLE_RATE
