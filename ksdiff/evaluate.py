"""Evaluation: generate (or read) motion for every clip of a split and score it with ``ksdiff.metrics``.

Predictors share one call, ``predict(clip, seed) -> Motion``:
- a trained checkpoint (``ksdiff.generate.load_model``),
- a baseline (``static`` / ``energy-jaw``, fitted on the dataset's train split),
- a prediction dataset (motion made by anything else, read from ``PRED/<clip>/motion.npz`` or ``PRED/<clip>.npz``).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ksdiff.audio.envelope import pearson
from ksdiff.data.dataset import Clip, open_dataset
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion, load_motion
from ksdiff.face.specs import ARKIT_MOUTH, get_spec
from ksdiff.utils.io import atomic_path, write_json, write_text

Predictor = Callable[[Clip, int], Motion]

#: metrics reported in tables, in order, with their direction (↓ lower is better, ↑ higher, → closer to gt)
TABLE_METRICS: list[tuple[str, str]] = [
    ("lve_mm", "↓"), ("lve_sq_mm2", "↓"), ("fdd_mm", "→0"), ("mouth_rmse", "↓"), ("jaw_r", "↑"),
    ("env_r", "↑"), ("head_div_deg", "→gt"), ("beat_align", "↑"), ("kf_f1_head", "↑"), ("kf_f1_expr", "↑"),
    ("bilabial_closure", "↑"), ("jitter", "→gt"), ("sample_div", "↑"),
]


@dataclass
class EvalResult:
    per_clip: dict[str, dict[str, float]]
    mean: dict[str, float]
    info: dict = field(default_factory=dict)


def align_to(pred: Motion, gt: Motion) -> np.ndarray:
    """Pred coefficients in gt's channel order, at gt's fps and length (T_gt, C) — missing channels → 0."""
    if abs(pred.fps - gt.fps) > 1e-6:
        pred = pred.resample(gt.fps, num_frames=gt.num_frames)
    out = np.zeros_like(gt.coeffs)
    T = min(pred.num_frames, gt.num_frames)
    for i, ch in enumerate(gt.channels):
        if ch in pred.channels:
            col = pred.coeffs[:, pred.channels.index(ch)]
            out[:T, i] = col[:T]
            if T < gt.num_frames:
                out[T:, i] = col[T - 1] if T else 0.0
    return out


def _face_model(spec: str):
    """The face model for vertex metrics, or None (e.g. flame without the user's FLAME file)."""
    try:
        from ksdiff.face.models import get_face_model

        return get_face_model(spec, face="ict" if spec == "arkit" else "flame")  # never the 2D schematic
    except (ImportError, KsdiffError, FileNotFoundError):
        return None


def score_clip(pred: Motion, gt: Motion, wave: np.ndarray, face=None, samples: list[Motion] | None = None,
               kf_cfg: dict | None = None, phones: list | None = None,
               observed: list[str] | None = None) -> dict[str, float]:
    """Every metric of one clip. ``samples``: further predictions with other seeds (for sample diversity);
    ``phones``: (ARPAbet, start s, end s) timings, for mouth closure at bilabials; ``observed``: the channels the
    ground truth observes (``meta.json`` ``observed_channels``; default all). Unobserved channels are unknown, not
    still: the prediction's values there are replaced by the truth's before any comparison, and head-path metrics
    are skipped when the truth has no head motion."""
    from ksdiff import metrics as M
    from ksdiff.face.keyframes import keyframe_labels

    spec = get_spec(gt.spec)
    P = align_to(pred, gt)
    G = gt.coeffs
    fps = gt.fps
    out: dict[str, float] = {}
    seen = np.ones(len(gt.channels), bool) if observed is None else np.isin(gt.channels, list(observed))
    P_raw = P
    P = np.where(seen[None, :], P, G)  # compare observed channels only
    head_seen = bool(seen[spec.head_rotation_idx].all())
    mouth = [c for c in gt.channels if (c in ARKIT_MOUTH or c.startswith(("exp", "jaw")))]
    mi = [gt.channels.index(c) for c in mouth if seen[gt.channels.index(c)]]
    out["mouth_rmse"] = float(np.sqrt(np.mean((P[:, mi] - G[:, mi]) ** 2))) if mi else math.nan
    out["coeff_rmse"] = float(np.sqrt(np.mean((P[:, seen] - G[:, seen]) ** 2)))
    jaw = "jawOpen" if "jawOpen" in gt.channels else ("jawRotX" if "jawRotX" in gt.channels else None)
    if jaw:
        j = gt.channels.index(jaw)
        out["jaw_r"] = pearson(P[:, j], G[:, j])
        out["env_r"] = M.envelope_correlation(P[:, j], wave, fps)
        out["env_r_gt"] = M.envelope_correlation(G[:, j], wave, fps)
    hr = spec.head_rotation_idx
    out["head_div_deg"] = M.head_diversity([P_raw[:, hr]])
    sb = M.speech_beats(wave, fps, num_frames=len(G))
    out["beat_align"] = M.beat_align(M.motion_beats(P_raw[:, hr], fps), sb)
    kf = kf_cfg or {}
    kp, kg = keyframe_labels(P, spec, **kf), keyframe_labels(G, spec, **kf)
    if head_seen:
        out["head_div_deg_gt"] = M.head_diversity([G[:, hr]])
        out["beat_align_gt"] = M.beat_align(M.motion_beats(G[:, hr], fps), sb)
        out["kf_f1_head"] = M.keyframe_prf(kp[:, 0], kg[:, 0])[2]
    out["kf_f1_expr"] = M.keyframe_prf(kp[:, 1], kg[:, 1])[2]
    out["jitter"] = M.jitter(P, fps)
    out["jitter_gt"] = M.jitter(G, fps)
    if face is not None:
        # vertex metrics in the head's own frame: the rigid head pose (rotation, translation, camera) is set to
        # zero in both, so LVE/FDD measure lips and face, not where the head happens to turn (head motion has its
        # own metrics above)
        rigid = [i for i, c in enumerate(gt.channels)
                 if c in spec.head_rotation or c.startswith(("headT", "cam"))]
        P = P.copy()
        P[:, rigid] = 0.0
        gt = Motion(G.copy(), gt.channels, fps, gt.spec)
        gt.coeffs[:, rigid] = 0.0
        pm = Motion(P, gt.channels, fps, gt.spec)
        # only the vertices the metrics read (lips + upper face), not the whole mesh
        idx = np.union1d(face.lip_vertices, face.upper_face_vertices)
        lip, upper = np.searchsorted(idx, face.lip_vertices), np.searchsorted(idx, face.upper_face_vertices)
        vp, vg = face.vertices(pm, indices=idx), face.vertices(gt, indices=idx)
        out["lve_mm"] = M.lve(vp, vg, lip)
        out["lve_sq_mm2"] = M.lve_squared(vp, vg, lip)
        out["fdd_mm"] = M.fdd(vp, vg, np.asarray(face.neutral)[idx], upper)
    if phones and gt.spec == "arkit":
        cols = [gt.channels.index(c) for c in ("jawOpen", "mouthClose", "mouthPressLeft")]
        out["bilabial_closure"] = M.bilabial_closure(*(P[:, c] for c in cols), phones, fps)
        out["bilabial_closure_gt"] = M.bilabial_closure(*(G[:, c] for c in cols), phones, fps)
    if samples:
        out["sample_div"] = M.sample_diversity([P_raw] + [align_to(s, gt) for s in samples])
    return out


def evaluate(data: str | os.PathLike, predictor: Predictor, split: str = "test", seeds: tuple[int, ...] = (0,),
             out: str | os.PathLike | None = None, name: str = "model", plots: bool = True,
             progress: bool = True) -> EvalResult:
    """Score ``predictor`` on every clip of ``split``; write metrics.json, report.md and plots to ``out``."""
    ds = open_dataset(data)
    clips = list(ds.clips(split))
    if not clips:
        raise KsdiffError(f"split {split!r} has no clips", data)
    face = _face_model(ds.spec)
    per_clip: dict[str, dict[str, float]] = {}
    examples = []
    try:
        from tqdm import tqdm

        it = tqdm(clips, desc=f"evaluate {name}", disable=not progress)
    except ImportError:  # pragma: no cover
        it = clips
    for clip in it:
        gt = clip.motion()
        wave = clip.audio()
        preds = [predictor(clip, s) for s in seeds]
        for p in preds:
            if not np.isfinite(p.coeffs).all():
                raise KsdiffError(f"prediction for clip {clip.id} has NaN/inf values")
        meta = clip.meta()
        per_clip[clip.id] = score_clip(preds[0], gt, wave, face, samples=preds[1:], phones=meta.get("phones"),
                                       observed=meta.get("observed_channels"))
        if plots and len(examples) < 3:
            examples.append((clip.id, preds[0], gt))
    keys = sorted({k for d in per_clip.values() for k in d})
    mean = {k: float(np.nanmean([d[k] for d in per_clip.values() if k in d and not _isnan(d[k])] or [math.nan]))
            for k in keys}
    info = {"name": name, "data": str(ds.root), "split": split, "clips": len(clips), "seeds": list(seeds),
            "spec": ds.spec, "fps": ds.fps, "face_model": type(face).__name__ if face else None,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    res = EvalResult(per_clip, mean, info)
    if out is not None:
        write_report(res, out, examples)
    return res


def _isnan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def markdown_table(results: dict[str, EvalResult], metrics: list[tuple[str, str]] | None = None) -> str:
    """One row per method, one column per metric (those present in any result)."""
    metrics = metrics or TABLE_METRICS
    cols = [(k, d) for k, d in metrics if any(k in r.mean for r in results.values())]
    head = "| method | " + " | ".join(f"{k} {d}" for k, d in cols) + " |"
    sep = "|---|" + "---|" * len(cols)
    rows = []
    for name, r in results.items():
        vals = []
        for k, _ in cols:
            v = r.mean.get(k)
            vals.append("–" if v is None or _isnan(v) else f"{v:.3f}")
        rows.append(f"| {name} | " + " | ".join(vals) + " |")
    gt_row = []
    any_r = next(iter(results.values()))
    for k, _ in cols:
        v = any_r.mean.get(k + "_gt")
        gt_row.append("–" if v is None or _isnan(v) else f"{v:.3f}")
    if any(v != "–" for v in gt_row):
        rows.append("| *ground truth* | " + " | ".join(gt_row) + " |")
    return "\n".join([head, sep] + rows) + "\n"


def write_report(res: EvalResult, out: str | os.PathLike, examples: list | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {"info": res.info, "mean": res.mean, "per_clip": res.per_clip})
    md = [f"# Evaluation: {res.info['name']}", "",
          f"Data `{res.info['data']}` split `{res.info['split']}` ({res.info['clips']} clips, seeds "
          f"{res.info['seeds']}), {res.info['date']}.", "", markdown_table({res.info["name"]: res}), ""]
    if examples:
        (out / "plots").mkdir(exist_ok=True)
        for cid, pred, gt in examples:
            png = out / "plots" / f"{cid}.png"
            plot_example(pred, gt, png, title=f"{res.info['name']} — {cid}")
            md.append(f"![{cid}](plots/{cid}.png)")
    write_text(out / "report.md", "\n".join(md) + "\n")


def plot_example(pred: Motion, gt: Motion, path: str | os.PathLike, title: str = "") -> None:
    """Channel curves predicted vs truth, keyframes, and head trajectories as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ksdiff.face.keyframes import keyframe_labels

    spec = get_spec(gt.spec)
    P = align_to(pred, gt)
    t = np.arange(gt.num_frames) / gt.fps
    want = [c for c in ("jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "browInnerUp", "eyeBlinkLeft",
                        "exp00", "exp01", "jawRotX") if c in gt.channels][:5]
    fig, axes = plt.subplots(len(want) + 1, 1, figsize=(11, 1.6 * (len(want) + 1) + 0.6), sharex=True)
    kg = keyframe_labels(gt.coeffs, spec)
    for ax, ch in zip(axes, want):
        i = gt.channels.index(ch)
        ax.plot(t, gt.coeffs[:, i], color="k", lw=1.2, label="truth")
        ax.plot(t, P[:, i], color="tab:red", lw=1.0, label="prediction")
        ax.set_ylabel(ch, fontsize=8)
        for f in np.flatnonzero(kg[:, 1]):
            ax.axvline(f / gt.fps, color="tab:blue", alpha=0.15, lw=0.8)
    axes[0].legend(loc="upper right", fontsize=7)
    axes[0].set_title(title)
    ax = axes[-1]
    hr = spec.head_rotation_idx
    for k, (c, name) in enumerate(zip(hr, ("pitch x", "yaw y", "roll z"))):
        ax.plot(t, np.degrees(gt.coeffs[:, c]), color=f"C{k}", lw=1.2, label=f"{name} truth")
        ax.plot(t, np.degrees(P[:, c]), color=f"C{k}", lw=1.0, ls="--", label=f"{name} pred")
    for f in np.flatnonzero(kg[:, 0]):
        ax.axvline(f / gt.fps, color="tab:green", alpha=0.25, lw=0.8)
    ax.set_ylabel("head (deg)", fontsize=8)
    ax.set_xlabel("seconds")
    ax.legend(fontsize=6, ncol=3, loc="upper right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- predictors

def baseline_predictor(kind: str, data: str | os.PathLike, fit_split: str = "train") -> Predictor:
    from ksdiff.baselines import fit_baseline

    base = fit_baseline(kind, data, split=fit_split)

    def predict(clip: Clip, seed: int) -> Motion:
        gt = clip.motion(validate=False)  # only its length and fps: the baseline sees the audio alone
        return base.animate(clip.audio(), gt.fps, num_frames=gt.num_frames)

    return predict


def pred_dataset_predictor(pred_dir: str | os.PathLike) -> Predictor:
    root = Path(pred_dir)
    if not root.is_dir():
        raise KsdiffError("prediction folder not found", root)

    def predict(clip: Clip, seed: int) -> Motion:
        for cand in (root / clip.id / "motion.npz", root / f"{clip.id}.npz"):
            if cand.is_file():
                return load_motion(cand)
        raise KsdiffError(f"no prediction for clip {clip.id} (looked for {clip.id}/motion.npz and {clip.id}.npz)",
                          root)

    return predict


def checkpoint_predictor(checkpoint: str | os.PathLike, steps: int | None = None, sampler: str | None = None,
                         use_transcripts: bool = True, **kw) -> Predictor:
    from ksdiff.generate import load_model

    model = load_model(checkpoint)

    def predict(clip: Clip, seed: int) -> Motion:
        text = clip.transcript() if use_transcripts else None
        if text is None and not str(clip.meta().get("language") or "en").lower().startswith("en"):
            text = ""  # as in training: no automatic English transcript for other languages
        opts = {k: v for k, v in (("steps", steps), ("sampler", sampler)) if v is not None}
        m = model.animate(clip.audio(), text=text, seed=seed, **opts, **kw)
        return m

    return predict


def load_result(path: str | os.PathLike) -> EvalResult:
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    return EvalResult(d["per_clip"], d["mean"], d["info"])


__all__ = ["EvalResult", "evaluate", "score_clip", "markdown_table", "baseline_predictor",
           "pred_dataset_predictor", "checkpoint_predictor", "load_result"]
