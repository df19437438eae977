"""Generation benchmark: real-time factor per stage and peak memory against audio length (``ksdiff bench generate``).

For each model under test and each audio length, a fresh subprocess (``python -m ksdiff.bench.inference WORKER``)
loads the model, warms up on a short slice (model loading and first-call allocations excluded from the timings),
resets its memory high-water mark, then generates motion for the whole audio with :meth:`Animator.animate` and
reads the stage timings it reports and VmHWM (peak RSS). Rendering (ICT head when its asset is found, else the
schematic face) is timed on the first ``render_seconds`` of the motion with the matching audio.

The audio is real speech: the clips of ``--audio-dir`` concatenated (cycling) to each length.

The compute floor of the diffusion stage = denoiser FLOPs (torch.utils.flop_counter on real denoiser calls,
exact quadratic in the window length) x sampler steps x windows, over the machine's measured matmul rate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ksdiff.bench.common import (
    ModelSource,
    build_model,
    count_flops,
    describe_source,
    fmt,
    machine_info,
    matmul_gflops,
    peak_rss_mb,
    quadratic_fit,
    reset_peak_rss,
    rss_mb,
)
from ksdiff.errors import KsdiffError
from ksdiff.generate import generation_defaults

SAMPLE_RATE = 16_000
DEFAULT_AUDIO_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "speech"
DEFAULT_GENERATION = {"window_s": 8.0}  # sampler, steps, guidance: the model's own (generation_defaults)
WARMUP_SECONDS = 2.0
TOKENS_PER_SECOND = 12.0  # transcript tokens per second of speech assumed when counting FLOPs (phonemes ~12/s)


# ------------------------------------------------------------------------------------------------ audio

def speech_files(audio_dir: str | os.PathLike) -> list[Path]:
    """The audio files of a folder (sorted by name); a one-line error when the folder is missing or empty."""
    d = Path(audio_dir)
    if not d.is_dir():
        raise KsdiffError("audio folder not found (give --audio-dir with real speech clips)", d)
    from ksdiff.data.importers import AUDIO_SUFFIXES

    files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise KsdiffError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in the audio folder", d)
    return files


def build_speech(audio_dir: str | os.PathLike, seconds: float) -> np.ndarray:
    """(round(seconds x 16000),) float32: the clips of ``audio_dir`` decoded to 16 kHz mono and concatenated in
    name order, cycling through them as often as needed, trimmed to the length."""
    from ksdiff.audio.decode import load_audio

    n = int(round(seconds * SAMPLE_RATE))
    if n < 1:
        raise KsdiffError(f"audio length must be positive, got {seconds} s")
    clips = [load_audio(p) for p in speech_files(audio_dir)]
    out, total, i = [], 0, 0
    while total < n:
        c = clips[i % len(clips)]
        out.append(c)
        total += len(c)
        i += 1
    return np.concatenate(out)[:n].astype(np.float32)


# ------------------------------------------------------------------------------------------------ FLOPs

def denoiser_flops_fn(model: Any, guidance: float = 1.0) -> Callable[[int], float]:
    """FLOPs of one ``model.denoise`` call as a function of the window length T (frames).

    Counted with FlopCounterMode on real calls at three lengths and fitted exactly by a quadratic (linear layers
    grow with T, attention with T^2; the transcript is taken as ``TOKENS_PER_SECOND`` tokens per second).
    """
    fps = float(model.cfg.fps)
    rate = float(model.cfg.feat_rate)
    g = torch.Generator().manual_seed(0)
    dev = next(model.parameters()).device

    def one(T: int) -> float:
        N = int(round(T * rate / fps))
        L = max(1, int(round(T / fps * TOKENS_PER_SECOND)))
        vocab = int(model.cfg.text.vocab_size)
        tokens = torch.randint(3, max(4, vocab), (1, L), generator=g)
        batch = {"feats": torch.randn(1, N, model.feat_dim, generator=g).to(dev),
                 "prosody": torch.randn(1, N, 2, generator=g).to(dev),
                 "feat_mask": torch.ones(1, N, dtype=torch.bool, device=dev),
                 "tokens": tokens.to(dev), "token_mask": torch.ones(1, L, dtype=torch.bool, device=dev)}
        # detached: FlopCounterMode's module tracker hooks every module input that requires grad, and views of
        # parameters made under no_grad (e.g. an expanded null token) claim to without having a grad_fn
        cond = _detached(model.encode_condition(batch, T, keyframes=torch.zeros(1, T, 2, device=dev)))
        x = torch.randn(1, T, model.spec.dim, generator=g).to(dev)
        t = torch.tensor([500], device=dev)
        from ksdiff.model.ksdiff import sequential_paths

        with torch.no_grad(), sequential_paths():  # FlopCounterMode sees its own thread only
            return float(count_flops(lambda: model.denoise(x, t, cond, guidance=guidance)))

    unit = max(1, int(round(fps)))  # one second: whole numbers of tokens, so the three points lie on one quadratic
    xs = [2 * unit, 4 * unit, 6 * unit]
    a, b, c = quadratic_fit(xs, [one(x) for x in xs])
    return lambda T: a + b * T + c * T * T


def _detached(obj: Any) -> Any:
    """``obj`` (nested dicts / lists of tensors) with every tensor detached."""
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, dict):
        return {k: _detached(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detached(v) for v in obj)
    return obj


# ------------------------------------------------------------------------------------------------ the worker

def _set_memory_limit(budget_mb: float | None) -> float | None:
    """Cap this process's address space at its current size + ``budget_mb`` (so a run that would exhaust the
    machine fails with an allocation error instead of waking the OOM killer). Returns the cap in MiB."""
    if not budget_mb:
        return None
    import resource

    from ksdiff.bench.common import _status_mb

    vm = _status_mb("VmSize")
    if vm is None:
        return None
    cap = int((vm + budget_mb) * 1024 * 1024)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    return cap / 1024 / 1024


def run_worker(job: dict) -> dict:
    """Measure one (model, length) in this process. ``job``: source, audio (wav path), seconds, generation,
    render_seconds, render_size, threads, mem_budget_mb, seed."""
    from ksdiff.audio.decode import load_audio

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    gen = {**DEFAULT_GENERATION, **(job.get("generation") or {})}
    res: dict[str, Any] = {"seconds": job["seconds"], "generation": gen, "threads": torch.get_num_threads()}
    t0 = time.perf_counter()
    animator, feat_info = _load_animator(job, gen)
    gen = {**animator.defaults, **gen}
    res["generation"] = gen
    res["load_s"] = time.perf_counter() - t0
    kw = dict(steps=int(gen["steps"]), sampler=str(gen["sampler"]), guidance=float(gen["guidance"]),
              smooth=float(gen["smooth"]), seed=int(job.get("seed", 0)))

    wave = load_audio(job["audio"])
    t0 = time.perf_counter()
    animator.animate(wave[:int(WARMUP_SECONDS * SAMPLE_RATE)], **{**kw, "steps": min(2, kw["steps"])})
    res["warmup_s"] = time.perf_counter() - t0
    res["rss_before_mb"] = rss_mb()
    res["peak_reset"] = reset_peak_rss()
    res["mem_cap_mb"] = _set_memory_limit(job.get("mem_budget_mb"))
    try:
        motion = animator.animate(job["audio"], **kw)
    except (RuntimeError, MemoryError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, MemoryError) or "alloc" in msg.lower() or "memory" in msg.lower():
            res["error"] = f"out of memory (above {res['mem_cap_mb'] / 1024:.1f} GiB address space)" \
                if res["mem_cap_mb"] else "out of memory"
            res["peak_rss_mb"] = peak_rss_mb()
            return res
        raise
    info = animator.last_info
    res["peak_rss_mb"] = peak_rss_mb()
    res["timings"] = dict(info["timings"])
    res["features_split"] = {k[5:]: v for k, v in feat_info.items() if k.startswith("time_")}
    res["num_frames"] = int(info["num_frames"])
    res["windows"] = [list(w) for w in info["windows"]]
    res["fps"] = float(info["fps"])
    rs = float(job.get("render_seconds") or 0.0)
    if rs > 0:
        res["render"] = _time_render(motion, wave, rs, job.get("render_face", "auto"), int(job.get("render_size", 512)))
    return res


def _load_animator(job: dict, gen: dict) -> tuple[Any, dict]:
    """(the :class:`~ksdiff.generate.Animator` of ``job``'s source with ``gen``'s window, the dict its speech
    front-end fills with its own split of the last call's time: encoder, prosody, transcript)."""
    from ksdiff.generate import Animator

    source = ModelSource.from_dict(job["source"])
    model, cfg = build_model(source)
    animator = Animator(model, cfg, path=source.checkpoint, window_s=float(gen["window_s"]))
    feat_info: dict = {}
    plain = animator.speech_features

    def speech_features(wave, text=None):  # records the front-end's own split (encoder, prosody, transcript)
        sf = plain(wave, text)
        feat_info.clear()
        feat_info.update(sf.info)
        return sf

    animator.speech_features = speech_features  # type: ignore[method-assign]
    return animator, feat_info


def _time_render(motion, wave: np.ndarray, seconds: float, face: str, size: int) -> dict[str, Any]:
    """Render the first ``seconds`` of ``motion`` with the matching (N,) 16 kHz ``wave`` to an mp4 (no memory
    cap); returns {"seconds" (wall), "audio_seconds", "frames", "face", "backend", "size"}."""
    import resource

    from ksdiff.audio.decode import write_wav
    from ksdiff.face.motion import Motion
    from ksdiff.render import render_video

    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.getrlimit(resource.RLIMIT_AS)[1]))
    n = max(1, min(motion.num_frames, int(round(seconds * motion.fps))))
    part = Motion(motion.coeffs[:n], motion.channels, motion.fps, motion.spec)
    with tempfile.TemporaryDirectory(prefix="ksdiff-bench-") as tmp:
        wav = Path(tmp) / "slice.wav"
        write_wav(wav, wave[:int(round(n / motion.fps * SAMPLE_RATE))])
        t0 = time.perf_counter()
        r = render_video(part, wav, Path(tmp) / "slice.mp4", face=face, size=size)
        return {"seconds": time.perf_counter() - t0, "audio_seconds": n / motion.fps, "frames": int(r["frames"]),
                "face": r["face"], "backend": r["backend"], "size": size}


