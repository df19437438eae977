"""Baselines fitted on real paired data (FACEGOOD) and scored with the evaluate machinery."""

from __future__ import annotations

import numpy as np
import pytest

from ksdiff.audio.envelope import pearson
from ksdiff.baselines import Baseline, fit_baseline


@pytest.fixture(scope="module")
def facegood_ds(shared, tmp_path_factory):
    from ksdiff.data.importers import import_dataset

    out = tmp_path_factory.mktemp("fg") / "facegood"
    import_dataset("facegood", [shared / "data" / "facegood"], out, fps=25)
    return out


def test_energy_jaw_beats_static_on_held_out_clip(facegood_ds, tmp_path):
    from ksdiff.data.dataset import open_dataset

    ds = open_dataset(facegood_ds)
    static = fit_baseline("static", facegood_ds)
    ej = fit_baseline("energy-jaw", facegood_ds)
    clip = next(ds.clips("test"))
    gt = clip.motion()
    wave = clip.audio()
    ps, pe = static.animate(wave, gt.fps, gt.num_frames), ej.animate(wave, gt.fps, gt.num_frames)
    assert ps.coeffs.shape == pe.coeffs.shape == gt.coeffs.shape
    jaw = gt.channel("jawOpen")
    r_e = pearson(pe.channel("jawOpen"), jaw)
    assert r_e > 0.3, r_e
    assert np.allclose(ps.channel("jawOpen"), ps.channel("jawOpen")[0])  # static is constant
    assert ej.gains["jawOpen"] > 0  # louder → more open
    # lower error on the mouth than the mean face
    mi = [gt.channels.index(c) for c in ("jawOpen",)]
    err_e = np.mean((pe.coeffs[:, mi] - gt.coeffs[:, mi]) ** 2)
    err_s = np.mean((ps.coeffs[:, mi] - gt.coeffs[:, mi]) ** 2)
    assert err_e < err_s
    # save / load round trip
    ej.save(tmp_path / "ej.json")
    again = Baseline.load(tmp_path / "ej.json")
    assert np.allclose(again.animate(wave, gt.fps, gt.num_frames).coeffs, pe.coeffs)


def test_evaluate_baseline_and_pred_folder(facegood_ds, tmp_path):
    from ksdiff.evaluate import baseline_predictor, evaluate, pred_dataset_predictor

    res = evaluate(facegood_ds, baseline_predictor("energy-jaw", facegood_ds), split="test", out=tmp_path / "ej",
                   name="energy-jaw", progress=False)
    assert (tmp_path / "ej" / "metrics.json").is_file() and (tmp_path / "ej" / "report.md").is_file()
    assert res.mean["jaw_r"] > 0.3
    # the ground truth scored against itself: perfect
    gt = evaluate(facegood_ds, pred_dataset_predictor(facegood_ds), split="test", out=None, name="gt",
                  plots=False, progress=False)
    assert gt.mean["mouth_rmse"] == 0.0 and gt.mean["jaw_r"] == pytest.approx(1.0)
    assert gt.mean["artic_ratio"] == pytest.approx(1.0) and gt.info["articulation"]["ratio"] == pytest.approx(1.0)
    assert len(gt.info["articulation"]["channels"]) >= 5  # the FACEGOOD mouth channels that move
    assert 0 < res.info["articulation"]["ratio"] < 1.5
    assert "Articulation" in (tmp_path / "ej" / "report.md").read_text()
    if "lve_mm" in gt.mean:
        assert gt.mean["lve_mm"] == 0.0 and gt.mean["fdd_mm"] == 0.0
