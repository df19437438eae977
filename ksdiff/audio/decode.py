"""Decode any common audio (or the audio stream of a video) to 16 kHz mono float32 with PyAV + soxr."""

from __future__ import annotations

import os
import re
import wave
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path

SAMPLE_RATE = 16_000  # Hz; every speech encoder here expects 16 kHz mono


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE, allow_silent: bool = False) -> np.ndarray:
    """Decode ``path`` (wav/flac/mp3/m4a/aac/aiff/ogg, or a video's audio stream) to mono float32 at ``sr``.

    Channels are averaged; the rate is converted with soxr (high quality).

    Returns:
        wave: float32 array (N,), N ≈ seconds × sr, values in [-1, 1].

    Raises:
        KsdiffError: the file is missing, is not audio, has no audio stream, is empty, or is silent throughout
            (unless ``allow_silent``).
    """
    import av
    import soxr

    path = Path(path)
    if not path.is_file():
        raise KsdiffError("audio file not found", path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise KsdiffError("no audio stream in this file", path)
            stream = streams[0]
            src_rate = stream.codec_context.sample_rate or stream.rate
            # Convert to planar float keeping the channels, then average them here: FFmpeg's own downmix of an
            # unnamed 2-channel layout ("2 channels", common in wav) scales by sqrt(2) and clips.
            resampler = av.AudioResampler(format="fltp", rate=src_rate)
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().mean(axis=0))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().mean(axis=0))
    except KsdiffError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError, IndexError) as e:  # type: ignore[attr-defined]
        raise KsdiffError(f"not readable as audio ({_short(e)})", path) from None
    if not chunks or sum(len(c) for c in chunks) == 0:
        raise KsdiffError("audio is empty (no samples decoded)", path)
    wav = np.concatenate(chunks).astype(np.float32)
    if not np.isfinite(wav).all():
        raise KsdiffError("audio contains NaN or inf samples", path)
    if src_rate != sr:
        wav = soxr.resample(wav, src_rate, sr, quality="HQ").astype(np.float32)
    if not allow_silent and float(np.abs(wav).max(initial=0.0)) < 1e-4:
        raise KsdiffError("audio is silent throughout", path)
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
