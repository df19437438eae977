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


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_checkpoint_files_get_the_usual_permissions(tmp_path, facegood_motion):
    """Checkpoints and training states are written like any other output: 0666 minus the umask (0644 under the
    usual 022), not mkstemp's 0600."""
    model = _model("arkit", facegood_motion)
    ck.save_checkpoint(tmp_path / "m.safetensors", model, _config(model))
    ck.save_train_state(tmp_path / "s", {"x": torch.ones(2)}, step=1)
    ck.save_run_checkpoint(tmp_path / "run", model, model.state_dict(), {"x": torch.ones(2)}, _config(model), 1)
    files = [tmp_path / "m.safetensors", tmp_path / "s" / ck.STATE_FILE, tmp_path / "s" / ck.STATE_SIDECAR,
             *[tmp_path / "run" / n for n in (ck.MODEL_FILE, ck.LAST_FILE, ck.STATE_FILE, ck.STATE_SIDECAR)]]
    want = 0o666 & ~_umask()
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: oct(want) for f in files}


def test_a_save_is_all_or_nothing(tmp_path, facegood_motion, monkeypatch):
    """save_run_checkpoint writes all four files before renaming any: a failure while writing (a full disk, a
    kill) leaves the previous save whole and no temporaries behind."""
    model = _model("arkit", facegood_motion)
    run = tmp_path / "run"
    ck.save_run_checkpoint(run, model, model.state_dict(), {"x": torch.ones(2)}, _config(model), 3)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    real = ck._write_checkpoint

    def failing(path, sd, config, extra):  # noqa: ANN001, ANN202
        if extra.get("weights") == "ema":  # the last of the four
            raise RuntimeError("simulated failure while writing")
        return real(path, sd, config, extra)

    monkeypatch.setattr(ck, "_write_checkpoint", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        ck.save_run_checkpoint(run, model, model.state_dict(), {"x": torch.zeros(2)}, _config(model), 4)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    monkeypatch.undo()
    ck.save_run_checkpoint(run, model, model.state_dict(), {"x": torch.zeros(2)}, _config(model), 4)
    state, step = ck.load_train_state(run)
    assert step == 4 and torch.equal(state["x"], torch.zeros(2))
    assert {ck.read_metadata(run / n)["step"] for n in (ck.MODEL_FILE, ck.LAST_FILE)} == {"4"}


def _one_line(fn, *args, **kw) -> str:  # noqa: ANN001
    with pytest.raises(KsdiffError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_config_that_does_not_fit_the_weights_is_one_line(tmp_path, facegood_motion):
    """A checkpoint whose config describes another model (size, face spec) than its weights: one line naming the
    file and the first mismatching tensor, from the loader that generate / evaluate / bench / resume all use."""
    from ksdiff.generate import load_model

    model = _model("arkit", facegood_motion)
    cfg = _config(model)
    bigger = json.loads(json.dumps(cfg))
    bigger["model"]["dim"] = 48
    path = tmp_path / "size.safetensors"
    ck.save_checkpoint(path, model, bigger)
    msg = _one_line(ck.model_from_checkpoint, path)
    assert str(path) in msg and "in the file but" in msg and "for its config" in msg
    assert "(32," in msg and "(48," in msg and "config does not match its weights" in msg
    assert _one_line(load_model, path) == msg  # generate's loader: the same check
    flame = json.loads(json.dumps(cfg))
    flame["spec"] = get_spec("flame").to_dict()
    fpath = tmp_path / "spec.safetensors"
    ck.save_checkpoint(fpath, model, flame)
    msg = _one_line(ck.model_from_checkpoint, fpath)
    assert "tensor motion_mean is (58,) in the file but" in msg and str(fpath) in msg
    sd = model.state_dict()
    name = next(iter(k for k in sd if k.startswith("denoisers.")))
    ck.save_checkpoint(tmp_path / "less.safetensors", {k: v for k, v in sd.items() if k != name}, cfg)
    assert f"tensor {name} of the model its config describes is missing" in _one_line(
        ck.model_from_checkpoint, tmp_path / "less.safetensors")
    ck.save_checkpoint(tmp_path / "more.safetensors", {**sd, "extra.weight": torch.zeros(2)}, cfg)
    assert "tensor extra.weight is in the file but not in the model" in _one_line(
        ck.model_from_checkpoint, tmp_path / "more.safetensors")


def test_weights_with_nan_or_inf_are_refused(tmp_path, facegood_motion):
    from ksdiff.generate import load_model

    model = _model("arkit", facegood_motion)
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    name = next(k for k, v in sd.items() if k.startswith("denoisers.") and v.dim() == 2)
    for bad in (float("nan"), float("inf")):
        sd[name][0, 0] = bad
        path = tmp_path / "bad.safetensors"
        ck.save_checkpoint(path, sd, _config(model))
        msg = _one_line(ck.load_checkpoint, path)
        assert msg == f"{path}: weights contain NaN/inf (a diverged run?): tensor {name}"
        assert _one_line(load_model, path) == msg
    ck.check_finite({"w": torch.full((4,), 3e38)}, None)  # finite values whose sum overflows are fine
