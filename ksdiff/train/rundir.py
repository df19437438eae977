"""The run folder of ``ksdiff train --out RUN``: what may be in it before a run starts, and what ``--force`` clears.

A new run writes into an empty or missing folder, or into the folder of a run that stopped before its first save
(only ``config.yaml``, ``metrics.jsonl``, ``tb/``, ``ksdiff ablate``'s ``variant.json`` and leftover temporaries:
nothing to resume, so it starts over).
Anything else is refused in one line before any data is loaded: a file instead of a folder, a run with a saved
training state (``--resume`` continues it), or files that are not this kind of run's, such as a
``model.safetensors`` without the run's training state or somebody's notes. ``--force`` starts a new run there
anyway: the previous run's own files are deleted first (so that nothing of it mixes with the new one); files that
are not a run's are left alone.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from ksdiff.errors import KsdiffError
from ksdiff.train import checkpoint as ckpt

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
#: The files a run writes (besides ``tb/``).
RUN_FILES = (CONFIG_FILE, METRICS_FILE, ckpt.MODEL_FILE, ckpt.LAST_FILE, ckpt.STATE_FILE, ckpt.STATE_SIDECAR)
#: Files ksdiff writes beside a run it starts itself: ``ksdiff ablate``'s marker of a variant's settings, written
#: into the variant's folder before its run starts.
COMPANION_FILES = ("variant.json",)
#: Files that exist only once a run has saved (its checkpoints and training state).
SAVED_FILES = (ckpt.MODEL_FILE, ckpt.LAST_FILE, ckpt.STATE_FILE, ckpt.STATE_SIDECAR)
_RUN_SECTIONS = {"data", "audio", "model", "train", "generation"}


def _is_temporary(name: str) -> bool:
    """A temporary of :func:`ksdiff.utils.io.atomic_path` left by a killed write (``.<stem>.<random>.tmp<sfx>``)."""
    return name.startswith(".") and ".tmp" in name


def _is_run_config(path: Path) -> bool:
    """``config.yaml`` as ``ksdiff train`` writes it: a mapping of the run sections."""
    import yaml

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(d, dict) and bool(d) and set(d) <= _RUN_SECTIONS


def _foreign(run_dir: Path) -> list[str]:
    """Entries of ``run_dir`` that are not a run's (sorted names)."""
    out = []
    for e in run_dir.iterdir():
        if _is_temporary(e.name) or (e.name == TB_DIR and e.is_dir()):
            continue
        if e.name in RUN_FILES + COMPANION_FILES and e.is_file() and (e.name != CONFIG_FILE or _is_run_config(e)):
            continue
        out.append(e.name)
    return sorted(out)


def check_out_dir(run_dir: Path, resume: bool = False, force: bool = False) -> None:
    """Refuse (one-line :class:`KsdiffError`) an ``--out`` that a new run (or a resume) must not write into.

    Args:
        run_dir: the ``--out`` folder.
        resume: the run is being resumed: the folder must hold its training state.
        force: a new run may replace what is there (see :func:`clear_run`; the check passes).
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise KsdiffError("--out names a file; give the run's folder (a new or empty folder for a new run)", run_dir)
    if resume:
        if force:
            raise KsdiffError("--resume continues the run in --out and --force starts it over; give one of them")
        if not (run_dir / CONFIG_FILE).is_file():
            raise KsdiffError("no config.yaml in the run folder; nothing to resume", run_dir)
        if not (run_dir / ckpt.STATE_SIDECAR).is_file():
            raise ckpt.no_training_state(run_dir)
        return
    if force or not run_dir.is_dir():
        return
    if (run_dir / ckpt.STATE_SIDECAR).exists():
        raise KsdiffError("run folder already holds a training run; use --resume to continue it, --force to start "
                          "it over, or choose another --out", run_dir)
    foreign = _foreign(run_dir)
    saved = [n for n in SAVED_FILES if (run_dir / n).exists()]
    if foreign or saved:
        names = (foreign + saved)[:3]
        more = f" and {len(foreign) + len(saved) - 3} more" if len(foreign) + len(saved) > 3 else ""
        raise KsdiffError(f"--out holds files that are not this run's ({', '.join(names)}{more}); choose a new or "
                          "empty folder, or pass --force to train into it anyway", run_dir)


def clear_run(run_dir: Path) -> None:
    """Delete a previous run's own files from ``run_dir`` (``--force``): its checkpoints, training state, config,
    metrics, TensorBoard event files and leftover temporaries. Other files stay."""
    if not run_dir.is_dir():
        return
    victims = [run_dir / n for n in RUN_FILES] + [e for e in run_dir.iterdir() if _is_temporary(e.name)]
    if (run_dir / TB_DIR).is_dir():
        victims += list((run_dir / TB_DIR).glob("events.out.tfevents.*"))
    # the sidecar first: a folder left half-cleared by a crash then no longer looks resumable
    victims.sort(key=lambda p: p.name != ckpt.STATE_SIDECAR)
    for p in victims:
        if p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
