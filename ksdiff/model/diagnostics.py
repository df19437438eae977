"""Does the model listen? Two diagnostics of how a KSDiff model uses its speech input (issue: "the full model
learns"), logged at validation and usable on any checkpoint.

- :func:`speech_dependence`: the diffusion loss with each clip's speech features shuffled in time minus the loss
  with the true ones, at the same diffusion steps and noise. A model that reads *when* things are said loses
  accuracy when the timing is destroyed (> 0); a model that ignores speech, or only reads *what* is said, does not
  (≈ 0).
- :func:`attention_mass`: per path, the share of each denoiser layer's cross-attention that falls on the two prefix
  tokens (time, style), on the frame's aligned speech key, and on the transcript tokens (with
  ``text_attention = "gated"``, the text has its own sublayer: its gate |tanh g| is reported instead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ksdiff.model.denoiser import NUM_PREFIX


def shuffle_speech(batch: dict, generator: torch.Generator) -> dict:
    """``batch`` with each clip's valid speech-feature frames (``feats``, ``prosody``) permuted in time (the same
    permutation for both); everything else shared."""
    feats = batch["feats"].clone()
    prosody = batch.get("prosody")
    prosody = None if prosody is None else prosody.clone()
    fm = batch.get("feat_mask")
    B, N = feats.shape[:2]
    for b in range(B):
        n = int(fm[b].sum()) if fm is not None else N
        perm = torch.randperm(n, generator=generator).to(feats.device)
        feats[b, :n] = feats[b, perm]
        if prosody is not None:
            prosody[b, :n] = prosody[b, perm]
    out = dict(batch)
    out["feats"] = feats
    if prosody is not None:
        out["prosody"] = prosody
    return out


@torch.no_grad()
def speech_dependence(model, batch: dict, seed: int = 0) -> dict[str, float]:
    """Loss with time-shuffled speech minus loss with the true speech, at the same (t, noise), in eval mode.

    Args:
        model: a :class:`ksdiff.model.ksdiff.KSDiff`.
        batch: a training batch (``ksdiff.train.data.collate``) on the model's device.
        seed: draws t, the noise and the shuffle.

    Returns:
        {"loss", "diff_<path>" ...}: shuffled minus true, per loss term that both calls report (keyframe BCE
        included); > 0 means the model uses the speech's timing.
    """
    was = model.training
    model.eval()
    try:
        g = torch.Generator().manual_seed(int(seed))
        motion = batch["motion"]
        B = motion.shape[0]
        t = torch.randint(0, model.schedule.num_steps, (B,), generator=g).to(motion.device)
        noise = torch.randn(motion.shape, generator=g, dtype=motion.dtype).to(motion.device)
        true = model.training_loss(batch, t=t, noise=noise)
        shuf = model.training_loss(shuffle_speech(batch, g), t=t, noise=noise)
    finally:
        model.train(was)
    keys = [k for k in true if k == "loss" or k.startswith(("diff_", "bce_"))]
    return {k: float(shuf[k]) - float(true[k]) for k in keys}


def _weights(attn, q_in: Tensor, kv_in: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax weights (B, H, Lq, Lk) of an :class:`ksdiff.model.layers.Attention` call."""
    q = attn._split(attn.q(q_in))
    k, _ = attn.project_kv(kv_in)
    s = q @ k.transpose(-1, -2) / attn.head_dim ** 0.5
    if mask is not None:
        s = s + mask
    return F.softmax(s, dim=-1)


@torch.no_grad()
def attention_mass(model, batch: dict) -> dict[str, float]:
    """Mean share of cross-attention on prefix / aligned speech / text per denoiser path (over layers, heads and
    valid frames), conditional model, eval mode, at a mid diffusion step.

    Returns:
        {"<path>/prefix", "<path>/speech", "<path>/text"} (joint text attention) or {"<path>/prefix",
        "<path>/speech", "<path>/text_gate"} (gated), paths "h", "e" (or "all").
    """
    rec: dict[str, list[Tensor]] = {}
    hooks = []
    for p, den in model.denoisers.items():
        for layer in den.layers:
            def hook(mod, args, _out, p=p):
                rec.setdefault(p, []).append(_weights(mod, *args[:3]))
            hooks.append(layer.cross_attn.register_forward_hook(hook))
    was = model.training
    model.eval()
    try:
        motion = batch["motion"]
        B, T, _ = motion.shape
        mask = batch.get("motion_mask")
        mask = torch.ones(B, T, dtype=torch.bool, device=motion.device) if mask is None else mask.bool()
        t = torch.full((B,), model.schedule.num_steps // 2, dtype=torch.long, device=motion.device)
        model.training_loss(batch, t=t, noise=torch.zeros_like(motion))
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    out: dict[str, float] = {}
    w_valid = mask.to(motion.dtype)[:, None, :, None]  # (B, 1, T, 1)
    for p, ws in rec.items():
        n_layers, heads = len(ws), ws[0].shape[1]
        tot = {"prefix": 0.0, "speech": 0.0, "text": 0.0}
        for w in ws:
            w = w * w_valid / heads
            tot["prefix"] += float(w[..., :NUM_PREFIX].sum())
            tot["speech"] += float(w[..., NUM_PREFIX:NUM_PREFIX + T].sum())
            tot["text"] += float(w[..., NUM_PREFIX + T:].sum())
        n = float(mask.sum()) * n_layers
        for k, v in tot.items():
            out[f"{p}/{k}"] = v / max(n, 1.0)
        gates = [float(torch.tanh(layer.text_gate).abs()) for layer in model.denoisers[p].layers
                 if getattr(layer, "text_gate", None) is not None]
        if gates:
            out[f"{p}/text_gate"] = sum(gates) / len(gates)
            del out[f"{p}/text"]
    return out
