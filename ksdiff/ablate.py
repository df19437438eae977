"""Ablations (paper Table 3): train each variant with the same budget and seed, evaluate each on the same split,
write one table.

    OUT/<variant>/            a training run (ksdiff.train.loop.train): config.yaml, model.safetensors, ...
    OUT/<variant>/variant.json   the resolved config the variant was asked to train with
    OUT/<variant>/eval/       ksdiff.evaluate report of its checkpoint (metrics.json, report.md)
    OUT/ablation.md           rows = variants, columns = LVE, FDD, head diversity, Beat Align, keyframe F1, jaw r, ...
    OUT/ablation.json         the same numbers plus settings and training results

Resumable: a variant whose run reached the step budget is not trained again, one whose run was interrupted is
resumed at its last checkpoint (``train(resume=True)``), and an existing evaluation is reused. A variant folder made
with other settings is refused rather than mixed.

A variant is the base config (``--config``) with the variant's overlay applied: only the keys the overlay file sets
itself (its ``include: ../default.yaml`` is not loaded), so an ablation of a small or paper-sized config changes
only the switch it names.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_dir, write_json, write_text


@dataclass(frozen=True)
class Variant:
    """One row of the ablation table."""

    name: str
    overlay: str | None  # shipped overlay (ksdiff/configs/...), None = the base config as it is
    label: str  # the paper's wording
    spec: str | None = None  # only for this face spec


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("full", None, "KSDiff (full)"),
    Variant("no_split", "ablations/no_split", "w/o speech split"),
    Variant("no_dual", "ablations/no_dual", "w/o dual path"),
    Variant("no_kel", "ablations/no_kel", "w/o KEL (keyframes)"),
    Variant("no_prosody", "ablations/no_prosody", "w/o prosody"),
    Variant("no_text", "ablations/no_text", "w/o transcript"),
    Variant("enc_only", "ablations/enc_only", "encoder features only (no DPSE)"),
    Variant("jaw_head", "ablations/jaw_head", "jaw on the head path (paper's placement)", spec="flame"),
    Variant("diffspeaker", "ablations/diffspeaker", "DiffSpeaker (every addition off, 50 DDIM, one pass)"),
)}
#: ``--variants all``: the paper's Table 3 rows (+ jaw_head on flame data). ``diffspeaker`` is asked for by name.
TABLE3 = ("full", "no_split", "no_dual", "no_kel", "no_prosody", "no_text", "enc_only", "jaw_head")

#: Columns of ablation.md, in the paper's order first (LVE, FDD, diversity, Beat Align), then ours.
ABLATION_METRICS: list[tuple[str, str]] = [
    ("lve_mm", "↓"), ("fdd_mm", "→0"), ("head_div_deg", "→gt"), ("beat_align", "↑"), ("kf_f1_head", "↑"),
    ("kf_f1_expr", "↑"), ("jaw_r", "↑"), ("env_r", "↑"), ("mouth_rmse", "↓"), ("jitter", "→gt"), ("sample_div", "↑"),
]


def select_variants(text: str | list[str], spec: str) -> list[str]:
    """Variant names from ``all`` or a comma-separated list; ``jaw_head`` only for flame data."""
    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for name in (n.strip() for n in item.split(",")):
            if not name:
                continue
            if name == "all":
                names += [n for n in TABLE3 if VARIANTS[n].spec in (None, spec)]
                continue
            if name not in VARIANTS:
                raise KsdiffError(f"unknown ablation variant {name!r} (known: all, {', '.join(VARIANTS)})")
            v = VARIANTS[name]
            if v.spec is not None and v.spec != spec:
                raise KsdiffError(f"variant {name} only applies to {v.spec} data; this data is {spec}")
            names.append(name)
    out = list(dict.fromkeys(names))
    if not out:
        raise KsdiffError("no ablation variants selected")
    return out


def variant_config(configs: list[str | os.PathLike], variant: str, datasets: list[str | os.PathLike], steps: int,
                   seed: int, overrides: list[str] | None = None):
    """The :class:`ksdiff.train.config.RunConfig` of one variant: base configs, the variant overlay's own keys,
    then ``overrides``, the datasets, the step budget and the seed."""
    from ksdiff.bench.common import overlay_keys
    from ksdiff.config import load_config_dict, merge, parse_overrides
    from ksdiff.train.config import load_run_config

    d = load_config_dict(list(configs))
    ov = VARIANTS[variant].overlay
    if ov is not None:
        d = merge(d, overlay_keys(ov))
    d = merge(d, parse_overrides(overrides))
    d = merge(d, {"data": {"datasets": [str(Path(p).resolve()) for p in datasets]},
                  "train": {"steps": int(steps), "seed": int(seed)}})
    return load_run_config(None, None, base=d)


def _train_step(run_dir: Path) -> int | None:
    """The step of a run folder's training state, or None when it has none."""
    side = run_dir / "train_state.json"
    if not side.is_file():
        return None
    try:
        return int(json.loads(side.read_text(encoding="utf-8"))["step"])
    except (json.JSONDecodeError, KeyError, ValueError, TypeError):
        return None


