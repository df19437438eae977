"""The ``ksdiff`` command line. Thin: parse, call the API, print.

Each subcommand lives in its own module ``ksdiff/cli/cmd_<name>.py`` defining::

    NAME = "dataset"                 # the subcommand
    HELP = "one line for ksdiff --help"
    def add_arguments(parser): ...   # argparse arguments (sub-subcommands allowed)
    def run(args) -> int | None: ... # exit code (None = 0)

Modules are discovered automatically, so adding a command never touches this file. A :class:`KsdiffError`
is printed as one line ``ksdiff: <file>: <problem>`` with exit code 2; so is, as a safety net, an OSError that
refuses a write and names its file (ENOSPC, EROFS, EACCES, EISDIR, ENOTDIR, ...: ``ksdiff.utils.io.WRITE_ERRORS``)
which no command turned into a :class:`KsdiffError` itself. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ksdiff import __version__
from ksdiff.errors import KsdiffError


def _command_modules() -> list:
    mods = []
    pkg = sys.modules[__name__]
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            mods.append(importlib.import_module(f"{__name__}.{info.name}"))
    return sorted(mods, key=lambda m: getattr(m, "ORDER", 50))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ksdiff",
        description="Speech-driven 3D facial animation with KSDiff (keyframe-augmented dual-path diffusion).",
    )
    parser.add_argument("--version", action="version", version=f"ksdiff {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


#: options whose value may start with a minus sign ("--emotion -1,0"): argparse would read it as an option
SIGNED_VALUE_OPTIONS = ("--emotion",)


def _join_signed_values(argv: list[str]) -> list[str]:
    """``--emotion -0.5,0.2`` -> ``--emotion=-0.5,0.2`` (argparse only takes a plain negative number as a value)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if a in SIGNED_VALUE_OPTIONS and len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] == "."):
            out.append(f"{a}={nxt}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_join_signed_values(list(sys.argv[1:] if argv is None else argv)))
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        code = args._run(args)
    except KsdiffError as e:
        print(f"ksdiff: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("ksdiff: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        line = _refused_write_line(e)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return KsdiffError.exit_code
    return int(code or 0)


def _refused_write_line(e: OSError) -> str | None:
    """The safety net for a file-system refusal no command turned into a :class:`KsdiffError` itself: an OSError
    naming a file with a write-refusal errno (ENOSPC, EROFS, EACCES, EISDIR, ENOTDIR, ...) becomes the one-line
    form; anything else stays a bug with its traceback."""
    from ksdiff.utils.io import WRITE_ERRORS

    if e.errno not in WRITE_ERRORS or e.filename is None:
        return None
    name = e.filename2 if e.filename2 is not None else e.filename
    return f"ksdiff: {name}: {WRITE_ERRORS[e.errno]} ({e.strerror})"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
