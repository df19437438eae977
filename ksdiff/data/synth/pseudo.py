"""Real speech with procedural targets ("pseudo" clips): recordings of real voices, face motion from the synthetic
corpus's generative model.

    recording + transcript (same-stem .txt, the folder's transcripts.tsv, else Whisper tiny.en)
        ──pocketsphinx forced alignment──> phones and words with times
        ──the synthetic corpus's viseme model, head and blink model (docs/SYNTH.md)──> ARKit motion

The targets are exact functions of the aligned phones, like those of the synthetic corpus, but the audio is a real
person speaking: many speakers, real prosody and recording conditions, which espeak-ng's voices lack. The motion is
as good as the alignment (pocketsphinx: median boundary error 10 ms on hand-aligned CMU ARCTIC a0009, docs/AUDIO.md)
and the viseme model; `ksdiff synth --report` checks it without listening (mouth closed at /p b m/, jawOpen against
the speech envelope). Clips are written with ``meta.json`` ``source: "pseudo"`` into their own dataset, so a model
trained with ``data.style=dataset`` gives them their own style token.
"""

from __future__ import annotations

import csv
import os
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ksdiff.data.synth.config import DEFAULT_VOICES, SynthConfig, VoiceStyle
from ksdiff.data.synth.corpus import SynthClip, check_output, clip_from_phones
from ksdiff.errors import KsdiffError

MIN_SECONDS, MAX_SECONDS = 1.0, 30.0  # recordings outside this length are skipped


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_") or "x"


def style_for(speaker: str) -> VoiceStyle:
    """A fixed articulation style per speaker (one of the synthetic corpus's eight, by a stable hash of the name)."""
    base = DEFAULT_VOICES[zlib.crc32(speaker.encode("utf-8")) % len(DEFAULT_VOICES)]
    import dataclasses

    return dataclasses.replace(base, name=_safe(speaker), voice="recording")


def find_recordings(sources: list[str | os.PathLike]) -> Iterator[tuple[Path, str | None, str]]:
    """(audio file, transcript or None, speaker) of every audio file under ``sources`` (files or folders,
    recursively, sorted). Transcript: a same-stem ``.txt``, else the ``text`` (or ``transcript``) column of a
    ``transcripts.tsv`` in its folder (empty = none); speaker: that file's ``speaker`` column (its first word), else
    the folder name."""
    from ksdiff.data.importers import AUDIO_SUFFIXES

    for src in sources:
        src = Path(src)
        if not src.exists():
            raise KsdiffError("no such file or folder", src)
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        tables: dict[Path, dict[str, dict[str, str]]] = {}
        for f in files:
            if f.parent not in tables:
                tsv = f.parent / "transcripts.tsv"
                rows: dict[str, dict[str, str]] = {}
                if tsv.is_file():
                    with open(tsv, encoding="utf-8", newline="") as fh:
                        rows = {r.get("file", ""): r for r in csv.DictReader(fh, delimiter="\t")}
                tables[f.parent] = rows
            row = tables[f.parent].get(f.name, {})
            txt = f.with_suffix(".txt")
            text = txt.read_text(encoding="utf-8").strip() if txt.is_file() else \
                (row.get("text") or row.get("transcript") or "").strip()
            speaker = (row.get("speaker") or "").split(" ")[0] or f.parent.name
            yield f, text or None, speaker


def pseudo_clip(wave: np.ndarray, text: str | None, speaker: str, clip_id: str, cfg: SynthConfig,
                index: int = 0) -> SynthClip:
    """A pseudo clip of one recording (N,) float32 16 kHz: transcript (given, else Whisper), forced alignment,
    then the synthetic corpus's motion model with the speaker's style. Deterministic for (cfg.seed, index)."""
    from ksdiff.data.synth.tts import align_phones

    source = "given"
    if not text:
        from ksdiff.audio.transcript import transcribe

        text, source = transcribe(wave).text, "whisper"
    if not text or not text.strip():
        raise KsdiffError("no words: nothing to align")
    phones, words = align_phones(wave, text)
    if not any(not p.startswith("_") for p, _, _ in phones):
        raise KsdiffError("the aligner found no phones")
    rng = np.random.default_rng([int(cfg.seed), int(index), 7])
    voice = style_for(speaker)
    tts = {"source_audio": "recording", "transcript_source": source, "aligner": "pocketsphinx"}
    return clip_from_phones(rng, wave, phones, words, voice, cfg, clip_id, voice.name, text, tts)


def build_pseudo_corpus(sources: list[str | os.PathLike], out: str | os.PathLike, cfg: SynthConfig,
                        force: bool = False, max_minutes: float | None = None,
                        progress: Callable[[SynthClip, float], None] | None = None,
                        skipped: Callable[[Path, str], None] | None = None) -> dict:
    """Write a pseudo clip for every recording under ``sources`` (at most ``max_minutes``) as an ``arkit`` dataset
    at ``out`` (atomic). A recording that cannot be used (too short or long, silent, unreadable, no words) is
    skipped and reported through ``skipped(path, why)``. Returns the summary (clips, seconds, speakers, skipped)."""
    from ksdiff.audio.features import load_speech
    from ksdiff.data.dataset import DatasetWriter
    from ksdiff.utils.io import write_json

    out = check_output(out, force)
    recordings = list(find_recordings(sources))
    if not recordings:
        raise KsdiffError("no audio files found", ", ".join(str(s) for s in sources))
    total, n, n_skipped = 0.0, 0, 0
    speakers: set[str] = set()
    speaker_of: dict[str, str] = {}
    extra = {"source": "pseudo", "pseudo": {"sources": [str(s) for s in sources], "seed": cfg.seed,
                                            "fps": cfg.fps}}
    with DatasetWriter(out, spec="arkit", fps=cfg.fps, name="pseudo", seed=cfg.seed, extra=extra) as writer:
        for i, (path, text, speaker) in enumerate(recordings):
            if max_minutes is not None and total >= max_minutes * 60:
                break
            try:
                wave = load_speech(path)
                if not MIN_SECONDS <= len(wave) / 16000 <= MAX_SECONDS:
                    raise KsdiffError(f"{len(wave) / 16000:.1f} s long (pseudo clips take {MIN_SECONDS:g}–"
                                      f"{MAX_SECONDS:g} s)")
                clip = pseudo_clip(wave, text, speaker, f"{_safe(speaker)}-{_safe(path.stem)}", cfg, index=i)
            except KsdiffError as e:
                n_skipped += 1
                if skipped is not None:
                    skipped(path, str(e))
                continue
            meta = {**clip.meta(), "source": "pseudo", "audio_file": path.name}
            writer.add_clip(clip.id, clip.wave, clip.motion, transcript=clip.text, meta=meta)
            write_json(writer.tmp / clip.id / "phones.json", clip.ground_truth())
            total += clip.duration
            n += 1
            speakers.add(clip.speaker)
            speaker_of[clip.id] = clip.speaker
            if progress is not None:
                progress(clip, total)
        if not n:  # inside the writer: nothing is kept
            raise KsdiffError("no recording could be used (see the skipped ones above)", out)
        writer.split_by_group(speaker_of)  # val / test hold whole speakers out
    return {"out": str(out), "clips": n, "seconds": total, "speakers": sorted(speakers), "skipped": n_skipped}
