"""The Live Link Face CSV format (Epic's iPhone app; DESIGN.md section 6): its layout, timecodes and head angles
in one place, and a writer.

The reader (:mod:`ksdiff.data.importers.livelink`) imports everything it needs from here, so the two can never
disagree about the layout.

Layout, one row a frame::

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll
    14:03:52:28.207,61,0.0123,...

* ``Timecode`` is ``HH:MM:SS:FF.fff``: time of day, ``FF.fff`` counting frames at 60 fps with a sub-frame
  fraction (so ``00:00:01:30.000`` is 1.5 s).
* ``BlendShapeCount`` is 61: the 52 ARKit blendshapes + 3 head + 6 eye angles.
* The blendshapes use Apple's names capitalised (``EyeBlinkLeft`` for ARKit's ``eyeBlinkLeft``), weights in [0, 1].
* Head and eye angles are in radians.

Head angles ↔ the spec's axis-angle ``headRotX/Y/Z`` (head frame of :mod:`ksdiff.face.specs`: x to the subject's
left, y up, z towards the camera; pitch about x, yaw about y, roll about z, each positive right-handed)::

    R = R_y(yaw) · R_x(pitch) · R_z(roll)        # intrinsic Y-X-Z: turn, then nod, then tilt

``euler_to_rotvec`` and ``rotvec_to_euler`` are exact inverses for |pitch| < 90° (a head never reaches the
gimbal lock at ±90°).
"""

from __future__ import annotations

import math
import os
import struct

import numpy as np
from scipy.spatial.transform import Rotation

from ksdiff.errors import KsdiffError
from ksdiff.face.specs import ARKIT_HEAD, ARKIT_NAMES

#: Live Link Face timecodes count frames at this rate (``FF`` in ``HH:MM:SS:FF.fff``).
TIMECODE_FPS = 60
#: The app's capture rate (a take folder's CSV has one row per 1/60 s unless frames were dropped).
LIVELINK_FPS = 60.0

TIMECODE_COLUMN = "Timecode"
COUNT_COLUMN = "BlendShapeCount"  # the app writes "BlendShapeCount"; readers match column names case-insensitively
#: The 52 blendshape columns, in the app's order: ARKit names with the first letter capitalised.
BLENDSHAPE_COLUMNS: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
HEAD_COLUMNS: tuple[str, str, str] = ("HeadYaw", "HeadPitch", "HeadRoll")
EYE_COLUMNS: tuple[str, ...] = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                                "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
#: The 61 value columns after Timecode and BlendShapeCount.
VALUE_COLUMNS: tuple[str, ...] = BLENDSHAPE_COLUMNS + HEAD_COLUMNS + EYE_COLUMNS
HEADER: tuple[str, ...] = (TIMECODE_COLUMN, COUNT_COLUMN) + VALUE_COLUMNS
BLENDSHAPE_COUNT = len(VALUE_COLUMNS)  # 61
assert BLENDSHAPE_COUNT == 61

#: Live Link column -> arkit spec channel (``EyeBlinkLeft`` -> ``eyeBlinkLeft``).
COLUMN_TO_ARKIT: dict[str, str] = dict(zip(BLENDSHAPE_COLUMNS, ARKIT_NAMES))
#: Euler order for scipy (upper case = intrinsic): yaw about y, then pitch about x, then roll about z.
EULER_ORDER = "YXZ"
HEAD_ROT_CHANNELS: tuple[str, str, str] = ARKIT_HEAD[:3]  # headRotX, headRotY, headRotZ

_SECONDS_PER_DAY = 24 * 3600


