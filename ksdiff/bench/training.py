"""Training benchmark (``ksdiff bench train``): seconds per optimizer step, parameter counts and FLOPs per step.

The batches are random tensors of the shapes the trainer feeds (speech features at the encoder's rate and size,
prosody, motion of the face spec at the model fps, keyframe bits, transcript tokens): speed does not depend on the
values. Each step is what ``ksdiff.train.loop`` does: forward + loss, backward, gradient clipping, AdamW, EMA.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import torch
from torch import Tensor

from ksdiff.bench.common import (ModelSource, build_model, count_flops, describe_source, fmt, machine_info,
                                 matmul_gflops, peak_rss_mb, reset_peak_rss, resolve_run_config)
from ksdiff.errors import KsdiffError

TOKENS_PER_SECOND = 12.0  # transcript tokens per second of a crop (phonemes)


def synthetic_batch(model: Any, batch: int, crop_s: float, generator: torch.Generator,
                    keyframe_rate: float = 0.1) -> dict[str, Tensor]:
    """A training batch of random values with the trainer's shapes (all frames valid).

    Returns feats (B, N', F), prosody (B, N', 2), feat_mask (B, N'), motion (B, T, C), motion_mask (B, T),
    keyframes (B, T, 2) {0, 1}, tokens (B, L), token_mask (B, L); T = crop x fps, N' = crop x 50 Hz.
    """
    fps, rate = float(model.cfg.fps), float(model.cfg.feat_rate)
    B = int(batch)
    T = max(2, int(round(crop_s * fps)))
    N = int(round(T * rate / fps))
    L = max(1, int(round(crop_s * TOKENS_PER_SECOND)))
    vocab = int(model.cfg.text.vocab_size)
    tokens = torch.randint(3, max(4, vocab), (B, L), generator=generator)
    return {"feats": torch.randn(B, N, model.feat_dim, generator=generator),
            "prosody": torch.randn(B, N, 2, generator=generator),
            "feat_mask": torch.ones(B, N, dtype=torch.bool),
            "motion": torch.randn(B, T, model.spec.dim, generator=generator),
            "motion_mask": torch.ones(B, T, dtype=torch.bool),
            "keyframes": (torch.rand(B, T, 2, generator=generator) < keyframe_rate).float(),
            "tokens": tokens, "token_mask": torch.ones(B, L, dtype=torch.bool)}


def bench_train(sources: list[ModelSource], batch: int = 32, crop_s: float = 4.0, steps: int = 5,
                threads: int | None = None, progress: Callable[[str], None] | None = print) -> dict:
    """Time ``steps`` training steps (after one warm-up step) of each model on random batches.

    Returns:
        {"machine", "matmul_gflops", "batch", "crop_s", "sources": [{"label", "description", "params",
        "sec_per_step" (median), "sec_per_step_mean", "steps_per_s", "audio_s_per_s", "flops_per_step",
        "floor_sec_per_step", "peak_rss_mb", "loss"}]}
    """
    if steps < 1 or batch < 1 or crop_s <= 0:
        raise KsdiffError(f"--steps and --batch must be at least 1 and --crop positive "
                          f"(got {steps}, {batch}, {crop_s})")
    if threads:
        torch.set_num_threads(int(threads))
    say = progress or (lambda _m: None)
    out: dict[str, Any] = {"machine": machine_info(), "batch": batch, "crop_s": crop_s, "steps": steps}
    out["matmul_gflops"] = matmul_gflops()
    say(f"matmul rate: {out['matmul_gflops']:.1f} GFLOP/s fp32 ({torch.get_num_threads()} threads)")
    out["sources"] = []
    for src in sources:
        entry = _bench_source(src, batch, crop_s, steps, out["matmul_gflops"], say)
        out["sources"].append(entry)
    return out


class _Trainer:
    """One model with the trainer's optimiser (AdamW over ``param_groups``), gradient clipping and EMA, taking
    its settings from the source's run config (a checkpoint: the defaults)."""

    def __init__(self, src: ModelSource):
        from ksdiff.train.ema import EMA
        from ksdiff.train.loop import param_groups

        cfg = resolve_run_config(src) if src.random_init else None
        self.model, _ = build_model(src)
        self.model.train()
        tc = cfg.train if cfg is not None else None
        lr = tc.lr if tc else 1e-4
        wd = tc.weight_decay if tc else 0.01
        self.clip = tc.grad_clip if tc else 1.0
        self.opt = torch.optim.AdamW(param_groups(self.model, wd), lr=lr)
        self.ema = EMA(self.model, tc.ema_decay if tc else 0.999)

    def forward_backward(self, data: dict[str, Tensor]) -> Tensor:
        """Loss and gradients of one batch; returns the loss."""
        loss = self.model.training_loss(data)["loss"]
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def step(self, data: dict[str, Tensor]) -> float:
        """One training step as ``ksdiff.train.loop`` makes it; returns the loss."""
        loss = self.forward_backward(data)
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.ema.update(self.model)
        return float(loss.detach())


def _bench_source(src: ModelSource, batch: int, crop_s: float, steps: int, matmul_gflops: float,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """Time ``steps`` training steps of one model after a warm-up step, and count its FLOPs; one entry of
    :func:`bench_train`'s ``sources``. The model and optimiser are freed on return."""
    tr = _Trainer(src)
    g = torch.Generator().manual_seed(int(src.seed))
    data = synthetic_batch(tr.model, batch, crop_s, g)
    say(f"{src.label}: warm-up step ...")
    tr.step(data)
    reset_peak_rss()
    times, losses = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        losses.append(tr.step(data))
        times.append(time.perf_counter() - t0)
    peak = peak_rss_mb()
    flops = count_flops(lambda: tr.forward_backward(data))
    tr.opt.zero_grad(set_to_none=True)
    med = statistics.median(times)
    entry = {"label": src.label, "description": describe_source(src), "params": tr.model.num_parameters(),
             "sec_per_step": med, "sec_per_step_mean": statistics.fmean(times), "steps_per_s": 1.0 / med,
             "audio_s_per_s": batch * crop_s / med, "flops_per_step": flops,
             "floor_sec_per_step": flops / (matmul_gflops * 1e9), "peak_rss_mb": peak,
             "loss": losses[-1], "times": times}
    say(f"  {med:.3f} s/step ({1.0 / med:.2f} steps/s), {flops / 1e9:.1f} GFLOP/step, "
        f"{entry['params']['total'] / 1e6:.2f} M parameters")
    return entry


def markdown(res: dict) -> str:
    """The results as one Markdown table plus notes."""
    lines = ["| model | parameters | DPSE | text | KEL | denoisers | batch | s / step | steps / s | "
             "audio s / s | GFLOP / step | floor s / step | peak RSS |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for e in res["sources"]:
        p = e["params"]
        m = lambda k: f"{p.get(k, 0) / 1e6:.2f} M"  # noqa: E731
        lines.append(f"| {e['label']} | {m('total')} | {m('dpse')} | {m('text')} | {m('kel')} | {m('denoisers')} | "
                     f"{res['batch']} × {res['crop_s']:g} s | {fmt(e['sec_per_step'])} | {fmt(e['steps_per_s'])} | "
                     f"{fmt(e['audio_s_per_s'])} | {fmt(e['flops_per_step'] / 1e9)} | "
                     f"{fmt(e['floor_sec_per_step'])} | {e['peak_rss_mb']:.0f} MiB |")
    notes = ["", f"Median of {res['steps']} timed steps after one warm-up step (forward + loss, backward, gradient "
             "clipping, AdamW, EMA) on random batches of the trainer's shapes. Floor = FLOPs of forward + backward "
             f"(torch FlopCounterMode) / measured matmul rate ({res['matmul_gflops']:.1f} GFLOP/s fp32)."]
    notes += [f"- {e['description']}" for e in res["sources"]]
    return "\n".join(lines + notes) + "\n"
