"""Change what a checkpoint generates with by default — its config's ``generation`` section (``sampler``, ``steps``,
``guidance``, ``encoder_compute``, ``smooth``) and ``data.default_style`` / ``data.reference_style`` — without
touching its weights (the settings a caller leaves out; see ``ksdiff.generate.generation_defaults``). The new file
is checked by loading it for generation before it replaces OUT (written atomically; OUT may be CHECKPOINT).

Usage: python scripts/set_generation.py CHECKPOINT OUT KEY=VALUE ...
KEYs: generation.<name> or data.default_style / data.reference_style; VALUEs are parsed as YAML (0.75, pseudo).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml

from ksdiff.errors import KsdiffError
from ksdiff.train.checkpoint import load_checkpoint, save_checkpoint

SETTABLE = {"generation": ("sampler", "steps", "guidance", "encoder_compute", "smooth"),
            "data": ("default_style", "reference_style")}


def apply(config: dict, assignments: list[str]) -> dict:
    """``config`` with every ``section.key=value`` of ``assignments`` set (only :data:`SETTABLE` keys)."""
    for a in assignments:
        key, sep, value = a.partition("=")
        section, _, name = key.partition(".")
        if not sep or name not in SETTABLE.get(section, ()):
            known = ", ".join(f"{s}.{n}" for s, names in SETTABLE.items() for n in names)
            raise KsdiffError(f"cannot set {a!r}: give KEY=VALUE with KEY one of {known}")
        config.setdefault(section, {})[name] = yaml.safe_load(value)
    return config


def main(ck: Path, out: Path, assignments: list[str]) -> None:
    from ksdiff.generate import load_model

    state, config, meta = load_checkpoint(ck)
    config = apply(config, assignments)
    extra = {k: v for k, v in meta.items() if k not in ("kind", "format_version", "config")}
    with tempfile.TemporaryDirectory() as tmp:
        trial = Path(tmp) / "trial.safetensors"
        save_checkpoint(trial, state, config, extra)
        try:  # refuses bad values (an unknown style, a negative smooth) before OUT changes
            animator = load_model(trial)
            for style in {animator.default_style, animator.reference_style} - {None}:
                animator._style_vector(style)
        except KsdiffError as e:
            raise KsdiffError(f"refused ({' '.join(assignments)}): {e.problem}", ck) from None
    save_checkpoint(out, state, config, extra)
    print(f"{out}: generation {animator.defaults}, default style {animator.default_style}, "
          f"reference style {animator.reference_style}")


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
    except (KsdiffError, IndexError) as e:
        sys.exit(f"set_generation: {e if isinstance(e, KsdiffError) else __doc__.strip().splitlines()[-2]}")
