"""Importers (FACEGOOD, Live Link Face, DECA, npz) on real data and on hand-written files."""

from __future__ import annotations

import json
import wave as wavmod
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ksdiff.audio.decode import SAMPLE_RATE, load_audio, write_wav
from ksdiff.cli import main as cli_main
from ksdiff.data.dataset import check_dataset, open_dataset
from ksdiff.data.importers import import_dataset
from ksdiff.data.importers.deca import codes_to_coeffs
from ksdiff.data.importers.facegood import read_names
from ksdiff.data.importers.livelink import read_livelink_csv
from ksdiff.errors import KsdiffError
from ksdiff.export.livelink import (
    BLENDSHAPE_COLUMNS,
    HEADER,
    euler_to_rotvec,
    format_timecode,
    parse_timecode,
    rotvec_to_euler,
    unwrap_times,
    write_livelink_csv,
)
from ksdiff.face.motion import Motion, load_motion
from ksdiff.face.specs import ARKIT_NAMES, get_spec

ARKIT = get_spec("arkit")
FLAME = get_spec("flame")


def tone(seconds: float, f0: float = 180.0, seed: int = 0) -> np.ndarray:
    """A voiced-like test signal: harmonics of f0 with a syllable-rate envelope, (N,) float32 at 16 kHz."""
    t = np.arange(int(round(seconds * SAMPLE_RATE))) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * t)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.2 * x * env + noise).astype(np.float32)


def smooth_arkit(T: int, seed: int = 0, head_t: bool = False) -> np.ndarray:
    """(T, 58) plausible arkit motion: smooth weights in [0, 1], head rotation within ±0.5 rad."""
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None] / 25.0
    phase = rng.uniform(0, 2 * np.pi, (1, ARKIT.dim))
    freq = rng.uniform(0.2, 2.0, (1, ARKIT.dim))
    c = 0.5 + 0.45 * np.sin(2 * np.pi * freq * t + phase)
    c[:, 52:55] = 0.5 * np.sin(2 * np.pi * freq[:, 52:55] * t + phase[:, 52:55])
    c[:, 55:58] = np.sin(t + phase[:, 55:58]) if head_t else 0.0
    return c.astype(np.float32)


# --------------------------------------------------------------------------------------------------- FACEGOOD

