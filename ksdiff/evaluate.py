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

from ksdiff.audio.decode import SAMPLE_RATE
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
    ("env_r", "↑"), ("artic_ratio", "→1"), ("artic_r", "↑"), ("head_div_deg", "→gt"), ("beat_align", "↑"), ("kf_f1_head", "↑"), ("kf_f1_expr", "↑"),
    ("bilabial_closure", "↑"), ("jitter", "→gt"), ("sample_div", "↑"),
]


@dataclass
class EvalResult:
    per_clip: dict[str, dict[str, float]]
    mean: dict[str, float]
    info: dict = field(default_factory=dict)


def align_to(pred: Motion, gt: Motion) -> np.ndarray:
    """Pred coefficients in gt's channel order, at gt's fps and length (T_gt, C) — missing channels → 0.

    A prediction of another length is trimmed, or padded by repeating its last frame; :func:`fit_prediction`
    decides beforehand whether the lengths are close enough for that.
    """
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


def length_tolerance(truth_frames: int) -> int:
    """Frames a prediction may differ from the truth's length and still be scored without ``--align-lengths``:
    2 frames + 1 % of the truth's frames. A dataset lets a clip's motion differ from its audio by 1 frame + 1 %
    (:func:`ksdiff.face.motion.motion_problems`) and a prediction made from the audio rounds its length by up to
    half a frame, so such a prediction always fits; half or double the length never does."""
    return int(2 + 0.01 * truth_frames)


