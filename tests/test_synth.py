"""The synthetic talking-face corpus: exact timings, determinism, coarticulation, and the corpus checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("espeakng_loader")

from ksdiff.cli import main  # noqa: E402
from ksdiff.errors import KsdiffError  # noqa: E402
from ksdiff.data.dataset import check_dataset, open_dataset  # noqa: E402
from ksdiff.data.synth.checks import band_power, corpus_report  # noqa: E402
from ksdiff.data.synth.config import DEFAULT_VOICES, SynthConfig  # noqa: E402
from ksdiff.data.synth.corpus import synth_clip  # noqa: E402
from ksdiff.data.synth.head import blink_times, find_accents, head_and_face  # noqa: E402
from ksdiff.data.synth.text import make_sentence, ranked_words  # noqa: E402
from ksdiff.data.synth.tts import align_phones, synthesize  # noqa: E402
from ksdiff.data.synth.visemes import DOMINANCE, TARGET_KEYS, Segment, classify, coarticulate, target_vector  # noqa: E402

SENTENCE = "People maybe mapped a simple boat, and the blue moon was above them."


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path]:
    """The same command run twice into two folders (0.3 minutes, seed 0)."""
    root = tmp_path_factory.mktemp("synth")
    a, b = root / "a", root / "b"
    for out in (a, b):
        assert main(["synth", "--out", str(out), "--minutes", "0.3", "--seed", "0", "--quiet"]) == 0
    return a, b


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_writes_valid_dataset_byte_identical_for_same_seed(corpus):
    a, b = corpus
    assert check_dataset(a) == []
    ds = open_dataset(a)
    assert ds.spec == "arkit" and ds.fps == 25.0 and ds.extra["source"] == "synth"
    ids = ds.clip_ids()
    assert len(ids) >= 3 and len({i.split("-")[0] for i in ids}) >= 3  # several speakers
    seconds = 0.0
    for clip in ds.clips():
        meta = clip.meta()
        assert meta["source"] == "synth" and meta["speaker"] == clip.id.split("-")[0]
        assert 130 <= meta["rate"] <= 200 and 30 <= meta["pitch"] <= 70
        assert clip.transcript() and (clip.root / "phones.json").is_file()
        gt = json.loads((clip.root / "phones.json").read_text())
        assert [p["phone"] for p in gt["phones"]] == [p[0] for p in meta["phones"]]
        n = len(clip.audio())
        assert 2.0 <= n / 16000 <= 12.0
        seconds += n / 16000
    assert seconds >= 0.3 * 60
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    differing = [k for k in fa if fa[k] != fb[k]]
    assert differing == []


def test_corpus_report_checks_hold(corpus):
    rep = corpus_report(corpus[0])
    assert rep["bilabials"] >= 10
    assert rep["bilabial_closure"] >= 0.9
    assert rep["jaw_envelope_r"] > 0.4
    assert rep["head_low_frac"] > 0.8   # head: slow, prosody-driven
    assert rep["mouth_high_frac"] > 0.5  # mouth: fast, phone-driven
    assert 5 < rep["blinks_per_min"] < 40
    # speaker styles show: gb_m3 (jaw gain 1.2, rounding 0.8) vs us_f3 (jaw 0.85, rounding 1.2)
    spk = rep["speakers"]
    assert spk["gb_m3"]["jaw_p95"] > 1.2 * spk["us_f3"]["jaw_p95"]
    assert spk["us_f3"]["rounding_p95"] > 1.2 * spk["gb_m3"]["rounding_p95"]


def test_cli_refuses_existing_output_and_bad_voice(corpus, tmp_path, capsys):
    a = corpus[0]
    assert main(["synth", "--out", str(a), "--minutes", "0.05"]) == 2
    assert "--force" in capsys.readouterr().err
    (tmp_path / "notads").mkdir()
    (tmp_path / "notads" / "keep.txt").write_text("mine")
    assert main(["synth", "--out", str(tmp_path / "notads"), "--minutes", "0.05", "--force"]) == 2
    assert "not a ksdiff dataset" in capsys.readouterr().err
    assert (tmp_path / "notads" / "keep.txt").read_text() == "mine"
    assert main(["synth", "--out", str(tmp_path / "x"), "--minutes", "0.05", "--voices", "zz-nonexistent"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no voice" in err[0]
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x*"))  # nothing partial left behind


def test_espeak_event_timings_are_exact_and_deterministic():
    u = synthesize(SENTENCE, voice="en-us", rate=170, seed=3)
    other = synthesize("Something else entirely.", voice="en-us+f3", rate=150, seed=9)
    again = synthesize(SENTENCE, voice="en-us", rate=170, seed=3)
    assert again.wave.tobytes() == u.wave.tobytes() and again.phones == u.phones  # whatever was spoken between
    assert other.wave.shape != u.wave.shape
    assert u.sample_rate == 16000 and u.wave.dtype == np.float32 and 0 < np.abs(u.wave).max() <= 1
    # phones tile [0, duration] and the words come out in order
    assert u.phones[0][1] == 0.0 and abs(u.phones[-1][2] - u.duration) < 1e-3
    assert all(abs(p[2] - q[1]) < 1e-9 for p, q in zip(u.phones, u.phones[1:]))
    assert [w.lower() for w, _, _ in u.words][:3] == ["people", "maybe", "mapped"]
    arpa = [classify(p)[1] for p, _, _ in u.phones]
    assert arpa.count("M") >= 4 and arpa.count("P") >= 3
    # the timings match the audio: pauses are silent, vowels loud
    def rms(s, e):
        x = u.wave[int(s * 16000):int(e * 16000)]
        return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0
    pause = [rms(s, e) for p, s, e in u.phones if p.startswith("_") and e - s > 0.05]
    vowel = [rms(s, e) for p, s, e in u.phones if classify(p)[0][0] in ("AA", "AE", "AH", "UW", "OW", "EH")]
    assert pause and max(pause) < 0.1 * np.median(vowel)
    # to the millisecond: after a pause, sound resumes where espeak says the next phone starts
    v = synthesize("Somebody was calling. Apples are sweet.", voice="en+f2", seed=0)
    s, e = next((s, e) for p, s, e in v.phones if p.startswith("_") and e - s > 0.05 and s > 0.1)
    loud = np.abs(v.wave) > 0.02 * np.abs(v.wave).max()
    assert not loud[int(s * 16000) + 80:int(e * 16000) - 80].any()
    assert abs(np.argmax(loud[int(e * 16000) - 800:]) - 800) / 16000 < 0.005
    # faster rate -> shorter audio
    fast = synthesize(SENTENCE, voice="en-us", rate=200, seed=3)
    assert fast.duration < 0.9 * u.duration


def test_alignment_fallback_agrees_with_events():
    text = "People value simple food."
    u = synthesize(text, voice="en-us", rate=160, seed=1)
    pad = np.zeros(4000, np.float32)
    phones, words = align_phones(np.concatenate([pad, u.wave, pad]), text)
    # the aligner uses CMUdict pronunciations (espeak's may differ), so compare the word boundaries
    assert [w.lower() for w, _, _ in words] == [w.lower() for w, _, _ in u.words]
    err = np.abs(np.array([s for _, s, _ in words]) - np.array([s + 0.25 for _, s, _ in u.words]))
    assert np.median(err) < 0.04
    assert sum(classify(p)[1] in ("P", "B", "M") for p, _, _ in phones) == 4


def test_coarticulation_closes_bilabials_and_spreads_rounding():
    def seg(v, s, e):
        return Segment(v, s, e, target_vector(v), DOMINANCE[v])
    k = {n: i for i, n in enumerate(TARGET_KEYS)}
    # /a b a/: the lips close at the centre of a short /b/ however open the vowels are
    segs = [seg("SIL", 0, 0.3), seg("AA", 0.3, 0.5), seg("PBM", 0.5, 0.56), seg("AA", 0.56, 0.76), seg("SIL", 0.76, 1)]
    f = coarticulate(segs, np.array([0.15, 0.4, 0.53, 0.66, 0.95]))
    assert f[2, k["jaw"]] < 0.1 and f[2, k["press"]] > 0.4
    assert f[1, k["jaw"]] > 0.5 and f[3, k["jaw"]] > 0.5
    assert f[0, k["jaw"]] < 0.05 and f[4, k["jaw"]] < 0.05
    # /u s u/: the weak /s/ keeps the rounding of its neighbours (anticipatory / carry-over rounding) ...
    segs = [seg("UW", 0.0, 0.15), seg("SZ", 0.15, 0.23), seg("UW", 0.23, 0.4)]
    rounded = coarticulate(segs, np.array([0.19]))[0, k["pucker"]]
    # ... while between spread vowels it is not rounded
    segs = [seg("IY", 0.0, 0.15), seg("SZ", 0.15, 0.23), seg("IY", 0.23, 0.4)]
    spread = coarticulate(segs, np.array([0.19]))[0, k["pucker"]]
    assert rounded > 0.3 * target_vector("UW")[k["pucker"]] and spread < 0.05


def test_clip_motion_structure():
    cfg = SynthConfig(seed=5)
    c = synth_clip(2, cfg)
    assert c.speaker == DEFAULT_VOICES[2].name
    m = c.motion
    assert m.coeffs.shape == (int(round(c.duration * 25)), 58) and m.spec == "arkit"
    # silent lead-in: lips at rest and closed
    assert m.channel("jawOpen")[0] < 0.05
    # a valid ARKit face: a closure's mouthClose never exceeds jawOpen (the lips would pass through each other)
    assert (m.channel("mouthClose") <= m.channel("jawOpen")).all() and m.channel("mouthClose").max() > 0.01
    # blinks are ~150 ms, both eyes
    assert np.array_equal(m.channel("eyeBlinkLeft"), m.channel("eyeBlinkRight"))
    gt = c.ground_truth()
    assert [a[0] for a in gt["accents"]] == [round(a[0], 6) for a in c.accents]
    other = synth_clip(2, SynthConfig(seed=6))
    assert other.text != c.text


def test_calibrated_mouth_close_is_a_share_of_the_jaw():
    """With the calibrated table mouthClose is the class's share of its segment's jaw (ARKit closes the lips against
    the jaw's opening): 0.85 at /p b m/, 0.137 elsewhere, however the speaker's and the syllable's gains move the jaw."""
    from ksdiff.data.synth.mouth import build_segments
    from ksdiff.data.synth.visemes import CLOSE_SHARE, CLOSE_SHARE_OTHER

    wave = (0.1 * np.sin(np.arange(16000) * 0.05)).astype(np.float32)
    phones = [("_", 0.0, 0.2), ("'0:", 0.2, 0.45), ("m", 0.45, 0.55), ("'u:", 0.55, 0.8), ("_", 0.8, 1.0)]
    k = {n: i for i, n in enumerate(TARGET_KEYS)}
    for table in ("calibrated", "hand"):
        segs = build_segments(np.random.default_rng(0), phones, wave, 16000, DEFAULT_VOICES[0],
                              SynthConfig(visemes=table))
        if table == "calibrated":
            for sg in segs:
                share = CLOSE_SHARE.get(sg.viseme, CLOSE_SHARE_OTHER)
                assert sg.target[k["close"]] == pytest.approx(share * sg.target[k["jaw"]])
        else:  # the hand-set table keeps its own weights
            assert any(sg.target[k["close"]] > sg.target[k["jaw"]] for sg in segs)


def test_nod_and_brow_follow_the_accent():
    cfg = SynthConfig(drift_std=(0.0, 0.0, 0.0), trans_std=(0.0, 0.0, 0.0), brow_drift=0.0)
    fps = 25.0
    times = np.arange(100) / fps
    ch, ev = head_and_face(np.random.default_rng(0), times, fps, [("_", 0.0, 4.0)], [(1.5, 1.0)],
                           DEFAULT_VOICES[0], cfg)
    rx = ch["headRotX"]
    assert abs(times[np.argmax(rx)] - (1.5 + cfg.nod_lag)) <= 1 / fps
    assert 0.7 * cfg.nod_amp <= rx.max() <= 1.3 * cfg.nod_amp and abs(rx[0]) < 1e-6  # chin down, then back
    assert ev["brow_raises"] == [1.5] and abs(times[np.argmax(ch["browInnerUp"])] - 1.5) <= 1 / fps
    assert np.abs(ch["headTy"]).max() > 0  # rotation about the neck pivot moves the head


def test_find_accents_and_blinks():
    cfg = SynthConfig()
    t = np.arange(0, 3, 0.005)
    f0 = np.full_like(t, 120.0)
    f0[(t > 1.0) & (t < 1.2)] = 160.0  # +5 semitones on the stressed vowel
    f0[(t > 2.0) & (t < 2.2)] = 125.0  # +0.7 semitones: below the threshold
    phones = [("_", 0, 0.9), ("'a", 0.95, 1.25), ("t", 1.25, 1.4), ("'E", 1.95, 2.25), ("_", 2.25, 3)]
    acc = find_accents(phones, f0, t, cfg)
    assert len(acc) == 1 and 1.0 < acc[0][0] < 1.2 and acc[0][1] == 1.0
    rng = np.random.default_rng(0)
    onsets = blink_times(rng, 600.0, [("_", 0, 600.0)], DEFAULT_VOICES[0], cfg)
    assert 12 <= len(onsets) / 10 <= 22  # ~17 per minute
    assert min(np.diff(onsets)) >= cfg.blink_min_gap


def test_band_power_and_text():
    fps = 25.0
    t = np.arange(500) / fps
    lo, hi = band_power(np.sin(2 * np.pi * 0.5 * t)[:, None], fps, 2.0)
    assert lo / (lo + hi) > 0.99
    lo, hi = band_power(np.sin(2 * np.pi * 5.0 * t)[:, None], fps, 2.0)
    assert hi / (lo + hi) > 0.99
    words = set(ranked_words())
    s1 = make_sentence(np.random.default_rng(3), 3)
    assert s1 == make_sentence(np.random.default_rng(3), 3)
    for w in s1.lower().replace(",", " ").replace(".", " ").replace("?", " ").split():
        assert w in words, w


def test_neural_voice_corpus_is_deterministic_and_closes_bilabials(tmp_path):
    """The Piper voice (optional extra `ksdiff[voice]`, installed by `make`): the same seed gives the same samples,
    phone timings come from forced alignment, and a small corpus of its clips passes the corpus checks."""
    pytest.importorskip("piper", reason="install ksdiff[voice]")
    text = "Peter bought my map, and we walked home."
    u = synthesize(text, voice="piper:en_US-joe-medium", rate=165, seed=3)
    again = synthesize(text, voice="piper:en_US-joe-medium", rate=165, seed=3)
    other = synthesize(text, voice="piper:en_US-joe-medium", rate=165, seed=4)
    assert np.array_equal(u.wave, again.wave) and not np.array_equal(u.wave[:len(other.wave)], other.wave[:len(u.wave)])
    assert u.source == "pocketsphinx-align" and 1.5 < u.duration < 4.0
    assert [w for w, _, _ in u.words] == ["peter", "bought", "my", "map", "and", "we", "walked", "home"]
    assert sum(p.lstrip("'") in ("p", "b", "m") for p, _, _ in u.phones) >= 5
    slower = synthesize(text, voice="piper:en_US-joe-medium", rate=120, seed=3)
    assert slower.duration > 1.15 * u.duration
    out = tmp_path / "neural"
    assert main(["synth", "--out", str(out), "--minutes", "0.15", "--seed", "0", "--voices", "joe_n1", "joe_n2",
                 "--quiet"]) == 0
    rep = corpus_report(out)
    assert rep["clips"] >= 2 and rep["bilabials"] >= 5
    assert rep["bilabial_closure"] >= 0.9 and rep["jaw_envelope_r"] > 0.4
    with pytest.raises(KsdiffError):
        synthesize(text, voice="piper:no-such-voice")


def test_pseudo_clips_from_real_speech(shared, tmp_path, capsys):
    """`ksdiff synth --from-speech`: real recordings (transcripts from the folder's transcripts.tsv or a file's own
    .txt) forced-aligned, with the corpus's motion model as targets; the listening-free checks hold; a folder
    without usable audio is a one-line error."""
    from ksdiff.data.synth.pseudo import find_recordings, style_for

    src = shared / "data" / "speech_extra" / "cmu_arctic"
    found = list(find_recordings([src]))
    assert len(found) == 6 and all(t for _, t, _ in found) and {s for _, _, s in found} == {"aew", "axb"}
    out = tmp_path / "pseudo"
    assert main(["synth", "--from-speech", str(src), "--out", str(out), "--quiet"]) == 0
    assert check_dataset(out) == []
    ds = open_dataset(out)
    clips = list(ds.clips())
    assert len(clips) == 6
    meta = clips[0].meta()
    assert meta["source"] == "pseudo" and meta["speaker"] in ("aew", "axb") and meta["transcript_source"] == "given"
    assert style_for("aew") == style_for("aew") and style_for("aew").name == "aew"
    rep = corpus_report(out)
    assert rep["bilabials"] >= 8 and rep["bilabial_closure"] >= 0.9  # the aligned /p b m/ close the mouth
    assert rep["jaw_envelope_r"] > 0.4  # and the jaw follows the real voice's envelope
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["synth", "--from-speech", str(empty), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "no audio files" in capsys.readouterr().err


def test_calibration_recovers_known_targets_and_reaches_the_reference_amplitude(corpus):
    """Motion made by the viseme model from a known table over real espeak speech: the fit finds the table back,
    the calibrated table keeps what the data cannot measure, and its amplitude is the reference asked for."""
    from ksdiff.data.synth.calibrate import CLASSES, calibrate_table, clip_design, fit_targets, predict
    from ksdiff.data.synth.visemes import CALIBRATED_TARGETS, TARGETS

    cfg = SynthConfig()
    ds = open_dataset(corpus[0])
    truth = {c: {k: 0.5 * v for k, v in TARGETS[c].items()} for c in CLASSES}
    designs = []
    for clip in ds.clips():
        phones = json.loads((clip.root / "phones.json").read_text())["phones"]
        m = clip.motion()
        d = clip_design(clip.id, clip.audio(), 16000, [(p["espeak"], p["start"], p["end"]) for p in phones],
                        m.coeffs, m.channels,
                        m.fps, cfg, observed=set(m.channels) - {"tongueOut"})
        for k, key in enumerate(TARGET_KEYS):  # replace the clip's motion by the known table's
            d.motion[:, k] = d.design[k] @ np.array([truth[c].get(key, 0.0) for c in CLASSES])
        designs.append(d)
    fit = fit_targets(designs)
    assert "tongue" not in fit.r2 and fit.r2["jaw"] > 0.999
    for c in ("PBM", "AA", "UW", "IY"):
        if fit.support[c] > 20:
            assert fit.targets[c]["jaw"] == pytest.approx(truth[c].get("jaw", 0.0), abs=0.01)
    table, how = calibrate_table(designs, TARGETS, {"jaw": (0.05, "test")})
    assert how["jaw"].reference_std == 0.05 and how["jaw"].reference == "test"
    assert predict(designs, table, "jaw").std() == pytest.approx(0.05, rel=1e-6)
    assert table["SIL"] == TARGETS["SIL"] and table["TH"]["tongue"] == TARGETS["TH"]["tongue"]
    assert set(CALIBRATED_TARGETS) == set(TARGETS)
    with pytest.raises(KsdiffError, match="unknown viseme table"):
        SynthConfig(visemes="nope").validate()