@pytest.fixture(scope="module")
def facegood_ds(shared: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fg") / "ds_facegood"
    assert cli_main(["import", "facegood", str(shared / "data" / "facegood"), "--out", str(out)]) == 0
    return out


def test_facegood_dataset_checks_clean(facegood_ds: Path, capsys):
    assert check_dataset(facegood_ds) == []
    capsys.readouterr()
    assert cli_main(["dataset", "check", str(facegood_ds)]) == 0
    assert "ok" in capsys.readouterr().out
    ds = open_dataset(facegood_ds)
    assert ds.spec == "arkit" and ds.fps == 25.0
    assert len(ds.clip_ids()) == 6 and sorted(ds.clip_ids())[0] == "1114_2_01"
    for clip in ds.clips():
        with wavmod.open(str(clip.audio_path)) as w:
            assert w.getframerate() == 16000 and w.getnchannels() == 1
            seconds = w.getnframes() / w.getframerate()
        m = clip.motion()
        assert m.num_frames == round(seconds * 25)  # exact, not just within the checker's tolerance
        assert clip.meta()["speaker"] == "facegood_shirley" and clip.meta()["source"] == "facegood"


def test_facegood_mapping_values(facegood_ds: Path, shared: Path):
    """max() rows, Invalid rows -> 0, and values equal to the rig's at instants shared by 30 and 25 fps."""
    root = shared / "data" / "facegood"
    names = read_names(root)  # the importer's one pickle load (a known public dataset)
    with pytest.warns(UserWarning, match="Python 2"):
        raw = np.load(root / "bs_value" / "bs_value_1114_2_01.npy", allow_pickle=False)
    m = load_motion(facegood_ds / "1114_2_01" / "motion.npz")
    funnel = raw[:, [names.index(n) for n in ("mouth_funnel_dl", "mouth_funnel_dr", "mouth_funnel_ul",
                                              "mouth_funnel_ur")]].max(1)
    jaw = raw[:, names.index("mouth_stretch_c")]
    k = np.arange(0, m.num_frames, 5)  # t = k/25 = (6k/5)/30: a source frame
    k = k[6 * k // 5 < len(raw)]
    np.testing.assert_allclose(m.channel("mouthFunnel")[k], funnel[6 * k // 5], atol=1e-6)
    np.testing.assert_allclose(m.channel("jawOpen")[k], np.clip(jaw[6 * k // 5], 0, 1), atol=1e-6)
    assert m.channel("jawOpen").max() > 0.5 and m.channel("jawOpen").min() >= 0
    for dead in ("eyeBlinkLeft", "browDownLeft", "browInnerUp", "cheekPuff", "tongueOut", "headRotY", "headTz"):
        assert not m.channel(dead).any(), dead


def test_facegood_refuses_existing_out(facegood_ds: Path, shared: Path):
    before = sorted(p.name for p in facegood_ds.iterdir())
    with pytest.raises(KsdiffError, match="already exists"):
        import_dataset("facegood", [shared / "data" / "facegood"], facegood_ds)
    assert sorted(p.name for p in facegood_ds.iterdir()) == before


# --------------------------------------------------------------------------------------------------- Live Link

def test_timecode_parse_and_format():
    assert parse_timecode("00:00:01:30.000") == pytest.approx(1.5)
    assert parse_timecode("14:03:52:28.207") == pytest.approx(14 * 3600 + 3 * 60 + 52 + 28.207 / 60)
    for s in (0.0, 0.04, 59.999, 3599.5, 50632.4667):
        assert parse_timecode(format_timecode(s)) == pytest.approx(s, abs=1e-5)
    assert format_timecode(1.5) == "00:00:01:30.000"
    # a take that runs through midnight
    t = unwrap_times(np.array([parse_timecode("23:59:59:59.000"), parse_timecode("00:00:00:00.000")]))
    np.testing.assert_allclose(t, [0, 1 / 60], atol=1e-9)
    with pytest.raises(ValueError):
        parse_timecode("12:00:00")


def test_head_angles_axes_and_inverse():
    np.testing.assert_allclose(euler_to_rotvec(0.3, 0.0, 0.0), [[0, 0.3, 0]], atol=1e-12)  # yaw about y
    np.testing.assert_allclose(euler_to_rotvec(0.0, 0.3, 0.0), [[0.3, 0, 0]], atol=1e-12)  # pitch about x
    np.testing.assert_allclose(euler_to_rotvec(0.0, 0.0, 0.3), [[0, 0, 0.3]], atol=1e-12)  # roll about z
    rng = np.random.default_rng(1)
    ypr = rng.uniform(-1.2, 1.2, (200, 3))
    np.testing.assert_allclose(rotvec_to_euler(euler_to_rotvec(*ypr.T)), ypr, atol=1e-12)
    # composition order R = Ry(yaw) Rx(pitch) Rz(roll)
    y, p, r = ypr[0]
    R = (Rotation.from_rotvec([0, y, 0]) * Rotation.from_rotvec([p, 0, 0]) * Rotation.from_rotvec([0, 0, r]))
    np.testing.assert_allclose(euler_to_rotvec(y, p, r)[0], R.as_rotvec(), atol=1e-12)


def _handwritten_csv(path: Path, start_s: float = 14 * 3600 + 3 * 60 + 59 + 30.5 / 60, n: int = 70,
                     drop: int = 17) -> np.ndarray:
    """A Live Link CSV as the app writes it: 60 fps rows from 14:03:59:30.500 (crossing into 14:04:00),
    one dropped frame, jawOpen ramping 0 -> 1 over the first second, yaw 0.2, pitch 0.1 t, eyes nonzero."""
    lines = [",".join(HEADER)]
    times = []
    for i in range(n):
        if i == drop:
            continue
        tod = start_s + i / 60.0
        hh, rem = divmod(tod, 3600)
        mm, ss = divmod(rem, 60)
        sec = int(ss + 1e-9)
        ff = (ss - sec) * 60
        tc = f"{int(hh):02d}:{int(mm):02d}:{sec:02d}:{ff:06.3f}"
        t = i / 60.0
        shapes = np.zeros(52)
        shapes[ARKIT_NAMES.index("jawOpen")] = min(t, 1.0)
        shapes[ARKIT_NAMES.index("eyeBlinkRight")] = 0.25
        head = [0.2, 0.1 * t, 0.0]
        eyes = [0.05, -0.03, 0.0, 0.05, -0.03, 0.0]
        lines.append(f"{tc},61," + ",".join(f"{v:.6f}" for v in list(shapes) + head + eyes))
        times.append(t)
    path.write_text("\n".join(lines) + "\n")
    return np.array(times)


def test_livelink_handwritten_csv_imports(tmp_path: Path):
    csv_path = tmp_path / "MySlate_3_iPhone.csv"
    times = _handwritten_csv(csv_path)
    assert any(":04:00:" in line for line in csv_path.read_text().splitlines()[1:])  # crosses a minute
    take = read_livelink_csv(csv_path)
    np.testing.assert_allclose(take.times, times, atol=1e-5)
    np.testing.assert_allclose(take.eyes[:, 0], 0.05)
    write_wav(tmp_path / "MySlate_3_iPhone.wav", tone(1.0))
    ds = import_dataset("livelink", [csv_path], tmp_path / "ds", fps=25, speaker="me")
    assert check_dataset(ds.root) == []
    clip = ds.clip("MySlate_3_iPhone")
    m = clip.motion()
    assert m.num_frames == 25 and m.fps == 25
    k = np.arange(25)
    np.testing.assert_allclose(m.channel("jawOpen"), k / 25, atol=1e-5)  # linear ramp, dropped frame bridged
    np.testing.assert_allclose(m.channel("eyeBlinkRight"), 0.25, atol=1e-6)
    want = Rotation.from_euler("YXZ", np.stack([np.full(25, 0.2), 0.1 * k / 25, np.zeros(25)], 1)).as_rotvec()
    np.testing.assert_allclose(m.select(("headRotX", "headRotY", "headRotZ")), want, atol=1e-5)
    assert not m.select(("headTx", "headTy", "headTz")).any()
    assert clip.meta()["speaker"] == "me" and clip.meta()["source"] == "livelink"


def test_livelink_writer_round_trip(tmp_path: Path, speech_dir: Path):
    audio = speech_dir / "arctic_a0009.wav"
    T = round(len(load_audio(audio)) / SAMPLE_RATE * 25)
    motion = Motion(smooth_arkit(T, seed=3), ARKIT.channels, 25, "arkit")
    csv_path = tmp_path / "gen.csv"
    write_livelink_csv(motion, csv_path)
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,")
    assert lines[0].endswith("HeadYaw,HeadPitch,HeadRoll,LeftEyeYaw,LeftEyePitch,LeftEyeRoll,"
                             "RightEyeYaw,RightEyePitch,RightEyeRoll")
    assert len(lines) == T + 1 and all(len(row.split(",")) == 63 for row in lines)
    assert lines[2].startswith("00:00:00:02.400,61,")  # frame 1 at 25 fps = 2.4 frames of 60 fps
    assert BLENDSHAPE_COLUMNS[17] == "JawOpen"
    ds = import_dataset("livelink", [csv_path], tmp_path / "ds", audio=[str(audio)])
    back = ds.clip("gen").motion()
    assert back.num_frames == T
    np.testing.assert_allclose(back.coeffs, motion.coeffs, atol=2e-6)
    # and back again: the CSV written from the import is the same text
    write_livelink_csv(back, tmp_path / "again.csv")
    again = read_livelink_csv(tmp_path / "again.csv")
    first = read_livelink_csv(csv_path)
    np.testing.assert_allclose(again.blendshapes, first.blendshapes, atol=2e-6)
    np.testing.assert_allclose(again.head, first.head, atol=2e-6)


def test_livelink_take_folder(tmp_path: Path):
    take = tmp_path / "20240105_MySlate_7"
    take.mkdir()
    _handwritten_csv(take / "MySlate_7_iPhone.csv", n=100, drop=40)
    (take / "frame_log.csv").write_text("Video Frame,Depth Frame,Timecode\n0,0,00:00:00:00.000\n")
    write_wav(take / "MySlate_7_audio.wav", tone(1.5))
    ds = import_dataset("livelink", [tmp_path], tmp_path / "ds")  # a folder of take folders
    assert ds.clip_ids() == ["MySlate_7_iPhone"]
    assert ds.clip("MySlate_7_iPhone").motion().num_frames == round(1.5 * 25)


def test_livelink_rejects_bad_rows(tmp_path: Path):
    p = tmp_path / "bad.csv"
    _handwritten_csv(p, n=10, drop=-1)
    lines = p.read_text().splitlines()
    lines[5], lines[6] = lines[6], lines[5]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(KsdiffError, match="backwards"):
        read_livelink_csv(p)
    lines = p.read_text().splitlines()
    lines[3] = lines[3].replace(",61,", ",61,abc,", 1).rsplit(",", 1)[0]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(KsdiffError, match="EyeBlinkLeft.*not a number"):
        read_livelink_csv(p)


# --------------------------------------------------------------------------------------------------- DECA

def _flame_codes(T: int, seed: int = 0, exp_dim: int = 50) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None] / 30.0
    return {"exp": np.sin(2 * np.pi * rng.uniform(0.3, 2, (1, exp_dim)) * t) * rng.uniform(0.5, 2, (1, exp_dim)),
            "pose": 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 1, (1, 6)) * t + rng.uniform(0, 6, (1, 6))),
            "cam": np.array([[9.0, 0.01, -0.02]]) + 0.01 * np.sin(t)}


def test_deca_sequence_npz_resampled(tmp_path: Path):
    clips = tmp_path / "emoca"
    (clips / "spk1_take1").mkdir(parents=True)
    codes = _flame_codes(36, exp_dim=100)  # 1.2 s at 30 fps, 100 expression dims (first 50 kept)
    np.savez(clips / "spk1_take1" / "codes.npz", expcode=codes["exp"], posecode=codes["pose"], cam=codes["cam"])
    write_wav(clips / "spk1_take1.wav", tone(1.2))
    ds = import_dataset("deca", [clips], tmp_path / "ds", src_fps=30)
    assert ds.spec == "flame" and check_dataset(ds.root) == []
    m = ds.clip("spk1_take1").motion()
    assert m.num_frames == 30
    k = np.arange(0, 30, 5)
    j = 6 * k // 5  # instants shared by 25 and 30 fps
    np.testing.assert_allclose(m.select(FLAME.channels[:50])[k], codes["exp"][j, :50], atol=1e-5)
    np.testing.assert_allclose(m.select(("globalRotX", "globalRotY", "globalRotZ"))[k], codes["pose"][j, :3],
                               atol=1e-5)
    np.testing.assert_allclose(m.select(("jawRotX", "jawRotY", "jawRotZ"))[k], codes["pose"][j, 3:], atol=1e-5)
    np.testing.assert_allclose(m.select(("camScale", "camTx", "camTy"))[k], codes["cam"][j], atol=1e-5)


def test_deca_per_frame_files_and_folders(tmp_path: Path):
    codes = _flame_codes(20, seed=2)
    a, b = tmp_path / "frames_npz", tmp_path / "frames_dirs"
    a.mkdir()
    for i in range(20):
        np.savez(a / f"{i + 1:06d}.npz", exp=codes["exp"][i], pose=codes["pose"][i], cam=codes["cam"][i])
        d = b / f"{i + 1:06d}_000"
        d.mkdir(parents=True)
        for key in ("exp", "pose", "cam"):
            np.save(d / f"{key}.npy", codes[key][i][None])
        np.save(d / "shape.npy", np.zeros((1, 100)))
    write_wav(a / "audio.wav", tone(0.8))
    write_wav(tmp_path / "frames_dirs.wav", tone(0.8))
    ds = import_dataset("deca", [a, b], tmp_path / "ds", src_fps=25)
    for cid in ("frames_npz", "frames_dirs"):
        m = ds.clip(cid).motion()
        assert m.num_frames == 20
        np.testing.assert_allclose(m.select(FLAME.channels[:50]), codes["exp"], atol=1e-6)
        np.testing.assert_allclose(m.select(("jawRotX", "jawRotY", "jawRotZ")), codes["pose"][:, 3:], atol=1e-6)


def test_deca_export_imports_back(tmp_path: Path):
    """ksdiff's own DECA export (one npz recording its fps) imports back bit-exactly, fps taken from the file."""
    from ksdiff.export.deca import write_deca_npz

    codes = _flame_codes(30, seed=4)
    motion = Motion(codes_to_coeffs(codes), FLAME.channels, 30, "flame")
    write_deca_npz(motion, tmp_path / "gen.npz")
    write_wav(tmp_path / "gen.wav", tone(1.0))
    ds = import_dataset("deca", [tmp_path / "gen.npz"], tmp_path / "ds", fps=30)
    back = ds.clip("gen").motion()
    assert back.fps == 30 and ds.clip("gen").meta()["source_fps"] == 30
    np.testing.assert_array_equal(back.coeffs, motion.coeffs)


def test_deca_never_unpickles(tmp_path: Path):
    clip = tmp_path / "pickled"
    clip.mkdir()
    for i in range(3):
        np.save(clip / f"{i:06d}.npy", {"exp": np.zeros(50), "pose": np.zeros(6), "cam": np.zeros(3)})
    write_wav(clip / "audio.wav", tone(0.2))
    with pytest.raises(KsdiffError, match="never unpickles"):
        import_dataset("deca", [clip], tmp_path / "ds")
    assert not (tmp_path / "ds").exists()


# --------------------------------------------------------------------------------------------------- npz

def test_npz_round_trip_exact(tmp_path: Path):
    T = 40
    motion = Motion(smooth_arkit(T, seed=5, head_t=True), ARKIT.channels, 25, "arkit")
    motion.save(tmp_path / "take.npz")
    write_wav(tmp_path / "take.wav", tone(T / 25))
    ds = import_dataset("npz", [tmp_path / "take.npz"], tmp_path / "ds")
    back = ds.clip("take").motion()
    assert back.channels == motion.channels and back.fps == 25
    np.testing.assert_array_equal(back.coeffs, motion.coeffs)  # same fps: bit-exact


def test_npz_reorders_renames_and_resamples(tmp_path: Path):
    T = 50  # 1 s at 50 fps
    c = smooth_arkit(T, seed=6)
    perm = np.random.default_rng(0).permutation(ARKIT.dim)
    names = [ARKIT.channels[i][0].upper() + ARKIT.channels[i][1:] for i in perm] + ["extraThing"]
    coeffs = np.concatenate([c[:, perm], np.ones((T, 1))], axis=1)
    np.savez(tmp_path / "x.npz", coeffs=coeffs, channels=np.array(names), fps=np.float32(50))  # no spec
    write_wav(tmp_path / "x.wav", tone(1.0))
    ds = import_dataset("npz", [tmp_path / "x.npz"], tmp_path / "ds")
    clip = ds.clip("x")
    m = clip.motion()
    assert m.num_frames == 25 and m.spec == "arkit"
    np.testing.assert_allclose(m.coeffs, c[::2], atol=1e-6)  # 50 -> 25 fps lands on every other frame
    assert clip.meta()["dropped_channels"] == ["extraThing"]
    assert json.loads((ds.root / "dataset.json").read_text())["source"] == "npz"


def test_npz_missing_channels(tmp_path: Path):
    c = smooth_arkit(25)[:, :52]
    np.savez(tmp_path / "shapes.npz", coeffs=c, channels=np.array(ARKIT_NAMES), fps=25.0)
    write_wav(tmp_path / "shapes.wav", tone(1.0))
    with pytest.raises(KsdiffError, match="give --spec"):
        import_dataset("npz", [tmp_path / "shapes.npz"], tmp_path / "ds")
    with pytest.raises(KsdiffError, match="missing: headRotX"):
        import_dataset("npz", [tmp_path / "shapes.npz"], tmp_path / "ds", spec="arkit")
    ds = import_dataset("npz", [tmp_path / "shapes.npz"], tmp_path / "ds", spec="arkit", fill_missing=True)
    m = ds.clip("shapes").motion()
    np.testing.assert_allclose(m.coeffs[:, :52], c, atol=1e-7)
    assert not m.coeffs[:, 52:].any()
