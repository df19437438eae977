"""Streaming benchmark (``ksdiff bench stream``): latency, compute per hop, dropped frames and the quality of the
streamed motion against offline generation of the same audio, for one or more stream configurations.

Each configuration streams real speech (the clips of ``--audio-dir`` concatenated to ``--seconds``) at real-time
pace through :func:`ksdiff.stream.run_stream` into a recorder, exactly as ``ksdiff stream --input`` does (frames
paced at capture + ``delay``, the same drop rules). Latency per frame = the time it is handed to the sinks minus
the time its audio was heard. Quality: jawOpen Pearson r and mean |difference| over the mouth and jaw channels
between the streamed motion and :meth:`Animator.animate` of the whole audio with the same settings (speech only,
no transcript: what the stream hears), plus jawOpen's correlation with the speech envelope for both.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ksdiff.bench.common import fmt, machine_info
from ksdiff.errors import KsdiffError
from ksdiff.generate import SAMPLE_RATE

DEFAULT_CONFIGS = "hop=0.2,lookahead=0.12"
KEYS = {"hop": float, "lookahead": float, "context": float, "steps": int, "guidance": float, "delay": float}


def parse_configs(text: str) -> list[dict[str, Any]]:
    """``"hop=0.2,lookahead=0.12,steps=10;hop=0.4,steps=20"`` -> one dict per configuration."""
    out = []
    for part in text.split(";"):
        if not part.strip():
            continue
        cfg: dict[str, Any] = {}
        for kv in part.split(","):
            k, sep, v = kv.partition("=")
            k = k.strip()
            if not sep or k not in KEYS:
                raise KsdiffError(f"stream configuration items are KEY=VALUE with KEY in {', '.join(KEYS)}, "
                                  f"got {kv!r}")
            try:
                cfg[k] = KEYS[k](v)
            except ValueError:
                raise KsdiffError(f"{k} must be a number, got {v!r}") from None
        out.append(cfg)
    if not out:
        raise KsdiffError("no stream configuration given")
    return out


def bench_stream(checkpoint: str | None, wave: np.ndarray, configs: list[dict[str, Any]], seed: int = 0,
                 threads: int = 1) -> dict:
    """Measure every configuration on ``wave`` (N,) 16 kHz; returns ``{"machine", "audio_s", "rows"}``."""
    import torch

    from ksdiff.generate import load_model
    from ksdiff.metrics import envelope_correlation
    from ksdiff.metrics.articulation import mouth_channels
    from ksdiff.stream import CONTEXT_S, HOP_S, LOOKAHEAD_S, Recorder, StreamAnimator, file_chunks, run_stream

    torch.set_num_threads(threads)
    animator = load_model(checkpoint)
    spec = animator.spec
    mouth = spec.index(mouth_channels(spec.channels))
    jaw = spec.channels.index("jawOpen") if "jawOpen" in spec.channels else mouth[0]
    StreamAnimator(animator).push(wave[:1600])  # loads the encoder
    animator.animate(wave[:32000], text="")  # warm-up
    rows = []
    for cfg in configs:
        hop, la = cfg.get("hop", HOP_S), cfg.get("lookahead", LOOKAHEAD_S)
        steps = cfg.get("steps", animator.defaults["steps"])
        engine = StreamAnimator(animator, hop_s=hop, lookahead_s=la, context_s=cfg.get("context", CONTEXT_S),
                                steps=steps, guidance=cfg.get("guidance"), seed=seed)
        rec = Recorder(spec.dim)
        stage: dict[str, list[float]] = {}

        def on_chunk(ch) -> None:
            for k, v in ch.timings.items():
                stage.setdefault(k, []).append(v)

        delay = cfg.get("delay", hop + la + 0.1)
        stats = run_stream(engine, file_chunks(wave), [rec], realtime=True, delay_s=delay if delay > 0 else None,
                           on_chunk=on_chunk)
        T = int(round(len(wave) / SAMPLE_RATE * animator.fps))
        streamed = rec.coeffs(T)
        t0 = time.perf_counter()
        offline = animator.animate(wave, text="", steps=steps, guidance=cfg.get("guidance"), seed=seed).coeffs
        offline_s = time.perf_counter() - t0
        s = stats.summary()
        s.update({
            "config": ",".join(f"{k}={v}" for k, v in cfg.items()) or "defaults", "steps": steps,
            "delay_s": delay,
            "stage_p50_s": {k: float(np.median(v)) for k, v in stage.items()},
            "jaw_r_vs_offline": float(np.corrcoef(streamed[:, jaw], offline[:, jaw])[0, 1]),
            "mouth_mae_vs_offline": float(np.abs(streamed[:, mouth] - offline[:, mouth]).mean()),
            "env_r_stream": float(envelope_correlation(streamed[:, jaw], wave, animator.fps)),
            "env_r_offline": float(envelope_correlation(offline[:, jaw], wave, animator.fps)),
            "offline_rtf": offline_s / (len(wave) / SAMPLE_RATE),
        })
        rows.append(s)
    return {"machine": machine_info(), "audio_s": len(wave) / SAMPLE_RATE, "checkpoint": str(animator.path),
            "threads": threads, "rows": rows}


def markdown(res: dict) -> str:
    """The benchmark as a Markdown table (seconds)."""
    head = ("| configuration | algorithmic | latency p50 | latency p95 | latency max | compute/hop p50 | p95 | "
            "features / keyframes / diffusion p50 | frames sent | dropped | jaw r vs offline | mouth MAE vs "
            "offline | jaw–envelope r stream / offline |")
    lines = [f"Audio: {res['audio_s']:.0f} s of real speech at real-time pace; {res['threads']} torch thread(s); "
             f"checkpoint {Path(res['checkpoint']).name}.", "", head, "|" + "---|" * 13]
    for r in res["rows"]:
        st = r["stage_p50_s"]
        stages = " / ".join(fmt(st.get(k, float("nan")), 3) for k in ("features", "keyframes", "diffusion"))
        lines.append(
            f"| {r['config']} | {fmt(r['algorithmic_s'], 2)} | {fmt(r['latency_p50_s'], 3)} | "
            f"{fmt(r['latency_p95_s'], 3)} | {fmt(r['latency_max_s'], 3)} | {fmt(r['compute_p50_s'], 3)} | "
            f"{fmt(r['compute_p95_s'], 3)} | {stages} | {r['frames_sent']} | {r['frames_dropped']} | "
            f"{fmt(r['jaw_r_vs_offline'], 3)} | {fmt(r['mouth_mae_vs_offline'], 4)} | "
            f"{fmt(r['env_r_stream'], 3)} / {fmt(r['env_r_offline'], 3)} |")
    return "\n".join(lines)