def _last_train_loss(run_dir: Path) -> float | None:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:
            continue
        if d.get("kind") == "train" and "loss" in d:
            last = float(d["loss"])
    return last


#: Settings of one invocation, not of the variant: they may change between a run and its resumption.
PER_INVOCATION = {"train.stop_after", "train.threads", "train.tensorboard", "train.log_every", "data.num_workers",
                  "data.preload"}


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if where in PER_INVOCATION:
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
            if d:
                return d
        return None
    return None if a == b else (where or "(root)")


def run_ablation(configs: list[str | os.PathLike], datasets: list[str | os.PathLike], steps: int,
                 variants: str | list[str], out: str | os.PathLike, eval_split: str = "test", seed: int = 0,
                 eval_steps: int | None = None, eval_sampler: str | None = None, eval_seeds: int = 1,
                 overrides: list[str] | None = None, device: str = "auto", progress: bool = True,
                 log: Callable[[str], None] | None = print) -> dict:
    """Train, evaluate and tabulate the ablation variants (see the module docstring).

    Args:
        configs: base config files / shipped names, merged in order.
        datasets: training datasets (one face spec); each with clips in ``eval_split`` is evaluated.
        steps: training steps of every variant (the same budget); seed: the same seed for every variant.
        variants: ``all`` or names (comma-separated string or list).
        out: the ablation folder.
        eval_steps / eval_sampler: generation settings of the evaluation (default: the generator's; the
            diffspeaker variant uses its own preset, 50 DDIM steps in one pass, unless these are given).
        eval_seeds: samples per clip (seeds 0..N-1; >1 adds sample diversity).
        overrides: ``key=value`` config overrides applied to every variant.

    Returns:
        the ablation.json dict.
    """
    say = log or (lambda _m: None)
    if steps < 1:
        raise KsdiffError(f"--steps must be at least 1, got {steps}")
    if not datasets:
        raise KsdiffError("no data: give --data DATASET")
    if eval_seeds < 1:
        raise KsdiffError(f"--eval-seeds must be at least 1, got {eval_seeds}")
    dss, spec, names, eval_sets = _open_datasets(datasets, variants, eval_split)
    cfgs = {v: variant_config(configs, v, datasets, steps, seed, overrides) for v in names}  # fail early
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"configs": [str(c) for c in configs], "datasets": [str(d.root) for d in dss], "spec": spec,
                "steps": steps, "seed": seed, "eval_split": eval_split, "eval_steps": eval_steps,
                "eval_sampler": eval_sampler, "eval_seeds": eval_seeds, "overrides": list(overrides or []),
                "variants": names}
    results: dict[str, dict] = {}
    for k, v in enumerate(names):
        vdir = out / v
        want = _check_variant_folder(v, cfgs[v], vdir)
        say(f"[{k + 1}/{len(names)}] {v}: {VARIANTS[v].label}")
        train_s = _train_variant(v, cfgs[v], want, vdir, steps, device, progress, say)
        gen, extra = _generation_settings(v, eval_steps, eval_sampler)
        evals = {}
        for ds in eval_sets:
            edir = vdir / ("eval" if len(eval_sets) == 1 else f"eval-{ds.name}")
            res = _evaluate_variant(v, vdir, ds, edir, eval_split, eval_seeds, gen, extra,
                                    reuse=train_s is None, progress=progress, say=say)
            evals[ds.name] = {"mean": res.mean, "info": res.info, "report": str(edir / "report.md")}
        results[v] = {"label": VARIANTS[v].label, "run": str(vdir), "steps": _train_step(vdir),
                      "final_loss": _last_train_loss(vdir), "params": _param_count(vdir / "model.safetensors"),
                      "train_seconds": train_s, "generation": {**gen, **extra}, "eval": evals}

    doc = {"settings": settings, "variants": results}
    write_json(out / "ablation.json", doc)
    write_text(out / "ablation.md", ablation_markdown(doc))
    return doc


