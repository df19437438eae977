"""Forced phone alignment (pocketsphinx) against a hand-checked HTS alignment of CMU ARCTIC a0009."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ksdiff.audio.align import ARPABET, align, boundary_errors, hts_to_arpabet, normalize_words, read_lab
from ksdiff.audio.decode import load_audio
from ksdiff.errors import KsdiffError

A0009 = "He turned sharply, and faced Gregson across the table."


def test_read_hts_lab(speech_dir: Path):
    ref = read_lab(speech_dir / "arctic_a0009_phone.lab")
    assert all(s.label in ARPABET for s in ref)
    assert ref[0].label == "SIL" and ref[1].label == "HH" and ref[-1].label == "SIL"
    assert ref[0].start == 0.0 and ref[0].end == pytest.approx(0.13)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(ref, ref[1:]))
    assert hts_to_arpabet("pau") == "SIL" and hts_to_arpabet("ax") == "AH" and hts_to_arpabet("sh") == "SH"


def test_align_arctic_a0009_against_reference(speech_dir: Path):
    w = load_audio(speech_dir / "arctic_a0009.wav")
    ref = read_lab(speech_dir / "arctic_a0009_phone.lab")
    al = align(w, A0009)
    assert [s.label for s in al.words] == normalize_words(A0009) and al.oov == []
    assert all(p.label in ARPABET for p in al.phones)
    # phones tile the audio in order
    assert all(a.end == pytest.approx(b.start) for a, b in zip(al.phones, al.phones[1:]))
    assert al.phones[-1].end <= len(w) / 16000 + 0.011
    # same pronunciation as the hand-checked reference (CMU dict), boundaries within a few 10 ms frames
    assert [p.label for p in al.phones if p.label != "SIL"] == [p.label for p in ref if p.label != "SIL"]
    err = boundary_errors(ref, al.phones)
    assert len(err) >= 40
    assert np.median(err) <= 0.025 and np.mean(err < 0.05) >= 0.85
    # words contain their phones
    he = al.words[0]
    assert [p.label for p in al.phones if he.start <= p.start < he.end] == ["HH", "IY"]


def test_align_automatic_transcript_and_oov(speech_dir: Path):
    w = load_audio(speech_dir / "one_two_three.wav")
    al = align(w)  # text from Whisper tiny.en
    assert [s.label for s in al.words] == ["one", "two", "three"]
    assert al.words[0].start < al.words[1].start < al.words[2].start
    pytest.importorskip("phonemizer")
    w9 = load_audio(speech_dir / "arctic_a0009.wav")
    al = align(w9, A0009.replace("Gregson", "Grexton"))  # not in the CMU dictionary: pronounced by espeak-ng
    assert "grexton" in [s.label for s in al.words] and al.oov == []


def test_align_errors(speech_dir: Path):
    w = load_audio(speech_dir / "one_two_three.wav")
    with pytest.raises(KsdiffError):
        align(w, " ,.!? ")
    with pytest.raises(KsdiffError):
        align(w[:8000], "one two three", sr=8000)
