"""Formats: config overlays, the motion file, resampling, and `dataset check` reporting every problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from ksdiff.audio.decode import SAMPLE_RATE, load_audio, write_wav
from ksdiff.cli import main as cli_main
from ksdiff.config import from_dict, load_config_dict, parse_overrides, to_dict
from ksdiff.data.dataset import DatasetWriter, check_dataset
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion, load_motion, motion_problems, resample_coeffs
from ksdiff.face.specs import get_spec

ARKIT = get_spec("arkit")


# --------------------------------------------------------------------------------------------------- config

@dataclass
class _Model:
    dim: int = 64
    dropout: float = 0.1
    windows: list[float] = field(default_factory=lambda: [1.0, 0.25])


@dataclass
class _Train:
    lr: float = 1e-4
    steps: int = 100
    amp: bool = False


@dataclass
class _Cfg:
    name: str = "default"
    model: _Model = field(default_factory=_Model)
    train: _Train = field(default_factory=_Train)


def test_config_include_chain_and_overrides(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "base.yaml").write_text("name: base\nmodel: {dim: 128, dropout: 0.2}\ntrain: {lr: 0.001}\n")
    (tmp_path / "sub" / "mid.yaml").write_text("include: ../base.yaml\nmodel: {dim: 256}\ntrain: {steps: 50}\n")
    (tmp_path / "top.yaml").write_text("include: [sub/mid.yaml]\nname: top\ntrain: {amp: true}\n")
    d = load_config_dict([tmp_path / "top.yaml"], ["train.lr=3e-4", "model.windows=[2.0, 0.5]"])
    cfg = from_dict(_Cfg, d)
    # (PyYAML reads "3e-4" as a string, YAML 1.1; from_dict coerces it for a float field)
    assert to_dict(cfg) == {"name": "top", "model": {"dim": 256, "dropout": 0.2, "windows": [2.0, 0.5]},
                            "train": {"lr": 3e-4, "steps": 50, "amp": True}}
    assert cfg.model.dim == 256 and cfg.model.dropout == 0.2 and cfg.train.lr == 3e-4 and cfg.train.amp is True
    assert to_dict(cfg)["model"]["windows"] == [2.0, 0.5]
    # a later file wins over an earlier one
    (tmp_path / "small.yaml").write_text("model: {dim: 32}\n")
    assert load_config_dict([tmp_path / "top.yaml", tmp_path / "small.yaml"])["model"]["dim"] == 32
    assert from_dict(_Cfg, {}).model.dim == 64  # defaults fill what is missing


def test_config_errors(tmp_path: Path):
    with pytest.raises(KsdiffError, match=r"unknown config key model\.dimm"):
        from_dict(_Cfg, {"model": {"dimm": 3}})
    with pytest.raises(KsdiffError, match="must be an integer"):
        from_dict(_Cfg, parse_overrides(["model.dim=abc"]))
    with pytest.raises(KsdiffError, match="must be true or false"):
        from_dict(_Cfg, {"train": {"amp": "yes please"}})
    with pytest.raises(KsdiffError, match="key.sub=value"):
        parse_overrides(["train.lr"])
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(KsdiffError, match="cycle"):
        load_config_dict(tmp_path / "a.yaml")
    with pytest.raises(KsdiffError, match="not found"):
        load_config_dict(tmp_path / "nope.yaml")


# --------------------------------------------------------------------------------------------------- motion

def _arkit(T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 1, (T, ARKIT.dim)).astype(np.float32)
    c[:, 52:55] = rng.uniform(-0.4, 0.4, (T, 3))
    return c


def test_motion_save_load_and_nan_detection(tmp_path: Path):
    m = Motion(_arkit(10), ARKIT.channels, 25, "arkit")
    m.save(tmp_path / "m.npz")
    back = load_motion(tmp_path / "m.npz")
    np.testing.assert_array_equal(back.coeffs, m.coeffs)
    assert back.channels == ARKIT.channels and back.fps == 25 and back.spec == "arkit"
    assert motion_problems(back) == []
    bad = m.coeffs.copy()
    bad[7, ARKIT.channels.index("jawOpen")] = np.nan
    bad[8, ARKIT.channels.index("headRotY")] = np.inf
    probs = motion_problems(Motion(bad, ARKIT.channels, 25, "arkit"))
    assert len(probs) == 1 and "2 NaN/inf values in 2 frames (first frame 7" in probs[0]
    assert "jawOpen" in probs[0] and "headRotY" in probs[0]
    Motion(bad, ARKIT.channels, 25, "arkit").save(tmp_path / "nan.npz")
    with pytest.raises(KsdiffError, match="NaN") as e:
        load_motion(tmp_path / "nan.npz")
    assert e.value.path == str(tmp_path / "nan.npz")


def test_motion_channel_order_and_names():
    c = _arkit(5)
    swapped = list(ARKIT.channels)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    assert motion_problems(Motion(c, swapped, 25, "arkit")) == ["channels are not in the arkit spec's order"]
    renamed = list(ARKIT.channels)
    renamed[17] = "JawOpen"
    (p,) = motion_problems(Motion(c, renamed, 25, "arkit"))
    assert "missing jawOpen" in p and "unknown JawOpen" in p
    probs = motion_problems(Motion(c[:, :57], ARKIT.channels, 25, "arkit"))
    assert "coeffs has 57 columns but 58 channel names" in probs
    out_of_range = c.copy()
    out_of_range[0, 3] = 1.5
    assert any("outside [0, 1]" in p for p in motion_problems(Motion(out_of_range, ARKIT.channels, 25, "arkit")))
    assert any("expected 'flame'" in p for p in motion_problems(Motion(c, ARKIT.channels, 25, "arkit"),
                                                               spec="flame"))


def test_resample_identity_at_same_fps():
    c = _arkit(37, seed=1)
    c[:, 52:55] = [0.0, 3.1, 0.0]  # near pi as well
    out = resample_coeffs(c, 25, 25, rotation_groups=[[52, 53, 54]])
    np.testing.assert_array_equal(out, c)
    m = Motion(c, ARKIT.channels, 25, "arkit")
    np.testing.assert_array_equal(m.resample(25).coeffs, c)


def test_resample_slerp_across_pi():
    """Yaw +3.0 rad then -3.0 rad: the short way passes through pi, not through 0 as a linear blend would."""
    c = np.zeros((2, 4), dtype=np.float32)
    c[0, 1], c[1, 1] = 3.0, -3.0  # rotation about y (columns 0..2), plus an ordinary channel 3
    c[:, 3] = [0.0, 1.0]
    out = resample_coeffs(c, 1.0, 4.0, num_frames=5, rotation_groups=[[0, 1, 2]])
    angles = np.linalg.norm(out[:, :3], axis=1)
    assert angles.min() > 2.99  # never swings back through the identity
    mid = Rotation.from_rotvec(out[2, :3].astype(np.float64))
    assert mid.magnitude() == pytest.approx(np.pi, abs=1e-5)
    assert abs(mid.as_rotvec()[1]) == pytest.approx(np.pi, abs=1e-5)
    np.testing.assert_allclose(out[:, 3], [0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)  # linear channel, held at end
    # the linear (wrong) answer would be 0 at the midpoint
    assert np.abs(np.interp(0.5, [0, 1], [3.0, -3.0])) < 1e-9


def test_resample_lengths_and_times():
    c = np.linspace(0, 1, 60, dtype=np.float32)[:, None]  # a ramp at 60 fps, 1 s
    out = resample_coeffs(c, 60, 25)
    assert out.shape == (25, 1)
    np.testing.assert_allclose(out[:, 0], np.arange(25) / 25 * 60 / 59, atol=1e-6)
    padded = resample_coeffs(c, 60, 25, num_frames=30)  # past the end: hold the last value
    np.testing.assert_allclose(padded[25:, 0], 1.0)
    irregular = np.array([0.0, 0.1, 0.3, 0.6])
    out = resample_coeffs(irregular[:, None] * 2, 0, 10, num_frames=7, times=irregular)
    np.testing.assert_allclose(out[:, 0], 2 * np.minimum(np.arange(7) / 10, 0.6), atol=1e-6)


# --------------------------------------------------------------------------------------------------- dataset

def test_dataset_check_reports_every_problem(tmp_path: Path, speech_dir: Path, capsys):
    wave = load_audio(speech_dir / "arctic_a0007.wav")
    T = round(len(wave) / SAMPLE_RATE * 25)
    root = tmp_path / "ds"
    with DatasetWriter(root, spec="arkit", fps=25) as w:
        for i in range(5):
            w.add_clip(f"c{i}", wave, Motion(_arkit(T, seed=i), ARKIT.channels, 25, "arkit"),
                       meta={"speaker": "arctic"})
    assert check_dataset(root) == []
    # break three clips, each differently
    nan = _arkit(T)
    nan[3, 0] = np.nan
    np.savez(root / "c0" / "motion.npz", coeffs=nan, channels=np.array(ARKIT.channels), fps=25.0,
             spec=np.array("arkit"))
    (root / "c1" / "audio.wav").unlink()
    Motion(_arkit(T // 2), ARKIT.channels, 25, "arkit").save(root / "c2" / "motion.npz")
    (root / "c3" / "meta.json").write_text("{not json")
    problems = check_dataset(root)
    assert len(problems) == 4, problems
    assert any("c0" in p and "NaN" in p for p in problems)
    assert any("c1" in p and "audio missing" in p for p in problems)
    assert any("c2" in p and f"motion has {T // 2} frames" in p for p in problems)
    assert any("c3" in p and "not valid JSON" in p for p in problems)
    capsys.readouterr()
    assert cli_main(["dataset", "check", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"4 problems in {root}" and len(out) == 5


def test_dataset_writer_is_atomic(tmp_path: Path):
    wave = np.zeros(SAMPLE_RATE, np.float32)
    root = tmp_path / "ds"
    with pytest.raises(KsdiffError, match="NaN"):
        with DatasetWriter(root, spec="arkit", fps=25) as w:
            w.add_clip("good", wave, Motion(_arkit(25), ARKIT.channels, 25, "arkit"))
            bad = _arkit(25)
            bad[0, 0] = np.nan
            w.add_clip("bad", wave, Motion(bad, ARKIT.channels, 25, "arkit"))
    assert list(tmp_path.iterdir()) == []  # no dataset and no temporary folder


def test_write_wav_round_trip(tmp_path: Path):
    x = (0.5 * np.sin(np.arange(SAMPLE_RATE) / 10)).astype(np.float32)
    write_wav(tmp_path / "x.wav", x)
    y = load_audio(tmp_path / "x.wav")
    assert y.shape == x.shape and np.abs(y - x).max() < 1e-4


def test_dataset_folds_keep_people_together(tmp_path: Path, speech_dir: Path, capsys):
    """`ksdiff dataset folds`: every clip is tested exactly once, one person's clips share a fold, and each fold
    is a valid dataset with the source's name (same style tokens) that reads the source's clips."""
    import json

    from ksdiff.data.dataset import open_dataset
    from ksdiff.data.folds import assign_folds, make_folds

    wave = load_audio(speech_dir / "arctic_a0007.wav")
    T = round(len(wave) / SAMPLE_RATE * 25)
    root = tmp_path / "ds"
    people = {"c0": "ann", "c1": "ann", "c2": "bob", "c3": "cy", "c4": "dee", "c5": "dee", "c6": "eve"}
    with DatasetWriter(root, spec="arkit", fps=25, name="video") as w:
        for i, cid in enumerate(people):
            w.add_clip(cid, wave, Motion(_arkit(T, seed=i), ARKIT.channels, 25, "arkit"), meta={"speaker": cid})
    groups = tmp_path / "people.json"
    inverse: dict[str, list[str]] = {}
    for c, p in people.items():
        inverse.setdefault(p, []).append(c)
    groups.write_text(json.dumps({"_note": ["comments are skipped"], **inverse}))
    assert cli_main(["dataset", "folds", str(root), "--out", str(tmp_path / "cv"), "-k", "3",
                     "--groups", str(groups)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3
    tested: list[str] = []
    for k in range(3):
        fold = tmp_path / "cv" / f"fold{k}"
        assert check_dataset(fold) == []
        ds = open_dataset(fold)
        assert ds.name == "video" and set(ds.splits) == {"train", "test"}
        assert not set(ds.splits["train"]) & set(ds.splits["test"])
        assert sorted(ds.splits["train"] + ds.splits["test"]) == sorted(people)
        test_people = {people[c] for c in ds.splits["test"]}
        assert not test_people & {people[c] for c in ds.splits["train"]}  # nobody on both sides
        np.testing.assert_array_equal(ds.clip(ds.splits["test"][0]).motion().coeffs,
                                      open_dataset(root).clip(ds.splits["test"][0]).motion().coeffs)
        tested += ds.splits["test"]
    assert sorted(tested) == sorted(people)
    # without a groups file, each clip's speaker is its group; balanced by clip count; seeded
    folds = assign_folds({c: c for c in people}, 3, seed=1)
    assert sorted(len(f) for f in folds) == [2, 2, 3] and folds == assign_folds({c: c for c in people}, 3, seed=1)
    with pytest.raises(KsdiffError, match="5 groups cannot fill 6 folds"):
        assign_folds(people, 6)
    groups.write_text('{"ann": ["c0"]}')
    with pytest.raises(KsdiffError, match="6 clips are in no group"):
        make_folds(root, 2, tmp_path / "cv2", groups=groups)


def test_dataset_split_keeps_people_together(tmp_path: Path, speech_dir: Path, capsys):
    """`ksdiff dataset split`: the named clips (and, with --groups, their people's other clips) become val / test,
    every other clip trains; a clip in both or an unknown clip is a one-line error and changes nothing."""
    import json

    from ksdiff.data.dataset import open_dataset

    wave = load_audio(speech_dir / "arctic_a0007.wav")
    T = round(len(wave) / SAMPLE_RATE * 25)
    root = tmp_path / "ds"
    with DatasetWriter(root, spec="arkit", fps=25, name="video") as w:
        for i in range(5):
            w.add_clip(f"c{i}", wave, Motion(_arkit(T, seed=i), ARKIT.channels, 25, "arkit"))
    groups = tmp_path / "people.json"
    groups.write_text(json.dumps({"ann": ["c0", "c1"], "bob": ["c2"], "cy": ["c3", "c4"]}))
    assert cli_main(["dataset", "split", str(root), "--val", "c2", "--test", "c4", "--groups", str(groups)]) == 0
    assert open_dataset(root).splits == {"train": ["c0", "c1"], "val": ["c2"], "test": ["c3", "c4"]}
    before = (root / "dataset.json").read_text()
    capsys.readouterr()
    for args, words in ((["--val", "c0", "--test", "c1"], "both val and test"), (["--test", "c9"], "'c9'")):
        assert cli_main(["dataset", "split", str(root), *args, "--groups", str(groups)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and str(root) in err[0]
    assert (root / "dataset.json").read_text() == before


def test_default_splits_by_group_hold_whole_speakers_out(tmp_path: Path, speech_dir: Path):
    """DatasetWriter.split_by_group (the pseudo corpus: one group per speaker): no speaker in two splits, val and
    test near their share, and a speaker bigger than the test share always trains."""
    from ksdiff.data.dataset import open_dataset

    wave = load_audio(speech_dir / "arctic_a0007.wav")[: SAMPLE_RATE]
    motion = Motion(_arkit(25, seed=0), ARKIT.channels, 25, "arkit")
    group = {f"big{i:02d}": "narrator" for i in range(12)} | {f"s{i:02d}": f"reader{i}" for i in range(18)}
    with DatasetWriter(tmp_path / "ds", spec="arkit", fps=25, seed=3) as w:
        for cid in group:
            w.add_clip(cid, wave, motion)
        w.split_by_group(group)
    splits = open_dataset(tmp_path / "ds").splits
    where = {c: s for s, ids in splits.items() for c in ids}
    assert sorted(where) == sorted(group)
    assert all(where[c] == "train" for c in group if group[c] == "narrator")
    assert len(splits["test"]) == 3 and len(splits["val"]) == 3  # 10 % of 30 clips each, one reader a clip
    by_speaker: dict[str, set[str]] = {}
    for c, g in group.items():
        by_speaker.setdefault(g, set()).add(where[c])
    assert all(len(s) == 1 for s in by_speaker.values())
