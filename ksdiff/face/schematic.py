"""A 2D schematic face driven by the coefficients: no asset needed, so a fresh install can always show motion.

The "vertices" are 2D keypoints in millimetres (z = 0) of a drawn face: outline, brows, eyes (lids and pupils),
nose and the lips (outer and inner contours, 16 points each). What moves them (``arkit`` spec; the ``flame`` spec
drives the jaw from ``jawRotX`` and the head from ``globalRot*``):

==============================  =================================================================
eyes                            openness × (1 − eyeBlink) × (1 + 0.4·eyeWide) × (1 − 0.35·eyeSquint);
                                pupils follow eyeLookIn/Out/Up/Down
brows                           inner points up with browInnerUp, outer with browOuterUp, all down with browDown
mouth opening                   22 mm·max(jawOpen − mouthClose, 0) + 5 mm·mouthFunnel + 3 mm·mouthLowerDown/UpperUp
                                (ARKit's mouthClose closes the lips against the jaw's opening)
mouth width (per corner)        25 mm × (1 + 0.25·mouthStretch + 0.2·mouthSmile − 0.35·mouthPucker − 0.25·mouthFunnel)
corners                         up 6 mm·mouthSmile, down 5 mm·mouthFrown; mouthLeft/Right shift the mouth 8 mm
rounding                        mouthFunnel + mouthPucker turn the lens-shaped lips into an O
lips                            thinner with mouthRollUpper / mouthRollLower; cheekPuff widens the cheeks
chin                            drops with the jaw
head                            roll (headRotZ) = in-plane tilt about the neck; yaw / pitch (headRotY / X) and
                                headTx / Ty = offsets; headTz = scale
==============================  =================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ksdiff.face.base import FaceModel, channel_matrix
from ksdiff.face.motion import Motion
from ksdiff.face.specs import ARKIT_HEAD, ARKIT_NAMES, FLAME_GLOBAL, FLAME_JAW

N_OUTLINE, N_BROW, N_LID, N_LIP = 40, 5, 9, 8  # points per outline / brow / eyelid / lip half-contour
EYE_X, EYE_Y, EYE_HW, EYE_OPEN = 32.0, 20.0, 14.0, 7.0
MOUTH_Y, MOUTH_HW = -45.0, 25.0
PIVOT = np.array([0.0, -110.0])  # the neck, for the in-plane tilt
VIEW_MM = 250.0  # the drawing spans VIEW_MM × VIEW_MM around (0, -8) mm

SKIN = (224, 178, 150)
OUTLINE = (90, 60, 50)
LIP = (186, 92, 92)
MOUTH_IN = (70, 20, 25)
BG = (41, 43, 51)


def _layout() -> dict[str, slice]:
    names = [("outline", N_OUTLINE), ("brow_l", N_BROW), ("brow_r", N_BROW),
             ("lid_up_l", N_LID), ("lid_lo_l", N_LID), ("lid_up_r", N_LID), ("lid_lo_r", N_LID),
             ("pupil_l", 1), ("pupil_r", 1), ("nose", 5),
             ("lip_out_up", 2 * N_LIP), ("lip_out_lo", 2 * N_LIP), ("lip_in_up", 2 * N_LIP),
             ("lip_in_lo", 2 * N_LIP)]
    out, i = {}, 0
    for n, k in names:
        out[n] = slice(i, i + k)
        i += k
    return out


LAYOUT = _layout()
NUM_POINTS = max(s.stop for s in LAYOUT.values())


class SchematicFace(FaceModel):
    """2D keypoints of a drawn face (see the module docstring); ``vertices`` gives (T, V, 3) mm with z = 0."""

    name = "schematic"
    is_mesh = False

    def __init__(self, spec: str = "arkit"):
        self.spec = spec
        zero = Motion(np.zeros((1, 0), np.float32), (), 25.0, "")
        self.neutral = self.vertices(zero)[0]
        self.triangles = np.zeros((0, 3), dtype=np.int32)
        self.render_triangles = self.triangles
        self.vertex_colors = np.ones((NUM_POINTS, 3), dtype=np.float32)
        L = LAYOUT
        self.lip_vertices = np.concatenate([np.arange(NUM_POINTS)[L[k]] for k in
                                            ("lip_out_up", "lip_out_lo", "lip_in_up", "lip_in_lo")]).astype(np.int64)
        self.upper_face_vertices = np.concatenate([np.arange(NUM_POINTS)[L[k]] for k in
                                                   ("brow_l", "brow_r", "lid_up_l", "lid_lo_l", "lid_up_r",
                                                    "lid_lo_r")]).astype(np.int64)

    def check_motion(self, motion: Motion) -> None:  # any spec: unknown channels count as 0
        return None

    def _weights(self, motion: Motion) -> dict[str, np.ndarray]:
        T = motion.num_frames
        w = {n: v for n, v in zip(ARKIT_NAMES, channel_matrix(motion, ARKIT_NAMES).T)}
        head = channel_matrix(motion, ARKIT_HEAD)
        if self.spec == "flame" or (motion.spec == "flame"):
            jaw = channel_matrix(motion, FLAME_JAW)
            w["jawOpen"] = np.clip(jaw[:, 0] / 0.3, 0.0, 1.0)
            head = np.concatenate([channel_matrix(motion, FLAME_GLOBAL), np.zeros((T, 3), np.float32)], axis=1)
        w["_head"] = head
        return w

    def vertices(self, motion: Motion, indices: np.ndarray | None = None) -> np.ndarray:
        """(T, V, 3) float32 keypoints in mm (z = 0), or (T, K, 3) for ``indices``."""
        w = self._weights(motion)
        T = motion.num_frames
        P = np.zeros((T, NUM_POINTS, 2), dtype=np.float64)
        g = lambda n: w[n].astype(np.float64)  # noqa: E731

        jaw = np.clip(g("jawOpen"), 0, 1)
        opening = np.clip(22.0 * np.clip(jaw - g("mouthClose"), 0, None) + 5.0 * g("mouthFunnel")
                          + 1.5 * (g("mouthLowerDownLeft") + g("mouthLowerDownRight"))
                          + 1.5 * (g("mouthUpperUpLeft") + g("mouthUpperUpRight")), 0.0, None)
        chin_drop = 12.0 * jaw
        _place_outline(P, g, chin_drop)
        for side, s, sfx in (("l", 1.0, "Left"), ("r", -1.0, "Right")):
            _place_brow(P, g, side, s, sfx)
            _place_eye(P, g, side, s, sfx)
        sneer = 0.5 * (g("noseSneerLeft") + g("noseSneerRight"))
        P[:, LAYOUT["nose"], 0] = np.array([-1.0, -9.0, 0.0, 9.0, 1.0])
        P[:, LAYOUT["nose"], 1] = np.array([22.0, -12.0, -16.0, -12.0, 22.0]) + np.outer(sneer, [0, 3, 1, 3, 0])
        _place_mouth(P, g, opening, chin_drop)
        P = _pose_head(P, w["_head"].astype(np.float64))
        out = np.zeros((T, NUM_POINTS, 3), dtype=np.float32)
        out[..., :2] = P
        return out if indices is None else out[:, np.asarray(indices, dtype=np.int64)]


_Weight = Callable[[str], np.ndarray]  # a channel name -> its (T,) float64 weights


def _place_outline(P: np.ndarray, g: _Weight, chin_drop: np.ndarray) -> None:
    """Outline into the (T, V, 2) points ``P``: an egg, widened at the cheeks by cheekPuff, the lower half
    dropped with the jaw (``chin_drop`` (T,) mm)."""
    a = np.linspace(0, 2 * np.pi, N_OUTLINE, endpoint=False)
    ox, oy = 68.0 * np.sin(a), 92.0 * np.cos(a)
    lower = np.clip(-np.cos(a), 0, None)  # 0 at the top, 1 at the chin
    cheek = np.exp(-((oy + 40.0) / 25.0) ** 2)
    P[:, LAYOUT["outline"], 0] = ox * (1 + (0.08 * g("cheekPuff"))[:, None] * cheek) * (1 - 0.12 * lower ** 2)
    P[:, LAYOUT["outline"], 1] = oy - chin_drop[:, None] * lower ** 2


def _place_brow(P: np.ndarray, g: _Weight, side: str, s: float, sfx: str) -> None:
    """One brow (inner -> outer) into ``P``, for side ``s`` = +1 (subject's left, image right) / -1."""
    u = np.linspace(0, 1, N_BROW)
    bx = s * (14.0 + 36.0 * u)
    arch = 38.0 + 6.0 * np.sin(np.pi * (0.3 + 0.7 * u))
    lift = (np.outer(g("browInnerUp"), 9.0 * (1 - u)) + np.outer(g("browOuter" + "Up" + sfx), 9.0 * u)
            - np.outer(g("browDown" + sfx), 6.0 * (1.2 - 0.4 * u)))
    P[:, LAYOUT["brow_" + side], 0] = bx
    P[:, LAYOUT["brow_" + side], 1] = arch + lift


def _place_eye(P: np.ndarray, g: _Weight, side: str, s: float, sfx: str) -> None:
    """One eye into ``P``: lids from the inner to the outer corner (the opening closes with a blink) and the
    pupil ("out" is towards the face's side ``s``, "in" towards the nose)."""
    L = LAYOUT
    openness = (np.clip(1 - g("eyeBlink" + sfx), 0, 1) * (1 + 0.4 * g("eyeWide" + sfx))
                * (1 - 0.35 * g("eyeSquint" + sfx)))
    t = np.linspace(-1, 1, N_LID)
    prof = np.sqrt(np.clip(1 - t ** 2, 0, None))
    ex = s * EYE_X + EYE_HW * t * s
    P[:, L["lid_up_" + side], 0] = ex
    P[:, L["lid_up_" + side], 1] = EYE_Y + np.outer(EYE_OPEN * openness, prof)
    P[:, L["lid_lo_" + side], 0] = ex
    P[:, L["lid_lo_" + side], 1] = EYE_Y - np.outer(0.55 * EYE_OPEN * np.maximum(openness, 0.15), prof)
    look_x = s * (g("eyeLookOut" + sfx) - g("eyeLookIn" + sfx))
    look_y = g("eyeLookUp" + sfx) - g("eyeLookDown" + sfx)
    P[:, L["pupil_" + side], 0] = (s * EYE_X + 6.0 * look_x)[:, None]
    P[:, L["pupil_" + side], 1] = (EYE_Y + 3.0 * look_y)[:, None]


def _place_mouth(P: np.ndarray, g: _Weight, opening: np.ndarray, chin_drop: np.ndarray) -> None:
    """The four lip contours into ``P`` (``opening`` (T,) mm between the inner lips, ``chin_drop`` (T,) mm)."""
    L = LAYOUT
    shift = 8.0 * (g("mouthLeft") - g("mouthRight"))
    rnd = np.clip(g("mouthFunnel") + g("mouthPucker"), 0, 1)
    e = (1.0 - 0.5 * rnd)[:, None]  # profile exponent: 1 = lens (parabola), 0.5 = round (ellipse)
    half = {}
    corner_y = {}
    for s, sfx in ((1.0, "Left"), (-1.0, "Right")):
        half[s] = MOUTH_HW * (1 + 0.25 * g("mouthStretch" + sfx) + 0.2 * g("mouthSmile" + sfx)
                              - 0.35 * g("mouthPucker") - 0.25 * g("mouthFunnel"))
        corner_y[s] = 6.0 * g("mouthSmile" + sfx) - 5.0 * g("mouthFrown" + sfx) - 0.3 * chin_drop
    t = np.linspace(-1, 1, 2 * N_LIP)  # from the image-left (s = -1) corner to the image-right one
    tt = np.abs(t)[None, :]
    xs = np.where(t[None, :] < 0, t[None, :] * half[-1.0][:, None], t[None, :] * half[1.0][:, None])
    cy = np.where(t[None, :] < 0, corner_y[-1.0][:, None], corner_y[1.0][:, None]) * tt
    prof = np.clip(1 - tt ** 2, 0, None) ** e
    up_in = MOUTH_Y + cy + (0.3 * opening)[:, None] * prof
    lo_in = MOUTH_Y + cy - (0.7 * opening)[:, None] * prof
    up_th = (6.0 * (1 - 0.7 * g("mouthRollUpper")))[:, None]
    lo_th = (7.5 * (1 - 0.7 * g("mouthRollLower")))[:, None]
    cupid = 1.0 - 0.25 * np.exp(-(t[None, :] / 0.15) ** 2)  # a dip in the middle of the upper lip
    x = xs + shift[:, None]
    for k in ("lip_out_up", "lip_out_lo", "lip_in_up", "lip_in_lo"):
        P[:, L[k], 0] = x
    P[:, L["lip_in_up"], 1] = up_in
    P[:, L["lip_in_lo"], 1] = lo_in
    P[:, L["lip_out_up"], 1] = up_in + up_th * prof ** 0.5 * cupid
    P[:, L["lip_out_lo"], 1] = lo_in - lo_th * prof ** 0.5


def _pose_head(P: np.ndarray, head: np.ndarray) -> np.ndarray:
    """(T, V, 2) points ``P`` posed by the (T, 6) ``head`` channels (rot x, y, z, translation x, y, z): roll =
    in-plane tilt about the neck; yaw / pitch / translation = offsets; headTz = scale."""
    roll, yaw, pitch = head[:, 2], head[:, 1], head[:, 0]
    c, sn = np.cos(roll), np.sin(roll)
    rel = P - PIVOT
    P = np.stack([c[:, None] * rel[..., 0] - sn[:, None] * rel[..., 1],
                  sn[:, None] * rel[..., 0] + c[:, None] * rel[..., 1]], axis=-1) + PIVOT
    scale = 1.0 + 10.0 * head[:, 5] / 500.0
    P *= scale[:, None, None]
    P[..., 0] += (120.0 * np.sin(yaw) + 10.0 * head[:, 3])[:, None]
    P[..., 1] += (-120.0 * np.sin(pitch) + 10.0 * head[:, 4])[:, None]
    return P


class SchematicRenderer:
    """Draws schematic keypoints (V, 3) as an (H, W, 3) uint8 image with Pillow (2× supersampled)."""

    backend = "schematic"

    def __init__(self, size: int, supersample: int = 2):
        self.width = self.height = int(size)
        self.ss = supersample

    def _px(self, pts: np.ndarray) -> list[tuple[float, float]]:
        S = self.width * self.ss
        k = S / VIEW_MM
        return [(float(S / 2 + k * x), float(S / 2 - k * (y + 8.0))) for x, y in pts[:, :2]]

    def render(self, verts: np.ndarray) -> np.ndarray:
        from PIL import Image, ImageDraw

        S = self.width * self.ss
        k = S / VIEW_MM
        lw = max(1, int(round(1.6 * k)))
        img = Image.new("RGB", (S, S), BG)
        d = ImageDraw.Draw(img)
        L = LAYOUT
        d.polygon(self._px(verts[L["outline"]]), fill=SKIN, outline=OUTLINE, width=lw)
        for side in ("l", "r"):
            d.line(self._px(verts[L["brow_" + side]]), fill=(80, 55, 45), width=int(3.2 * k), joint="curve")
            up, lo = verts[L["lid_up_" + side]], verts[L["lid_lo_" + side]]
            eye = self._px(np.concatenate([up, lo[::-1]]))
            opening = float((up[:, 1] - lo[:, 1]).max())
            if opening > 1.0:
                # The eye white, then the iris clipped to the lids (masks over the eye's bounding box only).
                d.polygon(eye, fill=(245, 245, 240))
                (px, py), = self._px(verts[L["pupil_" + side]])
                r, r2 = 5.5 * k, 2.4 * k
                xs, ys = [p[0] for p in eye] + [px - r, px + r], [p[1] for p in eye] + [py - r, py + r]
                bx0, by0 = int(max(min(xs) - 2, 0)), int(max(min(ys) - 2, 0))
                bx1, by1 = int(min(max(xs) + 3, S)), int(min(max(ys) + 3, S))
                if bx1 > bx0 and by1 > by0:
                    box = (bx1 - bx0, by1 - by0)
                    shift = lambda pts: [(x - bx0, y - by0) for x, y in pts]  # noqa: E731
                    mask = Image.new("L", box, 0)
                    ImageDraw.Draw(mask).polygon(shift(eye), fill=255)
                    iris = img.crop((bx0, by0, bx1, by1))
                    di = ImageDraw.Draw(iris)
                    cx, cy = px - bx0, py - by0
                    di.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(90, 60, 35))
                    di.ellipse([cx - r2, cy - r2, cx + r2, cy + r2], fill=(15, 12, 10))
                    img.paste(iris, (bx0, by0), mask)
                    d = ImageDraw.Draw(img)
            d.line(self._px(up), fill=OUTLINE, width=lw * 2, joint="curve")
            d.line(self._px(lo), fill=OUTLINE, width=lw, joint="curve")
        nose = verts[L["nose"]]
        d.line(self._px(nose[:2]), fill=OUTLINE, width=lw)  # the bridge, then the base of the nose
        d.line(self._px(nose[1:4]), fill=OUTLINE, width=lw, joint="curve")
        # Lips: the outer contour filled with lip colour, the inner (the opening) dark.
        out_up, out_lo = verts[L["lip_out_up"]], verts[L["lip_out_lo"]]
        in_up, in_lo = verts[L["lip_in_up"]], verts[L["lip_in_lo"]]
        d.polygon(self._px(np.concatenate([out_up, out_lo[::-1]])), fill=LIP, outline=(120, 50, 50), width=lw)
        if float((in_up[:, 1] - in_lo[:, 1]).max()) > 0.3:
            d.polygon(self._px(np.concatenate([in_up, in_lo[::-1]])), fill=MOUTH_IN)
        else:
            d.line(self._px(in_up), fill=(120, 50, 50), width=lw, joint="curve")
        img = img.resize((self.width, self.height), Image.LANCZOS)
        return np.asarray(img, dtype=np.uint8).copy()

    def close(self) -> None:
        pass
