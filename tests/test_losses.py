"""The training losses (Eq. 4-6): hand computations, identities and padding invariance."""

from __future__ import annotations

import math

import pytest
import torch

from ksdiff.diffusion.losses import diffusion_loss, masked_mse, mr_stft_loss, positive_weight, weighted_bce


def test_weighted_bce_matches_hand_computation():
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0]])
    target = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    mask = torch.tensor([[True, True, True, False]])  # the last frame is padding
    w1, w0 = 4.0, 1.0
    p = [1 / (1 + math.exp(-z)) for z in (2.0, -1.0, 0.5)]
    want = -(w1 * math.log(p[0]) + w0 * math.log(1 - p[1]) + w0 * math.log(1 - p[2])) / 3
    assert float(weighted_bce(logits, target, mask, w1=w1, w0=w0)) == pytest.approx(want, rel=1e-6)
    # w1 > w0 makes a missed keyframe cost more than a false alarm of the same confidence
    miss = weighted_bce(torch.tensor([[-2.0]]), torch.tensor([[1.0]]), w1=w1)
    alarm = weighted_bce(torch.tensor([[2.0]]), torch.tensor([[0.0]]), w1=w1)
    assert float(miss) == pytest.approx(w1 * float(alarm))


def test_positive_weight_is_the_clipped_class_ratio():
    b = {"lo": 1.5, "hi": 20.0}  # the model config's default bounds (KELConfig.pos_weight_min / max)
    k = torch.zeros(2, 20)
    k[0, 3] = k[1, 7] = 1.0
    assert positive_weight(k, **b) == pytest.approx(19.0)  # 38 negatives / 2 positives
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[:, 10:] = False
    assert positive_weight(k, mask, **b) == pytest.approx(9.0)  # padding does not count
    assert positive_weight(k, lo=1.5, hi=5.0) == 5.0
    assert positive_weight(torch.ones(1, 4), **b) == 1.5
    assert positive_weight(torch.zeros(1, 4), lo=1.5, hi=7.0) == 7.0  # no positive at all
    assert positive_weight(k, fixed=3.0, **b) == 3.0


def test_class_ratio_weight_is_w1_from_counts_or_rates():
    """The one definition of w1: the batch form above and the training set's (from its keyframe rate) agree."""
    from ksdiff.diffusion.losses import class_ratio_weight

    assert class_ratio_weight(2, 38, lo=1.5, hi=20.0) == pytest.approx(19.0)
    assert class_ratio_weight(0.05, 0.95, lo=1.5, hi=20.0) == pytest.approx(19.0)  # a rate: same ratio
    assert class_ratio_weight(0.01, 0.99, lo=1.5, hi=20.0) == 20.0 and class_ratio_weight(0.6, 0.4, lo=1.5, hi=20.0) \
        == 1.5
    assert class_ratio_weight(0.0, 1.0, lo=1.5, hi=20.0) == 20.0  # no positive at all
    k = torch.zeros(4, 25)
    k[:, ::5] = 1.0
    rate = float(k.mean())  # 0.2: 4 negatives per positive
    assert positive_weight(k, lo=1.0, hi=100.0) == pytest.approx(class_ratio_weight(rate, 1 - rate, lo=1.0, hi=100.0))


def test_diffusion_loss_hand_computation():
    x0 = torch.tensor([[[0.0], [1.0], [3.0], [9.0]]])
    xh = torch.tensor([[[1.0], [1.0], [2.0], [-5.0]]])
    mask = torch.tensor([[True, True, True, False]])
    total, rec, vel = diffusion_loss(xh, x0, mask)
    assert float(rec) == pytest.approx((1 + 0 + 1) / 3)
    # velocities: x0 (1, 2), x0_hat (0, 1): errors 1, 1 (the pair into the padded frame is excluded)
    assert float(vel) == pytest.approx(1.0)
    assert float(total) == pytest.approx(float(rec) + float(vel))


def test_mr_stft_zero_for_identical_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 45, 5, generator=g)
    assert float(mr_stft_loss(x, x.clone())) == 0.0
    y = x + 0.1 * torch.randn(3, 45, 5, generator=g)
    assert float(mr_stft_loss(y, x)) > 0.0
    # a constant offset changes only the DC bins: smaller than broadband noise of the same energy
    assert float(mr_stft_loss(x + 0.1, x)) < float(mr_stft_loss(y, x))
    # shorter than the largest FFT size still works
    assert torch.isfinite(mr_stft_loss(x[:, :5], y[:, :5]))


def test_losses_ignore_padding():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(1, 30, 4, generator=g), torch.randn(1, 30, 4, generator=g)
    # the same clip padded to 50 frames with garbage, in a batch
    pa = torch.cat([a, 100 * torch.randn(1, 20, 4, generator=g)], dim=1)
    pb = torch.cat([b, -50 * torch.randn(1, 20, 4, generator=g)], dim=1)
    mask = torch.zeros(1, 50, dtype=torch.bool)
    mask[:, :30] = True
    for fn in (masked_mse, lambda p, q, m=None: diffusion_loss(p, q, m)[0], mr_stft_loss):
        assert float(fn(pa, pb, mask)) == pytest.approx(float(fn(a, b)), rel=1e-5)
    logits, tgt = torch.randn(1, 50, generator=g), (torch.rand(1, 50, generator=g) < 0.2).float()
    assert float(weighted_bce(logits, tgt, mask, w1=3.0)) == pytest.approx(
        float(weighted_bce(logits[:, :30], tgt[:, :30], w1=3.0)), rel=1e-6)
