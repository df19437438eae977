"""Keyframe Establishment Learning (KEL, paper section 2.2; DESIGN.md section 3): the two autoregressive keyframe
predictors (one per path). Their ground truth (Eq. 3) is :func:`ksdiff.face.keyframes.keyframe_labels`; the
weighted binary cross-entropy that trains them (Eq. 4) is in :mod:`ksdiff.diffusion.losses`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ksdiff.model.config import KELConfig
from ksdiff.model.layers import Attention, FeedForward, mask_to_bias, sinusoid
from ksdiff.utils.threads import torch_threads

BOS = 2  #: the "previous bit" fed at step 0 (ids: 0 = no keyframe, 1 = keyframe, 2 = start)


class KeyframeDecoderLayer(nn.Module):
    """Pre-norm Transformer decoder layer: causal self-attention, cross-attention to the text memory, FFN."""

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_mult * dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mem_k: Tensor, mem_v: Tensor, mem_bias: Tensor,
                cache: dict | None = None) -> Tensor:
        """x: (B, L, D) new steps; mem_k / mem_v: (B, H, M, hd); mem_bias: (B, 1, 1, M).

        Without ``cache`` the L steps attend causally among themselves. With ``cache`` (a dict this layer fills
        with "k", "v"), the new steps are appended to the cached ones and attend to all of them causally.
        """
        y = self.n1(x)
        k, v = self.self_attn.project_kv(y)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        L, S = x.shape[1], k.shape[2]
        if L == 1:  # one new step sees every cached step: no mask needed
            causal_bias = None
        else:
            causal = torch.arange(S, device=x.device)[None, :] <= (past + torch.arange(L, device=x.device))[:, None]
            causal_bias = mask_to_bias(causal, None, x.dtype)
        x = x + self.drop(self.self_attn.attend(y, k, v, causal_bias))
        x = x + self.drop(self.cross_attn.attend(self.n2(x), mem_k, mem_v, mem_bias))
        return x + self.drop(self.ffn(self.n3(x)))


class KeyframePredictor(nn.Module):
    """Autoregressive keyframe predictor of one path (paper 2.2).

    Step t sees embed(k_{t-1}) + Linear(f_t) + PE(t) (k_{-1} = start symbol); causal self-attention;
    cross-attention to the text memory. ``forward`` is teacher-forced; ``decode`` runs step by step with a
    key/value cache.
    """

    def __init__(self, dim: int, cfg: KELConfig):
        super().__init__()
        self.dim = dim
        self.bit = nn.Embedding(3, dim)
        self.feat = nn.Linear(dim, dim)
        self.layers = nn.ModuleList(KeyframeDecoderLayer(dim, cfg.heads, cfg.ffn_mult, cfg.dropout)
                                    for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)

    def _inputs(self, prev: Tensor, f: Tensor, start: int) -> Tensor:
        pos = torch.arange(start, start + f.shape[1], device=f.device)
        return self.bit(prev) + self.feat(f) + sinusoid(pos, self.dim)[None]

    def _memory(self, memory: Tensor, memory_mask: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        kv = [layer.cross_attn.project_kv(memory) for layer in self.layers]
        return kv, mask_to_bias(memory_mask[:, None, None, :], None, memory.dtype)

    def forward(self, f: Tensor, keyframes: Tensor, memory: Tensor, memory_mask: Tensor) -> Tensor:
        """Teacher-forced logits.

        Args:
            f: (B, T, D) path speech features.
            keyframes: (B, T) {0, 1} ground truth (the input at t is keyframes[t-1]).
            memory: (B, M, D) text encodings; memory_mask: (B, M) bool (at least one True per row).

        Returns:
            (B, T) logits of P(frame t is a keyframe).
        """
        B, T, _ = f.shape
        prev = torch.cat([torch.full((B, 1), BOS, dtype=torch.long, device=f.device),
                          (keyframes[:, :-1] > 0.5).long()], dim=1)
        x = self._inputs(prev, f, 0)
        kv, bias = self._memory(memory, memory_mask)
        for layer, (mk, mv) in zip(self.layers, kv):
            x = layer(x, mk, mv, bias)
        return self.head(self.norm(x)).squeeze(-1)

    @torch.no_grad()
    def decode(self, f: Tensor, memory: Tensor, memory_mask: Tensor, frame_mask: Tensor | None = None,
               threshold: float = 0.5, sample: bool = False, generator: torch.Generator | None = None,
               prefix: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Autoregressive decoding with a key/value cache.

        Args:
            f: (B, T, D); memory: (B, M, D); memory_mask: (B, M); frame_mask: (B, T) bool or None.
            threshold: bit = p > threshold (when not ``sample``).
            sample: draw bit ~ Bernoulli(p) (with ``generator``).
            prefix: (B, P) {0, 1} keyframes already known for frames [0, P) (streaming: the frames already
                sent): they are fed teacher-forced in one parallel pass that fills the cache, and only frames
                [P, T) are decoded step by step. Their logits are the model's own for those frames.

        Returns:
            (bits (B, T) float {0, 1} (0 at padded frames; ``prefix`` on [0, P)), logits (B, T)).
        """
        with torch_threads(1, f.device):  # one token per step: thread hand-offs cost more than the tiny matmuls
            return self._decode(f, memory, memory_mask, frame_mask, threshold, sample, generator, prefix)

    def _decode(self, f: Tensor, memory: Tensor, memory_mask: Tensor, frame_mask: Tensor | None, threshold: float,
                sample: bool, generator: torch.Generator | None,
                prefix: Tensor | None = None) -> tuple[Tensor, Tensor]:
        B, T, _ = f.shape
        kv, bias = self._memory(memory, memory_mask)
        caches: list[dict] = [{} for _ in self.layers]
        prev = torch.full((B, 1), BOS, dtype=torch.long, device=f.device)
        bits, logits = [], []
        P = 0 if prefix is None else min(int(prefix.shape[1]), T)
        if P:
            known = (prefix[:, :P] > 0.5).long()
            x = self._inputs(torch.cat([prev, known[:, :-1]], dim=1), f[:, :P], 0)
            for layer, (mk, mv), cache in zip(self.layers, kv, caches):
                x = layer(x, mk, mv, bias, cache=cache)
            bits.extend(known.to(f.dtype).unbind(1))
            logits.extend(self.head(self.norm(x))[..., 0].unbind(1))
            prev = known[:, -1:]
        for t in range(P, T):
            x = self._inputs(prev, f[:, t:t + 1], t)
            for layer, (mk, mv), cache in zip(self.layers, kv, caches):
                x = layer(x, mk, mv, bias, cache=cache)
            z = self.head(self.norm(x))[:, 0, 0]  # (B,)
            p = torch.sigmoid(z)
            if sample:
                b = (torch.rand(p.shape, generator=generator, device=p.device) < p)
            else:
                b = p > threshold
            bits.append(b.to(f.dtype))
            logits.append(z)
            prev = b.long()[:, None]
        out = torch.stack(bits, dim=1) if T else f.new_zeros(B, 0)
        lg = torch.stack(logits, dim=1) if T else f.new_zeros(B, 0)
        if frame_mask is not None:
            out = out * frame_mask.to(out.dtype)
        return out, lg
