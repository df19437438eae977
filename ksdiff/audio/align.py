"""Forced alignment: word and ARPAbet phone segments with times, by pocketsphinx 5 (its en-us acoustic model and
CMU dictionary ship in the wheel; BSD-2).

Given the text (or the automatic transcript), pocketsphinx decodes twice: a word alignment constrained to the text,
then a phone/state alignment inside it. Times are in seconds at pocketsphinx's 10 ms frame rate. Words missing from
the dictionary get a pronunciation from espeak-ng (IPA → ARPAbet) when the optional phonemizer extra is installed;
otherwise they are left out of the alignment and listed in ``Alignment.oov``.

Also here: a reader for HTK/HTS label files and the boundary error between two phone alignments.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE
from ksdiff.errors import KsdiffError

FRAME_S = 0.01  # pocketsphinx frame period

#: The 39 ARPAbet phones of the CMU dictionary (stress stripped) plus SIL.
ARPABET = ("AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
           "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y",
           "Z", "ZH", "SIL")

# espeak-ng en-us IPA -> ARPAbet (for words missing from the CMU dictionary).
_IPA_TO_ARPA = {
    "æ": "AE", "ɐ": "AH", "ə": "AH", "ʌ": "AH", "ɑː": "AA", "ɑ": "AA", "ɒ": "AA", "ɔː": "AO", "ɔ": "AO",
    "ɜː": "ER", "ɚ": "ER", "ɝ": "ER", "ɛ": "EH", "e": "EH", "eɪ": "EY", "aɪ": "AY", "aʊ": "AW", "ɔɪ": "OY",
    "oʊ": "OW", "əʊ": "OW", "o": "OW", "ɪ": "IH", "ᵻ": "IH", "iː": "IY", "i": "IY", "ʊ": "UH", "uː": "UW",
    "u": "UW", "ɪɹ": "IH R", "ɪə": "IH R", "ɛɹ": "EH R", "eə": "EH R", "ʊɹ": "UH R", "ʊə": "UH R",
    "ɔːɹ": "AO R", "oːɹ": "AO R", "ɑːɹ": "AA R", "ɜːɹ": "ER", "aɪɚ": "AY ER", "aɪə": "AY ER", "aʊɚ": "AW ER",
    "iə": "IY AH", "əl": "AH L", "n̩": "AH N", "l̩": "AH L", "m̩": "AH M", "a": "AA", "aː": "AA",
    "b": "B", "d": "D", "f": "F", "h": "HH", "j": "Y", "k": "K", "l": "L", "m": "M", "n": "N", "p": "P",
    "s": "S", "t": "T", "v": "V", "w": "W", "z": "Z", "ɡ": "G", "g": "G", "ŋ": "NG", "ɹ": "R", "r": "R",
    "ʃ": "SH", "ʒ": "ZH", "θ": "TH", "ð": "DH", "tʃ": "CH", "dʒ": "JH", "ɾ": "T", "ʔ": "T", "x": "K", "ɬ": "L",
    "ç": "HH", "ʔn": "T AH N",
}


@dataclass
class Segment:
    """One labelled span: ``label`` from ``start`` to ``end`` seconds."""

    label: str
    start: float
    end: float


@dataclass
class Alignment:
    """Forced alignment of one utterance.

    Attributes:
        words: word segments (lower case; silences left out).
        phones: ARPAbet phone segments, stress-free, silences as ``SIL``, covering the whole audio.
        text: the normalised word sequence that was aligned.
        oov: words that could not be pronounced and were left out.
    """

    words: list[Segment]
    phones: list[Segment]
    text: str = ""
    oov: list[str] = field(default_factory=list)


def normalize_words(text: str) -> list[str]:
    """Words for the CMU dictionary: lower case, letters, digits and apostrophes only."""
    text = text.replace("\u2019", "'").lower()
    text = re.sub(r"[^a-z0-9' ]+", " ", re.sub(r"[-_/]", " ", text))
    return [w.strip("'") for w in text.split() if w.strip("'")]


@functools.lru_cache(maxsize=1)
def _decoder():
    try:
        from pocketsphinx import Decoder
    except ImportError:
        raise KsdiffError("forced alignment needs pocketsphinx (pip install pocketsphinx==5.1.1)") from None
    return Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL")


def _ipa_to_arpabet(phones: list[str]) -> str | None:
    out = []
    for p in phones:
        p = p.lstrip("ˈˌ")
        if p in _IPA_TO_ARPA:
            out.append(_IPA_TO_ARPA[p])
            continue
        parts = [_IPA_TO_ARPA.get(c) for c in p if c not in "ːˑ"]
        if not parts or any(x is None for x in parts):
            return None
        out.extend(parts)
    return " ".join(out) or None


def _pronounce_oov(decoder, words: list[str]) -> list[str]:
    """Add espeak-ng pronunciations for words the dictionary lacks; returns the words still unpronounceable."""
    missing = [w for w in dict.fromkeys(words) if decoder.lookup_word(w) is None]
    if not missing:
        return []
    try:
        from ksdiff.audio.tokens import phonemize

        still = []
        for w in missing:
            ph = phonemize(w)
            arpa = _ipa_to_arpabet([p for word in ph for p in word]) if ph else None
            if arpa:
                decoder.add_word(w, arpa, True)
            else:
                still.append(w)
        return still
    except KsdiffError:  # phonemizer extra not installed
        return missing


def align(wave: np.ndarray, text: str | None = None, sr: int = SAMPLE_RATE) -> Alignment:
    """Force-align ``text`` (default: the automatic Whisper transcript) to ``wave``.

    Args:
        wave: (N,) float mono at 16 kHz.
        text: what is said (any case and punctuation).

    Returns:
        Alignment with word and ARPAbet phone segments (seconds).

    Raises:
        KsdiffError: nothing to align, or the text does not fit the audio.
    """
    if sr != SAMPLE_RATE:
        raise KsdiffError(f"align expects {SAMPLE_RATE} Hz audio, got {sr}")
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if text is None:
        from ksdiff.audio.transcript import transcribe

        text = transcribe(wave).text
    words = normalize_words(text)
    if not words:
        raise KsdiffError("nothing to align: the transcript has no words")
    dec = _decoder()
    oov = _pronounce_oov(dec, words)
    words = [w for w in words if w not in oov]
    if not words:
        raise KsdiffError(f"no word of the transcript can be pronounced ({' '.join(oov)})")
    pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()
    try:
        dec.set_align_text(" ".join(words))
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        if dec.hyp() is None:
            raise RuntimeError("no word alignment")
        dec.set_alignment()
        dec.start_utt()
        dec.process_raw(pcm, full_utt=True)
        dec.end_utt()
        al = dec.get_alignment()
    except RuntimeError as e:
        raise KsdiffError(f"forced alignment failed: the text does not fit the audio ({e})") from None
    if al is None:
        raise KsdiffError("forced alignment failed: the text does not fit the audio")
    out_words: list[Segment] = []
    out_phones: list[Segment] = []
    for w in al:
        ws, we = w.start * FRAME_S, (w.start + w.duration) * FRAME_S
        name = re.sub(r"\(\d+\)$", "", w.name)
        if name not in ("<sil>", "<s>", "</s>", "[NOISE]", "++NOISE++"):
            out_words.append(Segment(name, round(ws, 3), round(we, 3)))
        for p in w:
            label = re.sub(r"\d", "", p.name).upper()
            label = "SIL" if label in ("SIL", "+SPN+", "+NSN+") or label.startswith("+") else label
            out_phones.append(Segment(label, round(p.start * FRAME_S, 3), round((p.start + p.duration) * FRAME_S, 3)))
    return Alignment(out_words, out_phones, " ".join(words), oov)


def _chunks(words: list[tuple[str, float, float]], max_s: float) -> list[list[tuple[str, float, float]]]:
    """Timed words in consecutive groups spanning at most ``max_s`` seconds each, cut at the widest pause."""
    if not words or words[-1][2] - words[0][1] <= max_s or len(words) < 2:
        return [words] if words else []
    gaps = [(words[i + 1][1] - words[i][2], i) for i in range(len(words) - 1)]
    mid = words[0][1] + 0.5 * (words[-1][2] - words[0][1])
    _, cut = max(gaps, key=lambda g: (round(g[0], 2), -abs(words[g[1]][2] - mid)))
    return _chunks(words[:cut + 1], max_s) + _chunks(words[cut + 1:], max_s)


def align_long(wave: np.ndarray, text: str | None = None, sr: int = SAMPLE_RATE, max_chunk_s: float = 8.0
               ) -> Alignment:
    """:func:`align`, and where the whole utterance does not align (long or clipped recordings: a word cut at
    the clip's edge, a passage Whisper heard wrong), the same piece by piece: Whisper's word times cut the audio
    at pauses into pieces of at most ``max_chunk_s`` s, each aligned on its own (an unalignable piece retried
    without its first and last word, then left out as silence). ``text`` is only used for the first attempt;
    the pieces use Whisper's words."""
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    try:
        return align(wave, text, sr=sr)
    except KsdiffError:
        pass
    from ksdiff.audio.transcript import transcribe

    dur = len(wave) / sr
    words_out: list[Segment] = []
    phones_out: list[Segment] = []
    texts, oov = [], []
    t = 0.0
    for chunk in _chunks(transcribe(wave).words, max_chunk_s):
        for part in (chunk, chunk[1:-1]):
            if not part:
                continue
            a, b = max(t, part[0][1] - 0.2), min(dur, part[-1][2] + 0.2)
            try:
                al = align(wave[int(a * sr):int(b * sr)], " ".join(w for w, _, _ in part), sr=sr)
            except KsdiffError:
                continue
            if a > t:
                phones_out.append(Segment("SIL", round(t, 3), round(a, 3)))
            words_out += [Segment(w.label, round(w.start + a, 3), round(w.end + a, 3)) for w in al.words]
            phones_out += [Segment(p.label, round(p.start + a, 3), round(p.end + a, 3)) for p in al.phones]
            texts.append(al.text)
            oov += al.oov
            t = phones_out[-1].end if phones_out else b
            break
    if not words_out:
        raise KsdiffError("forced alignment failed: no part of the text fits the audio")
    if t < dur:
        phones_out.append(Segment("SIL", round(t, 3), round(dur, 3)))
    return Alignment(words_out, phones_out, " ".join(texts), oov)


# ------------------------------------------------------------------------------------ label files and scoring

_HTS_PHONE = re.compile(r"^[^\^]*\^[^-]*-([^+]+)\+")


def hts_to_arpabet(label: str) -> str:
    """An HTK/HTS (CMU ARCTIC / festival) phone label -> ARPAbet: ``pau``/``sil``/``h#`` -> SIL, ``ax`` -> AH,
    others upper-cased (ARCTIC uses the CMU set in lower case)."""
    lab = label.strip().lower()
    m = _HTS_PHONE.match(lab)
    if m:  # full-context label "a^b-c+d=e@...": the current phone is c
        lab = m.group(1)
    lab = re.sub(r"\d", "", lab)
    if lab in ("pau", "sil", "h#", "sp", "#", "brth", "ssil"):
        return "SIL"
    return {"ax": "AH", "axr": "ER", "ix": "IH", "dx": "T", "el": "L", "em": "M", "en": "N", "nx": "N",
            "hv": "HH", "ux": "UW"}.get(lab, lab.upper())


def read_lab(path: str | os.PathLike) -> list[Segment]:
    """Read an HTK/HTS label file (``start end label`` per line; times in 100 ns units) as ARPAbet segments."""
    path = Path(path)
    segs: list[Segment] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise KsdiffError(f"cannot read label file ({e})", path) from None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise KsdiffError(f"line {n}: expected 'start end label'", path)
        try:
            start, end = int(parts[0]) * 1e-7, int(parts[1]) * 1e-7
        except ValueError:
            raise KsdiffError(f"line {n}: start and end must be integers (100 ns units)", path) from None
        segs.append(Segment(hts_to_arpabet(parts[2]), start, end))
    return segs


def _merge_sil(segs: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for s in segs:
        if out and s.label == "SIL" and out[-1].label == "SIL":
            out[-1] = Segment("SIL", out[-1].start, s.end)
        else:
            out.append(Segment(s.label, s.start, s.end))
    return out


def boundary_errors(reference: list[Segment], hypothesis: list[Segment]) -> np.ndarray:
    """Absolute errors (seconds) of phone boundaries between two alignments of the same speech.

    The label sequences are matched (difflib, adjacent silences merged); for each run of matched phones the
    start of every phone and the end of the last are compared. Returns (K,) float64.
    """
    ref, hyp = _merge_sil(reference), _merge_sil(hypothesis)
    sm = difflib.SequenceMatcher(a=[s.label for s in ref], b=[s.label for s in hyp], autojunk=False)
    errs: list[float] = []
    for block in sm.get_matching_blocks():
        for k in range(block.size):
            r, h = ref[block.a + k], hyp[block.b + k]
            errs.append(abs(r.start - h.start))
            if k == block.size - 1:
                errs.append(abs(r.end - h.end))
    return np.array(errs, dtype=np.float64)
