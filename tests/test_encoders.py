"""Speech encoders: 50 Hz frame counts for short, 30 s and long real speech; seamless long-audio windows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.decode import SAMPLE_RATE, load_audio
from ksdiff.audio.encoders import get_encoder, num_frames, window_weights
from ksdiff.errors import KsdiffError

CLIPS = ["jfk.flac", "codetalker_man.wav", "faceformer_demo.wav", "arctic_a0007.wav", "RD_Radio31_000.wav",
         "German1.wav", "videoretalking_1.wav", "japan1.wav", "french1.wav", "noisy_audio_narrative.wav"]


@pytest.fixture(scope="module")
def speech(speech_dir: Path) -> dict[float, np.ndarray]:
    """Real speech of 3 s, 30 s and 95 s (long inputs are real clips concatenated)."""
    cat = np.concatenate([load_audio(speech_dir / c) for c in CLIPS] * 2)
    assert len(cat) > 95 * SAMPLE_RATE
    return {3.0: cat[:3 * SAMPLE_RATE], 30.0: cat[:30 * SAMPLE_RATE],
            95.0: cat[:95 * SAMPLE_RATE + 77]}  # + 77 samples: not a whole number of frames


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory) -> Path:
    """A tiny randomly initialised wav2vec2 saved like a hub checkpoint (config + weights + preprocessor)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    d = tmp_path_factory.mktemp("w2v_tiny")
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)
    Wav2Vec2Model(cfg).save_pretrained(d)
    Wav2Vec2FeatureExtractor().save_pretrained(d)
    return d


def _check_frames(enc, speech, dim):
    out = {}
    for sec, w in speech.items():
        f = enc.encode(w)
        expected = int(round(len(w) / SAMPLE_RATE * 50))
        assert expected == num_frames(len(w))
        assert abs(f.shape[0] - expected) <= 1 and f.shape[1] == dim, (enc.name, sec, f.shape, expected)
        assert f.dtype == np.float32 and np.isfinite(f).all()
        out[sec] = f
    return out


def test_mel_frames(speech):
    enc = get_encoder("mel")
    assert (enc.name, enc.dim, enc.rate) == ("mel", 80, 50.0)
    f = _check_frames(enc, speech, 80)
    # frames are local: the first 3 s of the 30 s input give the 3 s input's frames (up to the global clip level)
    a, b = f[3.0][5:-5], f[30.0][5:145]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.99
    # speech frames are louder than the quietest frames
    assert f[30.0].mean(1).max() - f[30.0].mean(1).min() > 0.5


def test_whisper_tiny_frames_and_windows(speech):
    enc = get_encoder("whisper-tiny")
    assert (enc.name, enc.dim, enc.rate) == ("whisper-tiny", 384, 50.0)
    f = _check_frames(enc, speech, 384)
    # short audio keeps the frames covering the audio: the 3 s input is the start of what the 30 s one sees
    # (same 30 s window position; only the padded tail differs), so the two agree closely
    a, b = f[3.0][:100], f[30.0][:100]
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.median(cos) > 0.8
    # 95 s: frames before the first junction are the first 30 s window's (up to the log-mel's floor, which is
    # set by the loudest frame of the whole input)
    first = enc.encode(speech[95.0][:30 * SAMPLE_RATE])
    lo = 1500 - enc.margin - enc.fade
    a, b = f[95.0][:lo], first[:lo]
    assert np.median((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)) > 0.97
    # no seam: adjacent-frame changes inside the cross-fades are no larger than anywhere else
    d = np.linalg.norm(np.diff(f[95.0], axis=0), axis=1)
    in_fade = np.zeros(len(d), bool)
    for start, _ in window_weights(len(f[95.0]), 1500, enc.margin, enc.fade)[1:]:
        in_fade[start + enc.margin - 1: start + enc.margin + enc.fade] = True
    assert in_fade.any() and d[in_fade].max() <= d[~in_fade].max()


def test_whisper_int8_close_to_float32(speech):
    f32 = get_encoder("whisper-tiny").encode(speech[3.0])
    i8 = get_encoder("whisper-tiny", compute_type="int8").encode(speech[3.0])
    cos = (f32 * i8).sum(1) / np.linalg.norm(f32, axis=1) / np.linalg.norm(i8, axis=1)
    assert i8.shape == f32.shape and cos.mean() > 0.99


def test_window_weights_are_smooth():
    for total in (1500, 1501, 2200, 4751, 9000):
        plan = window_weights(total, 1500, 100, 300)
        acc = np.zeros(total)
        ws = []
        for start, w in plan:
            n = min(1500, total - start)
            acc[start:start + n] += w[:n]
            full = np.zeros(total)
            full[start:start + n] = w[:n]
            ws.append(full)
        assert acc.min() > 0.99 and plan[0][0] == 0 and plan[-1][0] + 1500 >= total
        # each window's share of the output changes by at most 2 ramp steps per frame (the last window, placed to end
        # at the audio's end, can overlap two others): no jump anywhere
        share = np.stack(ws) / acc
        assert np.abs(np.diff(share, axis=1)).max() <= 2.0 / 300


def test_hf_tiny_random_wav2vec2(tiny_hf: Path, speech):
    enc = get_encoder(f"hf:{tiny_hf}")
    assert enc.dim == 32 and enc.rate == 50.0
    f = _check_frames(enc, speech, 32)
    # windows (20 s, cross-faded) agree with one pass over 30 s where both see enough context
    one = get_encoder(f"hf:{tiny_hf}", window_s=40.0).encode(speech[30.0])
    cos = (f[30.0] * one).sum(1) / np.linalg.norm(f[30.0], axis=1) / np.linalg.norm(one, axis=1)
    assert np.median(cos) > 0.95
    # a chosen hidden layer
    l1 = get_encoder(f"hf:{tiny_hf}@1")
    assert l1.name.endswith("@1") and l1.encode(speech[3.0]).shape == (150, 32)
    assert not np.allclose(l1.encode(speech[3.0]), f[3.0])


def test_encoder_errors(tmp_path: Path):
    with pytest.raises(KsdiffError):
        get_encoder("wav2vec9")
    with pytest.raises(KsdiffError):
        get_encoder(f"hf:{tmp_path}")
    with pytest.raises(KsdiffError):
        get_encoder("whisper-tiny", compute_type="fp8")
    with pytest.raises(KsdiffError):
        get_encoder("mel").encode(np.zeros((2, 100), np.float32))
    assert get_encoder("mel").encode(np.zeros(100, np.float32)).shape == (0, 80)
