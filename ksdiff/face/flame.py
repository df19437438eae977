"""FLAME from the user's own model file, driven by ``flame`` motion (linear blend skinning, no chumpy).

FLAME's licence forbids redistribution, so ksdiff never ships it. ``generic_model.pkl`` (FLAME 2020) is a
Python-2 pickle of chumpy objects; ksdiff never unpickles a file at render time. The user converts their file
once, on their explicit command::

    ksdiff assets flame --pkl generic_model.pkl --out flame.npz

which reads the pickle with a *restricted* unpickler (:func:`convert_flame_pkl`): only numpy arrays, chumpy
``Ch`` objects (read as their array) and scipy sparse matrices (read as dense arrays) are allowed; any other class
is refused. Rendering reads the ``.npz`` only (``allow_pickle=False``).

The ``.npz`` holds ``v_template`` (V, 3), ``shapedirs`` (V, 3, S + E) (shape then expression components),
``num_shape`` (S; 300 for FLAME 2020), ``posedirs`` (V, 3, 36), ``J_regressor`` (5, V), ``weights`` (V, 5),
``kintree_table`` (2, 5) and ``f`` (F, 3), in metres; vertices are returned in millimetres.

Motion: ``exp00..exp49`` drive the first 50 expression components, ``globalRot*`` the root joint, ``jawRot*`` the
jaw; neck and eyes stay at rest. Of DECA's camera (``camScale``, ``camTx``, ``camTy``) the translation moves the
head (metres → mm); the scale is left to the renderer's camera.

Lip mask (LVE): a vertex-index file given by the user (``.npy``, or text with one index per line / whitespace
separated), or the documented default region: the mouth centre is the mean of the front vertices (z in the top
15 %) whose jaw skinning weight is between 0.2 and 0.8 (the lip line); lip vertices lie within ±28 mm in x,
±15 mm in y of it and no more than 15 mm behind it. Upper face (FDD): vertices at least 30 mm above the mouth
centre and no more than 50 mm behind it.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.base import FaceModel, channel_matrix, find_asset, user_data_dir
from ksdiff.face.motion import Motion
from ksdiff.face.specs import FLAME_CAM, FLAME_EXP, FLAME_GLOBAL, FLAME_JAW
from ksdiff.utils.io import atomic_path

M_TO_MM = 1000.0
FLAME_ASSET_NAME = "flame.npz"
FLAME_ENV = "KSDIFF_FLAME_ASSET"
FLAME_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
FLAME_FORMAT_VERSION = 1
SKIN = (0.80, 0.60, 0.50)
LIPS = (0.72, 0.40, 0.40)


def find_flame_asset(path: str | os.PathLike | None = None, required: bool = True) -> Path | None:
    """Locate a converted FLAME ``.npz``: ``path``, ``$KSDIFF_FLAME_ASSET``, then ``<user data dir>/flame.npz``."""
    cand = user_data_dir() / FLAME_ASSET_NAME
    return find_asset(path, FLAME_ENV, [cand], "FLAME model file",
                      "FLAME's licence forbids shipping it; convert your own with `ksdiff assets flame --pkl "
                      f"generic_model.pkl` (writes {cand}), set ${FLAME_ENV}, or use --face schematic", required)


# --------------------------------------------------------------------------------------------- conversion

class _Opaque:
    """Stands in for a chumpy or scipy.sparse object inside the pickle: keeps its constructor args and state."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.state = None

    def __setstate__(self, state):
        self.state = state


class _ChumpyStub(_Opaque):
    kind = "chumpy"


class _SparseStub(_Opaque):
    kind = "sparse"
    fmt = "csc"


class _CscStub(_SparseStub):
    fmt = "csc"


class _CsrStub(_SparseStub):
    fmt = "csr"


def _restricted_unpickler(f):
    import copyreg

    allowed = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),  # bytes in protocol-2 pickles
    }

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            if module == "chumpy" or module.startswith("chumpy."):
                return _ChumpyStub
            if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
                return _CscStub if name == "csc_matrix" else _CsrStub
            if (module, name) in (("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")):
                return copyreg._reconstructor
            if (module, name) in (("__builtin__", "object"), ("builtins", "object")):
                return object
            if (module, name) in allowed:
                return super().find_class(module, name)
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a FLAME file")

    return Restricted(f, encoding="latin1")


