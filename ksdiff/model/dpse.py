"""Dual-Path Speech Encoder (DPSE, paper section 2.1; DESIGN.md section 3).

frozen encoder features (B, N', C) --Linear--> (B, N', D) --MSDC--> h_s
  head branch:        h_s --pool 1.0 s / stride 4--> Linear --> c_coarse --MHCA(keys h_s) + FFN--> resample --\
                      h_s --pool 0.25 s / stride 4--> Linear --> c_fine  --MHCA(keys h_s) + FFN--> resample --> Linear -> f_h
  expression branch:  h' = FiLM(h_s; prosody) --pool 0.1 s / stride 2--> Linear --> c_e --MHCA(keys h') + FFN
                      --> resample --> f_e
All (B, T, D) at the motion frame rate. Padding (``feat_mask``) never changes valid outputs: convolutions see zeros
beyond the valid end (as an unpadded clip would), GroupNorm statistics and pooling averages use valid frames only,
attention hides padded keys, and the number of pooled tokens of a clip depends on its own valid length.
Masks are prefix masks (a clip's valid frames come first, padding after), as the batching writes them.

Time convention: feature frame n covers [n, n+1) / feat_rate s (centre (n + 0.5) / feat_rate); motion frame i
covers [i, i+1) / fps s. A pooled token is placed at the centre of its window; motion frames interpolate linearly
between the two nearest valid tokens (constant beyond the first / last).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ksdiff.model.config import DPSEConfig, ModelConfig
from ksdiff.model.layers import Attention, FeedForward, MaskedGroupNorm, lengths_to_mask, mask_to_bias


# ----------------------------------------------------------------------------------------------------------------
# Pooling and resampling with masks
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pooling:
    """A windowed average pooling over feature frames: ``kernel`` frames, ``stride``, centred windows.

    Token j averages the valid frames in [j*stride - pad, j*stride - pad + kernel), pad = kernel // 2; its centre
    is at feature-frame position ``first_centre + j * stride``.
    """

    kernel: int
    stride: int

    @classmethod
    def from_seconds(cls, window_s: float, stride: int, rate: float) -> "Pooling":
        return cls(kernel=max(1, int(round(window_s * rate))), stride=max(1, int(stride)))

    @property
    def pad(self) -> int:
        return self.kernel // 2

    @property
    def first_centre(self) -> float:
        return -self.pad + (self.kernel - 1) / 2.0

    def num_tokens(self, n: Tensor | int) -> Tensor | int:
        """Tokens of a clip of ``n`` valid frames (at least 1)."""
        if isinstance(n, int):
            return max(1, (n + 2 * self.pad - self.kernel) // self.stride + 1)
        return torch.clamp(torch.div(n + 2 * self.pad - self.kernel, self.stride, rounding_mode="floor") + 1, min=1)

    def __call__(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, N, D), mask: (B, N) bool -> tokens (B, J, D) and per-clip valid token counts (B,) long."""
        B, N, D = x.shape
        m = mask.to(x.dtype)
        xt = (x * m[..., None]).transpose(1, 2)  # (B, D, N)
        mt = m[:, None, :]  # (B, 1, N)
        short = self.kernel - (N + 2 * self.pad)
        if short > 0:  # too short for one window: pad with (masked) zeros
            xt, mt = F.pad(xt, (0, short)), F.pad(mt, (0, short))
        s = F.avg_pool1d(xt, self.kernel, self.stride, self.pad, count_include_pad=True)
        c = F.avg_pool1d(mt, self.kernel, self.stride, self.pad, count_include_pad=True)
        tokens = (s / c.clamp_min(1e-6)).transpose(1, 2)  # (B, J, D)
        counts = self.num_tokens(mask.sum(dim=1).long()).clamp(max=tokens.shape[1])
        return tokens, counts


