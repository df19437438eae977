"""Checkpoints in safetensors: weights + the full resolved config, never pickle.

Files of a run folder ``RUN/``:

``model.safetensors``
    the EMA weights, for inference. Metadata (all strings): ``kind = "ksdiff-model"``, ``format_version``,
    ``config`` (JSON of the resolved run config plus ``spec`` {name, jaw_path, channels}, ``fps``,
    ``features`` {encoder, dim, rate, tokens}, ``normalization`` {mean, std}), ``step``, ``weights = "ema"``.
    Everything needed to rebuild the model is inside: ``load_model(path)`` needs no other file.
``last.safetensors``
    the same for the raw (non-averaged) weights at the same step (``weights = "raw"``); resuming starts from it.
``train_state.safetensors`` + ``train_state.json``
    the optimizer state, the EMA shadow weights and the RNG states, flattened into named tensors (the
    ``.safetensors``) and a JSON structure that refers to them (the ``.json`` sidecar), with the step.

Every file is written atomically; each carries its step so that a resume can check they belong together.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path, write_json

#: Version of the checkpoint layout; bump when a reader of the old layout would misread the new one.
CHECKPOINT_FORMAT_VERSION = 1
MODEL_KIND = "ksdiff-model"
TRAIN_STATE_KIND = "ksdiff-train-state"

MODEL_FILE = "model.safetensors"
LAST_FILE = "last.safetensors"
STATE_FILE = "train_state.safetensors"
STATE_SIDECAR = "train_state.json"


# ----------------------------------------------------------------------------------------------------------------
# Model checkpoints
# ----------------------------------------------------------------------------------------------------------------

def _cpu_tensors(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU copies (safetensors refuses shared or non-contiguous storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in sd.items()}


def save_checkpoint(path: str | os.PathLike, model: nn.Module | dict[str, Tensor], config_dict: dict,
                    extra: dict[str, Any] | None = None) -> None:
    """Write a model checkpoint atomically.

    Args:
        path: the ``.safetensors`` file to write.
        model: a module (its ``state_dict`` is saved) or a state dict of tensors.
        config_dict: the full resolved config (JSON-serialisable), stored as metadata ``config``.
        extra: more metadata (e.g. ``step``, ``weights``); values are stored as strings (JSON for non-strings).
    """
    from safetensors.torch import save_file

    sd = model.state_dict() if isinstance(model, nn.Module) else model
    meta = {"kind": MODEL_KIND, "format_version": str(CHECKPOINT_FORMAT_VERSION),
            "config": json.dumps(config_dict, sort_keys=False)}
    for k, v in (extra or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(_cpu_tensors(sd), str(tmp), metadata=meta)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (one-line :class:`KsdiffError` if it is not one)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise KsdiffError("checkpoint not found", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # safetensors raises its own SafetensorError / OSError / ValueError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KsdiffError(f"not a safetensors checkpoint ({msg[:120]})", path) from None


def _check_version(meta: dict[str, str], path: Path, kind: str) -> None:
    got = meta.get("kind")
    if got != kind:
        if got == TRAIN_STATE_KIND and kind == MODEL_KIND:
            raise KsdiffError("this is a training state, not a model; use the run's model.safetensors", path)
        if got == MODEL_KIND and kind == TRAIN_STATE_KIND:
            raise KsdiffError("this is a model checkpoint, not a training state", path)
        raise KsdiffError(f"not a ksdiff checkpoint (kind {got!r}, expected {kind!r})", path)
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise KsdiffError(f"checkpoint has no valid format_version ({meta.get('format_version')!r})", path) from None
    if version > CHECKPOINT_FORMAT_VERSION:
        raise KsdiffError(f"checkpoint format version {version} is newer than this ksdiff reads "
                          f"({CHECKPOINT_FORMAT_VERSION}); upgrade ksdiff", path)
    if version < 1:
        raise KsdiffError(f"checkpoint format version {version} is not supported", path)


def check_spec(config_dict: dict, path: str | os.PathLike | None, expect_spec: str | None = None,
               expect_jaw_path: str | None = None) -> None:
    """Check the face spec recorded in a checkpoint config: known, with the channels this ksdiff uses for it,
    and (when given) equal to ``expect_spec`` / ``expect_jaw_path``. One-line :class:`KsdiffError` otherwise."""
    from ksdiff.face.specs import SPEC_NAMES, get_spec

    spec = config_dict.get("spec")
    if not isinstance(spec, dict) or "name" not in spec:
        raise KsdiffError("checkpoint config records no face spec", path)
    name, jaw = str(spec["name"]), str(spec.get("jaw_path", "expression"))
    if name not in SPEC_NAMES:
        raise KsdiffError(f"checkpoint is for an unknown face spec {name!r} (known: {', '.join(SPEC_NAMES)})", path)
    if expect_spec is not None and name != expect_spec:
        raise KsdiffError(f"checkpoint was trained for face spec {name!r}, but {expect_spec!r} is needed here", path)
    if expect_jaw_path is not None and name == "flame" and jaw != expect_jaw_path:
        raise KsdiffError(f"checkpoint puts the jaw on the {jaw} path, but jaw_path={expect_jaw_path} is needed here",
                          path)
    channels = spec.get("channels")
    if channels is not None and tuple(channels) != get_spec(name, jaw).channels:
        raise KsdiffError(f"checkpoint's {name!r} channels differ from this ksdiff's {name!r} spec", path)


def load_checkpoint(path: str | os.PathLike, expect_spec: str | None = None, expect_jaw_path: str | None = None,
                    map_location: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict, dict[str, str]]:
    """Read a model checkpoint written by :func:`save_checkpoint`, validating what it is.

    Args:
        path: ``model.safetensors`` / ``last.safetensors`` (or any file saved by :func:`save_checkpoint`).
        expect_spec: when given, the face spec the caller needs (``arkit`` / ``flame``).
        expect_jaw_path: when given (flame only), the jaw path the caller needs.

    Returns:
        (state_dict, config_dict, meta): tensors on ``map_location``; the resolved config; the raw metadata.

    Raises:
        KsdiffError: one line for a missing / non-safetensors file, another kind, a newer or unknown format
            version, a broken config, or a checkpoint of another face spec.
    """
    from safetensors.torch import load_file

    path = Path(path)
    meta = read_metadata(path)
    _check_version(meta, path, MODEL_KIND)
    try:
        config_dict = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError):
        raise KsdiffError("checkpoint has no readable config", path) from None
    check_spec(config_dict, path, expect_spec, expect_jaw_path)
    state = load_file(str(path), device=str(map_location))
    return state, config_dict, meta


def model_from_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu", expect_spec: str | None = None):
    """Rebuild a :class:`ksdiff.model.ksdiff.KSDiff` from a checkpoint alone (weights, config, spec, features,
    normalisation), in eval mode on ``device``.

    Returns:
        (model, config_dict)
    """
    from ksdiff.config import from_dict
    from ksdiff.face.specs import get_spec
    from ksdiff.model.config import ModelConfig
    from ksdiff.model.ksdiff import KSDiff

    state, cfg, _ = load_checkpoint(path, expect_spec=expect_spec)
    spec = get_spec(cfg["spec"]["name"], cfg["spec"].get("jaw_path", "expression"))
    try:
        mcfg = from_dict(ModelConfig, cfg.get("model", {}), "model")
        feat_dim = int(cfg["features"]["dim"])
    except KsdiffError as e:
        raise KsdiffError(f"checkpoint config does not fit this ksdiff ({e})", path) from None
    except (KeyError, TypeError, ValueError):
        raise KsdiffError("checkpoint config lacks features.dim", path) from None
    model = KSDiff(mcfg, spec, feat_dim)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        what = (f"missing {', '.join(missing[:3])}" if missing else "") + \
               ("; " if missing and unexpected else "") + \
               (f"unexpected {', '.join(unexpected[:3])}" if unexpected else "")
        raise KsdiffError(f"checkpoint weights do not fit the model its config describes ({what})", path)
    return model.to(device).eval(), cfg


# ----------------------------------------------------------------------------------------------------------------
# Training state: nested dicts/lists of tensors and plain values <-> (named tensors, JSON structure)
# ----------------------------------------------------------------------------------------------------------------

def flatten_state(obj: Any, tensors: dict[str, Tensor], prefix: str = "s") -> Any:
    """Split a nested structure into named tensors (added to ``tensors``) and a JSON-able skeleton.

    Tensors become ``{"__tensor__": name}``, numpy arrays ``{"__ndarray__": name}``, tuples ``{"__tuple__": [...]}``,
    dicts ``{"__dict__": [[key, value], ...]}`` (keeping int keys such as the optimizer's parameter ids).
    """
    if isinstance(obj, Tensor):
        tensors[prefix] = obj.detach().to("cpu").contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a training state ({prefix})")


def unflatten_state(skel: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skel, dict):
        if "__tensor__" in skel:
            return tensors[skel["__tensor__"]]
        if "__ndarray__" in skel:
            return tensors[skel["__ndarray__"]].numpy()
        if "__tuple__" in skel:
            return tuple(unflatten_state(v, tensors) for v in skel["__tuple__"])
        if "__dict__" in skel:
            return {k: unflatten_state(v, tensors) for k, v in skel["__dict__"]}
        raise ValueError(f"unknown training-state node {sorted(skel)}")
    if isinstance(skel, list):
        return [unflatten_state(v, tensors) for v in skel]
    return skel


def rng_state() -> dict:
    """The RNG states of python, numpy and torch (CPU and, when present, CUDA)."""
    out = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"].to(torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in state["cuda"]])


def save_train_state(run_dir: str | os.PathLike, state: dict, step: int, config_dict: dict | None = None) -> None:
    """Write ``train_state.safetensors`` and its JSON sidecar ``train_state.json`` (atomically, sidecar last).

    ``state`` is any nesting of dicts/lists/tuples of tensors, arrays and plain values (optimizer state dict,
    EMA state, RNG states, ...).
    """
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tensors: dict[str, Tensor] = {}
    skel = flatten_state(state, tensors)
    meta = {"kind": TRAIN_STATE_KIND, "format_version": str(CHECKPOINT_FORMAT_VERSION), "step": str(int(step))}
    with atomic_path(run_dir / STATE_FILE, suffix=".safetensors") as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    sidecar = {"kind": TRAIN_STATE_KIND, "format_version": CHECKPOINT_FORMAT_VERSION, "step": int(step),
               "tensors": STATE_FILE, "structure": skel}
    if config_dict is not None:
        sidecar["config"] = config_dict
    write_json(run_dir / STATE_SIDECAR, sidecar)


def load_train_state(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[dict, int]:
    """Read the training state of a run folder.

    Returns:
        (state, step)

    Raises:
        KsdiffError: missing / broken files, another kind or version, or tensors and sidecar from different steps.
    """
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    side_path = run_dir / STATE_SIDECAR
    if not side_path.is_file():
        raise KsdiffError("no training state to resume from (train_state.json missing)", run_dir)
    try:
        side = json.loads(side_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KsdiffError(f"training state sidecar is not valid JSON ({e})", side_path) from None
    if side.get("kind") != TRAIN_STATE_KIND:
        raise KsdiffError(f"not a ksdiff training state (kind {side.get('kind')!r})", side_path)
    if int(side.get("format_version", 0)) > CHECKPOINT_FORMAT_VERSION:
        raise KsdiffError(f"training state format version {side.get('format_version')} is newer than this ksdiff "
                          f"reads ({CHECKPOINT_FORMAT_VERSION}); upgrade ksdiff", side_path)
    tpath = run_dir / side.get("tensors", STATE_FILE)
    meta = read_metadata(tpath)
    _check_version(meta, tpath, TRAIN_STATE_KIND)
    if int(meta.get("step", -1)) != int(side["step"]):
        raise KsdiffError(f"training state tensors (step {meta.get('step')}) and sidecar (step {side['step']}) "
                          "do not belong together", run_dir)
    tensors = load_file(str(tpath), device=str(map_location))
    return unflatten_state(side["structure"], tensors), int(side["step"])
