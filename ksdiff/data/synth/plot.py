"""A picture of one synthetic clip: the main channels over the phone labels (docs/img/synth_sample.png)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ksdiff.data.dataset import open_dataset
from ksdiff.errors import KsdiffError
from ksdiff.utils.io import atomic_path

MAIN_CHANNELS: tuple[str, ...] = ("jawOpen", "mouthClose", "mouthPressLeft", "mouthPucker", "mouthFunnel",
                                  "headRotX", "browInnerUp", "eyeBlinkLeft")


def _draw_phones(axes, lab, phones: list[dict], t_end: float) -> None:
    """Phone labels on ``lab``; /p b m/ shaded red across every axis."""
    k = 0
    for ph in phones:
        s, e = ph["start"], ph["end"]
        if s >= t_end:
            continue
        lab.axvline(s, color="0.85", lw=0.5)
        if ph["phone"] == "SIL":
            continue
        bil = ph["phone"] in ("P", "B", "M")
        if bil:
            for ax in axes:
                ax.axvspan(s, e, color="tab:red", alpha=0.12, lw=0)
        lab.text(0.5 * (s + e), 0.7 if k % 2 == 0 else 0.25, ph["espeak"].replace("'", "ˈ"), ha="center",
                 va="center", fontsize=7, color="tab:red" if bil else "k")
        k += 1


def _draw_channel(ax, name: str, t: np.ndarray, y: np.ndarray, gt: dict, t_end: float) -> None:
    """One channel over time, with pitch accents (head channels) or blink onsets (blink channels)."""
    ax.plot(t, y, ".-", lw=1.0, ms=2.5)
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    if name.startswith("head"):
        for a, _ in gt.get("accents", []):
            if a <= t_end:
                ax.axvline(a, color="tab:green", lw=0.8, alpha=0.7)
    elif name.startswith("eyeBlink"):
        for b in gt.get("blinks", []):
            if b <= t_end:
                ax.axvline(b, color="tab:purple", lw=0.8, alpha=0.7)
    else:
        ax.set_ylim(-0.02, max(0.3, float(y.max()) * 1.1))
    ax.grid(alpha=0.3)


def plot_clip(dataset: str | os.PathLike, clip_id: str | None, path: str | os.PathLike,
              channels: tuple[str, ...] = MAIN_CHANNELS, seconds: float | None = None) -> Path:
    """Plot ``channels`` of one clip (the first of the dataset when ``clip_id`` is None) over its waveform, phone
    labels, pitch accents and blinks; write a PNG atomically to ``path``. ``seconds`` limits the time span."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = open_dataset(dataset)
    ids = ds.clip_ids()
    if not ids:
        raise KsdiffError("dataset has no clips", ds.root)
    clip = ds.clip(clip_id or sorted(ids)[0])
    m = clip.motion()
    wave = clip.audio()
    gt_path = clip.root / "phones.json"
    gt = json.loads(gt_path.read_text(encoding="utf-8")) if gt_path.is_file() else {"phones": []}
    t_end = m.duration if seconds is None else min(seconds, m.duration)
    t = np.arange(m.num_frames) / m.fps
    sel = t <= t_end
    fig, axes = plt.subplots(len(channels) + 2, 1, figsize=(14, 1.2 * (len(channels) + 2) + 0.6), sharex=True,
                             gridspec_kw={"height_ratios": [1.2, 0.6] + [1.0] * len(channels)})
    ta = np.arange(len(wave)) / 16000.0
    axes[0].plot(ta[ta <= t_end], wave[ta <= t_end], lw=0.4, color="0.3")
    axes[0].set_ylabel("audio", rotation=0, ha="right", va="center")
    lab = axes[1]
    lab.set_ylim(0, 1)
    lab.set_yticks([])
    lab.set_ylabel("phones", rotation=0, ha="right", va="center")
    _draw_phones(axes, lab, gt["phones"], t_end)
    for ax, name in zip(axes[2:], channels):
        _draw_channel(ax, name, t[sel], m.channel(name)[sel], gt, t_end)
    axes[-1].set_xlabel("seconds  (red bands: /p b m/; green lines: pitch accents; purple: blink onsets)")
    meta = clip.meta()
    fig.suptitle(f"{clip.id}  ({meta.get('speaker')}, espeak {meta.get('voice')} {meta.get('rate')} wpm): "
                 f"{(clip.transcript() or '')[:110]}", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
