"""The motion file format (DESIGN.md section 1) and motion resampling.

A motion file is an ``.npz`` with ``coeffs`` (T, C) float32, ``channels`` (C names), ``fps`` and ``spec``;
it carries its own description, so a reader never guesses the layout.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from ksdiff.errors import KsdiffError
from ksdiff.face.specs import FaceSpec, get_spec
from ksdiff.utils.io import atomic_path

MOTION_FORMAT_VERSION = 1


@dataclass
class Motion:
    """Per-frame face motion.

    Attributes:
        coeffs: float32 array (T, C).
        channels: C channel names (in the spec's order when ``spec`` is set).
        fps: frames per second.
        spec: face spec name (``arkit`` / ``flame``) or ``""`` for a generic named-channel file.
    """

    coeffs: np.ndarray
    channels: tuple[str, ...]
    fps: float
    spec: str = "arkit"

    def __post_init__(self) -> None:
        self.coeffs = np.asarray(self.coeffs, dtype=np.float32)
        self.channels = tuple(str(c) for c in self.channels)
        self.fps = float(self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.coeffs.shape[0])

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def face_spec(self, jaw_path: str = "expression") -> FaceSpec:
        return get_spec(self.spec, jaw_path=jaw_path)

    def channel(self, name: str) -> np.ndarray:
        """One channel as a (T,) array."""
        try:
            return self.coeffs[:, self.channels.index(name)]
        except ValueError:
            raise KsdiffError(f"motion has no channel {name!r}") from None

    def select(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """Columns ``names`` as (T, len(names))."""
        idx = [self.channels.index(n) for n in names]
        return self.coeffs[:, idx]

    def resample(self, fps: float, num_frames: int | None = None) -> "Motion":
        """This motion at another frame rate (rotation-aware; see :func:`resample_coeffs`)."""
        rot_groups = _rotation_groups(self)
        coeffs = resample_coeffs(self.coeffs, self.fps, fps, num_frames=num_frames, rotation_groups=rot_groups)
        return Motion(coeffs, self.channels, fps, self.spec)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically to ``path`` (.npz)."""
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(
                tmp,
                coeffs=self.coeffs.astype(np.float32),
                channels=np.array(self.channels),
                fps=np.float32(self.fps),
                spec=np.array(self.spec),
                format_version=np.int32(MOTION_FORMAT_VERSION),
            )


def _rotation_groups(m: Motion) -> list[list[int]]:
    if m.spec not in ("arkit", "flame"):
        return []
    spec = get_spec(m.spec)
    out = []
    for group in spec.rotations:
        if all(g in m.channels for g in group):
            out.append([m.channels.index(g) for g in group])
    return out


def load_motion(path: str | os.PathLike, spec: str | None = None, validate: bool = True) -> Motion:
    """Read a motion ``.npz``; with ``validate``, raise :class:`KsdiffError` on the first problem found."""
    path = Path(path)
    if not path.is_file():
        raise KsdiffError("motion file not found", path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("coeffs", "channels", "fps") if k not in z.files]
            if missing:
                raise KsdiffError(f"not a ksdiff motion file (missing {', '.join(missing)})", path)
            coeffs = np.asarray(z["coeffs"])
            channels = tuple(str(c) for c in z["channels"].tolist())
            fps = float(z["fps"])
            file_spec = str(z["spec"]) if "spec" in z.files else ""
    except KsdiffError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KsdiffError(f"unreadable motion file ({type(e).__name__}: {e})", path) from None
    if coeffs.ndim != 2:
        raise KsdiffError(f"coeffs must be 2-D (T, C), got shape {coeffs.shape}", path)
    motion = Motion(coeffs, channels, fps, file_spec)
    if validate:
        problems = motion_problems(motion, spec=spec)
        if problems:
            raise KsdiffError(problems[0], path)
    return motion


def motion_problems(m: Motion, spec: str | None = None, fps: float | None = None,
                    audio_seconds: float | None = None) -> list[str]:
    """Every problem with ``m`` as a list of one-line messages (empty when valid).

    Checks: shape and channel count, channel names against the spec (``spec`` or the file's own), fps (and
    against ``fps`` when given), NaN/inf values, bounded channels far outside [0, 1], and the length against
    ``audio_seconds`` (must agree to within one frame + 1 %).
    """
    out: list[str] = []
    if m.coeffs.ndim != 2:
        return [f"coeffs must be 2-D (T, C), got shape {m.coeffs.shape}"]
    T, C = m.coeffs.shape
    if C != len(m.channels):
        out.append(f"coeffs has {C} columns but {len(m.channels)} channel names")
    if T == 0:
        out.append("motion has no frames")
    if not np.isfinite(m.fps) or m.fps <= 0:
        out.append(f"fps must be positive, got {m.fps}")
    elif fps is not None and abs(m.fps - fps) > 1e-3:
        out.append(f"fps {m.fps:g} differs from the dataset's {fps:g}")
    want = spec or m.spec
    if spec and m.spec and spec != m.spec:
        out.append(f"motion is in spec {m.spec!r}, expected {spec!r}")
    if want in ("arkit", "flame"):
        s = get_spec(want)
        if tuple(m.channels) != s.channels:
            missing = [c for c in s.channels if c not in m.channels]
            extra = [c for c in m.channels if c not in s.channels]
            if missing or extra:
                msg = f"channels do not match the {want} spec"
                if missing:
                    msg += f"; missing {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
                if extra:
                    msg += f"; unknown {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"
                out.append(msg)
            else:
                out.append(f"channels are not in the {want} spec's order")
        elif T > 0 and C == len(m.channels):
            b = s.index(s.bounded) if s.bounded else []
            if b:
                vals = m.coeffs[:, b]
                finite = vals[np.isfinite(vals)]
                if finite.size and (finite.min() < -0.05 or finite.max() > 1.05):
                    out.append(f"blendshape weights outside [0, 1] (min {finite.min():.3f}, max {finite.max():.3f})")
    elif want:
        out.append(f"unknown face spec {want!r}")
    bad = ~np.isfinite(m.coeffs)
    if bad.any():
        rows = np.where(bad.any(axis=1))[0]
        cols = sorted({m.channels[c] for c in np.where(bad.any(axis=0))[0] if c < len(m.channels)})
        out.append(f"{int(bad.sum())} NaN/inf values in {len(rows)} frames (first frame {rows[0]}; "
                   f"channels {', '.join(cols[:4])}{' ...' if len(cols) > 4 else ''})")
    if audio_seconds is not None and m.fps > 0 and T > 0:
        expect = audio_seconds * m.fps
        if abs(T - expect) > 1 + 0.01 * expect:
            out.append(f"motion has {T} frames ({T / m.fps:.2f} s) but the audio lasts {audio_seconds:.2f} s "
                       f"({expect:.0f} frames at {m.fps:g} fps)")
    return out


def resample_coeffs(coeffs: np.ndarray, src_fps: float, dst_fps: float, num_frames: int | None = None,
                    rotation_groups: list[list[int]] | None = None, times: np.ndarray | None = None) -> np.ndarray:
    """Resample (T, C) motion sampled at ``src_fps`` (or at explicit ``times`` in seconds) to ``dst_fps``.

    Ordinary channels are linearly interpolated; each axis-angle group in ``rotation_groups`` (3 column
    indices) is interpolated by spherical linear interpolation of the rotations, so that angles near ±π and
    large rotations are handled correctly. Frames beyond the source's ends hold the end values.

    Returns (num_frames, C) float32 where ``num_frames`` defaults to round(duration × dst_fps), duration being
    T / src_fps.
    """
    coeffs = np.asarray(coeffs, dtype=np.float64)
    T, C = coeffs.shape
    if times is None:
        times = np.arange(T) / float(src_fps)
        duration = T / float(src_fps)
    else:
        times = np.asarray(times, dtype=np.float64)
        duration = times[-1] + (times[-1] - times[0]) / max(T - 1, 1) if T > 1 else 0.0
    if num_frames is None:
        num_frames = int(round(duration * dst_fps))
    t_new = np.arange(num_frames) / float(dst_fps)
    if T == 0:
        raise KsdiffError("cannot resample a motion with no frames")
    if T == 1:
        return np.repeat(coeffs.astype(np.float32), num_frames, axis=0)
    t_clip = np.clip(t_new, times[0], times[-1])
    out = np.empty((num_frames, C), dtype=np.float64)
    for c in range(C):
        out[:, c] = np.interp(t_clip, times, coeffs[:, c])
    for group in rotation_groups or []:
        rots = Rotation.from_rotvec(coeffs[:, group])
        out[:, group] = Slerp(times, rots)(t_clip).as_rotvec()
    return out.astype(np.float32)
