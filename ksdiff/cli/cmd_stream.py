"""ksdiff stream: live speech -> live face motion (Live Link Face UDP, WebSocket JSON, a recording)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ksdiff.errors import KsdiffError

NAME = "stream"
HELP = "animate live: audio from a file (at real-time pace), a microphone or a WebSocket; frames out as they come"
DESCRIPTION = (
    "Generate motion while the audio arrives, in short hops (--hop) with a bounded lookahead (--lookahead), and send "
    "each frame to Unreal's Live Link (--livelink HOST:PORT, the Live Link Face app's UDP packets), to WebSocket "
    "clients as JSON (--ws HOST:PORT) and/or to a motion file (--out). Input: --input FILE (played at real-time "
    "pace; --fast: as fast as possible), --mic [DEVICE] (PortAudio), or --ws-audio (audio sent by a WebSocket "
    "client of --ws). The model hears speech only (no transcript). Prints latency and dropped frames at the end.")
ORDER = 41


def _hostport(s: str, default_port: int | None = None) -> tuple[str, int]:
    host, sep, port = s.rpartition(":")
    if not sep:
        host, port = s, str(default_port or "")
    try:
        p = int(port)
        if not 0 <= p <= 65535:
            raise ValueError
    except ValueError:
        raise KsdiffError(f"expected HOST:PORT, got {s!r}") from None
    return host.strip("[]") or "127.0.0.1", p


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ksdiff.stream import CONTEXT_S, HOP_S, LOOKAHEAD_S

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", metavar="FILE", help="an audio file, streamed at real-time pace")
    src.add_argument("--mic", nargs="?", const="", metavar="DEVICE",
                     help="a microphone (PortAudio; default device, or a name / index)")
    src.add_argument("--ws-audio", action="store_true",
                     help="audio from the first client of --ws that sends binary messages (f32 16 kHz, or declare "
                          "{\"sample_rate\": R, \"format\": \"s16\"} first)")
    p.add_argument("--livelink", action="append", metavar="HOST:PORT", default=None,
                   help="send Live Link Face UDP packets here (Unreal's default port 11111); repeatable")
    p.add_argument("--subject", default="ksdiff", help="Live Link subject name (default ksdiff)")
    p.add_argument("--ws", metavar="HOST:PORT", default=None, help="serve JSON frames to WebSocket clients here")
    p.add_argument("--out", metavar="FILE.npz", default=None, help="also save the streamed motion here")
    p.add_argument("--checkpoint", metavar="C", default=None, help="model checkpoint (default: the packaged model)")
    p.add_argument("--hop", type=float, default=HOP_S, metavar="SEC", help=f"seconds per step (default {HOP_S})")
    p.add_argument("--lookahead", type=float, default=LOOKAHEAD_S, metavar="SEC",
                   help=f"seconds of audio heard past each step's last frame (default {LOOKAHEAD_S})")
    p.add_argument("--context", type=float, default=CONTEXT_S, metavar="SEC",
                   help=f"seconds of past audio and motion each step sees (default {CONTEXT_S})")
    p.add_argument("--steps", type=int, default=None, help="sampler steps per hop (default: the model's, 4 for the "
                                                            "shipped model)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the model's)")
    p.add_argument("--smooth", type=float, default=None, metavar="SIGMA",
                   help="σ in frames of the Gaussian on the mouth channels, within each hop's window (0 = off; "
                        "default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--style", default=None, help="speaker / domain style (models trained with style)")
    from ksdiff.cli.cmd_generate import add_reference_arguments

    add_reference_arguments(p)  # the person's face: the reference's own audio is animated once, before the stream
    p.add_argument("--delay", default="auto", metavar="SEC|auto",
                   help="send each frame SEC after its audio was heard (a steady stream); auto = hop + lookahead "
                        "+ 0.1; 0 = as soon as it is made")
    p.add_argument("--max-latency", type=float, default=1.0, metavar="SEC",
                   help="drop a frame that would arrive later than this after its audio (default 1)")
    p.add_argument("--max-backlog", type=float, default=0.5, metavar="SEC",
                   help="skip to the present when the audio waiting to be animated exceeds this (default 0.5)")
    p.add_argument("--fast", action="store_true", help="--input only: as fast as possible, not at real-time pace")
    p.add_argument("--stats", metavar="FILE.json", default=None, help="write the latency statistics here")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: fastest for short hops)")


def run(args: argparse.Namespace) -> int:
    import torch

    from ksdiff.cli.cmd_generate import load_reference_args
    from ksdiff.generate import load_model
    from ksdiff.stream import StreamAnimator, run_stream

    mic, delay = _check(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    animator = load_model(args.checkpoint)
    ref, ref_wave = load_reference_args(animator, args.style_from, args.reference_audio)
    engine = StreamAnimator(animator, hop_s=args.hop, lookahead_s=args.lookahead, context_s=args.context,
                            steps=args.steps, guidance=args.guidance, seed=args.seed, style=args.style,
                            smooth=args.smooth, reference=ref, reference_audio=ref_wave,
                            reference_weight=args.reference_weight, anchor=not args.no_anchor)
    sinks, hub, rec = _sinks(args, animator)
    realtime = not args.fast
    chunks = _chunks(args, hub, mic, realtime)
    print("stream: running (Ctrl-C to stop)" if not args.input else f"stream: {args.input}", flush=True)
    try:
        stats = run_stream(engine, chunks, sinks, realtime=realtime, delay_s=delay if realtime else None,
                           max_latency_s=args.max_latency, max_backlog_s=args.max_backlog)
    except KeyboardInterrupt:
        stats = None
    _finish(args, engine, animator, rec, stats.summary() if stats is not None else {}, realtime)
    return 0


def _check(args: argparse.Namespace) -> tuple[str | int | None, float | None]:
    """Refuse inconsistent options before loading anything; (microphone device, send delay in s or None)."""
    from ksdiff.stream import check_microphone

    if args.hop <= 0 or args.lookahead < 0 or args.context < 0:
        raise KsdiffError("--hop must be positive and --lookahead, --context not negative")
    if args.ws_audio and not args.ws:
        raise KsdiffError("--ws-audio needs --ws HOST:PORT (the clients send their audio there)")
    if args.fast and not args.input:
        raise KsdiffError("--fast only applies to --input FILE")
    if args.out and not args.out.endswith(".npz"):
        raise KsdiffError("--out must name a .npz file", args.out)
    if args.out:
        out = Path(args.out)
        if out.is_dir() or (out.parent.exists() and not out.parent.is_dir()):
            raise KsdiffError("cannot write the motion here", args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
    mic = None
    if args.mic is not None:
        mic = int(args.mic) if args.mic.isdigit() else (args.mic or None)
        check_microphone(mic)
    if args.delay == "auto":
        return mic, args.hop + args.lookahead + 0.1
    try:
        delay = float(args.delay)
    except ValueError:
        raise KsdiffError(f"--delay must be seconds or auto, got {args.delay!r}") from None
    return mic, (None if delay <= 0 else delay)


def _sinks(args: argparse.Namespace, animator) -> tuple[list, object, object]:
    """(every sink, the WebSocket hub or None, the recorder)."""
    from ksdiff.export.livelink import LIVELINK_PORT
    from ksdiff.stream import LiveLinkSink, Recorder, WebSocketHub

    sinks: list = []
    for target in args.livelink or []:
        host, port = _hostport(target, LIVELINK_PORT)
        sinks.append(LiveLinkSink(host, port, animator.spec.name, animator.fps, subject=args.subject))
    hub = None
    if args.ws:
        host, port = _hostport(args.ws)
        hub = WebSocketHub(host, port, animator.spec.channels)
        sinks.append(hub)
        print(f"stream: WebSocket on ws://{host}:{hub.port}", flush=True)
    rec = Recorder(animator.spec.dim)
    return sinks + [rec], hub, rec


def _chunks(args: argparse.Namespace, hub, mic, realtime: bool):
    """The audio source's chunks."""
    from ksdiff.stream import file_chunks, microphone_chunks

    if args.input:
        from ksdiff.audio.features import load_speech

        return file_chunks(load_speech(args.input), realtime=realtime)
    if args.mic is not None:
        return microphone_chunks(mic)
    return hub.audio_chunks()


def _finish(args: argparse.Namespace, engine, animator, rec, s: dict, realtime: bool) -> None:
    """Save the recording and the statistics; print the summary line."""
    from ksdiff.face.motion import Motion
    from ksdiff.utils.io import atomic_path

    if args.out:
        total = int(round(engine.heard_s * animator.fps))
        Motion(rec.coeffs(total), animator.spec.channels, animator.fps, animator.spec.name).save(args.out)
    if args.stats and s:
        with atomic_path(args.stats, suffix=".json") as tmp:
            tmp.write_text(json.dumps(s, indent=2))
    if s:
        lat = (f"latency p50 {s['latency_p50_s']:.3f} s, p95 {s['latency_p95_s']:.3f} s, max "
               f"{s['latency_max_s']:.3f} s; " if realtime else "")
        print(f"stream: {s['audio_s']:.1f} s of audio, {s['frames_sent']} frames sent, {s['frames_dropped']} "
              f"dropped; {lat}compute per {args.hop:g} s hop p50 {s['compute_p50_s']:.3f} s, p95 "
              f"{s['compute_p95_s']:.3f} s" + (f"; motion: {args.out}" if args.out else ""))
