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
:func:`save_run_checkpoint` writes the four files of one save to temporaries first and renames them only when all
are complete (raw weights, training state, sidecar, EMA model, in that order), so a kill during a save leaves the
previous save whole. Files get the usual permissions (umask), not ``mkstemp``'s 0600.

Loading checks what a file claims against what it holds: kind, format version and face spec
(:func:`load_checkpoint`), finite weights (NaN/inf: a diverged run), and tensor names and shapes against the model
its config describes (:func:`load_weights`), each as one line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path

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
    with atomic_path(path, suffix=".safetensors") as tmp:
        _write_checkpoint(tmp, model, config_dict, extra)


def _save_safetensors(tensors: dict[str, Tensor], path: Path, meta: dict[str, str]) -> None:
    """``safetensors.torch.save_file`` onto a temporary of ``atomic_path``, keeping the mode that gave it (the
    usual umask-derived one): safetensors replaces the file with one of mode 0600."""
    from safetensors.torch import save_file

    mode = path.stat().st_mode & 0o777 if path.exists() else None
    save_file(tensors, str(path), metadata=meta)
    if mode is not None:
        os.chmod(path, mode)


def _write_checkpoint(path: Path, model: nn.Module | dict[str, Tensor], config_dict: dict,
                      extra: dict[str, Any] | None) -> None:
    sd = model.state_dict() if isinstance(model, nn.Module) else model
    meta = {"kind": MODEL_KIND, "format_version": str(CHECKPOINT_FORMAT_VERSION),
            "config": json.dumps(config_dict, sort_keys=False)}
    for k, v in (extra or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    _save_safetensors(_cpu_tensors(sd), path, meta)


def save_run_checkpoint(run_dir: str | os.PathLike, raw: nn.Module | dict[str, Tensor], ema: dict[str, Tensor],
                        train_state: dict, config_dict: dict, step: int) -> None:
    """One save of a training run: ``last.safetensors`` (raw weights), ``train_state.*`` and ``model.safetensors``
    (EMA weights), all at ``step``.

    All four are written to temporaries beside their targets first; only when every one is complete are they
    renamed, in the order a resume reads them (a kill while writing leaves the previous save as it was).
    """
    run_dir = Path(run_dir)
    meta = {"step": int(step)}
    with contextlib.ExitStack() as stack:  # exits in reverse: renames last, state, sidecar, model
        tmp_model = stack.enter_context(atomic_path(run_dir / MODEL_FILE, suffix=".safetensors"))
        tmp_side = stack.enter_context(atomic_path(run_dir / STATE_SIDECAR))
        tmp_state = stack.enter_context(atomic_path(run_dir / STATE_FILE, suffix=".safetensors"))
        tmp_last = stack.enter_context(atomic_path(run_dir / LAST_FILE, suffix=".safetensors"))
        _write_checkpoint(tmp_last, raw, config_dict, {**meta, "weights": "raw"})
        _write_train_state(tmp_state, tmp_side, train_state, step)
        _write_checkpoint(tmp_model, ema, config_dict, {**meta, "weights": "ema"})


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
            version, a broken config, a checkpoint of another face spec, or weights holding NaN/inf.
    """
    from safetensors.torch import load_file

    config_dict, meta = load_checkpoint_config(path, expect_spec, expect_jaw_path)
    state = load_file(str(path), device=str(map_location))
    check_finite(state, path)
    return state, config_dict, meta


def load_checkpoint_config(path: str | os.PathLike, expect_spec: str | None = None,
                           expect_jaw_path: str | None = None) -> tuple[dict, dict[str, str]]:
    """(config_dict, meta) of a model checkpoint, validated as :func:`load_checkpoint` does, without reading its
    tensors."""
    path = Path(path)
    meta = read_metadata(path)
    _check_version(meta, path, MODEL_KIND)
    try:
        config_dict = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError):
        raise KsdiffError("checkpoint has no readable config", path) from None
    check_spec(config_dict, path, expect_spec, expect_jaw_path)
    return config_dict, meta


def check_finite(state: dict[str, Tensor], path: str | os.PathLike | None) -> None:
    """One-line :class:`KsdiffError` naming the first floating-point tensor of ``state`` that holds NaN or inf."""
    for name, v in state.items():
        # a sum is 20x quicker than isfinite().all(); it is not finite when any element is not (or on overflow,
        # which the exact test then tells apart)
        if v.dtype.is_floating_point and not bool(torch.isfinite(v.sum())) and not bool(torch.isfinite(v).all()):
            raise KsdiffError(f"weights contain NaN/inf (a diverged run?): tensor {name}", path)


def _shape(t: Any) -> str:
    return "(" + ", ".join(str(int(n)) for n in t.shape) + ("," if len(t.shape) == 1 else "") + ")"


def load_weights(model: nn.Module, state: dict[str, Tensor], path: str | os.PathLike | None) -> None:
    """Load ``state`` into ``model`` after checking that every tensor name and shape matches.

    ``model`` is the model the checkpoint's own config describes; a mismatch means the config and the weights of
    the file do not belong together. One-line :class:`KsdiffError` naming the file and the first mismatch
    (instead of ``load_state_dict``'s many-line RuntimeError).
    """
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    for name, w in want.items():  # in the model's order: the motion normalisation (channels) comes first
        if name in state and tuple(state[name].shape) != tuple(w.shape):
            raise KsdiffError(f"tensor {name} is {_shape(state[name])} in the file but {_shape(w)} for its config: "
                              "the checkpoint's config does not match its weights", path)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise KsdiffError(f"tensor {missing[0]}{more} of the model its config describes is missing from the file: "
                          "the checkpoint's config does not match its weights", path)
    extra = [k for k in state if k not in want]
    if extra:
        raise KsdiffError(f"tensor {extra[0]} is in the file but not in the model its config describes: the "
                          "checkpoint's config does not match its weights", path)
    model.load_state_dict(state)


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
    load_weights(model, state, path)
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


def save_train_state(run_dir: str | os.PathLike, state: dict, step: int) -> None:
    """Write ``train_state.safetensors`` and its JSON sidecar ``train_state.json`` (atomically, sidecar last).

    ``state`` is any nesting of dicts/lists/tuples of tensors, arrays and plain values (optimizer state dict,
    EMA state, RNG states, ...).
    """
    run_dir = Path(run_dir)
    with atomic_path(run_dir / STATE_SIDECAR) as tmp_side:
        with atomic_path(run_dir / STATE_FILE, suffix=".safetensors") as tmp_state:
            _write_train_state(tmp_state, tmp_side, state, step)


def _write_train_state(tensor_path: Path, sidecar_path: Path, state: dict, step: int) -> None:
    tensors: dict[str, Tensor] = {}
    skel = flatten_state(state, tensors)
    meta = {"kind": TRAIN_STATE_KIND, "format_version": str(CHECKPOINT_FORMAT_VERSION), "step": str(int(step))}
    _save_safetensors(tensors, tensor_path, meta)
    sidecar = {"kind": TRAIN_STATE_KIND, "format_version": CHECKPOINT_FORMAT_VERSION, "step": int(step),
               "tensors": STATE_FILE, "structure": skel}
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")


def no_training_state(run_dir: str | os.PathLike) -> KsdiffError:
    """The error of ``--resume`` on a run folder without a saved training state."""
    return KsdiffError(f"no training state in {run_dir}: the run stopped before its first save; start it again "
                       "without --resume")


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
        raise no_training_state(run_dir)
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
