"""Training losses of KSDiff (paper Eq. 4-7; DESIGN.md section 3), all with padding masks.

For each path p: ``L_p = diff * L_diff + mr * L_mr + bce * L_BCE`` (1, 0.3, 0.5), where
``L_diff = rec * MSE(x0_hat, x0) + vel * MSE(diff(x0_hat), diff(x0))`` (Eq. 5),
``L_mr = sum_r mean | |STFT_r(x0_hat)| - |STFT_r(x0)| |`` over time, per channel (Eq. 6), and
``L_BCE`` the weighted binary cross-entropy of the keyframe predictor (Eq. 4).

Every loss is a mean over valid elements (frames x channels, or STFT frames x bins x channels): a clip's padding
never changes it, and the weights do not depend on clip length. Eq. 4 sums over t; the mean over valid frames
used here is that sum divided by the number of valid frames of the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _mask3(mask: Tensor | None, x: Tensor) -> Tensor:
    if mask is None:
        return torch.ones(x.shape[:2], dtype=x.dtype, device=x.device)[..., None]
    return mask.to(x.dtype)[..., None]


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error over valid frames and all channels.

    pred, target: (B, T, C); mask: (B, T) bool (True = valid) or None. Returns a scalar.
    """
    m = _mask3(mask, pred)
    se = ((pred - target) ** 2) * m
    return se.sum() / (m.sum() * pred.shape[-1]).clamp_min(1.0)


def diffusion_loss(x0_hat: Tensor, x0: Tensor, mask: Tensor | None = None, rec: float = 1.0,
                   vel: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """L_diff = rec * MSE(x0_hat, x0) + vel * MSE(velocity) (Eq. 5).

    x0_hat, x0: (B, T, C); mask: (B, T). A velocity x[t] - x[t-1] is valid when both frames are.
    Returns (L_diff, L_rec, L_vel), scalars.
    """
    l_rec = masked_mse(x0_hat, x0, mask)
    if x0.shape[1] < 2:
        l_vel = x0.new_zeros(())
    else:
        vmask = None if mask is None else (mask[:, 1:] & mask[:, :-1])
        l_vel = masked_mse(x0_hat[:, 1:] - x0_hat[:, :-1], x0[:, 1:] - x0[:, :-1], vmask)
    return rec * l_rec + vel * l_vel, l_rec, l_vel


def mr_stft_loss(x_hat: Tensor, x: Tensor, mask: Tensor | None = None,
                 fft_sizes: tuple[int, ...] | list[int] = (8, 16, 32), hop_div: int = 4) -> Tensor:
    """Multi-resolution STFT magnitude loss over time, per channel (Eq. 6).

    For each FFT size n (hop n // hop_div, periodic Hann window, no centring), the L1 distance between the
    magnitude spectrograms of each channel's time series, averaged over valid STFT frames, bins and channels;
    summed over resolutions. Padded frames are zeroed in both inputs; a clip of n_b valid frames contributes the
    STFT frames an unpadded clip would have (it is zero-padded to at least n frames).

    x_hat, x: (B, T, C); mask: (B, T) bool or None. Returns a scalar (0 for identical inputs).
    """
    B, T, C = x.shape
    m = _mask3(mask, x)
    lengths = m[..., 0].sum(dim=1).long() if mask is not None else torch.full((B,), T, device=x.device)
    a = (x_hat * m).transpose(1, 2).reshape(B * C, T)
    b = (x * m).transpose(1, 2).reshape(B * C, T)
    total = x.new_zeros(())
    for n in fft_sizes:
        hop = max(1, n // hop_div)
        L = max(T, n)
        aa, bb = (F.pad(a, (0, L - T)), F.pad(b, (0, L - T))) if L > T else (a, b)
        win = torch.hann_window(n, periodic=True, dtype=x.dtype, device=x.device)
        sa = torch.stft(aa, n, hop, n, win, center=False, return_complex=True).abs()  # (B*C, n//2+1, F)
        sb = torch.stft(bb, n, hop, n, win, center=False, return_complex=True).abs()
        frames = sa.shape[-1]
        nf = torch.div(lengths.clamp(min=n) - n, hop, rounding_mode="floor") + 1  # (B,) frames of each clip
        fmask = (torch.arange(frames, device=x.device)[None, :] < nf[:, None]).to(x.dtype)  # (B, F)
        fmask = fmask.repeat_interleave(C, dim=0)[:, None, :]  # (B*C, 1, F)
        d = (sa - sb).abs() * fmask
        total = total + d.sum() / (fmask.sum() * sa.shape[1]).clamp_min(1.0)
    return total


def class_ratio_weight(positives: float, negatives: float, *, lo: float, hi: float) -> float:
    """w1 of the weighted BCE from class counts (or rates): ``negatives / positives`` clipped to [lo, hi], ``hi``
    when there is no positive. The one definition of w1: :func:`positive_weight` (a batch's labels) and the
    training set's w1 (``ksdiff.train.loop``, from its keyframe rate) both use it, with the bounds of
    ``model.kel.pos_weight_min / pos_weight_max``."""
    if positives <= 0:
        return float(hi)
    return float(min(max(negatives / positives, lo), hi))


def positive_weight(target: Tensor, mask: Tensor | None = None, fixed: float = 0.0, *, lo: float,
                    hi: float) -> float:
    """w1 of the weighted BCE for a batch: ``fixed`` when > 0, else :func:`class_ratio_weight` of the positives
    and negatives among the valid frames.

    target: (B, T) labels in {0, 1}; mask: (B, T) bool (True = valid) or None.
    """
    if fixed > 0:
        return float(fixed)
    valid = torch.ones_like(target, dtype=torch.bool) if mask is None else mask.bool()
    pos = float(((target > 0.5) & valid).sum())
    neg = float(((target <= 0.5) & valid).sum())
    return class_ratio_weight(pos, neg, lo=lo, hi=hi)


def weighted_bce(logits: Tensor, target: Tensor, mask: Tensor | None = None, w1: float = 1.0,
                 w0: float = 1.0) -> Tensor:
    """Weighted binary cross-entropy (Eq. 4), mean over valid frames.

    ``-(w1 * k * log p + w0 * (1 - k) * log(1 - p))`` with ``p = sigmoid(logits)``, computed from the logits
    (``-log p = softplus(-z)``, ``-log(1 - p) = softplus(z)``).

    logits, target: (B, T) (target in {0, 1}); mask: (B, T) bool or None. Returns a scalar.
    """
    target = target.to(logits.dtype)
    per = w1 * target * F.softplus(-logits) + w0 * (1.0 - target) * F.softplus(logits)
    if mask is None:
        return per.mean()
    m = mask.to(logits.dtype)
    return (per * m).sum() / m.sum().clamp_min(1.0)
