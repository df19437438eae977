"""The real `ksdiff` command on bad input: one line on stderr naming the file and the problem, exit 2, nothing left
behind."""

from __future__ import annotations

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
