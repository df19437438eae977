"""The MediaPipe face tracker on real talking-face videos (../shared/data/video) and a made-up faceless one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.envelope import pearson
from ksdiff.cli import main
from ksdiff.data.dataset import check_dataset, open_dataset
from ksdiff.data.tracker import (Gap, TrackResult, clip_ids, fill_gaps, find_gaps, head_pose_from_matrices,
                                 motion_from_track, resolve_model_path, tracking_problem, track_video)
from ksdiff.errors import KsdiffError

pytest.importorskip("mediapipe")


@pytest.fixture(scope="module")
def model(shared: Path) -> Path:
    return shared / "assets" / "mediapipe" / "face_landmarker.task"


@pytest.fixture(scope="module")
def video_dir(shared: Path) -> Path:
    return shared / "data" / "video"


# ---- gap logic on hand-made sequences ----------------------------------------------------------------------


def test_find_gaps_runs_and_times() -> None:
    valid = np.array([0, 1, 1, 0, 0, 0, 1, 1, 0], bool)
    times = np.arange(9) * 0.1
    gaps = find_gaps(valid, times)
    assert [(g.first, g.count) for g in gaps] == [(0, 1), (3, 3), (8, 1)]
    assert gaps[1].start_s == pytest.approx(0.3) and gaps[1].end_s == pytest.approx(0.6)
    assert gaps[1].seconds == pytest.approx(0.3)
    assert gaps[2].end_s == pytest.approx(0.9)  # the trailing gap lasts to the end of the last frame
    assert find_gaps(np.ones(5, bool), np.arange(5.0)) == []


def test_fill_gaps_linear_hold_and_slerp() -> None:
    times = np.arange(8) * 0.04
    valid = np.array([0, 1, 1, 0, 0, 1, 1, 0], bool)
    ramp = np.linspace(0, 0.7, 8)
    angle = np.radians(np.array([0, 10, 20, 30, 40, 50, 60, 70.0]))  # rotation about y, linear in time
    values = np.stack([ramp, np.zeros(8), angle, np.zeros(8)], axis=1)
    values[~valid] = np.nan
    filled = fill_gaps(values, valid, times, rotation_groups=[[1, 2, 3]])
    assert np.isfinite(filled).all()
    np.testing.assert_allclose(filled[3:5, 0], ramp[3:5])  # linear inside
    assert filled[0, 0] == pytest.approx(ramp[1]) and filled[7, 0] == pytest.approx(ramp[6])  # hold at the ends
    np.testing.assert_allclose(filled[3:5, 2], angle[3:5], atol=1e-9)  # slerp about one axis is linear in angle
    np.testing.assert_allclose(filled[valid], values[valid])


def _fake_result(valid: np.ndarray, fps: float = 25.0) -> TrackResult:
    n = len(valid)
    shapes = np.where(valid[:, None], 0.5, np.nan).astype(np.float32) * np.ones((n, 52), np.float32)
    mats = np.where(valid[:, None, None], np.eye(4, dtype=np.float32), np.nan).astype(np.float32)
    mats[valid, 2, 3] = -40.0
    return TrackResult(source=Path("x.mp4"), times=np.arange(n) / fps, valid=valid, blendshapes=shapes,
                       matrices=mats, landmarks=np.zeros((n, 478, 3), np.float32), video_fps=fps)


def test_tracking_problem_thresholds() -> None:
    valid = np.ones(100, bool)
    valid[40:50] = False  # 0.4 s, 10 %
    r = _fake_result(valid)
    assert tracking_problem(r, max_gap_s=0.5, max_missing=0.2) is None
    msg = tracking_problem(r, max_gap_s=0.3, max_missing=0.2)
    assert msg and "--max-gap-s" in msg and "1.60-2.00 s" in msg and "\n" not in msg
    msg = tracking_problem(r, max_gap_s=1.0, max_missing=0.05)
    assert msg and "10 of 100 frames" in msg
    assert "no face found" in tracking_problem(_fake_result(np.zeros(20, bool)), 0.5, 0.2)
    assert "covers only" in tracking_problem(r, 0.5, 0.2, audio_seconds=5.0)
    m = motion_from_track(r, fps=30.0, num_frames=120)
    assert m.coeffs.shape == (120, 58) and np.isfinite(m.coeffs).all()
    np.testing.assert_allclose(m.select(["headTx", "headTy", "headTz"]), 0.0, atol=1e-6)  # centred on the median


def test_head_pose_axes() -> None:
    from scipy.spatial.transform import Rotation

    m = np.tile(np.eye(4), (2, 1, 1))
    m[0, :3, :3] = Rotation.from_euler("x", 15, degrees=True).as_matrix()
    m[1] = np.nan
    pose = head_pose_from_matrices(m)
    np.testing.assert_allclose(pose[0, :3], [np.radians(15), 0, 0], atol=1e-9)
    assert np.isnan(pose[1]).all()


def test_clip_ids_unique_from_relative_paths(tmp_path: Path) -> None:
    paths = [tmp_path / "pcavs" / "Input" / "00002.mp4", tmp_path / "pcavs" / "Pose" / "00002.mp4",
             tmp_path / "a b.mp4", tmp_path / "a b.mov"]
    assert clip_ids(paths) == ["pcavs_Input_00002", "pcavs_Pose_00002", "a_b", "a_b-2"]
    assert clip_ids([tmp_path / "x" / "clip one.mp4"]) == ["clip_one"]


def test_model_path_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Path) -> None:
    with pytest.raises(KsdiffError, match="not found"):
        resolve_model_path(tmp_path / "nope.task")
    monkeypatch.setenv("KSDIFF_FACE_LANDMARKER", str(model))
    assert resolve_model_path() == model


# ---- real videos ---------------------------------------------------------------------------------------------


def test_track_real_video_to_dataset(tmp_path: Path, video_dir: Path, model: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "ds"
    video = video_dir / "videoretalking_1.mp4"  # 700², 22.13 fps, 44.1 kHz stereo AAC
    code = main(["track", str(video), "--out", str(out), "--model", str(model), "--max-seconds", "3"])
    assert code == 0
    assert "videoretalking_1: " in capsys.readouterr().out
    assert check_dataset(out) == []
    ds = open_dataset(out)
    assert ds.spec == "arkit" and ds.fps == 25.0 and ds.clip_ids() == ["videoretalking_1"]
    clip = ds.clip("videoretalking_1")
    m = clip.motion()
    assert m.num_frames == 75  # 3 s × 25 fps
    jaw = m.channel("jawOpen")
    assert jaw.std() > 0.02 and jaw.max() - jaw.min() > 0.1  # the mouth moves while speaking
    assert (m.channel("tongueOut") == 0).all()  # MediaPipe has no tongueOut
    rot = m.select(["headRotX", "headRotY", "headRotZ"])
    assert np.degrees(np.linalg.norm(rot, axis=1)).max() < 60
    assert np.abs(np.median(m.select(["headTx", "headTy", "headTz"]), axis=0)).max() < 0.5  # centred, cm
    meta = clip.meta()
    assert meta["speaker"] == "videoretalking_1" and meta["source"].endswith("videoretalking_1.mp4")
    assert meta["tracked_frames"] + meta["missing_frames"] == meta["video_frames"]
    assert abs(meta["video_frames"] - 3 * 22.13) <= 1.5  # 3 s of a 22.13 fps (variable rate) video


def test_head_rotation_axes_follow_the_landmarks(video_dir: Path, model: Path) -> None:
    """Sign conventions on a real video with head turns and nods: yaw (headRotY > 0: nose towards image right)
    follows the nose offset in the image, pitch (headRotX > 0: face down) the nose dropping below the eyes,
    roll (headRotZ > 0: left eye up) the eye line tilting."""
    r = track_video(video_dir / "WDA_KatieHill_000.mp4", model=model, max_seconds=3.0, progress=False)
    assert r.num_tracked == r.num_frames == 75
    pose = head_pose_from_matrices(r.matrices)
    lm = r.landmarks  # (F, 478, 3), x right, y down in the image
    nose, side_r, side_l, top, chin = lm[:, 1], lm[:, 234], lm[:, 454], lm[:, 10], lm[:, 152]
    eye_r, eye_l = lm[:, 33], lm[:, 263]
    assert (eye_l[:, 0] > eye_r[:, 0]).all()  # the subject's left eye is at the image right (no mirroring)
    yaw = (nose[:, 0] - (side_r[:, 0] + side_l[:, 0]) / 2) / (side_l[:, 0] - side_r[:, 0])
    pitch = (nose[:, 1] - (eye_r[:, 1] + eye_l[:, 1]) / 2) / (chin[:, 1] - top[:, 1])
    roll = -np.arctan2(eye_l[:, 1] - eye_r[:, 1], eye_l[:, 0] - eye_r[:, 0])
    assert pearson(pose[:, 1], yaw) > 0.8
    assert pearson(pose[:, 0], pitch) > 0.8
    assert pearson(pose[:, 2], roll) > 0.8


def _write_faceless_video(path: Path, seconds: float = 2.0, fps: int = 25) -> None:
    import av

    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(int(seconds * sr)) / sr
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=fps)
        vs.width = vs.height = 128
        vs.pix_fmt = "yuv420p"
        as_ = c.add_stream("aac", rate=sr, layout="mono")
        for i in range(int(seconds * fps)):
            img = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
            img[:, :, i % 3] = 40 * (i % 6)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
        step = 1024
        for k in range(0, len(tone), step):
            f = av.AudioFrame.from_ndarray(tone[None, k:k + step], format="flt", layout="mono")
            f.sample_rate = sr
            f.pts = k
            for p in as_.encode(f):
                c.mux(p)
        for p in as_.encode():
            c.mux(p)


def test_faceless_video_is_refused_and_nothing_written(tmp_path: Path, model: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    video = tmp_path / "noise.mp4"
    _write_faceless_video(video)
    out = tmp_path / "ds"
    code = main(["track", str(video), "--out", str(out), "--model", str(model)])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("ksdiff: ") and "noise.mp4" in err[0] and "no face" in err[0]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["noise.mp4"]


def test_several_videos_one_refused(tmp_path: Path, video_dir: Path, model: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    src = tmp_path / "in"
    src.mkdir()
    _write_faceless_video(src / "noise.mp4", seconds=1.0)
    (src / "short.mp4").symlink_to(video_dir / "pcavs" / "Input" / "00010.mp4")
    out = tmp_path / "ds"
    code = main(["track", str(src), "--out", str(out), "--model", str(model), "--max-seconds", "1.5"])
    assert code == 2
    err = capsys.readouterr().err
    assert "noise.mp4" in err and "refused 1 of 2 videos" in err
    assert open_dataset(out).clip_ids() == ["short"] and check_dataset(out) == []
    assert json.loads((out / "short" / "meta.json").read_text())["speaker"] == "short"
    # an existing output is not replaced without --force
    assert main(["track", str(src / "short.mp4"), "--out", str(out), "--model", str(model)]) == 2


def test_video_without_audio(tmp_path: Path, model: Path) -> None:
    import av

    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width = vs.height = 64
        vs.pix_fmt = "yuv420p"
        for _ in range(10):
            for p in vs.encode(av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")):
                c.mux(p)
        for p in vs.encode():
            c.mux(p)
    with pytest.raises(KsdiffError, match="no audio stream"):
        from ksdiff.data.tracker import track_clip

        track_clip(path, model=model)


def test_gap_dataclass_str() -> None:
    assert str(Gap(first=3, count=2, start_s=0.12, end_s=0.2)) == "0.12-0.20 s"


def test_missing_mediapipe_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: Path,
                                                video_dir: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "mediapipe", None)  # import mediapipe -> ImportError
    with pytest.raises(KsdiffError, match=r"pip install ksdiff\[track\]"):
        track_video(video_dir / "videoretalking_1.mp4", model=model)


def test_a_video_without_sound_is_a_reference_but_not_a_training_clip(video_dir: Path, tmp_path: Path) -> None:
    """`--style-from` takes a video of a face with no audio stream (its motion alone); `track` still needs speech."""
    import av

    from ksdiff.data.reference import load_reference, load_reference_audio
    from ksdiff.data.tracker import track_clip

    src, mute = video_dir / "videoretalking_1.mp4", tmp_path / "mute.mp4"
    with av.open(str(src)) as inp, av.open(str(mute), "w") as out:  # remux the video stream alone
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for packet in inp.demux(vin):
            if packet.dts is not None:
                packet.stream = vout
                out.mux(packet)
    ref = load_reference(mute, max_seconds=3.0)
    assert ref.spec == "arkit" and ref.fps == 25.0 and abs(ref.duration - 3.0) < 0.1
    assert np.isfinite(ref.coeffs).all() and ref.coeffs[:, ref.channels.index("jawOpen")].std() > 0
    assert load_reference_audio(mute) is None and load_reference_audio(src) is not None
    with pytest.raises(KsdiffError, match="no audio stream"):
        track_clip(mute, progress=False)
