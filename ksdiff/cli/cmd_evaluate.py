"""ksdiff evaluate (--checkpoint C [--vs C2] | --pred DIR | --baseline KIND) --data DATASET --split test --out REPORT
ksdiff evaluate --checkpoint C [--vs C2] --speech DIR --out REPORT   (lip sync on audio alone, no face truth)"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ksdiff.errors import KsdiffError

NAME = "evaluate"
HELP = "score a checkpoint, a baseline or another method's motion on a dataset split, or lip sync on any speech"
DESCRIPTION = (HELP + ". With --data: against the dataset's face truth (LVE, FDD, articulation, ...). With --speech "
               "DIR: on a folder of recordings without face truth (jaw and lip-opening envelope r, capture ratio, "
               "/p b m/ closure on English). Either way --vs scores a second checkpoint on the same clips and "
               "seeds and compares the two clip by clip.")
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="trained model (.safetensors; 'default': the shipped model)")
    src.add_argument("--pred", help="folder of predictions: PRED/<clip>/motion.npz or PRED/<clip>.npz")
    src.add_argument("--baseline", choices=["static", "energy-jaw", "reference"],
                     help="fit a baseline on the train split (reference: the mean pose of each clip's --reference)")
    truth = p.add_mutually_exclusive_group(required=True)
    truth.add_argument("--data", help="dataset with ground truth")
    truth.add_argument("--speech", metavar="PATH",
                       help="a speech recording or a folder of them (any format; transcripts: same-stem .txt or "
                            "transcripts.tsv, else Whisper's): lip sync on audio alone, checkpoint only")
    p.add_argument("--vs", metavar="CHECKPOINT",
                   help="a second checkpoint ('default': the shipped model), scored on the same clips, seeds and "
                        "options as --checkpoint and compared clip by clip (B − A, 95 %% bootstrap interval); "
                        "--out then holds a report per model and comparison.md")
    p.add_argument("--not-english", default="", metavar="A.wav,B.wav",
                   help="with --speech: recordings in another language (no /p b m/ closure: the aligner is English)")
    p.add_argument("--limit", type=int, default=0, help="with --speech: the first N recordings in name order")
    p.add_argument("--split", default="test", help="train, val, test, or all (default test)")
    p.add_argument("--out", required=True, help="report folder (metrics.json, report.md, plots/)")
    p.add_argument("--seeds", type=int, default=1, help="samples per clip (seeds 0..N-1) for sample diversity")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (checkpoint only)")
    p.add_argument("--sampler", default=None, help="ddim | ddpm | dpmpp (checkpoint only)")
    p.add_argument("--window", type=float, default=None,
                   help="generation window in seconds (checkpoint only; 0 = one pass over the whole clip)")
    p.add_argument("--style", default=None, help="style token for a model trained with data.style (checkpoint only)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (checkpoint only; default: the model's own, 1.25 for the shipped "
                        "model; 1 = off)")
    p.add_argument("--smooth", type=float, default=None, metavar="SIGMA",
                   help="σ in frames of the Gaussian on the mouth channels (checkpoint only; default: the model's "
                        "own, 0.75 for the shipped model; 0 = off)")
    p.add_argument("--reference", choices=("none", "other", "self"), default="none",
                   help="reference style protocol (models with a style encoder): other = the person's other clip "
                        "in the dataset, else as self; self = the clip's first --reference-seconds, left out of "
                        "the score")
    p.add_argument("--no-reference-input", action="store_true",
                   help="checkpoint: generate without the reference but score on the frames --reference leaves "
                        "(the same model without a reference, comparable frame for frame)")
    p.add_argument("--no-anchor", action="store_true",
                   help="checkpoint with --reference: the style encoder alone, without moving the face's typical "
                        "pose to the person's (the reference's, mixed with the style's training median face)")
    p.add_argument("--no-reference-audio", action="store_true",
                   help="checkpoint with --reference: the reference's motion alone, without its audio (as a Live "
                        "Link CSV comes)")
    p.add_argument("--reference-weight", type=float, default=None,
                   help="checkpoint with --reference: weight of the reference against the style token's typical face "
                        "(default 0.5)")
    p.add_argument("--reference-seconds", type=float, default=4.0, help="length of a 'self' reference (default 4)")
    p.add_argument("--people", metavar="JSON", default=None,
                   help='{"person": [clip ids]}: who is who for --reference other (default: meta.json person, '
                        "else speaker)")
    p.add_argument("--align-lengths", action="store_true",
                   help="pad (repeating the last frame) or trim predictions whose length differs from the truth's by "
                        "more than 2 frames + 1 %% (refused otherwise); the report lists every clip fitted so")
    p.add_argument("--name", default=None, help="method name in the report")
    p.add_argument("--no-plots", action="store_true")


def run(args: argparse.Namespace) -> int:
    from ksdiff import evaluate as E
    from ksdiff.data.folds import read_groups
    from ksdiff.utils.io import check_writable_dir

    if args.speech:
        return _run_speech(args)
    if args.not_english or args.limit:
        raise KsdiffError("--not-english and --limit go with --speech DIR (lip sync on audio alone)")
    if args.vs and not args.checkpoint:
        raise KsdiffError("--vs compares two checkpoints: give the first with --checkpoint")
    out = check_writable_dir(args.out)  # before any compute
    protocol = E.ReferenceProtocol(args.reference, args.reference_seconds,
                                   None if args.people is None else read_groups(args.people))
    if args.vs:
        return _run_pair(args, protocol, out)
    if args.checkpoint:
        pred, name = _checkpoint_predictor(args, args.checkpoint, protocol), "ksdiff"
    elif args.pred:
        pred, name = protocol.attach(E.pred_dataset_predictor(args.pred)), "pred"
    elif args.baseline == "reference":
        pred, name = E.reference_mean_predictor(protocol), "reference"
    else:  # scored on the frames a model under the same protocol is scored on
        pred, name = protocol.attach(E.baseline_predictor(args.baseline, args.data)), args.baseline
    res = E.evaluate(args.data, pred, split=args.split, seeds=tuple(range(max(1, args.seeds))), out=args.out,
                     name=args.name or name, plots=not args.no_plots, align_lengths=args.align_lengths)
    print(E.markdown_table({res.info["name"]: res}))
    print(f"wrote {args.out}/metrics.json and report.md")
    return 0


def _checkpoint_predictor(args: argparse.Namespace, checkpoint: str, protocol):
    """A checkpoint's predictor with the generation options of the command line."""
    from ksdiff import evaluate as E

    kw = {} if args.window is None else {"window_s": args.window}
    if args.style is not None:
        kw["style"] = args.style
    kw.update({k: v for k, v in (("guidance", args.guidance), ("smooth", args.smooth)) if v is not None})
    if args.reference != "none":
        kw.update(protocol=protocol, use_reference=not args.no_reference_input, anchor=not args.no_anchor,
                  use_reference_audio=not args.no_reference_audio, reference_weight=args.reference_weight)
    return E.checkpoint_predictor(_checkpoint(checkpoint), steps=args.steps, sampler=args.sampler, **kw)


