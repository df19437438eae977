"""ksdiff synth --out DATASET --minutes M --seed S [--voices ...] [--fps 25] [--force]
ksdiff synth --from-speech DIR... --out DATASET: real recordings with procedural targets ("pseudo" clips)"""

from __future__ import annotations

import argparse
import json
import time

NAME = "synth"
HELP = "generate a synthetic talking-face corpus (espeak-ng speech, exact phone timings, ARKit motion)"
DESCRIPTION = (HELP + ". Needs the optional espeak-ng extra: pip install 'ksdiff[phonemes]'. The same seed gives "
               "byte-identical files. Every parameter of the generative model is documented in docs/SYNTH.md.")
ORDER = 15


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="dataset folder to write (arkit spec)")
    p.add_argument("--minutes", type=float, default=None,
                   help="minutes of audio to generate (default 2; with --from-speech: a cap, default none)")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    p.add_argument("--voices", nargs="+", metavar="VOICE",
                   help="speakers to use: names of the built-in styles (us_m1 us_f3 gb_m3 gb_f2 rp_m1 us_m7 sc_f4 "
                        "us_f5) or any espeak-ng voice such as en-us+m4 (default: all built-in styles)")
    p.add_argument("--from-speech", nargs="+", metavar="DIR",
                   help="instead of synthesising speech: real recordings (files or folders; transcripts from a "
                        "same-stem .txt, the folder's transcripts.tsv, else Whisper) forced-aligned, with the corpus's "
                        "motion model as targets (docs/SYNTH.md, \"Pseudo clips\"); --minutes caps the total")
    p.add_argument("--fps", type=float, default=25.0, help="motion frame rate (default 25)")
    p.add_argument("--emotion", action="store_true",
                   help="each clip draws a valence and arousal in [-1, 1] and shows them (smile, brows, eyes, "
                        "articulation energy); meta.json records them as the clip's exact emotion label")
    p.add_argument("--visemes", choices=("hand", "calibrated"), default="hand",
                   help="viseme target table: hand (set by eye; the shipped model's corpus, default) or calibrated "
                        "(fitted to tracked real speakers, amplitudes of a real iPhone capture; docs/SYNTH.md)")
    p.add_argument("--force", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("--report", action="store_true",
                   help="after writing, print the corpus checks (bilabial closure, jaw-envelope r, band energy)")
    p.add_argument("--plot", metavar="PNG", help="also plot the first clip's main channels to this PNG")
    p.add_argument("--quiet", action="store_true", help="no per-clip progress lines")


def run(args: argparse.Namespace) -> int:
    from ksdiff.data.synth.config import SynthConfig
    from ksdiff.data.synth.corpus import build_corpus, print_progress

    if args.from_speech:
        cfg = SynthConfig(minutes=args.minutes or 1.0, seed=args.seed, fps=args.fps, visemes=args.visemes,
                          emotion=args.emotion)
        return _pseudo(args, cfg)
    cfg = SynthConfig(minutes=2.0 if args.minutes is None else args.minutes, seed=args.seed,
                      fps=args.fps, visemes=args.visemes, emotion=args.emotion).select_voices(args.voices)
    t0 = time.perf_counter()
    summary = build_corpus(args.out, cfg, force=args.force, progress=None if args.quiet else print_progress)
    took = time.perf_counter() - t0
    print(f"{args.out}: {summary['clips']} clips, {summary['seconds'] / 60:.2f} min of audio, "
          f"{len(summary['speakers'])} speakers ({', '.join(summary['speakers'])}) in {took:.1f} s")
    if args.report:
        from ksdiff.data.synth.checks import corpus_report

        print(json.dumps(corpus_report(args.out), indent=2))
    if args.plot:
        from ksdiff.data.synth.plot import plot_clip

        print(f"plot: {plot_clip(args.out, None, args.plot)}")
    return 0


def _pseudo(args: argparse.Namespace, cfg) -> int:
    import sys

    from ksdiff.data.synth.corpus import print_progress
    from ksdiff.data.synth.pseudo import build_pseudo_corpus

    if args.voices:
        from ksdiff.errors import KsdiffError

        raise KsdiffError("--voices does not apply to --from-speech (each speaker gets a style of its own)")
    t0 = time.perf_counter()
    summary = build_pseudo_corpus(args.from_speech, args.out, cfg, force=args.force,
                                  max_minutes=args.minutes,
                                  progress=None if args.quiet else print_progress,
                                  skipped=lambda p, why: print(f"  skipped {p}: {why}", file=sys.stderr))
    took = time.perf_counter() - t0
    print(f"{args.out}: {summary['clips']} pseudo clips, {summary['seconds'] / 60:.2f} min of real speech, "
          f"{len(summary['speakers'])} speakers, {summary['skipped']} recordings skipped, in {took:.1f} s")
    if args.report:
        from ksdiff.data.synth.checks import corpus_report

        print(json.dumps(corpus_report(args.out), indent=2))
    return 0
