"""Streaming generation: speech arrives in chunks, motion leaves in short hops (``ksdiff stream``).

    audio chunks ──push──> StreamAnimator ──step (every hop)──> motion frames ──> sinks (Live Link UDP, WebSocket
                                                                                   JSON, a recording)

Each step generates the next ``hop_s`` of motion, frames [e0, e1), once the audio reaches ``e1 + lookahead_s``. It
runs the whole model on one short window, frames [c0, c2): up to ``context_s`` of the past before e0, the hop, and
the lookahead (c2 = the end of the audio heard so far, at most e1 + lookahead):

* speech features of the window's audio only (Whisper encodes just those seconds, ``pad=False``; prosody is
  normalised over the window); no transcript (the model's null text, which it is trained with for guidance:
  speech alone, as ``generate --no-transcript``);
* keyframes: the ones already sent stay fixed (fed teacher-forced) and only the new frames are decoded
  (:meth:`ksdiff.model.keyframes.KeyframePredictor.decode`'s ``prefix``);
* diffusion over the window with the frames already sent inpainted at every step, as between the windows of
  long audio in :mod:`ksdiff.generate`, so the motion continues smoothly.

Frames [e1, c2) are generated and thrown away (they are seen again, with more audio, next step). The
algorithmic latency is ``hop_s + lookahead_s`` for the first frame of a hop (``lookahead_s`` for its last), plus
the step's compute. :func:`run_stream` drives it in real time: a source thread pushes audio as it arrives (a file
at real-time pace, a microphone, a WebSocket), the main thread steps, and every frame goes to the sinks at its
due time (its audio's capture time + ``delay_s``, or at once); a frame later than ``max_latency_s`` is dropped,
and when the unprocessed audio exceeds ``max_backlog_s`` the generator skips ahead to the present (the frames in
between are dropped, counted) instead of letting the latency grow.
"""

from __future__ import annotations

import collections
import math
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

import numpy as np
import torch

from ksdiff.diffusion.samplers import initial_noise
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion
from ksdiff.generate import SAMPLE_RATE, Animator, Window, _derive_seed

HOP_S = 0.2  # default seconds of motion per step
LOOKAHEAD_S = 0.12  # default seconds of audio heard past the last frame of a step
CONTEXT_S = 3.0  # default seconds of past motion and audio in each step's window


@dataclass
class StreamChunk:
    """Frames [start, start + len(coeffs)) of the streamed motion (raw coefficients (n, C) float32)."""

    start: int
    coeffs: np.ndarray
    compute_s: float = 0.0  # seconds the step took
    timings: dict = field(default_factory=dict)  # seconds per stage: features, keyframes, diffusion


