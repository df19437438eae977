"""Keyframe Establishment Learning (KEL, paper section 2.2; DESIGN.md section 3).

Ground-truth keyframe labels (Eq. 3) computed from motion, the two autoregressive keyframe predictors (one per
path), and the weighted binary cross-entropy that trains them (Eq. 4).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks
from scipy.spatial.transform import Rotation
from torch import Tensor, nn

from ksdiff.diffusion.losses import positive_weight, weighted_bce  # noqa: F401  (Eq. 4, re-exported)
from ksdiff.errors import KsdiffError
from ksdiff.face.specs import FaceSpec
from ksdiff.model.config import KELConfig
from ksdiff.model.layers import Attention, FeedForward, mask_to_bias, sinusoid


# ----------------------------------------------------------------------------------------------------------------
# Ground-truth labels (Eq. 3)
# ----------------------------------------------------------------------------------------------------------------

def motion_variation(coeffs: np.ndarray, spec: FaceSpec) -> tuple[np.ndarray, np.ndarray]:
    """Inter-frame variation of the head and expression paths (Eq. 3, before smoothing).

    Head: ``delta_h[t] = theta_t + ||c'_t - c'_{t-1}||_2`` where ``theta_t`` is the geodesic angle of
    ``R_t R_{t-1}^T`` (the head rotation, axis-angle ``spec.head_rotation``) and ``c'`` are the other head-path
    channels. Expression: ``delta_e[t] = ||e_t - e_{t-1}||_2`` over the expression-path channels.
    ``delta[0] = 0`` (no previous frame).

    Args:
        coeffs: (T, C) motion in ``spec``'s channel order.
        spec: the face spec (its head / expression split, including ``jaw_path``).

    Returns:
        (delta_h, delta_e): two (T,) float64 arrays.
    """
    x = np.asarray(coeffs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != spec.dim:
        raise KsdiffError(f"motion must be (T, {spec.dim}) for spec {spec.name!r}, got shape {tuple(x.shape)}")
    T = x.shape[0]
    dh = np.zeros(T)
    de = np.zeros(T)
    if T < 2:
        return dh, de
    rot_idx = spec.head_rotation_idx
    other_idx = [i for i in spec.head_idx if i not in rot_idx]
    rot = Rotation.from_rotvec(x[:, rot_idx])
    theta = (rot[1:] * rot[:-1].inv()).magnitude()  # angle of R_t R_{t-1}^T, t = 1..T-1
    dh[1:] = theta
    if other_idx:
        dh[1:] += np.linalg.norm(np.diff(x[:, other_idx], axis=0), axis=1)
    de[1:] = np.linalg.norm(np.diff(x[:, spec.expression_idx], axis=0), axis=1)
    return dh, de


def pick_keyframes(delta: np.ndarray, sigma: float = 2.0, kappa: float = 1.0, min_gap: int = 5) -> np.ndarray:
    """Keyframes of one variation sequence: local maxima of the Gaussian-smoothed ``delta`` above
    ``mean + kappa * std`` (of the smoothed sequence), at least ``min_gap`` frames apart (the larger peak wins).

    Args:
        delta: (T,) variation.
        sigma: Gaussian smoothing in frames (0 = none).
        kappa: threshold in standard deviations above the mean.
        min_gap: minimum distance between two keyframes, in frames.

    Returns:
        (T,) uint8 in {0, 1}.
    """
    d = np.asarray(delta, dtype=np.float64)
    out = np.zeros(d.shape[0], dtype=np.uint8)
    if d.shape[0] < 3:
        return out
    s = gaussian_filter1d(d, sigma, mode="nearest") if sigma > 0 else d
    sd = float(s.std())
    if not np.isfinite(sd) or sd <= 1e-12 * max(1.0, float(np.abs(s).max())):
        return out  # (numerically) constant: no keyframe
    thr = float(s.mean()) + kappa * sd
    peaks, _ = find_peaks(s, height=thr, distance=max(int(min_gap), 1))
    out[peaks] = 1
    return out


def keyframe_labels(coeffs: np.ndarray, spec: FaceSpec, sigma: float = 2.0, kappa: float = 1.0,
                    min_gap: int = 5) -> np.ndarray:
    """Ground-truth keyframes of a motion sequence (paper Eq. 3).

    Args:
        coeffs: (T, C) float motion in ``spec``'s channel order (raw, not normalised).
        spec: face spec; its head path gives ``delta_h``, its expression path ``delta_e``.
        sigma: Gaussian smoothing of each variation sequence, in frames.
        kappa: per-sequence threshold ``mean + kappa * std`` of the smoothed variation.
        min_gap: keyframes of one path are at least this many frames apart.

    Returns:
        (T, 2) uint8: column 0 head-path keyframes, column 1 expression-path keyframes.
    """
    dh, de = motion_variation(coeffs, spec)
    return np.stack([pick_keyframes(dh, sigma, kappa, min_gap), pick_keyframes(de, sigma, kappa, min_gap)], axis=1)


# ----------------------------------------------------------------------------------------------------------------
# Predictors
# ----------------------------------------------------------------------------------------------------------------

BOS = 2  #: the "previous bit" fed at step 0 (ids: 0 = no keyframe, 1 = keyframe, 2 = start)



@contextlib.contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run the block with one intra-op torch thread on CPU (restored after). Autoregressive decoding pushes one
    token at a time through small matmuls, where thread synchronisation costs more than it saves (measured on
    the 2-core machine: keyframe decoding 2.3 s -> 0.7 s for 8.7 s of speech)."""
    n = torch.get_num_threads()
    if device.type != "cpu" or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)

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
               threshold: float = 0.5, sample: bool = False,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Autoregressive decoding with a key/value cache.

        Args:
            f: (B, T, D); memory: (B, M, D); memory_mask: (B, M); frame_mask: (B, T) bool or None.
            threshold: bit = p > threshold (when not ``sample``).
            sample: draw bit ~ Bernoulli(p) (with ``generator``).

        Returns:
            (bits (B, T) float {0, 1} (0 at padded frames), logits (B, T)).
        """
        with _one_cpu_thread(f.device):  # one token per step: thread hand-offs cost more than the tiny matmuls
            return self._decode(f, memory, memory_mask, frame_mask, threshold, sample, generator)

    def _decode(self, f: Tensor, memory: Tensor, memory_mask: Tensor, frame_mask: Tensor | None, threshold: float,
                sample: bool, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        B, T, _ = f.shape
        kv, bias = self._memory(memory, memory_mask)
        caches: list[dict] = [{} for _ in self.layers]
        prev = torch.full((B, 1), BOS, dtype=torch.long, device=f.device)
        bits, logits = [], []
        for t in range(T):
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
