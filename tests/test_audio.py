"""Audio front-end on real speech: decoding of every format, prosody, tokens, transcripts, the feature cache."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.decode import SAMPLE_RATE, load_audio, write_wav
from ksdiff.audio.envelope import pearson, speech_envelope
from ksdiff.errors import KsdiffError

SPEECH_EXT = (".wav", ".flac")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^a-z' ]+", " ", text.lower()).split())


# ---------------------------------------------------------------------------------------------- decoding


def test_every_shared_speech_clip_decodes(speech_dir: Path):
    files = sorted(p for p in speech_dir.iterdir() if p.suffix in SPEECH_EXT)
    assert len(files) >= 15
    for p in files:
        w = load_audio(p)
        assert w.dtype == np.float32 and w.ndim == 1, p
        assert len(w) > 0.5 * SAMPLE_RATE, p
        assert 0.0 < float(w.std()) < 1.0, p
        assert float(np.abs(w).max()) <= 1.0 + 1e-4, p


def _encode(src: np.ndarray, src_sr: int, path: Path, codec: str, rate: int, channels: int, fmt: str | None = None):
    """Encode a mono float wave (at src_sr) into ``path`` with PyAV at ``rate`` Hz and ``channels`` channels."""
    import av
    import soxr

    x = soxr.resample(src, src_sr, rate).astype(np.float32) if rate != src_sr else src.astype(np.float32)
    if channels == 2:  # a real stereo image: the right channel slightly quieter and delayed by 1 ms
        d = rate // 1000
        x2 = np.stack([x, 0.8 * np.concatenate([np.zeros(d, np.float32), x[:-d]])])
    else:
        x2 = x[None]
    layout = "stereo" if channels == 2 else "mono"
    with av.open(str(path), "w", format=fmt) as out:
        st = out.add_stream(codec, rate=rate, layout=layout)
        fmt_name = st.codec_context.codec.audio_formats[0].name
        frame_size = st.codec_context.frame_size or 1024
        for i in range(0, x2.shape[1], frame_size):
            chunk = np.ascontiguousarray(x2[:, i:i + frame_size])
            frame = av.AudioFrame.from_ndarray(chunk.T.reshape(1, -1) if not fmt_name.endswith("p") else chunk,
                                               format="flt" if not fmt_name.endswith("p") else "fltp", layout=layout)
            frame.sample_rate = rate
            if fmt_name not in ("flt", "fltp"):
                frame = av.AudioResampler(format=fmt_name, layout=layout, rate=rate).resample(frame)[0]
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)


@pytest.mark.parametrize("name,codec,rate,channels,fmt", [
    ("a.mp3", "libmp3lame", 44100, 2, None),
    ("a.m4a", "aac", 48000, 2, "ipod"),
    ("a.aac", "aac", 22050, 1, "adts"),
    ("a.aiff", "pcm_s16be", 8000, 1, "aiff"),
    ("a.ogg", "libopus", 48000, 2, "ogg"),
    ("a.flac", "flac", 32000, 2, None),
    ("a.wav", "pcm_s16le", 11025, 2, None),
])
def test_decode_formats_rates_and_stereo(tmp_path: Path, speech_dir: Path, name, codec, rate, channels, fmt):
    ref = load_audio(speech_dir / "arctic_a0009.wav")
    path = tmp_path / name
    _encode(ref, SAMPLE_RATE, path, codec, rate, channels, fmt)
    w = load_audio(path)
    assert w.dtype == np.float32 and w.ndim == 1
    # codecs add priming/padding: length within 0.1 s, and the loudness contour is the same speech
    assert abs(len(w) - len(ref)) < 0.1 * SAMPLE_RATE, (name, len(w), len(ref))
    # the same speech, up to the codec's priming delay (at most 0.1 s)
    e_ref, e_w = speech_envelope(ref, 100), speech_envelope(w, 100)
    n = min(len(e_ref), len(e_w)) - 10
    r = max(pearson(e_ref[:n], e_w[lag:lag + n]) for lag in range(0, 11))
    assert r > 0.95, (name, r)


def test_decode_errors_are_one_line(tmp_path: Path):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    text = tmp_path / "notes.mp3"
    text.write_text("this is not audio\n" * 50)
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
    silent = tmp_path / "silent.wav"
    write_wav(silent, np.zeros(16000, np.float32))
    zero_bytes = tmp_path / "zero.flac"
    zero_bytes.write_bytes(b"")
    for p, what in [(bad, "not readable"), (text, "not readable"), (empty, "empty"), (silent, "silent"),
                    (zero_bytes, ""), (tmp_path / "missing.wav", "not found")]:
        with pytest.raises(KsdiffError) as e:
            load_audio(p)
        msg = str(e.value)
        assert "\n" not in msg and str(p) in msg and what in msg, msg
    assert len(load_audio(silent, allow_silent=True)) == 16000


def test_cli_decode_error_exit_code(tmp_path: Path, capsys):
    from ksdiff.cli import main

    p = tmp_path / "x.wav"
    p.write_bytes(b"RIFF0000WAVEjunk")
    assert main(["features", str(p), "--encoder", "mel", "--no-transcribe", "--tokens", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ksdiff: ") and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------------- prosody


def test_prosody_normalisation_and_pitch(speech_dir: Path):
    from ksdiff.audio.prosody import compute_prosody, extract_prosody

    w = load_audio(speech_dir / "arctic_a0009.wav")  # CMU ARCTIC slt: a female voice
    n = int(round(len(w) / SAMPLE_RATE * 50))
    raw = extract_prosody(w)
    assert raw.f0.shape == (n,) and raw.energy_db.shape == (n,)
    assert 0.3 < raw.voiced_fraction < 0.9
    assert 150.0 < raw.f0_median < 260.0
    p = compute_prosody(w)
    assert p.shape == (n, 2) and p.dtype == np.float32
    v = raw.f0 > 0
    assert np.all(p[~v, 0] == 0.0)
    assert abs(p[v, 0].mean()) < 1e-4 and abs(p[v, 0].std() - 1.0) < 1e-3
    assert abs(p[:, 1].mean()) < 1e-4 and abs(p[:, 1].std() - 1.0) < 1e-3
    # energy follows the waveform: louder frames have higher z-scores
    env = speech_envelope(w, 50, n)
    assert pearson(env, p[:, 1]) > 0.6
    # a pure 120 Hz harmonic tone is voiced at 120 Hz
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = sum(0.2 / k * np.sin(2 * np.pi * 120 * k * t) for k in range(1, 6)).astype(np.float32)
    r = extract_prosody(tone)
    assert r.voiced_fraction > 0.8 and abs(r.f0_median - 120.0) < 2.0
    # custom length follows the encoder's N'
    assert compute_prosody(w, num_frames=n + 1).shape == (n + 1, 2)


# ---------------------------------------------------------------------------------------------- tokens


def test_char_tokens_fixed_vocabulary():
    from ksdiff.audio.tokens import (
        CHAR_VOCAB,
        SPACE,
        UNK,
        VOCAB_SIZE_CHARS,
        text_to_tokens,
        tokens_to_text,
    )

    assert VOCAB_SIZE_CHARS == 48 and CHAR_VOCAB[3] == "a" and CHAR_VOCAB[29] == "0"
    ids = text_to_tokens("Ab  c", "chars")
    assert ids.tolist() == [3, 4, SPACE, 5] and ids.dtype == np.int64
    ids = text_to_tokens("Café — naïve 42!", "chars")
    assert tokens_to_text(ids, "chars") == "cafe <unk> naive 42!"
    assert (ids > 0).all() and (ids < VOCAB_SIZE_CHARS).all() and UNK in ids
    assert len(text_to_tokens("", "chars")) == 0 and len(text_to_tokens("hello", "none")) == 0
    with pytest.raises(KsdiffError):
        text_to_tokens("x", "bytes")


def test_phoneme_tokens():
    pytest.importorskip("phonemizer")
    from ksdiff.audio.tokens import (
        PHONEME_VOCAB,
        SPACE,
        UNK,
        VOCAB_SIZE_PHONEMES,
        text_to_tokens,
        tokens_to_text,
    )

    ids = text_to_tokens("Judge the church thing!", "phonemes")
    assert ids.dtype == np.int64 and (ids > 0).all() and (ids < VOCAB_SIZE_PHONEMES).all()
    assert UNK not in ids and (ids == SPACE).sum() == 3
    syms = tokens_to_text(ids, "phonemes").split()
    for ph in ("dʒ", "tʃ", "θ", "ŋ", "ð"):
        assert ph in syms, (ph, syms)
    assert PHONEME_VOCAB.index("dʒ") == [i for i, s in enumerate(PHONEME_VOCAB) if s == "dʒ"][0]
    # stable across calls; other languages map onto the same table
    assert np.array_equal(ids, text_to_tokens("judge the church thing", "phonemes"))
    de = text_to_tokens("Guten Tag, wie geht es Ihnen", "phonemes", language="de")
    assert len(de) > 10 and (de == UNK).sum() == 0


# ---------------------------------------------------------------------------------------------- transcript


def test_transcript_jfk(speech_dir: Path):
    from ksdiff.audio.transcript import transcribe

    w = load_audio(speech_dir / "jfk.flac")
    tr = transcribe(w)
    assert "ask not what your country can do for you" in _norm(tr.text)
    assert len(tr.words) >= 20
    starts = [s for _, s, _ in tr.words]
    assert starts == sorted(starts) and all(s <= e for _, s, e in tr.words)
    assert 0.0 <= starts[0] < 1.0 and tr.words[-1][2] <= len(w) / SAMPLE_RATE + 0.5
    country = [(s, e) for word, s, e in tr.words if _norm(word) == "country"]
    assert len(country) == 2 and country[0][0] < country[1][0]


def test_shared_transcript_reads_the_feature_encoder_windows(speech_dir: Path):
    """The transcript generation uses (greedy, from the speech encoder's own Whisper windows): the words of real
    speech over several 30 s windows, each word once, in order, with times inside the audio."""
    from ksdiff.audio.encoders import get_encoder
    from ksdiff.audio.features import compute_features

    rows = dict(line.split("\t")[:2] for line in (speech_dir / "transcripts.tsv").read_text().splitlines()[1:])
    names = ["jfk.flac", "arctic_a0007.wav", "arctic_a0009.wav", "harvard_birch_canoe.wav"] * 2
    wave = np.concatenate([load_audio(speech_dir / n) for n in names])
    assert len(wave) / SAMPLE_RATE > 35  # two encoder windows at least
    enc = get_encoder("whisper-tiny", compute_type="int8")
    assert len(enc.window_starts(len(wave))) >= 2
    sf = compute_features(wave, enc, tokens="chars", transcriber="shared")
    ref = _norm(" ".join(rows[n] for n in names)).split()
    hyp = _norm(sf.text).split()
    errors = _edit_distance(ref, hyp)
    assert errors <= 0.1 * len(ref), (errors, len(ref), sf.text)
    starts = [s for _, s, _ in sf.words]
    assert starts == sorted(starts) and all(s <= e for _, s, e in sf.words)
    assert starts[0] >= 0 and sf.words[-1][2] <= len(wave) / SAMPLE_RATE + 0.5
    assert sum(_norm(w) == "country" for w, _, _ in sf.words) == 4  # twice per jfk, none lost or doubled
    assert sf.info["time_transcript"] > 0


def _edit_distance(a: list[str], b: list[str]) -> int:
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[-1]


# ---------------------------------------------------------------------------------------------- features + cache


def test_compute_features_mel_chars(speech_dir: Path):
    from ksdiff.audio.features import compute_features

    w = load_audio(speech_dir / "harvard_birch_canoe.wav")
    text = "The birch canoe slid on the smooth planks."
    sf = compute_features(w, "mel", text=text, tokens="chars")
    n = int(round(len(w) / SAMPLE_RATE * 50))
    assert sf.feats.shape == (n, 80) and sf.prosody.shape == (n, 2) and sf.rate == 50.0
    assert sf.encoder == "mel" and sf.text == text and sf.words == []
    assert len(sf.tokens) == len(text) and sf.tokens.min() > 0
    assert np.isfinite(sf.feats).all()
    assert sf.info["seconds"] == pytest.approx(len(w) / SAMPLE_RATE)


def _dummy_arkit_motion(w: np.ndarray, fps: float = 25.0):
    """A valid arkit motion driven by the real speech: jaw follows the envelope, the head sways."""
    from ksdiff.face.motion import Motion
    from ksdiff.face.specs import get_spec

    spec = get_spec("arkit")
    t_frames = int(round(len(w) / SAMPLE_RATE * fps))
    env = speech_envelope(w, fps, t_frames)
    coeffs = np.zeros((t_frames, len(spec.channels)), np.float32)
    ch = list(spec.channels)
    coeffs[:, ch.index("jawOpen")] = np.clip(env / (env.max() + 1e-9), 0, 1)
    tt = np.arange(t_frames) / fps
    coeffs[:, ch.index("headRotX")] = 0.05 * np.sin(2 * np.pi * 0.7 * tt)
    coeffs[:, ch.index("headRotY")] = 0.08 * np.sin(2 * np.pi * 0.3 * tt + 1.0)
    return Motion(coeffs, spec.channels, fps, "arkit")


@pytest.fixture()
def small_dataset(tmp_path: Path, speech_dir: Path) -> Path:
    from ksdiff.data.dataset import DatasetWriter

    root = tmp_path / "ds"
    texts = {"arctic_a0009": "He turned sharply, and faced Gregson across the table.",
             "one_two_three": None,  # no transcript: the automatic one is used
             "harvard_birch_canoe": "The birch canoe slid on the smooth planks."}
    with DatasetWriter(root, spec="arkit", fps=25) as wr:
        for cid, text in texts.items():
            w = load_audio(speech_dir / f"{cid}.wav")
            wr.add_clip(cid, w, _dummy_arkit_motion(w), transcript=text)
        wr.set_splits({"train": ["arctic_a0009", "one_two_three"], "val": ["harvard_birch_canoe"], "test": []})
    return root


def test_prepare_is_resumable_and_skips_cached(small_dataset: Path, capsys):
    from ksdiff.cli import main
    from ksdiff.data.features import (
        cache_dir,
        cache_key,
        load_clip_features,
        prepare_dataset,
    )

    args = ["prepare", str(small_dataset), "--encoder", "mel", "--tokens", "chars", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 computed, 0 already cached" in out
    key = cache_key("mel", tokens="chars")
    cdir = cache_dir(small_dataset, key)
    files = {p.stem: p for p in cdir.glob("*.npz")}
    assert set(files) == {"arctic_a0009", "one_two_three", "harvard_birch_canoe"}
    assert json.loads((cdir / "settings.json").read_text())["tokens"] == "chars"
    assert not list(cdir.glob(".*tmp*"))
    mtimes = {k: p.stat().st_mtime_ns for k, p in files.items()}

    sf = load_clip_features(small_dataset, "one_two_three", "mel", tokens="chars")
    assert _norm(sf.text) == "one two three" and len(sf.words) == 3  # automatic transcript, cached
    assert sf.keyframes is not None and sf.keyframes.shape == (int(round(sf.info["seconds"] * 25)), 2)
    assert sf.keyframes.dtype == np.uint8 and sf.keyframes.sum() > 0
    sf2 = load_clip_features(small_dataset, "arctic_a0009", "mel", tokens="chars")
    assert sf2.text.startswith("He turned") and sf2.feats.shape[1] == 80

    # second run: everything cached, nothing rewritten
    s = prepare_dataset(small_dataset, encoder="mel", tokens="chars", progress=False)
    assert (s["computed"], s["skipped"]) == (0, 3)
    assert {k: p.stat().st_mtime_ns for k, p in files.items()} == mtimes

    # interrupted run (a file lost), a corrupt file and an edited transcript: only those are recomputed
    files["harvard_birch_canoe"].unlink()
    files["arctic_a0009"].write_bytes(b"PK\x03\x04 truncated")
    (small_dataset / "one_two_three" / "transcript.txt").write_text("one two three four\n")
    s = prepare_dataset(small_dataset, encoder="mel", tokens="chars", progress=False)
    assert (s["computed"], s["skipped"]) == (3, 0)
    s = prepare_dataset(small_dataset, encoder="mel", tokens="chars", progress=False)
    assert (s["computed"], s["skipped"]) == (0, 3)
    assert load_clip_features(small_dataset, "one_two_three", "mel", tokens="chars").text == "one two three four"
    ok = load_clip_features(small_dataset, "arctic_a0009", "mel", tokens="chars")
    assert np.array_equal(ok.feats, sf2.feats) and np.array_equal(ok.prosody, sf2.prosody)

    # other settings live under another key; load_clip_features computes and caches on demand
    s = prepare_dataset(small_dataset, encoder="mel", tokens="none", transcribe=False, split="val", progress=False)
    assert s["key"] != key and (s["computed"], s["clips"]) == (1, 1)
    assert len(load_clip_features(small_dataset, "harvard_birch_canoe", "mel", tokens="none",
                                  transcribe=False).tokens) == 0


def test_prepare_errors(tmp_path: Path, small_dataset: Path, capsys):
    from ksdiff.cli import main

    assert main(["prepare", str(tmp_path / "nope"), "--encoder", "mel", "--quiet"]) == 2
    assert main(["prepare", str(small_dataset), "--encoder", "wav2vec9", "--quiet"]) == 2
    assert main(["prepare", str(small_dataset), "--encoder", f"hf:{tmp_path}", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(e.startswith("ksdiff: ") for e in err)
    assert not (small_dataset / ".cache").exists()


def test_features_cli_summary(speech_dir: Path, capsys, tmp_path: Path):
    from ksdiff.audio.features import load_features
    from ksdiff.cli import main

    out_npz = tmp_path / "f.npz"
    assert main(["features", str(speech_dir / "arctic_a0009.wav"), "--encoder", "mel", "--tokens", "chars",
                 "--text", "He turned sharply, and faced Gregson across the table.", "--save", str(out_npz)]) == 0
    out = capsys.readouterr().out
    assert "155 frames x 80 at 50 Hz" in out and "voiced" in out and "f0 median" in out
    assert "tokens     54 chars" in out and "seconds" in out
    sf = load_features(out_npz)
    assert sf.feats.shape == (155, 80) and sf.text.startswith("He turned")
