"""Ablation runner: two variants of a tiny model trained a few steps on a small synthetic corpus (espeak-ng speech
with exact ARKit motion), evaluated, tabulated; an interrupted variant resumes, finished ones are skipped."""

from __future__ import annotations

import json

import pytest
import torch

from ksdiff.errors import KsdiffError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    pytest.importorskip("phonemizer")
    from ksdiff.data.synth.config import SynthConfig
    from ksdiff.data.synth.corpus import build_corpus

    out = tmp_path_factory.mktemp("abl") / "synth"
    build_corpus(out, SynthConfig(minutes=0.25, seed=3, fps=25.0))
    return out


@pytest.fixture(scope="module")
def tiny(tiny_config):
    """The shared tiny model with 2 s crops and a short, quiet training setup."""
    p = tiny_config.parent / "tiny_ablate.yaml"
    p.write_text(f"include: {tiny_config}\n"
                 "data: {crop_seconds: 2.0}\n"
                 "train: {batch_size: 2, val_every: 0, save_every: 0, tensorboard: false, log_every: 1, threads: 1}\n")
    return p


def test_select_variants():
    from ksdiff.ablate import TABLE3, select_variants

    assert select_variants("all", "arkit") == [v for v in TABLE3 if v != "jaw_head"]
    assert select_variants("all", "flame")[-1] == "jaw_head"
    assert select_variants("no_kel,full,no_kel", "arkit") == ["no_kel", "full"]
    with pytest.raises(KsdiffError, match="only applies to flame"):
        select_variants("jaw_head", "arkit")
    with pytest.raises(KsdiffError, match="unknown ablation variant"):
        select_variants("no_such", "arkit")


def test_variant_overlay_changes_only_its_switch(tiny, corpus):
    from ksdiff.ablate import variant_config

    full = variant_config([tiny], "full", [corpus], 7, 3)
    no_text = variant_config([tiny], "no_text", [corpus], 7, 3)
    assert no_text.model.transcript is False and no_text.audio.tokens == "none"
    assert no_text.model.dim == full.model.dim == 32  # the overlay's include of default.yaml is not applied
    assert full.train.steps == no_text.train.steps == 7 and full.train.seed == 3
    ds = variant_config([tiny], "diffspeaker", [corpus], 7, 3).model
    assert not (ds.dual_path or ds.keyframes or ds.prosody or ds.transcript or ds.dpse or ds.split_speech)


def test_ablate_two_variants_resume_and_skip(tiny, corpus, tmp_path, capsys):
    from ksdiff.ablate import run_ablation
    from ksdiff.cli import main

    torch.manual_seed(0)
    out = tmp_path / "abl"
    args = ["ablate", "--config", str(tiny), "--data", str(corpus), "--steps", "4", "--variants", "full,no_kel",
            "--out", str(out), "--eval-steps", "2", "--quiet"]
    # first invocation stops after step 2 of the first variant (as an interrupted job would): a one-line error
    assert main(args + ["train.stop_after=2"]) == 2
    assert "run the same command again to resume" in capsys.readouterr().err
    assert json.loads((out / "full" / "train_state.json").read_text())["step"] == 2
    assert not (out / "ablation.md").exists()

    # second invocation: resumes "full" at step 2, trains "no_kel", evaluates both, writes the table
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "resuming at step 2" in text
    steps = [json.loads(line)["step"] for line in (out / "full" / "metrics.jsonl").read_text().splitlines()
             if json.loads(line).get("kind") == "train"]
    assert steps == [1, 2, 3, 4]  # every step once, none repeated
    md = (out / "ablation.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| full |") or line.startswith("| no_kel |")]
    assert len(rows) == 4  # metrics table + training table
    header = next(line for line in md.splitlines() if line.startswith("| method |"))
    for col in ("lve_mm", "beat_align", "kf_f1_head", "jaw_r", "head_div_deg"):
        assert col in header
    doc = json.loads((out / "ablation.json").read_text())
    assert list(doc["variants"]) == ["full", "no_kel"]
    for v, r in doc["variants"].items():
        assert r["steps"] == 4 and r["final_loss"] > 0 and r["params"] > 0
        (mean,) = [e["mean"] for e in r["eval"].values()]
        assert 0.0 <= mean["beat_align"] <= 1.0 and mean["lve_mm"] >= 0.0
        assert (out / v / "eval" / "report.md").is_file()
    assert doc["variants"]["full"]["params"] > doc["variants"]["no_kel"]["params"]  # KEL predictors removed

    # third invocation: nothing to train or evaluate again
    logs: list[str] = []
    run_ablation([tiny], [corpus], 4, "full,no_kel", out, eval_steps=2, progress=False, log=logs.append)
    assert sum("skipping training" in m for m in logs) == 2 and sum("reusing" in m for m in logs) == 2
    # other settings in the same folder are refused, not mixed
    with pytest.raises(KsdiffError, match="other settings"):
        run_ablation([tiny], [corpus], 5, "full", out, progress=False, log=None)
