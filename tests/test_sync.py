"""Audio–video offsets of real tracked talking faces (../shared/data/video_extra), found from the speech and
corrected; the piecewise forced alignment that makes long or clipped recordings alignable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.align import align, align_long
from ksdiff.audio.decode import load_audio
from ksdiff.cli import main
from ksdiff.data.dataset import open_dataset
from ksdiff.data.sync import lag_scores, shift_motion
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion


def test_lag_scores_find_a_known_shift() -> None:
    rng = np.random.default_rng(0)
    x = np.convolve(rng.standard_normal(400), np.ones(5) / 5, mode="same")[:, None]
    late = np.concatenate([np.zeros((3, 1)), x[:-3]])  # real[t] = pred[t - 3]: the face is 3 frames late
    s = lag_scores(x, late, 8)
    assert max(s, key=s.get) == 3 and s[3] > 0.99 > s[0]
    m = Motion(np.repeat(late, 2, axis=1), ("a", "b"), 25.0, "")
    fixed = shift_motion(m, 3).coeffs[:, 0]
    assert fixed.shape == (400,) and np.allclose(fixed[:-3], x[:-3, 0])


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, shared: Path) -> Path:
    """Obama_clip1 (6 s; its lips lead the sound by ~0.16 s) and a GRID sentence (in sync), tracked."""
    pytest.importorskip("mediapipe")
    out = tmp_path_factory.mktemp("sync") / "ds"
    model = shared / "assets" / "mediapipe" / "face_landmarker.task"
    vx = shared / "data" / "video_extra"
    assert main(["track", str(vx / "styletalk" / "Obama_clip1.mp4"), str(vx / "grid" / "sbwe5n.mp4"),
                 "--out", str(out), "--model", str(model), "--max-seconds", "6"]) == 0
    return out


def test_track_sync_corrects_while_tracking(tmp_path: Path, shared: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("mediapipe")
    out = tmp_path / "ds"
    video = shared / "data" / "video_extra" / "edtalk" / "uncrop_Obama.mp4"  # lips ~0.24 s ahead of the sound
    assert main(["track", str(video), "--out", str(out), "--max-seconds", "8", "--sync",
                 "--model", str(shared / "assets" / "mediapipe" / "face_landmarker.task")]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("uncrop_Obama ") and "verdict" not in x)
    assert "motion early by" in line and "corrected" in line
    sync = open_dataset(out).clip("uncrop_Obama").meta()["av_sync"]
    assert sync["lag_frames"] in (-7, -6, -5) and sync["reliable"]


def test_tracked_video_offset_found_and_corrected_once(tracked: Path, capsys: pytest.CaptureFixture) -> None:
    ds = open_dataset(tracked)
    obama = next(c for c in ds.clip_ids() if "Obama" in c)
    grid = next(c for c in ds.clip_ids() if "sbwe5n" in c)
    before = {c: ds.clip(c).motion().coeffs.copy() for c in (obama, grid)}
    capsys.readouterr()
    assert main(["dataset", "sync", str(tracked), "--apply"]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 clips out of sync (corrected)" in out
    meta = ds.clip(obama).meta()["av_sync"]
    assert meta["reliable"] and meta["lag_frames"] in (-5, -4, -3)  # 0.12–0.2 s early
    assert meta["score"] > meta["score_at_zero"] + 0.2
    lag = meta["lag_frames"]
    after = ds.clip(obama).motion().coeffs
    assert np.array_equal(after[-lag:], before[obama][:lag]) and np.array_equal(after[0], before[obama][0])
    g = ds.clip(grid).meta()["av_sync"]
    assert g["lag_frames"] == 0 and np.array_equal(ds.clip(grid).motion().coeffs, before[grid])
    # measured again, never shifted twice: the corrected clip now reads as in sync
    assert main(["dataset", "sync", str(tracked), "--apply"]) == 0
    out = capsys.readouterr().out
    assert np.array_equal(ds.clip(obama).motion().coeffs, after)
    line = next(x for x in out.splitlines() if x.startswith(obama))
    assert "+0.00s" in line and "in sync" in line


def test_sync_refuses_a_dataset_of_another_spec(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"spec": "flame", "fps": 25, "splits": {}}))
    assert main(["dataset", "sync", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ARKit" in err[0] and str(tmp_path / "d") in err[0]


def test_long_or_clipped_speech_aligns_piece_by_piece(shared: Path) -> None:
    """pcavs 00373 ends mid-sentence ("... and I try not to"): the whole utterance does not align."""
    wave = load_audio(shared / "data" / "video" / "pcavs" / "Audio_Source" / "00373.mp4")
    from ksdiff.audio.transcript import transcribe

    text = transcribe(wave).text
    with pytest.raises(KsdiffError, match="does not fit"):
        align(wave, text)
    al = align_long(wave, text)
    dur = len(wave) / 16000
    assert len(al.words) >= 0.8 * len(text.split())
    assert al.phones[0].start == 0.0 and al.phones[-1].end == pytest.approx(dur, abs=1e-3)
    assert all(a.end <= b.start + 1e-6 for a, b in zip(al.phones, al.phones[1:]))
    assert all(0 <= w.start < w.end <= dur for w in al.words)
