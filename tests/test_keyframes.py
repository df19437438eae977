"""Keyframe labels (Eq. 3), the weighted BCE (Eq. 4) and the autoregressive predictors' KV cache."""

from __future__ import annotations

import numpy as np
import pytest

from ksdiff.face.specs import get_spec
from ksdiff.model.keyframes import keyframe_labels, motion_variation


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
