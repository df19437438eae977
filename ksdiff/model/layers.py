"""Building blocks shared by the DPSE, the keyframe predictors and the denoisers.

Masks follow one convention everywhere: a boolean mask is ``True`` where a position takes part (valid frame,
visible key). Attention biases are additive floats.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoid(pos: Tensor, dim: int) -> Tensor:
    """Transformer sinusoidal encoding of (possibly fractional) positions.

    pos: (...,) float or long. Returns (..., dim) float32: [sin(pos * w_i), cos(pos * w_i)], w_i = 10000^(-2i/dim).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=pos.device, dtype=torch.float32) / max(half, 1))
    ang = pos.to(torch.float32)[..., None] * freqs
    out = torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)
    if dim % 2:
        out = F.pad(out, (0, 1))
    return out


def alibi_slopes(n_heads: int) -> list[float]:
    """ALiBi head slopes (Press et al. 2022): 2^(-8/n), 2^(-16/n), ... for n a power of two; otherwise the slopes of
    the next lower power of two followed by every other slope of the next higher one (as in ALiBi's code).

    4 heads -> [0.25, 0.0625, 0.015625, 0.00390625].
    """
    def pow2(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start ** i for i in range(n)]

    if n_heads < 1:
        raise ValueError("need at least one head")
    if math.log2(n_heads).is_integer():
        return pow2(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return pow2(closest) + alibi_slopes(2 * closest)[0::2][: n_heads - closest]


def mask_to_bias(mask: Tensor | None, bias: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """Combine a boolean visibility mask (True = visible) and an additive bias into one float attention mask."""
    if mask is None:
        return None if bias is None else bias.to(dtype)
    m = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))
    return m if bias is None else m + bias.to(dtype)


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value inputs, an additive mask, and a key/value cache.

    ``forward(q_in (B, Lq, D), kv_in (B, Lk, D), attn_mask)`` where ``attn_mask`` is a float additive mask
    broadcastable to (B, H, Lq, Lk) (``-inf`` = hidden) or None.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, kv_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:  # (B, L, D) -> (B, H, L, hd)
        B, L, _ = x.shape
        return x.view(B, L, self.heads, self.head_dim).transpose(1, 2)

    def project_kv(self, kv_in: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values of ``kv_in`` (B, Lk, D) -> two (B, H, Lk, hd)."""
        k, v = self.kv(kv_in).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def attend(self, q_in: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """Attention of ``q_in`` (B, Lq, D) over projected keys / values (B, H, Lk, hd) -> (B, Lq, D)."""
        q = self._split(self.q(q_in))
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        B, H, L, hd = o.shape
        return self.out(o.transpose(1, 2).reshape(B, L, H * hd))

    def forward(self, q_in: Tensor, kv_in: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        k, v = self.project_kv(kv_in)
        return self.attend(q_in, k, v, attn_mask)


class FeedForward(nn.Module):
    """Linear -> GELU -> dropout -> Linear.  (B, L, D) -> (B, L, D)."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MaskedGroupNorm(nn.Module):
    """GroupNorm over (channels-in-group, valid time steps) only, so padding never changes valid outputs.

    x: (B, C, N); mask: (B, N) bool or None. Returns (B, C, N) (padded steps are normalised with the valid
    statistics; callers zero them).
    """

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__()
        if channels % groups:
            raise ValueError(f"{channels} channels are not divisible into {groups} groups")
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        B, C, N = x.shape
        g = x.view(B, self.groups, C // self.groups, N)
        if mask is None:
            m = torch.ones(B, 1, 1, N, dtype=x.dtype, device=x.device)
        else:
            m = mask.to(x.dtype).view(B, 1, 1, N)
        count = (m.sum(dim=-1, keepdim=True) * (C // self.groups)).clamp_min(1.0)  # (B, 1, 1, 1)
        mean = (g * m).sum(dim=(2, 3), keepdim=True) / count
        var = (((g - mean) ** 2) * m).sum(dim=(2, 3), keepdim=True) / count
        g = (g - mean) / torch.sqrt(var + self.eps)
        return g.view(B, C, N) * self.weight.view(1, C, 1) + self.bias.view(1, C, 1)


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B,) long lengths -> (B, max_len) bool, True for positions < length."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
