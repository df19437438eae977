"""The KSDiff model: the equations of DPSE / denoiser, padding and odd lengths, ablations, a short overfit on real
paired speech + face motion (FACEGOOD)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ksdiff.face.keyframes import keyframe_labels
from ksdiff.face.specs import get_spec
from ksdiff.model.config import (
    DenoiserConfig,
    DPSEConfig,
    KELConfig,
    ModelConfig,
    TextConfig,
)
from ksdiff.model.denoiser import MotionDenoiser, alignment_mask, periodic_alibi_bias
from ksdiff.model.dpse import DPSE, FiLM, Pooling
from ksdiff.model.ksdiff import KSDiff
from ksdiff.model.layers import alibi_slopes

SPEC = get_spec("arkit")
FEAT = 24


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run many small ops: one intra-op thread is much faster than two on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_cfg(**kw) -> ModelConfig:
    """A very small model with dropout off (deterministic)."""
    cfg = ModelConfig(
        dim=32,
        dpse_cfg=DPSEConfig(dilations=[1, 3], groups=4, heads=2, ffn_mult=2, dropout=0.0),
        kel=KELConfig(layers=2, heads=2, dropout=0.0),
        text=TextConfig(vocab_size=64, layers=1, heads=2, dropout=0.0),
        denoiser=DenoiserConfig(layers=2, heads=4, ffn_dim=64, dropout=0.0),
    )
    return dataclasses.replace(cfg, **kw)


def fake_batch(lengths_t: list[int], g: torch.Generator, feat_dim: int = FEAT, n_tok: int = 7) -> dict:
    """Random padded batch: clip b has T_b motion frames and 2*T_b + 1 feature frames (odd N')."""
    B, T = len(lengths_t), max(lengths_t)
    N = 2 * T + 1
    fm = torch.zeros(B, N, dtype=torch.bool)
    mm = torch.zeros(B, T, dtype=torch.bool)
    for b, t in enumerate(lengths_t):
        fm[b, : 2 * t + 1] = True
        mm[b, :t] = True
    tokens = torch.randint(1, 64, (B, n_tok), generator=g)
    tokens[-1, n_tok - 2:] = 0
    return dict(feats=torch.randn(B, N, feat_dim, generator=g), prosody=torch.randn(B, N, 2, generator=g),
                feat_mask=fm, motion=torch.randn(B, T, SPEC.dim, generator=g), motion_mask=mm,
                keyframes=(torch.rand(B, T, 2, generator=g) < 0.15).float(), tokens=tokens, token_mask=tokens > 0)


def randomize_outputs(model: torch.nn.Module, seed: int = 0) -> None:
    """The denoisers' output layers start at zero; give them weights so outputs depend on the inputs."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, MotionDenoiser):
            m.out.weight.data = 0.1 * torch.randn(m.out.weight.shape, generator=g)


# ----------------------------------------------------------------------------------------------------------------
# equations
# ----------------------------------------------------------------------------------------------------------------

def test_alibi_slopes_and_periodic_bias():
    assert alibi_slopes(4) == pytest.approx([0.25, 0.0625, 0.015625, 0.00390625])
    assert alibi_slopes(8)[0] == pytest.approx(0.5) and len(alibi_slopes(6)) == 6
    bias = periodic_alibi_bias(4, 80, period=25)
    assert bias.shape == (4, 80, 80)
    assert torch.all(bias[:, 3, 3:28] == 0)  # the same period bucket: no penalty
    assert bias[0, 3, 28] == pytest.approx(-0.25) and bias[1, 60, 3] == pytest.approx(-0.0625 * 2)
    assert torch.equal(bias, bias.transpose(1, 2))  # bidirectional


def test_alignment_mask_frame_sees_its_own_speech_frame_only():
    fm = torch.tensor([[True, True, True, False]])
    m = alignment_mask(fm)[0]
    assert torch.equal(m, torch.diag(torch.tensor([True, True, True, False])))
    # in a one-layer denoiser, changing speech frame j changes the prediction at frame j only
    torch.manual_seed(0)
    den = MotionDenoiser(6, 32, 25.0, DenoiserConfig(layers=1, heads=4, ffn_dim=64, dropout=0.0)).eval()
    randomize_outputs(den)
    B, T = 1, 12
    x, sp, text = torch.randn(B, T, 6), torch.randn(B, T, 32), torch.randn(B, 3, 32)
    args = dict(t=torch.tensor([100]), frame_mask=torch.ones(B, T, dtype=torch.bool), text=text,
                text_mask=torch.ones(B, 3, dtype=torch.bool))
    y0 = den(x, speech=sp, **args)
    sp2 = sp.clone()
    sp2[:, 5] += 1.0
    changed = (den(x, speech=sp2, **args) - y0).abs().amax(dim=-1)[0] > 1e-6
    assert changed.tolist() == [i == 5 for i in range(T)]


def test_film_is_identity_at_init():
    film = FiLM(16)
    h, hp = torch.randn(2, 9, 16), torch.randn(2, 9, 2)
    assert torch.equal(film(h, hp), h)
    # so at initialisation the whole DPSE ignores prosody
    dpse = DPSE(FEAT, tiny_cfg()).eval()
    feats = torch.randn(1, 41, FEAT)
    a = dpse(feats, torch.randn(1, 41, 2), None, 20)
    b = dpse(feats, torch.randn(1, 41, 2), None, 20)
    assert torch.allclose(a["e"], b["e"]) and torch.allclose(a["h"], b["h"])


def test_pooling_token_counts_and_centres():
    p = Pooling.from_seconds(1.0, 4, 50.0)  # kernel 50, stride 4: tokens at 12.5 Hz
    assert (p.kernel, p.stride, p.pad) == (50, 4, 25)
    assert p.num_tokens(100) == 26 and p.num_tokens(1) == 1
    x = torch.arange(10, dtype=torch.float32)[None, :, None].expand(1, 10, 3)
    tok, n = Pooling(kernel=3, stride=2)(x, torch.ones(1, 10, dtype=torch.bool))
    assert int(n[0]) == 5 and tok.shape == (1, 5, 3)
    # token j averages the valid frames of [2j - 1, 2j + 1] (frame -1 is outside the clip)
    assert tok[0, :, 0].tolist() == pytest.approx([0.5, 2.0, 4.0, 6.0, 8.0])


# ----------------------------------------------------------------------------------------------------------------
# shapes, odd lengths, padding
# ----------------------------------------------------------------------------------------------------------------

ABLATIONS = [{}, {"dpse": False}, {"prosody": False}, {"split_speech": False}, {"dual_path": False},
             {"keyframes": False}, {"transcript": False}]


@pytest.mark.parametrize("switch", ABLATIONS, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()) or "full")
def test_padding_does_not_change_valid_outputs(switch):
    """A clip alone and the same clip padded inside a batch give the same features, keyframes logits and x0."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    model = KSDiff(tiny_cfg(**switch), SPEC, FEAT).eval()
    randomize_outputs(model)
    batch = fake_batch([37, 23], g)  # odd lengths; clip 1 is padded from 23 to 37 frames (47 -> 75 features)
    n1 = 23
    single = {k: v[1:2] for k, v in batch.items()}
    single["feats"], single["prosody"], single["feat_mask"] = (single[k][:, : 2 * n1 + 1]
                                                               for k in ("feats", "prosody", "feat_mask"))
    single["tokens"], single["token_mask"] = single["tokens"][:, :5], single["token_mask"][:, :5]
    for k in ("motion", "motion_mask"):
        single[k] = single[k][:, :n1]
    # garbage in the padding of the batch
    batch["feats"][1, 2 * n1 + 1:] = 1e3
    batch["prosody"][1, 2 * n1 + 1:] = -1e3
    lengths = batch["motion_mask"].sum(1)
    del batch["keyframes"], single["keyframes"]  # predict them
    cb = model.encode_condition(batch, lengths)
    cs = model.encode_condition(single, n1)
    for p in cb["speech"]:
        assert cb["speech"][p].shape == (2, 37, 32)
        torch.testing.assert_close(cb["speech"][p][1, :n1], cs["speech"][p][0], atol=1e-5, rtol=1e-4)
    t = torch.tensor([500, 500])
    x = torch.randn(2, 37, SPEC.dim)
    x[1, n1:] = 1e3
    yb = model.denoise(x, t, cb)
    ys = model.denoise(x[1:2, :n1], t[:1], cs)
    assert yb.shape == (2, 37, SPEC.dim) and torch.isfinite(yb).all()
    torch.testing.assert_close(yb[1, :n1], ys[0], atol=1e-5, rtol=1e-4)
    if model.kel is not None:  # predicted keyframes: zero at padding; the clip's own frames agree
        assert cb["keyframes"].shape == (2, 37, 2) and cb["keyframes"][1, n1:].sum() == 0
        assert torch.equal(cb["keyframes"][1, :n1], cs["keyframes"][0])


def test_guidance_zero_is_the_unconditional_model():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    model = KSDiff(tiny_cfg(), SPEC, FEAT).eval()
    randomize_outputs(model)
    b1, b2 = fake_batch([20], g), fake_batch([20], g)
    c1, c2 = model.encode_condition(b1, 20), model.encode_condition(b2, 20)
    x, t = torch.randn(1, 20, SPEC.dim), torch.tensor([300])
    torch.testing.assert_close(model.denoise(x, t, c1, guidance=0.0), model.denoise(x, t, c2, guidance=0.0))
    assert not torch.allclose(model.denoise(x, t, c1), model.denoise(x, t, c2))
    y1, y3 = model.denoise(x, t, c1), model.denoise(x, t, c1, guidance=3.0)
    y0 = model.denoise(x, t, c1, guidance=0.0)
    torch.testing.assert_close(y3, y0 + 3.0 * (y1 - y0), atol=1e-5, rtol=1e-4)
    # guidance runs both predictions in one doubled batch: the same as two passes, also with padding and B > 1
    bb = fake_batch([20, 14], g)
    cb = model.encode_condition(bb, 20)
    xb, tb = torch.randn(2, 20, SPEC.dim), torch.tensor([300, 40])
    two = model._denoise_paths(xb, tb, cb, torch.zeros(2, dtype=torch.bool)), \
        model._denoise_paths(xb, tb, cb, torch.ones(2, dtype=torch.bool))
    torch.testing.assert_close(model.denoise(xb, tb, cb, guidance=2.0), two[1] + 2.0 * (two[0] - two[1]),
                               atol=1e-5, rtol=1e-4)


def test_skip_connection_at_sigma_data_1_is_sqrt_alpha_x_t_plus_sqrt_one_minus_alpha_times_the_network():
    """denoiser.skip = 1: x0_hat = sqrt(ᾱ_t) x_t + sqrt(1 - ᾱ_t) F, F the same network as the plain model's; at
    init (zero output layers) the model returns its input at low noise (any skip > 0), and it trains."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    plain = KSDiff(tiny_cfg(), SPEC, FEAT).eval()
    randomize_outputs(plain)
    skip_cfg = tiny_cfg(denoiser=dataclasses.replace(tiny_cfg().denoiser, skip=1.0))
    skip = KSDiff(skip_cfg, SPEC, FEAT).eval()
    fresh = {k: v.clone() for k, v in skip.state_dict().items()}
    skip.load_state_dict(plain.state_dict())
    b = fake_batch([20, 14], g)
    c = plain.encode_condition(b, 20)
    x, t = torch.randn(2, 20, SPEC.dim), torch.tensor([0, 700])
    a, s = plain.schedule.alpha_sigma(t, like=x)
    torch.testing.assert_close(skip.denoise(x, t, c), a * x + s * plain.denoise(x, t, c), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(skip.denoise(x, t, c, guidance=2.0), a * x + s * plain.denoise(x, t, c, guidance=2.0),
                               atol=1e-5, rtol=1e-4)
    skip.load_state_dict(fresh)  # zero output layers: the input comes back at t = 0
    half = KSDiff(tiny_cfg(denoiser=dataclasses.replace(tiny_cfg().denoiser, skip=0.5)), SPEC, FEAT).eval()
    with torch.no_grad():
        for m in (skip, half):
            y = m.denoise(x, torch.tensor([0, 0]), c)
            assert float((y - x).abs().max()) < 0.03 * float(x.abs().max())

    skip.train()
    loss = skip.training_loss(b, generator=torch.Generator().manual_seed(1))["loss"]
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in skip.parameters())


def test_style_and_emotion_are_optional():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(2)
    cfg = tiny_cfg(denoiser=DenoiserConfig(layers=1, heads=4, ffn_dim=64, dropout=0.0, style_dim=5, emotion=True))
    model = KSDiff(cfg, SPEC, FEAT)
    batch = fake_batch([16, 12], g)
    assert torch.isfinite(model.training_loss(batch)["loss"])
    batch.update(style=torch.randn(2, 5, generator=g), style_mask=torch.tensor([True, False]),
                 emotion=torch.randn(2, 16, 2, generator=g), emotion_mask=torch.tensor([True, True]))
    out = model.training_loss(batch)
    out["loss"].backward()
    assert model.denoisers["h"].style.weight.grad is not None
    model.eval()
    randomize_outputs(model)
    x, t = torch.randn(2, 16, SPEC.dim), torch.tensor([10, 10])
    with_style = model.denoise(x, t, model.encode_condition(batch, batch["motion_mask"].sum(1)))
    no_cond = {k: v for k, v in batch.items() if k not in ("style", "style_mask", "emotion", "emotion_mask")}
    without = model.denoise(x, t, model.encode_condition(no_cond, batch["motion_mask"].sum(1)))
    assert not torch.allclose(with_style[0], without[0])
    per_clip = dict(batch, emotion=torch.randn(2, 2, generator=g))  # one (valence, arousal) per clip
    assert model.denoise(x, t, model.encode_condition(per_clip, batch["motion_mask"].sum(1))).shape == x.shape


def test_slice_condition_matches_frames():
    torch.manual_seed(0)
    model = KSDiff(tiny_cfg(), SPEC, FEAT).eval()
    cond = model.encode_condition(fake_batch([30], torch.Generator().manual_seed(0)), 30)
    part = model.slice_condition(cond, 10, 25)
    assert part["frame_mask"].shape == (1, 15) and part["keyframes"].shape == (1, 15, 2)
    assert torch.equal(part["speech"]["e"], cond["speech"]["e"][:, 10:25])
    assert model.denoise(torch.randn(1, 15, SPEC.dim), torch.tensor([5]), part).shape == (1, 15, SPEC.dim)


def test_flame_spec_paths_and_normalisation():
    spec = get_spec("flame", jaw_path="head")
    model = KSDiff(tiny_cfg(), spec, FEAT)
    assert len(model.path_idx["h"]) == 9 and len(model.path_idx["e"]) == 50
    mean, std = torch.randn(spec.dim), torch.rand(spec.dim) + 0.5
    model.set_normalization(mean, std)
    x = torch.randn(3, spec.dim)
    torch.testing.assert_close(model.denormalize(model.normalize(x)), x)
    assert "motion_mean" in model.state_dict()


def test_default_config_sizes():
    counts = KSDiff(ModelConfig(), SPEC, 384).num_parameters()
    assert 1e6 < counts["total"] < 5e6  # the CPU default


# ----------------------------------------------------------------------------------------------------------------
# a few training steps on real paired speech + face motion
# ----------------------------------------------------------------------------------------------------------------

def _facegood_crop(shared, seconds: float = 2.4, fps: float = 25.0) -> dict:
    from ksdiff.audio.encoders import get_encoder
    from ksdiff.audio.prosody import compute_prosody
    from ksdiff.data.importers.facegood import iter_clips

    clip = next(iter_clips([shared / "data" / "facegood"], fps=fps))
    coeffs = clip.motion.coeffs
    # the 2.4 s around the frame where the mouth moves most
    T = int(seconds * fps)
    jaw = coeffs[:, SPEC.index(("jawOpen",))[0]]
    start = int(np.clip(np.argmax(jaw) - T // 2, 0, len(coeffs) - T))
    wave = clip.wave[int(start / fps * 16000): int((start + T) / fps * 16000)]
    enc = get_encoder("mel")
    feats = enc.encode(wave)
    motion = coeffs[start:start + T]
    kf = keyframe_labels(motion, SPEC)
    return dict(feats=torch.from_numpy(feats)[None], prosody=torch.from_numpy(compute_prosody(wave, len(feats)))[None],
                feat_mask=torch.ones(1, len(feats), dtype=torch.bool), motion=torch.from_numpy(motion)[None],
                motion_mask=torch.ones(1, T, dtype=torch.bool), keyframes=torch.from_numpy(kf).float()[None],
                tokens=torch.zeros(1, 0, dtype=torch.long), token_mask=torch.zeros(1, 0, dtype=torch.bool))


def test_overfit_a_real_clip(shared):
    batch = _facegood_crop(shared)
    assert batch["feats"].shape[1] == 120 and batch["motion"].shape[1] == 60
    torch.manual_seed(0)
    model = KSDiff(tiny_cfg(dim=48), SPEC, batch["feats"].shape[-1])
    m = batch["motion"][0]
    model.set_normalization(m.mean(0), m.std(0) + 1e-2)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([200])  # a fixed step and noise: the loss must fall
    noise = torch.randn(batch["motion"].shape, generator=g)
    losses = []
    for _ in range(30):
        out = model.training_loss(batch, t=t, noise=noise)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append({k: float(v.detach()) for k, v in out.items()})
    assert all(np.isfinite(v) for d in losses for v in d.values())
    assert losses[-1]["loss"] < 0.5 * losses[0]["loss"]
    for part in ("diff_e", "mr_e", "bce_e"):  # (this clip's head never moves: diff_h is ~0 throughout)
        assert losses[-1][part] < losses[0][part], part


def test_dpse_long_input_chunked_attention_is_exact(monkeypatch):
    from ksdiff.model.dpse import BranchAttention

    torch.manual_seed(0)
    dpse = DPSE(FEAT, tiny_cfg()).eval()
    feats, pros = torch.randn(1, 301, FEAT), torch.randn(1, 301, 2)
    full = dpse(feats, pros, None, 150)
    monkeypatch.setattr(BranchAttention, "chunk", 7)
    chunked = dpse(feats, pros, None, 150)
    for p in ("h", "e"):
        torch.testing.assert_close(chunked[p], full[p], atol=1e-5, rtol=1e-5)


def test_config_round_trip_and_shipped_paper_config():
    from ksdiff.config import from_dict, to_dict

    paper = ModelConfig.paper()
    assert from_dict(ModelConfig, to_dict(paper)) == paper
    assert paper.dim == 512 and paper.kel.layers == 6 and paper.kel.heads == 8


def test_attn_dropout_sets_every_attention_layer_and_defaults_to_each_parts():
    """model.attn_dropout (a speed switch, docs/TRAINING.md "Step time") reaches every attention layer of every
    part; unset, each layer keeps its part's dropout as before, and a config without the key loads as unset."""
    from ksdiff.config import from_dict
    from ksdiff.model.layers import Attention

    def rates(cfg: ModelConfig) -> set[float]:
        return {m.dropout for m in KSDiff(cfg, SPEC, FEAT).modules() if isinstance(m, Attention)}

    parts = dict(dpse_cfg=DPSEConfig(dilations=[1, 3], groups=4, heads=2, dropout=0.1),
                 kel=KELConfig(layers=1, heads=2, dropout=0.1), text=TextConfig(vocab_size=64, layers=1, heads=2),
                 denoiser=DenoiserConfig(layers=1, heads=4, ffn_dim=64, text_attention="gated"))
    assert rates(tiny_cfg(**parts)) == {0.1}
    assert rates(tiny_cfg(**parts, attn_dropout=0.0)) == {0.0}
    assert from_dict(ModelConfig, {}).attn_dropout is None


def test_frame_cond_puts_time_and_style_on_every_frame():
    """frame_cond (configs/default.yaml) adds the time and style embeddings to every frame; configs that predate
    it (no key) keep DiffSpeaker's prefix tokens only, so old checkpoints rebuild the model they were trained as."""
    from ksdiff.config import from_dict
    from ksdiff.model.config import DenoiserConfig
    from ksdiff.model.denoiser import MotionDenoiser
    from ksdiff.train.config import load_run_config

    assert from_dict(DenoiserConfig, {}).frame_cond is False
    assert load_run_config("default").model.denoiser.frame_cond is True
    assert load_run_config("ablations/diffspeaker").model.denoiser.frame_cond is False
    assert load_run_config("paper").model.denoiser.frame_cond is False  # the paper's DiffSpeaker denoisers
    torch.manual_seed(0)
    outs = {}
    for fc in (False, True):
        torch.manual_seed(0)
        net = MotionDenoiser(6, 32, 25.0, DenoiserConfig(layers=1, heads=4, ffn_dim=64, style_dim=2, frame_cond=fc,
                                                         dropout=0.0)).eval()
        torch.nn.init.normal_(net.out.weight, std=0.1)
        B, T = 2, 10
        g = torch.Generator().manual_seed(1)
        x = torch.randn(B, T, 6, generator=g)
        speech, text = torch.randn(B, T, 32, generator=g), torch.randn(B, 3, 32, generator=g)
        fm, tm = torch.ones(B, T, dtype=torch.bool), torch.ones(B, 3, dtype=torch.bool)
        style = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        y = net(x, torch.tensor([5, 5]), speech, fm, text, tm, style=style)
        # the second sample with the first one's style: only the style differs
        y2 = net(x, torch.tensor([5, 5]), speech, fm, text, tm, style=style[[0, 0]])
        outs[fc] = (y, (y[1] - y2[1]).abs().mean().item())
    assert outs[False][1] > 0 and outs[True][1] > 0  # the style matters either way
    assert not torch.allclose(outs[False][0], outs[True][0])  # and frame_cond changes the computation