def _worker_main(path: str) -> int:
    job = json.loads(Path(path).read_text(encoding="utf-8"))
    try:
        res = run_worker(job)
    except KsdiffError as e:
        res = {"error": str(e)}
    Path(job["result"]).write_text(json.dumps(res), encoding="utf-8")
    return 0


def _mem_available_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run_job(job: dict, timeout: float | None = None, code_root: str | None = None) -> dict:
    """Run one measurement in a fresh ``python -m ksdiff.bench.inference`` subprocess (importing ksdiff from
    ``code_root`` when given, else from this tree); its result dict."""
    with tempfile.TemporaryDirectory(prefix="ksdiff-bench-job-") as tmp:
        jp, rp = Path(tmp) / "job.json", Path(tmp) / "result.json"
        jp.write_text(json.dumps({**job, "result": str(rp)}), encoding="utf-8")
        env = dict(os.environ)
        root = code_root or str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        try:
            # cwd = the code's root: `python -m` puts the working directory first on sys.path
            p = subprocess.run([sys.executable, "-m", "ksdiff.bench.inference", str(jp)], env=env, cwd=root,
                               capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"seconds": job["seconds"], "error": f"timed out after {timeout:.0f} s"}
        if rp.is_file():
            return json.loads(rp.read_text(encoding="utf-8"))
        tail = (p.stderr or p.stdout or "").strip().splitlines()[-1:] or [f"exit code {p.returncode}"]
        if p.returncode < 0:
            tail = [f"killed by signal {-p.returncode} (out of memory?)"]
        return {"seconds": job["seconds"], "error": f"worker failed: {tail[0][:200]}"}


