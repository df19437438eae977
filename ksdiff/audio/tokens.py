"""Transcript tokens x^{1:L} with FIXED vocabularies, so token ids mean the same on every machine and release.

``chars``: always available. Text is NFKD-normalised, accents dropped, lower-cased; letters, digits and a little
punctuation each get an id, any other character is UNK, runs of whitespace become one SPACE.

``phonemes``: IPA from espeak-ng through ``phonemizer`` + ``espeakng-loader`` (GPL-3.0, hence an optional extra
``pip install ksdiff[phonemes]``; imported only when used). Each phone espeak writes is looked up in the fixed
table (multi-character phones such as ``aɪ``, ``tʃ``, ``ɑːɹ`` first); stress marks are their own tokens;
a phone not in the table is split into its characters, each a single IPA symbol or UNK. Word boundaries are a token.

Ids: 0 = PAD (never produced for a real token), 1 = UNK, 2 = word boundary / space. New symbols may only ever be
appended to the end of a table (bump nothing, break nothing).
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np

from ksdiff.errors import KsdiffError

PAD, UNK, SPACE = 0, 1, 2
_SPECIALS = ("<pad>", "<unk>", " ")

# ----- characters: ids 3.. in this order (append only)
_CHAR_SYMBOLS = tuple("abcdefghijklmnopqrstuvwxyz0123456789") + tuple("'.,?!-:;\"")
CHAR_VOCAB: tuple[str, ...] = _SPECIALS + _CHAR_SYMBOLS
VOCAB_SIZE_CHARS = len(CHAR_VOCAB)  # 48
_CHAR_ID = {c: i for i, c in enumerate(CHAR_VOCAB)}

# ----- phonemes (IPA as espeak-ng writes it): ids 3.. in this order (append only)
_STRESS = ("ˈ", "ˌ")
# Multi-symbol phones of espeak-ng's English voices (en-us, en-gb), then other frequent ones.
_MULTI_PHONES = (
    "aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "əʊ", "eə", "ɪə", "ʊə", "aɪə", "aɪɚ", "aʊə", "aʊɚ",
    "iː", "uː", "ɑː", "ɔː", "ɜː", "ɛː", "oː", "aː", "eː", "øː", "yː",
    "ɪɹ", "ɛɹ", "ʊɹ", "ɔːɹ", "ɑːɹ", "oːɹ", "ɜːɹ", "iə", "əl", "n̩", "l̩", "m̩",
    "tʃ", "dʒ", "ts", "dz", "tɕ", "dʑ", "ʔn", "ɾ̃",
    "ɑ̃", "ɔ̃", "ɛ̃", "œ̃",
)
# Single IPA symbols (letters, length and nasal/syllabic marks, modifiers).
_SINGLE_PHONES = tuple(
    "abcdefhijklmnopqrstuvwxyz"
    "ɐɑɒæɓʙβɔɕçɗɖðəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢᵻ"
    "ːˑ\u0303\u0329ʰʲʷˠˤ"
)
PHONEME_VOCAB: tuple[str, ...] = _SPECIALS + _STRESS + _MULTI_PHONES + _SINGLE_PHONES
VOCAB_SIZE_PHONEMES = len(PHONEME_VOCAB)
_PHONE_ID = {p: i for i, p in enumerate(PHONEME_VOCAB)}
assert len(_PHONE_ID) == len(PHONEME_VOCAB), "duplicate phoneme symbol"

TOKEN_KINDS = ("phonemes", "chars", "none")


def vocab_size(kind: str) -> int:
    """Number of ids (including PAD) for token kind ``chars`` / ``phonemes`` (``none``: 1, PAD only)."""
    if kind == "chars":
        return VOCAB_SIZE_CHARS
    if kind == "phonemes":
        return VOCAB_SIZE_PHONEMES
    if kind == "none":
        return 1
    raise KsdiffError(f"token kind must be one of {', '.join(TOKEN_KINDS)}, not {kind!r}")


def normalize_text(text: str) -> str:
    """NFKD, accents dropped, lower case, curly quotes straightened, whitespace collapsed."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(text.lower().split())


def char_tokens(text: str) -> np.ndarray:
    """Character ids of ``text``: (L,) int64, ids in [1, VOCAB_SIZE_CHARS)."""
    return np.array([_CHAR_ID.get(c, UNK) if c != " " else SPACE for c in normalize_text(text)], dtype=np.int64)