def _open_datasets(datasets: list[str | os.PathLike], variants: str | list[str], eval_split: str) -> tuple[list, str, list[str], list]:
    """(datasets opened, their one face spec, the variant names, the datasets with clips in ``eval_split``)."""
    from ksdiff.data.dataset import open_dataset

    dss = [open_dataset(d) for d in datasets]
    specs = {d.spec for d in dss}
    if len(specs) > 1:
        raise KsdiffError(f"the datasets mix face specs ({', '.join(sorted(specs))}); ablate one spec at a time")
    spec = specs.pop()
    names = select_variants(variants, spec)
    eval_sets = [d for d in dss if d.clip_ids(eval_split)]
    if not eval_sets:
        raise KsdiffError(f"no dataset has clips in the evaluation split {eval_split!r} "
                          f"(choose one with --eval-split)", dss[0].root)
    return dss, spec, names, eval_sets


def _check_variant_folder(v: str, cfg, vdir: Path) -> dict:
    """The config of variant ``v`` as a dict; refuses a folder ``vdir`` started with other settings."""
    from ksdiff.config import from_dict, to_dict

    want = to_dict(cfg)
    marker = vdir / "variant.json"
    if marker.is_file():
        have = json.loads(marker.read_text(encoding="utf-8")).get("config")
        try:  # fill keys added to the config since (with their defaults) before comparing
            have = to_dict(from_dict(type(cfg), have))
        except KsdiffError:
            pass
        diff = _first_difference(have, want)
        if diff:
            raise KsdiffError(f"variant {v} was started with other settings ({diff} differs); use another --out "
                              "or remove that folder", vdir)
    return want


def _train_variant(v: str, cfg, want: dict, vdir: Path, steps: int, device: str, progress: bool,
                   say: Callable[[str], None]) -> float | None:
    """Train variant ``v`` (config ``cfg``, ``want`` as a dict) in ``vdir`` (resuming its run, or skipping it when
    it reached ``steps``); returns the seconds it trained, None when skipped."""
    from ksdiff.train.loop import train

    step = _train_step(vdir)
    t0 = time.perf_counter()
    if step is not None and step >= steps and (vdir / "model.safetensors").is_file():
        say(f"  trained already (step {step}); skipping training")
        return None
    if step is None:
        write_json(vdir / "variant.json", {"variant": v, "label": VARIANTS[v].label, "config": want})
    else:
        say(f"  resuming at step {step}")
    r = train(cfg, vdir, resume=step is not None, device=device, progress=progress)
    if r.interrupted:
        raise KsdiffError(f"training of variant {v} stopped at step {r.step}; run the same command again "
                          "to resume", vdir)
    return time.perf_counter() - t0


def _generation_settings(v: str, eval_steps: int | None, eval_sampler: str | None) -> tuple[dict, dict]:
    """(generator settings, extra predictor arguments: ``window_s``) for evaluating variant ``v``: its preset,
    then ``eval_steps`` / ``eval_sampler`` when given."""
    from ksdiff.bench.common import preset_for

    gen: dict[str, Any] = {}
    if VARIANTS[v].overlay:
        gen = preset_for(VARIANTS[v].overlay)
    if eval_steps is not None:
        gen["steps"] = eval_steps
    if eval_sampler is not None:
        gen["sampler"] = eval_sampler
    window = gen.pop("window_s", None)
    return gen, ({} if window is None else {"window_s": window})


