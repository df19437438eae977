"""MediaPipe face tracker: talking-face videos -> ``arkit`` motion + 16 kHz audio (DESIGN.md section 6).

Per video frame the MediaPipe Face Landmarker (Tasks API, VIDEO mode, one face) gives 52 blendshape scores
(``_neutral`` plus 51 ARKit names; it has no ``tongueOut``, which stays 0) and a 4×4 facial transformation
matrix that maps MediaPipe's canonical face model (cm) into its metric camera space. That camera space is
right-handed with x to the image right, y up and z towards the viewer (the camera looks along -z), which is
exactly the ksdiff head frame (``ksdiff.face.specs``: x to the subject's left as seen by the camera, y up, z
towards the camera). So the head rotation is the matrix's 3×3 block as an axis-angle vector, unchanged:
a positive ``headRotX`` pitches the face down (forehead towards the camera), a positive ``headRotY`` turns the
nose towards the image right (the subject's left), a positive ``headRotZ`` tilts the head towards the image
left. The translation (cm) is stored relative to the clip's median position, so the head path is centred.

Frames are decoded with PyAV; their presentation times (relative to the audio stream's start) carry the
per-frame values, which are gap-filled (linear, slerp for the rotation) and resampled to the dataset's fps.
The motion has round(audio_seconds × fps) frames. Frames without a face are reported (count and time ranges),
never hidden; a clip is refused when too many frames or too long a stretch have no face.

mediapipe is an optional dependency (``pip install ksdiff[track]``), imported only when tracking.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator, Sequence

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ksdiff.audio.decode import SAMPLE_RATE, load_audio
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion, resample_coeffs
from ksdiff.face.specs import ARKIT_NAMES, get_spec

#: Environment variable naming the ``face_landmarker.task`` model file.
MODEL_ENV = "KSDIFF_FACE_LANDMARKER"
MODEL_URL = ("https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/"
             "face_landmarker.task")
#: Last resort: the project's shared assets beside the repository checkout.
_REPO_FALLBACK = Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "mediapipe" / "face_landmarker.task"
#: File suffixes taken as videos when a folder is given.
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".ts")
_NUM_LANDMARKS = 478


# ---------------------------------------------------------------------------------------------------------------
# Per-frame tracking


@dataclass
class TrackResult:
    """Raw per-video-frame tracking of one video.

    Attributes:
        source: the video file.
        times: (F,) float64 presentation time of each decoded frame in seconds, relative to the audio start.
        valid: (F,) bool, True where a face was found.
        blendshapes: (F, 52) float32 ARKit weights in ``ARKIT_NAMES`` order (NaN where no face).
        matrices: (F, 4, 4) float32 facial transformation matrices, cm (NaN where no face).
        landmarks: (F, 478, 3) float32 normalised image landmarks (x, y in [0, 1] of width/height; NaN where no
            face).
        video_fps: the stream's nominal frame rate.
        seconds: wall time spent decoding + tracking.
    """

    source: Path
    times: np.ndarray
    valid: np.ndarray
    blendshapes: np.ndarray
    matrices: np.ndarray
    landmarks: np.ndarray
    video_fps: float
    seconds: float = 0.0

    @property
    def num_frames(self) -> int:
        return int(len(self.times))

    @property
    def num_tracked(self) -> int:
        return int(self.valid.sum())

    @property
    def num_missing(self) -> int:
        return self.num_frames - self.num_tracked

    @property
    def frame_period(self) -> float:
        """Median spacing of the frame times (1 / nominal fps for a single frame)."""
        if len(self.times) > 1:
            return float(np.median(np.diff(self.times)))
        return 1.0 / self.video_fps if self.video_fps > 0 else 0.04

    @property
    def end_time(self) -> float:
        """Time at which the last frame stops being shown."""
        return float(self.times[-1] + self.frame_period) if len(self.times) else 0.0


def resolve_model_path(model: str | os.PathLike | None = None) -> Path:
    """The Face Landmarker ``.task`` file: ``model``, else ``$KSDIFF_FACE_LANDMARKER``, else (last resort)
    ``../shared/assets/mediapipe/face_landmarker.task`` beside the repository checkout."""
    if model is not None:
        p = Path(model).expanduser()
        if not p.is_file():
            raise KsdiffError("face landmarker model not found", p)
        return p
    env = os.environ.get(MODEL_ENV)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise KsdiffError(f"face landmarker model not found (from ${MODEL_ENV})", p)
        return p
    if _REPO_FALLBACK.is_file():
        return _REPO_FALLBACK
    raise KsdiffError(f"no MediaPipe face landmarker model: pass --model PATH or set {MODEL_ENV} "
                      f"(last resort looked for {_REPO_FALLBACK}, relative to the repository); "
                      f"the model is {MODEL_URL}")


def _import_mediapipe():
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as e:
        raise KsdiffError(f"the face tracker needs mediapipe ({e}); install it with: pip install ksdiff[track]") \
            from None
    return mp, BaseOptions, vision


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool = True) -> Iterator[IO[str]]:
    """Send file descriptor 2 to /dev/null (MediaPipe's C++ logging) and yield a text stream on the real stderr
    (for the progress bar). Python-level ``sys.stderr`` writes inside the block are silenced too."""
    if not enabled:
        yield sys.stderr
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield sys.stderr
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    real = os.fdopen(os.dup(saved), "w", buffering=1, encoding="utf-8", errors="replace")
    try:
        os.dup2(devnull, 2)
        yield real
    finally:
        with contextlib.suppress(OSError, ValueError):
            real.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
        real.close()


def _arkit_index() -> dict[str, int]:
    return {n: i for i, n in enumerate(ARKIT_NAMES)}


def track_video(path: str | os.PathLike, model: str | os.PathLike | None = None, max_seconds: float | None = None,
                audio_start: float | None = None, progress: bool = True, desc: str | None = None,
                quiet: bool = True) -> TrackResult:
    """Track the face in every frame of ``path`` with the MediaPipe Face Landmarker (VIDEO mode, one face).

    Args:
        path: a video file (any container/codec PyAV decodes).
        model: the ``face_landmarker.task`` file (see :func:`resolve_model_path`).
        max_seconds: stop after this many seconds of video.
        audio_start: start time (s) of the audio stream; frame times are made relative to it
            (default: read from the file, 0 without audio).
        progress: show a tqdm bar (on terminals only).
        quiet: silence MediaPipe's native logging on stderr while tracking.

    Returns:
        :class:`TrackResult` with F decoded frames.
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise KsdiffError("video file not found", path)
    model_path = resolve_model_path(model)
    mp, BaseOptions, vision = _import_mediapipe()
    from tqdm import tqdm

    t_start = time.perf_counter()
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:  # type: ignore[attr-defined]
        raise KsdiffError(f"not readable as video ({type(e).__name__}: {str(e)[:120]})", path) from None
    track = _Track()
    with container:
        stream, fps, audio_start, total = _video_stream(container, path, audio_start, max_seconds)
        with _native_stderr_silenced(quiet) as err:
            landmarker = _create_landmarker(BaseOptions, vision, model_path)
            bar = tqdm(total=total, unit="frame", desc=desc or path.stem, file=err, leave=False,
                       disable=None if progress else True)
            try:
                with contextlib.closing(_video_frames(container, stream, fps, max_seconds)) as frames:
                    for t, rgb, ms in frames:
                        res = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb), ms)
                        track.add(t - audio_start, res)
                        bar.update(1)
            except av.error.FFmpegError as e:  # type: ignore[attr-defined]
                raise KsdiffError(f"video decoding failed at frame {len(track.times)} ({str(e)[:120]})",
                                  path) from None
            finally:
                bar.close()
                landmarker.close()
    if not track.times:
        raise KsdiffError("the video stream has no frames", path)
    return track.result(path, fps, time.perf_counter() - t_start)


