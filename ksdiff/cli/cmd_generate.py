"""ksdiff generate AUDIO... --out DIR: speech -> motion (.npz), optional Live Link CSV / DECA codes / mp4."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ksdiff.errors import KsdiffError

NAME = "generate"
HELP = "animate a face from speech: motion .npz per audio file (+ Live Link CSV, DECA codes, mp4)"
DESCRIPTION = (
    "Generate face motion for each AUDIO file (any format; long files are generated in overlapping windows) with a "
    "trained checkpoint. Writes OUT/<stem>.npz (the motion), and on request OUT/<stem>.csv (Live Link Face, arkit "
    "models), OUT/<stem>_deca.npz (DECA-style FLAME codes, flame models) and OUT/<stem>.mp4 (--render), plus "
    "OUT/generate.json with the settings and per-stage timings. A transcript is taken from --text, else from a "
    "same-stem .txt beside the audio, else transcribed automatically when the model uses text (--no-transcript: "
    "none).")
ORDER = 40

EXPORTS = ("livelink", "flame", "npz")


def add_reference_arguments(p: argparse.ArgumentParser) -> None:
    """--style-from, --reference-audio, --reference-weight, --no-anchor (generate and stream)."""
    p.add_argument("--style-from", metavar="CLIP", default=None,
                   help="a clip of the person's own face (Live Link CSV, video, or motion .npz; at least 2 s): "
                        "their resting face, mouth and head habits (models with a style encoder)")
    p.add_argument("--reference-audio", metavar="FILE", default=None,
                   help="with --style-from: the clip's own audio, aligned with it (e.g. the .mov Live Link Face "
                        "records beside the CSV; a video's own sound is used without this), so that what the person "
                        "said is not taken for their face")
    p.add_argument("--reference-weight", type=float, default=None, metavar="W",
                   help="with --style-from: weight in [0, 1] of the clip's typical face against the style's "
                        "training median face (default 0.5)")
    p.add_argument("--no-anchor", action="store_true",
                   help="with --style-from: leave the face's typical pose to the style encoder instead of moving "
                        "it to the person's (the clip's, mixed with the style's training median face)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio", nargs="+", metavar="AUDIO", help="speech files (wav, flac, mp3, m4a, a video, ...)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--checkpoint", metavar="C", default=None,
                   help="model.safetensors of a training run (or the run folder); default: the packaged model")
    p.add_argument("--text", action="append", metavar="T", default=None,
                   help="transcript (or a .txt file); give it once per AUDIO, in order")
    p.add_argument("--no-transcript", action="store_true",
                   help="read no transcript (the model's null text): for speech Whisper tiny.en cannot transcribe, "
                        "e.g. not English, where it would invent English words")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's, 20 unless set)")
    p.add_argument("--sampler", choices=("dpmpp", "ddim", "ddpm"), default=None,
                   help="dpmpp = DPM-Solver++(2M), ddim, ddpm (ancestral); default: the model's (dpmpp unless set)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta (0 = deterministic)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same motion)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (1 = off); default: the model's (the shipped model: 1.25)")
    p.add_argument("--smooth", type=float, default=None, metavar="SIGMA",
                   help="σ in frames of a Gaussian over time on the mouth channels (0 = off); default: the model's "
                        "(the shipped model: 0.75)")
    emo = p.add_mutually_exclusive_group()
    emo.add_argument("--emotion", metavar="V,A", default=None,
                     help="valence,arousal in [-1, 1] for the whole clip (models trained with emotion)")
    emo.add_argument("--emotion-curve", metavar="CSV", default=None,
                     help="valence and arousal over time: rows 'time_s, valence, arousal', interpolated per frame")
    p.add_argument("--style", metavar="S", default=None,
                   help="speaker name from the training set, or its index (models trained with style); default: "
                        "the model's (the shipped model: pseudo, with --style-from: facegood)")
    add_reference_arguments(p)
    p.add_argument("--window", type=float, default=None, metavar="SEC",
                   help="long audio: seconds per denoising window (default 8; 0 = whole clip in one pass)")
    p.add_argument("--overlap", type=float, default=None, metavar="SEC",
                   help="long audio: seconds each window shares with the previous one (default 2)")
    p.add_argument("--max-seconds", type=float, default=None, metavar="SEC",
                   help="refuse audio longer than SEC seconds (default: no limit)")
    p.add_argument("--export", action="append", choices=EXPORTS, default=None,
                   help="also write livelink (OUT/<stem>.csv, arkit) or flame (OUT/<stem>_deca.npz); "
                        "npz is always written; repeatable")
    p.add_argument("--render", action="store_true", help="also render OUT/<stem>.mp4 with the audio")
    p.add_argument("--face", default="auto", help="face model for --render (default auto)")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, mps)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _parse_emotion(s: str | None, curve: str | None = None):
    if curve is not None:
        from ksdiff.face.emotion import EmotionCurve

        return EmotionCurve.read(curve)
    if s is None:
        return None
    parts = s.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise KsdiffError(f"--emotion must be two numbers 'valence,arousal', got {s!r}") from None


def _texts(args: argparse.Namespace, audios: list[Path]) -> list[str | None]:
    """One transcript per audio: ``--text`` (a string or a .txt), else a same-stem .txt beside it, else None
    (transcribed automatically); ``--no-transcript``: "" (no text)."""
    if args.no_transcript:
        if args.text is not None:
            raise KsdiffError("--text and --no-transcript contradict each other; give one")
        return [""] * len(audios)
    if args.text is not None:
        if len(args.text) != len(audios):
            raise KsdiffError(f"--text was given {len(args.text)} time(s) for {len(audios)} audio file(s); "
                              "give one transcript per AUDIO")
        out = []
        for t in args.text:
            if t.lower().endswith(".txt"):
                if not Path(t).is_file():
                    raise KsdiffError("transcript file not found", t)
                t = _read_text(Path(t))
            out.append(" ".join(t.split()) or None)
        return out
    sides = [a.with_suffix(".txt") for a in audios]
    return [" ".join(_read_text(s).split()) or None if s.is_file() else None for s in sides]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KsdiffError("transcript is not UTF-8 text", path) from None
    except OSError as e:
        raise KsdiffError(f"transcript is not readable ({e.strerror})", path) from None


def _style(s: str | None):
    if s is None:
        return None
    return int(s) if s.isdigit() else s


def _inputs(args: argparse.Namespace) -> tuple[list[Path], list[str | None]]:
    """The audio files and their transcripts, checked before anything is loaded."""
    audios = [Path(a) for a in args.audio]
    for a in audios:
        if not a.is_file():
            raise KsdiffError("audio file not found", a)
    stems = [a.stem for a in audios]
    dup = sorted({s for s in stems if stems.count(s) > 1})
    if dup:
        raise KsdiffError(f"several inputs share the name {dup[0]!r}; outputs would overwrite each other")
    if args.steps is not None and args.steps < 1:
        raise KsdiffError(f"--steps must be at least 1, got {args.steps}")
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise KsdiffError(f"--max-seconds must be positive, got {args.max_seconds:g}")
    return audios, _texts(args, audios)


def _load_animator(args: argparse.Namespace, exports: set[str]):
    """The checkpoint's :class:`ksdiff.generate.Animator`, checked against the requested exports."""
    from ksdiff.generate import load_model

    animator = load_model(args.checkpoint, device=args.device)
    if "livelink" in exports and animator.spec.name != "arkit":
        raise KsdiffError(f"--export livelink needs an arkit model; this one is {animator.spec.name!r} "
                          "(use --export flame)", animator.path)
    if "flame" in exports and animator.spec.name != "flame":
        raise KsdiffError(f"--export flame needs a flame model; this one is {animator.spec.name!r} "
                          "(use --export livelink)", animator.path)
    return animator


