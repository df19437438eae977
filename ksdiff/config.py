"""Configuration: dataclasses loaded from YAML files with overlays and ``key=value`` overrides.

A YAML file may name a base with ``include: other.yaml`` (or a list); it is loaded first and the file's own
keys are merged on top, recursively. Later files and ``a.b.c=value`` overrides win. The resolved config is
a plain dict that every run records (``config.yaml`` in the run folder, and inside checkpoints).

Sections are dataclasses; any dataclass can be built from a (partial) dict with :func:`from_dict`, which fills
defaults and rejects unknown keys with a one-line error.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ksdiff.errors import KsdiffError

T = TypeVar("T")
_SCI = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")  # 1e-4, 3.0E+2

#: Folder of the configs shipped inside the package (``configs/`` of the repo is installed as ``ksdiff/configs``).
PACKAGE_CONFIGS = Path(__file__).resolve().parent / "configs"


def resolve_config_path(name: str | os.PathLike) -> Path:
    """A config given as a path, or as a name of a shipped config (``default``, ``paper``, ``ablations/no_kel``)."""
    p = Path(name)
    if p.is_file():
        return p
    for cand in (PACKAGE_CONFIGS / f"{name}.yaml", PACKAGE_CONFIGS / str(name)):
        if cand.is_file():
            return cand
    raise KsdiffError("config file not found (give a path or a shipped name such as 'default')", name)


def load_yaml(path: str | os.PathLike, _seen: tuple[Path, ...] = ()) -> dict:
    """Load one YAML file, resolving its ``include`` chain (paths relative to the including file)."""
    path = resolve_config_path(path).resolve()
    if path in _seen:
        raise KsdiffError("config include cycle", path)
    try:
        data = _numbers(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    except yaml.YAMLError as e:
        raise KsdiffError(f"invalid YAML ({str(e).splitlines()[0]})", path) from None
    if not isinstance(data, dict):
        raise KsdiffError("a config file must hold a mapping", path)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    merged: dict = {}
    for inc in includes:
        inc_path = (path.parent / inc) if not Path(inc).is_absolute() else Path(inc)
        merged = merge(merged, load_yaml(inc_path if inc_path.exists() else inc, _seen + (path,)))
    return merge(merged, data)


def _numbers(obj: Any) -> Any:
    """Strings that read as floats (``1e-4``) become floats, recursively."""
    if isinstance(obj, dict):
        return {k: _numbers(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_numbers(v) for v in obj]
    if isinstance(obj, str) and _SCI.match(obj.strip()):
        return float(obj)
    return obj


def merge(base: dict, over: dict) -> dict:
    """Recursive dict merge: ``over`` wins; nested dicts merge."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """``["train.lr=3e-4", "model.dim=128"]`` -> nested dict with YAML-typed values."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise KsdiffError(f"override {item!r} must look like key.sub=value")
        key, val = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = _scalar(val)
    return out


def _scalar(text: str) -> Any:
    """YAML-typed value, reading ``3e-4`` as a number too (YAML 1.1 wants ``3.0e-4``)."""
    return _numbers(yaml.safe_load(text))


def load_config_dict(paths: list[str | os.PathLike] | str | os.PathLike | None,
                     overrides: list[str] | None = None) -> dict:
    """Merge config files in order, then ``key=value`` overrides."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    d: dict = {}
    for p in paths:
        d = merge(d, load_yaml(p))
    return merge(d, parse_overrides(overrides))


def from_dict(cls: type[T], data: dict | None, where: str = "") -> T:
    """Build dataclass ``cls`` from a partial dict (defaults fill the rest; nested dataclasses recurse).

    Raises:
        KsdiffError: on an unknown key or a value of the wrong type.
    """
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise KsdiffError(f"unknown config key{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join((where + '.' if where else '') + u for u in unknown)} "
                          f"(known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, val in data.items():
        kwargs[name] = _coerce(hints[name], val, f"{where}.{name}" if where else name)
    return cls(**kwargs)


def _coerce(tp: Any, val: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if isinstance(val, tp):  # type: ignore[arg-type]
            return val
        if not isinstance(val, dict):
            raise KsdiffError(f"config {where} must be a mapping")
        return from_dict(tp, val, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if val is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, val, where)
            except KsdiffError:
                continue
        raise KsdiffError(f"config {where}={val!r} has the wrong type (expected {tp})")
    if origin in (list, tuple):
        if not isinstance(val, (list, tuple)):
            raise KsdiffError(f"config {where} must be a list, got {val!r}")
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        items = [_coerce(inner, v, where) for v in val]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(val, dict):
            raise KsdiffError(f"config {where} must be a mapping")
        return dict(val)
    if tp is Any:
        return val
    if tp is bool:
        if isinstance(val, bool):
            return val
        raise KsdiffError(f"config {where} must be true or false, got {val!r}")
    if tp is float:
        if isinstance(val, (int, float)) and not isinstance(val, bool):
            return float(val)
        if isinstance(val, str):
            try:
                return float(val)
            except ValueError:
                pass
        raise KsdiffError(f"config {where} must be a number, got {val!r}")
    if tp is int:
        if isinstance(val, int) and not isinstance(val, bool):
            return val
        if isinstance(val, float) and val.is_integer():
            return int(val)
        raise KsdiffError(f"config {where} must be an integer, got {val!r}")
    if tp is str:
        if isinstance(val, (str, int, float)) and not isinstance(val, bool):
            return str(val)
        raise KsdiffError(f"config {where} must be a string, got {val!r}")
    if typing.get_origin(tp) is typing.Literal:
        if val in typing.get_args(tp):
            return val
        raise KsdiffError(f"config {where} must be one of {typing.get_args(tp)}, got {val!r}")
    return val


def to_dict(obj: Any) -> Any:
    """Dataclass (nested) -> plain dict of YAML/JSON-safe values."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)
