"""Rendering benchmark (``ksdiff bench render``): seconds to turn motion + speech into an mp4, per mode.

Real speech (the clips of ``--audio-dir`` concatenated to the length) drives a motion made from it: jawOpen and
the mouth opening follow the speech envelope, the head sways slowly, so vertices change every frame as they do
for generated motion. Each mode renders the same motion with :func:`ksdiff.render.render_video`:

- ``serial``: vertices + normals, drawing and H.264 encoding one after another, in one thread, every triangle;
- ``threaded``: the three stages overlapped in three threads, every triangle;
- ``visible``: threaded, without the triangles the camera never sees (:mod:`ksdiff.render.visibility`) — the
  default of ``render_video``. Its one-time measurement (cached on disk) is made before the clock starts.

Every video is checked (frame count, stream durations) before its time is reported. RTF = wall seconds per
second of audio (below 1 = faster than real time).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ksdiff.bench.common import fmt, machine_info
from ksdiff.errors import KsdiffError

MODES = ("serial", "threaded", "visible")


def speech_motion(wave: np.ndarray, fps: float = 25.0, sr: int = 16_000):
    """An ARKit :class:`Motion` driven by ``wave``'s envelope (jaw, lower lip) with a slow head sway."""
    from ksdiff.audio.envelope import speech_envelope
    from ksdiff.face.motion import Motion
    from ksdiff.face.specs import get_spec

    spec = get_spec("arkit")
    T = max(1, int(round(len(wave) / sr * fps)))
    env = speech_envelope(wave, fps, num_frames=T, sr=sr, db=True).astype(np.float32)
    env = (env - env.min()) / max(float(np.ptp(env)), 1e-6)
    c = np.zeros((T, spec.dim), np.float32)
    c[:, spec.channels.index("jawOpen")] = 0.45 * env
    for ch in ("mouthLowerDownLeft", "mouthLowerDownRight"):
        c[:, spec.channels.index(ch)] = 0.3 * env
    t = np.arange(T, dtype=np.float32) / fps
    c[:, spec.channels.index("headRotY")] = 0.08 * np.sin(2 * np.pi * 0.2 * t)
    c[:, spec.channels.index("headRotX")] = 0.04 * np.sin(2 * np.pi * 0.13 * t + 1.0)
    return Motion(c, spec.channels, fps, "arkit")


def bench_render(seconds: float, audio_dir: str | os.PathLike, size: int = 512, face: str = "auto",
                 backend: str = "auto", modes: tuple[str, ...] = MODES, repeats: int = 1) -> dict[str, Any]:
    """Render ``seconds`` of real speech in each mode ``repeats`` times; returns the measurements."""
    from ksdiff.audio.decode import SAMPLE_RATE, write_wav
    from ksdiff.bench.inference import build_speech
    from ksdiff.render import render_video
    from ksdiff.render.video import stream_durations

    bad = [m for m in modes if m not in MODES]
    if bad:
        raise KsdiffError(f"unknown render mode(s) {', '.join(bad)} (known: {', '.join(MODES)})")
    if seconds <= 0 or repeats < 1:
        raise KsdiffError("--seconds must be positive and --repeats at least 1")
    wave = build_speech(audio_dir, seconds)
    motion = speech_motion(wave, sr=SAMPLE_RATE)
    if "visible" in modes and face in ("auto", "ict"):  # measure (or load) it before the clock starts
        from ksdiff.render.visibility import prepare

        prepare(face, size, backend)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ksdiff-bench-render-") as tmp:
        audio = Path(tmp) / "speech.wav"
        write_wav(audio, wave, SAMPLE_RATE)
        for rep in range(repeats):
            for mode in modes:
                out = Path(tmp) / f"{mode}.mp4"
                t0 = time.perf_counter()
                info = render_video(motion, audio, out, face=face, size=size, backend=backend,
                                    threaded=mode != "serial", skip_hidden=mode == "visible")
                wall = time.perf_counter() - t0
                dur = stream_durations(out)
                rows.append({"mode": mode, "repeat": rep, "frames": info["frames"], "face": info["face"],
                             "backend": info["backend"], "wall_s": wall, "audio_s": seconds,
                             "fps": info["frames"] / wall, "rtf": wall / seconds,
                             "video_s": dur.get("video"), "audio_stream_s": dur.get("audio")})
    return {"seconds": seconds, "size": size, "rows": rows, "machine": machine_info()}


def markdown(res: dict[str, Any]) -> str:
    """One row per mode (best of the repeats, and the mean), with the speed-up over the first mode."""
    by: dict[str, list[dict]] = {}
    for r in res["rows"]:
        by.setdefault(r["mode"], []).append(r)
    lines = ["| mode | face / backend | size | frames | audio s | wall s (best) | wall s (mean) | fps | RTF ↓ | "
             "speed-up | video s / audio s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    base = None
    for mode, rs in by.items():
        best = min(rs, key=lambda r: r["wall_s"])
        mean = float(np.mean([r["wall_s"] for r in rs]))
        base = base if base is not None else best["wall_s"]
        lines.append(f"| {mode} | {best['face']} / {best['backend']} | {res['size']} | {best['frames']} | "
                     f"{fmt(best['audio_s'], 1)} | {fmt(best['wall_s'], 2)} | {fmt(mean, 2)} | {fmt(best['fps'], 1)} | "
                     f"{fmt(best['rtf'], 2)} | {fmt(base / best['wall_s'], 2)}× | "
                     f"{fmt(best['video_s'], 2)} / {fmt(best['audio_stream_s'], 2)} |")
    return "\n".join(lines)
