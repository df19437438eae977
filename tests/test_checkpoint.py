"""Checkpoints: safetensors round trips (model, optimizer, EMA, RNG), validation of kind / version / spec, EMA."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ksdiff.errors import KsdiffError
from ksdiff.face.specs import get_spec
from ksdiff.train import checkpoint as ck
from ksdiff.train.ema import EMA


def _tiny_cfg():
    from ksdiff.model.config import DenoiserConfig, DPSEConfig, KELConfig, ModelConfig, TextConfig

    return ModelConfig(dim=32, dpse_cfg=DPSEConfig(dilations=[1, 2], groups=4, heads=2),
                       kel=KELConfig(layers=1, heads=2), text=TextConfig(layers=1, heads=2),
                       denoiser=DenoiserConfig(layers=1, heads=2, ffn_dim=64))


@pytest.fixture(scope="module")
def facegood_motion(shared: Path) -> np.ndarray:
    """10 s of real FACEGOOD mouth motion mapped to arkit at 25 fps (plus a slow synthetic head turn)."""
    from ksdiff.data.importers import get_importer

    clip = next(iter(get_importer("facegood")([shared / "data" / "facegood"], fps=25.0)))
    x = clip.motion.coeffs[:250].copy()
    spec = get_spec("arkit")
    x[:, spec.channels.index("headRotY")] = 0.1 * np.sin(np.arange(250) / 25.0)
    return x


def _model(spec_name: str, motion: np.ndarray | None = None):
    from ksdiff.model.ksdiff import KSDiff

    spec = get_spec(spec_name)
    torch.manual_seed(0)
    m = KSDiff(_tiny_cfg(), spec, feat_dim=80)
    if motion is not None:
        m.set_normalization(motion.mean(0), motion.std(0) + 1e-3)
    return m


def _config(model) -> dict:
    from ksdiff.config import to_dict

    return {"model": to_dict(model.cfg), "spec": model.spec.to_dict(), "fps": 25.0,
            "features": {"encoder": "mel", "dim": 80, "rate": 50.0, "tokens": "chars"},
            "normalization": {"mean": model.motion_mean.tolist(), "std": model.motion_std.tolist()}}


def _batch(motion: np.ndarray, spec_dim: int) -> dict:
    g = torch.Generator().manual_seed(1)
    x = torch.from_numpy(motion[:50]).float()[None].repeat(2, 1, 1)
    return {"feats": torch.randn(2, 100, 80, generator=g), "prosody": torch.randn(2, 100, 2, generator=g),
            "feat_mask": torch.ones(2, 100, dtype=torch.bool), "motion": x,
            "motion_mask": torch.ones(2, 50, dtype=torch.bool),
            "keyframes": (torch.rand(2, 50, 2, generator=g) < 0.1).float(),
            "tokens": torch.randint(3, 40, (2, 12), generator=g), "token_mask": torch.ones(2, 12, dtype=torch.bool)}


def test_model_round_trip_rebuilds_the_same_model(tmp_path, facegood_motion):
    model = _model("arkit", facegood_motion).eval()
    path = tmp_path / "model.safetensors"
    ck.save_checkpoint(path, model, _config(model), {"step": 7, "weights": "ema"})
    sd, cfg, meta = ck.load_checkpoint(path, expect_spec="arkit")
    assert meta["kind"] == "ksdiff-model" and int(meta["format_version"]) == ck.CHECKPOINT_FORMAT_VERSION
    assert meta["step"] == "7" and meta["weights"] == "ema" and cfg == json.loads(json.dumps(_config(model)))
    ref = model.state_dict()
    assert set(sd) == set(ref) and all(torch.equal(sd[k], ref[k]) for k in ref)
    rebuilt, _ = ck.model_from_checkpoint(path)
    batch = _batch(facegood_motion, model.spec.dim)
    cond_a = model.encode_condition(batch, 50, keyframes=batch["keyframes"])
    cond_b = rebuilt.encode_condition(batch, 50, keyframes=batch["keyframes"])
    x_t = torch.randn(2, 50, model.spec.dim, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([10, 900])
    with torch.no_grad():
        assert torch.equal(model.denoise(x_t, t, cond_a), rebuilt.denoise(x_t, t, cond_b))
    assert torch.allclose(rebuilt.denormalize(rebuilt.normalize(batch["motion"])), batch["motion"], atol=1e-5)
    assert not list(tmp_path.glob(".*tmp*"))


def test_checkpoint_errors_are_one_line(tmp_path, facegood_motion):
    model = _model("arkit", facegood_motion)
    good = tmp_path / "m.safetensors"
    ck.save_checkpoint(good, model, _config(model))

    def err(**kw) -> str:
        with pytest.raises(KsdiffError) as e:
            ck.load_checkpoint(**kw)
        msg = str(e.value)
        assert "\n" not in msg
        return msg

    assert "face spec 'arkit'" in err(path=good, expect_spec="flame")
    assert "checkpoint not found" in err(path=tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    assert "not a safetensors checkpoint" in err(path=junk)
    from safetensors.torch import save_file

    newer = tmp_path / "newer.safetensors"
    save_file({"w": torch.zeros(1)}, str(newer), metadata={"kind": "ksdiff-model", "format_version": "99",
                                                          "config": "{}"})
    assert "newer than this ksdiff reads" in err(path=newer)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(1)}, str(other), metadata={"format": "pt"})
    assert "not a ksdiff checkpoint" in err(path=other)
    ck.save_train_state(tmp_path, {"x": torch.ones(2)}, step=3)
    assert "training state, not a model" in err(path=tmp_path / ck.STATE_FILE)
    # a flame checkpoint asked for as arkit, and a flame one with the paper's jaw placement
    fl = _model("flame")
    flp = tmp_path / "flame.safetensors"
    ck.save_checkpoint(flp, fl, _config(fl))
    assert "face spec 'flame'" in err(path=flp, expect_spec="arkit")
    assert "jaw on the expression path" in err(path=flp, expect_spec="flame", expect_jaw_path="head")
    with pytest.raises(KsdiffError, match="face spec 'flame'"):
        ck.model_from_checkpoint(flp, expect_spec="arkit")


def test_training_state_round_trip_continues_identically(tmp_path, facegood_motion):
    """Optimizer (flattened to tensors + JSON), EMA and RNG states survive the files exactly: the steps after a
    reload equal the steps without one."""
    batch = _batch(facegood_motion, 58)

    def make():
        m = _model("arkit", facegood_motion)
        return m, torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01), None

    def step(m, opt, ema):
        torch.manual_seed(5)
        loss = m.training_loss(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(m)
        return float(loss.detach())

    m, opt, _ = make()
    ema = EMA(m, 0.9)
    for _ in range(2):
        step(m, opt, ema)
    random.seed(11)
    np.random.seed(12)
    torch.manual_seed(13)
    ck.save_checkpoint(tmp_path / ck.LAST_FILE, m, _config(m), {"step": 2})
    ck.save_train_state(tmp_path, {"optimizer": opt.state_dict(), "ema": ema.state_dict(), "rng": ck.rng_state()},
                        step=2)
    expect_rng = (random.random(), float(np.random.rand()), float(torch.rand(())))
    expect = [step(m, opt, ema) for _ in range(2)]
    expect_ema = {k: v.clone() for k, v in ema.shadow.items()}

    state, s = ck.load_train_state(tmp_path)
    assert s == 2
    side = json.loads((tmp_path / ck.STATE_SIDECAR).read_text())
    assert side["kind"] == "ksdiff-train-state" and side["step"] == 2
    m2, opt2, _ = make()
    sd, _, _ = ck.load_checkpoint(tmp_path / ck.LAST_FILE)
    m2.load_state_dict(sd)
    opt2.load_state_dict(state["optimizer"])
    assert opt2.state_dict()["param_groups"][0]["betas"] == (0.9, 0.99)
    ema2 = EMA(m2, 0.5)
    ema2.load_state_dict(state["ema"])
    assert ema2.decay == 0.9 and ema2.num_updates == 2
    ck.set_rng_state(state["rng"])
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expect_rng
    got = [step(m2, opt2, ema2) for _ in range(2)]
    assert got == expect
    assert all(torch.equal(ema2.shadow[k], expect_ema[k]) for k in expect_ema)
    # tensors and sidecar of different saves are refused
    ck.save_train_state(tmp_path / "b", {"x": torch.ones(1)}, step=5)
    (tmp_path / ck.STATE_FILE).write_bytes((tmp_path / "b" / ck.STATE_FILE).read_bytes())
    with pytest.raises(KsdiffError, match="do not belong together"):
        ck.load_train_state(tmp_path)


def test_flatten_keeps_types():
    tensors: dict = {}
    obj = {"state": {0: {"step": torch.tensor(3.0), "m": torch.arange(4.0)}}, "groups": [{"betas": (0.9, 0.99),
           "params": [0, 1], "name": None}], "np": np.arange(3, dtype=np.uint32), "flag": True}
    skel = ck.flatten_state(obj, tensors)
    back = ck.unflatten_state(json.loads(json.dumps(skel)), tensors)
    assert list(back["state"]) == [0] and torch.equal(back["state"][0]["m"], torch.arange(4.0))
    assert back["groups"][0]["betas"] == (0.9, 0.99) and back["groups"][0]["name"] is None
    assert back["np"].dtype == np.uint32 and back["flag"] is True


def test_ema_average_and_warmup():
    lin = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.zero_()
    ema = EMA(lin, decay=0.9)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema.update(lin)  # first update: d = min(0.9, 1/10) = 0.1 -> shadow = 0.9
    assert torch.allclose(ema.shadow["weight"], torch.full((1, 2), 0.9))
    for _ in range(200):
        ema.update(lin)
    assert torch.allclose(ema.shadow["weight"], torch.ones(1, 2), atol=1e-6)
    with torch.no_grad():
        lin.weight.fill_(3.0)
    ema.update(lin)  # late updates use the full decay: 1 + 0.1 * (3 - 1)
    assert torch.allclose(ema.state_dict_for(lin)["weight"], torch.full((1, 2), 1.2))
