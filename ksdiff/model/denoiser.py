"""DiffSpeaker-style denoiser of one path (paper 2.3; DESIGN.md section 3), predicting clean motion x0.

noisy motion x_t (B, T, C) --Linear--> + keyframe embedding + emotion embedding + periodic PE (period = fps)
  [+ time and style embeddings on every frame when ``frame_cond``]
  --> N x [pre-norm decoder layer]:
        self-attention   keys/values = [time token, style token, frames], bias -slope_h * floor(|i-j| / period)
        cross-attention  keys/values = [time token, style token, speech frames (T), text tokens (L)],
                         frame t sees speech frame t only, every valid text token, and both prefix tokens
                         (``text_attention = "joint"``, the paper's form); with ``"gated"`` this attention sees
                         the prefix and the aligned speech only, and the text has its own cross-attention
                         sublayer whose output is scaled by tanh(g), g a learned scalar starting at 0, so the
                         transcript cannot crowd the aligned speech out of one softmax
        feed-forward (GELU)
  --> LayerNorm --> zero-initialised Linear --> x0_hat (B, T, C)

Conditions that can be absent (each replaced by a learned null embedding): style vector, emotion, and, for
classifier-free guidance (``drop``), the speech, transcript and keyframes together.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ksdiff.errors import KsdiffError
from ksdiff.model.config import DenoiserConfig
from ksdiff.model.layers import Attention, FeedForward, alibi_slopes, mask_to_bias, sinusoid

NUM_PREFIX = 2  #: time token and style token, prepended to the keys / values of both attentions
KF_UNKNOWN = 2  #: keyframe id used when keyframes are dropped (0 = no keyframe, 1 = keyframe)
TEXT_ATTENTION = ("joint", "gated")  #: how the denoiser reads the transcript (module docstring)


def periodic_alibi_bias(n_heads: int, length: int, period: int, device: torch.device | None = None) -> Tensor:
    """Bidirectional periodic ALiBi bias: ``-slope_h * floor(|i - j| / period)``.

    Returns (H, T, T) float32.
    """
    slopes = torch.tensor(alibi_slopes(n_heads), dtype=torch.float32, device=device)
    idx = torch.arange(length, device=device)
    dist = torch.div((idx[None, :] - idx[:, None]).abs(), max(period, 1), rounding_mode="floor").float()
    return -slopes[:, None, None] * dist[None]


def alignment_mask(frame_mask: Tensor) -> Tensor:
    """Cross-attention visibility of the frame-aligned speech: frame t sees speech frame t only (if valid).

    frame_mask: (B, T) bool. Returns (B, T, T) bool.
    """
    T = frame_mask.shape[1]
    eye = torch.eye(T, dtype=torch.bool, device=frame_mask.device)
    return eye[None] & frame_mask[:, None, :]


class DenoiserLayer(nn.Module):
    """Pre-norm Transformer decoder layer with prefix tokens on both attentions."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float, gated_text: bool = False):
        super().__init__()
        self.n1, self.n2, self.n3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads, dropout)
        self.cross_attn = Attention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.drop = nn.Dropout(dropout)
        if gated_text:
            self.n_text = nn.LayerNorm(dim)
            self.text_attn = Attention(dim, heads, dropout)
            self.text_gate = nn.Parameter(torch.zeros(1))
        else:
            self.text_gate = None

    def forward(self, x: Tensor, prefix: Tensor, memory: Tensor, self_mask: Tensor, cross_mask: Tensor,
                text: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """x: (B, T, D); prefix: (B, 2, D); memory: (B, M, D); masks: float additive, (B, H|1, T, 2+T) and
        (B, 1, T, 2+M). ``text`` (gated layers only): (memory (B, L, D), additive mask (B, 1, 1, L), keep (B, 1, 1)
        float: 0 where the text is dropped)."""
        y = self.n1(x)
        x = x + self.drop(self.self_attn(y, torch.cat([prefix, y], dim=1), self_mask))
        x = x + self.drop(self.cross_attn(self.n2(x), torch.cat([prefix, memory], dim=1), cross_mask))
        if self.text_gate is not None and text is not None:
            mem, bias, keep = text
            x = x + torch.tanh(self.text_gate) * keep * self.drop(self.text_attn(self.n_text(x), mem, bias))
        return x + self.drop(self.ffn(self.n3(x)))


class MotionDenoiser(nn.Module):
    """One path's denoiser: x_t -> x0_hat.

    Args:
        channels: motion channels of this path (C).
        dim: hidden size D (speech features and text encodings are D-dimensional).
        fps: motion frame rate (period of the position encoding and the ALiBi buckets unless cfg.period > 0).
        cfg: layers, heads, widths, optional conditions.
        keyframe_streams: number of keyframe columns embedded into the input (0 = no keyframes).
    """

    def __init__(self, channels: int, dim: int, fps: float, cfg: DenoiserConfig, keyframe_streams: int = 1,
                 ref_dim: int = 0):
        super().__init__()
        self.dim, self.heads = dim, cfg.heads
        self.frame_cond = bool(cfg.frame_cond)
        self.period = int(cfg.period) if cfg.period > 0 else max(1, int(round(fps)))
        self.inp = nn.Linear(channels, dim)
        self.kf = nn.ModuleList(nn.Embedding(3, dim) for _ in range(keyframe_streams))
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.null_style = nn.Parameter(torch.zeros(dim))
        self.style = nn.Linear(cfg.style_dim, dim) if cfg.style_dim > 0 else None
        self.ref = nn.Linear(ref_dim, dim) if ref_dim > 0 else None  # reference-clip style, added to the token
        self.emotion = nn.Linear(2, dim) if cfg.emotion else None
        self.null_emotion = nn.Parameter(torch.zeros(dim)) if cfg.emotion else None
        self.null_speech = nn.Parameter(torch.zeros(dim))
        self.drop_in = nn.Dropout(cfg.dropout)
        if cfg.text_attention not in TEXT_ATTENTION:
            raise KsdiffError(f"model.denoiser.text_attention must be one of {', '.join(TEXT_ATTENTION)}, "
                              f"not {cfg.text_attention!r}")
        self.gated_text = cfg.text_attention == "gated"
        self.layers = nn.ModuleList(DenoiserLayer(dim, cfg.heads, cfg.ffn_dim, cfg.dropout, self.gated_text)
                                    for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        for p in (self.null_style, self.null_speech) + ((self.null_emotion,) if cfg.emotion else ()):
            nn.init.normal_(p, std=0.02)

    def forward(self, x_t: Tensor, t: Tensor, speech: Tensor, frame_mask: Tensor, text: Tensor, text_mask: Tensor,
                keyframes: Tensor | None = None, style: Tensor | None = None, style_mask: Tensor | None = None,
                emotion: Tensor | None = None, emotion_mask: Tensor | None = None,
                drop: Tensor | None = None, ref: Tensor | None = None, ref_mask: Tensor | None = None) -> Tensor:
        """Predict x0.

        Args:
            x_t: (B, T, C) noisy normalised motion.
            t: (B,) long diffusion steps.
            speech: (B, T, D) frame-aligned speech features of this path.
            frame_mask: (B, T) bool, True at valid frames.
            text: (B, L, D) transcript encodings; text_mask: (B, L) bool.
            keyframes: (B, T, K) {0, 1} (K = keyframe_streams; -1 = unknown) or None.
            style: (B, S) per-clip style vectors, style_mask (B,) bool (False = absent).
            emotion: (B, T, 2) or (B, 2) valence-arousal, emotion_mask (B,) bool.
            drop: (B,) bool: replace speech, transcript and keyframes by their null versions (CFG).

        Returns:
            x0_hat: (B, T, C).
        """
        B, T, _ = x_t.shape
        if drop is None:
            drop = torch.zeros(B, dtype=torch.bool, device=x_t.device)
        h = self._frame_inputs(x_t, keyframes, emotion, emotion_mask, drop)
        time_tok, style_tok = self._prefix_tokens(t, style, style_mask, B, h.dtype)
        if self.ref is not None and ref is not None:
            keep = torch.ones(B, dtype=torch.bool, device=t.device) if ref_mask is None else ref_mask
            style_tok = style_tok + torch.where(keep[:, None], self.ref(ref.to(h.dtype)), torch.zeros_like(style_tok))
        prefix = torch.stack([time_tok, style_tok], dim=1)  # (B, 2, D)
        if self.frame_cond:
            h = h + (time_tok + style_tok)[:, None, :]

        speech = torch.where((~drop)[:, None, None], speech, self.null_speech.expand(B, T, -1))
        if self.gated_text:  # the text has its own sublayer; the cross-attention sees prefix + aligned speech
            memory = speech
            self_mask, cross_mask = self._attention_masks(frame_mask, text_mask[:, :0], drop, h.dtype)
            text_in = (text, mask_to_bias(text_mask[:, None, None, :], None, h.dtype),
                       (~drop).to(h.dtype)[:, None, None])
        else:
            memory = torch.cat([speech, text], dim=1)  # (B, T + L, D)
            self_mask, cross_mask = self._attention_masks(frame_mask, text_mask, drop, h.dtype)
            text_in = None
        for layer in self.layers:
            h = layer(h, prefix, memory, self_mask, cross_mask, text_in)
        return self.out(self.norm(h))


    def _frame_inputs(self, x_t: Tensor, keyframes: Tensor | None, emotion: Tensor | None,
                      emotion_mask: Tensor | None, drop: Tensor) -> Tensor:
        """Per-frame input (B, T, D): motion + keyframe embeddings (+ emotion) + periodic position, dropout."""
        B, T, _ = x_t.shape
        dev = x_t.device
        h = self.inp(x_t)
        for i, emb in enumerate(self.kf):
            if keyframes is None:
                ids = torch.full((B, T), KF_UNKNOWN, dtype=torch.long, device=dev)
            else:  # a negative value marks a frame whose keyframe bit is unknown (keyframe dropout)
                ids = (keyframes[..., i] > 0.5).long()
                ids = torch.where(drop[:, None] | (keyframes[..., i] < 0), torch.full_like(ids, KF_UNKNOWN), ids)
            h = h + emb(ids)
        if self.emotion is not None:
            e = self.null_emotion.expand(B, T, -1)
            if emotion is not None:
                em = emotion.to(h.dtype)
                if em.dim() == 2:
                    em = em[:, None, :].expand(B, T, 2)
                present = torch.ones(B, dtype=torch.bool, device=dev) if emotion_mask is None else emotion_mask
                e = torch.where(present[:, None, None], self.emotion(em), e)
            h = h + e
        pos = torch.arange(T, device=dev) % self.period
        return self.drop_in(h + sinusoid(pos, self.dim)[None])

    def _prefix_tokens(self, t: Tensor, style: Tensor | None, style_mask: Tensor | None, B: int,
                       dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(time token, style token), each (B, D)."""
        time_tok = self.time_mlp(sinusoid(t.reshape(-1).expand(B) if t.numel() == 1 else t, self.dim))
        style_tok = self.null_style.expand(B, -1)
        if self.style is not None and style is not None:
            present = torch.ones(B, dtype=torch.bool, device=t.device) if style_mask is None else style_mask
            style_tok = torch.where(present[:, None], self.style(style.to(dtype)), style_tok)
        return time_tok, style_tok

    def _attention_masks(self, frame_mask: Tensor, text_mask: Tensor, drop: Tensor,
                         dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """Additive biases: self-attention (B, H, T, 2+T) with periodic ALiBi, cross-attention (B, 1, T, 2+T+L)
        (prefix always visible, speech on the alignment band, text unless dropped)."""
        B, T = frame_mask.shape
        dev = frame_mask.device
        ones = torch.ones(B, NUM_PREFIX, dtype=torch.bool, device=dev)
        self_vis = torch.cat([ones, frame_mask], dim=1)[:, None, None, :]  # (B, 1, 1, 2+T)
        alibi = periodic_alibi_bias(self.heads, T, self.period, dev)  # (H, T, T)
        alibi = torch.cat([alibi.new_zeros(self.heads, T, NUM_PREFIX), alibi], dim=-1)[None]  # (1, H, T, 2+T)
        self_mask = mask_to_bias(self_vis, alibi, dtype)
        text_vis = text_mask & ~drop[:, None]
        cross_vis = torch.cat([ones[:, None, :].expand(B, T, NUM_PREFIX), alignment_mask(frame_mask),
                               text_vis[:, None, :].expand(B, T, -1)], dim=-1)  # (B, T, 2+T+L)
        return self_mask, mask_to_bias(cross_vis[:, None], None, dtype)
