"""The ICT-FaceKit head (USC ICT, MIT) driven by ARKit motion.

vertices = neutral + Σ_i w_i · delta_i over ICT's 53 expression shapes, then the rigid head pose
``v' = R(headRot) (v − pivot) + pivot + headT``. ARKit's 52 names map onto ICT's (``eyeBlinkLeft`` ↔
``eyeBlink_L``); ``browInnerUp`` and ``cheekPuff`` drive both of ICT's ``_L``/``_R`` halves; ARKit's ``tongueOut``
has no ICT shape and is ignored. ICT is in centimetres; everything here is converted to millimetres
(``headTx/Ty/Tz`` are in cm, as in the ``arkit`` spec).

The asset is the ``.npz`` written by ``ksdiff assets ict`` (keys ``neutral``, ``triangles``,
``triangle_region``, ``region_names``, ``region_ranges``, ``expression_names``, ``expression_deltas``,
``identity_deltas``, ``landmarks68``, ``lip_vertices``). It is found, in order, at the path given, at
``$KSDIFF_ICT_ASSET``, at ``<user data dir>/ict_face.npz`` and at ``../shared/assets/ict-facekit/ict_face.npz``
beside the repository.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.base import FaceModel, channel_matrix, find_asset, user_data_dir
from ksdiff.face.motion import Motion
from ksdiff.face.specs import ARKIT_HEAD, ARKIT_NAMES
from ksdiff.utils.io import atomic_path

CM_TO_MM = 10.0
ICT_ASSET_NAME = "ict_face.npz"
ICT_ENV = "KSDIFF_ICT_ASSET"
REQUIRED_KEYS = ("neutral", "triangles", "expression_names", "expression_deltas")

#: ICT-FaceKit's documented vertex ranges (README "Vertex index ranges"), used by ``ksdiff assets ict``.
ICT_REGIONS: tuple[tuple[str, int, int], ...] = (
    ("face", 0, 9409), ("head_neck", 9409, 11248), ("mouth_socket", 11248, 13294),
    ("eye_socket_left", 13294, 13678), ("eye_socket_right", 13678, 14062), ("gums_tongue", 14062, 17039),
    ("teeth", 17039, 21451), ("eyeball_left", 21451, 23021), ("eyeball_right", 23021, 24591),
)

# Albedo per region (linear-ish RGB in [0, 1]).
SKIN = (0.80, 0.60, 0.50)
LIPS = (0.72, 0.40, 0.40)
REGION_COLORS = {
    "face": SKIN, "head_neck": SKIN, "mouth_socket": (0.30, 0.08, 0.08), "eye_socket_left": (0.70, 0.50, 0.45),
    "eye_socket_right": (0.70, 0.50, 0.45), "gums_tongue": (0.70, 0.32, 0.32), "teeth": (0.93, 0.91, 0.85),
    "eyeball_left": (0.95, 0.95, 0.93), "eyeball_right": (0.95, 0.95, 0.93),
}
IRIS = (0.28, 0.18, 0.10)
PUPIL = (0.03, 0.03, 0.03)


def _repo_shared_asset() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "assets" / "ict-facekit" / ICT_ASSET_NAME


def find_ict_asset(path: str | os.PathLike | None = None, required: bool = True) -> Path | None:
    """Locate the ICT asset: ``path``, ``$KSDIFF_ICT_ASSET``, the user data dir, then ``../shared/assets``.

    Raises :class:`KsdiffError` (when ``required``) naming what to do if none exists; a given ``path`` or
    environment variable that does not exist is always an error.
    """
    return find_asset(path, ICT_ENV, [user_data_dir() / ICT_ASSET_NAME, _repo_shared_asset()], "ICT face asset",
                      f"build one with `ksdiff assets ict --src ICT-FaceKit` (writes "
                      f"{user_data_dir() / ICT_ASSET_NAME}), set ${ICT_ENV}, or use --face schematic", required)


def arkit_to_ict(ict_names: list[str] | tuple[str, ...]) -> np.ndarray:
    """(52, E) float32 matrix taking ARKit weights (ARKIT_NAMES order) to ICT expression weights."""
    arkit_pos = {n: i for i, n in enumerate(ARKIT_NAMES)}
    A = np.zeros((len(ARKIT_NAMES), len(ict_names)), dtype=np.float32)
    for j, name in enumerate(ict_names):
        base, side = name, ""
        if name.endswith(("_L", "_R")):
            base, side = name[:-2], {"_L": "Left", "_R": "Right"}[name[-2:]]
        src = arkit_pos.get(base + side)
        if src is None:
            src = arkit_pos.get(base)  # browInnerUp / cheekPuff: one ARKit weight drives both halves
        if src is not None:
            A[src, j] = 1.0
    return A


def load_ict_asset(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and check an ICT asset ``.npz`` (no pickles)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KsdiffError(f"unreadable ICT asset ({type(e).__name__}: {e})", path) from None
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise KsdiffError(f"not an ICT face asset (missing {', '.join(missing)})", path)
    V = data["neutral"].shape[0]
    E = len(data["expression_names"])
    if data["neutral"].shape != (V, 3) or data["expression_deltas"].shape != (E, V, 3):
        raise KsdiffError(f"ICT asset shapes disagree: neutral {data['neutral'].shape}, "
                          f"expression_deltas {data['expression_deltas'].shape}", path)
    tri = data["triangles"]
    if tri.ndim != 2 or tri.shape[1] != 3 or (tri.size and (tri.min() < 0 or tri.max() >= V)):
        raise KsdiffError("ICT asset triangles are not (F, 3) indices into the vertices", path)
    return data


class ICTFaceModel(FaceModel):
    """ICT-FaceKit driven by ``arkit`` motion (see the module docstring).

    Args:
        asset: the ``.npz`` asset (default: :func:`find_ict_asset`).
        identity: optional (K,) identity weights (K ≤ 20) for another head shape than the generic one.
    """

    name = "ict"
    spec = "arkit"

    def __init__(self, asset: str | os.PathLike | None = None, identity: np.ndarray | None = None):
        self.path = find_ict_asset(asset)
        data = load_ict_asset(self.path)
        neutral = data["neutral"].astype(np.float32) * CM_TO_MM
        if identity is not None:
            ids = np.asarray(data.get("identity_deltas", np.zeros((0,) + neutral.shape)), dtype=np.float32)
            w = np.asarray(identity, dtype=np.float32).reshape(-1)[: len(ids)]
            neutral = neutral + np.tensordot(w, ids[: len(w)], axes=1) * CM_TO_MM
        self.neutral = neutral
        V = neutral.shape[0]
        self.expression_names = [str(n) for n in data["expression_names"]]
        deltas = data["expression_deltas"].astype(np.float32) * CM_TO_MM  # (E, V, 3)
        self._deltas = deltas.reshape(len(self.expression_names), V * 3)  # (E, V*3)
        self._arkit_to_ict = arkit_to_ict(self.expression_names)  # (52, E)
        self.triangles = data["triangles"].astype(np.int32)

        # Regions: per-vertex region index from the ranges (everything "face" when absent).
        region_names = [str(n) for n in data.get("region_names", np.array(["face"]))]
        ranges = data.get("region_ranges", np.array([[0, V]], dtype=np.int64))
        vregion = np.zeros(V, dtype=np.int64)
        for r, (a, b) in enumerate(ranges):
            vregion[int(a):int(b)] = r
        self.region_names = region_names
        self.vertex_region = vregion
        self.landmarks68 = data.get("landmarks68")

        face_idx = np.where(vregion == region_names.index("face"))[0] if "face" in region_names else np.arange(V)
        if "lip_vertices" in data:
            self.lip_vertices = data["lip_vertices"].astype(np.int64)
        else:
            self.lip_vertices = lip_region(neutral, self.landmarks68, face_idx)
        # Upper face (FDD): face-region vertices above the nose tip (landmark 30), or above the face's mid-height.
        if self.landmarks68 is not None and len(self.landmarks68) == 68:
            y0 = neutral[int(self.landmarks68[30]), 1]
        else:
            y0 = 0.5 * (neutral[face_idx, 1].min() + neutral[face_idx, 1].max())
        self.upper_face_vertices = face_idx[neutral[face_idx, 1] > y0].astype(np.int64)

        # The rigid head pose pivots about a point near the top of the neck: centred in x, 35 % of the head's
        # height up from its lowest point, at the depth of the neck's base (the lowest 5 % of vertices).
        y = neutral[:, 1]
        low = y <= np.quantile(y, 0.05)
        self.pivot = np.array([0.0, y.min() + 0.35 * (y.max() - y.min()), neutral[low, 2].mean()], np.float32)

        # The camera frames the head from 3 cm below the chin (≈ the pivot's height) to the top of the head.
        self.frame_vertices = np.where(neutral[:, 1] >= self.pivot[1] - 30.0)[0]
        self.vertex_colors = self._colors()
        self.render_triangles = self.triangles
        # The outer skin (face, head and neck) is a closed surface: its back faces can be culled.
        outer = [region_names.index(n) for n in ("face", "head_neck") if n in region_names]
        self.cull_triangles = np.isin(vregion[self.triangles], outer).all(axis=1)

    def _colors(self) -> np.ndarray:
        V = self.num_vertices
        col = np.empty((V, 3), dtype=np.float32)
        col[:] = SKIN
        for r, name in enumerate(self.region_names):
            col[self.vertex_region == r] = REGION_COLORS.get(name, SKIN)
        col[self.lip_vertices] = LIPS
        for name in ("eyeball_left", "eyeball_right"):
            if name not in self.region_names:
                continue
            idx = np.where(self.vertex_region == self.region_names.index(name))[0]
            if len(idx) == 0:
                continue
            c = self.neutral[idx].mean(axis=0)
            d = self.neutral[idx] - c
            cos = d[:, 2] / np.maximum(np.linalg.norm(d, axis=1), 1e-6)
            col[idx[cos > np.cos(np.radians(33))]] = IRIS
            col[idx[cos > np.cos(np.radians(14))]] = PUPIL
        return col

    def expression_weights(self, motion: Motion) -> np.ndarray:
        """ICT expression weights (T, E) float32 from ``motion``'s ARKit channels."""
        return channel_matrix(motion, ARKIT_NAMES) @ self._arkit_to_ict

    def vertices(self, motion: Motion, indices: np.ndarray | None = None) -> np.ndarray:
        """(T, V, 3) float32 mm (or (T, K, 3) for ``indices``); see the module docstring."""
        self.check_motion(motion)
        known = set(ARKIT_NAMES) | set(ARKIT_HEAD)
        if motion.num_frames and not any(c in known for c in motion.channels):
            raise KsdiffError("motion has no ARKit channel to drive the ICT head")
        T = motion.num_frames
        w = self.expression_weights(motion)  # (T, E)
        if indices is None:
            base, deltas = self.neutral, self._deltas
        else:
            idx = np.asarray(indices, dtype=np.int64)
            base = self.neutral[idx]
            cols = (idx[:, None] * 3 + np.arange(3)).reshape(-1)
            deltas = self._deltas[:, cols]
        K = base.shape[0]
        verts = (w @ deltas).reshape(T, K, 3)
        verts += base
        return apply_head_pose(verts, channel_matrix(motion, ARKIT_HEAD), self.pivot, CM_TO_MM)