def _to_array(obj, key: str) -> np.ndarray:
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, _SparseStub):
        st = obj.state if isinstance(obj.state, dict) else {}
        data, indices, indptr = (np.asarray(st.get(k)) for k in ("data", "indices", "indptr"))
        shape = tuple(st.get("_shape") or st.get("shape") or ())
        if data is None or len(shape) != 2:
            raise KsdiffError(f"FLAME key {key!r}: unreadable sparse matrix")
        dense = np.zeros(shape, dtype=np.float64)
        counts = np.diff(indptr)
        major = np.repeat(np.arange(len(counts)), counts)
        if obj.fmt == "csc":  # columns are the major axis
            dense[indices, major] = data
        else:
            dense[major, indices] = data
        return dense
    if isinstance(obj, _ChumpyStub):
        st = obj.state if isinstance(obj.state, dict) else {}
        for name in ("x", "a", "r"):
            v = st.get(name)
            if isinstance(v, np.ndarray):
                return v
            if isinstance(v, _Opaque):
                return _to_array(v, key)
        arrays = [v for v in st.values() if isinstance(v, np.ndarray)]
        if len(arrays) == 1:
            return arrays[0]
        raise KsdiffError(f"FLAME key {key!r}: chumpy object without a readable array")
    try:
        return np.asarray(obj)
    except Exception:  # noqa: BLE001
        raise KsdiffError(f"FLAME key {key!r}: not an array ({type(obj).__name__})") from None


def convert_flame_pkl(pkl_path: str | os.PathLike, out_path: str | os.PathLike, num_shape: int | None = None) -> dict:
    """Convert a FLAME ``generic_model.pkl`` (chumpy pickle) into the ksdiff ``.npz`` (atomically).

    Only on the user's explicit command: the pickle is read with a restricted unpickler that allows numpy
    arrays, chumpy ``Ch`` objects (their array) and scipy sparse matrices (densified) and refuses anything else.

    Returns: a summary {"vertices", "faces", "shape", "expression", "path"}.
    """
    pkl_path = Path(pkl_path)
    if not pkl_path.is_file():
        raise KsdiffError("FLAME pickle not found", pkl_path)
    try:
        with open(pkl_path, "rb") as f:
            raw = _restricted_unpickler(f).load()
    except pickle.UnpicklingError as e:
        raise KsdiffError(f"not a FLAME model pickle ({e})", pkl_path) from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError) as e:
        raise KsdiffError(f"unreadable FLAME pickle ({type(e).__name__}: {e})", pkl_path) from None
    if not isinstance(raw, dict):
        raise KsdiffError("not a FLAME model pickle (expected a dict)", pkl_path)
    missing = [k for k in FLAME_KEYS if k not in raw]
    if missing:
        raise KsdiffError(f"not a FLAME model (missing {', '.join(missing)})", pkl_path)
    arrays = {k: _to_array(raw[k], k) for k in FLAME_KEYS}
    sd = arrays["shapedirs"]
    if num_shape is None:
        num_shape = 300 if sd.shape[-1] == 400 else max(sd.shape[-1] - 100, 0)
    out = {
        "v_template": arrays["v_template"].astype(np.float32),
        "shapedirs": sd.astype(np.float32),
        "num_shape": np.int32(num_shape),
        "posedirs": arrays["posedirs"].astype(np.float32),
        "J_regressor": arrays["J_regressor"].astype(np.float32),
        "weights": arrays["weights"].astype(np.float32),
        "kintree_table": arrays["kintree_table"].astype(np.int64),
        "f": arrays["f"].astype(np.int32),
        "format_version": np.int32(FLAME_FORMAT_VERSION),
    }
    check_flame_arrays(out, pkl_path)
    with atomic_path(out_path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **out)
    return {"vertices": int(out["v_template"].shape[0]), "faces": int(out["f"].shape[0]),
            "shape": int(num_shape), "expression": int(sd.shape[-1] - num_shape), "path": str(out_path)}


