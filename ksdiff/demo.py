"""``make demo``: speech in, animated face out, with nothing to download or train.

1. speak a sentence with the neural Piper voice en_US-joe-medium (``ksdiff[voice]``, installed by ``make``), or with
   espeak-ng when that extra is missing (made here, at run time; nothing copied from anywhere),
2. generate face motion with the shipped default model (``ksdiff/assets/default.safetensors``),
3. render it (ICT-FaceKit head when its asset is found, the 2D schematic face otherwise) with the audio muxed,
4. print where the mp4 is and how long each stage took.

Usage: ``python -m ksdiff.demo [--out DIR] [--text "..."] [--audio FILE] [--steps N] [--face auto|ict|schematic]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ksdiff.errors import KsdiffError

DEMO_TEXT = ("Hello! This face is driven by my voice. Keyframes anchor the head, "
             "and the lips follow every word, from a big open ah to a closed mm.")


def make_speech(path: Path, text: str = DEMO_TEXT) -> tuple[float, str]:
    """Speak ``text`` into a 16 kHz wav with the neural voice when installed, else espeak-ng; returns (seconds,
    the voice used)."""
    from ksdiff.audio.decode import write_wav
    from ksdiff.data.synth.tts import PIPER_DEFAULT_VOICE, piper_available, synthesize_piper

    if piper_available():
        utt, voice = synthesize_piper(text, PIPER_DEFAULT_VOICE, rate=160, seed=0), f"Piper {PIPER_DEFAULT_VOICE}"
    else:
        from ksdiff.data.synth.tts import synthesize

        utt, voice = synthesize(text, voice="en-us+m3", rate=160, pitch=45, pitch_range=60, seed=0), "espeak-ng"
    write_wav(path, utt.wave, utt.sample_rate)
    return utt.duration, voice


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ksdiff.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    ap.add_argument("--text", default=DEMO_TEXT, help="sentence to speak (the Piper voice, else espeak-ng)")
    ap.add_argument("--audio", default=None, help="use this speech file instead of synthesising one")
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped default model)")
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the model's)")
    ap.add_argument("--face", default="auto", help="auto | ict | schematic")
    ap.add_argument("--size", type=int, default=384,
                    help="video height and width in pixels (default 384: the ICT head at 512² takes 15–30 %% "
                         "longer to render on a 2-core CPU)")
    args = ap.parse_args(argv)
    try:
        return _run(args)
    except KsdiffError as e:
        print(f"ksdiff demo: {e}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from ksdiff.export.livelink import write_livelink_csv
    from ksdiff.generate import load_model
    from ksdiff.render import render_video
    from ksdiff.render.visibility import prepare as prepare_head

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    if args.audio:
        audio = Path(args.audio)
        text, voice = None, "given"
    else:
        audio = out / "speech.wav"
        _, voice = make_speech(audio, args.text)
        text = args.text
    stages[f"speech ({voice})"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    animator = load_model(args.checkpoint)
    stages["load model"] = time.perf_counter() - t0
    kw = {"steps": args.steps} if args.steps else {}
    motion = animator.animate(audio, text=text, seed=0, **kw)
    info = animator.last_info
    for k, v in info["timings"].items():
        if k != "total":
            stages[f"generate: {k}"] = v
    motion.save(out / "motion.npz")
    if motion.spec == "arkit":
        write_livelink_csv(motion, out / "motion_livelink.csv")

    t0 = time.perf_counter()
    if prepare_head(args.face, args.size):  # one-time, cached on disk: not part of a render
        stages["head: visible triangles (first run)"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    r = render_video(motion, audio, out / "demo.mp4", face=args.face, size=args.size)
    t_render = time.perf_counter() - t0
    stages[f"render ({r['face']}, {r['backend']}, {args.size}²)"] = t_render

    seconds = motion.duration
    gen = info["timings"]["total"]
    print()
    print(f"{'stage':<34}{'seconds':>9}")
    for k, v in stages.items():
        print(f"{k:<34}{v:>9.2f}")
    print(f"{'audio duration':<34}{seconds:>9.2f}")
    every = sum(stages.values())
    print(f"generation real-time factor {gen / seconds:.2f} (compute s per audio s); "
          f"end to end incl. rendering {(gen + t_render) / seconds:.2f}; "
          f"every stage above {every / seconds:.2f}")
    print(f"\nmotion: {out / 'motion.npz'}" + (f"  (Live Link Face CSV: {out / 'motion_livelink.csv'})"
                                                 if motion.spec == "arkit" else ""))
    print(f"video:  {(out / 'demo.mp4').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