def apply_head_pose(verts: np.ndarray, head: np.ndarray, pivot: np.ndarray, t_scale: float) -> np.ndarray:
    """Rigidly move (T, V, 3) vertices by per-frame head poses.

    Args:
        verts: (T, V, 3) float32, modified in place and returned.
        head: (T, 6) axis-angle rotation (3, radians) then translation (3, in units of ``1 / t_scale`` mm).
        pivot: (3,) rotation centre in mm.
    """
    from scipy.spatial.transform import Rotation

    rot, trans = head[:, :3].astype(np.float64), head[:, 3:6].astype(np.float32) * t_scale
    if not np.any(rot) and not np.any(trans):
        return verts
    R = Rotation.from_rotvec(rot).as_matrix().astype(np.float32)  # (T, 3, 3)
    verts -= pivot
    verts = np.matmul(verts, R.transpose(0, 2, 1))
    verts += pivot + trans[:, None, :]
    return verts


def lip_region(neutral: np.ndarray, landmarks68: np.ndarray | None, candidates: np.ndarray) -> np.ndarray:
    """Vertices of ``candidates`` inside the outer lip contour (landmarks 48-59) seen from the front.

    Without landmarks, an empty array (LVE then needs a lip mask from elsewhere).
    """
    if landmarks68 is None or len(landmarks68) != 68:
        return np.zeros(0, dtype=np.int64)
    from matplotlib.path import Path as PolyPath

    lm = np.asarray(landmarks68[48:60], dtype=np.int64)
    poly = neutral[lm, :2]
    width = float(np.ptp(poly[:, 0])) or 1.0
    cand = np.asarray(candidates, dtype=np.int64)
    # In front of the lip contour's deepest point (minus a fifth of the mouth width): skips the mouth interior.
    front = neutral[cand, 2] > neutral[lm, 2].min() - 0.2 * width
    inside = PolyPath(poly).contains_points(neutral[cand, :2])
    return cand[inside & front]


