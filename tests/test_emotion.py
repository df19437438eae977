"""Valence / arousal from facial motion (ksdiff.face.emotion) on clips whose answer is obvious, and on the synthetic
corpus with controlled emotion."""

from __future__ import annotations

import numpy as np
import pytest

from ksdiff.data.synth.config import SynthConfig
from ksdiff.data.synth.corpus import synth_clip
from ksdiff.errors import KsdiffError
from ksdiff.face.emotion import estimate_emotion
from ksdiff.face.specs import get_spec

SPEC = get_spec("arkit")
FPS = 25.0


def _face(**channels: float) -> np.ndarray:
    """A talking face with no emotion of its own (a synthetic clip, emotion off) holding ``channels`` on top."""
    c = synth_clip(0, SynthConfig(seed=3)).motion.coeffs.copy()
    for name, value in channels.items():
        c[:, SPEC.channels.index(name)] += value
    return c


def test_obvious_faces():
    ch = SPEC.channels
    va = lambda c: estimate_emotion(c, ch, FPS).mean(0)  # noqa: E731
    neutral = va(_face())
    smile = va(_face(mouthSmileLeft=0.5, mouthSmileRight=0.5, cheekSquintLeft=0.25, cheekSquintRight=0.25))
    frown = va(_face(mouthFrownLeft=0.5, mouthFrownRight=0.5, browDownLeft=0.5, browDownRight=0.5))
    excited = va(_face(eyeWideLeft=0.5, eyeWideRight=0.5, browInnerUp=0.4, browOuterUpLeft=0.3,
                       browOuterUpRight=0.3))
    sleepy = va(_face(eyeBlinkLeft=0.4, eyeBlinkRight=0.4))
    assert abs(neutral[0]) < 0.3 and abs(neutral[1]) < 0.3
    assert smile[0] > 0.5 and frown[0] < -0.5
    assert excited[1] > 0.5 and sleepy[1] < neutral[1] - 0.3
    busy = _face()  # the same face moving twice as much
    mid = busy.mean(0)
    busy = mid + 2.0 * (busy - mid)
    assert va(busy)[1] > neutral[1] + 0.2
    out = estimate_emotion(busy, ch, FPS)
    assert out.shape == (len(busy), 2) and out.dtype == np.float32 and np.abs(out).max() <= 1
    with pytest.raises(KsdiffError):
        estimate_emotion(np.zeros((10, 5)), ["a", "b", "c", "d", "e"], FPS)


def test_recovers_the_synthetic_corpus_emotion():
    """Clips generated with drawn (valence, arousal) (another seed than the constants were fitted on): the
    estimate's clip means follow them."""
    cfg = SynthConfig(seed=7, emotion=True)
    clips = [synth_clip(i, cfg) for i in range(16)]
    truth = np.array([c.tts["emotion"] for c in clips])
    est = np.array([estimate_emotion(c.motion.coeffs, c.motion.channels, c.motion.fps).mean(0) for c in clips])
    assert np.corrcoef(truth[:, 0], est[:, 0])[0, 1] > 0.85
    assert np.corrcoef(truth[:, 1], est[:, 1])[0, 1] > 0.7
    # and the corpus without emotion is the corpus it always was
    plain = synth_clip(0, SynthConfig(seed=7))
    assert "emotion" not in plain.tts and not np.array_equal(plain.motion.coeffs, clips[0].motion.coeffs)
    np.testing.assert_array_equal(plain.wave, clips[0].wave)


def test_a_datasets_own_rest_points_centre_its_labels():
    """Tracker blendshapes have other baselines than the synthetic model's: with the dataset's own rest points
    (its medians) a face that is usually like that reads neutral, and a smile still reads positive."""
    from ksdiff.face.emotion import rest_of
    from ksdiff.face.motion import Motion

    base = _face(eyeBlinkLeft=0.3, eyeBlinkRight=0.3, mouthFrownLeft=0.2, mouthFrownRight=0.2)  # a tracker's look
    m = Motion(base.astype(np.float32), SPEC.channels, FPS, "arkit")
    assert estimate_emotion(base, SPEC.channels, FPS).mean(0)[0] < -0.3  # biased with the synthetic rest points
    rest = rest_of([m])
    own = estimate_emotion(base, SPEC.channels, FPS, rest=rest)
    assert np.abs(np.median(own, axis=0)).max() < 0.2
    smile = base.copy()
    smile[:, SPEC.channels.index("mouthSmileLeft")] += 0.4
    smile[:, SPEC.channels.index("mouthSmileRight")] += 0.4
    assert estimate_emotion(smile, SPEC.channels, FPS, rest=rest).mean(0)[0] > 0.5


def test_emotion_labels_for_a_dataset_and_training_reads_them(tmp_path, capsys):
    """`ksdiff synth --emotion` records exact labels; `ksdiff dataset emotion` keeps them and estimates the rest;
    the training loader reads both kinds (the synthetic [v, a] and the per-frame estimate)."""
    import json
    import shutil

    from ksdiff.cli import main
    from ksdiff.data.dataset import open_dataset
    from ksdiff.train.data import _emotion

    pytest.importorskip("espeakng_loader")
    ds = tmp_path / "ds"
    assert main(["synth", "--out", str(ds), "--minutes", "0.25", "--seed", "3", "--emotion", "--quiet"]) == 0
    d = open_dataset(ds)
    ids = d.clip_ids()
    exact = {c: d.clip(c).meta()["emotion"] for c in ids}
    assert all(isinstance(v, list) and len(v) == 2 and max(map(abs, v)) <= 1 for v in exact.values())
    # one clip as if it came from a tracker: no label
    meta = d.clip(ids[0]).meta()
    del meta["emotion"]
    (d.clip(ids[0]).root / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["dataset", "emotion", str(ds)]) == 0
    out = capsys.readouterr().out
    assert f"labelled 1 of {len(ids)} clips" in out and "kept: exact" in out
    est = d.clip(ids[0]).meta()["emotion"]
    T = d.clip(ids[0]).motion().num_frames
    assert est["source"] == "estimated" and len(est["valence"]) == T and est["fps"] == 25.0
    assert all(d.clip(c).meta()["emotion"] == exact[c] for c in ids[1:])  # exact labels untouched
    per_frame = _emotion({"emotion": est}, T, 25.0, 25.0)
    assert per_frame.shape == (T, 2) and np.allclose(per_frame[:, 0], est["valence"], atol=1e-3)
    halved = _emotion({"emotion": est}, (T + 1) // 2, 25.0, 12.5)  # resampled to another frame rate
    assert halved.shape == ((T + 1) // 2, 2)
    const = _emotion(d.clip(ids[1]).meta(), 10, 25.0, 25.0)
    assert np.allclose(const, np.tile(exact[ids[1]], (10, 1)))
    shutil.rmtree(ds)
