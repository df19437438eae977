"""ksdiff bench generate|train|render|stream: speed, memory and the compute floor on this machine (Markdown tables)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "bench"
HELP = "benchmark generation (RTF per stage, peak memory vs audio length) or training (s/step, parameters)"
DESCRIPTION = (
    "Benchmarks. `generate`: real-time factor split into features / keyframes / diffusion / render and peak RSS "
    "against audio length (each length in a fresh process), for a checkpoint or a random initialisation of a "
    "config, optionally against a second configuration in the same run (--vs / --vs-config). `train`: seconds per "
    "training step on random batches of the right shapes, parameter counts. `render`: seconds to render speech-driven "
    "motion to an mp4, stages one after another vs overlapped in threads. generate/train print the compute floor "
    "(model FLOPs over the measured matmul rate). `stream`: latency, compute per hop, dropped frames and streamed vs "
    "offline motion for one or more stream configurations. All can append their table to docs/BENCHMARKS.md (--record).")
ORDER = 80


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    p.add_argument("--spec", default="arkit", choices=["arkit", "flame"],
                   help="face spec of a random initialisation (default arkit)")
    p.add_argument("--seed", type=int, default=0, help="seed of random initialisations and of sampling")
    _output(p)


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", help="also write every measurement as JSON")
    p.add_argument("--record", action="store_true", help="append the table to docs/BENCHMARKS.md")
    p.add_argument("--record-to", metavar="MD", default=None, help="append to this file instead (implies --record)")
    p.add_argument("--date", default=None, help="date written with --record (default today, YYYY-MM-DD)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    _add_generate(sub)
    _add_train(sub)
    _add_render(sub)
    _add_stream(sub)


def _add_stream(sub) -> None:
    from ksdiff.bench.stream import DEFAULT_CONFIGS

    s = sub.add_parser("stream", help="streaming latency, compute per hop, dropped frames, streamed vs offline",
                       description="Stream real speech at real-time pace through `ksdiff stream`'s engine for each "
                                   "configuration; report latency (algorithmic, p50/p95/max end to end), compute per "
                                   "hop by stage, dropped frames, and the streamed motion against offline "
                                   "generation of the same audio.")
    s.add_argument("--checkpoint", metavar="C", default=None, help="model (default: the packaged model)")
    s.add_argument("--configs", default=DEFAULT_CONFIGS,
                   help="configurations separated by ';', each KEY=VALUE,... with KEY in hop, lookahead, context, "
                        f"steps, guidance, delay (default {DEFAULT_CONFIGS!r})")
    s.add_argument("--seconds", type=float, default=30.0, help="seconds of speech (default 30)")
    s.add_argument("--audio-dir", default=None,
                   help="folder of real speech clips concatenated to the length (default ../shared/data/speech)")
    s.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    s.add_argument("--seed", type=int, default=0)
    _output(s)


def _add_generate(sub) -> None:
    g = sub.add_parser("generate", help="RTF per stage and peak memory against audio length",
                       description="Real-time factor of generation per stage and peak memory against audio length.")
    src = g.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", metavar="C", help="trained model (.safetensors or run folder)")
    src.add_argument("--random-init", metavar="CONFIG",
                     help="no trained model: a random initialisation of this config (speed does not depend on "
                          "the weights); e.g. default")
    vs = g.add_mutually_exclusive_group()
    vs.add_argument("--vs", metavar="C2", help="a second checkpoint, measured in the same run")
    vs.add_argument("--vs-ref", metavar="REV",
                    help="the same measurement with the code of git revision REV of this repository (and, for the "
                         "packaged model, the model as REV shipped it), in the same run")
    vs.add_argument("--vs-config", metavar="OVERLAY",
                    help="a second configuration: this overlay's own keys on top of the first model's config "
                         "(random initialisation), e.g. ablations/diffspeaker")
    g.add_argument("--seconds", default="10,60,600", help="audio lengths, comma-separated (default 10,60,600)")
    g.add_argument("--audio-dir", default=None,
                   help="folder of real speech clips concatenated to each length (default ../shared/data/speech "
                        "beside the repository)")
    g.add_argument("--steps", type=int, default=None, help="sampler steps (default 20)")
    g.add_argument("--sampler", default=None, help="dpmpp | ddim | ddpm (default dpmpp)")
    g.add_argument("--window", type=float, default=None,
                   help="generation window in seconds, 0 = one pass (default 8)")
    g.add_argument("--vs-steps", type=int, default=None,
                   help="steps of the second configuration (default: its preset, e.g. 50 for diffspeaker, else "
                        "--steps)")
    g.add_argument("--vs-sampler", default=None, help="sampler of the second configuration (default: preset)")
    g.add_argument("--vs-window", type=float, default=None,
                   help="window of the second configuration in seconds (default: preset, 0 for diffspeaker)")
    g.add_argument("--render-seconds", type=float, default=10.0,
                   help="render the first N seconds of each generated motion (default 10; 0 = no render)")
    g.add_argument("--render-size", type=int, default=512, help="rendered frame size (default 512)")
    g.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed per measurement (default 3600)")
    _common(g)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="training seconds/step, steps/s and parameter counts",
                       description="Training speed on random batches of the right shapes, and parameter counts.")
    t.add_argument("--config", default="default", help="config file or shipped name (default: default)")
    t.add_argument("--vs-config", metavar="OVERLAY", default=None,
                   help="a second configuration: this overlay's own keys on top of --config")
    t.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    t.add_argument("--crop", type=float, default=4.0, help="crop length in seconds (default 4)")
    t.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up (default 5)")
    _common(t)


def _add_render(sub) -> None:
    r = sub.add_parser("render", help="seconds to render motion + speech to an mp4: serial vs threaded stages, "
                                      "all triangles vs the visible ones",
                       description="Render real speech-driven motion to an mp4 (vertices, drawing, H.264 + AAC) "
                                   "with the stages one after another (serial), overlapped in threads (threaded), "
                                   "and threaded without the triangles the camera never sees (visible, the "
                                   "default of render_video); prints wall time, fps and RTF.")
    r.add_argument("--seconds", type=float, default=10.0, help="audio length in seconds (default 10)")
    r.add_argument("--audio-dir", default=None,
                   help="folder of real speech clips concatenated to the length (default ../shared/data/speech "
                        "beside the repository)")
    r.add_argument("--size", type=int, default=512, help="frame size in pixels (default 512)")
    r.add_argument("--face", default="auto", choices=["auto", "ict", "flame", "schematic"], help="face (default auto)")
    r.add_argument("--backend", default="auto", choices=["auto", "gl", "numpy"], help="rasteriser (default auto)")
    r.add_argument("--modes", default="serial,threaded,visible",
                   help="comma-separated: serial, threaded, visible (default all three)")
    r.add_argument("--repeats", type=int, default=2, help="renders per mode, alternating (default 2)")
    _output(r)


def _seconds(text: str) -> list[float]:
    from ksdiff.errors import KsdiffError

    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise KsdiffError(f"--seconds must be numbers separated by commas, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise KsdiffError(f"--seconds must be positive numbers, got {text!r}")
    return vals


def _label(name: str) -> str:
    return Path(str(name)).stem


def run(args: argparse.Namespace) -> int:
    from ksdiff.bench import common as C
    from ksdiff.errors import KsdiffError
    from ksdiff.utils.io import write_json

    if getattr(args, "threads", None) is not None and args.threads < 1:
        raise KsdiffError(f"--threads must be at least 1, got {args.threads}")
    bench = {"generate": _run_generate, "render": _run_render, "stream": _run_stream}.get(args.what, _run_train)
    res, table, title = bench(args)
    print()
    print(table)
    if args.json:
        write_json(args.json, res)
        print(f"wrote {args.json}")
    if args.record or args.record_to:
        path = C.record_markdown(table, C.command_line(), title, path=args.record_to, date=args.date,
                                 machine=res["machine"])
        print(f"appended to {path}")
    return 0


def _generate_sources(args: argparse.Namespace) -> list:
    """The :class:`~ksdiff.bench.common.ModelSource` of ``bench generate``: the model (--checkpoint or
    --random-init) and the one to compare it with (--vs, --vs-ref or --vs-config), with their generation settings."""
    from ksdiff.bench import common as C
    from ksdiff.config import resolve_config_path
    from ksdiff.errors import KsdiffError

    if args.checkpoint:
        ck = Path(args.checkpoint)
        if not ck.exists():
            raise KsdiffError("checkpoint not found", ck)
        first = C.ModelSource("ksdiff", checkpoint=str(ck), seed=args.seed)
    elif args.random_init:
        resolve_config_path(args.random_init)
        first = C.ModelSource(_label(args.random_init), configs=[args.random_init], spec=args.spec, seed=args.seed)
    else:
        raise KsdiffError("no model to benchmark: give --checkpoint C (a trained model) or --random-init CONFIG "
                          "(e.g. --random-init default: speed does not depend on the weights)")
    main_gen = {k: v for k, v in (("steps", args.steps), ("sampler", args.sampler), ("window_s", args.window))
                if v is not None}
    first.generation = main_gen
    if not (args.vs or args.vs_config or args.vs_ref):
        return [first]
    if args.vs_ref:
        from ksdiff.generate import DEFAULT_CHECKPOINT

        root = Path(_checkout(args.vs_ref))
        ck = first.checkpoint
        theirs = root / DEFAULT_CHECKPOINT.relative_to(DEFAULT_CHECKPOINT.parents[2])
        if ck and Path(ck).resolve() == DEFAULT_CHECKPOINT.resolve() and theirs.is_file():
            ck = str(theirs)  # the packaged model as that revision shipped it
        second = C.ModelSource(f"ksdiff@{args.vs_ref}", checkpoint=ck, configs=list(first.configs), spec=args.spec,
                               seed=args.seed, code_root=str(root))
        gen = dict(main_gen)
    elif args.vs:
        if not Path(args.vs).exists():
            raise KsdiffError("checkpoint not found", args.vs)
        second = C.ModelSource(_label(Path(args.vs).parent.name if Path(args.vs).is_file() else args.vs),
                               checkpoint=args.vs, seed=args.seed)
        gen = dict(main_gen)
    else:
        resolve_config_path(args.vs_config)
        second = C.ModelSource(_label(args.vs_config), checkpoint=first.checkpoint, configs=list(first.configs),
                               overlays=[args.vs_config], spec=args.spec, seed=args.seed)
        gen = {**main_gen, **C.preset_for(args.vs_config)}
    gen.update({k: v for k, v in (("steps", args.vs_steps), ("sampler", args.vs_sampler),
                                  ("window_s", args.vs_window)) if v is not None})
    second.generation = gen
    if second.label == first.label:
        second.label += "-vs"
    return [first, second]


def _checkout(rev: str) -> str:
    """The files of git revision ``rev`` of this repository in a temporary folder (``git archive``; removed at
    exit)."""
    import atexit
    import shutil
    import subprocess
    import tempfile

    from ksdiff.errors import KsdiffError

    repo = Path(__file__).resolve().parents[2]
    tmp = tempfile.mkdtemp(prefix="ksdiff-ref-")
    atexit.register(shutil.rmtree, tmp, True)
    try:
        archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", rev], capture_output=True,
                                 check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        err = getattr(e, "stderr", b"") or b""
        raise KsdiffError(f"cannot check out revision {rev!r} of {repo}: "
                          f"{err.decode(errors='replace').strip() or e}") from None
    return tmp


def _run_generate(args: argparse.Namespace) -> tuple[dict, str, str]:
    """``bench generate``: (measurements, Markdown table, title)."""
    from ksdiff.bench.inference import DEFAULT_AUDIO_DIR, bench_generate, markdown

    seconds = _seconds(args.seconds)
    sources = _generate_sources(args)
    res = bench_generate(sources, seconds, args.audio_dir or DEFAULT_AUDIO_DIR,
                         render_seconds=args.render_seconds, render_size=args.render_size,
                         threads=args.threads, timeout=args.timeout, seed=args.seed)
    return res, markdown(res), "Generation: RTF per stage and peak memory against audio length"


def _run_stream(args: argparse.Namespace) -> tuple[dict, str, str]:
    """``bench stream``: (measurements, Markdown table, title)."""
    from ksdiff.bench.inference import DEFAULT_AUDIO_DIR, build_speech
    from ksdiff.bench.stream import bench_stream, markdown, parse_configs

    configs = parse_configs(args.configs)
    wave = build_speech(args.audio_dir or DEFAULT_AUDIO_DIR, args.seconds)
    res = bench_stream(args.checkpoint, wave, configs, seed=args.seed, threads=args.threads)
    return res, markdown(res), "Streaming: latency, compute per hop, dropped frames, streamed vs offline"


def _run_render(args: argparse.Namespace) -> tuple[dict, str, str]:
    """``bench render``: (measurements, Markdown table, title)."""
    from ksdiff.bench.inference import DEFAULT_AUDIO_DIR
    from ksdiff.bench.render import bench_render, markdown

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    res = bench_render(args.seconds, args.audio_dir or DEFAULT_AUDIO_DIR, size=args.size, face=args.face,
                       backend=args.backend, modes=modes, repeats=args.repeats)
    return res, markdown(res), "Rendering: serial vs threaded stages vs visible triangles only"


def _run_train(args: argparse.Namespace) -> tuple[dict, str, str]:
    """``bench train``: (measurements, Markdown table, title)."""
    from ksdiff.bench import common as C
    from ksdiff.bench.training import bench_train, markdown
    from ksdiff.config import resolve_config_path

    resolve_config_path(args.config)
    sources = [C.ModelSource(_label(args.config), configs=[args.config], spec=args.spec, seed=args.seed)]
    if args.vs_config:
        resolve_config_path(args.vs_config)
        sources.append(C.ModelSource(_label(args.vs_config), configs=[args.config], overlays=[args.vs_config],
                                     spec=args.spec, seed=args.seed))
    res = bench_train(sources, batch=args.batch, crop_s=args.crop, steps=args.steps, threads=args.threads)
    return res, markdown(res), "Training: seconds per step and parameters"