def _renderer(wanted: bool):
    """``ksdiff.render.render_video`` when ``--render`` is given (None otherwise)."""
    if not wanted:
        return None
    try:
        from ksdiff.render import render_video
    except ImportError as e:
        raise KsdiffError(f"rendering is not available in this install ({e})") from None
    return render_video


def _animate(animator, audio: Path, text: str | None, args: argparse.Namespace, emotion):
    """One file's motion, with a progress bar over the denoiser evaluations."""
    from tqdm import tqdm

    step_bar = tqdm(total=0, desc=audio.name, unit="eval", leave=False, disable=None)  # None: a terminal only

    def progress(done: int, total: int) -> None:
        if step_bar.total != total:
            step_bar.total = total
            step_bar.refresh()
        step_bar.update(done - step_bar.n)

    try:
        return animator.animate(audio, text=text, steps=args.steps, sampler=args.sampler, seed=args.seed,
                                guidance=args.guidance, emotion=emotion, style=_style(args.style),
                                reference=args.reference, anchor=not args.no_anchor,
                                reference_audio=args.reference_wave, reference_weight=args.reference_weight,
                                window_s=args.window, overlap_s=args.overlap, eta=args.eta, smooth=args.smooth,
                                progress=progress, max_seconds=args.max_seconds)
    finally:
        step_bar.close()