# ------------------------------------------------------------------------------------------------ the benchmark

def bench_generate(sources: list[ModelSource], seconds: list[float], audio_dir: str | os.PathLike = DEFAULT_AUDIO_DIR,
                   render_seconds: float = 10.0, render_size: int = 512, threads: int | None = None,
                   timeout: float | None = 3600.0, mem_fraction: float = 0.7, seed: int = 0,
                   progress: Callable[[str], None] | None = print) -> dict:
    """Measure every model of ``sources`` at every length of ``seconds``.

    Returns:
        {"machine", "matmul_gflops", "sources": [{"label", "description", "generation", "params", "flops":
        {"per_call_at": {T: flops}}, "runs": [worker result + "rtf" {stage: s/s} + "floor_rtf"]}], ...}
    """
    if not sources:
        raise KsdiffError("nothing to benchmark")
    if any(s <= 0 for s in seconds):
        raise KsdiffError(f"--seconds must be positive, got {seconds}")
    if threads:
        torch.set_num_threads(int(threads))
    files = speech_files(audio_dir)
    say = progress or (lambda _m: None)
    out: dict[str, Any] = {"machine": machine_info(), "audio_dir": str(Path(audio_dir)),
                           "audio_files": [f.name for f in files], "seconds": list(seconds),
                           "render_seconds": render_seconds, "render_size": render_size}
    out["matmul_gflops"] = matmul_gflops()
    say(f"matmul rate: {out['matmul_gflops']:.1f} GFLOP/s fp32 ({torch.get_num_threads()} threads)")
    avail = _mem_available_mb()
    budget = avail * mem_fraction if avail else None
    out["mem_budget_mb"] = budget
    wave = build_speech(audio_dir, max(seconds))
    out["sources"] = []
    with tempfile.TemporaryDirectory(prefix="ksdiff-bench-audio-") as tmp:
        from ksdiff.audio.decode import write_wav

        wavs = {}
        for s in seconds:
            wavs[s] = Path(tmp) / f"speech_{s:g}s.wav"
            write_wav(wavs[s], wave[:int(round(s * SAMPLE_RATE))])
        for src in sources:
            model, cfg = build_model(src)
            gen = {**generation_defaults(cfg), **DEFAULT_GENERATION, **src.generation}
            flops_at = denoiser_flops_fn(model, float(gen["guidance"]))
            entry: dict[str, Any] = {"label": src.label, "description": describe_source(src), "generation": gen,
                                     "params": model.num_parameters(), "runs": []}
            window_frames = int(round(float(gen["window_s"]) * model.cfg.fps))
            entry["flops_per_call"] = {str(T): flops_at(T) for T in sorted({window_frames or 200, 250})}
            del model
            for s in seconds:
                say(f"{src.label}: {s:g} s of audio ...")
                job = {"source": _worker_source(src), "audio": str(wavs[s]), "seconds": s, "generation": gen,
                       "render_seconds": min(render_seconds, s), "render_size": render_size,
                       "threads": torch.get_num_threads(), "mem_budget_mb": budget, "seed": seed}
                r = run_job(job, timeout, code_root=src.code_root)
                _derive(r, flops_at, out["matmul_gflops"], int(gen["steps"]))
                entry["runs"].append(r)
                say("  " + (r["error"] if "error" in r else
                            f"RTF {r['rtf']['total']:.3f} (features {r['rtf']['features']:.3f}, keyframes "
                            f"{r['rtf']['keyframes']:.3f}, diffusion {r['rtf']['diffusion']:.3f}, render "
                            f"{fmt(r['rtf'].get('render'))}), peak RSS {r['peak_rss_mb']:.0f} MiB"))
            out["sources"].append(entry)
    return out