def _create_landmarker(BaseOptions, vision, model_path: Path):
    """A MediaPipe FaceLandmarker for video (one face, blendshapes and transformation matrices) from the
    ``face_landmarker.task`` at ``model_path``."""
    options = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model_path)),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=1,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    try:
        return vision.FaceLandmarker.create_from_options(options)
    except (RuntimeError, ValueError) as e:
        raise KsdiffError(f"MediaPipe could not load this face landmarker model ({str(e)[:120]})",
                          model_path) from None


def _video_stream(container, path: Path, audio_start: float | None,
                  max_seconds: float | None) -> tuple[object, float, float, int | None]:
    """(the first video stream, its fps, the audio start in s (``audio_start``, else the audio stream's, else 0),
    the frame count to expect or None) of an open PyAV ``container``."""
    vstreams = [s for s in container.streams if s.type == "video"]
    if not vstreams:
        raise KsdiffError("no video stream in this file", path)
    stream = vstreams[0]
    stream.thread_type = "AUTO"
    fps = float(stream.average_rate or stream.guessed_rate or 25)
    if audio_start is None:
        astreams = [s for s in container.streams if s.type == "audio"]
        a = astreams[0] if astreams else None
        audio_start = float(a.start_time * a.time_base) if a is not None and a.start_time is not None else 0.0
    total = stream.frames or None
    if total is None and stream.duration is not None and stream.time_base is not None:
        total = int(round(float(stream.duration * stream.time_base) * fps))
    if max_seconds is not None and total:
        total = min(total, int(np.ceil(max_seconds * fps)))
    return stream, fps, audio_start, total


