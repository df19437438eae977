"""Unobserved channels (per clip ``observed_channels``) are left out of the losses, not trained towards zero."""

from __future__ import annotations

import torch

from ksdiff.model.ksdiff import KSDiff
from tests.test_model import SPEC, FEAT, fake_batch, tiny_cfg


def test_unobserved_channels_do_not_change_the_loss():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = KSDiff(tiny_cfg(), SPEC, FEAT).train()
    batch = fake_batch([9, 12], g)
    cm = torch.ones(2, SPEC.dim, dtype=torch.bool)
    cm[0, SPEC.head_idx] = False  # clip 0 observes no head channel (like FACEGOOD)
    cm[:, SPEC.channels.index("tongueOut")] = False
    batch["channel_mask"] = cm
    t = torch.tensor([100, 500])
    noise = torch.randn(2, 12, SPEC.dim, generator=g)

    def loss(b):
        torch.manual_seed(1)
        return model.training_loss(b, t=t, noise=noise)

    base = loss(batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["motion"] = batch["motion"].clone()
    changed["motion"][0, :, SPEC.head_idx] += 5.0  # unobserved values: must not matter for their losses
    changed["motion"][:, :, SPEC.channels.index("tongueOut")] = 7.0
    changed["keyframes"] = batch["keyframes"].clone()
    changed["keyframes"][0, :, 0] = 1.0 - changed["keyframes"][0, :, 0]  # clip 0's head keyframes are unknown
    after = loss(changed)
    for k in ("bce_h", "bce_e"):
        assert torch.allclose(base[k], after[k], atol=1e-6), k
    assert torch.isfinite(after["loss"])


def test_a_path_with_no_observed_channel_has_no_diffusion_loss():
    g = torch.Generator().manual_seed(0)
    model = KSDiff(tiny_cfg(), SPEC, FEAT).train()
    batch = fake_batch([10, 10], g)
    cm = torch.ones(2, SPEC.dim, dtype=torch.bool)
    cm[:, SPEC.head_idx] = False
    batch["channel_mask"] = cm
    out = model.training_loss(batch, generator=g)
    assert out["rec_h"] == 0 and out["vel_h"] == 0 and out["mr_h"] == 0 and out["bce_h"] == 0
    assert out["rec_e"] > 0