def _file_summary(info: dict, written: list[str]) -> dict:
    """The ``generate.json`` entry of one file."""
    return {
        "outputs": written, "frames": info["num_frames"], "seconds": round(info["audio_seconds"], 3),
        "transcript": info["transcript"], "windows": len(info["windows"]),
        "seams": {k: (round(v, 5) if isinstance(v, float) else v) for k, v in info["seams"].items()},
        "timings": {k: round(v, 3) for k, v in info["timings"].items()}, "rtf": round(info["rtf"], 3),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _report_line(audio: Path, info: dict, written: list[str]) -> str:
    t = info["timings"]
    return (f"{audio.name}: {info['num_frames']} frames ({info['audio_seconds']:.1f} s) in {t['total']:.1f} s "
            f"(features {t['features']:.1f}, condition+keyframes {t['condition']:.1f}, "
            f"diffusion {t['diffusion']:.1f}) -> {', '.join(written)}")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ksdiff.utils.io import check_writable_dir, write_json

    audios, texts = _inputs(args)
    emotion = _parse_emotion(args.emotion, args.emotion_curve)
    exports = set(args.export or [])
    out_dir = check_writable_dir(args.out)  # before any compute: a refused write is found now, not at the end
    if args.threads:
        torch.set_num_threads(args.threads)
    animator = _load_animator(args, exports)
    args.reference, args.reference_wave = load_reference_args(animator, args.style_from, args.reference_audio)
    render_video = _renderer(args.render)
    given = {"sampler": args.sampler, "steps": args.steps, "guidance": args.guidance, "smooth": args.smooth}
    used = {k: (animator.defaults[k] if v is None else v) for k, v in given.items()}
    ref_audio = None if args.reference_wave is None else args.reference_audio or args.style_from
    used["style"] = animator.resolve_style(_style(args.style), args.reference)
    summary: dict = {"checkpoint": str(animator.path), "spec": animator.spec.name, "fps": animator.fps,
                     **used, "seed": args.seed, "style_from": args.style_from, "reference_audio": ref_audio,
                     "files": {}}
    files_bar = tqdm(list(zip(audios, texts)), desc="generate", unit="file", disable=True if len(audios) < 2 else None)
    for audio, text in files_bar:
        files_bar.set_postfix_str(audio.name)
        motion = _animate(animator, audio, text, args, emotion)
        written = _write_outputs(out_dir, audio, motion, exports, render_video, args.face)
        summary["files"][str(audio)] = _file_summary(animator.last_info, written)
        tqdm.write(_report_line(audio, animator.last_info, written))
    write_json(out_dir / "generate.json", summary)
    return 0


def load_reference_args(animator, path: str | None, audio: str | None) -> tuple:
    """The ``--style-from`` clip (motion, its own audio or None), loaded and checked against the model before any
    generation (:meth:`ksdiff.generate.Animator.load_reference`); (None, None) without one."""
    if path is None:
        if audio is not None:
            raise KsdiffError("--reference-audio goes with --style-from")
        return None, None
    return animator.load_reference(path, audio)


def _peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, in MiB (None where the OS does not tell)."""
    try:
        import resource
        import sys

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return round(r / (1024 * 1024) if sys.platform == "darwin" else r / 1024, 1)
    except (ImportError, OSError):
        return None


def _write_outputs(out_dir: Path, audio: Path, motion, exports: set[str], render_video, face: str) -> list[str]:
    """Write every output of one file into a staging folder, then move them into ``out_dir`` together.

    An error while writing (a refused write, motion an exporter refuses, ...) names the output in ``out_dir``,
    never the staging path, and leaves none of this file's outputs behind.
    """
    from ksdiff.utils.io import is_refused_write, make_dir, refused_write_as, write_error

    writers = _writers(audio, motion, exports, render_video, face)
    make_dir(out_dir)
    with refused_write_as(out_dir / writers[0][0]):
        stage = Path(tempfile.mkdtemp(prefix=f".{audio.stem}.", suffix=".tmp", dir=out_dir))
    moved: list[Path] = []
    current = writers[0][0]
    try:
        for current, write in writers:
            write(stage / current)
        for current, _ in writers:
            os.replace(stage / current, out_dir / current)
            moved.append(out_dir / current)
        return [n for n, _ in writers]
    except BaseException as e:
        for p in moved:  # all of this file's outputs or none
            p.unlink(missing_ok=True)
        if isinstance(e, KsdiffError) and e.path is not None and stage in Path(e.path).parents:
            raise KsdiffError(e.problem, out_dir / current) from None
        if is_refused_write(e, stage, out_dir / current):
            raise write_error(e, out_dir / current) from None  # type: ignore[arg-type]
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _writers(audio: Path, motion, exports: set[str], render_video, face: str) -> list[tuple[str, Callable]]:
    """(output name, write(path)) for every output of one file: the motion first, then the exports."""
    stem = audio.stem
    out: list[tuple[str, Callable]] = [(f"{stem}.npz", motion.save)]
    if "livelink" in exports:
        from ksdiff.export.livelink import write_livelink_csv

        out.append((f"{stem}.csv", lambda p: write_livelink_csv(motion, p)))
    if "flame" in exports:
        from ksdiff.export.deca import write_deca_npz

        out.append((f"{stem}_deca.npz", lambda p: write_deca_npz(motion, p)))
    if render_video is not None:
        out.append((f"{stem}.mp4", lambda p: render_video(motion, audio, p, face=face)))
    return out