# --------------------------------------------------------------------------------------------- building the asset

def read_obj(path: str | os.PathLike, faces: bool = True) -> tuple[np.ndarray, list[list[int]]]:
    """Vertices (V, 3) float32 and polygons (0-based vertex indices) of a Wavefront OBJ file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise KsdiffError(f"unreadable OBJ ({e})", path) from None
    vs, polys = [], []
    for line in text.splitlines():
        if line.startswith("v "):
            vs.append(line[2:])
        elif faces and line.startswith("f "):
            polys.append([int(tok.split("/")[0]) - 1 for tok in line[2:].split()])
    if not vs:
        raise KsdiffError("OBJ file has no vertices", path)
    try:
        verts = np.array(" ".join(vs).split(), dtype=np.float32).reshape(-1, 3)
    except ValueError:
        raise KsdiffError("OBJ vertex lines are not 'v x y z'", path) from None
    return verts, polys


def build_ict_asset(src: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Build the ICT asset ``.npz`` from an ICT-FaceKit checkout (atomically).

    ``src`` is the checkout (holding ``FaceXModel/``) or the ``FaceXModel`` folder: ``generic_neutral_mesh.obj``,
    one OBJ per expression (names from ``vertex_indices.json`` when present, else every other OBJ but
    ``identityNNN.obj``) and ``identity000.obj`` ... (vertex order shared by all). With ICT's full topology the
    asset keeps the first 24591 vertices (face, head, mouth, eyes: ICT_REGIONS) and the triangles among them;
    polygons are split into triangle fans. Landmarks come from ``vertex_indices.json`` (``idx_to_landmark_verts``)
    and the lip vertices are the face vertices inside the outer lip contour (:func:`lip_region`).

    Returns: {"vertices", "triangles", "expressions", "identities", "path"}.
    """
    src = Path(src)
    folder = src / "FaceXModel" if (src / "FaceXModel").is_dir() else src
    neutral_path = folder / "generic_neutral_mesh.obj"
    if not neutral_path.is_file():
        raise KsdiffError("not an ICT-FaceKit checkout (no FaceXModel/generic_neutral_mesh.obj)", src)
    config = _read_vertex_indices(folder)
    neutral, polys = read_obj(neutral_path)
    V_all = len(neutral)
    names = _expression_names(folder, config)
    ids = []
    while (folder / f"identity{len(ids):03d}.obj").is_file():
        ids.append(folder / f"identity{len(ids):03d}.obj")

    full_ict = V_all >= ICT_REGIONS[-1][2]
    V = ICT_REGIONS[-1][2] if full_ict else V_all
    regions = ICT_REGIONS if full_ict else (("face", 0, V),)
    exp_paths = []
    for n in names:
        p = folder / f"{n}.obj"
        if not p.is_file():
            raise KsdiffError(f"expression {n!r} listed but {p.name} is missing", folder)
        exp_paths.append(p)
    tri = _fan_triangles(polys, V_all, V, neutral_path)
    vregion = np.zeros(V, dtype=np.int64)
    for r, (_, a, b) in enumerate(regions):
        vregion[a:b] = r
    data = {
        "neutral": neutral[:V].astype(np.float32),
        "triangles": tri,
        "triangle_region": vregion[tri[:, 0]].astype(np.int8) if len(tri) else np.zeros(0, np.int8),
        "region_names": np.array([r[0] for r in regions]),
        "region_ranges": np.array([[a, b] for _, a, b in regions], dtype=np.int32),
        "expression_names": np.array(names),
        "expression_deltas": _shape_deltas(exp_paths, neutral, V),
        "identity_deltas": _shape_deltas(ids, neutral, V) if ids else np.zeros((0, V, 3), np.float16),
    }
    lms = config.get("idx_to_landmark_verts")
    if lms is not None and len(lms) == 68 and max(lms) < V:
        data["landmarks68"] = np.array(lms, dtype=np.int32)
        data["lip_vertices"] = lip_region(data["neutral"], data["landmarks68"],
                                          np.arange(regions[0][1], regions[0][2])).astype(np.int32)
    with atomic_path(out, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **data)
    return {"vertices": V, "triangles": len(tri), "expressions": len(names), "identities": len(ids),
            "path": str(out)}