def _evaluate_variant(v: str, vdir: Path, ds, edir: Path, eval_split: str, eval_seeds: int, gen: dict, extra: dict,
                      reuse: bool, progress: bool, say: Callable[[str], None]):
    """The :class:`~ksdiff.evaluate.EvalResult` of variant ``v``'s checkpoint on dataset ``ds``, written to
    ``edir``; with ``reuse`` (the model was not trained now) an evaluation there with the same settings is
    read back instead."""
    from ksdiff.evaluate import checkpoint_predictor, evaluate, load_result

    want_eval = {"split": eval_split, "seeds": list(range(eval_seeds)), "generation": {**gen, **extra}}
    if (edir / "metrics.json").is_file() and (edir / "settings.json").is_file() and reuse:
        if json.loads((edir / "settings.json").read_text(encoding="utf-8")) == want_eval:
            res = load_result(edir / "metrics.json")
            say(f"  evaluation on {ds.name}/{eval_split} exists; reusing it")
            return res
    say(f"  evaluating on {ds.name}/{eval_split} ({len(ds.clip_ids(eval_split))} clips)")
    pred = checkpoint_predictor(vdir / "model.safetensors", steps=gen.get("steps"), sampler=gen.get("sampler"),
                                **extra)
    with atomic_dir(edir) as tmp:
        res = evaluate(ds.root, pred, split=eval_split, seeds=tuple(range(eval_seeds)), out=tmp, name=v, plots=True,
                       progress=progress)
        write_json(tmp / "settings.json", want_eval)
    return res


def _param_count(path: Path) -> int | None:
    """Trainable parameters of a checkpoint's model (weights only, not the normalisation buffers)."""
    try:
        from safetensors import safe_open
    except ImportError:  # pragma: no cover
        return None
    total = 0
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            if k.endswith(("motion_mean", "motion_std")):
                continue
            total += math.prod(f.get_slice(k).get_shape())
    return total


def ablation_markdown(doc: dict) -> str:
    """ablation.md: settings, then per evaluated dataset one table (rows = variants), then training results."""
    from ksdiff.evaluate import EvalResult, markdown_table

    s = doc["settings"]
    lines = ["# Ablation (paper Table 3 layout)", "",
             f"Base config {', '.join(f'`{c}`' for c in s['configs'])}; data "
             f"{', '.join(f'`{d}`' for d in s['datasets'])} ({s['spec']}); every variant trained {s['steps']} steps "
             f"with seed {s['seed']}; evaluated on split `{s['eval_split']}` with {s['eval_seeds']} seed(s).", ""]
    ds_names = list(dict.fromkeys(n for r in doc["variants"].values() for n in r["eval"]))
    for dn in ds_names:
        rows = {}
        for v, r in doc["variants"].items():
            if dn in r["eval"]:
                e = r["eval"][dn]
                rows[v] = EvalResult({}, e["mean"], e["info"])
        if len(ds_names) > 1:
            lines += [f"## {dn}", ""]
        lines += [markdown_table(rows, ABLATION_METRICS), ""]
    lines += ["Arrows: ↓ lower is better, ↑ higher is better, →0 closer to zero, →gt closer to the ground-truth row. "
              "lve_mm needs a 3D face model (ICT for arkit, the user's FLAME file for flame).", "",
              "| variant | meaning | steps | final train loss | parameters | generation |",
              "|---|---|---:|---:|---:|---|"]
    for v, r in doc["variants"].items():
        g = r.get("generation") or {}
        gtxt = ", ".join(f"{k}={val}" for k, val in g.items()) or "generator defaults"
        loss = "–" if r.get("final_loss") is None else f"{r['final_loss']:.4f}"
        params = "–" if not r.get("params") else f"{r['params'] / 1e6:.3f} M"
        lines.append(f"| {v} | {r['label']} | {r.get('steps')} | {loss} | {params} | {gtxt} |")
    return "\n".join(lines) + "\n"


__all__ = ["VARIANTS", "TABLE3", "ABLATION_METRICS", "select_variants", "variant_config", "run_ablation",
           "ablation_markdown"]
