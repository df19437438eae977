"""The real `ksdiff` command on bad input: one line on stderr naming the file and the problem, exit 2, nothing left
behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.decode import SAMPLE_RATE, write_wav
from ksdiff.export.livelink import write_livelink_csv
from ksdiff.face.motion import Motion
from ksdiff.face.specs import get_spec

ARKIT = get_spec("arkit")
KSDIFF = Path(sys.executable).with_name("ksdiff")


def ksdiff(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [str(KSDIFF)] if KSDIFF.exists() else [sys.executable, "-m", "ksdiff"]
    env = dict(os.environ, PYTHONWARNINGS="default")  # warnings would show up on stderr: there must be none
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def speech_like(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def motion(T: int, seed: int = 0) -> Motion:
    c = np.random.default_rng(seed).uniform(0, 1, (T, ARKIT.dim)).astype(np.float32)
    c[:, 52:] = 0.1
    return Motion(c, ARKIT.channels, 25, "arkit")


def assert_one_line_error(r: subprocess.CompletedProcess, file: Path, *words: str) -> str:
    lines = r.stderr.strip("\n").splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"ksdiff: {file}: "), lines[0]
    for w in words:
        assert w in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


@pytest.fixture()
def outs(tmp_path: Path) -> Path:
    d = tmp_path / "outs"
    d.mkdir()
    return d


def test_help_lists_subcommands():
    r = ksdiff("--help")
    assert r.returncode == 0 and r.stderr == ""
    for cmd in ("import", "dataset"):
        assert f"    {cmd} " in r.stdout or f"{{{cmd}" in r.stdout or f",{cmd}" in r.stdout, r.stdout
    r = ksdiff("import", "--help")
    assert r.returncode == 0 and "livelink" in r.stdout and "--force" in r.stdout


def test_truncated_livelink_csv(tmp_path: Path, outs: Path):
    csv_path = tmp_path / "take.csv"
    write_livelink_csv(motion(50), csv_path)
    text = csv_path.read_text()
    csv_path.write_text(text[: int(len(text) * 0.6)])  # the app died mid-row
    write_wav(tmp_path / "take.wav", speech_like(2.0))
    r = ksdiff("import", "livelink", str(csv_path), "--out", str(outs / "ds"))
    assert_one_line_error(r, csv_path, "truncated", "fields")
    assert list(outs.iterdir()) == []  # neither the dataset nor a temporary folder


def test_npz_with_nans(tmp_path: Path, outs: Path):
    m = motion(50)
    m.coeffs[10:12, 17] = np.nan
    m.save(tmp_path / "gen.npz")
    write_wav(tmp_path / "gen.wav", speech_like(2.0))
    ok = motion(50, seed=1)
    ok.save(tmp_path / "a_ok.npz")  # a good clip imported first must not survive the failure either
    write_wav(tmp_path / "a_ok.wav", speech_like(2.0))
    r = ksdiff("import", "npz", str(tmp_path / "a_ok.npz"), str(tmp_path / "gen.npz"), "--out", str(outs / "ds"))
    assert_one_line_error(r, tmp_path / "gen.npz", "2 NaN/inf values", "first frame 10", "jawOpen")
    assert list(outs.iterdir()) == []


def test_wav_that_is_not_audio(tmp_path: Path, outs: Path):
    motion(50).save(tmp_path / "clip.npz")
    (tmp_path / "clip.wav").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    r = ksdiff("import", "npz", str(tmp_path / "clip.npz"), "--out", str(outs / "ds"))
    assert_one_line_error(r, tmp_path / "clip.wav", "not readable as audio")
    assert list(outs.iterdir()) == []


def test_existing_out_needs_force(tmp_path: Path, outs: Path):
    motion(50).save(tmp_path / "clip.npz")
    write_wav(tmp_path / "clip.wav", speech_like(2.0))
    (outs / "ds").mkdir()
    (outs / "ds" / "keep.txt").write_text("mine")
    r = ksdiff("import", "npz", str(tmp_path / "clip.npz"), "--out", str(outs / "ds"))
    assert_one_line_error(r, outs / "ds", "already exists", "--force")
    assert (outs / "ds" / "keep.txt").read_text() == "mine"
    r = ksdiff("import", "npz", str(tmp_path / "clip.npz"), "--out", str(outs / "ds"), "--force")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in outs.iterdir()) == ["ds"]
    assert (outs / "ds" / "clip" / "motion.npz").is_file() and not (outs / "ds" / "keep.txt").exists()
    r = ksdiff("dataset", "check", str(outs / "ds"))
    assert r.returncode == 0 and r.stdout.strip().endswith("ok")


def test_missing_source_and_bad_kind(tmp_path: Path, outs: Path):
    r = ksdiff("import", "facegood", str(tmp_path / "nowhere"), "--out", str(outs / "ds"))
    assert_one_line_error(r, tmp_path / "nowhere", "FACEGOOD")
    r = ksdiff("import", "bvh", "x", "--out", str(outs / "ds"))
    assert r.returncode == 2 and "invalid choice" in r.stderr  # argparse's own usage error
    assert list(outs.iterdir()) == []


# ------------------------------------------------------------------------------------------ evaluate --pred


@pytest.fixture(scope="module")
def tiny_ds(tmp_path_factory) -> Path:
    """An arkit dataset of two 2 s clips (50 frames at 25 fps), all in the train split."""
    from ksdiff.data.importers import import_dataset

    src = tmp_path_factory.mktemp("src")
    for i, n in enumerate("ab"):
        motion(50, seed=i).save(src / f"{n}.npz")
        write_wav(src / f"{n}.wav", speech_like(2.0))
    out = tmp_path_factory.mktemp("ds") / "ds"
    import_dataset("npz", [src / "a.npz", src / "b.npz"], out, fps=25)
    return out


def _preds(folder: Path, frames: int, spec: str = "arkit", fps: float = 25) -> Path:
    from ksdiff.face.specs import get_spec as spec_of

    folder.mkdir()
    for i, n in enumerate("ab"):
        s = spec_of(spec)
        c = np.random.default_rng(i).uniform(0, 1, (frames, s.dim)).astype(np.float32)
        Motion(c, s.channels, fps, spec).save(folder / f"{n}.npz")
    return folder


def _evaluate(pred: Path, ds: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return ksdiff("evaluate", "--pred", str(pred), "--data", str(ds), "--split", "train", "--out", str(out),
                  "--no-plots", *extra)


@pytest.mark.parametrize("frames", [25, 100])
def test_evaluate_refuses_a_prediction_of_another_length(tiny_ds: Path, tmp_path: Path, frames: int):
    pred = _preds(tmp_path / "pred", frames)
    r = _evaluate(pred, tiny_ds, tmp_path / "report")
    assert_one_line_error(r, pred / "a.npz", f"{frames} frames", "the truth has 50", "--align-lengths")
    assert not (tmp_path / "report").exists()
    # explicit: padded (repeating the last frame) or trimmed, and the report says by how much, clip by clip
    r = _evaluate(pred, tiny_ds, tmp_path / "report", "--align-lengths")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "report" / "metrics.json").read_text())["info"]
    change = {"padded": 25, "trimmed": 0} if frames == 25 else {"padded": 0, "trimmed": 50}
    assert info["length_fits"] == {c: {"pred_frames": frames, "truth_frames": 50, **change} for c in "ab"}
    word = "25 frames padded" if frames == 25 else "50 frames trimmed"
    assert (tmp_path / "report" / "report.md").read_text().count(word) == 2


def test_evaluate_tolerates_a_frame_of_rounding_and_reports_it(tiny_ds: Path, tmp_path: Path):
    r = _evaluate(_preds(tmp_path / "pred", 49), tiny_ds, tmp_path / "report")
    assert r.returncode == 0, r.stderr
    info = json.loads((tmp_path / "report" / "metrics.json").read_text())["info"]
    assert info["length_fits"]["a"] == {"pred_frames": 49, "truth_frames": 50, "padded": 1, "trimmed": 0}
    assert "1 frame padded" in (tmp_path / "report" / "report.md").read_text()
    # the same 2 s at 30 fps is the same length: resampled, not refused
    r = _evaluate(_preds(tmp_path / "pred30", 60, fps=30), tiny_ds, tmp_path / "report30")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "report30" / "metrics.json").read_text())["info"]["length_fits"] == {}


def test_evaluate_refuses_a_prediction_in_another_spec(tiny_ds: Path, tmp_path: Path):
    pred = _preds(tmp_path / "pred", 50, spec="flame")
    r = _evaluate(pred, tiny_ds, tmp_path / "report")
    assert_one_line_error(r, pred / "a.npz", "'flame'", "'arkit'")
    assert not (tmp_path / "report").exists()
    # a generic file that lacks channels the truth has
    part = tmp_path / "part"
    part.mkdir()
    m = motion(50)
    for n in "ab":
        Motion(m.coeffs[:, :52], ARKIT.channels[:52], 25, "").save(part / f"{n}.npz")
    r = _evaluate(part, tiny_ds, tmp_path / "report")
    assert_one_line_error(r, part / "a.npz", "lacks 6 of the truth's channels", "headRotX")


def test_evaluate_out_that_is_a_file(tiny_ds: Path, tmp_path: Path):
    report = tmp_path / "report.txt"
    report.write_text("mine")
    r = _evaluate(_preds(tmp_path / "pred", 50), tiny_ds, report)
    assert_one_line_error(r, report, "is a file")
    assert report.read_text() == "mine"


# ------------------------------------------------------------------------------------------ generate / features


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from tests.test_generate import make_checkpoint

    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def _generate(audio: Path, ckpt: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return ksdiff("generate", str(audio), "--checkpoint", str(ckpt), "--out", str(out), "--steps", "2",
                  "--text", "one two three", *extra)


def test_generate_refuses_motion_that_is_not_finite(tmp_path: Path, speech_dir: Path):
    """Finite weights whose motion overflows (normalisation std 3e38): caught before anything is written."""
    from tests.test_generate import make_checkpoint

    ck = make_checkpoint(tmp_path / "overflow.safetensors", motion_std=3e38)
    out = tmp_path / "out"
    r = _generate(speech_dir / "one_two_three.wav", ck, out, "--export", "livelink")
    assert_one_line_error(r, ck, "produced non-finite motion (NaN/inf)", "diverged")
    assert not out.exists() or list(out.iterdir()) == []


def test_generate_refuses_a_checkpoint_with_nan_weights(ckpt: Path, tmp_path: Path, speech_dir: Path):
    from safetensors.torch import load_file, safe_open, save_file

    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
    state = load_file(str(ckpt))
    name = next(k for k, v in state.items() if v.dtype.is_floating_point and v.numel() > 1 and "motion" not in k)
    state[name][...] = float("nan")  # a diverged run
    bad = tmp_path / "diverged.safetensors"
    save_file(state, str(bad), metadata=meta)
    out = tmp_path / "out"
    r = _generate(speech_dir / "one_two_three.wav", bad, out)
    assert_one_line_error(r, bad, "NaN")
    assert not out.exists() or list(out.iterdir()) == []


def test_features_and_generate_share_the_minimum_duration(ckpt: Path, tmp_path: Path):
    from ksdiff.audio.features import MIN_SECONDS

    short = tmp_path / "click.wav"
    write_wav(short, speech_like(0.004))  # 64 samples
    saved = tmp_path / "f.npz"
    r = ksdiff("features", str(short), "--encoder", "mel", "--tokens", "none", "--save", str(saved))
    line = assert_one_line_error(r, short, "too short (0.004 s)", f"at least {MIN_SECONDS:g} s")
    assert not saved.exists() and list(tmp_path.iterdir()) == [short]
    r = _generate(short, ckpt, tmp_path / "out")
    assert assert_one_line_error(r, short) == line  # one rule, one message
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("level_db", [None, -70.0])
def test_features_and_generate_refuse_silence_alike(ckpt: Path, tmp_path: Path, level_db: float | None):
    """Digital silence and near-silence (white noise at -70 dBFS) are both "silent throughout"."""
    from ksdiff.audio.decode import SILENCE_DBFS

    n = 2 * SAMPLE_RATE
    wave = np.zeros(n, np.float32) if level_db is None else \
        (np.random.default_rng(0).standard_normal(n) * 10 ** (level_db / 20)).astype(np.float32)
    quiet = tmp_path / "quiet.wav"
    write_wav(quiet, wave)
    r = ksdiff("features", str(quiet), "--encoder", "mel", "--tokens", "none")
    line = assert_one_line_error(r, quiet, "silent throughout", f"{SILENCE_DBFS:g} dBFS")
    assert ("digital silence" in line) == (level_db is None)
    r = _generate(quiet, ckpt, tmp_path / "out")
    assert assert_one_line_error(r, quiet) == line
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_generate_out_that_is_a_file_is_refused_before_anything_else(tmp_path: Path, speech_dir: Path):
    out = tmp_path / "out.txt"
    out.write_text("mine")
    # the checkpoint does not exist either: the output is checked first, before any model is loaded
    r = _generate(speech_dir / "one_two_three.wav", tmp_path / "missing.safetensors", out)
    assert_one_line_error(r, out, "is a file, not a folder")
    assert out.read_text() == "mine"
    r = _generate(speech_dir / "one_two_three.wav", tmp_path / "missing.safetensors", out / "sub")
    assert_one_line_error(r, out / "sub", f"{out} is a file")


def _mount_tmpfs(where: Path, options: str) -> None:
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")


@pytest.fixture()
def read_only_dir(tmp_path: Path):
    """A folder nobody may write into: a read-only tmpfs for root (who ignores permissions), else mode 0555."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    _mount_tmpfs(d, "ro,size=64k")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


