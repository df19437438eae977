"""Training: data pipeline, schedule, loss falling, exact resume, torchrun with 2 CPU processes, CLI errors.

Data: two small datasets built from real recordings in ../shared: real speech clips with motion derived from their
speech envelope (jaw/mouth follow the envelope, head nods with the smoothed envelope plus slow drift, blinks), at
25 fps; and two FACEGOOD clips (real animator-made mouth motion) imported at 30 fps, cut to 12 s. Everything uses the
``mel`` encoder, character tokens and a tiny model so that training steps take ~0.1 s on one CPU thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ksdiff.cli import main as cli
from ksdiff.config import load_yaml
from ksdiff.data.dataset import DatasetWriter
from ksdiff.face.motion import Motion
from ksdiff.face.specs import get_spec

REPO = Path(__file__).resolve().parents[1]

TINY = ["model.dim=32", "model.dpse_cfg.dilations=[1,2]", "model.dpse_cfg.groups=4", "model.dpse_cfg.heads=2",
        "model.kel.layers=1", "model.kel.heads=2", "model.text.layers=1", "model.text.heads=2",
        "model.denoiser.layers=1", "model.denoiser.heads=2", "model.denoiser.ffn_dim=64",
        "audio.encoder=mel", "audio.tokens=chars", "audio.transcribe=false",
        "data.crop_seconds=2", "train.batch_size=4", "train.threads=1", "train.tensorboard=false"]

SPEECH_CLIPS = ["arctic_a0007.wav", "arctic_a0009.wav", "harvard_birch_canoe.wav", "one_two_three.wav",
                "noisy_audio_narrative.wav", "jfk.flac", "German1.wav", "vosk_digits.wav"]


def _speech_motion(wave: np.ndarray, fps: float, seed: int) -> Motion:
    from scipy.ndimage import gaussian_filter1d

    from ksdiff.audio.envelope import speech_envelope

    spec = get_spec("arkit")
    T = int(round(len(wave) / 16000 * fps))
    env = speech_envelope(wave, fps, T)
    env = env / (env.max() + 1e-8)
    ix = {n: i for i, n in enumerate(spec.channels)}
    rng = np.random.default_rng(seed)
    x = np.zeros((T, spec.dim), np.float32)
    x[:, ix["jawOpen"]] = 0.6 * env
    x[:, ix["mouthClose"]] = 0.2 * (1.0 - env)
    x[:, ix["mouthFunnel"]] = np.clip(np.gradient(env) * 1.5, 0.0, 1.0)
    for k in range(0, T, int(fps * 3)):
        b = k + int(rng.integers(0, fps))
        x[b:b + 3, ix["eyeBlinkLeft"]] = x[b:b + 3, ix["eyeBlinkRight"]] = 0.9
    t = np.arange(T) / fps
    nod = gaussian_filter1d(env, 4)
    x[:, ix["headRotX"]] = 0.08 * (nod - nod.mean()) + 0.02 * np.sin(2 * np.pi * 0.3 * t)
    x[:, ix["headRotY"]] = 0.05 * np.sin(2 * np.pi * 0.17 * t + rng.uniform(0, 6))
    x[:, ix["headTz"]] = 0.5 * np.sin(2 * np.pi * 0.07 * t)
    return Motion(x, spec.channels, fps, "arkit")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, speech_dir: Path, shared: Path) -> tuple[Path, Path]:
    from ksdiff.audio.decode import load_audio
    from ksdiff.data.importers import get_importer

    root = tmp_path_factory.mktemp("train_data")
    texts = {}
    for line in (speech_dir / "transcripts.tsv").read_text(encoding="utf-8").splitlines()[1:]:
        f, t, *_ = line.split("\t")
        texts[f] = t
    speech = root / "speech"
    files = [f for f in SPEECH_CLIPS if (speech_dir / f).is_file()]
    assert len(files) >= 6
    with DatasetWriter(speech, "arkit", 25.0, name="speech") as w:
        for i, f in enumerate(files):
            wave = load_audio(speech_dir / f)[: 16000 * 8]
            w.add_clip(Path(f).stem, wave, _speech_motion(wave, 25.0, i), transcript=texts.get(f) or None,
                       meta={"speaker": f"spk{i % 3}", "emotion": {"valence": 0.2 * (i % 3) - 0.2, "arousal": 0.1}})
        ids = [Path(f).stem for f in files]
        w.set_splits({"train": ids[:-2], "val": ids[-2:], "test": []})
    fg = root / "facegood"
    clips = get_importer("facegood")([shared / "data" / "facegood"], fps=30.0)
    with DatasetWriter(fg, "arkit", 30.0, name="facegood") as w:
        for _, clip in zip(range(2), clips):
            m = Motion(clip.motion.coeffs[:360], clip.motion.channels, 30.0, "arkit")  # 12 s at 30 fps
            w.add_clip(clip.id, clip.wave[:16000 * 12], m, meta=clip.meta)
        w.set_splits({"train": list(w.ids), "val": [], "test": []})
    return speech, fg


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["kind"] == "train"]


def _train(out: Path, data: list[Path], *extra: str) -> int:
    args = ["train", "--out", str(out), "--quiet"]
    for d in data:
        args += ["--data", str(d)]
    return cli(args + TINY + list(extra))


# ------------------------------------------------------------------------------------------------ data pipeline


def test_crops_align_features_and_motion_across_fps(datasets):
    from ksdiff.train.data import (
        ClipCrops,
        StreamSampler,
        collate,
        compute_stats,
        load_clips,
        open_datasets,
    )

    dss, spec = open_datasets(list(datasets))
    clips = load_clips(dss, "train", spec, 25.0, "mel", "chars", transcribe=False)
    assert {c.key.split("/")[0] for c in clips} == {"speech", "facegood"}
    fg = [c for c in clips if c.key.startswith("facegood/")][0]
    assert len(fg.motion) == 300  # 12 s of 30 fps motion resampled to 25 fps
    # the FACEGOOD jaw moves (real motion) and its keyframes were computed on the resampled motion
    assert fg.motion[:, spec.channels.index("jawOpen")].std() > 0.01 and fg.keyframes[:, 1].sum() > 3
    ds = ClipCrops(clips, 25.0, crop_frames=50)
    for i in range(len(ds)):
        it = ds[(i, 123)]
        T = len(it["motion"])
        assert len(it["feats"]) == 2 * T and it["feats"].shape[1] == 80  # 50 Hz features, same span
        c = clips[i]
        t0 = it["t0"]
        assert np.array_equal(it["motion"], c.motion[t0:t0 + T])
        assert np.array_equal(it["feats"], c.feats[2 * t0:2 * t0 + 2 * T])
    # with word timings, a crop's tokens are those of the words whose centre lies inside it
    import dataclasses

    from ksdiff.audio.tokens import text_to_tokens

    timed = dataclasses.replace(clips[0], words=[("birch", 0.1, 0.5), ("canoe", 2.5, 2.9)])
    wds = ClipCrops([timed], 25.0, crop_frames=50)
    assert np.array_equal(wds._crop_tokens(0, timed, 0, 50), text_to_tokens("birch", "chars"))
    assert np.array_equal(wds._crop_tokens(0, timed, 50, 50), text_to_tokens("canoe", "chars"))
    assert len(wds._crop_tokens(0, timed, 100, 50)) == 0
    assert ds[(0, 1)]["t0"] == ds[(0, 1)]["t0"]  # a crop is a function of its seed
    assert len({ds[(0, s)]["t0"] for s in range(20)}) > 3
    # whole clips (no crop) of different lengths are padded and masked
    whole = ClipCrops(clips[:3], 25.0, crop_frames=0)
    batch = collate([whole[i] for i in range(3)], 25.0, 50.0)
    lens = [len(c.motion) for c in clips[:3]]
    assert batch["motion"].shape[1] == max(lens) and batch["feats"].shape[1] == 2 * max(lens)
    assert batch["motion_mask"].sum(1).tolist() == lens
    assert batch["feat_mask"].sum(1).tolist() == [2 * n for n in lens]
    assert batch["token_mask"].any(1).tolist() == [bool(len(c.tokens)) for c in clips[:3]]
    assert batch["keyframes"].shape == (3, max(lens), 2)
    # statistics over the training split: real per-channel spread, floored where a channel never moves
    st = compute_stats(clips, spec)
    assert st.mean.shape == (spec.dim,) and (st.std >= 1e-3).all()
    assert st.std[spec.channels.index("jawOpen")] > 0.05 and 0 < st.keyframe_pos.min() < 0.2
    # FACEGOOD observes only the mapped mouth/jaw channels: its (still) head is left out of the head statistics
    assert not fg.observed[spec.head_idx].any() and fg.observed[spec.channels.index("jawOpen")]
    speech = [c for c in clips if c.key.startswith("speech/")]
    ry = spec.channels.index("headRotY")
    assert st.mean[ry] == pytest.approx(np.concatenate([c.motion[:, ry] for c in speech]).mean(), abs=1e-6)
    assert batch["channel_mask"].shape == (3, spec.dim)
    # the stream: each epoch is a permutation split disjointly between ranks, resumable at any item
    r0 = StreamSampler(ds, num_replicas=2, rank=0, seed=3)
    r1 = StreamSampler(ds, num_replicas=2, rank=1, seed=3)
    it0, it1 = iter(r0), iter(r1)
    a = [next(it0) for _ in range(len(ds) // 2)]
    b = [next(it1) for _ in range(len(ds) // 2)]
    assert not {i for i, _ in a} & {i for i, _ in b} and len({i for i, _ in a + b}) == 2 * (len(ds) // 2)
    full = iter(StreamSampler(ds, seed=3))
    seq = [next(full) for _ in range(3 * len(ds))]
    later = iter(StreamSampler(ds, seed=3, start=len(ds) + 2))
    assert [next(later) for _ in range(5)] == seq[len(ds) + 2:len(ds) + 7]
    # duration sampling: a clip is drawn once per crop it holds, each time with its own crop seed
    reps = ds.repeats("duration")
    assert reps == [max(1, round(len(c.motion) / ds.crop_frames)) for c in ds.clips] and max(reps) > 1
    assert ds.repeats("clip") == [1] * len(ds)
    weighted = iter(StreamSampler(ds, seed=3, repeats=reps))
    epoch = [next(weighted) for _ in range(sum(reps))]
    assert sorted(i for i, _ in epoch) == sorted(i for i, r in enumerate(reps) for _ in range(r))
    assert len({s for _, s in epoch}) == len(epoch)


def test_style_and_emotion_from_meta(datasets):
    from ksdiff.train.data import ClipCrops, collate, load_clips, open_datasets

    dss, spec = open_datasets([datasets[0], datasets[1]])
    clips = load_clips(dss, "train", spec, 25.0, "mel", "chars", transcribe=False)
    speakers = sorted({c.speaker for c in clips if c.speaker})
    assert "speech/spk0" in speakers and "facegood/" + clips[-1].speaker.split("/")[1] in speakers
    ds = ClipCrops(clips, 25.0, 50, speakers=speakers[:-1], emotion=True)  # last speaker unknown -> masked
    batch = collate([ds[i] for i in range(len(ds))], 25.0, 50.0)
    known = [c.speaker in speakers[:-1] for c in clips]
    assert batch["style_mask"].tolist() == known
    assert torch.equal(batch["style"].sum(1), torch.tensor([1.0 if k else 0.0 for k in known]))
    has_emo = [c.emotion is not None for c in clips]
    assert batch["emotion_mask"].tolist() == has_emo and any(has_emo) and not all(has_emo)
    i = has_emo.index(True)
    assert torch.allclose(batch["emotion"][i, 0], torch.from_numpy(clips[i].emotion[0]))


def test_recenter_removes_each_clips_resting_face(datasets):
    """data.recenter: every clip ends up with its dataset's centre as its median (its resting face gone), the
    motion around it kept; bounded channels stay in [0, 1]; unobserved channels untouched; val uses the
    training centres."""
    from ksdiff.train.data import load_clips, open_datasets, recenter_clips

    dss, spec = open_datasets([datasets[0], datasets[1]])
    clips = load_clips(dss, "train", spec, 25.0, "mel", "chars", transcribe=False)
    ix = {n: i for i, n in enumerate(spec.channels)}
    for k, c in enumerate(clips):  # give each clip its own resting face: a smile and a turned head
        if c.key.startswith("speech/"):
            c.motion[:, ix["mouthSmileLeft"]] += 0.1 * k
            c.motion[:, ix["headRotY"]] += 0.05 * k
    before = [c.motion.copy() for c in clips]
    centres = recenter_clips(clips, spec)
    assert set(centres) == {"speech", "facegood"}
    speech = [(c, b) for c, b in zip(clips, before) if c.key.startswith("speech/")]
    for c, b in speech:
        np.testing.assert_allclose(np.median(c.motion[:, ix["headRotY"]]), centres["speech"][ix["headRotY"]],
                                   atol=1e-5)
        np.testing.assert_allclose(np.median(c.motion[:, ix["mouthSmileLeft"]]),
                                   centres["speech"][ix["mouthSmileLeft"]], atol=1e-5)
        # the speech-driven motion is the same up to a constant where it is not clipped at 0
        j = ix["jawOpen"]
        kept = c.motion[:, j] > 0
        assert kept.mean() > 0.4 and np.ptp(c.motion[kept, j] - b[kept, j]) < 1e-5
    assert np.ptp([np.median(c.motion[:, ix["mouthSmileLeft"]]) for c, _ in speech]) < 1e-5
    bounded = [ix[n] for n in spec.bounded]
    for c in clips:
        assert c.motion[:, bounded].min() >= 0.0 and c.motion[:, bounded].max() <= 1.0
        obs = c.observed_mask()
        b = before[clips.index(c)]
        np.testing.assert_array_equal(c.motion[:, ~obs], b[:, ~obs])
    val = load_clips(dss, "val", spec, 25.0, "mel", "chars", transcribe=False)
    assert recenter_clips(val, spec, centres)["speech"] is centres["speech"]
    np.testing.assert_allclose(np.median(val[0].motion[:, ix["headRotY"]]), centres["speech"][ix["headRotY"]],
                               atol=1e-5)


def test_speaker_style_and_emotion_train_and_are_recorded(datasets, tmp_path):
    from ksdiff.train.checkpoint import model_from_checkpoint

    run = tmp_path / "style"
    assert _train(run, list(datasets), "--steps", "3", "data.style=speaker", "model.denoiser.emotion=true",
                  "train.val_every=3", "train.val_clips=2", "train.val_motion_clips=1") == 0
    saved = load_yaml(run / "config.yaml")
    speakers = saved["data"]["speakers"]
    assert "speech/spk0" in speakers and any(s.startswith("facegood/") for s in speakers)
    assert saved["model"]["denoiser"]["style_dim"] == len(speakers)
    model, cfg = model_from_checkpoint(run / "model.safetensors")
    assert cfg["data"]["speakers"] == speakers and model.cfg.denoiser.style_dim == len(speakers)


def test_dataset_style_and_default_style_reach_generation(datasets, tmp_path, speech_dir):
    """data.style=dataset: one style token per training dataset (recording domain); data.default_style is the
    one generation uses when the caller names none (data.reference_style with a reference); generation.smooth."""
    from ksdiff.errors import KsdiffError
    from ksdiff.generate import load_model

    run = tmp_path / "dstyle"
    assert _train(run, list(datasets), "--steps", "2", "data.style=dataset", "data.default_style=facegood",
                  "data.reference_style=speech", "train.val_every=0", "generation.guidance=1.5", "generation.steps=3",
                  "generation.smooth=1.0") == 0
    saved = load_yaml(run / "config.yaml")
    assert saved["data"]["speakers"] == sorted(["speech", "facegood"])
    assert saved["model"]["denoiser"]["style_dim"] == 2
    # the training crops carry their dataset's token (a style never seen in training would be noise at generation)
    from ksdiff.config import from_dict
    from ksdiff.train.config import RunConfig
    from ksdiff.train.data import ClipCrops, load_clips, open_datasets
    from ksdiff.train.loop import crops_kwargs

    rc = from_dict(RunConfig, saved)
    dss, spec = open_datasets(list(datasets))
    clips = load_clips(dss, "train", spec, 25.0, "mel", "chars", transcribe=False, style_by="dataset")
    kw = crops_kwargs(rc)
    assert kw["speakers"] == ["facegood", "speech"]
    items = [ClipCrops(clips, **{**kw, "encoder": "mel", "tokens": "chars", "transcribe": False})[i]
             for i in range(len(clips))]
    assert all(it["has_style"] for it in items)
    assert {tuple(it["style"]) for it in items} == {(1.0, 0.0), (0.0, 1.0)}
    anim = load_model(run / "model.safetensors")
    assert anim.default_style == "facegood"
    wave = anim.animate(speech_dir / "one_two_three.wav", text="one two three", steps=2, seed=0)
    same = anim.animate(speech_dir / "one_two_three.wav", text="one two three", steps=2, seed=0, style="facegood")
    other = anim.animate(speech_dir / "one_two_three.wav", text="one two three", steps=2, seed=0, style="speech")
    assert (wave.coeffs == same.coeffs).all() and not (wave.coeffs == other.coeffs).all()
    # the checkpoint's generation section is what animate() uses when the caller gives no sampler settings
    assert anim.defaults == {"steps": 3, "sampler": "dpmpp", "guidance": 1.5, "encoder_compute": "float32",
                             "smooth": 1.0}
    plain = anim.animate(speech_dir / "one_two_three.wav", text="one two three", seed=0)
    explicit = anim.animate(speech_dir / "one_two_three.wav", text="one two three", seed=0, steps=3, guidance=1.5,
                            smooth=1.0)
    off = anim.animate(speech_dir / "one_two_three.wav", text="one two three", seed=0, steps=3, guidance=1.0)
    assert (plain.coeffs == explicit.coeffs).all() and not (plain.coeffs == off.coeffs).all()
    assert anim.last_info["guidance"] == 1.0 and anim.last_info["steps"] == 3 and anim.last_info["smooth"] == 1.0
    # smoothing touches the mouth channels only
    sharp = anim.animate(speech_dir / "one_two_three.wav", text="one two three", seed=0, smooth=0)
    mouth = np.array([c.startswith(("jaw", "mouth", "tongue", "cheekPuff")) for c in anim.spec.channels])
    assert (sharp.coeffs[:, ~mouth] == plain.coeffs[:, ~mouth]).all()
    assert not (sharp.coeffs[:, mouth] == plain.coeffs[:, mouth]).all()
    with pytest.raises(KsdiffError, match="smooth"):
        anim.animate(speech_dir / "one_two_three.wav", text="one two three", seed=0, smooth=-1)
    # a reference without a style takes data.reference_style (its token and its typical face), not the default
    assert anim.reference_style == "speech"
    anim.reference_motion = lambda ref: np.zeros((50, anim.spec.dim), np.float32)  # no style encoder in this model
    ref = Motion(np.zeros((50, anim.spec.dim), np.float32), anim.spec.channels, anim.fps, anim.spec.name)
    assert anim._style(None, ref)["style"].tolist() == [0.0, 1.0]  # speakers: facegood, speech
    assert anim._style(None)["style"].tolist() == [1.0, 0.0]
    assert anim._style("facegood", ref)["style"].tolist() == [1.0, 0.0]
    assert np.array_equal(anim.typical_face(), anim.typical_faces["speech"], equal_nan=True)


def test_lr_schedule_warmup_then_cosine():
    from ksdiff.train.config import TrainConfig
    from ksdiff.train.loop import lr_at

    c = TrainConfig(steps=1000, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(1e-5) and lr_at(99, c) == pytest.approx(1e-3)
    assert lr_at(550, c) == pytest.approx(0.55e-3)  # half-way through the cosine: the mean of peak and floor
    assert lr_at(1000, c) == pytest.approx(1e-4)
    lrs = [lr_at(s, c) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


# ------------------------------------------------------------------------------------------------ training runs


def test_loss_falls_and_run_folder_is_complete(datasets, tmp_path):
    from ksdiff.train.checkpoint import load_checkpoint, model_from_checkpoint

    run = tmp_path / "run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert _train(run, list(datasets), "--steps", "150", "train.lr=3e-3", "train.warmup_steps=10",
                      "train.val_every=75", "train.val_clips=2", "train.val_motion_clips=1", "train.save_every=50",
                      "train.tensorboard=true") == 0
    assert not [str(w.message) for w in caught if issubclass(w.category, UserWarning)]  # nothing printed
    mask = os.umask(0)
    os.umask(mask)
    modes = {f: oct((run / f).stat().st_mode & 0o777) for f in ("model.safetensors", "last.safetensors",
                                                                 "train_state.safetensors", "train_state.json")}
    assert modes == dict.fromkeys(modes, oct(0o666 & ~mask))  # like any output (0644 under umask 022), not 0600
    losses = _losses(run)
    assert len(losses) == 150 and all(np.isfinite(losses))
    first, last = np.mean(losses[:20]), np.mean(losses[-20:])
    assert last < 0.85 * first, (first, last)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if r["kind"] == "val"]
    assert [r["step"] for r in val] == [75, 150]
    for key in ("loss", "loss/rec_e", "kf_head/f1", "kf_expr/f1", "motion_err", "speech_dep/loss",
                "speech_dep/diff_e", "attn/e/speech", "attn/h/text_gate"):
        assert np.isfinite(val[-1][key]), key
    assert 0.0 <= val[-1]["kf_expr/f1"] <= 1.0 and val[-1]["motion_err"] > 0
    mass = [val[-1][f"attn/e/{k}"] for k in ("prefix", "speech")]  # default: the text has its own gated sublayer
    assert min(mass) >= 0 and abs(sum(mass) - 1.0) < 1e-4  # the diagnostics' cross-attention shares
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())
    saved = load_yaml(run / "config.yaml")
    assert saved["train"]["steps"] == 150 and saved["model"]["dim"] == 32
    assert [Path(d).name for d in saved["data"]["datasets"]] == ["speech", "facegood"]
    # the shipped model: EMA weights with everything needed to rebuild it
    sd, cfg, meta = load_checkpoint(run / "model.safetensors", expect_spec="arkit")
    assert meta["weights"] == "ema" and int(meta["step"]) == 150
    assert cfg["spec"]["name"] == "arkit" and cfg["features"] == {"encoder": "mel", "dim": 80, "rate": 50.0,
                                                                   "tokens": "chars", "language": "en-us"}
    assert len(cfg["normalization"]["std"]) == 58 and cfg["model"]["kel"]["pos_weight"] > 1.0
    from ksdiff.train.config import load_run_config

    again = load_run_config(None, None, base=cfg)  # a checkpoint's config is a valid base for a new run
    assert again.model.kel.pos_weight == cfg["model"]["kel"]["pos_weight"] and again.train.steps == 150
    model, _ = model_from_checkpoint(run / "model.safetensors")
    assert torch.allclose(model.motion_std, torch.tensor(cfg["normalization"]["std"]))
    raw, _, raw_meta = load_checkpoint(run / "last.safetensors")
    assert raw_meta["weights"] == "raw"
    assert any(not torch.equal(sd[k], raw[k]) for k in sd if sd[k].dtype.is_floating_point)


def test_resume_continues_the_same_loss_curve(datasets, tmp_path):
    from safetensors.torch import load_file

    data = [datasets[0], datasets[1]]
    common = ["--steps", "20", "train.warmup_steps=4", "train.val_every=0", "train.save_every=0"]
    assert _train(tmp_path / "straight", data, *common) == 0
    # as if killed after step 10; with 2 DataLoader workers: batches do not depend on the number of workers
    assert _train(tmp_path / "split", data, *common, "train.stop_after=10", "data.num_workers=2") == 0
    state = json.loads((tmp_path / "split" / "train_state.json").read_text())
    assert state["step"] == 10 and len(_losses(tmp_path / "split")) == 10
    assert cli(["train", "--out", str(tmp_path / "split"), "--resume", "--quiet"]) == 0
    a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "split")
    assert len(a) == len(b) == 20
    assert a == b  # bit-identical: same batches, crops, timesteps, noise and dropout after the resume
    for name in ("model.safetensors", "last.safetensors"):
        wa, wb = load_file(tmp_path / "straight" / name), load_file(tmp_path / "split" / name)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_a_run_saved_before_a_model_option_existed(datasets, tmp_path):
    """A run saved by a version without some model option (here ``denoiser.skip``) resumes under one that has it:
    the option's default is what the run was trained with."""
    import yaml
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    run = tmp_path / "old"
    assert _train(run, [datasets[0]], "--steps", "4", "train.stop_after=2", "train.val_every=0") == 0
    with safe_open(run / "last.safetensors", "pt") as f:
        meta = dict(f.metadata())
    config = json.loads(meta["config"])
    del config["model"]["denoiser"]["skip"]
    meta["config"] = json.dumps(config)
    save_file(load_file(run / "last.safetensors"), run / "last.safetensors", metadata=meta)
    y = yaml.safe_load((run / "config.yaml").read_text())
    del y["model"]["denoiser"]["skip"]
    (run / "config.yaml").write_text(yaml.safe_dump(y))
    assert cli(["train", "--out", str(run), "--resume", "--quiet"]) == 0
    assert json.loads((run / "train_state.json").read_text())["step"] == 4