def _video_frames(container, stream, fps: float, max_seconds: float | None) -> Iterator[tuple[float, np.ndarray, int]]:
    """(presentation time in s, (H, W, 3) uint8 RGB, strictly increasing timestamp in ms from the first frame, as
    MediaPipe's VIDEO mode needs) of each frame of ``stream``, up to ``max_seconds`` after the first."""
    last_ms = -1
    t0 = None
    for index, frame in enumerate(container.decode(stream)):
        t = float(frame.time) if frame.time is not None else index / fps
        if t0 is None:
            t0 = t
        if max_seconds is not None and t - t0 >= max_seconds - 1e-9:
            break
        rgb = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
        ms = max(int(round((t - t0) * 1000.0)), last_ms + 1)
        last_ms = ms
        yield t, rgb, ms


class _Track:
    """The per-frame results of one video as they come (NaN rows where no face was found)."""

    _NAN_SHAPE = np.full(len(ARKIT_NAMES), np.nan, np.float32)
    _NAN_MAT = np.full((4, 4), np.nan, np.float32)
    _NAN_LM = np.full((_NUM_LANDMARKS, 3), np.nan, np.float32)

    def __init__(self) -> None:
        self.arkit = _arkit_index()
        self.times: list[float] = []
        self.valid: list[bool] = []
        self.shapes: list[np.ndarray] = []
        self.mats: list[np.ndarray] = []
        self.lms: list[np.ndarray] = []

    def add(self, t: float, res) -> None:
        """One frame at time ``t`` (s) with its FaceLandmarker result ``res``."""
        self.times.append(t)
        if res.face_landmarks and res.face_blendshapes and res.facial_transformation_matrixes:
            w = np.zeros(len(ARKIT_NAMES), np.float32)  # tongueOut: MediaPipe has none, stays 0
            for cat in res.face_blendshapes[0]:
                i = self.arkit.get(cat.category_name)
                if i is not None:
                    w[i] = cat.score
            self.shapes.append(np.clip(w, 0.0, 1.0))
            self.mats.append(np.asarray(res.facial_transformation_matrixes[0], np.float32).reshape(4, 4))
            self.lms.append(np.array([(p.x, p.y, p.z) for p in res.face_landmarks[0]], np.float32))
            self.valid.append(True)
        else:
            self.shapes.append(self._NAN_SHAPE)
            self.mats.append(self._NAN_MAT)
            self.lms.append(self._NAN_LM)
            self.valid.append(False)

    def result(self, path: Path, fps: float, seconds: float) -> TrackResult:
        """The :class:`TrackResult` of the frames added (at least one)."""
        lm_arr = np.stack([x if x.shape == (_NUM_LANDMARKS, 3) else _pad_landmarks(x) for x in self.lms])
        return TrackResult(source=path, times=np.asarray(self.times, np.float64), valid=np.asarray(self.valid, bool),
                           blendshapes=np.stack(self.shapes).astype(np.float32),
                           matrices=np.stack(self.mats).astype(np.float32), landmarks=lm_arr, video_fps=fps,
                           seconds=seconds)


