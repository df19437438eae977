"""ksdiff ablate --config C --data D [--data D2] --steps N [--variants all|no_split,...] --out DIR"""

from __future__ import annotations

import argparse

NAME = "ablate"
HELP = "train and evaluate the paper's ablation variants with one budget and seed; write one table"
DESCRIPTION = (
    "Ablations (paper Table 3): full, no_split, no_dual, no_kel, no_prosody, no_text, enc_only (plus jaw_head on "
    "flame data; diffspeaker on request), each trained with the same steps and seed into OUT/<variant>/, evaluated on "
    "the evaluation split, and tabulated in OUT/ablation.md and OUT/ablation.json. Run the same command again to "
    "resume: finished variants are skipped, an interrupted one resumes at its last checkpoint.")
ORDER = 65


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=None, metavar="C",
                   help="base config file or shipped name (default: default); repeat to overlay")
    p.add_argument("--data", action="append", required=True, metavar="DATASET",
                   help="dataset folder (repeat for several of the same face spec)")
    p.add_argument("--steps", type=int, required=True, help="training steps of every variant")
    p.add_argument("--variants", default="all",
                   help="all (the paper's Table 3 rows) or a comma-separated list of: full, no_split, no_dual, "
                        "no_kel, no_prosody, no_text, enc_only, jaw_head (flame), diffspeaker")
    p.add_argument("--out", required=True, metavar="DIR", help="ablation folder")
    p.add_argument("--eval-split", default="test", help="split to evaluate on (default test)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every variant (default 0)")
    p.add_argument("--eval-steps", type=int, default=None, help="sampler steps for evaluation (default: generator's)")
    p.add_argument("--eval-sampler", default=None, help="sampler for evaluation: dpmpp | ddim | ddpm")
    p.add_argument("--eval-seeds", type=int, default=1, help="samples per clip (>1 adds sample diversity)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every variant")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ksdiff.ablate import run_ablation

    doc = run_ablation(args.config or ["default"], args.data, args.steps, args.variants, args.out,
                       eval_split=args.eval_split, seed=args.seed, eval_steps=args.eval_steps,
                       eval_sampler=args.eval_sampler, eval_seeds=args.eval_seeds, overrides=args.overrides,
                       device=args.device, progress=not args.quiet)
    print()
    print((Path(args.out) / "ablation.md").read_text(encoding="utf-8"))
    print(f"wrote {Path(args.out) / 'ablation.md'} and ablation.json ({len(doc['variants'])} variants)")
    return 0
