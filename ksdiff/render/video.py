"""Mux rendered frames (H.264, yuv420p) and speech (AAC) into an mp4 with PyAV, written atomically."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path
from ksdiff.utils.threads import Worker

AUDIO_RATE = 48_000  # Hz: the AAC stream's rate (speech is resampled to it; 1024-sample AAC frames = 21 ms)


def load_audio_for_video(path: str | os.PathLike, rate: int = AUDIO_RATE) -> np.ndarray:
    """Decode ``path`` (any format PyAV reads) to mono float32 at ``rate``: (N,) samples."""
    import av

    path = Path(path)
    if not path.is_file():
        raise KsdiffError("audio file not found", path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise KsdiffError("no audio stream in this file", path)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except KsdiffError:
        raise
    except (av.error.FFmpegError, ValueError) as e:  # type: ignore[attr-defined]
        raise KsdiffError(f"not readable as audio ({e})", path) from None
    if not chunks:
        raise KsdiffError("audio is empty (no samples decoded)", path)
    return np.concatenate(chunks).astype(np.float32)


def write_video(frames: Iterable[np.ndarray], fps: float, out_path: str | os.PathLike,
                audio: np.ndarray | None = None, audio_rate: int = AUDIO_RATE, crf: int = 18,
                preset: str = "veryfast", threaded: bool = True) -> dict:
    """Encode ``frames`` ((H, W, 3) uint8 each, H and W even) at ``fps`` with optional mono ``audio`` (N,)
    float32 at ``audio_rate`` into an mp4 at ``out_path`` (atomically: a failure leaves nothing).

    The caller matches the frame count to the audio (``round(seconds × fps)``); audio packets are interleaved
    with the video as it is written. With ``threaded``, encoding runs in its own thread, so it overlaps the
    making of the next frame (the renderer).

    Returns:
        {"frames": T, "video_seconds": T / fps, "audio_seconds": N / audio_rate or None, "path": str}.
    """
    import av

    rate = Fraction(fps).limit_denominator(1001000)
    out_path = Path(out_path)
    n_frames = 0
    with atomic_path(out_path, suffix=".mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            vstream = None
            astream = None
            if audio is not None:
                audio = np.asarray(audio, dtype=np.float32).reshape(-1)
                astream = container.add_stream("aac", rate=audio_rate, layout="mono")
                astream.bit_rate = 96_000
            a_pos = 0

            def push_audio(until: int) -> None:
                nonlocal a_pos
                until = min(until, len(audio))
                step = 4096
                while a_pos < until:
                    n = min(step, until - a_pos)
                    af = av.AudioFrame.from_ndarray(audio[None, a_pos:a_pos + n].copy(), format="flt", layout="mono")
                    af.sample_rate = audio_rate
                    af.pts = a_pos
                    af.time_base = Fraction(1, audio_rate)
                    for pkt in astream.encode(af):
                        container.mux(pkt)
                    a_pos += n

            def encode(frame: np.ndarray) -> None:  # in the encoder thread, overlapping the next frame's render
                nonlocal vstream, n_frames
                if vstream is None:
                    H, W = frame.shape[:2]
                    if H % 2 or W % 2:
                        raise KsdiffError(f"frame size {W}x{H} must be even for yuv420p")
                    vstream = container.add_stream("libx264", rate=rate)
                    vstream.width, vstream.height, vstream.pix_fmt = W, H, "yuv420p"
                    vstream.options = {"crf": str(crf), "preset": preset}
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
                vf.pts = n_frames
                vf.time_base = 1 / rate
                for pkt in vstream.encode(vf):
                    container.mux(pkt)
                n_frames += 1
                if astream is not None:
                    push_audio(int(round(n_frames / fps * audio_rate)))

            if threaded:
                worker: Worker[np.ndarray] = Worker(encode, depth=4, name="ksdiff-encode")
                try:
                    for frame in frames:
                        worker.put(np.ascontiguousarray(frame, dtype=np.uint8))
                except BaseException:
                    worker.abort()
                    raise
                worker.close()
            else:
                for frame in frames:
                    encode(np.ascontiguousarray(frame, dtype=np.uint8))
            if vstream is None:
                raise KsdiffError("no frames to write", out_path)
            for pkt in vstream.encode(None):
                container.mux(pkt)
            if astream is not None:
                push_audio(len(audio))
                for pkt in astream.encode(None):
                    container.mux(pkt)
    return {"frames": n_frames, "video_seconds": n_frames / float(fps),
            "audio_seconds": None if audio is None else len(audio) / float(audio_rate), "path": str(out_path)}


def stream_durations(path: str | os.PathLike) -> dict[str, float]:
    """Durations (seconds) of the video and audio streams of ``path``, from the decoded content:
    ``{"video": frames / fps, "audio": samples / rate, "fps": fps, "frames": frames}``."""
    import av

    out: dict[str, float] = {}
    with av.open(str(path)) as c:
        v = next((s for s in c.streams if s.type == "video"), None)
        if v is not None:
            n = sum(1 for _ in c.decode(v))
            out["frames"] = n
            out["fps"] = float(v.average_rate)
            out["video"] = n / float(v.average_rate)
    with av.open(str(path)) as c:
        a = next((s for s in c.streams if s.type == "audio"), None)
        if a is not None:
            n = sum(f.samples for f in c.decode(a))
            out["audio"] = n / float(a.rate)
    return out
