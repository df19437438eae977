"""What every benchmark shares: the machine, its matmul rate, memory readings, FLOP counting, the models under test
(a checkpoint, or a randomly-initialised model of a config: speed does not depend on the weights) and recording
results in ``docs/BENCHMARKS.md``."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import write_text

#: Generation settings that belong to a configuration rather than to the weights (the model config has no place
#: for them). Keyed by the config file's stem. ``diffspeaker``: DiffSpeaker's inference, 50 DDIM steps over the
#: whole sequence in one pass (full-sequence attention, no windows).
GENERATION_PRESETS: dict[str, dict[str, Any]] = {
    "diffspeaker": {"sampler": "ddim", "steps": 50, "window_s": 0.0},
}

REPO = Path(__file__).resolve().parents[2]
DEFAULT_RECORD = REPO / "docs" / "BENCHMARKS.md"


# ------------------------------------------------------------------------------------------------ the machine

def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, torch version and threads (and the GPU, when there is one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    mem_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 ** 2
    except OSError:
        pass
    out = {"cpu": cpu, "cores": cores, "memory_gb": mem_gb, "torch": torch.__version__,
           "torch_threads": torch.get_num_threads(), "python": platform.python_version()}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    try:
        out["load_avg"] = list(os.getloadavg())  # other work on the machine while measuring
    except OSError:  # pragma: no cover
        pass
    return out


def machine_line(info: dict[str, Any] | None = None) -> str:
    info = info or machine_info()
    mem = f", {info['memory_gb']:.0f} GB RAM" if info.get("memory_gb") else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    load = f"; load average {info['load_avg'][0]:.1f} at the start" if info.get("load_avg") else ""
    return (f"{info['cpu']}, {info['cores']} cores{mem}{gpu}; torch {info['torch']} with "
            f"{info['torch_threads']} threads; Python {info['python']}{load}")


def matmul_gflops(n: int = 2048, reps: int = 8, device: str | torch.device = "cpu") -> float:
    """The machine's float32 matmul rate in GFLOP/s: the fastest of ``reps`` (n x n) @ (n x n) products
    (2 n^3 FLOPs each) after one warm-up, with torch's current thread count (the best, since the floor is
    what the hardware can reach; other processes only slow single products down)."""
    dev = torch.device(device)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dev)
    b = torch.randn(n, n, generator=g).to(dev)
    torch.mm(a, b)
    times = []
    for _ in range(reps):
        _sync(dev)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / min(times) / 1e9


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ------------------------------------------------------------------------------------------------ memory

def _status_mb(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Current resident memory of this process (VmRSS), MiB."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process (VmHWM, the high-water mark), MiB; falls back to getrusage."""
    v = _status_mb("VmHWM")
    if v is None:
        import resource

        v = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return v


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs). False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ FLOPs

