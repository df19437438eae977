"""Streaming (`ksdiff stream`): Live Link Face UDP packets, keyframe decoding with a known prefix, the stream engine
against offline generation, the WebSocket hub both ways, dropping frames when behind. Real speech, the shipped
model."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

import ksdiff
from ksdiff.audio.features import load_speech
from ksdiff.errors import KsdiffError
from ksdiff.export.livelink import (PACKET_COLUMNS, VALUE_COLUMNS, decode_packet, encode_packet,
                                    livelink_values)
from ksdiff.stream import Recorder, StreamAnimator, WebSocketHub, file_chunks, run_stream


@pytest.fixture(scope="module")
def animator():
    return ksdiff.load_model()


@pytest.fixture(scope="module")
def clip(speech_dir):
    return load_speech(speech_dir / "harvard_birch_canoe.wav")


def test_packet_layout_and_round_trip():
    v = np.linspace(0, 0.6, 61)
    pkt = encode_packet(v, "ksdiff", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", 123456, 0.25, 25)
    # version byte, then big-endian length-prefixed device id and subject
    assert pkt[0] == 6
    assert struct.unpack("!i", pkt[1:5])[0] == 36
    pos = 5 + 36
    assert struct.unpack("!i", pkt[pos:pos + 4])[0] == 6 and pkt[pos + 4:pos + 10] == b"ksdiff"
    frame, sub, num, den = struct.unpack("!ifii", pkt[pos + 10:pos + 26])
    assert (frame, sub, num, den) == (123456, 0.25, 25, 1)
    assert pkt[pos + 26] == 61 and len(pkt) == pos + 27 + 61 * 4
    # Unreal's order: JawLeft before JawRight (the CSV has them the other way round)
    raw = struct.unpack("!61f", pkt[pos + 27:])
    assert raw[PACKET_COLUMNS.index("JawLeft")] == pytest.approx(v[VALUE_COLUMNS.index("JawLeft")], abs=1e-6)
    assert PACKET_COLUMNS.index("JawLeft") == 15 and VALUE_COLUMNS.index("JawLeft") == 16
    d = decode_packet(pkt)
    assert d["subject"] == "ksdiff" and d["fps"] == 25 and d["frame"] == 123456
    np.testing.assert_allclose(d["values"], v, atol=1e-6)
    with pytest.raises(KsdiffError):
        decode_packet(pkt[:-5])
    with pytest.raises(KsdiffError):
        encode_packet(v[:60], "s", "d", 0)


def test_keyframe_prefix_decoding_continues_the_full_decode(animator, clip):
    """Feeding the first P decoded keyframes as a prefix and decoding the rest gives the full decode's bits."""
    a = animator
    sf = a.speech_features(clip[:16000 * 4], text="")
    T = 100
    batch = a._batch(sf, 0, T, T, None, a._style(None))
    with torch.no_grad():
        full = a.model.encode_condition(batch, T)["keyframes"]
        assert full.sum() > 0
        for P in (1, 37, 99):
            cont = a.model.encode_condition(batch, T, keyframe_prefix=full[:, :P])["keyframes"]
            assert torch.equal(cont, full), P


def test_stream_matches_offline_generation(animator, clip):
    eng = StreamAnimator(animator, hop_s=0.2, lookahead_s=0.12)
    rec = Recorder(animator.spec.dim)
    stats = run_stream(eng, file_chunks(clip, realtime=False), [rec], realtime=False)
    T = int(round(len(clip) / 16000 * animator.fps))
    assert stats.frames_sent == T and stats.frames_dropped == 0
    streamed = rec.coeffs(T)
    offline = animator.animate(clip, text="").coeffs
    j = animator.spec.channels.index("jawOpen")
    assert np.isfinite(streamed).all()
    assert np.corrcoef(streamed[:, j], offline[:, j])[0, 1] > 0.8
    assert 0.6 < streamed[:, j].std() / offline[:, j].std() < 1.5
    mouth = [i for i, n in enumerate(animator.spec.channels) if n.startswith(("mouth", "jaw"))]
    assert np.abs(streamed[:, mouth] - offline[:, mouth]).mean() < 0.02


