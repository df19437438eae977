"""Metric tests: identities and hand computations (DESIGN.md section 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ksdiff.audio.decode import load_audio
from ksdiff.metrics import (beat_align, bilabial_closure, envelope_correlation, fdd, head_diversity, jitter,
                            keyframe_prf, lve, lve_squared, motion_beats, sample_diversity, speech_beats)


def test_identical_motion_gives_zero_lve_and_fdd(ict_path):
    d = np.load(ict_path)
    neutral = d["neutral"][:2000].astype(np.float64) * 10
    rng = np.random.default_rng(0)
    verts = neutral + rng.normal(0, 1, size=(7, 2000, 3))
    lips = d["lip_vertices"][d["lip_vertices"] < 2000]
    assert lve(verts, verts, lips) == 0.0
    assert lve_squared(verts, verts, lips) == 0.0
    assert fdd(verts, verts, neutral, np.arange(500)) == 0.0


def test_lve_hand_example():
    gt = np.zeros((2, 3, 3))
    pred = gt.copy()
    pred[0, 0] = [3, 4, 0]  # 5 mm at a lip vertex
    pred[0, 1] = [1, 0, 0]  # 1 mm
    pred[1, 1] = [0, 0, 2]  # 2 mm
    pred[1, 2] = [9, 9, 9]  # not a lip vertex
    lips = np.array([0, 1])
    assert lve(pred, gt, lips) == pytest.approx((5 + 2) / 2)
    assert lve_squared(pred, gt, lips) == pytest.approx((25 + 4) / 2)


def test_fdd_hand_example():
    neutral = np.zeros((2, 3))
    # vertex 0 displaced 0,2,0,2 (std 1) in gt, constant in pred; vertex 1 never moves
    gt = np.zeros((4, 2, 3))
    gt[[1, 3], 0, 0] = 2.0
    pred = np.zeros((4, 2, 3))
    pred[:, 0, 0] = 1.0
    assert fdd(pred, gt, neutral, np.array([0, 1])) == pytest.approx((1.0 + 0.0) / 2 - 0.0)


def test_head_diversity_hand_example():
    # yaw alternates 0°, 10° → std 5°; pitch and roll constant → mean over angles 5/3
    yaw = np.radians([0, 10, 0, 10])
    rv = np.stack([np.zeros(4), yaw, np.zeros(4)], axis=1)
    assert head_diversity([rv]) == pytest.approx(5 / 3, rel=1e-6)
    a, b = np.zeros((3, 2)), np.ones((3, 2))
    assert sample_diversity([a, b]) == pytest.approx(math.sqrt(2))
    assert sample_diversity([a, a]) == 0.0


def test_keyframe_prf_hand_example():
    true = np.zeros(30, int)
    true[[5, 15, 25]] = 1
    pred = np.zeros(30, int)
    pred[[6, 14, 20]] = 1  # 6↔5, 14↔15 match; 20 is 5 frames from 15 and 25: no match
    p, r, f = keyframe_prf(pred, true, tol=2)
    assert (p, r) == pytest.approx((2 / 3, 2 / 3))
    assert f == pytest.approx(2 / 3)
    # one-to-one: two predictions near one true keyframe count once
    pred2 = np.zeros(30, int)
    pred2[[4, 6]] = 1
    assert keyframe_prf(pred2, true, tol=2)[:2] == pytest.approx((0.5, 1 / 3))
    assert keyframe_prf(np.zeros(5), np.zeros(5)) == (1.0, 1.0, 1.0)


def test_beat_align_hand_example():
    # speech beats at 10 and 30; motion beats at 10 and 36 → exp(0) and exp(-36/18)
    assert beat_align(np.array([10, 36]), np.array([10, 30])) == pytest.approx((1 + math.exp(-2)) / 2)
    assert beat_align(np.array([]), np.array([3])) == 0.0


def test_motion_beats_find_pauses_of_a_nodding_head():
    fps = 25
    t = np.arange(200) / fps
    pitch = 0.2 * np.sin(2 * np.pi * 0.5 * t)  # speed minima at the turning points, every 1 s
    rv = np.stack([pitch, np.zeros_like(t), np.zeros_like(t)], axis=1)
    beats = motion_beats(rv, fps)
    turning = np.round((0.5 + np.arange(4)) * fps).astype(int)  # t = 0.5, 1.5, 2.5, 3.5 s
    for tp in turning:
        assert np.min(np.abs(beats - tp)) <= 1


def test_speech_beats_on_real_speech(speech_dir):
    wave = load_audio(speech_dir / "jfk.flac")
    beats = speech_beats(wave, 25)
    seconds = len(wave) / 16000
    assert 1.0 <= len(beats) / seconds <= 6.0  # syllable-ish rate
    assert np.all(np.diff(beats) >= 5)


def test_articulation_hand_example():
    """Half the movement on one channel, all of it on another, a still channel ignored; medians over the rest."""
    from ksdiff.metrics import articulation

    t = np.linspace(0, 4 * np.pi, 200)
    truth = np.stack([0.3 * (1 + np.sin(t)), 0.2 * (1 + np.cos(t)), np.full_like(t, 0.1), 0.05 * (1 + np.sin(t))], 1)
    pred = np.stack([0.15 * (1 + np.sin(t)), 0.2 * (1 + np.cos(t)), np.zeros_like(t), -0.05 * np.sin(t)], 1)
    out = articulation(pred, truth, ["jawOpen", "mouthFunnel", "mouthClose", "eyeBlinkLeft"])
    assert set(out["channels"]) == {"jawOpen", "mouthFunnel"}  # mouthClose is still, eyeBlink not mouth
    assert out["channels"]["jawOpen"]["std_ratio"] == pytest.approx(0.5)
    assert out["channels"]["mouthFunnel"]["r"] == pytest.approx(1.0)
    assert out["ratio"] == pytest.approx(0.75) and out["r"] == pytest.approx(1.0)


def test_capture_ratio_against_the_iphone_capture():
    """Each quoted channel's std over the capture's, their median; channels the capture does not quote ignored."""
    from ksdiff.metrics import capture_ratio
    from ksdiff.metrics.articulation import IPHONE_CAPTURE_STD

    names = list(IPHONE_CAPTURE_STD) + ["eyeBlinkLeft"]
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2000, len(names)))
    z = (z - z.mean(0)) / z.std(0)
    scale = np.array([IPHONE_CAPTURE_STD[n] for n in names[:-1]] + [5.0])
    half = np.array([0.5] * 4 + [1.0] * 3 + [1.0])  # four channels move half as far, three as far
    assert capture_ratio(z * scale * half, names) == pytest.approx(0.5)
    assert capture_ratio(z * scale, names) == pytest.approx(1.0)
    assert math.isnan(capture_ratio(z[:, -1:], ["eyeBlinkLeft"]))


def test_jitter_hand_example():
    x = (np.arange(6, dtype=float) ** 3)[:, None]  # third difference of t³ is 6
    assert jitter(x, fps=2) == pytest.approx(6 * 8)
    assert jitter(np.ones((10, 4)), fps=25) == 0.0


def test_bilabial_closure_hand_example():
    fps = 10
    jaw = np.array([0.5, 0.02, 0.5, 0.08, 0.5, 0.3])
    close = np.array([0, 0, 0, 0.5, 0, 0.2])
    press = np.zeros(6)
    phones = [("AA", 0.0, 0.1), ("M", 0.1, 0.2), ("B", 0.3, 0.4), ("P1", 0.5, 0.6), ("IY", 0.2, 0.3)]
    # phone centres → frames: M 0.15 s → 2 (jaw 0.5, open), B 0.35 s → 4 (jaw 0.5, open),
    # P 0.55 s → 6, clamped to 5 (jaw 0.3 less a closure of 0.2: 0.1 open): no bilabial is closed
    assert bilabial_closure(jaw, close, press, phones, fps) == pytest.approx(0.0)
    phones2 = [("m", 0.05, 0.15), ("B", 0.25, 0.35)]  # frames 1 (jaw 0.02 → closed), 3 (jaw .08 + close .5)
    assert bilabial_closure(jaw, close, press, phones2, fps) == pytest.approx(1.0)
    assert math.isnan(bilabial_closure(jaw, close, press, [("AA", 0, 0.1)], fps))
    # ARKit closes the lips on an open jaw with mouthClose: jaw 0.3 − close 0.28 < 0.05 is closed, 0.3 − 0.2 is not
    at = [("P", 0.45, 0.55)]  # frame 5
    assert bilabial_closure(jaw, np.where(np.arange(6) == 5, 0.28, close), press, at, fps) == 1.0
    # a nearly shut jaw (0.08) is open unless the lips press (mouthPress > 0.15)
    assert bilabial_closure(jaw, np.zeros(6), press, [("B", 0.25, 0.35)], fps) == 0.0
    assert bilabial_closure(jaw, np.zeros(6), np.full(6, 0.2), [("B", 0.25, 0.35)], fps) == 1.0


def test_envelope_correlation_real_speech(speech_dir):
    from ksdiff.audio.envelope import speech_envelope

    wave = load_audio(speech_dir / "arctic_a0007.wav")
    env = speech_envelope(wave, 25)
    assert envelope_correlation(env * 3 + 1, wave, 25) == pytest.approx(1.0, abs=1e-6)
    assert envelope_correlation(-env, wave, 25) == pytest.approx(-1.0, abs=1e-6)


def test_head_speed_uses_geodesic_angle():
    from ksdiff.metrics.beat import head_speed

    r = Rotation.from_euler("y", [[0], [10], [30]], degrees=True).as_rotvec()
    s = head_speed(r, fps=1)
    assert np.degrees(s) == pytest.approx([10, 10, 20])


def test_fit_prediction_tolerance_resampling_and_refusals():
    from ksdiff.errors import KsdiffError
    from ksdiff.evaluate import fit_prediction, length_tolerance
    from ksdiff.face.motion import Motion
    from ksdiff.face.specs import get_spec

    spec = get_spec("arkit")

    def m(T: int, fps: float = 25.0, spec_name: str = "arkit", channels=spec.channels) -> Motion:
        return Motion(np.full((T, len(channels)), 0.5, np.float32), channels, fps, spec_name)

    assert [length_tolerance(n) for n in (50, 99, 100, 2800)] == [2, 2, 3, 30]  # 2 frames + 1 %
    gt = m(1000)
    for T in (988, 1000, 1012):
        pred, fit = fit_prediction(m(T), gt, "p.npz")
        assert fit == {"pred_frames": T, "truth_frames": 1000, "padded": max(0, 1000 - T),
                       "trimmed": max(0, T - 1000)}
    for T in (987, 1013, 500, 2000):
        with pytest.raises(KsdiffError) as e:
            fit_prediction(m(T), gt, "p.npz", clip="c1")
        assert e.value.path == "p.npz" and f"has {T} frames" in e.value.problem and "--align-lengths" in str(e.value)
        assert fit_prediction(m(T), gt, "p.npz", align_lengths=True)[1]["pred_frames"] == T
    # another frame rate: compared at the truth's rate (1200 frames at 30 fps = 1000 at 25 fps)
    pred, fit = fit_prediction(m(1200, fps=30.0), gt)
    assert pred.fps == 25.0 and fit["pred_frames"] == 1000 and fit["padded"] == fit["trimmed"] == 0
    with pytest.raises(KsdiffError, match="1200 frames at 30 fps = 1000 at 25 fps"):
        fit_prediction(m(1200, fps=30.0), m(500))
    flame = get_spec("flame")
    with pytest.raises(KsdiffError, match="'flame' motion but the truth is 'arkit'"):
        fit_prediction(m(1000, spec_name="flame", channels=flame.channels), gt)
    mouth_only = m(1000, spec_name="", channels=spec.channels[:52])
    with pytest.raises(KsdiffError, match="lacks 6 of the truth's channels"):
        fit_prediction(mouth_only, gt)
    fit_prediction(mouth_only, gt, observed=list(spec.channels[:52]))  # the truth does not observe the head
    nan = m(1000)
    nan.coeffs[5, 5] = np.nan
    with pytest.raises(KsdiffError, match="NaN/inf"):
        fit_prediction(nan, gt)