def _read_vertex_indices(folder: Path) -> dict:
    """``folder/vertex_indices.json`` (expression names, landmark vertices), or {} when there is none."""
    import json

    cfg_path = folder / "vertex_indices.json"
    if not cfg_path.is_file():
        return {}
    try:
        return json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise KsdiffError(f"unreadable vertex_indices.json ({e})", cfg_path) from None


def _expression_names(folder: Path, config: dict) -> list[str]:
    """The expressions: listed in ``config`` (vertex_indices.json), else every OBJ in ``folder`` but the neutral
    mesh and ``identityNNN.obj``, sorted."""
    names = [str(n) for n in config.get("expressions", [])]
    if not names:
        names = sorted(p.stem for p in folder.glob("*.obj")
                       if p.stem != "generic_neutral_mesh" and not (p.stem.startswith("identity") and p.stem[8:].isdigit()))
    if not names:
        raise KsdiffError("no expression OBJs beside generic_neutral_mesh.obj", folder)
    return names


def _shape_deltas(paths: list[Path], neutral: np.ndarray, V: int) -> np.ndarray:
    """(len(paths), V, 3) float16: each OBJ's first ``V`` vertices minus the (V_all, 3) ``neutral``'s; every OBJ
    must have V_all vertices."""
    V_all = len(neutral)
    out = np.zeros((len(paths), V, 3), dtype=np.float16)
    for i, p in enumerate(paths):
        v, _ = read_obj(p, faces=False)
        if len(v) != V_all:
            raise KsdiffError(f"has {len(v)} vertices, generic_neutral_mesh.obj has {V_all}", p)
        out[i] = (v[:V] - neutral[:V]).astype(np.float16)
    return out


def _fan_triangles(polys: list[list[int]], V_all: int, V: int, path: Path) -> np.ndarray:
    """(F, 3) int32 triangles of the polygons (fans), those among the first ``V`` of ``V_all`` vertices."""
    tris = []
    for poly in polys:
        for k in range(1, len(poly) - 1):
            tris.append((poly[0], poly[k], poly[k + 1]))
    tri = np.array(tris, dtype=np.int64).reshape(-1, 3)
    if tri.size and (tri.min() < 0 or tri.max() >= V_all):
        raise KsdiffError("face indices outside the vertex list", path)
    return tri[(tri < V).all(axis=1)].astype(np.int32)
