"""ksdiff evaluate (--checkpoint C | --pred DIR | --baseline KIND) --data DATASET --split test --out REPORT"""

from __future__ import annotations

import argparse

NAME = "evaluate"
HELP = "score a checkpoint, a baseline or another method's motion on a dataset split"
ORDER = 60


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="trained model (.safetensors)")
    src.add_argument("--pred", help="folder of predictions: PRED/<clip>/motion.npz or PRED/<clip>.npz")
    src.add_argument("--baseline", choices=["static", "energy-jaw", "reference"],
                     help="fit a baseline on the train split (reference: the mean pose of each clip's --reference)")
    p.add_argument("--data", required=True, help="dataset with ground truth")
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

    check_writable_dir(args.out)  # before any compute
    protocol = E.ReferenceProtocol(args.reference, args.reference_seconds,
                                   None if args.people is None else read_groups(args.people))
    if args.checkpoint:
        kw = {} if args.window is None else {"window_s": args.window}
        if args.style is not None:
            kw["style"] = args.style
        kw.update({k: v for k, v in (("guidance", args.guidance), ("smooth", args.smooth)) if v is not None})
        if args.reference != "none":
            kw.update(protocol=protocol, use_reference=not args.no_reference_input, anchor=not args.no_anchor,
                      use_reference_audio=not args.no_reference_audio, reference_weight=args.reference_weight)
        pred, name = E.checkpoint_predictor(args.checkpoint, steps=args.steps, sampler=args.sampler, **kw), "ksdiff"
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