def _worker_source(src: ModelSource) -> dict:
    """The source as its worker gets it: paths absolute (the worker runs in its code's root folder)."""
    source = src.to_dict()
    if source.get("checkpoint"):
        source["checkpoint"] = str(Path(source["checkpoint"]).resolve())
    for key in ("configs", "overlays"):
        source[key] = [str(Path(c).resolve()) if Path(c).is_file() else c for c in source[key]]
    return source


def stage_seconds(timings: dict[str, float]) -> dict[str, float]:
    """The generator's timings grouped into the benchmark's stages.

    ``features`` = decode + front-end. ``keyframes`` = the conditioning pass: ``Animator.animate`` times the
    speech conditioning (DPSE) and the autoregressive keyframe decoding of every window together as
    ``condition`` (older versions timed a whole-clip ``keyframes`` pass and a per-window ``condition`` apart; the
    latter then counts as diffusion). ``diffusion`` = the sampler (+ turning its output into motion).
    """
    t = timings
    if "keyframes" in t:
        kf, diff = t["keyframes"], t.get("condition", 0.0) + t.get("diffusion", 0.0)
    else:
        kf, diff = t.get("condition", 0.0), t.get("diffusion", 0.0)
    return {"features": t.get("decode", 0.0) + t.get("features", 0.0), "keyframes": kf,
            "diffusion": diff + t.get("output", 0.0)}