def fit_prediction(pred: Motion, gt: Motion, source: str | os.PathLike | None = None, clip: str = "",
                   observed: list[str] | None = None, align_lengths: bool = False) -> tuple[Motion, dict[str, int]]:
    """Check that ``pred`` can be scored against ``gt``; -> (pred at gt's fps, its length fit).

    Refused (:class:`KsdiffError` naming ``source``, the prediction file or checkpoint): another face spec, a
    channel the truth observes missing, NaN/inf values, or a length differing from the truth's by more than
    :func:`length_tolerance` (unless ``align_lengths``: then it is padded with its last frame or trimmed).

    Returns:
        (pred resampled to gt's fps, {``pred_frames``, ``truth_frames``, ``padded``, ``trimmed``}) —
        ``pred_frames`` at gt's fps; :func:`align_to` then pads or trims by that many frames.
    """
    what = f"prediction for clip {clip}" if clip else "prediction"
    if pred.spec and gt.spec and pred.spec != gt.spec:
        raise KsdiffError(f"{what} is {pred.spec!r} motion but the truth is {gt.spec!r}: score predictions in "
                          f"the dataset's face spec ({gt.spec})", source)
    need = gt.channels if observed is None else [c for c in gt.channels if c in set(observed)]
    missing = [c for c in need if c not in pred.channels]
    if missing:
        raise KsdiffError(f"{what} lacks {len(missing)} of the truth's channels ({', '.join(missing[:5])}"
                          f"{' ...' if len(missing) > 5 else ''})", source)
    if not np.isfinite(pred.coeffs).all():
        raise KsdiffError(f"{what} has NaN/inf values", source)
    native = pred
    if abs(pred.fps - gt.fps) > 1e-6:
        pred = pred.resample(gt.fps)
    n, m = pred.num_frames, gt.num_frames
    if not align_lengths and abs(n - m) > length_tolerance(m):
        at = f" at {native.fps:g} fps = {n} at {gt.fps:g} fps" if native is not pred else ""
        raise KsdiffError(f"{what} has {native.num_frames} frames{at} ({n / gt.fps:.2f} s) but the truth has {m} "
                          f"({m / gt.fps:.2f} s); lengths may differ by {_frames(length_tolerance(m))} at most "
                          "(pass --align-lengths to pad or trim it)", source)
    return pred, {"pred_frames": n, "truth_frames": m, "padded": max(0, m - n), "trimmed": max(0, n - m)}


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
    are skipped when the truth has no head motion. ``pred`` is fitted to gt's fps and length by :func:`align_to`
    (check it with :func:`fit_prediction` first)."""
    from ksdiff import metrics as M

    P_raw = align_to(pred, gt)  # (T, C) in gt's channel order
    G = gt.coeffs
    seen = np.ones(len(gt.channels), bool) if observed is None else np.isin(gt.channels, list(observed))
    P = np.where(seen[None, :], P_raw, G)  # compare observed channels only
    out = _coeff_metrics(P, G, gt, wave, seen)
    out.update(_head_metrics(P, P_raw, G, gt, wave, seen, kf_cfg or {}))
    out["jitter"] = M.jitter(P, gt.fps)
    out["jitter_gt"] = M.jitter(G, gt.fps)
    if face is not None:
        out.update(_vertex_metrics(P, gt, face))
    if phones and gt.spec == "arkit":
        cols = [gt.channels.index(c) for c in ("jawOpen", "mouthClose", "mouthPressLeft")]
        out["bilabial_closure"] = M.bilabial_closure(*(P[:, c] for c in cols), phones, gt.fps)
        out["bilabial_closure_gt"] = M.bilabial_closure(*(G[:, c] for c in cols), phones, gt.fps)
    if samples:
        out["sample_div"] = M.sample_diversity([P_raw] + [align_to(s, gt) for s in samples])
    return out


def _coeff_metrics(P: np.ndarray, G: np.ndarray, gt: Motion, wave: np.ndarray, seen: np.ndarray) -> dict[str, float]:
    """Coefficient-space metrics: mouth and overall RMSE, jaw correlation with the truth and with the speech
    envelope. P, G: (T, C) prediction (unobserved channels already the truth's) and truth; seen: (C,) bool."""
    from ksdiff import metrics as M

    out: dict[str, float] = {}
    mouth = [c for c in gt.channels if (c in ARKIT_MOUTH or c.startswith(("exp", "jaw")))]
    mi = [gt.channels.index(c) for c in mouth if seen[gt.channels.index(c)]]
    out["mouth_rmse"] = float(np.sqrt(np.mean((P[:, mi] - G[:, mi]) ** 2))) if mi else math.nan
    keep = [c for i, c in enumerate(gt.channels) if seen[i]]
    art = M.articulation(P[:, seen], G[:, seen], keep)
    out["artic_ratio"], out["artic_r"] = art["ratio"], art["r"]
    out["coeff_rmse"] = float(np.sqrt(np.mean((P[:, seen] - G[:, seen]) ** 2)))
    jaw = "jawOpen" if "jawOpen" in gt.channels else ("jawRotX" if "jawRotX" in gt.channels else None)
    if jaw:
        j = gt.channels.index(jaw)
        out["jaw_r"] = pearson(P[:, j], G[:, j])
        out["env_r"] = M.envelope_correlation(P[:, j], wave, gt.fps)
        out["env_r_gt"] = M.envelope_correlation(G[:, j], wave, gt.fps)
    return out


def _head_metrics(P: np.ndarray, P_raw: np.ndarray, G: np.ndarray, gt: Motion, wave: np.ndarray, seen: np.ndarray,
                  kf_cfg: dict) -> dict[str, float]:
    """Head diversity, beat alignment and keyframe F1 (those against the truth only where it observes the head).
    P_raw: (T, C) the prediction before unobserved channels were replaced."""
    from ksdiff import metrics as M
    from ksdiff.face.keyframes import keyframe_labels

    spec = get_spec(gt.spec)
    fps, hr = gt.fps, spec.head_rotation_idx
    out: dict[str, float] = {"head_div_deg": M.head_diversity([P_raw[:, hr]])}
    sb = M.speech_beats(wave, fps, num_frames=len(G))
    out["beat_align"] = M.beat_align(M.motion_beats(P_raw[:, hr], fps), sb)
    kp, kg = keyframe_labels(P, spec, **kf_cfg), keyframe_labels(G, spec, **kf_cfg)
    if bool(seen[hr].all()):
        out["head_div_deg_gt"] = M.head_diversity([G[:, hr]])
        out["beat_align_gt"] = M.beat_align(M.motion_beats(G[:, hr], fps), sb)
        out["kf_f1_head"] = M.keyframe_prf(kp[:, 0], kg[:, 0])[2]
    out["kf_f1_expr"] = M.keyframe_prf(kp[:, 1], kg[:, 1])[2]
    return out


def _vertex_metrics(P: np.ndarray, gt: Motion, face) -> dict[str, float]:
    """LVE, squared LVE and FDD on the face model's vertices, in the head's own frame: the rigid head pose
    (rotation, translation, camera) is set to zero in both, so they measure lips and face, not where the head
    happens to turn (head motion has its own metrics)."""
    from ksdiff import metrics as M

    spec = get_spec(gt.spec)
    rigid = [i for i, c in enumerate(gt.channels) if c in spec.head_rotation or c.startswith(("headT", "cam"))]
    P = P.copy()
    P[:, rigid] = 0.0
    G = gt.coeffs.copy()
    G[:, rigid] = 0.0
    pm, gm = Motion(P, gt.channels, gt.fps, gt.spec), Motion(G, gt.channels, gt.fps, gt.spec)
    # only the vertices the metrics read (lips + upper face), not the whole mesh
    idx = np.union1d(face.lip_vertices, face.upper_face_vertices)
    lip, upper = np.searchsorted(idx, face.lip_vertices), np.searchsorted(idx, face.upper_face_vertices)
    vp, vg = face.vertices(pm, indices=idx), face.vertices(gm, indices=idx)
    return {"lve_mm": M.lve(vp, vg, lip), "lve_sq_mm2": M.lve_squared(vp, vg, lip),
            "fdd_mm": M.fdd(vp, vg, np.asarray(face.neutral)[idx], upper)}


def evaluate(data: str | os.PathLike, predictor: Predictor, split: str = "test", seeds: tuple[int, ...] = (0,),
             out: str | os.PathLike | None = None, name: str = "model", plots: bool = True,
             progress: bool = True, align_lengths: bool = False) -> EvalResult:
    """Score ``predictor`` on every clip of ``split``; write metrics.json, report.md and plots to ``out``.

    Every prediction is checked against its truth first (:func:`fit_prediction`): another face spec, missing
    channels, NaN/inf or another length (beyond :func:`length_tolerance`, unless ``align_lengths``) are refused
    with the prediction's file (or checkpoint) named. ``info["length_fits"]`` lists every clip whose prediction
    was padded or trimmed, and by how many frames.
    """
    ds = open_dataset(data)
    clips = list(ds.clips(split))
    if not clips:
        counts = ", ".join(f"{k} {len(v)}" for k, v in ds.splits.items())
        raise KsdiffError(f"split {split!r} has no clips ({counts}); --split all scores every clip (a dataset of "
                          f"fewer than 3 clips puts them all in train)", data)
    preds, fits = _predict_all(predictor, clips, seeds, align_lengths, name, progress)  # checked before scoring
    face = _face_model(ds.spec)
    per_clip: dict[str, dict[str, float]] = {}
    examples = []
    pooled: list[tuple[np.ndarray, np.ndarray, set[str]]] = []  # for the split's articulation
    skip = getattr(predictor, "skip_frames", None)  # frames a reference protocol took from the clip itself
    for clip in clips:
        gt, meta, wave, ps = clip.motion(), clip.meta(), clip.audio(), preds[clip.id]
        k = int(skip(clip, gt)) if skip is not None else 0
        if k:
            gt, ps, wave = _drop_head(gt, k), [_drop_head(Motion(align_to(p, gt), gt.channels, gt.fps, gt.spec), k)
                                               for p in ps], \
                wave[int(round(k / gt.fps * SAMPLE_RATE)):]
        per_clip[clip.id] = score_clip(ps[0], gt, wave, face, samples=ps[1:], phones=None if k else meta.get("phones"),
                                       observed=meta.get("observed_channels"))
        pooled.append((align_to(ps[0], gt), gt.coeffs, set(meta.get("observed_channels") or gt.channels)))
        if plots and len(examples) < 3:
            examples.append((clip.id, preds[clip.id][0], gt))
    art = _split_articulation(pooled, list(gt.channels))
    keys = sorted({k for d in per_clip.values() for k in d})
    mean = {k: float(np.nanmean([d[k] for d in per_clip.values() if k in d and not _isnan(d[k])] or [math.nan]))
            for k in keys}
    info = {"name": name, "data": str(ds.root), "split": split, "clips": len(clips), "seeds": list(seeds),
            **({"reference": dict(predictor.references)} if getattr(predictor, "references", None) else {}),
            "spec": ds.spec, "fps": ds.fps, "face_model": type(face).__name__ if face else None,
            "align_lengths": bool(align_lengths), "length_fits": fits, "articulation": art,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    res = EvalResult(per_clip, mean, info)
    if out is not None:
        write_report(res, out, examples)
    return res


def _drop_head(m: Motion, k: int) -> Motion:
    """``m`` without its first ``k`` frames."""
    return Motion(m.coeffs[k:], m.channels, m.fps, m.spec)


def _split_articulation(pooled: list[tuple[np.ndarray, np.ndarray, set[str]]], channels: list[str]) -> dict:
    """Articulation over the whole split, every clip's frames pooled: (prediction, truth, observed channels) per
    clip, in ``channels``' order; only the channels every clip observes."""
    from ksdiff.metrics import articulation

    observed = [c for c in channels if all(c in seen for _, _, seen in pooled)]
    idx = [channels.index(c) for c in observed]
    return articulation(np.concatenate([p[:, idx] for p, _, _ in pooled]),
                        np.concatenate([g[:, idx] for _, g, _ in pooled]), observed)


def _predict_all(predictor: Predictor, clips: list[Clip], seeds: tuple[int, ...], align_lengths: bool, name: str,
                 progress: bool) -> tuple[dict[str, list[Motion]], dict[str, dict[str, int]]]:
    """Every clip's predictions (one per seed), each checked by :func:`fit_prediction` before any is scored, so a
    bad prediction file stops the run at once -> ({clip: [Motion at the truth's fps]}, {clip: length fit} for the
    clips whose prediction was padded or trimmed)."""
    preds: dict[str, list[Motion]] = {}
    fits: dict[str, dict[str, int]] = {}
    for clip in _progress(clips, f"evaluate {name}", progress):
        gt = clip.motion()
        observed = clip.meta().get("observed_channels")
        preds[clip.id] = []
        for seed in seeds:
            pred, fit = fit_prediction(predictor(clip, seed), gt, _source(predictor, clip), clip.id, observed,
                                       align_lengths)
            preds[clip.id].append(pred)
            if fit["padded"] or fit["trimmed"]:
                fits.setdefault(clip.id, fit)
    return preds, fits


def _progress(items: list, desc: str, show: bool):
    """``items`` with a progress bar on a terminal (none when ``show`` is False or stderr is not a terminal)."""
    try:
        from tqdm import tqdm

        return tqdm(items, desc=desc, disable=True if not show else None)
    except ImportError:  # pragma: no cover
        return items


def _source(predictor: Predictor, clip: Clip) -> str | None:
    """The file a predictor's motion for ``clip`` comes from (its ``source(clip)``), for error messages."""
    source = getattr(predictor, "source", None)
    return None if source is None else source(clip)


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


def compare_results(a: EvalResult, b: EvalResult) -> list[dict]:
    """Two methods scored on the same clips, paired clip by clip over :data:`TABLE_METRICS`
    (:func:`ksdiff.utils.stats.paired_comparison`: B − A with a 95 % bootstrap interval over the clips)."""
    from ksdiff.utils.stats import paired_comparison

    return paired_comparison(a.per_clip, b.per_clip, [k for k, _ in TABLE_METRICS])


def write_report(res: EvalResult, out: str | os.PathLike, examples: list | None = None) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", {"info": res.info, "mean": res.mean, "per_clip": res.per_clip})
    md = [f"# Evaluation: {res.info['name']}", "",
          f"Data `{res.info['data']}` split `{res.info['split']}` ({res.info['clips']} clips, seeds "
          f"{res.info['seeds']}), {res.info['date']}.", "", markdown_table({res.info["name"]: res}), ""]
    md += _length_fit_lines(res.info)
    md += _articulation_lines(res.info.get("articulation"))
    if examples:
        (out / "plots").mkdir(exist_ok=True)
        for cid, pred, gt in examples:
            png = out / "plots" / f"{cid}.png"
            plot_example(pred, gt, png, title=f"{res.info['name']} — {cid}")
            md.append(f"![{cid}](plots/{cid}.png)")
    write_text(out / "report.md", "\n".join(md) + "\n")


def _articulation_lines(art: dict | None) -> list[str]:
    """The report's per-channel articulation table (every clip pooled)."""
    if not art or not art.get("channels"):
        return []
    out = [f"Articulation (all clips pooled; mouth channels moving in the truth): median std ratio "
           f"{art['ratio']:.2f}, median r {art['r']:.2f}.", "",
           "| channel | truth std | predicted std | ratio | r |", "|---|---:|---:|---:|---:|"]
    for name, v in sorted(art["channels"].items(), key=lambda kv: -kv[1]["truth_std"]):
        out.append(f"| {name} | {v['truth_std']:.3f} | {v['pred_std']:.3f} | {v['std_ratio']:.2f} | {v['r']:.2f} |")
    return out + [""]


def _frames(n: int) -> str:
    return f"{n} frame" if n == 1 else f"{n} frames"


def _length_fit_lines(info: dict) -> list[str]:
    """The report's note on predictions padded or trimmed to the truth's length (none: no lines)."""
    fits = info.get("length_fits") or {}
    if not fits:
        return []
    why = "--align-lengths" if info.get("align_lengths") else "within the tolerance of 2 frames + 1 %"
    out = [f"Lengths: {len(fits)} of {info['clips']} predictions were fitted to the truth's length ({why}; "
           "padding repeats the last frame):", ""]
    for cid, f in fits.items():
        change = f"{_frames(f['padded'])} padded" if f["padded"] else f"{_frames(f['trimmed'])} trimmed"
        out.append(f"- `{cid}`: {f['pred_frames']} -> {f['truth_frames']} frames ({change})")
    return out + [""]


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
    """Motion made by anything else: ``PRED/<clip>/motion.npz`` or ``PRED/<clip>.npz``."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise KsdiffError("prediction folder not found", root)

    def source(clip: Clip) -> Path:
        for cand in (root / clip.id / "motion.npz", root / f"{clip.id}.npz"):
            if cand.is_file():
                return cand
        raise KsdiffError(f"no prediction for clip {clip.id} (looked for {clip.id}/motion.npz and {clip.id}.npz)",
                          root)

    def predict(clip: Clip, seed: int) -> Motion:
        return load_motion(source(clip))

    predict.source = source  # type: ignore[attr-defined]
    return predict


#: the least of a test clip left to score when its own first seconds are its reference (``ReferenceProtocol``)
MIN_SCORED_S = 1.0


class ReferenceProtocol:
    """Which reference each test clip gets under a protocol (``none``; ``other``: the person's (``meta.json``
    person, else speaker; ``people`` {clip id: person} overrides) other clip of the dataset, first in name order,
    else as ``self``; ``self``: the first ``seconds`` of the clip's own motion (at most its length minus
    :data:`MIN_SCORED_S`, at least the model's 2 s minimum), which are then left out of the score). Chosen once per clip; :attr:`references` records what each clip got (clip id → ``other:<id>`` or
    ``self:<s>s``). The same object makes a baseline skip the frames a model's reference took, so both are
    scored on the same frames."""

    def __init__(self, kind: str = "none", seconds: float = 4.0, people: dict[str, str] | None = None) -> None:
        if kind not in ("none", "other", "self"):
            raise KsdiffError(f"reference must be none, other or self, got {kind!r}")
        self.kind, self.seconds, self.people = kind, seconds, people
        self.references: dict[str, str] = {}
        self._chosen: dict[str, tuple[Motion | None, int]] = {}
        self._sources: dict[str, Clip] = {}  # the clip each reference (and its audio) came from

    def __call__(self, clip: Clip) -> tuple[Motion | None, int]:
        """(reference motion or None, frames of the clip itself it takes)."""
        if self.kind == "none":
            return None, 0
        if clip.id not in self._chosen:
            other = _other_clip(clip, self.people) if self.kind == "other" else None
            self._sources[clip.id] = clip if other is None else other
            if other is not None:
                self.references[clip.id] = f"other:{other.id}"
                self._chosen[clip.id] = (other.motion(), 0)
            else:
                from ksdiff.generate import MIN_REFERENCE_S

                gt = clip.motion()
                secs = min(self.seconds, gt.duration - MIN_SCORED_S)  # a short clip gives less, keeps 1 s to score
                if secs < MIN_REFERENCE_S:
                    raise KsdiffError(f"clip {clip.id} lasts {gt.duration:.1f} s: too short to give "
                                      f"{MIN_REFERENCE_S:g} s of itself as the reference and keep {MIN_SCORED_S:g} s "
                                      "to score", clip.root)
                k = int(round(secs * gt.fps))
                self.references[clip.id] = f"self:{k / gt.fps:g}s"
                self._chosen[clip.id] = (Motion(gt.coeffs[:k], gt.channels, gt.fps, gt.spec), k)
        return self._chosen[clip.id]

    def audio(self, clip: Clip) -> tuple[np.ndarray | None, str | None]:
        """The reference's own speech (16 kHz wave, the reference's span of its clip) and transcript (None:
        unknown; ``""`` for a clip in another language than English, as in training), or (None, None)."""
        ref, k = self(clip)
        if ref is None:
            return None, None
        src = self._sources[clip.id]
        if k:  # the clip's own first frames: their span of its audio; no transcript of that span
            return src.audio()[: int(round(k / ref.fps * SAMPLE_RATE))], _as_trained(src, None)
        return src.audio(), _as_trained(src, src.transcript())

    def attach(self, predict: Predictor) -> Predictor:
        """``predict`` scored without the frames the reference took (``skip_frames``), recording the choices."""
        if self.kind != "none":
            predict.skip_frames = lambda clip, gt: self(clip)[1]  # type: ignore[attr-defined]
            predict.references = self.references  # type: ignore[attr-defined]
        return predict


def reference_mean_predictor(protocol: ReferenceProtocol) -> Predictor:
    """The ``reference`` baseline: every frame is the mean pose of the clip's reference (the person's resting face
    as the reference shows it, no speech), under the same protocol as the model it is compared with."""
    if protocol.kind == "none":
        raise KsdiffError("the reference baseline needs a reference protocol (--reference other|self)")

    def predict(clip: Clip, seed: int) -> Motion:
        ref, _ = protocol(clip)
        gt = clip.motion(validate=False)
        coeffs = ref.coeffs if ref.channels == gt.channels else ref.select(gt.channels)
        mean = np.asarray(coeffs, np.float64).mean(axis=0, keepdims=True)
        return Motion(np.repeat(mean, gt.num_frames, axis=0).astype(np.float32), gt.channels, gt.fps, gt.spec)

    return protocol.attach(predict)


def checkpoint_predictor(checkpoint: str | os.PathLike, steps: int | None = None, sampler: str | None = None,
                         use_transcripts: bool = True, protocol: ReferenceProtocol | None = None,
                         use_reference: bool = True, use_reference_audio: bool = True, **kw) -> Predictor:
    """A checkpoint's predictions; ``protocol`` (models with a style encoder): the :class:`ReferenceProtocol` that
    gives each clip its reference (``predict.skip_frames`` the frames a ``self`` reference takes,
    ``predict.references`` what each clip got) and the reference's audio (``use_reference_audio=False``: the
    motion alone, as from a Live Link CSV). ``use_reference=False``: generated without the reference, scored on
    the same frames (the model's no-reference side of the comparison)."""
    from ksdiff.generate import load_model

    protocol = ReferenceProtocol() if protocol is None else protocol
    model = load_model(checkpoint)

    def predict(clip: Clip, seed: int) -> Motion:
        text = _as_trained(clip, clip.transcript() if use_transcripts else None)
        opts = {k: v for k, v in (("steps", steps), ("sampler", sampler)) if v is not None}
        ref = protocol(clip)[0] if use_reference else None
        if ref is not None and use_reference_audio:
            opts["reference_audio"], opts["reference_text"] = protocol.audio(clip)
        return model.animate(clip.audio(), text=text, seed=seed, reference=ref, **opts, **kw)

    predict.source = lambda clip: model.path  # type: ignore[attr-defined]
    return protocol.attach(predict)


def _as_trained(clip: Clip, text: str | None) -> str | None:
    """The transcript a model gets for ``clip``'s audio: ``text``; when it is None (unknown), "" for a clip in
    another language than English, as in training (no automatic English transcript), else None (automatic)."""
    if text is None and not str(clip.meta().get("language") or "en").lower().startswith("en"):
        return ""
    return text


def _other_clip(clip: Clip, people: dict[str, str] | None = None) -> Clip | None:
    """Another clip of the same person in the clip's dataset (any split; first in name order), or None."""
    ds = open_dataset(clip.root.parent)

    def person(c: Clip) -> str | None:
        if people is not None:
            return people.get(c.id)
        m = c.meta()
        return m.get("person") or m.get("speaker")

    who = person(clip)
    if not who:
        return None
    return next((ds.clip(cid) for cid in sorted(ds.clip_ids()) if cid != clip.id and person(ds.clip(cid)) == who),
                None)


def load_result(path: str | os.PathLike) -> EvalResult:
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    return EvalResult(d["per_clip"], d["mean"], d["info"])


__all__ = ["EvalResult", "evaluate", "compare_results", "score_clip", "fit_prediction", "length_tolerance",
           "markdown_table", "baseline_predictor", "pred_dataset_predictor", "checkpoint_predictor", "load_result",
           "ReferenceProtocol", "reference_mean_predictor"]
