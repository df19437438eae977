"""Mux rendered frames (H.264, yuv420p) and speech (AAC) into an mp4 with PyAV, written atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path
from ksdiff.utils.threads import Worker

AUDIO_RATE = 48_000  # Hz: the AAC stream's rate (speech is resampled to it; 1024-sample AAC frames = 21 ms)
#: Frame rates a video is written at (frames per second, inclusive). A rendered video has its motion's rate.
VIDEO_FPS_RANGE = (1.0, 240.0)


def check_video_fps(fps: float, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`KsdiffError` (naming ``path``) unless ``fps`` is in :data:`VIDEO_FPS_RANGE`."""
    lo, hi = VIDEO_FPS_RANGE
    if not lo <= fps <= hi:  # also NaN
        raise KsdiffError(f"fps {fps:g} is outside what a video can be rendered at ({lo:g} to {hi:g} frames per "
                          "second; the video has the motion's frame rate)", path)


def load_audio_for_video(path: str | os.PathLike, rate: int = AUDIO_RATE,
                         max_seconds: float | None = None) -> np.ndarray:
    """Decode ``path`` (any format PyAV reads) to mono float32 at ``rate``: (N,) samples. The same streaming
    decoder as speech (:func:`ksdiff.audio.decode.load_audio`, silence allowed), refused past ``max_seconds``."""
    from ksdiff.audio.decode import load_audio

    return load_audio(path, sr=rate, allow_silent=True, max_seconds=max_seconds)


class _Muxer:
    """The streams of one mp4 being written: H.264 video (added with the first frame, whose size it takes) and
    optional AAC audio, whose packets follow the video frames written so far."""

    def __init__(self, container, rate: Fraction, fps: float, audio: np.ndarray | None, audio_rate: int,
                 crf: int, preset: str):
        self.container, self.rate, self.fps, self.crf, self.preset = container, rate, fps, crf, preset
        self.audio, self.audio_rate = audio, audio_rate
        self.vstream = None
        self.astream = None
        if audio is not None:
            self.astream = container.add_stream("aac", rate=audio_rate, layout="mono")
            self.astream.bit_rate = 96_000
        self.a_pos = 0
        self.n_frames = 0

    def push_audio(self, until: int) -> None:
        """Encode and mux the audio up to sample ``until`` (clipped to its end)."""
        import av

        audio, audio_rate = self.audio, self.audio_rate
        until = min(until, len(audio))
        step = 4096
        while self.a_pos < until:
            n = min(step, until - self.a_pos)
            af = av.AudioFrame.from_ndarray(audio[None, self.a_pos:self.a_pos + n].copy(), format="flt",
                                            layout="mono")
            af.sample_rate = audio_rate
            af.pts = self.a_pos
            af.time_base = Fraction(1, audio_rate)
            for pkt in self.astream.encode(af):
                self.container.mux(pkt)
            self.a_pos += n

    def encode(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 frame (in the encoder thread, overlapping the next frame's render)."""
        import av

        if self.vstream is None:
            H, W = frame.shape[:2]
            if H % 2 or W % 2:
                raise KsdiffError(f"frame size {W}x{H} must be even for yuv420p")
            self.vstream = self.container.add_stream("libx264", rate=self.rate)
            self.vstream.width, self.vstream.height, self.vstream.pix_fmt = W, H, "yuv420p"
            self.vstream.options = {"crf": str(self.crf), "preset": self.preset}
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self.n_frames
        vf.time_base = 1 / self.rate
        for pkt in self.vstream.encode(vf):
            self.container.mux(pkt)
        self.n_frames += 1
        if self.astream is not None:
            self.push_audio(round(self.n_frames / self.fps * self.audio_rate))

    def finish(self, out_path: Path) -> None:
        """Flush both encoders (the rest of the audio first); no frame at all is an error naming ``out_path``."""
        if self.vstream is None:
            raise KsdiffError("no frames to write", out_path)
        for pkt in self.vstream.encode(None):
            self.container.mux(pkt)
        if self.astream is not None:
            self.push_audio(len(self.audio))
            for pkt in self.astream.encode(None):
                self.container.mux(pkt)


def _encode_all(frames: Iterable[np.ndarray], encode: Callable[[np.ndarray], None], threaded: bool) -> None:
    """Pass every frame (as contiguous uint8) to ``encode``, in a thread of its own with ``threaded``."""
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


def write_video(frames: Iterable[np.ndarray], fps: float, out_path: str | os.PathLike,
                audio: np.ndarray | None = None, audio_rate: int = AUDIO_RATE, crf: int = 18,
                preset: str = "veryfast", threaded: bool = True) -> dict:
    """Encode ``frames`` ((H, W, 3) uint8 each, H and W even) at ``fps`` (in :data:`VIDEO_FPS_RANGE`) with
    optional mono ``audio`` (N,) float32 at ``audio_rate`` into an mp4 at ``out_path`` (atomically: a failure
    leaves nothing).

    The caller matches the frame count to the audio (``round(seconds × fps)``); audio packets are interleaved
    with the video as it is written. With ``threaded``, encoding runs in its own thread, so it overlaps the
    making of the next frame (the renderer).

    Returns:
        {"frames": T, "video_seconds": T / fps, "audio_seconds": N / audio_rate or None, "path": str}.
    """
    import av

    check_video_fps(fps, out_path)
    rate = Fraction(fps).limit_denominator(1001000)
    out_path = Path(out_path)
    if audio is not None:
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    with atomic_path(out_path, suffix=".mp4") as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        mux = _Muxer(container, rate, fps, audio, audio_rate, crf, preset)
        _encode_all(frames, mux.encode, threaded)
        mux.finish(out_path)
    return {"frames": mux.n_frames, "video_seconds": mux.n_frames / float(fps),
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