def _pad_landmarks(x: np.ndarray) -> np.ndarray:
    out = np.full((_NUM_LANDMARKS, 3), np.nan, np.float32)
    n = min(len(x), _NUM_LANDMARKS)
    out[:n] = x[:n]
    return out


# ---------------------------------------------------------------------------------------------------------------
# Head pose, gaps, resampling


def head_pose_from_matrices(matrices: np.ndarray) -> np.ndarray:
    """Head rotation and translation from facial transformation matrices.

    Args:
        matrices: (F, 4, 4) canonical-face-to-camera transforms (MediaPipe metric space, cm); rows with NaN
            give NaN.

    Returns:
        (F, 6) float64: axis-angle rotation (radians; x right, y up, z towards the camera, as in
        ``ksdiff.face.specs``) then translation (cm), both in the camera frame.
    """
    m = np.asarray(matrices, np.float64)
    out = np.full((len(m), 6), np.nan)
    ok = np.isfinite(m).all(axis=(1, 2))
    if ok.any():
        out[ok, :3] = Rotation.from_matrix(m[ok, :3, :3]).as_rotvec()  # nearest rotation (removes any scale)
        out[ok, 3:] = m[ok, :3, 3]
    return out


@dataclass
class Gap:
    """A run of consecutive frames without a face."""

    first: int  # index of the first missing frame
    count: int  # number of missing frames
    start_s: float  # time of the first missing frame
    end_s: float  # time the face is back (next tracked frame, or the end of the video)

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s

    def __str__(self) -> str:
        return f"{self.start_s:.2f}-{self.end_s:.2f} s"


def find_gaps(valid: np.ndarray, times: np.ndarray, end_time: float | None = None) -> list[Gap]:
    """Runs of ``valid == False``.

    Args:
        valid: (F,) bool.
        times: (F,) frame times in seconds.
        end_time: when the last frame ends (default: last time + median frame spacing).

    Returns:
        the gaps in time order; a gap lasts from its first missing frame to the next tracked frame (or
        ``end_time``).
    """
    valid = np.asarray(valid, bool)
    times = np.asarray(times, np.float64)
    if end_time is None:
        step = float(np.median(np.diff(times))) if len(times) > 1 else 0.0
        end_time = float(times[-1] + step) if len(times) else 0.0
    gaps: list[Gap] = []
    i, n = 0, len(valid)
    while i < n:
        if valid[i]:
            i += 1
            continue
        j = i
        while j < n and not valid[j]:
            j += 1
        end = float(times[j]) if j < n else float(end_time)
        gaps.append(Gap(first=i, count=j - i, start_s=float(times[i]), end_s=end))
        i = j
    return gaps