def _start_training(run: Path, data: Path, cwd: Path, *extra: str) -> subprocess.Popen:
    """``ksdiff train`` in its own process (UserWarnings are errors there: a training run prints none)."""
    args = [sys.executable, "-W", "error::UserWarning", "-m", "ksdiff", "train", "--data", str(data), "--out",
            str(run), "--quiet", *TINY, *extra]
    return subprocess.Popen(args, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(proc: subprocess.Popen, ready, what: str, limit: float = 240.0) -> None:  # noqa: ANN001
    """Poll until ``ready()`` (the process must still be running); a generous limit only against hangs."""
    import time

    deadline = time.monotonic() + limit
    while not ready():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended (exit {proc.returncode}) before {what}: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {what} within {limit:g} s")
        time.sleep(0.1)


def _train_lines(run: Path) -> int:
    m = run / "metrics.jsonl"
    return sum('"kind": "train"' in line for line in m.read_text().splitlines()) if m.exists() else 0


def _same_weights(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    for name in ("model.safetensors", "last.safetensors"):
        wa, wb = load_file(a / name), load_file(b / name)
        if set(wa) != set(wb) or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True


def test_sigterm_saves_and_resume_matches(datasets, tmp_path):
    """A real kill: SIGTERM mid-run stops after the current step with a checkpoint, one line on each stream and
    exit 143; resuming gives the losses and the weights (raw and EMA, bit for bit) of a run never interrupted."""
    import signal

    run, ref = tmp_path / "killed", tmp_path / "ref"
    common = ["--steps", "1000", "train.warmup_steps=4", "train.val_every=0", "train.save_every=0"]
    proc = _start_training(run, datasets[0], tmp_path, *common)
    _wait_for(proc, lambda: _train_lines(run) >= 3, "3 logged steps")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    k = json.loads((run / "train_state.json").read_text())["step"]
    assert k >= 3 and len(_losses(run)) == k
    assert out.strip() == (f"stopped at step {k} by SIGTERM (loss {_losses(run)[-1]:.4f}), training state saved; "
                           f"continue with: ksdiff train --out {run} --resume")
    assert err.strip() == ("ksdiff: SIGTERM: stopping after the current step and saving the training state "
                           "(Ctrl-C again aborts without saving)")  # and no warning
    assert cli(["train", "--out", str(run), "--resume", "--quiet", f"train.stop_after={k + 3}"]) == 0
    assert _train(ref, [datasets[0]], *common, f"train.stop_after={k + 3}") == 0
    assert _losses(run) == _losses(ref) and len(_losses(ref)) == k + 3
    assert _same_weights(run, ref)


def test_time_based_save_lets_a_sigkilled_run_resume(datasets, tmp_path):
    """train.save_every_minutes saves however few steps ran (save_every off here): a run killed without warning
    (SIGKILL, no handler runs) resumes at the last timed save and continues bit-identically. Validation runs too,
    under -W error::UserWarning."""
    import signal

    run, ref = tmp_path / "kill9", tmp_path / "ref"
    # 0.0005 min = 30 ms: a save after nearly every step
    common = ["--steps", "1000", "train.warmup_steps=4", "train.save_every=0", "train.save_every_minutes=0.0005",
              "train.val_every=2", "train.val_clips=1", "train.val_motion_clips=1"]

    def saved_step() -> int:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return json.loads((run / "train_state.json").read_text())["step"]
        return 0

    proc = _start_training(run, datasets[0], tmp_path, *common)
    _wait_for(proc, lambda: saved_step() >= 3, "a timed save at step 3 or later")
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and err.strip() == "", err[-2000:]
    k = saved_step()
    assert int(load_checkpoint_step(run / "last.safetensors")) == k
    assert cli(["train", "--out", str(run), "--resume", "--quiet", f"train.stop_after={k + 2}"]) == 0
    assert _train(ref, [datasets[0]], *common, f"train.stop_after={k + 2}") == 0
    assert _losses(run) == _losses(ref) and len(_losses(ref)) == k + 2
    assert _same_weights(run, ref)


def load_checkpoint_step(path: Path) -> str:
    from ksdiff.train.checkpoint import read_metadata

    return read_metadata(path)["step"]


def test_run_killed_before_its_first_save(datasets, tmp_path, capsys):
    """Killed before any state exists (no step save, no timed save yet): --resume says so in one line; the same
    --out then starts again without --resume (it holds only that run's config and log)."""
    import signal

    run = tmp_path / "early"
    proc = _start_training(run, datasets[0], tmp_path, "--steps", "1000", "train.val_every=0", "train.save_every=0",
                           "train.save_every_minutes=0")
    _wait_for(proc, lambda: _train_lines(run) >= 1, "a logged step")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run / "train_state.json").exists() and (run / "config.yaml").is_file()
    assert cli(["train", "--out", str(run), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (f"ksdiff: no training state in {run}: the run stopped before its first save; start it again "
                   "without --resume\n")
    assert _train(run, [datasets[0]], "--steps", "2", "train.val_every=0") == 0
    assert json.loads((run / "train_state.json").read_text())["step"] == 2 and len(_losses(run)) == 2


def test_second_ctrl_c_aborts_without_saving(capsys):
    """The first signal only sets the flag (the loop then finishes its step and saves), announced in one line;
    a Ctrl-C after it raises KeyboardInterrupt (the CLI: 'ksdiff: interrupted', exit 130, no save)."""
    import signal

    from ksdiff.train.loop import _StopFlag

    before = signal.getsignal(signal.SIGINT)
    with _StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert capsys.readouterr().err == ("ksdiff: SIGTERM: stopping after the current step and saving the training "
                                       "state (Ctrl-C again aborts without saving)\n")


def test_torchrun_two_cpu_processes(datasets, tmp_path):
    run = tmp_path / "ddp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun) if torchrun.exists() else sys.executable, *([] if torchrun.exists() else
           ["-m", "torch.distributed.run"]), "--standalone", "--nproc_per_node", "2", "-m", "ksdiff", "train",
           "--data", str(datasets[0]), "--out", str(run), "--steps", "4", "--quiet", "--device", "cpu", *TINY,
           "train.val_every=4", "train.val_clips=1", "train.val_motion_clips=1", "train.warmup_steps=2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained to step 4") == 1  # only rank 0 reports (and writes)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    assert any(r["kind"] == "val" for r in rows)
    assert json.loads((run / "train_state.json").read_text())["step"] == 4
    assert not list(run.glob(".*.tmp*"))  # no temporary leftovers from a second writer


# ------------------------------------------------------------------------------------------------ errors and configs


def test_user_errors_are_one_line(datasets, tmp_path, capsys):
    assert _train(tmp_path / "bad", [datasets[0]], "train.nonsense=1") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown config key train.nonsense" in err
    assert cli(["train", "--out", str(tmp_path / "none"), "--resume", "--quiet"]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert _train(tmp_path / "nodata", [tmp_path / "missing"]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    run = tmp_path / "run"
    assert _train(run, [datasets[0]], "--steps", "2", "train.val_every=0") == 0
    capsys.readouterr()
    assert _train(run, [datasets[0]], "--steps", "2", "train.val_every=0") == 2  # exists: needs --resume
    assert "use --resume" in capsys.readouterr().err
    # a flame dataset cannot continue an arkit run: one line, before any data is loaded
    flame = tmp_path / "flame"
    spec = get_spec("flame")
    wave = np.random.default_rng(0).normal(0, 0.1, 32000).astype(np.float32)
    with DatasetWriter(flame, "flame", 25.0) as w:
        w.add_clip("a", wave, Motion(np.zeros((50, spec.dim)), spec.channels, 25.0, "flame"))
    assert cli(["train", "--out", str(run), "--resume", "--quiet", f"data.datasets=[{flame}]", "--steps", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "face spec 'arkit'" in err and "'flame'" in err


def test_init_fine_tunes_a_trained_model(datasets, tmp_path, capsys):
    """ksdiff train --init CK: CK's weights (raw and EMA), settings, style tokens, normalisation and typical faces,
    a fresh optimizer at step 0; resumable like any run; a style the checkpoint lacks is said, not fatal."""
    from ksdiff.train.checkpoint import load_checkpoint

    speech, fg = datasets
    common = ["train.warmup_steps=2", "train.val_every=0", "train.save_every=0"]
    base = tmp_path / "base"
    assert _train(base, [speech], "--steps", "60", "train.lr=3e-3", "data.style=dataset", *common) == 0
    ck = base / "model.safetensors"
    assert _train(tmp_path / "fresh", [speech], "--steps", "5", "data.style=dataset", *common) == 0
    ft = tmp_path / "ft"
    init = ["train", "--init", str(ck), "--out", str(ft), "--quiet", "--steps", "5", *common]
    assert cli(init + ["--data", str(speech), "train.stop_after=3"]) == 0
    assert cli(["train", "--out", str(ft), "--resume", "--quiet"]) == 0  # the fine-tune resumes, not restarts
    fresh, tuned = _losses(tmp_path / "fresh"), _losses(ft)
    assert len(tuned) == 5 and np.mean(tuned) < 0.9 * np.mean(fresh), (fresh, tuned)  # it starts trained
    saved = load_yaml(ft / "config.yaml")
    assert saved["train"]["init"] == str(ck.resolve()) and saved["train"]["steps"] == 5
    assert saved["model"] == load_yaml(base / "config.yaml")["model"]
    w0, c0, _ = load_checkpoint(ck)
    w1, c1, m1 = load_checkpoint(ft / "model.safetensors")
    assert int(m1["step"]) == 5 and c1["normalization"] == c0["normalization"]
    assert c1["data"]["speakers"] == c0["data"]["speakers"] == ["speech"]
    assert any(not torch.equal(w0[k], w1[k]) for k in w0 if w0[k].dtype.is_floating_point)
    # another dataset: its style has no token (noted), the checkpoint's typical faces are kept
    capsys.readouterr()
    assert cli(["train", "--init", str(ck), "--out", str(tmp_path / "fg"), "--quiet", "--steps", "1",
                "--data", str(fg), *common]) == 0
    assert "no style token for facegood" in capsys.readouterr().err
    _, c2, _ = load_checkpoint(tmp_path / "fg" / "model.safetensors")
    assert list(c2["typical_faces"]) == ["speech"] and c2["typical_faces"] == c0["typical_faces"]
    # one-line errors
    for extra, want in ((["--resume"], "goes without --resume"), (["--config", "default"], "without --config"),
                        (["model.dim=64"], "model.* differs from the checkpoint")):
        assert cli(init[:4] + [str(tmp_path / "bad"), *init[5:], "--data", str(speech), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and want in err, err
    assert cli(["train", "--init", str(tmp_path / "nope.safetensors"), "--out", str(tmp_path / "bad")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_out_that_is_not_this_runs_is_refused(datasets, tmp_path, capsys):
    """--out holding files that are not this run's (another model.safetensors, notes) or naming a file: one line,
    exit 2, nothing touched; --force trains there anyway (deleting a previous run's files, keeping the others)."""
    from safetensors.torch import load_file, save_file

    def refused(*args: str) -> str:
        assert cli(["train", "--quiet", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("ksdiff: "), err
        return err

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    save_file({"w": torch.ones(3)}, str(foreign / "model.safetensors"))
    before = (foreign / "model.safetensors").read_bytes()
    data = ["--data", str(datasets[0]), "--steps", "2", "train.val_every=0", *TINY]
    err = refused("--out", str(foreign), *data)
    assert "not this run's (model.safetensors)" in err and "--force" in err
    assert (foreign / "model.safetensors").read_bytes() == before and sorted(os.listdir(foreign)) == [
        "model.safetensors"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("mine\n")
    assert "not this run's (notes.txt)" in refused("--out", str(notes), *data)
    afile = tmp_path / "a_file"
    afile.write_text("x")
    assert "--out names a file" in refused("--out", str(afile), *data)
    assert "--out names a file" in refused("--out", str(afile), "--resume")
    assert "give one of them" in refused("--out", str(foreign), "--resume", "--force")
    assert afile.read_text() == "x"
    # --force: the foreign model is replaced by this run's, other files stay
    (foreign / "notes.txt").write_text("mine\n")
    assert _train(foreign, [datasets[0]], "--steps", "2", "train.val_every=0", "--force") == 0
    assert (foreign / "notes.txt").read_text() == "mine\n" and "w" not in load_file(foreign / "model.safetensors")
    assert json.loads((foreign / "train_state.json").read_text())["step"] == 2
    # --force over a run: it starts over at step 0 with a log of its own
    assert _train(foreign, [datasets[0]], "--steps", "3", "train.val_every=0", "--overwrite") == 0
    assert len(_losses(foreign)) == 3 and json.loads((foreign / "train_state.json").read_text())["step"] == 3


def test_shipped_configs_resolve():
    from ksdiff.train.config import load_run_config

    d = load_run_config(["default"])
    p = load_run_config(["paper"])
    assert d.audio.encoder == "whisper-tiny" and d.train.batch_size == 8 and d.data.crop_seconds == 4.0
    assert (p.model.dim, p.model.kel.layers, p.model.kel.heads) == (512, 6, 8)
    assert (p.train.lr, p.train.warmup_steps, p.train.batch_size, p.train.steps) == (1e-4, 5000, 32, 100000)
    from ksdiff.config import to_dict
    from ksdiff.model.config import ModelConfig

    assert to_dict(p.model) == to_dict(ModelConfig.paper())  # paper.yaml spells out the model's paper sizes
    flags = {"no_split": ("split_speech", False), "no_dual": ("dual_path", False), "no_kel": ("keyframes", False),
             "no_prosody": ("prosody", False), "no_text": ("transcript", False), "enc_only": ("dpse", False)}
    for name, (flag, value) in flags.items():
        c = load_run_config([f"ablations/{name}"])
        assert getattr(c.model, flag) is value, name
        assert c.model.dim == d.model.dim
    assert load_run_config(["ablations/jaw_head"]).data.jaw_path == "head"
    assert load_run_config(["ablations/no_text"]).audio.tokens == "none"
    s = load_run_config(["shipped"])  # the shipped model is the full model, runnable without the GPL extra
    assert all(getattr(s.model, f) for f in ("transcript", "keyframes", "dual_path", "split_speech", "prosody", "dpse"))
    assert s.audio.tokens == "chars" and s.model.denoiser.text_attention == "gated"
    assert load_run_config(["shipped_v1"]).model.transcript is False  # the model it replaced
    from ksdiff.generate import DEFAULT_CHECKPOINT
    from ksdiff.train.checkpoint import load_checkpoint_config
    from ksdiff.train.loop import _model_dict_for_compare, _stored_model_dict

    shipped, _ = load_checkpoint_config(DEFAULT_CHECKPOINT)  # configs/v3.yaml is the shipped model's recipe
    v3 = load_run_config(["v3"])  # compared as a resume compares (the data-resolved fields from the checkpoint)
    assert _model_dict_for_compare(v3, shipped) == _stored_model_dict(shipped, DEFAULT_CHECKPOINT)
    assert v3.train.steps == shipped["train"]["steps"] == 7000


@pytest.mark.slow
@pytest.mark.parametrize("config", ["default", "shipped"])
def test_short_run_learns_to_listen(datasets, tmp_path, config):
    """The full model reads the speech's timing after a short run on real speech (issue "the full model learns"):
    on the val crops (real speech, jaw following it), the expression loss with each crop's speech shuffled in time
    is above the loss with the true speech at every validation and by > 5 % at the end (``speech_dep/diff_e``). A model that ignores the speech gets 0
    (tests/test_listening.py); the paper's joint form got ≈ 0 on two of three seeds at 600 steps (docs/RESULTS.md)."""
    run = tmp_path / config
    assert _train(run, list(datasets), "--config", config, "--steps", "200", "train.val_every=50",
                  "train.lr=2e-3", "train.warmup_steps=20") == 0
    val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"val"' in line]
    curve = [(v["step"], round(v["speech_dep/diff_e"], 4), round(v["loss/diff_e"], 4)) for v in val]
    # measured here: default 0.0152 on a loss of 0.199 (+7.6 %), shipped 0.0197 on 0.150 (+13 %) at step 200
    assert all(dep > 0 for _, dep, _ in curve), curve
    assert curve[-1][1] > 0.05 * curve[-1][2], curve


# ------------------------------------------------------------------------------------------ reference styles


def test_reference_crops_come_from_the_same_person(datasets):
    from ksdiff.train.data import ClipCrops, collate, load_clips, open_datasets

    dss, spec = open_datasets(list(datasets))
    clips = load_clips(dss, "train", spec, 25.0, "mel", "chars", transcribe=False)
    ds = ClipCrops(clips, 25.0, 50, reference=(2.0, 4.0))
    by_person: dict = {}
    for j, c in enumerate(clips):
        by_person.setdefault(c.person, []).append(j)
    assert all(c.person for c in clips) and any(len(v) > 1 for v in by_person.values())
    for i, c in enumerate(clips):
        item = ds[(i, 5)]
        ref = item["ref_motion"]
        assert item["has_ref"] and 1 <= len(ref) <= 100 and ref.shape[1] == spec.dim
        others = [clips[j].motion for j in by_person[c.person] if j != i] or [c.motion]
        found = any(any(np.array_equal(ref, m[s:s + len(ref)]) for s in range(len(m) - len(ref) + 1))
                    for m in others)
        assert found, c.key  # a window of the same person's other clip (or of its own outside the crop)
    batch = collate([ds[(i, 1)] for i in range(3)], 25.0, clips[0].rate)
    assert batch["ref_motion"].shape[0] == 3 and batch["ref_frames"].shape == batch["ref_motion"].shape[:2]
    assert batch["ref_mask"].all() and batch["ref_frames"].sum(1).min() >= 50


def test_reference_style_trains_and_generates_from_any_clip(datasets, tmp_path, speech_dir, capsys):
    from ksdiff.errors import KsdiffError
    from ksdiff.export.livelink import write_livelink_csv
    from ksdiff.generate import load_model

    run = tmp_path / "run"
    assert _train(run, list(datasets), "--steps", "3", "model.style_encoder.dim=8", "data.reference_seconds=[2,4]",
                  "model.denoiser.ref_drop_prob=0.5") == 0
    from safetensors.torch import load_file

    assert any(k.startswith("style_encoder.") for k in load_file(run / "model.safetensors"))
    a = load_model(run / "model.safetensors")
    ref = Motion(np.asarray(open_clip(datasets[0], 0).coeffs), get_spec("arkit").channels, 25.0, "arkit")
    wave = str(speech_dir / "arctic_a0009.wav")
    with torch.no_grad():  # the trained reference projections are tiny after 3 steps: make them count
        for d in a.model.denoisers.values():
            d.ref.weight.normal_(std=0.5)
    plain = a.animate(wave, text="x", steps=2, seed=0)
    styled = a.animate(wave, text="x", steps=2, seed=0, reference=ref)
    assert not np.allclose(plain.coeffs, styled.coeffs)
    assert np.allclose(styled.coeffs, a.animate(wave, text="x", steps=2, seed=0, style=ref).coeffs)
    # anchored (the default): each expression channel's median is the reference's; anchor=False: the encoder alone
    idx = a.spec.expression_idx
    want = np.median(a.reference_motion(ref)[:, idx], axis=0)
    got = np.median(styled.coeffs[:, idx], axis=0)
    inside = (want > 0.01) & (want < 0.99)  # away from the [0, 1] clip
    assert inside.sum() >= 2 and np.abs(got - want)[inside].max() < 0.01, (got[inside], want[inside])
    free = a.animate(wave, text="x", steps=2, seed=0, reference=ref, anchor=False)
    assert np.abs(np.median(free.coeffs[:, idx], axis=0) - want)[inside].max() > 0.02, \
        np.median(free.coeffs[:, idx], axis=0)[inside]
    slow = Motion(ref.resample(60.0).coeffs, ref.channels, 60.0, "arkit")  # another fps: resampled
    assert np.allclose(a.animate(wave, text="x", steps=2, seed=0, reference=slow).coeffs, styled.coeffs, atol=0.05)
    short = Motion(ref.coeffs[:25], ref.channels, 25.0, "arkit")
    with pytest.raises(KsdiffError, match="at least 2 s"):
        a.animate(wave, text="x", steps=2, reference=short)
    # the CLI: a Live Link CSV at 60 fps, and what it refuses
    csv = tmp_path / "me.csv"
    write_livelink_csv(slow, csv)
    out = tmp_path / "o"
    assert cli(["generate", wave, "--checkpoint", str(run / "model.safetensors"), "--out", str(out), "--steps", "2",
                "--style-from", str(csv)]) == 0
    assert json.loads((out / "generate.json").read_text())["style_from"] == str(csv)
    assert cli(["generate", wave, "--checkpoint", str(run / "model.safetensors"), "--out", str(out), "--steps", "2",
                "--style-from", str(csv), "--reference-audio", wave, "--reference-weight", "0.7"]) == 0
    assert json.loads((out / "generate.json").read_text())["reference_audio"] == wave
    assert cli(["generate", wave, "--checkpoint", str(run / "model.safetensors"), "--out", str(out),
                "--reference-audio", wave]) == 2
    assert "--reference-audio goes with --style-from" in capsys.readouterr().err
    bad = tmp_path / "me.txt"
    bad.write_text("hello")
    for r, words in ((bad, "Live Link CSV"), (tmp_path / "none.csv", "not found")):
        assert cli(["generate", wave, "--checkpoint", str(run / "model.safetensors"), "--out", str(out),
                    "--style-from", str(r)]) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("ksdiff: ") and str(r) in err and words in err, err
    # the evaluation protocol: another clip of the person, else (or when asked) the clip's own first seconds
    model = str(run / "model.safetensors")
    infos = {}
    for proto in ("other", "self"):
        rep = tmp_path / f"ev_{proto}"
        assert cli(["evaluate", "--checkpoint", model, "--data", str(datasets[0]), "--split", "val", "--out", str(rep),
                    "--steps", "2", "--no-plots", "--reference", proto, "--reference-seconds", "2"]) == 0
        infos[proto] = json.loads((rep / "metrics.json").read_text())["info"]["reference"]
    assert all(v.startswith("other:") for v in infos["other"].values()) and len(infos["other"]) == 2
    assert set(infos["self"].values()) == {"self:2s"}
    # baselines under the same protocol are scored on the same frames; `reference` is the reference's mean pose
    scored = {}
    for base, proto in (("static", "none"), ("static", "self"), ("reference", "self"), ("reference", "other")):
        rep = tmp_path / f"b_{base}_{proto}"
        assert cli(["evaluate", "--baseline", base, "--data", str(datasets[0]), "--split", "val", "--out", str(rep),
                    "--no-plots", "--reference", proto, "--reference-seconds", "2"]) == 0
        res = json.loads((rep / "metrics.json").read_text())
        scored[base, proto] = res
    rep = tmp_path / "ev_blind"
    assert cli(["evaluate", "--checkpoint", model, "--data", str(datasets[0]), "--split", "val", "--out", str(rep),
                "--steps", "2", "--no-plots", "--reference", "self", "--reference-seconds", "2",
                "--no-reference-input"]) == 0
    assert json.loads((rep / "metrics.json").read_text())["info"]["reference"] == infos["self"]  # same frames
    assert scored["static", "self"]["info"]["reference"] == infos["self"]
    assert scored["static", "self"]["mean"]["lve_mm"] != scored["static", "none"]["mean"]["lve_mm"]
    assert scored["reference", "other"]["info"]["reference"] == infos["other"]
    assert cli(["evaluate", "--baseline", "reference", "--data", str(datasets[0]), "--split", "val", "--out",
                str(tmp_path / "b_bad"), "--no-plots"]) == 2
    assert "needs a reference protocol" in capsys.readouterr().err
    plain_run = tmp_path / "plain"
    assert _train(plain_run, [datasets[0]], "--steps", "1") == 0
    with pytest.raises(KsdiffError, match="without reference styles"):
        load_model(plain_run / "model.safetensors").animate(wave, text="x", steps=2, reference=ref)


def test_typical_faces_anchor_generation_with_and_without_a_reference(datasets, tmp_path, speech_dir):
    """Checkpoints store each style token's training median face (the same at training and from the datasets
    afterwards); with a reference and its audio the output's median moves halfway between it and what the reference
    shows beyond its speech; without a reference nothing moves."""
    from ksdiff.errors import KsdiffError
    from ksdiff.evaluate import open_dataset
    from ksdiff.generate import load_model
    from ksdiff.train.checkpoint import load_checkpoint
    from ksdiff.train.data import dataset_typical_faces

    run = tmp_path / "run"
    assert _train(run, list(datasets), "--steps", "2", "data.style=dataset", "model.style_encoder.dim=8",
                  "data.reference_seconds=[2,4]") == 0
    _, config, _ = load_checkpoint(run / "model.safetensors")
    stored = config["typical_faces"]
    assert set(stored) == {"speech", "facegood"}
    again = dataset_typical_faces(list(datasets), "dataset", fps=25.0)
    assert again["speech"] == dataset_typical_faces([datasets[0]], "dataset")["speech"]  # 25 fps already
    for name in stored:  # from the training clips and from the datasets afterwards: the same median face
        a, b = np.array(stored[name], float), np.array(again[name], float)
        assert np.nanmax(np.abs(a - b)) < 1e-5 and np.array_equal(np.isnan(a), np.isnan(b)), (name, np.nanmax(np.abs(a - b)))
    speech = open_dataset(datasets[0])
    median = np.median(np.concatenate([speech.clip(c).motion().coeffs for c in speech.clip_ids("train")]), axis=0)
    assert np.allclose(np.array(again["speech"], float), median, atol=1e-6)
    a = load_model(run / "model.safetensors")
    idx = a.spec.expression_idx
    wave = str(speech_dir / "arctic_a0009.wav")
    typical = a.typical_face("speech")[idx]
    assert np.allclose(typical, median[idx], atol=2e-3)
    free = a.animate(wave, text="x", steps=2, seed=0, style="speech", anchor=False).coeffs
    assert np.array_equal(a.animate(wave, text="x", steps=2, seed=0, style="speech").coeffs, free)
    inside = (typical > 0.01) & (typical < 0.99) & _unlimited(a.spec)
    # with a reference and its audio: w · median(ref − model(ref audio)) + (1 − w) · (typical − median(output))
    clip = open_dataset(datasets[0]).clip(sorted(open_dataset(datasets[0]).clip_ids())[0])
    ref, ref_wave = clip.motion(), clip.audio()
    kw = dict(text="x", steps=2, seed=0, style="speech", reference=ref)
    raw = a.animate(wave, anchor=False, **kw).coeffs
    pred = a.animate(ref_wave[: int(round(ref.duration * 16000))], anchor=False, num_frames=ref.num_frames,
                     **kw).coeffs
    want = 0.5 * np.median(ref.coeffs[:, idx] - pred[:, idx], 0) + 0.5 * (typical - np.median(raw[:, idx], 0))
    calls = []
    animate = a.animate
    a.animate = lambda *args, **kws: (calls.append(1), animate(*args, **kws))[1]  # counts the nested call too
    got = a.animate(wave, reference_audio=ref_wave, **kw).coeffs
    again = a.animate(wave, reference_audio=ref_wave, **kw).coeffs  # the reference's audio is animated once
    assert len(calls) == 3 and np.array_equal(got, again)
    del a.animate
    with pytest.raises(KsdiffError, match="the reference's audio lasts 0.050 s"):
        a.animate(wave, reference_audio=ref_wave[:800], **kw)
    moved = np.median(got[:, idx], 0) - np.median(raw[:, idx], 0)
    keep = inside & (np.median(got[:, idx], 0) > 0.01) & (np.median(got[:, idx], 0) < 0.99)
    assert keep.sum() >= 1 and np.abs(moved - want)[keep].max() < 1e-4
    jaw, close = (a.spec.channels.index(n) for n in ("jawOpen", "mouthClose"))
    assert (got[:, close] <= got[:, jaw]).all()  # the anchored face is still valid ARKit
    # weight 1 and no audio: the reference's own median (the face it shows)
    only = a.animate(wave, reference_weight=1.0, **kw).coeffs
    ref_med = np.median(ref.coeffs[:, idx], 0)
    keep = (ref_med > 0.01) & (ref_med < 0.99) & _unlimited(a.spec)
    assert np.abs(np.median(only[:, idx], 0) - ref_med)[keep].max() < 1e-4
    with pytest.raises(KsdiffError, match=r"reference_weight must lie in \[0, 1\]"):
        a.animate(wave, reference_weight=1.5, **kw)


def test_reference_audio_comes_from_a_video_or_a_given_file(shared, speech_dir, tmp_path):
    from ksdiff.data.reference import load_reference_audio
    from ksdiff.errors import KsdiffError

    video = shared / "data" / "video" / "videoretalking_1.mp4"
    wave = load_reference_audio(video, max_seconds=3.0)
    assert wave is not None and len(wave) == 48000 and np.abs(wave).max() > 0.01  # its own sound, cut to 3 s
    csv = tmp_path / "take.csv"
    csv.write_text("Timecode,BlendShapeCount\n")
    assert load_reference_audio(csv) is None  # a CSV carries no sound
    given = load_reference_audio(csv, speech_dir / "arctic_a0009.wav", max_seconds=None)
    assert given is not None and len(given) > 16000
    with pytest.raises(KsdiffError, match="not found"):
        load_reference_audio(csv, tmp_path / "missing.mov")


def _unlimited(spec) -> np.ndarray:
    """(E,) bool over the expression channels: True where FaceSpec.clip sets no limit (ARKit: all but mouthClose,
    which is then lowered to jawOpen wherever a shift takes it above)."""
    return ~np.isin(np.array(spec.expression), [a for a, _ in spec.at_most])


def test_anchor_face_shifts_expression_medians_and_nothing_else():
    from ksdiff.generate import anchor_face

    spec = get_spec("arkit")
    rng = np.random.default_rng(0)
    x = rng.uniform(0.2, 0.4, size=(50, spec.dim)).astype(np.float32)
    e, h = np.asarray(spec.expression_idx), np.asarray(spec.head_idx)
    e = e[_unlimited(spec)]  # the shifts below, checked where no channel limits them
    assert np.array_equal(anchor_face(x, spec), x)  # nothing to anchor to
    ref = rng.uniform(0.4, 0.6, size=(30, spec.dim)).astype(np.float32)
    typical = np.full(spec.dim, 0.3)
    typical[e[0]] = np.nan  # a channel the style's data never observed: the reference's alone
    y = anchor_face(x, spec, ref=ref, typical=typical, weight=0.25)
    shift_r, shift_t = np.median(ref[:, e], 0) - np.median(x[:, e], 0), 0.3 - np.median(x[:, e], 0)
    want = 0.25 * shift_r + 0.75 * shift_t
    want[0] = shift_r[0]
    assert np.allclose(np.median(y[:, e], 0) - np.median(x[:, e], 0), want, atol=1e-6)
    assert np.array_equal(y[:, h], x[:, h])  # head pose untouched
    pred = ref - 0.1
    z = anchor_face(x, spec, ref=ref, ref_pred=pred, weight=1.0)  # beyond its speech: ref − pred = 0.1 everywhere
    assert np.allclose(z[:, e] - x[:, e], 0.1, atol=1e-6)
    t = anchor_face(x, spec, typical=typical)  # no reference: the style's typical face (NaN channels stay)
    assert np.allclose(np.median(t[:, e[1:]], 0), 0.3, atol=1e-6) and np.array_equal(t[:, e[0]], x[:, e[0]])
    assert anchor_face(x + 0.9, spec, ref=ref, weight=1.0)[:, spec.index(spec.bounded)].max() <= 1.0


def test_reference_protocol_gives_the_references_own_audio():
    from types import SimpleNamespace

    from ksdiff.evaluate import ReferenceProtocol

    def clip(cid: str, seconds: float):
        m = Motion(np.zeros((int(seconds * 25), 58), np.float32), get_spec("arkit").channels, 25.0, "arkit")
        wave = np.arange(int(seconds * 16000), dtype=np.float32)
        return SimpleNamespace(id=cid, root=Path(cid), motion=lambda: m, audio=lambda: wave,
                               meta=lambda: {"language": "de"}, transcript=lambda: None)

    proto = ReferenceProtocol("self", 2.0)
    wave, text = proto.audio(clip("a", 5.0))
    assert len(wave) == 32000 and wave[-1] == 31999 and text == ""  # its first 2 s; no English transcript
    assert ReferenceProtocol("none").audio(clip("b", 5.0)) == (None, None)


def test_self_reference_of_a_short_clip_keeps_a_second_to_score():
    """A 3 s clip (GRID) gives 2 s of itself, not the 4 s asked for; under 3 s it cannot give the model's 2 s."""
    from types import SimpleNamespace

    from ksdiff.errors import KsdiffError
    from ksdiff.evaluate import ReferenceProtocol

    def clip(cid: str, seconds: float):
        m = Motion(np.zeros((int(seconds * 25), 58), np.float32), get_spec("arkit").channels, 25.0, "arkit")
        return SimpleNamespace(id=cid, root=Path(cid), motion=lambda: m)

    proto = ReferenceProtocol("self", 4.0)
    ref, k = proto(clip("grid", 3.0))
    assert k == 50 and ref.num_frames == 50 and proto.references == {"grid": "self:2s"}
    assert proto(clip("long", 10.0))[1] == 100
    with pytest.raises(KsdiffError, match="too short to give 2 s"):
        proto(clip("tiny", 2.5))


def open_clip(dataset: Path, i: int) -> Motion:
    from ksdiff.data.dataset import open_dataset

    ds = open_dataset(dataset)
    return ds.clip(ds.clip_ids()[i]).motion()


def test_dataset_people_labels_who_is_who(datasets, tmp_path, capsys):
    import shutil

    from ksdiff.data.dataset import open_dataset
    from ksdiff.train.data import load_clips, open_datasets

    ds_dir = tmp_path / "speech"
    shutil.copytree(datasets[0], ds_dir)
    ids = open_dataset(ds_dir).clip_ids("train")
    groups = tmp_path / "people.json"
    groups.write_text(json.dumps({"_note": ["comment"], "ann": ids[:2], "bob": [ids[2]]}))
    assert cli(["dataset", "people", str(ds_dir), "--groups", str(groups)]) == 0
    assert "3 clips of 2 people labelled" in capsys.readouterr().out
    dss, spec = open_datasets([ds_dir])
    clips = {c.clip_id: c for c in load_clips(dss, "train", spec, 25.0, "mel", "chars", transcribe=False)}
    assert clips[ids[0]].person == clips[ids[1]].person == "speech/ann" and clips[ids[2]].person == "speech/bob"
    groups.write_text(json.dumps({"ann": ["no_such_clip"]}))
    assert cli(["dataset", "people", str(ds_dir), "--groups", str(groups)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_clip" in err[0] and str(groups) in err[0]