def resample_tokens(tokens: Tensor, counts: Tensor, first_centre: float, stride: float, feat_rate: float,
                    fps: float, num_frames: int) -> Tensor:
    """Linear interpolation of token sequences onto motion frames.

    Args:
        tokens: (B, J, D); token j of clip b sits at feature-frame position ``first_centre + j * stride`` and only
            tokens j < counts[b] are used.
        counts: (B,) long, valid tokens per clip (>= 1).
        feat_rate, fps: feature and motion frame rates.
        num_frames: T, motion frames to produce.

    Returns:
        (B, T, D).
    """
    B, J, D = tokens.shape
    dev = tokens.device
    frames = torch.arange(num_frames, device=dev, dtype=torch.float32)
    pos = (frames + 0.5) * (feat_rate / fps) - 0.5  # feature-frame position of each motion-frame centre
    u = (pos - first_centre) / stride  # (T,) fractional token index
    hi = (counts - 1).clamp(min=0).to(torch.float32)[:, None]  # (B, 1)
    u = torch.minimum(u[None, :].clamp(min=0.0), hi)  # (B, T)
    j0 = u.floor().long()
    j1 = torch.minimum(j0 + 1, hi.long())
    w = (u - j0.to(u.dtype))[..., None]
    g0 = torch.gather(tokens, 1, j0[..., None].expand(B, num_frames, D))
    g1 = torch.gather(tokens, 1, j1[..., None].expand(B, num_frames, D))
    return g0 * (1.0 - w) + g1 * w


# ----------------------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------------------

class MSDCBranch(nn.Module):
    """Depthwise conv (k, dilation d, D -> 2D) -> GroupNorm -> GLU (2D -> D) -> pointwise conv.  (B, D, N) -> same."""

    def __init__(self, dim: int, kernel: int, dilation: int, groups: int):
        super().__init__()
        self.dw = nn.Conv1d(dim, 2 * dim, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2, groups=dim)
        self.norm = MaskedGroupNorm(groups, 2 * dim)
        self.pw = nn.Conv1d(dim, dim, 1)
        self._extra = dilation * (kernel - 1) % 2  # even kernels: trim one frame to keep the length

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        y = self.dw(x)
        if self._extra or y.shape[-1] != x.shape[-1]:
            y = y[..., : x.shape[-1]]
        y = F.glu(self.norm(y, mask), dim=1)
        return self.pw(y)


class MSDC(nn.Module):
    """Multi-Scale Dilated Convolution block: L parallel branches, concat, 1x1 conv, dropout, residual.

    forward(x (B, N, D), mask (B, N)) -> h_s (B, N, D), zero at padded frames.
    """

    def __init__(self, dim: int, cfg: DPSEConfig):
        super().__init__()
        self.branches = nn.ModuleList(MSDCBranch(dim, cfg.kernel_size, d, cfg.groups) for d in cfg.dilations)
        self.fuse = nn.Conv1d(len(cfg.dilations) * dim, dim, 1)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        m = mask[:, None, :].to(x.dtype)  # (B, 1, N)
        xt = x.transpose(1, 2) * m  # (B, D, N); zeros beyond the valid end, as an unpadded clip sees
        ys = [b(xt, mask) * m for b in self.branches]
        y = self.drop(self.fuse(torch.cat(ys, dim=1)))
        return ((xt + y) * m).transpose(1, 2)


class FiLM(nn.Module):
    """Prosody FiLM: h' = gamma(h_p) * h_s + beta(h_p), with gamma = 1 and beta = 0 at initialisation.

    h_s: (B, N, D); prosody h_p: (B, N, 2). Returns (B, N, D).
    """

    def __init__(self, dim: int, prosody_dim: int = 2):
        super().__init__()
        self.gamma = nn.Linear(prosody_dim, dim)
        self.beta = nn.Linear(prosody_dim, dim)
        for lin, b in ((self.gamma, 1.0), (self.beta, 0.0)):
            nn.init.zeros_(lin.weight)
            nn.init.constant_(lin.bias, b)

    def forward(self, h: Tensor, prosody: Tensor) -> Tensor:
        return self.gamma(prosody) * h + self.beta(prosody)


class BranchAttention(nn.Module):
    """Pooled tokens attend to full-rate features (Eq. 1-2), then a feed-forward block; pre-norm residuals.

    forward(c (B, J, D), h (B, N, D), key_mask (B, N)) -> (B, J, D).
    """

    def __init__(self, dim: int, heads: int, ffn_mult: int, dropout: float):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_mult * dim, dropout)
        self.drop = nn.Dropout(dropout)

    #: queries per attention call: bounds memory to chunk x N' scores per head on long audio (same result)
    chunk = 512

    def forward(self, c: Tensor, h: Tensor, key_mask: Tensor) -> Tensor:
        bias = mask_to_bias(key_mask[:, None, None, :], None, c.dtype)
        k, v = self.attn.project_kv(self.norm_kv(h))
        q = self.norm_q(c)
        if q.shape[1] <= self.chunk:
            a = self.attn.attend(q, k, v, bias)
        else:
            a = torch.cat([self.attn.attend(q[:, i:i + self.chunk], k, v, bias)
                           for i in range(0, q.shape[1], self.chunk)], dim=1)
        c = c + self.drop(a)
        return c + self.drop(self.ffn(self.norm_ff(c)))


