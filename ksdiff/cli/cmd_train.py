"""ksdiff train --config C --data DATASET [--data DATASET2 ...] --out RUN [--steps N] [--resume | --force]
[key=value ...]; ksdiff train --init CHECKPOINT --data DATASET ... --out RUN --steps N (fine-tune a trained model)"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "train a KSDiff model on one or more datasets (single process or under torchrun)"
DESCRIPTION = (
    "Train KSDiff. The run folder gets config.yaml, model.safetensors (EMA weights, everything needed for "
    "inference), last.safetensors + train_state.* (to --resume at the exact step), metrics.jsonl and tb/ "
    "(TensorBoard). The state is saved every train.save_every steps, every train.save_every_minutes, and on "
    "SIGTERM / Ctrl-C (after the current step). --init fine-tunes a trained model (the shipped default or any "
    "checkpoint) on your data: its weights, settings, style tokens and normalisation, a fresh optimizer, step 0. "
    "Several GPUs or CPU processes: "
    "torchrun --standalone --nproc_per_node N -m ksdiff train ...")
ORDER = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", action="append", default=None, metavar="C",
                   help="config file or shipped name (default, paper, ablations/no_kel, ...); repeat to overlay")
    p.add_argument("--data", action="append", default=None, metavar="DATASET",
                   help="dataset folder (repeat for several datasets of the same face spec)")
    p.add_argument("--out", required=True, metavar="RUN",
                   help="run folder: new or empty (a folder holding other files is refused unless --force)")
    p.add_argument("--steps", type=int, default=None, help="total training steps (train.steps)")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN at its last checkpoint (with RUN/config.yaml; key=value may change train.*)")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="fine-tune: start from this model's weights (a .safetensors, or 'default' for the shipped "
                        "model) with its model, audio, data and generation settings and a fresh optimizer at step 0; "
                        "key=value may change train.* and data.*, e.g. train.lr=1e-4")
    p.add_argument("--force", "--overwrite", action="store_true",
                   help="start a new run in RUN even if it holds one (its checkpoints, state and logs are deleted) "
                        "or other files (left alone)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=3e-4")
    _allow_intermixed(p)


def _allow_intermixed(p: argparse.ArgumentParser) -> None:
    """Let ``key=value`` overrides appear anywhere among the options (``--out R lr=.. --steps 5 x=..``):
    this subcommand's parser parses with ``parse_known_intermixed_args``."""
    plain = p.parse_known_args

    def parse_known_args(args=None, namespace=None):  # noqa: ANN001, ANN202
        p.parse_known_args = plain  # parse_known_intermixed_args calls parse_known_args itself
        try:
            return p.parse_known_intermixed_args(args, namespace)
        finally:
            p.parse_known_args = parse_known_args

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ksdiff.config import to_dict
    from ksdiff.errors import KsdiffError
    from ksdiff.train.config import load_run_config
    from ksdiff.train.loop import load_run_config_for, train

    overrides = list(args.overrides or [])
    if args.steps is not None:
        if args.steps < 1:
            raise KsdiffError(f"--steps must be at least 1, got {args.steps}")
        overrides.append(f"train.steps={args.steps}")
    if args.data:
        overrides.append("data.datasets=[" + ", ".join(_yaml_str(str(Path(d).resolve())) for d in args.data) + "]")
    if args.init and (args.resume or args.config):
        raise KsdiffError("--init starts a fine-tune from a checkpoint's own settings; it goes without "
                          f"{'--resume' if args.resume else '--config'} (change train.* or data.* with key=value)")
    if args.resume:
        if args.force:
            raise KsdiffError("--resume continues the run in --out and --force starts it over; give one of them")
        saved = load_run_config_for(args.out)
        cfg = load_run_config(None, overrides, base=saved)
        if args.config:  # allowed when it agrees with the run outside train.*
            fresh = load_run_config(args.config, overrides)
            a, b = to_dict(fresh), to_dict(cfg)
            diff = _first_difference({k: v for k, v in a.items() if k != "train"},
                                     {k: v for k, v in b.items() if k != "train"},
                                     ignore={"data.speakers", "model.denoiser.style_dim", "model.kel.pos_weight"})
            if diff:
                raise KsdiffError(f"--config sets {diff} differently from the run being resumed; resume without "
                                  "--config (key=value overrides of train.* are allowed)", args.out)
            cfg.train = fresh.train
    elif args.init:
        cfg = _init_config(args, overrides)
    else:
        cfg = load_run_config(args.config or ["default"], overrides)
    res = train(cfg, args.out, resume=args.resume, device=args.device, progress=not args.quiet, force=args.force)
    import os
    import signal

    if int(os.environ.get("RANK", "0")) == 0:
        last = f"loss {res.losses[-1]:.4f}" if res.losses else "no steps run"
        if res.interrupted:
            why = f" by {signal.Signals(res.signal).name}" if res.signal else ""
            print(f"stopped at step {res.step}{why} ({last}), training state saved; continue with: "
                  f"ksdiff train --out {args.out} --resume", flush=True)
        else:
            print(f"trained to step {res.step} ({last}); model: {Path(args.out) / 'model.safetensors'}")
    # Stopped by a signal: the state is saved, but the run is not finished (128 + signal, as shells report it).
    return 128 + res.signal if res.signal else 0


def _init_config(args: argparse.Namespace, overrides: list[str]):  # -> RunConfig
    """A fine-tune's config: the checkpoint's own, then ``key=value`` and ``--data``/``--steps``, with ``train.init``
    naming the checkpoint (``default``: the shipped model)."""
    from pathlib import Path

    from ksdiff.train.checkpoint import load_checkpoint_config
    from ksdiff.train.config import load_run_config

    if args.init == "default":
        from ksdiff.generate import DEFAULT_CHECKPOINT

        path = DEFAULT_CHECKPOINT
    else:
        path = Path(args.init).resolve()
    config, _ = load_checkpoint_config(path)  # the weights are read once, by the training (train.init)
    return load_run_config(None, overrides + ["train.init=" + _yaml_str(str(path))], base=config)


def _yaml_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _first_difference(a, b, ignore: set[str], where: str = "") -> str | None:
    if where in ignore:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), ignore, f"{where}.{k}" if where else k)
            if d:
                return d
        return None
    return None if a == b else where