@functools.lru_cache(maxsize=4)
def _espeak_backend(language: str):
    try:
        import espeakng_loader
        from phonemizer.backend import EspeakBackend
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError:
        raise KsdiffError("phoneme tokens need the optional GPL extra: pip install 'ksdiff[phonemes]' "
                          "(phonemizer + espeakng-loader), or use --tokens chars") from None
    import logging

    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
    logger = logging.getLogger("ksdiff.phonemizer")
    logger.setLevel(logging.ERROR)
    try:
        return EspeakBackend(language, preserve_punctuation=False, with_stress=True,
                             language_switch="remove-flags", logger=logger)
    except RuntimeError as e:
        raise KsdiffError(f"espeak-ng cannot phonemize language {language!r} ({e})") from None


def phonemize(text: str, language: str = "en-us") -> list[list[str]]:
    """IPA phones of ``text`` per word, as espeak-ng writes them (stress marks attached): [["h", "ˈiː"], ...]."""
    from phonemizer.separator import Separator

    text = " ".join(text.split())
    if not text:
        return []
    backend = _espeak_backend(language)
    out = backend.phonemize([text], separator=Separator(phone=" ", word=" | ", syllable=None), strip=True)[0]
    return [w.split() for w in out.split("|") if w.strip()]


def phone_ids(phone: str) -> list[int]:
    """Ids of one espeak phone string: leading stress marks, then the phone (or its symbols)."""
    ids: list[int] = []
    while phone and phone[0] in _STRESS:
        ids.append(_PHONE_ID[phone[0]])
        phone = phone[1:]
    if not phone:
        return ids
    if phone in _PHONE_ID:
        ids.append(_PHONE_ID[phone])
        return ids
    i = 0
    while i < len(phone):  # greedy longest match over the table
        for n in (3, 2, 1):
            sym = phone[i:i + n]
            if len(sym) == n and sym in _PHONE_ID and sym not in _SPECIALS:
                ids.append(_PHONE_ID[sym])
                i += n
                break
        else:
            ids.append(UNK)
            i += 1
    return ids


def phoneme_tokens(text: str, language: str = "en-us") -> np.ndarray:
    """Phoneme ids of ``text`` (espeak-ng IPA, word boundaries as SPACE): (L,) int64 in [1, VOCAB_SIZE_PHONEMES)."""
    ids: list[int] = []
    for w, phones in enumerate(phonemize(text, language)):
        if w:
            ids.append(SPACE)
        for p in phones:
            ids.extend(phone_ids(p))
    return np.array(ids, dtype=np.int64)


def text_to_tokens(text: str | None, kind: str = "phonemes", language: str = "en-us") -> np.ndarray:
    """Token ids of ``text``: (L,) int64, 0 (PAD) never used; empty for ``kind="none"`` or no text.

    Args:
        kind: ``"phonemes"`` (espeak-ng IPA; optional extra), ``"chars"`` or ``"none"``.
        language: espeak-ng voice for phonemes (``en-us``, ``en-gb``, ``de``, ``fr-fr``, ...).
    """
    vocab_size(kind)  # validates kind
    if kind == "none" or not text or not text.strip():
        return np.zeros(0, dtype=np.int64)
    if kind == "chars":
        return char_tokens(text)
    return phoneme_tokens(text, language)


def tokens_to_text(ids: np.ndarray, kind: str) -> str:
    """Readable form of token ids (phonemes space-separated, '|' between words; characters joined)."""
    vocab = CHAR_VOCAB if kind == "chars" else PHONEME_VOCAB
    syms = [vocab[int(i)] if 0 < int(i) < len(vocab) else "?" for i in np.asarray(ids).reshape(-1)]
    if kind == "chars":
        return "".join(syms)
    return " ".join("|" if s == " " else s for s in syms)


def words_in_window(words: list[tuple[str, float, float]], start_s: float, stop_s: float) -> tuple[int, int] | None:
    """(first, last) index of the timed words whose midpoint lies in [start_s, stop_s), or None when none does.

    ``words`` are (word, start_s, end_s) in time order, so the words of a window are a contiguous run.
    """
    idx = [j for j, (_, s, e) in enumerate(words) if start_s <= 0.5 * (float(s) + float(e)) < stop_s]
    return (idx[0], idx[-1]) if idx else None


def window_tokens(words: list[tuple[str, float, float]], span: tuple[int, int] | None, kind: str = "phonemes",
                  language: str = "en-us") -> np.ndarray:
    """Tokens of the words ``span`` = (first, last) (from :func:`words_in_window`); (0,) int64 when None."""
    if span is None:
        return np.zeros(0, dtype=np.int64)
    text = " ".join(str(words[j][0]).strip() for j in range(span[0], span[1] + 1))
    return np.asarray(text_to_tokens(text, kind, language=language), dtype=np.int64).reshape(-1)