def _cpu_attention_formulas() -> dict:
    """FLOP formulas for the CPU flash-attention kernels, which torch's counter does not know (it counts the
    CUDA ones), so that attention on the CPU is not counted as free: the same formulas as the CUDA kernels."""
    from torch.utils import flop_counter as fcm

    aten = torch.ops.aten
    out: dict = {}
    fwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    bwd = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if fwd is not None:
        out[fwd] = lambda q, k, v, *a, out_shape=None, **kw: fcm.sdpa_flop_count(q, k, v)
    if bwd is not None:
        out[bwd] = lambda g, q, k, v, *a, out_shape=None, **kw: fcm.sdpa_backward_flop_count(g, q, k, v)
    return out


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` as torch.utils.flop_counter counts them (matmuls, convolutions, attention,
    including the CPU attention kernels)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_attention_formulas()) as fc:
        fn()
    return int(fc.get_total_flops())


def quadratic_fit(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Exact (a, b, c) of y = a + b x + c x^2 through three points."""
    import numpy as np

    A = np.array([[1.0, x, x * x] for x in xs[:3]])
    a, b, c = np.linalg.solve(A, np.asarray(ys[:3], dtype=np.float64))
    return float(a), float(b), float(c)


# ------------------------------------------------------------------------------------------------ models

@dataclass
class ModelSource:
    """A model under test: a checkpoint, or a random initialisation of a config.

    Attributes:
        label: name in tables.
        checkpoint: ``model.safetensors`` (or a run folder); with ``configs`` / ``overlays`` empty the model is the
            checkpoint itself, else its config is the base of a random initialisation.
        configs: config files / shipped names merged in order (``include:`` honoured) for a random initialisation.
        overlays: config files whose own keys (their ``include:`` ignored) are applied on top, e.g. an ablation.
        overrides: ``key=value`` overrides applied last.
        spec / jaw_path: face spec of a random initialisation (a checkpoint records its own).
        seed: torch seed of the random initialisation.
        generation: sampler / steps / window_s used when generating with this model.
        code_root: run the measurement with the ksdiff source tree in this folder instead of this one (``bench
            generate --vs-ref REV``: the code of another git revision); not sent to the worker.
    """

    label: str
    checkpoint: str | None = None
    configs: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    spec: str = "arkit"
    seed: int = 0
    generation: dict[str, Any] = field(default_factory=dict)
    code_root: str | None = None

    @property
    def random_init(self) -> bool:
        return self.checkpoint is None or bool(self.configs or self.overlays or self.overrides)

    def to_dict(self) -> dict:
        """The fields a measurement worker needs (all but ``code_root``, which the worker of older code lacks)."""
        d = dataclasses.asdict(self)
        d.pop("code_root")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSource":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def overlay_keys(path: str | os.PathLike) -> dict:
    """The keys a config file sets itself (its ``include:`` chain is NOT loaded), for overlaying an ablation on
    top of another configuration without resetting it to the ablation's base."""
    import yaml

    from ksdiff.config import _numbers, resolve_config_path

    p = resolve_config_path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise KsdiffError(f"invalid YAML ({str(e).splitlines()[0]})", p) from None
    if not isinstance(data, dict):
        raise KsdiffError("a config file must hold a mapping", p)
    data.pop("include", None)
    return _numbers(data)


def preset_for(config: str | os.PathLike | None) -> dict[str, Any]:
    """Generation settings that come with a shipped configuration (see :data:`GENERATION_PRESETS`)."""
    if config is None:
        return {}
    return dict(GENERATION_PRESETS.get(Path(str(config)).stem, {}))


def resolve_run_config(source: ModelSource, base: dict | None = None):
    """The :class:`ksdiff.train.config.RunConfig` of a source: ``base`` (a checkpoint's config) or its config
    files, then its overlays' own keys, then its overrides."""
    from ksdiff.config import load_config_dict, merge, parse_overrides
    from ksdiff.train.config import load_run_config

    d: dict = dict(base or {})
    if source.configs:
        d = merge(d, load_config_dict(source.configs))
    for ov in source.overlays:
        d = merge(d, overlay_keys(ov))
    d = merge(d, parse_overrides(source.overrides))
    return load_run_config(None, None, base=d)


def build_model(source: ModelSource, device: str | torch.device = "cpu") -> tuple[Any, dict]:
    """(model in eval mode, config dict in the checkpoint layout) for a source.

    A random initialisation gets the spec, fps and feature settings a checkpoint would record (feature size from
    the speech encoder), identity motion normalisation, and weights from ``torch.manual_seed(source.seed)``.
    """
    from ksdiff.config import to_dict
    from ksdiff.face.specs import get_spec
    from ksdiff.model.ksdiff import KSDiff

    base = None
    if source.checkpoint is not None:
        from ksdiff.train.checkpoint import load_checkpoint, model_from_checkpoint

        path = Path(source.checkpoint)
        if path.is_dir() and (path / "model.safetensors").is_file():
            path = path / "model.safetensors"
        if not source.random_init:
            model, cfg = model_from_checkpoint(path, device=device)
            return model, cfg
        _, base, _ = load_checkpoint(path)
    cfg = resolve_run_config(source, base)
    if base is not None and "spec" in base:
        spec = get_spec(base["spec"]["name"], base["spec"].get("jaw_path", "expression"))
    else:
        spec = get_spec(source.spec, cfg.data.jaw_path)
    from ksdiff.audio.encoders import get_encoder

    enc = get_encoder(cfg.audio.encoder)
    torch.manual_seed(int(source.seed))
    model = KSDiff(cfg.model, spec, enc.dim)
    d = to_dict(cfg)
    d["spec"] = spec.to_dict()
    d["fps"] = cfg.model.fps
    d["features"] = {"encoder": cfg.audio.encoder, "dim": int(enc.dim), "rate": float(enc.rate),
                     "tokens": cfg.audio.tokens}
    return model.to(device).eval(), d


def describe_source(source: ModelSource) -> str:
    """One line saying what a model under test is (random weights are named as such)."""
    parts = []
    if source.checkpoint and not source.random_init:
        code = f" with the code of `{source.code_root}`" if source.code_root else ""
        return f"{source.label}: checkpoint `{source.checkpoint}`{code}"
    if source.checkpoint:
        parts.append(f"config of `{source.checkpoint}`")
    parts += [f"`{c}`" for c in source.configs]
    parts += [f"+ overlay `{o}`" for o in source.overlays]
    parts += [f"`{o}`" for o in source.overrides]
    code = f", with the code of `{source.code_root}`" if source.code_root else ""
    return (f"{source.label}: random initialisation (seed {source.seed}) of " + " ".join(parts) + code
            + " — speed and memory do not depend on the weights")


# ------------------------------------------------------------------------------------------------ recording

def record_markdown(body: str, command: str, title: str, path: str | os.PathLike | None = None,
                    date: str | None = None, machine: dict | None = None) -> Path:
    """Append a section (title, date, machine, exact command, then ``body``) to ``docs/BENCHMARKS.md``
    (created with a short header when missing); written atomically."""
    path = Path(path) if path is not None else DEFAULT_RECORD
    date = date or _dt.date.today().isoformat()
    old = path.read_text(encoding="utf-8") if path.is_file() else (
        "# Benchmarks\n\nMeasured with `ksdiff bench generate` / `ksdiff bench train` (`--record` appends here). "
        "RTF = seconds of compute per second of audio (below 1 = faster than real time).\n")
    section = (f"\n## {title} — {date}\n\n"
               f"- machine: {machine_line(machine)}\n"
               f"- command: `{command}`\n\n{body.rstrip()}\n")
    write_text(path, old.rstrip("\n") + "\n" + section)
    return path


def command_line(argv: list[str] | None = None) -> str:
    """The exact command as typed (``ksdiff ...``)."""
    import shlex
    import sys

    argv = sys.argv if argv is None else argv
    prog = "ksdiff" if argv and (argv[0].endswith("ksdiff") or argv[0].endswith("__main__.py")) else argv[0]
    return " ".join([prog] + [shlex.quote(a) for a in argv[1:]])


def fmt(v: float | None, digits: int = 3) -> str:
    if v is None or v != v:
        return "–"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}f}"
