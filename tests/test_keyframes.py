"""Keyframe labels (Eq. 3), the weighted BCE (Eq. 4) and the autoregressive predictors' KV cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ksdiff.face.keyframes import keyframe_labels, motion_variation
from ksdiff.face.specs import get_spec
from ksdiff.model.config import KELConfig
from ksdiff.model.keyframes import KeyframePredictor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Step-by-step decoding runs many small ops: one intra-op thread is much faster on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _still_arkit(T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    spec = get_spec("arkit")
    x = np.zeros((T, spec.dim), dtype=np.float32)
    x[:, : len(spec.expression)] = rng.uniform(0.1, 0.3, size=len(spec.expression))  # constant expression
    return x


def test_head_rotation_jump_gives_one_head_keyframe():
    spec = get_spec("arkit")
    T, k = 80, 37
    x = _still_arkit(T)
    rot = spec.head_rotation_idx
    x[:, rot] = [0.05, -0.02, 0.01]  # a tilted but still head
    x[k:, rot] = [0.05, 0.28, 0.01]  # a yaw turn arriving at frame k
    x[:, spec.index(("headTx",))[0]] = np.linspace(0.0, 0.01, T)  # slow drift: small constant variation
    lab = keyframe_labels(x, spec)
    assert lab.shape == (T, 2) and lab.dtype == np.uint8
    assert np.flatnonzero(lab[:, 0]).tolist() == [k]
    assert lab[:, 1].sum() == 0  # the expression never moves


def test_head_angle_is_geodesic():
    spec = get_spec("arkit")
    x = _still_arkit(3)
    rot = spec.head_rotation_idx
    # rotations about different axes: the relative angle is not the difference of the axis-angle vectors
    x[1, rot] = [0.3, 0.0, 0.0]
    x[2, rot] = [0.0, 0.4, 0.0]
    dh, de = motion_variation(x, spec)
    from scipy.spatial.transform import Rotation
    want = (Rotation.from_rotvec([0.0, 0.4, 0.0]) * Rotation.from_rotvec([0.3, 0.0, 0.0]).inv()).magnitude()
    assert dh[0] == 0.0 and dh[1] == pytest.approx(0.3) and dh[2] == pytest.approx(want)
    assert np.all(de == 0.0)


def test_expression_keyframes_and_min_gap():
    spec = get_spec("flame")  # the jaw on the expression path by default
    T = 120
    x = np.zeros((T, spec.dim), dtype=np.float32)
    jaw = spec.index(("jawRotX",))[0]
    # two jaw openings 2 frames apart count once (min_gap 5); one far away counts again
    x[40:, jaw] = 0.2
    x[42:, jaw] = 0.4
    x[90:, jaw] = 0.0
    lab = keyframe_labels(x, spec, sigma=1.0, min_gap=5)
    e = np.flatnonzero(lab[:, 1]).tolist()
    assert len(e) == 2 and 40 <= e[0] <= 42 and e[1] == 90
    assert lab[:, 0].sum() == 0
    # with the paper's jaw_path=head the same jaw motion becomes head keyframes
    lab_h = keyframe_labels(x, get_spec("flame", jaw_path="head"), sigma=1.0, min_gap=5)
    assert lab_h[:, 1].sum() == 0 and lab_h[:, 0].sum() == 2


def test_still_and_tiny_sequences_have_no_keyframes():
    spec = get_spec("arkit")
    assert keyframe_labels(_still_arkit(50), spec).sum() == 0
    assert keyframe_labels(_still_arkit(2), spec).shape == (2, 2)
    assert keyframe_labels(np.zeros((0, spec.dim)), spec).shape == (0, 2)


def test_real_facegood_clip_labels(shared):
    """FACEGOOD's animator-made mouth motion: expression keyframes at a plausible rate, none on the still head."""
    from ksdiff.data.importers.facegood import iter_clips

    clip = next(iter_clips([shared / "data" / "facegood"], fps=25.0))
    spec = get_spec("arkit")
    lab = keyframe_labels(clip.motion.coeffs, spec)
    T = len(lab)
    assert lab[:, 0].sum() == 0
    rate = lab[:, 1].sum() / T
    assert 0.01 < rate < 0.2  # at least min_gap = 5 frames apart: at most 20 %
    gaps = np.diff(np.flatnonzero(lab[:, 1]))
    assert gaps.min() >= 5


# ----------------------------------------------------------------------------------------------------------------
# predictors
# ----------------------------------------------------------------------------------------------------------------

def test_keyframe_logits_ignore_padding_and_future():
    torch.manual_seed(0)
    pred = KeyframePredictor(32, KELConfig(layers=2, heads=2, dropout=0.0)).eval()
    f, mem = torch.randn(1, 15, 32), torch.randn(1, 4, 32)
    mm = torch.tensor([[True, True, True, False]])
    k = (torch.rand(1, 15) < 0.3).float()
    z = pred(f, k, mem, mm)
    f2, k2, mem2 = f.clone(), k.clone(), mem.clone()
    f2[:, 10:] += 5.0
    k2[:, 10:] = 1 - k2[:, 10:]
    mem2[:, 3] = 100.0  # a masked (padding) token
    z2 = pred(f2, k2, mem2, mm)
    torch.testing.assert_close(z2[:, :10], z[:, :10])  # causal: the future never changes the past
    assert not torch.allclose(z2[:, 10:], z[:, 10:])


@pytest.mark.parametrize("sample", [False, True])
def test_kv_cache_decoding_equals_uncached(sample):
    torch.manual_seed(0)
    pred = KeyframePredictor(32, KELConfig(layers=3, heads=4, dropout=0.0)).eval()
    B, T = 2, 19
    f, mem = torch.randn(B, T, 32), torch.randn(B, 5, 32)
    mm = torch.ones(B, 5, dtype=torch.bool)
    mm[1, 2:] = False
    pred.head.bias.data -= pred(f, torch.zeros(B, T), mem, mm).median()  # p near 0.5: both bit values occur
    bits, logits = pred.decode(f, mem, mm, sample=sample, generator=torch.Generator().manual_seed(7))
    assert 0 < bits.sum() < B * T
    # step by step without a cache: run the teacher-forced decoder on the bits chosen so far
    for t in range(T):
        z = pred(f[:, : t + 1], bits[:, : t + 1], mem, mm)[:, t]
        torch.testing.assert_close(z, logits[:, t], atol=1e-5, rtol=1e-5)
    if not sample:
        assert torch.equal(bits, (logits > 0).float())