class StreamAnimator:
    """Incremental speech → motion with a loaded :class:`ksdiff.generate.Animator` (see the module docstring).

    ``push(wave)`` appends audio (16 kHz mono float32); ``ready()`` says whether the next hop can be generated;
    ``step()`` generates it; ``finish()`` generates what remains once the audio has ended. Memory is bounded: only
    ``context_s`` + hop + lookahead of audio and ``context_s`` of motion are kept.

    ``reference`` (a clip of the person's face, as ``Animator.animate`` takes it) conditions the style encoder and,
    with ``anchor``, moves every hop's expression channels by one constant shift to the person's typical face
    (``Animator.stream_anchor``: with ``reference_audio`` the reference's own sound is animated once, before the
    stream starts, in the stream's conditions — no transcript unless ``reference_text``).
    """

    def __init__(self, animator: Animator, hop_s: float = HOP_S, lookahead_s: float = LOOKAHEAD_S,
                 context_s: float = CONTEXT_S, steps: int | None = None, sampler: str | None = None,
                 guidance: float | None = None, seed: int = 0, style: Any = None, emotion: Any = None,
                 smooth: float | None = None, reference: Motion | None = None, reference_audio: Any = None,
                 reference_text: str | None = "", reference_weight: float | None = None, anchor: bool = True):
        fps = animator.fps
        self.animator, self.model, self.fps = animator, animator.model, fps
        self.hop = max(1, int(round(hop_s * fps)))
        self.lookahead = max(0, int(round(lookahead_s * fps)))
        self.context = max(0, int(round(context_s * fps)))
        self.steps, self.sampler_name, self.guidance, self.smooth = animator._options(steps, sampler, guidance, smooth)
        self.sample_fn = animator._sampler(self.sampler_name, self.steps)
        self.seed = int(seed)
        self.style = animator._style(style, reference, reference_weight)
        #: the constant shift of the expression channels to the person's typical face (a reference; see
        #: Animator.stream_anchor), applied to every hop
        self.shift = animator.stream_anchor(
            self.style, style, reference_audio, reference_text, reference_weight,
            dict(steps=self.steps, sampler=self.sampler_name, seed=self.seed, guidance=self.guidance,
                 smooth=self.smooth)) if anchor and "ref_motion" in self.style else None
        self.emotion = None if emotion is None else np.asarray(emotion, np.float32).reshape(2)
        if self.emotion is not None:
            animator._emotion(self.emotion, 1)  # refuses a model without emotion conditioning
        from ksdiff.audio.features import resolve_encoder

        self.encoder = resolve_encoder(animator.encoder, **animator.encoder_options,
                                       **({"pad": False} if animator.encoder == "whisper-tiny" else {}))
        self.tokens = animator.tokens if animator.uses_text else "none"
        C = animator.spec.dim
        self._audio = np.zeros(0, np.float32)  # samples [self._a0, self._a0 + len)
        self._a0 = 0
        self._hist = torch.zeros(1, 0, C)  # normalised motion of frames [self.next - len, self.next)
        self._kf_hist: torch.Tensor | None = None  # (1, len(hist), 2) keyframes of the same frames
        self.next = 0  # first frame not generated yet
        self.steps_done = 0

    # ------------------------------------------------------------------------------------------------ input

    @property
    def heard_s(self) -> float:
        """Seconds of audio pushed so far."""
        return (self._a0 + len(self._audio)) / SAMPLE_RATE

    def push(self, wave: np.ndarray) -> None:
        """Append audio: (N,) float32 mono 16 kHz (finite)."""
        w = np.asarray(wave, dtype=np.float32).reshape(-1)
        if not np.isfinite(w).all():
            raise KsdiffError("the audio stream holds NaN/inf samples")
        self._audio = np.concatenate([self._audio, w])
        keep_from = int((self.next - self.context) / self.fps * SAMPLE_RATE) - SAMPLE_RATE // 10
        if keep_from > self._a0:  # drop audio no future window can reach
            cut = min(keep_from - self._a0, len(self._audio))
            self._audio, self._a0 = self._audio[cut:], self._a0 + cut

    def _frames_heard(self) -> int:
        return int(math.floor(self.heard_s * self.fps + 1e-6))

    def ready(self) -> bool:
        """Whether the audio reaches the end of the next hop plus the lookahead."""
        return self._frames_heard() >= self.next + self.hop + self.lookahead

    def backlog_s(self) -> float:
        """Seconds of audio heard beyond what the next step needs (how far behind real time the generator is)."""
        return max(0.0, (self._frames_heard() - (self.next + self.hop + self.lookahead)) / self.fps)

    def skip_to_present(self) -> int:
        """Jump the next frame to the newest one the audio allows; returns the number of frames skipped. The
        motion history is dropped, so the next step starts afresh (no inpainting across the gap)."""
        target = self._frames_heard() - self.hop - self.lookahead
        skipped = max(0, target - self.next)
        if skipped:
            self.next += skipped
            self._hist = self._hist[:, :0]
            self._kf_hist = None
        return skipped

    # ------------------------------------------------------------------------------------------------ steps

    def step(self) -> StreamChunk:
        """Generate the next hop (call when :meth:`ready`)."""
        return self._generate(self.next + self.hop, self.next + self.hop + self.lookahead)

    def finish(self) -> StreamChunk | None:
        """The frames left after the audio has ended (no lookahead left to wait for), or None."""
        end = int(round(self.heard_s * self.fps))
        if end <= self.next:
            return None
        return self._generate(end, end)

    @torch.no_grad()
    def _generate(self, e1: int, want_c2: int) -> StreamChunk:
        t0 = time.perf_counter()
        anim, model = self.animator, self.model
        e0 = self.next
        known = self._hist.shape[1]
        c0 = e0 - known
        c2 = max(e1, min(want_c2, int(round(self.heard_s * self.fps))))
        L = c2 - c0
        # the window's audio, padded with zeros where it is not heard yet (only at the very end of a stream)
        s0, s1 = int(round(c0 / self.fps * SAMPLE_RATE)), int(round(c2 / self.fps * SAMPLE_RATE))
        wave = self._audio[max(0, s0 - self._a0):max(0, s1 - self._a0)]
        if len(wave) < s1 - s0:
            wave = np.pad(wave, (0, s1 - s0 - len(wave)))
        from ksdiff.audio.features import compute_features

        sf = compute_features(wave, encoder=self.encoder, text="", tokens=self.tokens, transcribe=False)
        t1 = time.perf_counter()
        emo = None if self.emotion is None else np.tile(self.emotion[None], (L, 1))
        batch = anim._batch(sf, 0, L, L, emo, self.style)
        cond = model.encode_condition(batch, L, keyframe_prefix=self._kf_hist,
                                      generator=torch.Generator().manual_seed(_derive_seed(self.seed, "kf",
                                                                                           self.steps_done)))
        t2 = time.perf_counter()
        C = anim.spec.dim
        x_T = initial_noise((1, L, C), torch.Generator().manual_seed(_derive_seed(self.seed, "stream",
                                                                                  self.steps_done)))
        inpaint = anim._inpaint(self._hist, Window(0, L, known))  # the frames already sent, as between windows

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return model.denoise(x_t, t, cond, guidance=self.guidance)

        x0 = self.sample_fn(denoise, x_T, model.schedule, self.steps,
                            generator=torch.Generator().manual_seed(_derive_seed(self.seed, "hop", self.steps_done)),
                            inpaint=inpaint)
        new = x0[:, known:known + (e1 - e0)]
        # smoothed with the window's frames around the hop (sent before, lookahead after) within the Gaussian's
        # reach (scipy truncates at 4σ), then cut: the hop's edges are smoothed with their neighbours, as offline
        reach = int(4.0 * self.smooth + 0.5)
        lo = max(0, known - reach)
        coeffs = anim._to_coeffs(x0[:, lo:known + (e1 - e0) + reach], self.smooth)[known - lo:known - lo + (e1 - e0)]
        if self.shift is not None:
            coeffs[:, anim.spec.expression_idx] += self.shift.astype(np.float32)
            coeffs = anim.spec.clip(coeffs)
        keep = self.context
        self._hist = torch.cat([self._hist, new], dim=1)[:, -keep:] if keep else self._hist[:, :0]
        kf = cond.get("keyframes")
        if kf is not None and keep:
            kf_new = kf[:, known:known + (e1 - e0)]
            prev = kf_new[:, :0] if self._kf_hist is None else self._kf_hist
            self._kf_hist = torch.cat([prev, kf_new], dim=1)[:, -keep:]
        self.next = e1
        self.steps_done += 1
        t3 = time.perf_counter()
        return StreamChunk(e0, coeffs, t3 - t0, {"features": t1 - t0, "keyframes": t2 - t1, "diffusion": t3 - t2})