class PooledBranch(nn.Module):
    """Windowed pooling -> Linear -> cross-attention to full-rate features + FFN -> resample to motion frames."""

    def __init__(self, dim: int, pooling: Pooling, cfg: DPSEConfig):
        super().__init__()
        self.pooling = pooling
        self.proj = nn.Linear(dim, dim)
        self.attn = BranchAttention(dim, cfg.heads, cfg.ffn_mult, cfg.dropout)

    def forward(self, src: Tensor, keys: Tensor, mask: Tensor, feat_rate: float, fps: float,
                num_frames: int) -> Tensor:
        tokens, counts = self.pooling(src, mask)
        tokens = self.attn(self.proj(tokens), keys, mask)
        return resample_tokens(tokens, counts, self.pooling.first_centre, self.pooling.stride, feat_rate, fps,
                               num_frames)


# ----------------------------------------------------------------------------------------------------------------
# DPSE
# ----------------------------------------------------------------------------------------------------------------

class DPSE(nn.Module):
    """The Dual-Path Speech Encoder, with the ablations of :class:`ModelConfig` (``dpse``, ``prosody``,
    ``split_speech``).

    forward(feats (B, N', C), prosody (B, N', 2) | None, feat_mask (B, N') | None, num_frames T)
        -> {"h": f_h (B, T, D), "e": f_e (B, T, D)}
    Without ``split_speech`` (or without ``dpse``) both entries are the same shared feature tensor.
    """

    def __init__(self, feat_dim: int, cfg: ModelConfig):
        super().__init__()
        D, c = cfg.dim, cfg.dpse_cfg
        self.cfg = cfg
        self.proj = nn.Linear(feat_dim, D)
        if not cfg.dpse:
            return
        self.msdc = MSDC(D, c)
        self.film = FiLM(D) if cfg.prosody else None
        r = cfg.feat_rate
        self.coarse = PooledBranch(D, Pooling.from_seconds(c.head_coarse_window_s, c.head_stride, r), c)
        self.fine = PooledBranch(D, Pooling.from_seconds(c.head_fine_window_s, c.head_stride, r), c)
        self.expr = PooledBranch(D, Pooling.from_seconds(c.expr_window_s, c.expr_stride, r), c)
        if cfg.split_speech:
            self.head_out = nn.Linear(2 * D, D)
        else:
            self.shared_out = nn.Linear(3 * D, D)

    def forward(self, feats: Tensor, prosody: Tensor | None, feat_mask: Tensor | None,
                num_frames: int) -> dict[str, Tensor]:
        B, N, _ = feats.shape
        if feat_mask is None:
            feat_mask = torch.ones(B, N, dtype=torch.bool, device=feats.device)
        m = feat_mask[..., None].to(feats.dtype)
        x = self.proj(feats) * m  # (B, N', D)
        fr, fps = self.cfg.feat_rate, self.cfg.fps
        if not self.cfg.dpse:  # encoder features only: projection + resampling
            counts = feat_mask.sum(dim=1).long().clamp(min=1)
            f = resample_tokens(x, counts, 0.0, 1.0, fr, fps, num_frames)
            return {"h": f, "e": f}
        h_s = self.msdc(x, feat_mask)
        if self.film is not None and prosody is not None:
            h_p = self.film(h_s, prosody.to(h_s.dtype) * m) * m
        else:
            h_p = h_s
        coarse = self.coarse(h_s, h_s, feat_mask, fr, fps, num_frames)
        fine = self.fine(h_s, h_s, feat_mask, fr, fps, num_frames)
        expr = self.expr(h_p, h_p, feat_mask, fr, fps, num_frames)
        if self.cfg.split_speech:
            return {"h": self.head_out(torch.cat([coarse, fine], dim=-1)), "e": expr}
        f = self.shared_out(torch.cat([coarse, fine, expr], dim=-1))
        return {"h": f, "e": f}


def frame_mask_from(num_frames: Tensor | int, batch: int, device: torch.device) -> tuple[Tensor, int]:
    """(B,) frame counts (or one int) -> ((B, T) bool mask, T = max)."""
    if isinstance(num_frames, int):
        n = torch.full((batch,), num_frames, dtype=torch.long, device=device)
    else:
        n = torch.as_tensor(num_frames, device=device).long().reshape(-1)
        if n.numel() == 1 and batch > 1:
            n = n.expand(batch)
    T = int(n.max().item()) if n.numel() else 0
    return lengths_to_mask(n, T), T
