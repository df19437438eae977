"""Streaming decode: the same samples as a one-shot decode, memory near the size of the 16 kHz result, and
``max_seconds`` refusing long audio from the container's header or, when the header lies, while decoding."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.decode import SAMPLE_RATE, load_audio
from ksdiff.errors import KsdiffError


def _crc(data: bytes, poly: int, bits: int) -> int:
    """FLAC's CRC-8 (poly 0x07) / CRC-16 (poly 0x8005): MSB first, initial value 0."""
    top, mask, c = 1 << (bits - 1), (1 << bits) - 1, 0
    for b in data:
        c ^= b << (bits - 8)
        for _ in range(8):
            c = ((c << 1) ^ poly) & mask if c & top else (c << 1) & mask
    return c


def silent_flac(path: Path, seconds: float, declared_samples: int | None = None, rate: int = 48_000,
                block: int = 16_384) -> Path:
    """Write ``seconds`` of 16-bit stereo silence at ``rate`` as FLAC, by hand: one CONSTANT subframe per channel,
    16 bytes a frame (2 h = 370 KB, written in well under a second). ``declared_samples`` is what the STREAMINFO
    header claims (default: the truth; 0 = unknown): a header that lies."""
    total = int(seconds * rate) // block * block
    declared = total if declared_samples is None else declared_samples
    info = struct.pack(">HH", block, block) + bytes(6)  # min/max block size; frame sizes unknown
    info += ((rate << 44) | (1 << 41) | (15 << 36) | declared).to_bytes(8, "big") + bytes(16)  # 2 ch, 16 bit; no MD5
    out = [b"fLaC", bytes([0x80, 0, 0, len(info)]), info]
    for i in range(total // block):
        # sync + fixed blocking; block size in 16 bits + 48 kHz; L/R, 16 bit; frame number (UTF-8 coded)
        head = bytes([0xFF, 0xF8, 0x7A, 0x18]) + chr(i).encode("utf-8", "surrogatepass") + struct.pack(">H", block - 1)
        frame = head + bytes([_crc(head, 0x07, 8)]) + bytes(6)  # two CONSTANT subframes of value 0
        out.append(frame + struct.pack(">H", _crc(frame, 0x8005, 16)))
    path.write_bytes(b"".join(out))
    return path


def _long_speech(speech_dir: Path, tmp_path: Path, rate: int = 48_000, seconds: float = 10.0) -> Path:
    """A real clip repeated to ``seconds``, stereo FLAC at ``rate`` (several 1 s decode blocks)."""
    import av
    import soxr

    x = soxr.resample(load_audio(speech_dir / "harvard_birch_canoe.wav"), SAMPLE_RATE, rate).astype(np.float32)
    x = np.tile(x, int(np.ceil(seconds * rate / len(x))))[:int(seconds * rate)]
    pcm = (np.clip(np.stack([x, 0.5 * x]), -1, 1) * 32767).astype("<i2")
    path = tmp_path / "long_speech.flac"
    with av.open(str(path), "w") as out:
        st = out.add_stream("flac", rate=rate, layout="stereo")
        for i in range(0, pcm.shape[1], 4608):
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, i:i + 4608].T).reshape(1, -1), format="s16",
                                           layout="stereo")
            f.sample_rate = rate
            for pkt in st.encode(f):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    return path


def test_streaming_decode_matches_one_shot(speech_dir: Path, tmp_path: Path):
    import av
    import soxr

    path = _long_speech(speech_dir, tmp_path)
    w = load_audio(path)
    with av.open(str(path)) as c:  # the reference: decode everything, average the channels, resample once
        x = np.concatenate([f.to_ndarray().reshape(-1, 2) for f in c.decode(audio=0)])  # s16, interleaved
    ref = soxr.resample((x.astype(np.float32) / 32768.0).mean(axis=1), 48_000, SAMPLE_RATE, quality="HQ")
    assert w.dtype == np.float32 and w.shape == ref.shape == (10 * SAMPLE_RATE,)
    assert float(np.abs(w - ref).max()) < 1e-5


def test_max_seconds_on_real_speech(speech_dir: Path, tmp_path: Path):
    clip = speech_dir / "harvard_birch_canoe.wav"  # 3.1 s, honest header
    full = load_audio(clip)
    np.testing.assert_array_equal(load_audio(clip, max_seconds=3.5), full)
    with pytest.raises(KsdiffError) as e:  # within the header's slack: stopped while decoding
        load_audio(clip, max_seconds=3.0)
    assert str(clip) in str(e.value) and "longer than the 3 s limit" in str(e.value)
    with pytest.raises(KsdiffError) as e:  # clearly over: refused from the header
        load_audio(_long_speech(speech_dir, tmp_path, seconds=10.0), max_seconds=2)
    assert "10 s long, over the 2 s limit" in str(e.value)


@pytest.mark.parametrize("declared", [None, 48_000, 0], ids=["honest", "lying", "unknown"])
def test_max_seconds_whatever_the_header_says(tmp_path: Path, declared):
    path = silent_flac(tmp_path / "silence.flac", 180, declared_samples=declared)
    with pytest.raises(KsdiffError) as e:
        load_audio(path, max_seconds=60)
    msg = str(e.value)
    assert str(path) in msg and "60 s limit" in msg and "\n" not in msg
    assert ("180 s long" in msg) == (declared is None)  # only an honest header gives the length away
    w = load_audio(path, allow_silent=True)  # without a cap, decoding goes past a lying header
    assert abs(len(w) / SAMPLE_RATE - 180) < 0.5
    with pytest.raises(KsdiffError, match="silent"):
        load_audio(path, max_seconds=600)


_PEAK = """
import json, resource, sys
from ksdiff.audio.decode import load_audio
from ksdiff.errors import KsdiffError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cap = float(sys.argv[2]) if len(sys.argv) > 2 else None
try:
    n = len(load_audio(sys.argv[1], allow_silent=True, max_seconds=cap))
except KsdiffError as e:
    n = str(e)
print(json.dumps({"kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, "result": n}))
"""


def _peak(*args: str) -> dict:
    """Peak-RSS growth (KiB) of a fresh interpreter while it runs load_audio(*args)."""
    r = subprocess.run([sys.executable, "-c", _PEAK, *args], capture_output=True, text=True, check=True, timeout=300)
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_memory_is_the_result_not_the_source(tmp_path: Path):
    """30 min of 48 kHz stereo: the decoded source is 550 MB of float32 (the old decoder peaked near 1 GB);
    the 16 kHz mono result is 110 MiB, and with a cap nothing beyond it is kept."""
    path = silent_flac(tmp_path / "half_hour.flac", 1800, declared_samples=0)  # no duration in the header
    full = _peak(str(path))
    assert isinstance(full["result"], int), full
    result_kib = full["result"] * 4 / 1024
    assert abs(full["result"] / SAMPLE_RATE - 1800) < 1
    assert full["kib"] < result_kib + 60 * 1024, (full, result_kib)
    capped = _peak(str(path), "60")
    assert "longer than the 60 s limit" in capped["result"]
    assert capped["kib"] < 40 * 1024, capped
