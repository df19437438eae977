"""ksdiff serve: the web page."""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = "a web page: upload or record speech, get the animated face video and motion files"
ORDER = 90


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=None, help="model (default: the shipped default model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--steps", type=int, default=None, help="default denoising steps shown on the page")


def run(args: argparse.Namespace) -> int:
    from ksdiff.serve import serve

    serve(args.checkpoint, host=args.host, port=args.port, steps=args.steps)
    return 0
