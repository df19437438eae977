"""Face specs: the channels of one motion frame and how they split between the head and expression paths.

DESIGN.md section 1. Two specs:

``arkit`` (default)
    expression path: the 52 ARKit blendshape weights, Apple's names, in the order the iPhone's Live Link Face
    app writes them (``eyeBlinkLeft`` ... ``jawOpen``, ``mouthClose`` ... ``tongueOut``), each in [0, 1];
    head path: ``headRotX/Y/Z`` (axis-angle, radians) and ``headTx/Ty/Tz`` (cm).
``flame`` (the paper's)
    expression path: ``exp00`` ... ``exp49`` (FLAME expression coefficients) and, by default, the jaw
    ``jawRotX/Y/Z`` (DECA ``pose[3:6]``, axis-angle);
    head path: ``globalRotX/Y/Z`` (DECA ``pose[0:3]``) and camera ``camScale``, ``camTx``, ``camTy``.
    ``jaw_path="head"`` moves the jaw into the head path, as the paper does.

Head-frame convention (both specs): x to the subject's left as seen by the camera (image right), y up, z towards
the camera (OpenGL / ICT-FaceKit). Pitch is rotation about x, yaw about y, roll about z.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ksdiff.errors import KsdiffError

#: The 52 ARKit blendshapes in Live Link Face's column order (DESIGN.md section 6).
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight",
    "eyeWideRight",
    "jawForward", "jawRight", "jawLeft", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthRight", "mouthLeft",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft",
    "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)
assert len(ARKIT_NAMES) == 52

ARKIT_HEAD: tuple[str, ...] = ("headRotX", "headRotY", "headRotZ", "headTx", "headTy", "headTz")

FLAME_EXP: tuple[str, ...] = tuple(f"exp{i:02d}" for i in range(50))
FLAME_GLOBAL: tuple[str, ...] = ("globalRotX", "globalRotY", "globalRotZ")
FLAME_JAW: tuple[str, ...] = ("jawRotX", "jawRotY", "jawRotZ")
FLAME_CAM: tuple[str, ...] = ("camScale", "camTx", "camTy")

#: Channels of the lower face that carry lip sync (used by metrics and baselines).
ARKIT_MOUTH: tuple[str, ...] = tuple(n for n in ARKIT_NAMES if n.startswith(("jaw", "mouth", "tongue", "cheekPuff")))

#: ARKit's mouthClose closes the lips against the jaw's opening (Apple: "closure of the lips independent of jaw
#: position"; jawOpen 1 with mouthClose 1 is a closed mouth on an open jaw). Above jawOpen it pushes the lips
#: through each other (on the ICT head mouthClose 0.3 alone puts the upper lip 11 mm below the lower), and real
#: captures never go there: mouthClose − jawOpen ≤ 0.014 on all 26 559 frames of FACEGOOD's animator curves and
#: the MediaPipe-tracked videos. docs/RESULTS.md, "Lips that pass through each other".
ARKIT_AT_MOST: tuple[tuple[str, str], ...] = (("mouthClose", "jawOpen"),)


@dataclass(frozen=True)
class FaceSpec:
    """The channel layout of one motion frame.

    Attributes:
        name: ``"arkit"`` or ``"flame"``.
        channels: all channel names, in storage order (C names).
        expression: names on the expression path (a subset of ``channels``).
        head: names on the head path.
        rotations: groups of three channels that form one axis-angle rotation (interpolated by slerp,
            and the head one used for the geodesic keyframe angle).
        head_rotation: the axis-angle group of the head (first 3 names of the head path).
        bounded: channels constrained to [0, 1] (blendshape weights).
        at_most: pairs ``(a, b)``: channel ``a`` never exceeds channel ``b`` (:data:`ARKIT_AT_MOST`).
        jaw_path: for ``flame``: ``"expression"`` (ksdiff default) or ``"head"`` (the paper).
    """

    name: str
    channels: tuple[str, ...]
    expression: tuple[str, ...]
    head: tuple[str, ...]
    rotations: tuple[tuple[str, str, str], ...]
    head_rotation: tuple[str, str, str]
    bounded: tuple[str, ...] = field(default=())
    at_most: tuple[tuple[str, str], ...] = field(default=())
    jaw_path: str = "expression"

    @property
    def dim(self) -> int:
        return len(self.channels)

    def index(self, names: tuple[str, ...] | list[str]) -> list[int]:
        """Column indices of ``names`` in ``channels``."""
        pos = {n: i for i, n in enumerate(self.channels)}
        return [pos[n] for n in names]

    @property
    def expression_idx(self) -> list[int]:
        return self.index(self.expression)

    @property
    def head_idx(self) -> list[int]:
        return self.index(self.head)

    @property
    def head_rotation_idx(self) -> list[int]:
        return self.index(self.head_rotation)

    def clip(self, coeffs: np.ndarray) -> np.ndarray:
        """``coeffs`` (T, C) made valid for the spec, in place, and returned: bounded channels clipped to [0, 1],
        then each ``at_most`` channel lowered to its limit (ARKit: mouthClose to jawOpen)."""
        if self.bounded:
            b = self.index(self.bounded)
            coeffs[:, b] = np.clip(coeffs[:, b], 0.0, 1.0)
        for a, b in self.at_most:
            i, j = self.channels.index(a), self.channels.index(b)
            coeffs[:, i] = np.minimum(coeffs[:, i], coeffs[:, j])
        return coeffs

    def to_dict(self) -> dict:
        return {"name": self.name, "jaw_path": self.jaw_path, "channels": list(self.channels)}


def get_spec(name: str, jaw_path: str = "expression") -> FaceSpec:
    """Return the face spec called ``name`` (``arkit`` or ``flame``)."""
    if jaw_path not in ("expression", "head"):
        raise KsdiffError(f"jaw_path must be 'expression' or 'head', not {jaw_path!r}")
    if name == "arkit":
        return FaceSpec(
            name="arkit",
            channels=ARKIT_NAMES + ARKIT_HEAD,
            expression=ARKIT_NAMES,
            head=ARKIT_HEAD,
            rotations=(ARKIT_HEAD[:3],),
            head_rotation=ARKIT_HEAD[:3],  # type: ignore[arg-type]
            bounded=ARKIT_NAMES,
            at_most=ARKIT_AT_MOST,
        )
    if name == "flame":
        channels = FLAME_EXP + FLAME_GLOBAL + FLAME_JAW + FLAME_CAM
        if jaw_path == "expression":
            expression, head = FLAME_EXP + FLAME_JAW, FLAME_GLOBAL + FLAME_CAM
        else:
            expression, head = FLAME_EXP, FLAME_GLOBAL + FLAME_JAW + FLAME_CAM
        return FaceSpec(
            name="flame",
            channels=channels,
            expression=expression,
            head=head,
            rotations=(FLAME_GLOBAL, FLAME_JAW),  # type: ignore[arg-type]
            head_rotation=FLAME_GLOBAL,  # type: ignore[arg-type]
            jaw_path=jaw_path,
        )
    raise KsdiffError(f"unknown face spec {name!r} (known: arkit, flame)")


SPEC_NAMES = ("arkit", "flame")
