"""Audio–video offset of a clip with real face motion, found from the speech itself, and its correction.

Talking-face footage is often out of sync: the clips of ``../shared/data/video_extra`` and ``video`` show offsets up
to 0.24 s between the lips and the sound (docs/DATA.md, "A/V sync"). A model trained on such a clip learns the
wrong timing and is scored against the wrong one. The check needs no face model trained on the data:

    speech ──transcript (given, else Whisper) + pocketsphinx phones──> the synthetic face's viseme model
           ──> the mouth the speech implies (jaw, lips; :mod:`ksdiff.data.synth.calibrate`)

and the lag that best correlates that mouth with the clip's own mouth channels is the offset. It is trusted only
when the correlation at the lag is clearly better than at zero and good in itself; otherwise the clip is left as
it is. Sign: ``lag_frames`` > 0 means the face moves *after* the sound (the motion is late); the correction moves
the motion by ``-lag_frames`` frames (the edge frames repeat), so the audio is never touched.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion

#: mouth keys of the viseme model compared with the clip's (each the mean of its left/right channels)
#: (jaw opening and lip rounding: the keys a tracker and the viseme model agree on best, docs/DATA.md)
SYNC_KEYS: tuple[str, ...] = ("jaw", "funnel", "pucker")
MAX_LAG_S = 0.4  # searched lags: ±0.4 s
MIN_GAIN = 0.1  # the best lag's mean r must beat lag 0's by this much, ...
MIN_SCORE = 0.3  # ... reach this, ...
MIN_AGREE = 2  # ... and this many keys must peak on their own within one frame of it; else lag 0 is kept


@dataclass
class SyncEstimate:
    """Offset of one clip.

    Attributes:
        lag_frames: frames the motion is late against the audio (> 0) or early (< 0); 0 when not reliable.
        lag_s: the same in seconds.
        score: mean Pearson r over the compared keys at the found lag.
        score_at_zero: the same at lag 0.
        reliable: whether the best lag passed the test (its score ≥ MIN_SCORE and, if not 0, ≥ MIN_GAIN above
            lag 0's with MIN_AGREE keys peaking within a frame of it); otherwise lag 0 is kept.
        best_lag_frames: the lag that correlated best, trusted or not.
        transcript: the words the check aligned.
    """

    lag_frames: int
    lag_s: float
    score: float
    score_at_zero: float
    reliable: bool
    best_lag_frames: int = 0
    transcript: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def lag_scores(pred: np.ndarray, real: np.ndarray, max_lag: int) -> dict[int, float]:
    """Mean Pearson r over the columns of ``pred`` and ``real`` (T, K) at every lag in [−max_lag, max_lag], on
    the overlapping frames only: r at lag L compares real[t] with pred[t − L]. Columns constant on either side are
    left out; a lag with no usable column scores −1."""
    T = pred.shape[0]
    out = {}
    for lag in range(-max_lag, max_lag + 1):
        a, b = (pred[: T - lag], real[lag:]) if lag >= 0 else (pred[-lag:], real[: T + lag])
        rs = []
        for k in range(pred.shape[1]):
            x, y = a[:, k], b[:, k]
            if len(x) > 2 and x.std() > 1e-6 and y.std() > 1e-6:
                rs.append(float(np.corrcoef(x, y)[0, 1]))
        out[lag] = float(np.mean(rs)) if rs else -1.0
    return out


def speech_mouth(wave: np.ndarray, motion: Motion, transcript: str | None = None, table: str = "hand"
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """The mouth the speech implies and the clip's own, both (T, len(SYNC_KEYS)) with the clip's rest removed,
    and the transcript used. ``wave``: (N,) float32 16 kHz; ``motion``: ARKit."""
    from ksdiff.data.synth.calibrate import clip_design, predict
    from ksdiff.data.synth.config import SynthConfig
    from ksdiff.data.synth.tts import align_phones
    from ksdiff.data.synth.visemes import TARGET_KEYS, TARGET_TABLES

    if motion.spec != "arkit":
        raise KsdiffError(f"A/V sync needs ARKit motion, got {motion.spec!r}")
    if not transcript:
        from ksdiff.audio.transcript import transcribe

        transcript = transcribe(wave).text.strip()
    if not transcript:
        raise KsdiffError("no words heard: the offset cannot be found")
    phones, _ = align_phones(wave, transcript)
    d = clip_design("clip", wave, 16000, phones, motion.coeffs, motion.channels, motion.fps, SynthConfig())
    pred = np.stack([predict([d], TARGET_TABLES[table], k) for k in SYNC_KEYS], axis=1)
    return pred, d.motion[:, [TARGET_KEYS.index(k) for k in SYNC_KEYS]], transcript


def estimate_offset(wave: np.ndarray, motion: Motion, transcript: str | None = None, max_lag_s: float = MAX_LAG_S,
                    min_gain: float = MIN_GAIN, min_score: float = MIN_SCORE) -> SyncEstimate:
    """The audio–video offset of one clip: ``wave`` (N,) float32 16 kHz, ``motion`` ARKit at its own fps over the
    same time span, ``transcript`` (None: Whisper tiny.en)."""
    pred, real, text = speech_mouth(wave, motion, transcript)
    max_lag = max(1, int(round(max_lag_s * motion.fps)))
    scores = lag_scores(pred, real, max_lag)
    best = max(scores, key=lambda k: (scores[k], -abs(k)))
    agree = 0
    for k in range(pred.shape[1]):
        own = lag_scores(pred[:, k:k + 1], real[:, k:k + 1], max_lag)
        agree += abs(max(own, key=lambda j: (own[j], -abs(j))) - best) <= 1
    reliable = scores[best] >= min_score and (best == 0 or (scores[best] - scores[0] >= min_gain
                                                            and agree >= min(MIN_AGREE, pred.shape[1])))
    lag = best if reliable else 0
    return SyncEstimate(lag, lag / motion.fps, scores[best], scores[0], bool(reliable), best, text)


def shift_motion(motion: Motion, lag_frames: int) -> Motion:
    """Undo a lag: frame t of the result is frame t + lag_frames of ``motion`` (edges repeat; same length)."""
    T = motion.num_frames
    idx = np.clip(np.arange(T) + int(lag_frames), 0, T - 1)
    return Motion(motion.coeffs[idx], motion.channels, motion.fps, motion.spec)


def sync_dataset(path: str | os.PathLike, apply: bool = False, progress=None
                 ) -> list[tuple[str, SyncEstimate | str]]:
    """Estimate the offset of every clip of an ARKit dataset; with ``apply``, shift each clip's motion by its
    reliable lag (atomic per clip) and record ``av_sync`` in its meta.json. A clip already corrected (its
    meta.json has ``av_sync``) is measured again but never shifted twice; a clip whose speech cannot be aligned
    is left as it is and reported as the reason (a string). ``progress(clip_id, estimate_or_reason)`` is called
    per clip."""
    from ksdiff.data.dataset import open_dataset
    from ksdiff.utils.io import write_json

    ds = open_dataset(path)
    if ds.spec != "arkit":
        raise KsdiffError(f"A/V sync needs an ARKit dataset, this one is {ds.spec!r}", path)
    out: list[tuple[str, SyncEstimate | str]] = []
    for clip in ds.clips():
        motion = clip.motion()
        try:
            res: SyncEstimate | str = estimate_offset(clip.audio(), motion, clip.transcript())
        except KsdiffError as e:
            res = str(e)
        meta = clip.meta()
        if apply and isinstance(res, SyncEstimate) and "av_sync" not in meta:
            if res.lag_frames:
                shift_motion(motion, res.lag_frames).save(clip.motion_path)
            write_json(Path(clip.root) / "meta.json", {**meta, "av_sync": res.to_dict()})
        out.append((clip.id, res))
        if progress is not None:
            progress(clip.id, res)
    return out


SYNC_HEADER = f"{'clip':<36}{'offset':>9}{'r at it':>9}{'r at 0':>8}  verdict"


def sync_line(clip_id: str, res: SyncEstimate | str, applied: bool = False) -> str:
    """One row of the ``ksdiff dataset sync`` table (under :data:`SYNC_HEADER`)."""
    if not isinstance(res, SyncEstimate):
        return f"{clip_id:<36}{'':>26}  not measured: {res}"
    if not res.reliable:
        verdict = f"unclear (best {res.best_lag_frames:+d} frames; left as it is)"
    elif res.lag_frames == 0:
        verdict = "in sync"
    else:
        verdict = f"motion {'late' if res.lag_frames > 0 else 'early'} by {abs(res.lag_s):.2f} s"
        verdict += ", corrected" if applied else ""
    return f"{clip_id:<36}{res.lag_s:>+8.2f}s{res.score:>9.2f}{res.score_at_zero:>8.2f}  {verdict}"
