"""Benchmarks on a tiny randomly-initialised model: the tables, the per-length worker processes, the FLOP floor,
config overlays and recording. Real speech from ../shared; nothing here asserts on speed."""

from __future__ import annotations

import json

import pytest
import torch

from ksdiff.cli import main


@pytest.fixture(scope="module")
def tiny(tiny_config):
    return tiny_config


def test_bench_generate_two_lengths_vs_diffspeaker(tiny, speech_dir, tmp_path, capsys):
    out_json, md = tmp_path / "gen.json", tmp_path / "BENCH.md"
    rc = main(["bench", "generate", "--random-init", str(tiny), "--vs-config", "ablations/diffspeaker",
               "--seconds", "2,3", "--audio-dir", str(speech_dir), "--steps", "2", "--vs-steps", "3",
               "--render-seconds", "1", "--render-size", "64", "--threads", "1", "--json", str(out_json),
               "--record-to", str(md), "--date", "2026-11-21"])
    assert rc == 0
    text = capsys.readouterr().out
    header = next(line for line in text.splitlines() if line.startswith("| model |"))
    for col in ("features", "keyframes", "diffusion", "render", "total", "peak RSS", "diffusion floor"):
        assert col in header
    rows = [line for line in text.splitlines() if line.startswith("| tiny") or line.startswith("| diffspeaker")]
    assert len(rows) == 4, text
    assert "random initialisation" in text

    res = json.loads(out_json.read_text())
    assert res["matmul_gflops"] > 0
    main_src, vs_src = res["sources"]
    # the diffspeaker preset: DDIM in one pass (full sequence), --vs-steps overriding its 50 steps
    assert vs_src["generation"] == {"sampler": "ddim", "steps": 3, "window_s": 0.0, "guidance": 1.0,
                                    "encoder_compute": "float32", "smooth": 0.0}
    assert main_src["generation"]["steps"] == 2 and main_src["generation"]["window_s"] == 8.0
    assert vs_src["params"]["kel"] == 0 and vs_src["params"]["text"] == 0 and main_src["params"]["kel"] > 0
    for src in res["sources"]:
        for r, secs in zip(src["runs"], (2, 3)):
            assert "error" not in r, r
            assert r["num_frames"] == secs * 25
            assert r["windows"] == [[0, secs * 25, 0]]
            for stage in ("features", "diffusion", "render", "total"):
                assert r["rtf"][stage] > 0
            assert r["rtf"]["keyframes"] >= 0
            assert r["render"]["frames"] == 25  # the 1 s slice
            assert r["peak_rss_mb"] >= 0.5 * r["rss_before_mb"] > 0
            assert r["floor_rtf"] > 0 and r["diffusion_flops"] > 0
    # keyframes: the full model decodes them, the model without them spends next to nothing there
    assert all(r["rtf"]["keyframes"] > 0 for r in main_src["runs"])
    assert all(r["stage_seconds"]["keyframes"] < 0.5 * m["stage_seconds"]["keyframes"]
               for r, m in zip(vs_src["runs"], main_src["runs"]))

    rec = md.read_text()
    assert "2026-11-21" in rec and "command: `" in rec and "| model |" in rec and "cores" in rec


def test_bench_generate_errors(tiny, tmp_path, capsys):
    assert main(["bench", "generate", "--seconds", "2"]) == 2
    assert "--random-init" in capsys.readouterr().err
    assert main(["bench", "generate", "--random-init", str(tiny), "--audio-dir", str(tmp_path / "nope")]) == 2
    assert "audio folder not found" in capsys.readouterr().err
    assert main(["bench", "generate", "--random-init", str(tiny), "--seconds", "2,x"]) == 2


def test_bench_generate_vs_the_code_of_another_revision(tiny, speech_dir, tmp_path, capsys):
    """--vs-ref REV measures the same model with the code of git revision REV (checked out with git archive) in
    the same run; an unknown revision is a one-line error."""
    out_json = tmp_path / "ref.json"
    rc = main(["bench", "generate", "--random-init", str(tiny), "--vs-ref", "HEAD", "--seconds", "2",
               "--audio-dir", str(speech_dir), "--steps", "2", "--render-seconds", "0", "--threads", "1",
               "--json", str(out_json)])
    assert rc == 0
    res = json.loads(out_json.read_text())
    main_src, ref_src = res["sources"]
    assert ref_src["label"] == "ksdiff@HEAD" and "with the code of" not in main_src["description"]
    assert "with the code of" in ref_src["description"]
    for src in res["sources"]:
        assert "error" not in src["runs"][0], src["runs"][0]
        assert src["runs"][0]["num_frames"] == 50
    assert main(["bench", "generate", "--random-init", str(tiny), "--vs-ref", "no-such-rev-xyz",
                 "--seconds", "2"]) == 2
    assert "cannot check out revision" in capsys.readouterr().err


def test_bench_train_tiny_vs_no_kel(tiny, tmp_path, capsys):
    out_json = tmp_path / "train.json"
    rc = main(["bench", "train", "--config", str(tiny), "--vs-config", "ablations/no_kel", "--batch", "2",
               "--crop", "1", "--steps", "1", "--threads", "1", "--json", str(out_json)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "s / step" in text and "parameters" in text
    res = json.loads(out_json.read_text())
    full, no_kel = res["sources"]
    assert full["params"]["kel"] > 0 and no_kel["params"]["kel"] == 0
    assert full["params"]["total"] == sum(p.numel() for p in _tiny_model(tiny).parameters())
    for e in res["sources"]:
        assert e["sec_per_step"] > 0 and e["flops_per_step"] > 0 and e["floor_sec_per_step"] > 0
        assert e["loss"] == e["loss"]  # finite
    assert full["flops_per_step"] > no_kel["flops_per_step"]


def _tiny_model(tiny):
    from ksdiff.bench.common import ModelSource, build_model

    return build_model(ModelSource("t", configs=[str(tiny)]))[0]


def test_overlay_keeps_base_and_flops_are_quadratic(tiny):
    """An overlay changes only its own switch (its include of default.yaml is not loaded), and the FLOP count of a
    denoiser call at any length follows the quadratic fitted from three lengths."""
    from ksdiff.bench.common import ModelSource, count_flops, resolve_run_config
    from ksdiff.bench.inference import denoiser_flops_fn

    cfg = resolve_run_config(ModelSource("x", configs=[str(tiny)], overlays=["ablations/no_dual"]))
    assert cfg.model.dim == 32 and cfg.model.dual_path is False and cfg.audio.encoder == "mel"

    torch.manual_seed(0)
    model = _tiny_model(tiny)
    f = denoiser_flops_fn(model)
    T = 200  # 8 s (not one of the fitted lengths)
    N, L = 2 * T, max(1, round(T / 25 * 12))
    batch = {"feats": torch.randn(1, N, model.feat_dim), "prosody": torch.randn(1, N, 2),
             "feat_mask": torch.ones(1, N, dtype=torch.bool), "tokens": torch.randint(3, 64, (1, L)),
             "token_mask": torch.ones(1, L, dtype=torch.bool)}
    cond = model.encode_condition(batch, T, keyframes=torch.zeros(1, T, 2))
    x = torch.randn(1, T, model.spec.dim)
    with torch.no_grad():
        direct = count_flops(lambda: model.denoise(x, torch.tensor([10]), cond))
    assert f(T) == pytest.approx(direct, rel=1e-6)
    assert f(2 * T) > 2 * f(T)  # attention grows faster than linearly