def fill_gaps(values: np.ndarray, valid: np.ndarray, times: np.ndarray,
              rotation_groups: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """Fill the rows of ``values`` where ``valid`` is False from the tracked rows around them.

    Inside the sequence: linear interpolation in time (spherical for each axis-angle column group in
    ``rotation_groups``); before the first / after the last tracked frame: the nearest tracked value.
    Which gaps may be filled at all is the caller's decision (:func:`tracking_problem`).

    Args:
        values: (F, C) per-frame values (anything in invalid rows is ignored).
        valid: (F,) bool, at least one True.
        times: (F,) increasing frame times.

    Returns:
        (F, C) float64 with every row finite where the valid rows were.
    """
    values = np.asarray(values, np.float64)
    valid = np.asarray(valid, bool)
    times = np.asarray(times, np.float64)
    if not valid.any():
        raise ValueError("fill_gaps needs at least one valid frame")
    out = values.copy()
    if valid.all():
        return out
    tv = times[valid]
    miss = ~valid
    for c in range(values.shape[1]):
        out[miss, c] = np.interp(times[miss], tv, values[valid, c])
    for group in rotation_groups:
        g = list(group)
        if valid.sum() == 1:
            out[np.ix_(miss, g)] = values[valid][:, g][0]
            continue
        slerp = Slerp(tv, Rotation.from_rotvec(values[np.ix_(valid, g)]))
        out[np.ix_(miss, g)] = slerp(np.clip(times[miss], tv[0], tv[-1])).as_rotvec()
    return out


def tracking_problem(result: TrackResult, max_gap_s: float, max_missing: float,
                     audio_seconds: float | None = None) -> str | None:
    """Why this tracking cannot become a clip (one line), or None when it can.

    Refused: no face at all; more than ``max_missing`` of the frames without a face; a run without a face
    longer than ``max_gap_s`` seconds; audio extending more than ``max_gap_s`` past the video.
    """
    n, k = result.num_frames, result.num_missing
    if result.num_tracked == 0:
        return f"no face found in any of the {n} video frames"
    reasons = []
    frac = k / n
    gaps = find_gaps(result.valid, result.times, result.end_time)
    if frac > max_missing:
        reasons.append(f"no face in {k} of {n} frames ({100 * frac:.0f}% > --max-missing {100 * max_missing:g}%)")
    long_gaps = [g for g in gaps if g.seconds > max_gap_s + 1e-9]
    if long_gaps:
        worst = max(long_gaps, key=lambda g: g.seconds)
        reasons.append(f"face lost for {worst.seconds:.2f} s at {worst} (> --max-gap-s {max_gap_s:g})"
                       + (f" and {len(long_gaps) - 1} more such gap(s)" if len(long_gaps) > 1 else ""))
    if audio_seconds is not None:
        before = max(0.0, float(result.times[0]))
        after = max(0.0, audio_seconds - result.end_time)
        if before > max_gap_s or after > max_gap_s:
            reasons.append(f"the video covers only {result.times[0]:.2f}-{result.end_time:.2f} s of "
                           f"{audio_seconds:.2f} s of audio")
    if reasons:
        return "; ".join(reasons) + ("; missing " + ", ".join(str(g) for g in gaps[:6])
                                     + (" ..." if len(gaps) > 6 else "") if gaps else "")
    return None


def motion_from_track(result: TrackResult, fps: float, num_frames: int) -> Motion:
    """The ``arkit`` motion of a tracking at ``fps`` with ``num_frames`` frames (gaps filled, see
    :func:`fill_gaps`; translation relative to the median over tracked frames).

    Returns:
        Motion with coeffs (num_frames, 58): 52 ARKit weights, headRotX/Y/Z (rad), headTx/Ty/Tz (cm).
    """
    spec = get_spec("arkit")
    pose = head_pose_from_matrices(result.matrices)
    per_frame = np.concatenate([result.blendshapes.astype(np.float64), pose], axis=1)  # (F, 58)
    per_frame[:, 55:58] -= np.median(per_frame[result.valid, 55:58], axis=0)
    rot = [[52, 53, 54]]
    filled = fill_gaps(per_frame, result.valid, result.times, rotation_groups=rot)
    coeffs = resample_coeffs(filled, result.video_fps, fps, num_frames=num_frames, rotation_groups=rot,
                             times=result.times)
    coeffs[:, :52] = np.clip(coeffs[:, :52], 0.0, 1.0)
    return Motion(coeffs, spec.channels, fps, "arkit")


# ---------------------------------------------------------------------------------------------------------------
# Clips and datasets


@dataclass
class TrackedClip:
    """One video turned into a dataset clip."""

    id: str
    source: Path
    wave: np.ndarray  # (N,) float32 16 kHz
    motion: Motion
    result: TrackResult
    meta: dict = field(default_factory=dict)

    def summary(self) -> str:
        r = self.result
        ms = 1000.0 * r.seconds / max(r.num_frames, 1)
        line = (f"{self.id}: {r.num_tracked}/{r.num_frames} frames tracked, {len(self.wave) / SAMPLE_RATE:.2f} s "
                f"-> {self.motion.num_frames} frames at {self.motion.fps:g} fps ({ms:.1f} ms/frame)")
        gaps = find_gaps(r.valid, r.times, r.end_time)
        if gaps:
            line += "; filled " + ", ".join(str(g) for g in gaps[:4]) + (" ..." if len(gaps) > 4 else "")
        return line


def track_clip(video: str | os.PathLike, clip_id: str | None = None, fps: float = 25.0,
               model: str | os.PathLike | None = None, max_gap_s: float = 0.5, max_missing: float = 0.2,
               max_seconds: float | None = None, progress: bool = True, need_speech: bool = True) -> TrackedClip:
    """Track one video into a clip: audio (16 kHz mono) + ``arkit`` motion of round(audio_seconds × fps) frames.
    ``need_speech=False`` (a reference of a face, not a training clip): a silent video, or one without an audio
    stream (empty ``wave``, motion as long as the video), is tracked too.

    Raises:
        KsdiffError: no audio stream or silent audio (unless ``need_speech`` is False), no video stream, or tracking
            refused (see :func:`tracking_problem`).
    """
    video = Path(video)
    if not video.is_file():
        raise KsdiffError("video file not found", video)
    # first: cheap, and a video without audio fails before tracking
    wave = load_audio(video, allow_silent=not need_speech, allow_missing=not need_speech)
    if max_seconds is not None:
        wave = wave[: int(round(max_seconds * SAMPLE_RATE))]
    cid = clip_id or _sanitize(video.stem)
    result = track_video(video, model=model, max_seconds=max_seconds, progress=progress, desc=cid)
    audio_seconds = len(wave) / SAMPLE_RATE if len(wave) else result.end_time
    problem = tracking_problem(result, max_gap_s, max_missing, audio_seconds=audio_seconds)
    if problem:
        raise KsdiffError(problem, video)
    motion = motion_from_track(result, fps, int(round(audio_seconds * fps)))
    gaps = find_gaps(result.valid, result.times, result.end_time)
    meta = {
        "speaker": video.stem,
        "source": str(video.resolve()),
        "tracker": "mediapipe-face-landmarker",
        "video_fps": round(result.video_fps, 4),
        "video_frames": result.num_frames,
        "tracked_frames": result.num_tracked,
        "missing_frames": result.num_missing,
        "missing_ranges_s": [[round(g.start_s, 3), round(g.end_s, 3)] for g in gaps],
        # MediaPipe has no tongueOut: it is unknown, not zero
        "observed_channels": [c for c in get_spec("arkit").channels if c != "tongueOut"],
    }
    if max_seconds is not None:
        meta["max_seconds"] = max_seconds
    return TrackedClip(id=cid, source=video, wave=wave, motion=motion, result=result, meta=meta)


def find_videos(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand ``inputs`` (files, or folders searched recursively for video suffixes) into a sorted file list."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not found:
                raise KsdiffError(f"no video files ({', '.join(VIDEO_SUFFIXES[:4])}, ...) in this folder", p)
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise KsdiffError("video file not found", p)
    seen: set[Path] = set()
    unique = []
    for f in out:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique


def _sanitize(s: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.\-]+", "_", s).strip("_.-")
    return s or "clip"


def clip_ids(videos: Sequence[str | os.PathLike]) -> list[str]:
    """Unique clip ids from the videos' paths below their common folder, without suffix, joined by ``_``
    (``pcavs/Input/00002.mp4`` -> ``pcavs_Input_00002``; a single video -> its stem)."""
    paths = [Path(v).absolute() for v in videos]  # not resolve(): a symlink keeps its own name
    if not paths:
        return []
    root = Path(os.path.commonpath([p.parent for p in paths]))
    ids: list[str] = []
    for p in paths:
        rel = p.relative_to(root).with_suffix("")
        cid = _sanitize("_".join(rel.parts))
        base, k = cid, 2
        while cid in ids:
            cid = f"{base}-{k}"
            k += 1
        ids.append(cid)
    return ids


@dataclass
class TrackSummary:
    """What :func:`track_videos` did."""

    out: Path | None
    clips: list[TrackedClip]
    refused: list[tuple[Path, str]]  # (video, one-line reason)


def track_videos(videos: Sequence[str | os.PathLike], out: str | os.PathLike, fps: float = 25.0,
                 model: str | os.PathLike | None = None, max_gap_s: float = 0.5, max_missing: float = 0.2,
                 force: bool = False, max_seconds: float | None = None, progress: bool = True,
                 on_clip=None, on_refused=None) -> TrackSummary:
    """Track ``videos`` (files or folders) into the dataset folder ``out`` (written atomically at the end).

    A refused video does not stop the others; ``on_clip(TrackedClip)`` / ``on_refused(path, reason)`` are
    called as each video finishes. When every video is refused nothing is written and :class:`KsdiffError`
    is raised (for a single video: that video's own reason).
    """
    from ksdiff.data.dataset import DatasetWriter

    out = Path(out)
    files = find_videos(videos)
    if not files:
        raise KsdiffError("no videos given")
    if out.exists() and not force:
        raise KsdiffError("output exists (use --force to replace it)", out)
    if not (fps > 0):
        raise KsdiffError(f"--fps must be positive, got {fps}")
    if not (max_gap_s >= 0) or not (0 <= max_missing <= 1):
        raise KsdiffError("--max-gap-s must be >= 0 and --max-missing in [0, 1]")
    model_path = resolve_model_path(model)
    _import_mediapipe()
    ids = clip_ids(files)
    clips: list[TrackedClip] = []
    refused: list[tuple[Path, str]] = []
    writer = DatasetWriter(out, spec="arkit", fps=fps, name=out.name,
                           extra={"source": "ksdiff track", "tracker": "mediapipe-face-landmarker"})
    try:
        for video, cid in zip(files, ids):
            try:
                clip = track_clip(video, clip_id=cid, fps=fps, model=model_path, max_gap_s=max_gap_s,
                                  max_missing=max_missing, max_seconds=max_seconds, progress=progress)
                writer.add_clip(cid, clip.wave, clip.motion, meta=clip.meta, source=video)
            except KsdiffError as e:
                if len(files) == 1:
                    raise
                refused.append((video, str(e)))
                if on_refused:
                    on_refused(video, str(e))
                continue
            clips.append(clip)
            if on_clip:
                on_clip(clip)
        if not clips:
            raise KsdiffError(f"all {len(files)} videos were refused; nothing written", out)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return TrackSummary(out=out, clips=clips, refused=refused)


def jaw_envelope_correlation(dataset: str | os.PathLike) -> dict[str, float]:
    """Per clip of a dataset: Pearson r of tracked ``jawOpen`` with the speech envelope
    (``ksdiff.metrics.lipsync.envelope_correlation``), a check that the tracking follows the speech."""
    from ksdiff.data.dataset import open_dataset
    from ksdiff.metrics.lipsync import envelope_correlation

    ds = open_dataset(dataset)
    out = {}
    for clip in ds.clips():
        m = clip.motion()
        out[clip.id] = envelope_correlation(m.channel("jawOpen"), clip.audio(), ds.fps)
    return out