def check_flame_arrays(d: dict, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`KsdiffError` unless the FLAME arrays have consistent shapes."""
    V = d["v_template"].shape[0]
    J = d["J_regressor"].shape[0]
    problems = []
    if d["v_template"].shape != (V, 3):
        problems.append(f"v_template {d['v_template'].shape}")
    if d["shapedirs"].ndim != 3 or d["shapedirs"].shape[:2] != (V, 3):
        problems.append(f"shapedirs {d['shapedirs'].shape}")
    if d["posedirs"].ndim != 3 or d["posedirs"].shape[:2] != (V, 3) or d["posedirs"].shape[2] != 9 * (J - 1):
        problems.append(f"posedirs {d['posedirs'].shape}")
    if d["J_regressor"].shape != (J, V):
        problems.append(f"J_regressor {d['J_regressor'].shape}")
    if d["weights"].shape != (V, J):
        problems.append(f"weights {d['weights'].shape}")
    if d["kintree_table"].shape != (2, J):
        problems.append(f"kintree_table {d['kintree_table'].shape}")
    if d["f"].ndim != 2 or d["f"].shape[1] != 3 or d["f"].max(initial=0) >= V:
        problems.append(f"f {d['f'].shape}")
    if J < 3:
        problems.append(f"{J} joints (FLAME has 5: root, neck, jaw, eyes)")
    if problems:
        raise KsdiffError("FLAME arrays have inconsistent shapes: " + ", ".join(problems), path)


def load_lip_indices(src: str | os.PathLike | np.ndarray, num_vertices: int) -> np.ndarray:
    """Lip vertex indices from an array, a ``.npy`` file or a text file of integers."""
    if isinstance(src, np.ndarray):
        idx = src
    else:
        p = Path(src)
        if not p.is_file():
            raise KsdiffError("lip vertex file not found", p)
        try:
            idx = np.load(p, allow_pickle=False) if p.suffix == ".npy" else np.array(p.read_text().split(), dtype=np.int64)
        except (ValueError, OSError) as e:
            raise KsdiffError(f"lip vertex file is not a list of integers ({e})", p) from None
    idx = np.asarray(idx).reshape(-1).astype(np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= num_vertices:
        raise KsdiffError(f"lip vertex indices must be in [0, {num_vertices}) and not empty")
    return idx


# --------------------------------------------------------------------------------------------- the model

def rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices."""
    r = np.asarray(rotvec, dtype=np.float64)
    theta = np.linalg.norm(r, axis=-1, keepdims=True)
    k = r / np.maximum(theta, 1e-12)
    K = np.zeros(r.shape[:-1] + (3, 3))
    K[..., 0, 1], K[..., 0, 2] = -k[..., 2], k[..., 1]
    K[..., 1, 0], K[..., 1, 2] = k[..., 2], -k[..., 0]
    K[..., 2, 0], K[..., 2, 1] = -k[..., 1], k[..., 0]
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


class FLAMEFaceModel(FaceModel):
    """FLAME driven by ``flame`` motion (see the module docstring).

    Args:
        asset: the converted ``.npz`` (default: :func:`find_flame_asset`).
        lip_vertices: a lip vertex-index file or array (default: the documented region).
        shape: optional (≤ S,) identity shape coefficients.
    """

    name = "flame"
    spec = "flame"

    def __init__(self, asset: str | os.PathLike | None = None,
                 lip_vertices: str | os.PathLike | np.ndarray | None = None, shape: np.ndarray | None = None):
        self.path = find_flame_asset(asset)
        try:
            with np.load(self.path, allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise KsdiffError(f"unreadable FLAME model ({type(e).__name__}: {e}); convert the .pkl with "
                              "`ksdiff assets flame`", self.path) from None
        missing = [k for k in FLAME_KEYS if k not in d]
        if missing:
            raise KsdiffError(f"not a converted FLAME model (missing {', '.join(missing)}); convert the .pkl "
                              "with `ksdiff assets flame`", self.path)
        check_flame_arrays(d, self.path)
        S = int(d.get("num_shape", max(d["shapedirs"].shape[2] - 100, 0)))
        v = d["v_template"].astype(np.float64)
        if shape is not None:
            b = np.asarray(shape, dtype=np.float64).reshape(-1)[:S]
            v = v + d["shapedirs"][:, :, : len(b)].astype(np.float64) @ b
        self._v = v  # (V, 3) metres, identity applied
        self._exp = d["shapedirs"][:, :, S:S + len(FLAME_EXP)].astype(np.float32)  # (V, 3, E)
        self._J_reg = d["J_regressor"].astype(np.float64)
        self._posedirs = d["posedirs"].reshape(-1, d["posedirs"].shape[2]).T.astype(np.float32)  # (P, V*3)
        self._weights = d["weights"].astype(np.float32)
        parents = d["kintree_table"][0].astype(np.int64).copy()
        parents[0] = -1
        self._parents = parents
        self.triangles = d["f"].astype(np.int32)
        self.render_triangles = self.triangles
        self.neutral = (v * M_TO_MM).astype(np.float32)
        V = len(v)

        jaw = self._weights[:, 2] if self._weights.shape[1] > 2 else np.zeros(V)
        z = self.neutral[:, 2]
        front = z >= np.quantile(z, 0.85)
        line = front & (jaw > 0.2) & (jaw < 0.8)
        centre = self.neutral[line].mean(axis=0) if line.any() else self.neutral[front].mean(axis=0)
        self.mouth_centre = centre
        if lip_vertices is not None:
            self.lip_vertices = load_lip_indices(lip_vertices, V)
        else:
            dx, dy, dz = (self.neutral - centre).T
            self.lip_vertices = np.where((np.abs(dx) < 28) & (np.abs(dy) < 15) & (dz > -15))[0].astype(np.int64)
        dy, dz = self.neutral[:, 1] - centre[1], self.neutral[:, 2] - centre[2]
        self.upper_face_vertices = np.where((dy > 30) & (dz > -50))[0].astype(np.int64)
        self.vertex_colors = np.tile(np.asarray(SKIN, np.float32), (V, 1))
        self.vertex_colors[self.lip_vertices] = LIPS

    def vertices(self, motion: Motion, indices: np.ndarray | None = None) -> np.ndarray:
        """(T, V, 3) float32 mm by linear blend skinning (or (T, K, 3) for ``indices``)."""
        self.check_motion(motion)
        T = motion.num_frames
        E = self._exp.shape[2]
        exp = channel_matrix(motion, FLAME_EXP[:E]).astype(np.float32)  # (T, E)
        V = self._v.shape[0]
        v_shaped = self._v[None] + np.einsum("vce,te->tvc", self._exp, exp, optimize=True)  # (T, V, 3)
        J = np.einsum("jv,tvc->tjc", self._J_reg, v_shaped)  # (T, nJ, 3)
        nJ = J.shape[1]
        pose = np.zeros((T, nJ, 3))
        pose[:, 0] = channel_matrix(motion, FLAME_GLOBAL)
        pose[:, 2] = channel_matrix(motion, FLAME_JAW)
        R = rodrigues(pose)  # (T, nJ, 3, 3)
        feat = (R[:, 1:] - np.eye(3)).reshape(T, -1).astype(np.float32)  # (T, 9 (nJ - 1))
        v_posed = v_shaped + (feat @ self._posedirs).reshape(T, V, 3)
        # Kinematic chain: world transform of each joint, then remove the rest-pose joint position.
        G = np.zeros((T, nJ, 4, 4))
        G[:, :, 3, 3] = 1.0
        for j in range(nJ):
            p = self._parents[j]
            local = np.zeros((T, 4, 4))
            local[:, :3, :3] = R[:, j]
            local[:, :3, 3] = J[:, j] - (J[:, p] if p >= 0 else 0.0)
            local[:, 3, 3] = 1.0
            G[:, j] = local if p < 0 else G[:, p] @ local
        A = G.copy()
        A[:, :, :3, 3] -= np.einsum("tjab,tjb->tja", G[:, :, :3, :3], J)
        idx = slice(None) if indices is None else np.asarray(indices, dtype=np.int64)
        W = self._weights[idx]  # (K, nJ)
        Tv = np.einsum("kj,tjab->tkab", W, A)  # (T, K, 4, 4)
        vp = v_posed[:, idx]
        out = np.einsum("tkab,tkb->tka", Tv[..., :3, :3], vp) + Tv[..., :3, 3]
        cam = channel_matrix(motion, FLAME_CAM)
        out[..., 0] += cam[:, 1:2]
        out[..., 1] += cam[:, 2:3]
        return (out * M_TO_MM).astype(np.float32)