# ---------------------------------------------------------------------------------------------------- sources


class AudioClock:
    """When each moment of the stream was captured: ``record(end_s, wall)`` per chunk (the chunk ending at audio
    time ``end_s`` arrived at ``wall``, a ``time.monotonic()``); ``capture(t)`` = the arrival of the chunk holding
    audio time ``t``, minus the audio after ``t`` in it (the moment that sample was spoken)."""

    def __init__(self) -> None:
        self._chunks: collections.deque[tuple[float, float]] = collections.deque()  # (end_s, wall), oldest first

    def record(self, end_s: float, wall: float) -> None:
        self._chunks.append((float(end_s), float(wall)))

    def capture(self, t: float) -> float:
        """Frames ask in increasing ``t``, so chunks ending before ``t`` are dropped as they are passed: the
        lookup stays short however long the stream runs."""
        if not self._chunks:
            return time.monotonic()
        while len(self._chunks) > 1 and self._chunks[0][0] < t - 1e-9:
            self._chunks.popleft()
        end, wall = self._chunks[0]
        return wall - (end - t)


def file_chunks(wave: np.ndarray, chunk_s: float = 0.02, realtime: bool = True) -> Iterator[np.ndarray]:
    """A decoded wave (N,) as chunks of ``chunk_s``, each yielded when it would have been heard (real-time pace
    from the first call) or at once."""
    n = max(1, int(round(chunk_s * SAMPLE_RATE)))
    t0 = time.monotonic()
    for i in range(0, len(wave), n):
        if realtime:
            due = t0 + (i + n) / SAMPLE_RATE
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        yield wave[i:i + n]