def test_behind_real_time_skips_and_counts(animator, clip):
    eng = StreamAnimator(animator, hop_s=0.2, lookahead_s=0.1, steps=4)
    eng.push(clip[:16000])
    first = eng.step()
    assert first.start == 0 and len(first.coeffs) == eng.hop
    eng.push(clip[16000:16000 * 3])  # two seconds arrive at once: far behind
    assert eng.backlog_s() > 1.0
    skipped = eng.skip_to_present()
    assert skipped > 0 and eng.backlog_s() == 0 and eng.ready()
    nxt = eng.step()
    assert nxt.start == eng.hop + skipped and np.isfinite(nxt.coeffs).all()


def test_stream_cli_sends_livelink_packets(animator, clip, speech_dir, tmp_path):
    """`ksdiff stream --input F --livelink 127.0.0.1:PORT` at real-time pace: every frame arrives as a Live Link
    Face packet with the subject, 61 values laid out as the app does, equal to the recording and close to offline
    generation."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(60)
    port = rx.getsockname()[1]
    got: list[dict] = []

    def receive() -> None:
        try:
            while True:
                got.append(decode_packet(rx.recvfrom(4096)[0]))
        except (socket.timeout, OSError):
            pass

    th = threading.Thread(target=receive, daemon=True)
    th.start()
    out = tmp_path / "streamed.npz"
    stats = tmp_path / "stats.json"
    # generous latency limits: this checks delivery, not speed (a loaded CI machine must not drop frames)
    cmd = [sys.executable, "-m", "ksdiff", "stream", "--input", str(speech_dir / "harvard_birch_canoe.wav"),
           "--livelink", f"127.0.0.1:{port}", "--subject", "TestFace", "--out", str(out), "--stats", str(stats),
           "--max-latency", "60", "--max-backlog", "60"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rx.settimeout(2)
    th.join(timeout=10)
    rx.close()
    T = int(round(len(clip) / 16000 * animator.fps))
    assert len(got) == T, (len(got), T, r.stdout)
    assert {p["subject"] for p in got} == {"TestFace"} and {p["fps"] for p in got} == {25}
    frames = [p["frame"] + p["subframe"] for p in got]
    assert np.all(np.diff(frames) > 0)  # in order, one frame time each
    vals = np.stack([p["values"] for p in got])  # (T, 61) in CSV order
    assert vals[:, :52].min() >= 0 and vals[:, :52].max() <= 1  # blendshapes
    assert np.abs(vals[:, 52:55]).max() < 0.6  # head yaw/pitch/roll in radians
    assert np.all(vals[:, 55:] == 0)  # eye angles: the spec has none
    rec = np.load(out)["coeffs"]
    np.testing.assert_allclose(vals, livelink_values(rec), atol=1e-5)
    s = json.loads(stats.read_text())
    assert s["frames_sent"] == T and s["frames_dropped"] == 0 and s["latency_p50_s"] > 0
    offline = livelink_values(animator.animate(clip, text="").coeffs)
    j = VALUE_COLUMNS.index("JawOpen")
    assert np.corrcoef(vals[:, j], offline[:, j])[0, 1] > 0.8


def test_websocket_audio_in_frames_out(animator, clip):
    """A WebSocket client sends 48 kHz int16 audio and receives one JSON frame per motion frame."""
    from websockets.sync.client import connect
    import soxr

    hub = WebSocketHub("127.0.0.1", 0, animator.spec.channels)
    eng = StreamAnimator(animator, steps=4)
    seconds = 3.0
    result: dict = {}
    th = threading.Thread(target=lambda: result.update(stats=run_stream(eng, hub.audio_chunks(), [hub],
                                                                        realtime=False)), daemon=True)
    th.start()
    wave48 = soxr.resample(clip[:int(seconds * 16000)], 16000, 48000)
    frames = []
    with connect(f"ws://127.0.0.1:{hub.port}") as ws:
        ws.send(json.dumps({"sample_rate": 48000, "format": "s16"}))
        pcm = (np.clip(wave48, -1, 1) * 32767).astype("<i2")
        for i in range(0, len(pcm), 4800):
            ws.send(pcm[i:i + 4800].tobytes())
        # frames arrive while we send; the engine finishes when we close our side
        ws.close_timeout = 1
        recv = threading.Thread(target=lambda: frames.extend(_drain(ws)), daemon=True)
        recv.start()
        recv.join(timeout=30)
    th.join(timeout=60)
    assert "stats" in result
    T = int(round(seconds * animator.fps))
    assert abs(result["stats"].frames_sent - T) <= 1
    assert len(frames) >= T - eng.hop - eng.lookahead  # the last frames are made after the client left
    f = frames[10]
    assert set(f) >= {"frame", "t", "time", "blendshapes", "head"} and len(f["blendshapes"]) == 52
    assert 0 <= f["blendshapes"]["jawOpen"] <= 1 and set(f["head"]) == {"yaw", "pitch", "roll"}


def _drain(ws) -> list[dict]:
    """Frames received until the stream has produced everything it can while we are still connected."""
    out = []
    try:
        while True:
            out.append(json.loads(ws.recv(timeout=5)))
    except Exception:
        pass
    return out


def _streamed(animator, clip, **kw) -> np.ndarray:
    eng = StreamAnimator(animator, hop_s=0.2, lookahead_s=0.12, **kw)
    rec = Recorder(animator.spec.dim)
    run_stream(eng, file_chunks(clip, realtime=False), [rec], realtime=False)
    return rec.coeffs(int(round(len(clip) / 16000 * animator.fps)))


def test_stream_with_a_reference_moves_to_the_persons_face(animator, clip, speech_dir, tmp_path):
    """A reference clip of a person who smiles more than the model does: the stream moves its whole output by one
    shift to that face (as offline generation with the same reference does), computed once before it starts from the
    reference's own audio, or, without audio (a Live Link CSV, `ksdiff stream --style-from`), from the style's
    typical face."""
    from ksdiff.face.motion import Motion

    ref_wave = load_speech(speech_dir / "arctic_a0009.wav")
    own = animator.animate(ref_wave, text="", seed=1)
    smile = [animator.spec.channels.index(c) for c in ("mouthSmileLeft", "mouthSmileRight")]
    c = own.coeffs.copy()
    c[:, smile] = np.clip(c[:, smile] + 0.4, 0, 1)
    ref = Motion(c, own.channels, own.fps, own.spec)
    plain = _streamed(animator, clip)
    with_ref = _streamed(animator, clip, reference=ref, reference_audio=ref_wave)
    offline = animator.animate(clip, text="", reference=ref, reference_audio=ref_wave).coeffs
    lift = np.median(with_ref[:, smile]) - np.median(plain[:, smile])
    assert lift > 0.1, lift  # half of +0.4 (the reference's weight 0.5), give or take the model's own answer
    assert abs(np.median(with_ref[:, smile]) - np.median(offline[:, smile])) < 0.05
    bounded = animator.spec.index(animator.spec.bounded)
    assert np.isfinite(with_ref).all() and with_ref[:, bounded].min() >= 0 and with_ref[:, bounded].max() <= 1
    off = _streamed(animator, clip, reference=ref, reference_audio=ref_wave, anchor=False)
    assert abs(np.median(off[:, smile]) - np.median(plain[:, smile])) < lift / 2  # the encoder alone barely moves
    # the CLI, a motion file without audio: the style's typical face stands in for the output's median
    ref.save(tmp_path / "me.npz")
    out = tmp_path / "streamed.npz"
    r = subprocess.run([sys.executable, "-m", "ksdiff", "stream", "--input",
                        str(speech_dir / "harvard_birch_canoe.wav"), "--fast", "--style-from", str(tmp_path / "me.npz"),
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    cli = np.load(out)["coeffs"]
    assert np.median(cli[:, smile]) - np.median(plain[:, smile]) > 0.1
