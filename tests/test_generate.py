"""Generation end to end with a tiny randomly initialised KSDiff saved as a checkpoint: real clips of mixed formats
and rates, determinism, long audio in windows (seams measured), exports and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ksdiff.audio.decode import SAMPLE_RATE, load_audio
from ksdiff.config import to_dict
from ksdiff.errors import KsdiffError
from ksdiff.face.specs import get_spec
from ksdiff.generate import Window, load_model, plan_windows, seam_jumps
from ksdiff.model.config import (
    DenoiserConfig,
    StyleEncoderConfig,
    DPSEConfig,
    KELConfig,
    ModelConfig,
    TextConfig,
)
from ksdiff.model.ksdiff import KSDiff
from ksdiff.train.checkpoint import save_checkpoint

# (file, transcript): 16 kHz mono, 44.1 kHz mono, 44.1 kHz stereo wav, 44.1 kHz stereo flac
CLIPS = [("arctic_a0009.wav", "He turned sharply, and faced Gregson across the table."),
         ("one_two_three.wav", "one two three"),
         ("videoretalking_1.wav", None),
         ("jfk.flac", "And so, my fellow Americans, ask not what your country can do for you.")]


def make_checkpoint(path: Path, spec_name: str = "arkit", emotion: bool = False, style_dim: int = 0,
                    motion_std: float = 0.1, ref_dim: int = 0) -> Path:
    """A tiny KSDiff (D = 32, one layer per block) on the weight-free ``mel`` encoder with character tokens.

    A fresh model's zero-initialised output layers would predict x0 = 0 whatever the input, so every all-zero
    parameter is given small random values: the output then depends on noise, speech and keyframes.
    ``motion_std``: the motion normalisation's std of every channel (a huge one, e.g. 3e38, gives finite weights
    whose motion overflows to inf).
    """
    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, dpse_cfg=DPSEConfig(groups=4, heads=2, ffn_mult=1),
                      kel=KELConfig(layers=1, heads=2, ffn_mult=1), text=TextConfig(vocab_size=64, layers=1, heads=2),
                      denoiser=DenoiserConfig(layers=1, heads=4, ffn_dim=64, emotion=emotion, style_dim=style_dim),
                      style_encoder=StyleEncoderConfig(dim=ref_dim, hidden=16))
    spec = get_spec(spec_name)
    model = KSDiff(cfg, spec, 80)
    with torch.no_grad():
        for p in model.parameters():
            if torch.count_nonzero(p) == 0:
                p.normal_(std=0.05)
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.0, 0.3, spec.dim)
    model.set_normalization(mean, np.full(spec.dim, motion_std))
    config = {"model": to_dict(cfg), "spec": spec.to_dict(), "fps": cfg.fps,
              "features": {"encoder": "mel", "dim": 80, "rate": 50.0, "tokens": "chars"},
              "audio": {"encoder": "mel", "tokens": "chars", "transcribe": True},
              "data": {"speakers": [f"spk{i}" for i in range(style_dim)]}}
    save_checkpoint(path, model, config, {"step": 0, "weights": "ema"})
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.safetensors")


@pytest.fixture(scope="module")
def animator(ckpt):
    return load_model(ckpt)


@pytest.mark.parametrize("name,text", CLIPS)
def test_real_clips_have_the_right_length_and_no_nan(animator, speech_dir, name, text):
    path = speech_dir / name
    seconds = len(load_audio(path)) / SAMPLE_RATE
    m = animator.animate(path, text=text if text else "hello", steps=4, seed=0)
    assert m.spec == "arkit" and m.fps == 25.0 and m.channels == get_spec("arkit").channels
    assert abs(m.num_frames - round(seconds * 25)) <= 1
    assert np.isfinite(m.coeffs).all()
    b = get_spec("arkit").index(get_spec("arkit").bounded)
    assert m.coeffs[:, b].min() >= 0.0 and m.coeffs[:, b].max() <= 1.0
    assert m.coeffs.std(axis=0).max() > 0  # it moves
    info = animator.last_info
    assert set(info["timings"]) >= {"decode", "features", "condition", "diffusion", "total"}
    assert all(v >= 0 for v in info["timings"].values())
    kf = info["keyframes"]
    assert kf.shape == (m.num_frames, 2) and set(np.unique(kf)) <= {0, 1}


def test_same_seed_same_motion_other_seed_other_motion(animator, speech_dir):
    wave = load_audio(speech_dir / "arctic_a0007.wav")[:2 * SAMPLE_RATE]
    a = animator.animate(wave, text="and you always", steps=5, seed=3)
    b = animator.animate(wave, text="and you always", steps=5, seed=3)
    c = animator.animate(wave, text="and you always", steps=5, seed=4)
    assert np.array_equal(a.coeffs, b.coeffs)
    assert not np.allclose(a.coeffs, c.coeffs)
    x = animator.animate(wave, text="x", steps=3, seed=1, sampler="ddpm")
    y = animator.animate(wave, text="x", steps=3, seed=1, sampler="ddpm")
    assert np.array_equal(x.coeffs, y.coeffs)


def test_the_same_speech_animated_again_reuses_its_features(ckpt, speech_dir, monkeypatch):
    """Another seed of the same wave (any copy of it) and text reuses the last features, with the same motion as a
    fresh computation; other text or another wave computes them again."""
    import ksdiff.audio.features as F

    calls = []
    real = F.compute_features
    monkeypatch.setattr(F, "compute_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    wave = load_audio(speech_dir / "arctic_a0007.wav")[:2 * SAMPLE_RATE]
    anim = load_model(ckpt)
    first = anim.animate(wave, text="and you always", steps=4, seed=1)
    again = anim.animate(wave.copy(), text="and you always", steps=4, seed=1)
    assert len(calls) == 1 and np.array_equal(first.coeffs, again.coeffs)
    fresh = load_model(ckpt).animate(wave, text="and you always", steps=4, seed=2).coeffs
    assert np.array_equal(anim.animate(wave, text="and you always", steps=4, seed=2).coeffs, fresh)
    assert len(calls) == 2  # the fresh animator's own
    anim.animate(wave, text="and you", steps=4, seed=1)
    anim.animate(wave[:SAMPLE_RATE], text="and you", steps=4, seed=1)
    assert len(calls) == 4


def test_automatic_transcript_when_none_is_given(animator, speech_dir):
    m = animator.animate(speech_dir / "harvard_birch_canoe.wav", steps=2)
    words = animator.last_info["transcript"].lower()
    assert "canoe" in words or "birch" in words
    assert np.isfinite(m.coeffs).all()


def test_long_audio_in_windows(animator, speech_dir):
    """~40 s of concatenated real speech: windows of 8 s overlapping by 2 s; the same length as one pass."""
    names = ["jfk.flac", "faceformer_demo.wav", "codetalker_man.wav", "German1.wav", "vosk_digits.wav"]
    wave = np.concatenate([load_audio(speech_dir / n) for n in names])
    seconds = len(wave) / SAMPLE_RATE
    assert 38 < seconds < 60
    T = int(round(seconds * 25))
    m = animator.animate(wave, text=None, steps=4, seed=0, window_s=8.0, overlap_s=2.0)
    info = animator.last_info
    assert m.num_frames == T and np.isfinite(m.coeffs).all()
    wins = [Window(*w) for w in info["windows"]]
    assert len(wins) >= 5 and wins[0].start == 0 and wins[-1].stop == T
    assert all(w.length == 200 and w.known >= 50 for w in wins[1:])
    s = info["seams"]
    assert s["num_seams"] == len(wins) - 1 and np.isfinite(s["seam"]) and np.isfinite(s["inside"])
    # a window's known frames are exactly the previous window's output: the first generated frame after each
    # overlap continues from them, so the seam jump is of the order of the jumps inside windows
    assert s["ratio"] < 5.0


def test_windows_encoded_in_one_batch_equal_one_by_one(animator, speech_dir, monkeypatch):
    """Long audio: the windows' conditions (and autoregressive keyframes) computed as one batch are those computed
    window by window."""
    import ksdiff.generate as G

    names = ["jfk.flac", "faceformer_demo.wav", "codetalker_man.wav"]
    wave = np.concatenate([load_audio(speech_dir / n) for n in names])
    sf = animator.speech_features(wave, text="")
    T = int(round(len(wave) / SAMPLE_RATE * animator.fps))
    wins = animator._plan(T, len(wave) / SAMPLE_RATE, 8.0, 2.0)
    assert len(wins) >= 3
    out = {}
    for batch in (1, G.ENCODE_BATCH):
        monkeypatch.setattr(G, "ENCODE_BATCH", batch)
        out[batch] = animator._conditions(sf, wins, T, None, {}, seed=0)
    (c1, k1), (cb, kb) = out[1], out[G.ENCODE_BATCH]
    assert torch.equal(k1, kb) and k1.sum() > 0
    for a, b in zip(c1, cb):
        for p in a["speech"]:
            torch.testing.assert_close(a["speech"][p], b["speech"][p], atol=1e-5, rtol=1e-5)


def test_plan_windows_cover_everything_once():
    for T in (1, 199, 250, 251, 999, 15000):
        wins = plan_windows(T, 200, 50)
        covered = np.zeros(T, dtype=int)
        for k, w in enumerate(wins):
            assert w.start >= 0 and w.stop <= T
            covered[w.start + w.known:w.stop] += 1  # generated frames
            if k:
                assert w.known == wins[k - 1].stop - w.start >= 50
        assert (covered == 1).all()
    assert plan_windows(15000, 0, 0) == [Window(0, 15000, 0)]


def test_seam_jumps_finds_a_step():
    x = np.zeros((100, 3))
    x[60:] = 1.0
    r = seam_jumps(x, [Window(0, 70, 0), Window(40, 100, 20)])
    assert r["num_seams"] == 1 and r["seam"] == pytest.approx(1.0) and r["inside"] == 0.0


def test_emotion_and_style_condition_the_motion(tmp_path, speech_dir):
    a = load_model(make_checkpoint(tmp_path / "m.safetensors", emotion=True, style_dim=3))
    wave = load_audio(speech_dir / "arctic_a0009.wav")
    base = a.animate(wave, text="hi", steps=3, seed=0)
    happy = a.animate(wave, text="hi", steps=3, seed=0, emotion=(0.8, 0.6))
    styled = a.animate(wave, text="hi", steps=3, seed=0, style="spk2")
    assert not np.allclose(base.coeffs, happy.coeffs)
    assert not np.allclose(base.coeffs, styled.coeffs)
    with pytest.raises(KsdiffError):
        a.animate(wave, text="hi", steps=3, style="nobody")
    with pytest.raises(KsdiffError):
        load_model(make_checkpoint(tmp_path / "plain.safetensors")).animate(wave, text="hi", steps=2, emotion=(0, 0))
    with pytest.raises(KsdiffError, match=r"\[-1, 1\]"):
        a.animate(wave, text="hi", steps=2, emotion=(2.0, 0))


def test_emotion_curve_file_drives_generation(tmp_path, speech_dir, capsys):
    from ksdiff.cli import main
    from ksdiff.face.emotion import EmotionCurve

    ckpt = make_checkpoint(tmp_path / "m.safetensors", emotion=True)
    curve = tmp_path / "curve.csv"
    curve.write_text("time_s,valence,arousal\n0,-1,0\n1.5,1,0.5\n")
    c = EmotionCurve.read(curve)
    va = c.at(np.array([0.0, 0.75, 1.5, 9.0]))
    assert np.allclose(va, [[-1, 0], [0, 0.25], [1, 0.5], [1, 0.5]])  # interpolated, held after the end
    a = load_model(ckpt)
    wave = load_audio(speech_dir / "arctic_a0009.wav")
    m_curve = a.animate(wave, text="hi", steps=3, seed=0, emotion=c)
    m_flat = a.animate(wave, text="hi", steps=3, seed=0, emotion=(1.0, 0.5))
    T = m_curve.num_frames
    gap = np.abs(m_curve.coeffs - m_flat.coeffs).mean(axis=1)
    assert T > 60 and gap[: T // 10].mean() > 5 * gap[-T // 4:].mean()  # unlike at the start, alike at the end
    out = tmp_path / "o"
    wav = str(speech_dir / "arctic_a0009.wav")
    assert main(["generate", wav, "--checkpoint", str(ckpt), "--out", str(out), "--steps", "2",
                 "--emotion-curve", str(curve)]) == 0
    # a negative valence written as a separate argument is a value, not an option
    assert main(["generate", wav, "--checkpoint", str(ckpt), "--out", str(out), "--steps", "2", "--seed", "0",
                 "--emotion", "-0.5,0.2"]) == 0
    sad = np.load(out / "arctic_a0009.npz")["coeffs"]
    assert np.allclose(sad, a.animate(wave, steps=2, seed=0, emotion=(-0.5, 0.2)).coeffs, atol=1e-5)
    for bad, words in (("0,0\n", "three numbers"), ("0,0,0\n1,2,0\n", "[-1, 1]"), ("1,0,0\n0,0,0\n", "increase")):
        curve.write_text(bad)
        assert main(["generate", wav, "--checkpoint", str(ckpt), "--out", str(out), "--emotion-curve",
                     str(curve)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("ksdiff: ") and str(curve) in err and words in err, err


def test_bad_checkpoints_are_user_errors(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(KsdiffError):
        load_model(bad)
    with pytest.raises(KsdiffError):
        load_model(tmp_path / "missing.safetensors")


def test_cli_writes_motion_livelink_and_summary(ckpt, speech_dir, tmp_path):
    from ksdiff.cli import main
    from ksdiff.data.importers.livelink import read_livelink_csv
    from ksdiff.face.motion import load_motion

    out = tmp_path / "out"
    rc = main(["generate", str(speech_dir / "arctic_a0009.wav"), str(speech_dir / "one_two_three.wav"),
               "--checkpoint", str(ckpt), "--out", str(out), "--steps", "3", "--export", "livelink",
               "--text", "he turned sharply", "--text", "one two three"])
    assert rc == 0
    m = load_motion(out / "arctic_a0009.npz", spec="arkit")
    assert abs(m.num_frames - round(3.095 * 25)) <= 1
    take = read_livelink_csv(out / "arctic_a0009.csv")
    assert len(take.times) == m.num_frames
    np.testing.assert_allclose(take.blendshapes, m.coeffs[:, :52], atol=1e-6)
    summary = json.loads((out / "generate.json").read_text())
    assert len(summary["files"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["arctic_a0009.csv", "arctic_a0009.npz", "generate.json",
                                                     "one_two_three.csv", "one_two_three.npz"]


def test_cli_no_transcript_skips_whisper_for_the_shipped_model(speech_dir, tmp_path, capsys):
    """The shipped model reads a transcript; Whisper tiny.en would invent English words for German speech.
    --no-transcript gives the model its null text instead (and contradicts --text)."""
    from ksdiff.cli import main

    wav = speech_dir / "German1.wav"
    out = tmp_path / "de"
    assert main(["generate", str(wav), "--out", str(out), "--steps", "2", "--no-transcript"]) == 0
    summary = json.loads((out / "generate.json").read_text())
    entry = summary["files"][str(wav)]
    assert entry["transcript"] == ""  # without the flag: "We're in the end of Studium's observator Ginta ..."
    # the settings it used are recorded, the checkpoint's defaults where none was given
    assert summary["style"] == "pseudo" and summary["smooth"] == 0.75 and summary["steps"] == 2
    assert main(["generate", str(wav), "--out", str(out), "--no-transcript", "--text", "hallo"]) == 2
    assert "--no-transcript" in capsys.readouterr().err


def test_cli_user_errors_exit_2(ckpt, speech_dir, tmp_path, capsys):
    from ksdiff.cli import main

    wav = str(speech_dir / "arctic_a0009.wav")
    out = tmp_path / "o"
    assert main(["generate", wav, "--checkpoint", str(ckpt), "--out", str(out), "--export", "flame"]) == 2
    assert main(["generate", wav, "--checkpoint", str(tmp_path / "nope.safetensors"), "--out", str(out)]) == 2
    assert main(["generate", wav, "--checkpoint", str(ckpt), "--out", str(out), "--emotion", "happy"]) == 2
    assert main(["generate", str(tmp_path / "none.wav"), "--checkpoint", str(ckpt), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("ksdiff:") == 4
    assert not out.exists() or not any(out.iterdir())


def test_flame_model_exports_deca_codes(tmp_path, speech_dir):
    from ksdiff.cli import main
    from ksdiff.data.importers.deca import read_codes
    from ksdiff.face.motion import load_motion

    ck = make_checkpoint(tmp_path / "flame.safetensors", spec_name="flame")
    out = tmp_path / "out"
    assert main(["generate", str(speech_dir / "one_two_three.wav"), "--checkpoint", str(ck), "--out", str(out),
                 "--steps", "2", "--export", "flame", "--text", "one two three"]) == 0
    m = load_motion(out / "one_two_three.npz", spec="flame")
    codes = read_codes(out / "one_two_three_deca.npz")
    assert codes["exp"].shape == (m.num_frames, 50) and codes["pose"].shape == (m.num_frames, 6)
    np.testing.assert_allclose(codes["pose"][:, 3:], m.select(("jawRotX", "jawRotY", "jawRotZ")), atol=1e-6)


def test_cli_render_writes_an_mp4_with_audio(ckpt, speech_dir, tmp_path):
    import av

    from ksdiff.cli import main

    out = tmp_path / "r"
    assert main(["generate", str(speech_dir / "one_two_three.wav"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--steps", "2", "--text", "one two three", "--render", "--face", "schematic"]) == 0
    with av.open(str(out / "one_two_three.mp4")) as c:
        kinds = sorted(s.type for s in c.streams)
        video = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video))
    assert kinds == ["audio", "video"]
    assert abs(frames - round(2.745 * 25)) <= 1


def test_non_finite_motion_is_refused_naming_the_checkpoint(ckpt, speech_dir):
    """A model whose output is NaN (here one weight set to NaN in memory) raises before any motion is returned."""
    a = load_model(ckpt)
    with torch.no_grad():
        next(p for n, p in a.model.named_parameters() if p.numel() > 1).fill_(float("nan"))
    with pytest.raises(KsdiffError) as e:
        a.animate(speech_dir / "one_two_three.wav", text="one two three", steps=2)
    assert e.value.path == str(ckpt) and "non-finite motion" in e.value.problem and "diverged" in e.value.problem


def test_export_errors_name_the_output_not_the_staging_folder(tmp_path):
    """An exporter's refusal names OUT/<stem>.csv (never the staging folder) and leaves none of the file's
    outputs behind."""
    from ksdiff.cli.cmd_generate import _write_outputs
    from ksdiff.face.motion import Motion

    spec = get_spec("arkit")
    coeffs = np.full((10, spec.dim), 0.5, np.float32)
    coeffs[3, 0] = np.nan
    out = tmp_path / "out"
    with pytest.raises(KsdiffError) as e:
        _write_outputs(out, tmp_path / "take.wav", Motion(coeffs, spec.channels, 25.0, "arkit"), {"livelink"},
                       None, "auto")
    assert e.value.path == str(out / "take.csv") and "NaN" in e.value.problem
    assert list(out.iterdir()) == []


def test_same_seed_same_motion_across_windows(animator, speech_dir):
    """Long audio in several windows: the same seed gives bit-identical motion (the window steps are split out of
    ``animate``; their seeds derive from the window index)."""
    wave = load_audio(speech_dir / "jfk.flac")
    a = animator.animate(wave, text=None, steps=2, seed=7, window_s=4.0, overlap_s=1.0)
    b = animator.animate(wave, text=None, steps=2, seed=7, window_s=4.0, overlap_s=1.0)
    assert len(animator.last_info["windows"]) > 1 and np.array_equal(a.coeffs, b.coeffs)


def test_too_short_wave_is_refused_like_a_too_short_file(animator):
    from ksdiff.audio.features import MIN_SECONDS

    with pytest.raises(KsdiffError) as e:
        animator.animate(np.full(int(0.05 * SAMPLE_RATE), 0.1, np.float32), text="a", steps=2)
    assert f"at least {MIN_SECONDS:g} s" in e.value.problem


def test_smooth_mouth_smooths_only_the_mouth_and_keeps_bounds():
    """smooth_mouth: a Gaussian over time on the mouth channels only; σ 0 is the identity; values stay in [0, 1]."""
    from ksdiff.generate import MAX_SMOOTH, generation_defaults, smooth_mouth

    spec = get_spec("arkit")
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, (50, spec.dim)).astype(np.float32)
    out = smooth_mouth(raw, spec, 1.0)
    mouth = np.array([c.startswith(("jaw", "mouth", "tongue", "cheekPuff")) for c in spec.channels])
    assert (out[:, ~mouth] == raw[:, ~mouth]).all()
    assert out[:, mouth].std(axis=0).mean() < 0.7 * raw[:, mouth].std(axis=0).mean()  # white noise loses power
    assert np.allclose(out[:, mouth].mean(axis=0), raw[:, mouth].mean(axis=0), atol=0.05)
    assert out.min() >= 0 and out.max() <= 1 and out.dtype == np.float32
    assert smooth_mouth(raw, spec, 0.0) is raw
    step = np.zeros((20, spec.dim), np.float32)
    step[10:, spec.channels.index("jawOpen")] = 1.0
    j = smooth_mouth(step, spec, 1.0)[:, spec.channels.index("jawOpen")]
    assert j[0] == 0 and j[-1] == 1 and 0 < j[9] < 0.5 < j[10] < 1  # the step is blurred, not shifted
    assert generation_defaults({})["smooth"] == 0.0
    assert generation_defaults({"generation": {"smooth": 0.75}})["smooth"] == 0.75
    with pytest.raises(KsdiffError, match="smooth"):
        generation_defaults({"generation": {"smooth": MAX_SMOOTH + 1}})