def check_microphone(device: str | int | None = None) -> int:
    """The sample rate of the input ``device`` (None: the default one); a one-line error when there is none."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
        raise KsdiffError(f"microphone input needs sounddevice and PortAudio (apt-get install libportaudio2): {e}")
    try:
        info = sd.query_devices(device, "input")
    except Exception:  # sounddevice raises ValueError / PortAudioError for an unknown device
        names = [d["name"] for d in sd.query_devices() if d.get("max_input_channels", 0) > 0]
        what = "no audio input device found" if device is None else f"no audio input device {device!r}"
        raise KsdiffError(f"{what} (inputs: {', '.join(names) if names else 'none'})") from None
    return int(info["default_samplerate"])


def microphone_chunks(device: str | int | None = None, chunk_s: float = 0.02,
                      stop: threading.Event | None = None) -> Iterator[np.ndarray]:
    """Chunks from a microphone (PortAudio via ``sounddevice``), resampled to 16 kHz mono, until ``stop`` is set."""
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
        raise KsdiffError(f"microphone input needs sounddevice and PortAudio (apt-get install libportaudio2): {e}")
    import soxr

    q: queue.Queue = queue.Queue()
    sr = check_microphone(device)
    resampler = soxr.ResampleStream(sr, SAMPLE_RATE, 1, dtype="float32")

    def callback(indata, frames, t, status):  # PortAudio's thread: hand the block over
        q.put(indata.mean(axis=1).astype(np.float32).copy())

    with sd.InputStream(device=device, channels=1, samplerate=sr, blocksize=int(sr * chunk_s), callback=callback):
        while stop is None or not stop.is_set():
            try:
                block = q.get(timeout=0.2)
            except queue.Empty:
                continue
            yield resampler.resample_chunk(block)


# ---------------------------------------------------------------------------------------------------- sinks


class Sink(Protocol):
    def send(self, frame: int, t: float, coeffs: np.ndarray, wall: float) -> None:
        """Frame index, its audio time (s), its coefficients (C,), the wall time (``time.time()``) it captures."""

    def close(self) -> None: ...


class LiveLinkSink:
    """Live Link Face UDP datagrams (:func:`ksdiff.export.livelink.encode_packet`) to ``host:port``: one per
    frame, subject ``subject``, frame time = the time of day its audio was spoken, in frames at the motion fps."""

    def __init__(self, host: str, port: int, spec_name: str, fps: float, subject: str = "ksdiff",
                 device_id: str | None = None):
        import socket
        import uuid

        if spec_name != "arkit":
            raise KsdiffError(f"Live Link streaming needs an arkit model; this one is {spec_name!r}")
        try:
            fam, _, _, _, self.addr = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)[0]
        except (socket.gaierror, OverflowError) as e:
            raise KsdiffError(f"cannot send Live Link packets to {host}:{port}: {e}") from None
        self.subject = subject
        self.device_id = device_id or str(uuid.uuid4())
        self.fps = fps
        self.rate = int(round(fps)) if abs(fps - round(fps)) < 1e-6 else 60
        try:
            self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        except OSError as e:
            raise KsdiffError(f"cannot open a UDP socket for {host}:{port}: {e}") from None
        self.sent = 0

    def send(self, frame: int, t: float, coeffs: np.ndarray, wall: float) -> None:
        from ksdiff.export.livelink import encode_packet, livelink_values

        tod = (wall % 86400.0) * self.rate
        pkt = encode_packet(livelink_values(coeffs[None])[0], self.subject, self.device_id, int(tod),
                            float(tod - int(tod)), self.rate)
        try:
            self.sock.sendto(pkt, self.addr)
            self.sent += 1
        except OSError:  # nobody listening (ICMP refused) or a full buffer: a live stream drops the frame
            pass

    def close(self) -> None:
        self.sock.close()


def frame_json(frame: int, t: float, coeffs: np.ndarray, wall: float, names: tuple[str, ...]) -> dict:
    """One streamed frame as JSON: ``{"frame", "t" (audio seconds), "time" (epoch seconds it was spoken),
    "blendshapes": {ARKit name: weight}, "head": {"yaw", "pitch", "roll"} (radians), "head_translation": [x, y,
    z]}`` for an arkit model; other specs: ``{"frame", "t", "time", "coeffs": {channel: value}}``."""
    out: dict[str, Any] = {"frame": int(frame), "t": round(float(t), 4), "time": round(float(wall), 4)}
    if "jawOpen" in names and "headRotX" in names:
        from ksdiff.export.livelink import rotvec_to_euler
        from ksdiff.face.specs import ARKIT_NAMES

        idx = {n: i for i, n in enumerate(names)}
        out["blendshapes"] = {n: round(float(np.clip(coeffs[idx[n]], 0.0, 1.0)), 4) for n in ARKIT_NAMES}
        yaw, pitch, roll = rotvec_to_euler(coeffs[[idx["headRotX"], idx["headRotY"], idx["headRotZ"]]][None])[0]
        out["head"] = {"yaw": round(float(yaw), 5), "pitch": round(float(pitch), 5), "roll": round(float(roll), 5)}
        out["head_translation"] = [round(float(coeffs[idx[k]]), 5) for k in ("headTx", "headTy", "headTz")]
    else:
        out["coeffs"] = {n: round(float(v), 5) for n, v in zip(names, coeffs)}
    return out


class AudioDecoder:
    """Audio as clients send it in messages: binary float32 little-endian mono at 16 kHz, unless a text message
    ``{"sample_rate": R, "format": "f32" | "s16"}`` declared otherwise (resampled to 16 kHz with soxr)."""

    def __init__(self) -> None:
        self.rate, self.fmt, self.resampler = SAMPLE_RATE, "f32", None

    def header(self, text: str) -> str | None:
        """Read a text message; an error line when it declares an unusable format (None otherwise)."""
        import json

        import soxr

        try:
            hdr = json.loads(text)
            rate, fmt = int(hdr.get("sample_rate", SAMPLE_RATE)), str(hdr.get("format", "f32"))
        except (ValueError, TypeError, AttributeError):
            return None  # not a header: ignored
        if fmt not in ("f32", "s16") or not 8000 <= rate <= 192000:
            return "audio must be f32 or s16 at 8-192 kHz"
        self.rate, self.fmt = rate, fmt
        self.resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32")
        return None

    def decode(self, data: bytes) -> np.ndarray:
        """One binary message -> (N,) float32 at 16 kHz (NaN/inf samples as 0)."""
        x = (np.frombuffer(data[:len(data) // 2 * 2], "<i2").astype(np.float32) / 32768.0 if self.fmt == "s16"
             else np.frombuffer(data[:len(data) // 4 * 4], "<f4").astype(np.float32))
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
        return self.resampler.resample_chunk(x) if self.resampler is not None else x


class WebSocketHub:
    """A WebSocket server (``websockets``' threaded server) on ``host:port``, both ways:

    * as a sink, every frame goes to every connected client as one JSON text message (:func:`frame_json`);
    * as a source (:meth:`audio_chunks`), binary messages from clients are audio: float32 little-endian mono at
      16 kHz, unless the client first sends a text message ``{"sample_rate": 48000, "format": "f32" | "s16"}``
      (resampled with soxr). The stream ends when that client closes the connection.
    """

    def __init__(self, host: str, port: int, names: tuple[str, ...]):
        try:
            from websockets.sync.server import serve
        except ImportError as e:
            raise KsdiffError(f"WebSocket streaming needs the `websockets` package (pip install 'ksdiff[stream]'): "
                              f"{e}") from None
        self.names = names
        self.clients: set = set()
        self.lock = threading.Lock()
        self.audio: queue.Queue = queue.Queue()
        try:
            self.server = serve(self._handler, host, int(port))
        except OSError as e:
            raise KsdiffError(f"cannot listen for WebSocket clients on {host}:{port}: {e.strerror or e}") from None
        self.port = self.server.socket.getsockname()[1]
        threading.Thread(target=self.server.serve_forever, daemon=True, name="ksdiff-stream-ws").start()

    def _handler(self, conn) -> None:
        import json

        with self.lock:
            self.clients.add(conn)
        audio = AudioDecoder()
        got_audio = False
        try:
            for msg in conn:
                if isinstance(msg, str):
                    err = audio.header(msg)
                    if err:
                        conn.send(json.dumps({"error": err}))
                    continue
                got_audio = True
                self.audio.put(audio.decode(msg))
        except Exception:  # a client that vanishes mid-message ends its part of the stream, not the server
            pass
        finally:
            with self.lock:
                self.clients.discard(conn)
            if got_audio:
                self.audio.put(None)

    def audio_chunks(self, stop: threading.Event | None = None) -> Iterator[np.ndarray]:
        """Audio sent by the first client that sends any, until it disconnects (or ``stop`` is set)."""
        while stop is None or not stop.is_set():
            try:
                c = self.audio.get(timeout=0.2)
            except queue.Empty:
                continue
            if c is None:
                return
            yield c

    def send(self, frame: int, t: float, coeffs: np.ndarray, wall: float) -> None:
        import json

        msg = json.dumps(frame_json(frame, t, coeffs, wall, self.names))
        with self.lock:
            clients = list(self.clients)
        for c in clients:
            try:
                c.send(msg)
            except Exception:  # closed meanwhile
                pass

    def close(self) -> None:
        self.server.shutdown()


class Recorder:
    """Keeps every frame sent (for ``--out``, tests and the benchmark): ``coeffs()`` (T, C) with frames never
    sent (dropped) held from the previous one."""

    def __init__(self, dim: int):
        self.frames: dict[int, np.ndarray] = {}
        self.dim = dim

    def send(self, frame: int, t: float, coeffs: np.ndarray, wall: float) -> None:
        self.frames[int(frame)] = np.asarray(coeffs, np.float32)

    def coeffs(self, total: int | None = None) -> np.ndarray:
        n = (max(self.frames) + 1 if self.frames else 0) if total is None else total
        out = np.zeros((n, self.dim), np.float32)
        last = np.zeros(self.dim, np.float32)
        for i in range(n):
            last = self.frames.get(i, last)
            out[i] = last
        return out

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------- driver


@dataclass
class StreamStats:
    """What a stream did: per-step compute seconds, per-frame end-to-end latency (send time − capture time of
    its audio) and counts."""

    hop_s: float
    lookahead_s: float
    compute_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    frames_sent: int = 0
    frames_dropped: int = 0
    audio_s: float = 0.0

    @property
    def algorithmic_s(self) -> float:
        return self.hop_s + self.lookahead_s

    def summary(self) -> dict[str, float]:
        def pct(xs: list[float], q: float) -> float:
            return float(np.percentile(xs, q)) if xs else float("nan")

        return {"audio_s": self.audio_s, "hop_s": self.hop_s, "lookahead_s": self.lookahead_s,
                "algorithmic_s": self.algorithmic_s, "steps": len(self.compute_s),
                "compute_p50_s": pct(self.compute_s, 50), "compute_p95_s": pct(self.compute_s, 95),
                "compute_max_s": max(self.compute_s, default=float("nan")),
                "latency_p50_s": pct(self.latency_s, 50), "latency_p95_s": pct(self.latency_s, 95),
                "latency_max_s": max(self.latency_s, default=float("nan")),
                "frames_sent": self.frames_sent, "frames_dropped": self.frames_dropped}


class _Sender(threading.Thread):
    """Sends frames to the sinks at their due times (in order); drops those later than ``max_latency_s``."""

    def __init__(self, sinks: list, stats: StreamStats, max_latency_s: float):
        super().__init__(daemon=True, name="ksdiff-stream-sender")
        self.q: queue.Queue = queue.Queue()
        self.sinks, self.stats, self.max_latency = sinks, stats, max_latency_s
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                item = self.q.get()
                if item is None:
                    return
                frame, t, coeffs, capture_mono, due_mono, offset = item
                pause = due_mono - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                now = time.monotonic()
                if now - capture_mono > self.max_latency:
                    self.stats.frames_dropped += 1
                    continue
                for s in self.sinks:
                    s.send(frame, t, coeffs, capture_mono + offset)
                self.stats.latency_s.append(time.monotonic() - capture_mono)
                self.stats.frames_sent += 1
        except BaseException as e:  # surfaced by run_stream
            self.error = e


def run_stream(engine: StreamAnimator, chunks: Iterable[np.ndarray], sinks: list, realtime: bool = True,
               delay_s: float | None = None, max_latency_s: float = 1.0, max_backlog_s: float = 0.5,
               on_chunk: Callable[[StreamChunk], None] | None = None) -> StreamStats:
    """Drive ``engine`` with audio ``chunks`` (16 kHz mono float32 arrays, e.g. :func:`file_chunks`) and send
    every frame to ``sinks``.

    Args:
        realtime: the chunks arrive in real time: frames are paced and latency is measured. False: as fast as
            possible, every frame kept (tests, quality checks); latency is not measured.
        delay_s: send each frame at its audio's capture time + ``delay_s`` (a steady stream, like a camera's);
            None: as soon as it is generated. A frame still later than ``max_latency_s`` is dropped.
        max_backlog_s: when the audio waiting to be processed exceeds this, skip to the present.
    """
    stats = StreamStats(engine.hop / engine.fps, engine.lookahead / engine.fps)
    sender = _Sender(sinks, stats, max_latency_s if realtime else float("inf"))
    sender.start()
    q: queue.Queue = queue.Queue()
    reader_error: list[BaseException] = []
    threading.Thread(target=_read, args=(chunks, q, reader_error), daemon=True, name="ksdiff-stream-reader").start()
    emit = _Emitter(engine, stats, sender, AudioClock(), realtime, delay_s, on_chunk)
    try:
        while _take_audio(q, engine, emit.clock):
            if sender.error is not None:
                raise sender.error
            while engine.ready():
                if realtime and engine.backlog_s() > max_backlog_s:
                    stats.frames_dropped += engine.skip_to_present()
                    if not engine.ready():
                        break
                emit(engine.step())
        if reader_error:
            raise reader_error[0]
        emit(engine.finish())
    finally:
        sender.q.put(None)
        sender.join()
        for sink in sinks:
            sink.close()
    if sender.error is not None:
        raise sender.error
    stats.audio_s = engine.heard_s
    return stats


def _read(chunks: Iterable[np.ndarray], q: queue.Queue, errors: list) -> None:
    """The reader thread: every chunk with its arrival time, then None (also after an error, kept in ``errors``)."""
    try:
        for c in chunks:
            q.put((c, time.monotonic()))
    except BaseException as e:
        errors.append(e)
    finally:
        q.put(None)


def _take_audio(q: queue.Queue, engine: StreamAnimator, clock: AudioClock) -> bool:
    """Push everything that has arrived (waiting for at least one item); False once the audio has ended."""
    items = [q.get()]
    while True:
        try:
            items.append(q.get_nowait())
        except queue.Empty:
            break
    for it in items:
        if it is None:
            return False
        c, wall = it
        engine.push(c)
        clock.record(engine.heard_s, wall)
    return True


class _Emitter:
    """Hands a step's frames to the sender with their capture and due times."""

    def __init__(self, engine: StreamAnimator, stats: StreamStats, sender: _Sender, clock: AudioClock,
                 realtime: bool, delay_s: float | None, on_chunk: Callable[[StreamChunk], None] | None):
        self.engine, self.stats, self.sender, self.clock = engine, stats, sender, clock
        self.realtime, self.delay_s, self.on_chunk = realtime, delay_s, on_chunk
        self.offset = time.time() - time.monotonic()  # monotonic -> epoch, for the sinks' frame times

    def __call__(self, ch: StreamChunk | None) -> None:
        if ch is None:
            return
        self.stats.compute_s.append(ch.compute_s)
        if self.on_chunk is not None:
            self.on_chunk(ch)
        for i, row in enumerate(ch.coeffs):
            f = ch.start + i
            t = f / self.engine.fps
            cap = self.clock.capture(t) if self.realtime else time.monotonic()
            due = cap + self.delay_s if (self.realtime and self.delay_s is not None) else 0.0
            self.sender.q.put((f, t, row, cap, due, self.offset))


__all__ = ["StreamAnimator", "StreamChunk", "StreamStats", "run_stream", "file_chunks", "microphone_chunks",
           "LiveLinkSink", "WebSocketHub", "AudioDecoder", "Recorder", "frame_json", "AudioClock", "HOP_S", "LOOKAHEAD_S", "CONTEXT_S"]