def euler_to_rotvec(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """Live Link head angles (radians, each (T,)) -> axis-angle (T, 3) = (headRotX, headRotY, headRotZ).

    ``R = R_y(yaw) · R_x(pitch) · R_z(roll)``; a pure yaw gives (0, yaw, 0), a pure pitch (pitch, 0, 0).
    """
    angles = np.stack([np.asarray(yaw, np.float64), np.asarray(pitch, np.float64),
                       np.asarray(roll, np.float64)], axis=-1).reshape(-1, 3)
    return Rotation.from_euler(EULER_ORDER, angles).as_rotvec()


def rotvec_to_euler(rotvec: np.ndarray) -> np.ndarray:
    """Axis-angle (T, 3) -> (T, 3) columns (yaw, pitch, roll) in radians; the inverse of :func:`euler_to_rotvec`."""
    rv = np.asarray(rotvec, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_rotvec(rv).as_euler(EULER_ORDER)


def parse_timecode(text: str) -> float:
    """``HH:MM:SS:FF.fff`` (FF = frames at 60 fps, with a sub-frame fraction) -> seconds since midnight.

    Raises:
        ValueError: not a timecode of that form.
    """
    parts = text.strip().split(":")
    if len(parts) != 4:
        raise ValueError(f"timecode {text.strip()!r} is not HH:MM:SS:FF.fff")
    hh, mm, ss = (int(p) for p in parts[:3])
    ff = float(parts[3])
    if not (0 <= mm < 60 and 0 <= ss < 60 and 0 <= ff < TIMECODE_FPS + 1) or hh < 0 or not math.isfinite(ff):
        raise ValueError(f"timecode {text.strip()!r} is out of range")
    return hh * 3600 + mm * 60 + ss + ff / TIMECODE_FPS


def format_timecode(seconds: float) -> str:
    """Seconds (since midnight) -> ``HH:MM:SS:FF.fff``; the inverse of :func:`parse_timecode` to 1/60000 s."""
    ticks = int(round(float(seconds) * TIMECODE_FPS * 1000))  # thousandths of a 60 fps frame
    ticks %= _SECONDS_PER_DAY * TIMECODE_FPS * 1000
    whole_s, sub = divmod(ticks, TIMECODE_FPS * 1000)
    hh, rem = divmod(whole_s, 3600)
    mm, ss = divmod(rem, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{sub // 1000:02d}.{sub % 1000:03d}"


def unwrap_times(seconds: np.ndarray) -> np.ndarray:
    """Time-of-day seconds (T,) -> seconds since the first row, unwrapping a pass through midnight."""
    t = np.asarray(seconds, dtype=np.float64).copy()
    jumps = np.diff(t) < -_SECONDS_PER_DAY / 2  # 23:59:59 -> 00:00:00
    t[1:] += np.cumsum(jumps) * _SECONDS_PER_DAY
    return t - t[0]


def write_livelink_csv(motion, path: str | os.PathLike, fps: float | None = None, start: float = 0.0) -> None:
    """Write an ``arkit`` motion as a Live Link Face CSV (atomically).

    Args:
        motion: :class:`ksdiff.face.motion.Motion` in the ``arkit`` spec; ``coeffs`` (T, 58).
        path: the ``.csv`` to write.
        fps: write at this frame rate (e.g. 60, the app's own rate; rotation-aware resampling); default: the
            motion's own rate, whose frame times the ``Timecode`` column carries exactly.
        start: timecode of the first row, in seconds since midnight.

    The 52 blendshapes are written clipped to [0, 1]; ``headRotX/Y/Z`` as ``HeadYaw/Pitch/Roll`` (see the module
    docstring); eye angles as 0 (the spec has no eye rotation); head translation is not part of the format and
    is dropped. Importing the file back (:func:`ksdiff.data.importers.livelink.read_livelink_csv`) gives the
    same blendshapes and head rotation (to float32 precision) and zero translation.
    """
    from ksdiff.face.motion import Motion
    from ksdiff.face.specs import get_spec
    from ksdiff.utils.io import atomic_path

    if not isinstance(motion, Motion):
        raise TypeError("write_livelink_csv needs a ksdiff.face.motion.Motion")
    spec = get_spec("arkit")
    if motion.spec != "arkit" or tuple(motion.channels) != spec.channels:
        raise KsdiffError(f"Live Link Face CSV export needs an 'arkit' motion (got spec {motion.spec!r} "
                          f"with {len(motion.channels)} channels)", path)
    if fps is not None and abs(float(fps) - motion.fps) > 1e-9:
        motion = motion.resample(float(fps))
    coeffs = motion.coeffs.astype(np.float64)
    if not np.isfinite(coeffs).all():
        raise KsdiffError("motion has NaN/inf values; nothing written", path)
    T = coeffs.shape[0]
    values = livelink_values(coeffs)
    lines = [",".join(HEADER)]
    for i in range(T):
        tc = format_timecode(start + i / motion.fps)
        lines.append(f"{tc},{BLENDSHAPE_COUNT}," + ",".join(_fmt(v) for v in values[i]))
    with atomic_path(path, suffix=".csv") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def livelink_values(coeffs: np.ndarray) -> np.ndarray:
    """``arkit`` coefficients (T, 58) -> the 61 Live Link values (T, 61) float64 in CSV order
    (:data:`VALUE_COLUMNS`): blendshapes clipped to [0, 1], head yaw/pitch/roll in radians, eye angles 0."""
    from ksdiff.face.specs import get_spec

    spec = get_spec("arkit")
    coeffs = np.asarray(coeffs, dtype=np.float64).reshape(-1, spec.dim)
    shapes = np.clip(coeffs[:, spec.index(ARKIT_NAMES)], 0.0, 1.0)
    head = rotvec_to_euler(coeffs[:, spec.index(HEAD_ROT_CHANNELS)])  # (T, 3) yaw, pitch, roll
    return np.concatenate([shapes, head, np.zeros((len(coeffs), len(EYE_COLUMNS)))], axis=1)


# ------------------------------------------------------------------------------------------------ UDP packets
#
# The app streams one UDP datagram per frame to Unreal's Live Link plugin (default port 11111). Layout, every
# number big-endian except where said:
#
#     uint8   version (6)
#     int32   length n, then n bytes   device id (UTF-8; the app sends a UUID)
#     int32   length m, then m bytes   subject name (UTF-8; the Live Link subject Unreal shows)
#     int32   frame number  } FQualifiedFrameTime: the frame time is (frame number + sub-frame) at
#     float32 sub-frame     }   numerator / denominator frames per second
#     int32   numerator
#     int32   denominator
#     uint8   value count (61)
#     61 x float32 values, in PACKET_COLUMNS order
#
# The 61 values are Unreal's ARKit blendshape enum order, which differs from the CSV's column order in two swapped
# pairs (JawLeft/JawRight and MouthLeft/MouthRight), then the head and eye angles as in the CSV.

PACKET_VERSION = 6
#: The default port of Unreal's Live Link Face source.
LIVELINK_PORT = 11111
#: The 61 values of a packet, in Unreal's order.
PACKET_COLUMNS: tuple[str, ...] = tuple(
    {"JawRight": "JawLeft", "JawLeft": "JawRight", "MouthRight": "MouthLeft", "MouthLeft": "MouthRight"}.get(c, c)
    for c in VALUE_COLUMNS)
_PACKET_FROM_CSV = np.array([VALUE_COLUMNS.index(c) for c in PACKET_COLUMNS])


def encode_packet(values: np.ndarray, subject: str, device_id: str, frame: int, subframe: float = 0.0,
                  fps: int = 60, denominator: int = 1) -> bytes:
    """One Live Link Face UDP datagram.

    Args:
        values: (61,) Live Link values in CSV order (:data:`VALUE_COLUMNS`, e.g. a row of :func:`livelink_values`);
            written in :data:`PACKET_COLUMNS` order.
        subject: the Live Link subject name; device_id: the sender's id (any string; the app uses a UUID).
        frame / subframe: the frame time, in frames at ``fps / denominator`` (the app: time of day at 60 fps).
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.shape != (BLENDSHAPE_COUNT,):
        raise KsdiffError(f"a Live Link frame has {BLENDSHAPE_COUNT} values, got {v.size}")
    dev, name = device_id.encode("utf-8"), subject.encode("utf-8")
    return b"".join([
        struct.pack("!B", PACKET_VERSION),
        struct.pack("!i", len(dev)), dev,
        struct.pack("!i", len(name)), name,
        struct.pack("!ifii", int(frame), float(subframe), int(fps), int(denominator)),
        struct.pack("!B", BLENDSHAPE_COUNT),
        struct.pack(f"!{BLENDSHAPE_COUNT}f", *v[_PACKET_FROM_CSV]),
    ])


def decode_packet(data: bytes) -> dict:
    """A Live Link Face UDP datagram -> ``{"version", "device_id", "subject", "frame", "subframe", "fps",
    "denominator", "values"}`` with ``values`` (61,) float32 in CSV order (:data:`VALUE_COLUMNS`).

    Raises:
        KsdiffError: the datagram is truncated or does not hold 61 values.
    """
    try:
        (version,) = struct.unpack_from("!B", data, 0)
        (n,) = struct.unpack_from("!i", data, 1)
        dev = data[5:5 + n].decode("utf-8")
        pos = 5 + n
        (m,) = struct.unpack_from("!i", data, pos)
        name = data[pos + 4:pos + 4 + m].decode("utf-8")
        pos += 4 + m
        frame, subframe, fps, den = struct.unpack_from("!ifii", data, pos)
        (count,) = struct.unpack_from("!B", data, pos + 16)
        if count != BLENDSHAPE_COUNT or len(data) != pos + 17 + 4 * count:
            raise KsdiffError(f"Live Link packet holds {count} values in {len(data)} bytes, expected "
                              f"{BLENDSHAPE_COUNT}")
        vals = np.array(struct.unpack_from(f"!{count}f", data, pos + 17), dtype=np.float32)
    except (struct.error, UnicodeDecodeError) as e:
        raise KsdiffError(f"not a Live Link Face packet ({e})") from None
    out = np.zeros(BLENDSHAPE_COUNT, np.float32)
    out[_PACKET_FROM_CSV] = vals
    return {"version": version, "device_id": dev, "subject": name, "frame": frame, "subframe": subframe,
            "fps": fps, "denominator": den, "values": out}


def _fmt(v: float) -> str:
    s = f"{v:.9g}"  # 9 significant digits: float32 values survive a round trip exactly
    return "0" if s in ("0", "-0") else s