def _derive(r: dict, flops_at: Callable[[int], float] | None, gflops: float, steps: int) -> None:
    """Add real-time factors per stage and the compute floor to a worker result (``flops_at`` None: keep the
    FLOPs already in ``r``)."""
    if "timings" not in r:
        return
    s = float(r["seconds"])
    stages = stage_seconds(r["timings"])
    rtf = {k: v / s for k, v in stages.items()}
    if "render" in r:
        rtf["render"] = r["render"]["seconds"] / r["render"]["audio_seconds"]
    rtf["generate"] = sum(stages.values()) / s
    rtf["total"] = rtf["generate"] + rtf.get("render", 0.0)
    r["stage_seconds"] = stages
    r["rtf"] = rtf
    if flops_at is not None:
        r["diffusion_flops"] = sum(flops_at(stop - start) for start, stop, _ in r["windows"]) * steps
    r["floor_rtf"] = r["diffusion_flops"] / (gflops * 1e9) / s


def rederive(res: dict) -> dict:
    """Recompute the derived numbers of a saved result (``--json``) from its raw timings."""
    for e in res["sources"]:
        for r in e["runs"]:
            _derive(r, None, res["matmul_gflops"], int(e["generation"]["steps"]))
    return res


def markdown(res: dict) -> str:
    """The results as Markdown: one table (RTF per stage, peak RSS, floor) plus notes."""
    lines = ["| model | audio | frames | windows | features | keyframes | diffusion | render¹ | total | "
             "peak RSS | diffusion floor² |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in res["sources"]:
        g = e["generation"]
        name = f"{e['label']} ({g['sampler']} {g['steps']}, " + \
               (f"{g['window_s']:g} s windows)" if g["window_s"] else "one pass)")
        for r in e["runs"]:
            if "error" in r:
                lines.append(f"| {name} | {r['seconds']:g} s | | | {r['error']} | | | | | "
                             f"{fmt(r.get('peak_rss_mb'), 0)} MiB | |")
                continue
            x = r["rtf"]
            lines.append(f"| {name} | {r['seconds']:g} s | {r['num_frames']} | {len(r['windows'])} | "
                         f"{fmt(x['features'])} | {fmt(x['keyframes'])} | {fmt(x['diffusion'])} | "
                         f"{fmt(x.get('render'))} | {fmt(x['total'])} | {r['peak_rss_mb']:.0f} MiB | "
                         f"{fmt(r['floor_rtf'], 4)} |")
    rend = next((r["render"] for e in res["sources"] for r in e["runs"] if "render" in r), None)
    notes = ["", "Values are real-time factors (compute seconds per audio second) of each stage; *total* adds "
             "render to the generation stages. Peak RSS is the worker process's VmHWM during generation "
             "(model loaded; high-water mark reset after a warm-up)."]
    if rend:
        notes.append(f"¹ render measured on the first {res['render_seconds']:g} s (or less for shorter audio): "
                     f"{rend['face']} face, {rend['backend']} backend, {rend['size']}², H.264 + AAC mux.")
    notes.append("*keyframes* = the conditioning pass of every window: speech refinement (DPSE) and the "
                 "autoregressive keyframe decoding, timed together by the generator; 0 for a model without them.")
    notes.append(f"² diffusion floor = denoiser FLOPs (torch FlopCounterMode) × steps × windows / measured matmul "
                 f"rate ({res['matmul_gflops']:.1f} GFLOP/s fp32), per audio second.")
    for e in res["sources"]:
        p = e["params"]
        fl = ", ".join(f"{float(v) / 1e9:.2f} GFLOP at {T} frames" for T, v in e["flops_per_call"].items())
        notes.append(f"- {e['description']}; {p['total'] / 1e6:.2f} M parameters; one denoiser call: {fl}.")
    notes.append(f"- audio: {len(res['audio_files'])} real speech clips from `{Path(res['audio_dir']).name}/` "
                 "concatenated to each length.")
    return "\n".join(lines + notes) + "\n"


if __name__ == "__main__":  # the subprocess worker
    sys.exit(_worker_main(sys.argv[1]))