@pytest.fixture()
def full_dir(tmp_path: Path):
    """A folder on a file system with 8 KiB of space (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root")
    d = tmp_path / "full"
    d.mkdir()
    _mount_tmpfs(d, "size=8k")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def test_generate_read_only_out_is_refused_before_any_compute(ckpt: Path, read_only_dir: Path, speech_dir: Path):
    out = read_only_dir / "motion"
    r = _generate(speech_dir / "one_two_three.wav", ckpt, out)
    assert_one_line_error(r, out, "not writable")
    # checked before the model is loaded, let alone run
    r = _generate(speech_dir / "one_two_three.wav", read_only_dir.parent / "missing.safetensors", out)
    assert_one_line_error(r, out, "not writable")
    r = ksdiff("features", str(speech_dir / "one_two_three.wav"), "--encoder", "mel", "--tokens", "none",
               "--save", str(read_only_dir / "f.npz"))
    assert_one_line_error(r, read_only_dir / "f.npz", "not writable")
    assert list(read_only_dir.iterdir()) == []


def test_generate_on_a_full_disk_names_the_output_and_leaves_nothing(ckpt: Path, full_dir: Path,
                                                                    speech_dir: Path):
    r = _generate(speech_dir / "one_two_three.wav", ckpt, full_dir)
    assert_one_line_error(r, full_dir / "one_two_three.npz", "no space left")
    assert list(full_dir.iterdir()) == []  # no staging folder, no temporary, no partial file


# ------------------------------------------------------------------------------------------ refused writes


def test_atomic_writes_turn_refused_writes_into_one_line(tmp_path: Path):
    import errno

    from ksdiff.errors import KsdiffError
    from ksdiff.utils.io import atomic_dir, atomic_path

    target = tmp_path / "m.npz"
    with pytest.raises(KsdiffError) as e:
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")  # what a full disk does mid-write
    assert e.value.path == str(target) and "no space left" in e.value.problem
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "d.npz").mkdir()  # a folder where the file should go
    with pytest.raises(KsdiffError) as e:
        with atomic_path(tmp_path / "d.npz") as tmp:
            tmp.write_bytes(b"whole")
    assert e.value.path == str(tmp_path / "d.npz") and "folder" in e.value.problem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]
    with pytest.raises(KsdiffError) as e:
        with atomic_dir(tmp_path / "ds") as tmp:
            (tmp / "x").write_text("a")
            raise OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp / "x"))
    assert e.value.path == str(tmp_path / "ds") and "quota" in e.value.problem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]
    with pytest.raises(OSError):  # an error about another file is not this write's: unchanged
        with atomic_path(target):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(tmp_path / "input.wav"))


def test_main_turns_an_unhandled_refused_write_into_one_line(monkeypatch, capsys):
    import errno

    from ksdiff.cli import cmd_features, main

    def refused(args):
        raise OSError(errno.EROFS, "Read-only file system", "/mnt/ro/out.npz")

    monkeypatch.setattr(cmd_features, "run", refused)
    assert main(["features", "x.wav"]) == 2
    assert capsys.readouterr().err == "ksdiff: /mnt/ro/out.npz: read-only file system (Read-only file system)\n"

    def bug(args):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(cmd_features, "run", bug)
    with pytest.raises(OSError):  # not a refused write: a bug keeps its traceback
        main(["features", "x.wav"])


def test_features_and_generate_max_seconds(ckpt: Path, speech_dir: Path, tmp_path: Path):
    wav = speech_dir / "one_two_three.wav"  # 2.7 s
    r = ksdiff("features", str(wav), "--encoder", "mel", "--tokens", "none", "--max-seconds", "1")
    line = assert_one_line_error(r, wav, "1 s limit")
    r = _generate(wav, ckpt, tmp_path / "out", "--max-seconds", "1")
    assert assert_one_line_error(r, wav) == line
    r = _generate(wav, ckpt, tmp_path / "out", "--max-seconds", "0")
    assert r.returncode == 2 and r.stderr == "ksdiff: --max-seconds must be positive, got 0\n"
    assert not (tmp_path / "out").exists()


def test_generate_transcript_that_is_not_text(tmp_path: Path, speech_dir: Path):
    bad = tmp_path / "t.txt"
    bad.write_bytes(b"\xff\xfe\x00\x81 not utf-8")
    r = ksdiff("generate", str(speech_dir / "one_two_three.wav"), "--text", str(bad), "--out", str(tmp_path / "o"))
    assert_one_line_error(r, bad, "not UTF-8 text")


def test_a_users_own_capture_is_scored_with_split_all(tmp_path: Path, speech_dir: Path):
    """The shipped model scored on one Live Link capture of real speech (CSV + its audio): imported, the clip goes to
    train (fewer than 3 clips), so `--split test` says how to score it, and `--split all` reports articulation."""
    from ksdiff.generate import DEFAULT_CHECKPOINT, load_model

    audio = speech_dir / "arctic_a0009.wav"
    anim = load_model()
    capture = anim.animate(audio, seed=7, style="synth")  # a stand-in capture: another style and seed
    csv_path = tmp_path / "take.csv"
    write_livelink_csv(capture, csv_path)
    r = ksdiff("import", "livelink", str(csv_path), "--audio", str(audio), "--out", str(tmp_path / "ds"))
    assert r.returncode == 0, r.stderr
    ck = str(DEFAULT_CHECKPOINT)
    r = ksdiff("evaluate", "--checkpoint", ck, "--data", str(tmp_path / "ds"), "--out", str(tmp_path / "rep"))
    assert_one_line_error(r, tmp_path / "ds", "'test' has no clips", "train 1", "--split all")
    r = ksdiff("evaluate", "--checkpoint", ck, "--data", str(tmp_path / "ds"), "--split", "all", "--out",
               str(tmp_path / "rep"), "--no-plots")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert res["info"]["clips"] == 1 and res["mean"]["jaw_r"] > 0.5  # the same speech, another style and seed
    assert 0.3 < res["info"]["articulation"]["ratio"] < 3
