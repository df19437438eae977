"""`ksdiff evaluate --speech DIR [--vs CHECKPOINT]`: lip sync on audio alone over real recordings, with the shipped
model (ksdiff.evaluate_speech); `--vs` on a dataset with face truth; the paired comparison both print."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.envelope import speech_envelope
from ksdiff.evaluate_speech import COMPARED, SYNC_METRICS, clip_phones, compare_speech, speech_clips, sync_scores
from ksdiff.face.motion import Motion
from ksdiff.face.specs import get_spec
from ksdiff.utils.stats import bootstrap_interval
from tests.test_cli_errors import assert_one_line_error, ksdiff, speech_like, tiny_ds  # noqa: F401 (fixture)

CLIPS = ("arctic_a0009.wav", "harvard_birch_canoe.wav")  # English, with /p b m/: "table"; "birch ... smooth planks"


@pytest.fixture()
def speech(speech_dir: Path, tmp_path: Path) -> Path:
    """Two real English recordings of ../shared/data/speech, linked (not copied); one with its transcript beside
    it, the other left to Whisper."""
    d = tmp_path / "speech"
    d.mkdir()
    for name in CLIPS:
        (d / name).symlink_to(speech_dir / name)
    (d / "arctic_a0009.txt").write_text("He turned sharply, and faced Gregson across the table.\n")
    return d


@pytest.mark.slow
def test_speech_report_and_a_model_against_itself(speech: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    r = ksdiff("evaluate", "--checkpoint", "default", "--vs", "default", "--speech", str(speech), "--out", str(out),
               "--not-english", CLIPS[1])  # as if it were not English: no closure, on both sides
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert list(doc["reports"]) == ["A", "B"]  # both "default": named by side
    for rep in doc["reports"].values():
        assert sorted(rep["clips"]) == sorted(CLIPS) and rep["seeds"] == [0]
        for clip in rep["clips"].values():
            assert set(clip) == set(SYNC_METRICS)
            assert -1 <= clip["env_r"] <= 1 and -1 <= clip["lip_env_r"] <= 1  # the ICT head is found beside
            assert clip["jaw_p95"] > 0 and clip["capture_ratio"] > 0
        assert 0 <= rep["clips"][CLIPS[0]]["bilabial_closure"] <= 1  # has /p b m/ and aligns
        assert np.isnan(rep["clips"][CLIPS[1]]["bilabial_closure"])
    # the same model with the same seeds: every paired difference is exactly 0, every shared metric compared
    rows = doc["comparison"]
    assert [row["metric"] for row in rows] == list(COMPARED)
    assert all(row["clips"] == (1 if row["metric"] == "bilabial_closure" else 2) for row in rows)
    assert all(row["diff"] == 0 and row["lo"] == row["hi"] == 0 for row in rows)
    assert [p.name for p in (out / "phones").iterdir()] == [f"{CLIPS[0]}.json"]  # aligned once, for both
    assert "| env_r (2 clips) |" in r.stdout and "bilabial_closure" in (out / "report.md").read_text()


def test_speech_clips_of_a_folder_or_one_file(speech: Path, speech_dir: Path) -> None:
    clips = speech_clips(speech)
    assert [f.name for f, _ in clips] == list(CLIPS)
    assert clips[0][1] == "He turned sharply, and faced Gregson across the table." and clips[1][1] is None
    ((f, text),) = speech_clips(speech_dir / "jfk.flac")  # one file; its transcript from the folder's table
    assert f.name == "jfk.flac" and text.startswith("And so, my fellow Americans")


@pytest.mark.parametrize("spec", ["arkit", "flame"])
def test_sync_scores_of_a_jaw_that_is_the_envelope(spec: str) -> None:
    """A jaw that is the speech envelope scores r = 1; a shut mouth at the one /b/ scores closure 1 (ARKit); FLAME
    is read at jawRotX, with closure and the capture ratio (ARKit channels) NaN."""
    sp, wave = get_spec(spec), speech_like(2.0)
    coeffs = np.zeros((50, sp.dim), np.float32)
    jaw = sp.channels.index("jawOpen" if spec == "arkit" else "jawRotX")
    env = speech_envelope(wave, 25, num_frames=50)
    coeffs[:, jaw] = env
    coeffs[20, jaw] = 0.0  # the /b/ centre (0.8 s): jaw shut
    out = sync_scores(Motion(coeffs, sp.channels, 25, spec), wave, [["B", 0.78, 0.82], ["AA", 0.82, 1.0]])
    assert set(out) == set(SYNC_METRICS) and np.isnan(out["lip_env_r"])  # no face given
    assert out["env_r"] == pytest.approx(np.corrcoef(coeffs[:, jaw], env)[0, 1]) and out["env_r"] > 0.9
    assert out["jaw_std"] == pytest.approx(float(coeffs[:, jaw].std()))
    if spec == "arkit":
        assert out["bilabial_closure"] == 1.0
        assert out["capture_ratio"] == 0.0  # of the capture's 7 channels only jawOpen moves: the median is 0
    else:
        assert np.isnan(out["bilabial_closure"]) and np.isnan(out["capture_ratio"])


def test_phones_cache_is_reused_only_for_the_same_file_and_text(speech_dir: Path, tmp_path: Path) -> None:
    from ksdiff.audio.decode import load_audio

    f = speech_dir / "harvard_birch_canoe.wav"
    wave, text = load_audio(f), "The birch canoe slid on the smooth planks."
    phones = clip_phones(f, wave, text, tmp_path)
    assert [p[0] for p in phones if p[0] in ("B", "M", "P")] == ["B", "M", "P"]  # birch, smooth, planks
    cache = tmp_path / f"{f.name}.json"
    doc = json.loads(cache.read_text())
    doc["phones"] = [["M", 0.0, 0.1]]  # a marker: read back only while the key matches
    cache.write_text(json.dumps(doc))
    assert clip_phones(f, wave, text, tmp_path) == [["M", 0.0, 0.1]]
    assert clip_phones(f, wave, text.upper(), tmp_path) != [["M", 0.0, 0.1]]  # another transcript: aligned again


def test_compare_speech_pairs_clips_and_skips_missing_values() -> None:
    a = {"clips": {"x": {"env_r": 0.5, "bilabial_closure": float("nan")}, "y": {"env_r": 0.7}, "z": {"env_r": 0.1}}}
    b = {"clips": {"x": {"env_r": 0.6, "bilabial_closure": 1.0}, "y": {"env_r": 0.9}}}  # z: only in A
    rows = compare_speech(a, b)
    assert [row["metric"] for row in rows] == ["env_r"]  # closure: no clip has it on both sides
    (row,) = rows
    assert row["clips"] == 2 and row["a"] == pytest.approx(0.6) and row["b"] == pytest.approx(0.75)
    assert row["diff"] == pytest.approx(0.15) and row["lo"] == pytest.approx(0.1) and row["hi"] == pytest.approx(0.2)


def test_bootstrap_interval_brackets_the_mean() -> None:
    d = np.random.default_rng(1).normal(0.3, 0.1, 40)
    lo, hi = bootstrap_interval(d)
    assert lo < d.mean() < hi and hi - lo == pytest.approx(2 * 1.96 * d.std() / np.sqrt(40), rel=0.25)
    assert bootstrap_interval(d) == (lo, hi)  # seeded
    assert all(np.isnan(bootstrap_interval(np.array([]))))


def test_speech_bad_inputs_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    assert_one_line_error(ksdiff("evaluate", "--checkpoint", "default", "--speech", str(tmp_path / "nope"), "--out",
                                 str(out)), tmp_path / "nope", "no such file or folder")
    assert_one_line_error(ksdiff("evaluate", "--checkpoint", "default", "--speech", str(empty), "--out", str(out)),
                          empty, "no audio files")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.wav").write_bytes(b"RIFF not really a wave file")
    assert_one_line_error(ksdiff("evaluate", "--checkpoint", "default", "--speech", str(bad), "--out", str(out)),
                          bad / "broken.wav")
    assert not out.exists()  # refused before anything was written
    r = ksdiff("evaluate", "--baseline", "static", "--speech", str(bad), "--out", str(out))
    assert r.returncode == 2 and "give --checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = ksdiff("evaluate", "--checkpoint", "default", "--limit", "2", "--data", str(bad), "--out", str(out))
    assert r.returncode == 2 and "go with --speech" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_two_checkpoints_on_a_dataset_paired(tiny_ds: Path, tmp_path: Path) -> None:
    """`--checkpoint A --vs B --data D`: a report per model and their clip-by-clip comparison; two copies of the same
    model differ by exactly 0 on every metric both score."""
    from tests.test_generate import make_checkpoint

    a, b = make_checkpoint(tmp_path / "a.safetensors"), make_checkpoint(tmp_path / "b.safetensors")
    out = tmp_path / "pair"
    r = ksdiff("evaluate", "--checkpoint", str(a), "--vs", str(b), "--data", str(tiny_ds), "--split", "all",
               "--out", str(out), "--no-plots")
    assert r.returncode == 0, r.stderr
    for name in ("a", "b"):
        assert json.loads((out / name / "metrics.json").read_text())["info"]["clips"] == 2
    rows = json.loads((out / "comparison.json").read_text())["comparison"]
    assert {"lve_mm", "jaw_r", "env_r"} <= {row["metric"] for row in rows}
    assert all(row["clips"] == 2 and row["diff"] == 0 and row["lo"] == row["hi"] == 0 for row in rows)
    assert "| lve_mm ↓ (2 clips) |" in (out / "comparison.md").read_text() and "| b − a |" in r.stdout
    r = ksdiff("evaluate", "--pred", str(tmp_path), "--vs", str(b), "--data", str(tiny_ds), "--out", str(out))
    assert r.returncode == 2 and "give the first with --checkpoint" in r.stderr
