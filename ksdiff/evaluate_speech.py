"""Lip sync on audio alone, over a folder of real speech (``ksdiff evaluate --speech DIR [--vs CHECKPOINT]``).

No face truth is needed: each recording is animated as a user gets it (the checkpoint's generation defaults, the
transcript the model reads from Whisper), and scored with DESIGN section 7's audio-only measures plus how far the
mouth moves (docs/METRICS.md, "Lip sync on audio alone"). Per clip and seed:

=====================  ==============================================================================================
``env_r``              Pearson r of jawOpen with the speech envelope (:func:`ksdiff.metrics.envelope_correlation`)
``lip_env_r``          the same for the inner-lip opening on the ICT head
                       (:func:`ksdiff.metrics.lip_envelope_correlation`; NaN without the ICT asset or for a FLAME model)
``jaw_std``            jawOpen's standard deviation; ``jaw_p95`` its 95th percentile (how far the mouth opens)
``mouth_std``          the median over the mouth channels of their std (a real iPhone capture of English: 0.10)
``capture_ratio``      :func:`ksdiff.metrics.capture_ratio` (1 = a real captured face's amplitude)
``bilabial_closure``   English clips: :func:`ksdiff.metrics.bilabial_closure`, the share of /p b m/ shut at their
                       centre; phones by forced alignment (``ksdiff.audio.align.align_long``) of the clip's transcript
                       (a same-stem ``.txt`` or the folder's ``transcripts.tsv``), else Whisper's; NaN without /p b m/
=====================  ==============================================================================================

A clip's value is its mean over the seeds, a report's ``mean`` the mean over clips. Two checkpoints are compared
clip by clip: the mean difference B − A with a 95 % bootstrap interval over the clips (:func:`compare_speech`).
``scripts/speech_sync.py`` and ``scripts/compare_sync.py`` (the results in docs/RESULTS.md) are this module.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion
from ksdiff.metrics import bilabial_closure, capture_ratio, envelope_correlation, lip_envelope_correlation
from ksdiff.metrics.articulation import mouth_channels
from ksdiff.utils.io import write_text
from ksdiff.utils.stats import paired_comparison

#: the per-clip measures, in report order
SYNC_METRICS = ("env_r", "lip_env_r", "jaw_std", "jaw_p95", "mouth_std", "capture_ratio", "bilabial_closure")
#: the measures two checkpoints are compared on (jaw_p95 says what jaw_std says)
COMPARED = ("env_r", "lip_env_r", "capture_ratio", "bilabial_closure", "jaw_std", "mouth_std")


def speech_clips(folder: str | os.PathLike) -> list[tuple[Path, str | None]]:
    """(audio file, transcript or None) of every audio file directly in ``folder`` (or of the one file ``folder``
    names), in name order (transcripts as :func:`ksdiff.data.synth.pseudo.find_recordings` finds them: a same-stem
    ``.txt`` or the folder's ``transcripts.tsv``); one line if there is none."""
    from ksdiff.data.synth.pseudo import find_recordings

    folder = Path(folder)
    if not folder.exists():
        raise KsdiffError("no such file or folder", folder)
    clips = [(f, t) for f, t, _ in find_recordings([folder]) if folder.is_file() or f.parent == folder]
    if not clips:
        raise KsdiffError("no audio files in this folder (wav, flac, mp3, m4a, ...)", folder)
    return clips


def clip_phones(path: Path, wave: np.ndarray, text: str | None, cache: Path | None = None) -> list[list]:
    """[[ARPAbet label, start s, end s], ...] of an English recording by forced alignment of ``text`` (None:
    Whisper's); [] when it does not align (reported on stderr). Cached as ``cache/<file name>.json`` when given
    (the phones are the same for every checkpoint scored on the clip), and reused only for the same file (path,
    size, modification time) and transcript."""
    from ksdiff.audio.align import align_long

    where = None if cache is None else Path(cache) / f"{path.name}.json"
    st = path.stat()
    key = {"source": str(path.resolve()), "size": st.st_size, "mtime": st.st_mtime, "text": text}
    if where is not None and where.is_file():
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            cached = json.loads(where.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                return cached["phones"]
    try:
        phones = [[s.label, s.start, s.end] for s in align_long(wave, text).phones]
    except KsdiffError as e:
        import sys

        print(f"ksdiff: {path}: no forced alignment, so no bilabial closure ({e.problem})", file=sys.stderr)
        phones = []
    if where is not None:
        where.parent.mkdir(parents=True, exist_ok=True)
        write_text(where, json.dumps({"key": key, "phones": phones}))
    return phones


def sync_scores(motion: Motion, wave: np.ndarray, phones: list | None, face=None) -> dict[str, float]:
    """The :data:`SYNC_METRICS` of one generated ``motion`` of ``wave`` (N,) float32 16 kHz. ``phones``: the clip's
    aligned phones, or None for a clip not scored on closure (another language); ``face``: a face model with the 68
    landmarks for ``lip_env_r`` (None: NaN). A ``flame`` motion is read at ``jawRotX`` for the jaw; closure and the
    capture ratio, defined on ARKit channels, are then NaN."""
    jaw = motion.channel("jawOpen" if "jawOpen" in motion.channels else "jawRotX")  # arkit | flame
    mouth = motion.select(mouth_channels(motion.channels))
    nan = float("nan")
    out = {"env_r": float(envelope_correlation(jaw, wave, motion.fps)),
           "lip_env_r": nan if face is None else float(lip_envelope_correlation(motion, wave, face)),
           "jaw_std": float(jaw.std()), "jaw_p95": float(np.percentile(jaw, 95)),
           "mouth_std": float(np.median(mouth.std(axis=0))) if mouth.size else nan,
           "capture_ratio": float(capture_ratio(motion.coeffs, motion.channels)), "bilabial_closure": nan}
    if phones and "mouthClose" in motion.channels:  # closure is read from ARKit's lip channels
        lips = (motion.channel("mouthClose"), motion.channel("mouthPressLeft"))
        out["bilabial_closure"] = float(bilabial_closure(jaw, *lips, phones, motion.fps))
    return out


def _lip_face(spec: str):
    """The ICT head when the spec is ``arkit`` and its asset (with the 68 landmarks) is found, else None."""
    if spec != "arkit":
        return None
    from ksdiff.evaluate import _face_model

    face = _face_model(spec)
    lm = getattr(face, "landmarks68", None)
    return face if lm is not None and len(lm) == 68 else None


def evaluate_speech(checkpoint: str | os.PathLike | None, folder: str | os.PathLike, seeds: Iterable[int] = (0,),
                    not_english: Iterable[str] = (), phones_dir: str | os.PathLike | None = None, limit: int = 0,
                    progress: Callable[[str], None] | None = None, **generate_kw) -> dict:
    """Animate every recording of ``folder`` with ``checkpoint`` (None: the shipped default) once per seed and score
    it (:func:`sync_scores`). ``limit``: the first N recordings in name order (0: all); ``not_english``: file names scored without closure; ``generate_kw``: ``style``,
    ``guidance``, ``smooth``, ... for :meth:`ksdiff.generate.Animator.animate` (None values: the checkpoint's own).

    Returns:
        {"checkpoint", "seeds", "mean": {metric: mean over clips}, "clips": {file name: {metric: mean over seeds}},
        "per_seed": {seed: {file name: {metric: value}}}}
    """
    from ksdiff.audio.features import load_speech
    from ksdiff.generate import load_model

    clips = speech_clips(folder)[: limit or None]
    for f, _ in clips:  # every file decoded (and a bad one refused) before any generation; not kept: a folder
        load_speech(f)  # of long recordings would not fit in memory at once
    animator = load_model(checkpoint)
    face = _lip_face(animator.spec.name)
    kw = {k: v for k, v in generate_kw.items() if v is not None}
    skip, seeds = set(not_english), [int(s) for s in seeds]
    per_seed: dict[int, dict[str, dict[str, float]]] = {s: {} for s in seeds}
    for f, text in clips:
        wave = load_speech(f)
        phones = None if f.name in skip else clip_phones(f, wave, text, phones_dir)
        for s in seeds:
            motion = animator.animate(wave, seed=s, **kw)
            per_seed[s][f.name] = sync_scores(motion, wave, phones, face)
        if progress is not None:
            progress(f.name)
    names = [f.name for f, _ in clips]
    mean_clips = {n: {k: _nanmean([per_seed[s][n][k] for s in seeds]) for k in SYNC_METRICS} for n in names}
    return {"checkpoint": str(animator.path), "seeds": seeds,
            "mean": {k: _nanmean([c[k] for c in mean_clips.values()]) for k in SYNC_METRICS},
            "clips": mean_clips, "per_seed": {str(s): v for s, v in per_seed.items()}}


def _nanmean(values: list[float]) -> float:
    v = np.asarray(values, np.float64)
    return float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else float("nan")


def compare_speech(a: dict, b: dict, metrics: Iterable[str] = COMPARED) -> list[dict]:
    """Two reports (of :func:`evaluate_speech`, or of ``scripts/speech_sync.py``) of the same clips, paired clip by
    clip (:func:`ksdiff.utils.stats.paired_comparison` on their ``"clips"``): per metric, the clips both score, each
    side's mean, the mean difference B − A and its 95 % bootstrap interval over the clips (10 000 draws, seed 0).

    Returns:
        [{"metric", "clips", "a", "b", "diff", "lo", "hi"}, ...]
    """
    return paired_comparison(a["clips"], b["clips"], metrics)


def report_markdown(report: dict) -> str:
    """One :func:`evaluate_speech` report as a markdown table: a row per clip, then the mean."""
    head = "| clip | " + " | ".join(SYNC_METRICS) + " |"
    lines = [head, "|---|" + "---:|" * len(SYNC_METRICS)]
    rows = list(report["clips"].items()) + [("**mean**", report["mean"])]
    lines += ["| " + name + " | " + " | ".join(_cell(v[k]) for k in SYNC_METRICS) + " |" for name, v in rows]
    return "\n".join(lines)


def _cell(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.3f}"


__all__ = ["SYNC_METRICS", "speech_clips", "clip_phones", "sync_scores", "evaluate_speech", "compare_speech",
           "report_markdown"]
