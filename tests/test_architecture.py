"""The package's import graph: floors from the ground up, no import from a lower floor to a higher one, and no
circle between files (lazy imports inside functions count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "ksdiff"

#: Floors from the ground up. A module may import only from its own floor or below. Top-level modules not named
#: here (generate, evaluate, serve, ...) are the top floor, ``cli`` above them. The package root ``ksdiff`` holds
#: ``__version__`` (ground floor for whoever imports it); its lazy ``load_model`` is the public facade and, like
#: ``__main__``, is not checked as a source.
FLOORS: list[tuple[str, ...]] = [
    ("errors", "utils", "config"),
    ("face",),                      # specs, Motion, keyframe labels (Eq. 3), face models
    ("audio", "diffusion", "render", "export"),
    ("metrics", "model"),
    ("data",),                      # formats, importers, tracker, synthetic corpus, feature cache
    ("baselines", "train"),
]
TOP = len(FLOORS)


def _floor(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2:
        return 0
    for i, names in enumerate(FLOORS):
        if parts[1] in names:
            return i
    return TOP + (1 if parts[1] in ("cli", "__main__") else 0)


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported ksdiff module, line) for every import in the file, top-level or lazy."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("ksdiff"):
                # `from ksdiff.x import y` where y is a submodule imports ksdiff.x.y
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    is_mod = (PKG.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or \
                        (PKG.parent / Path(*sub.split(".")) / "__init__.py").is_file()
                    out.append((sub if is_mod else target, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("ksdiff")]
    return out


def _graph() -> dict[str, list[tuple[str, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def test_no_import_climbs_to_a_higher_floor():
    climbs = [f"{m}:{line} imports {t}" for m, edges in _graph().items() for t, line in edges
              if m not in ("ksdiff", "ksdiff.__main__") and _floor(t) > _floor(m)]
    assert not climbs, "imports from a lower floor to a higher one:\n" + "\n".join(climbs)


def test_low_floors_never_import_data_and_audio_never_imports_model():
    g = _graph()
    low = ("face", "render", "model", "audio", "diffusion", "metrics", "utils")
    bad = [f"{m}:{line} imports {t}" for m, edges in g.items() for t, line in edges
           if m.split(".")[1:2] and m.split(".")[1] in low and t.startswith("ksdiff.data")]
    bad += [f"{m}:{line} imports {t}" for m, edges in g.items() for t, line in edges
            if m.startswith("ksdiff.audio") and t.startswith("ksdiff.model")]
    assert not bad, "\n".join(bad)


def test_no_circle_between_files():
    g = {m: sorted({t for t, _ in edges if t != m}) for m, edges in _graph().items() if m != "ksdiff"}
    # a package's __init__ importing its own submodules is how packages export; it is not a circle between files
    def edges(m):
        return [t for t in g.get(m, []) if t in g and not (m + ".").startswith(t + ".")]

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges(m):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in g:
        if m not in state:
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", ["ksdiff.face.motion", "ksdiff.face.keyframes", "ksdiff.data.features"])
def test_moved_modules_import(module):
    __import__(module)


#: "about 60 lines": a function longer than this is split into named steps.
MAX_FUNCTION_LINES = 62


def test_no_function_is_longer_than_about_60_lines():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "functions over ~60 lines:\n" + "\n".join(long)