def _side_names(args: argparse.Namespace) -> list[str]:
    """The report names of --checkpoint and --vs: --name or the file stems ("A", "B" when they are the same)."""
    names = [args.name or Path(args.checkpoint).stem, Path(args.vs).stem]
    return ["A", "B"] if names[0] == names[1] else names


def _run_pair(args: argparse.Namespace, protocol, out: Path) -> int:
    """--checkpoint A --vs B --data D: both scored on the same clips, seeds and protocol (OUT/<name>/ each), then
    paired clip by clip (OUT/comparison.json and .md: B − A with a 95 % bootstrap interval over the clips)."""
    from ksdiff import evaluate as E
    from ksdiff.utils.io import write_json, write_text
    from ksdiff.utils.stats import comparison_markdown

    names = _side_names(args)
    results = [E.evaluate(args.data, _checkpoint_predictor(args, ck, protocol), split=args.split,
                          seeds=tuple(range(max(1, args.seeds))), out=out / name, name=name,
                          plots=not args.no_plots, align_lengths=args.align_lengths)
               for ck, name in zip((args.checkpoint, args.vs), names)]
    rows = E.compare_results(*results)
    table = comparison_markdown(rows, *names, directions=dict(E.TABLE_METRICS))
    write_json(out / "comparison.json", {"data": str(args.data), "split": args.split, "a": names[0],
                                         "b": names[1], "comparison": rows})
    note = "Per clip, the first seed's sample (further seeds only enter sample diversity)."
    write_text(out / "comparison.md", f"# {names[1]} − {names[0]}: {args.data}, split {args.split}, paired over "
                                      f"clips\n\n{note}\n\n{table}\n")
    print(E.markdown_table(dict(zip(names, results))))
    print(table)
    print(f"wrote {out}/{names[0]}/, {out}/{names[1]}/ and {out}/comparison.md")
    return 0


def _checkpoint(name: str | None) -> str | None:
    """``default`` -> None (the shipped model), else the path as given."""
    return None if name == "default" else name


def _run_speech(args: argparse.Namespace) -> int:
    """Lip sync on audio alone over ``--speech DIR``: one checkpoint's report, or two side by side (``--vs``)."""
    from ksdiff.evaluate_speech import compare_speech, evaluate_speech, report_markdown
    from ksdiff.utils.io import check_writable_dir, write_text
    from ksdiff.utils.stats import comparison_markdown

    if not args.checkpoint:
        raise KsdiffError("--speech scores a model's own motion: give --checkpoint (a file, or 'default')")
    unused = [o for o, v in (("--split", args.split != "test"), ("--steps", args.steps), ("--sampler", args.sampler),
                             ("--window", args.window), ("--reference", args.reference != "none"),
                             ("--align-lengths", args.align_lengths)) if v]
    if unused:
        raise KsdiffError(f"{', '.join(unused)} do not apply to --speech (the model's generation defaults are used)")
    out = check_writable_dir(args.out)
    names = _side_names(args) if args.vs else [args.name or Path(args.checkpoint).stem]
    kw = dict(seeds=range(max(1, args.seeds)), not_english=tuple(filter(None, args.not_english.split(","))),
              phones_dir=out / "phones", limit=args.limit, style=args.style, guidance=args.guidance,
              smooth=args.smooth)
    reports = [evaluate_speech(_checkpoint(ck), args.speech, **kw, progress=lambda n, t=tag: print(f"{t}: {n}"))
               for ck, tag in zip([args.checkpoint] + ([args.vs] if args.vs else []), names)]
    text = "\n\n".join(f"## {n}: {r['checkpoint']}\n\n{report_markdown(r)}" for n, r in zip(names, reports))
    doc: dict = {"speech": str(args.speech), "reports": dict(zip(names, reports))}
    if args.vs:
        doc["comparison"] = compare_speech(*reports)
        table = comparison_markdown(doc["comparison"], *names)
        text = f"## {names[1]} − {names[0]}, paired over clips\n\n{table}\n\n{text}"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "metrics.json", json.dumps(doc, indent=1))
    write_text(out / "report.md", f"# Lip sync on audio alone: {args.speech}\n\n{text}\n")
    print(table if args.vs else report_markdown(reports[0]))
    print(f"wrote {out}/metrics.json and report.md")
    return 0
