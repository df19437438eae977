"""Perspective camera framing a face, and the lighting shared by both rasterisers.

World = the face model's head frame (x to image right, y up, z towards the camera, mm). The camera sits on the
+z axis in front of the face, looks along −z, and is fixed for a whole video, so head motion stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BACKGROUND = (0.16, 0.17, 0.20)  # RGB in [0, 1]

# Lighting (world frame, unit vectors towards the lights). The GLSL shader in raster_gl.py uses the same numbers.
KEY_DIR = (-0.45, 0.55, 0.70)   # key light: upper left, in front
FILL_DIR = (0.60, 0.05, 0.80)   # fill light: right, in front
AMBIENT, KEY, FILL, SPECULAR, SHININESS = 0.22, 0.70, 0.25, 0.12, 24.0


@dataclass(frozen=True)
class Camera:
    """A pinhole camera. ``view`` and ``proj`` are OpenGL-style (4, 4) float32 matrices."""

    eye: np.ndarray      # (3,) camera position (mm)
    view: np.ndarray     # (4, 4) world -> camera
    proj: np.ndarray     # (4, 4) camera -> clip
    width: int
    height: int

    @property
    def mvp(self) -> np.ndarray:
        """(4, 4) float32 world -> clip."""
        return (self.proj @ self.view).astype(np.float32)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Project (N, 3) world points.

        Returns:
            xy: (N, 2) pixel coordinates (x right, y down; pixel centres at +0.5),
            depth: (N,) NDC depth in [-1, 1] (smaller is nearer),
            w: (N,) clip w (distance along the view axis).
        """
        p = np.concatenate([points, np.ones((len(points), 1), points.dtype)], axis=1) @ self.mvp.T
        w = p[:, 3]
        ndc = p[:, :3] / w[:, None]
        xy = np.stack([(ndc[:, 0] + 1.0) * 0.5 * self.width, (1.0 - ndc[:, 1]) * 0.5 * self.height], axis=1)
        return xy.astype(np.float32), ndc[:, 2].astype(np.float32), w.astype(np.float32)


def perspective(fovy_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    """(4, 4) OpenGL perspective projection."""
    f = 1.0 / np.tan(np.radians(fovy_deg) / 2.0)
    m = np.zeros((4, 4), dtype=np.float64)
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2.0 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 1.0, 0.0])) -> np.ndarray:
    """(4, 4) view matrix of a camera at ``eye`` looking at ``target``."""
    f = target - eye
    f = f / np.linalg.norm(f)
    s = np.cross(f, up)
    s = s / np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def frame_camera(points: np.ndarray, width: int, height: int | None = None, fovy_deg: float = 18.0,
                 margin: float = 1.12) -> Camera:
    """A frontal camera whose view holds the bounding box of ``points`` (N, 3) with a ``margin``."""
    height = width if height is None else height
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = 0.5 * (lo + hi)
    aspect = width / height
    half_h = 0.5 * max(hi[1] - lo[1], (hi[0] - lo[0]) / aspect) * margin
    dist = half_h / np.tan(np.radians(fovy_deg) / 2.0) + (hi[2] - centre[2])
    target = np.array([centre[0], centre[1], centre[2]])
    eye = target + np.array([0.0, 0.0, dist])
    depth = float(np.linalg.norm(hi - lo))
    near, far = max(dist - 2.0 * depth, dist * 0.05), dist + 2.0 * depth
    return Camera(eye=eye.astype(np.float32), view=look_at(eye, target).astype(np.float32),
                  proj=perspective(fovy_deg, aspect, near, far).astype(np.float32), width=width, height=height)


_INCIDENCE: dict[tuple, object] = {}


def _incidence(triangles: np.ndarray, num_vertices: int):
    """Sparse (V, F) vertex-triangle incidence matrix, cached per triangle array (built once per face model)."""
    key = (triangles.__array_interface__["data"][0], triangles.shape, num_vertices)
    mat = _INCIDENCE.get(key)
    if mat is None:
        from scipy.sparse import csr_matrix

        F = len(triangles)
        rows = triangles.reshape(-1)
        cols = np.repeat(np.arange(F), 3)
        mat = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(num_vertices, F))
        if len(_INCIDENCE) > 8:
            _INCIDENCE.clear()
        _INCIDENCE[key] = mat
    return mat


def vertex_normals(verts: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals: (V, 3) float32 unit vectors for (V, 3) vertices and (F, 3) triangles."""
    v = np.asarray(verts, dtype=np.float32)
    a, b, c = v[triangles[:, 0]], v[triangles[:, 1]], v[triangles[:, 2]]
    fn = np.cross(b - a, c - a)  # (F, 3), length = 2 × area
    n = np.asarray(_incidence(triangles, len(v)) @ fn, dtype=np.float32)  # sum over each vertex's triangles
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return n


def shade(normals: np.ndarray, albedo: np.ndarray, positions: np.ndarray, eye: np.ndarray) -> np.ndarray:
    """Two-sided Lambert + Blinn-Phong shading of (N, 3) samples; returns (N, 3) RGB in [0, 1].

    Normals facing away from the camera are flipped, so surfaces are lit from whichever side is seen.
    """
    n = np.asarray(normals, dtype=np.float32)
    view = eye[None, :] - positions
    view /= np.maximum(np.linalg.norm(view, axis=1, keepdims=True), 1e-6)
    n = np.where((n * view).sum(axis=1, keepdims=True) < 0, -n, n)
    out = np.full_like(n, AMBIENT)
    spec = np.zeros(len(n), dtype=np.float32)
    for d, k in ((KEY_DIR, KEY), (FILL_DIR, FILL)):
        ldir = np.asarray(d, dtype=np.float32) / np.linalg.norm(d)
        out += k * np.clip(n @ ldir, 0.0, None)[:, None]
        h = ldir[None, :] + view
        h /= np.maximum(np.linalg.norm(h, axis=1, keepdims=True), 1e-6)
        spec += (k / KEY) * np.clip((n * h).sum(axis=1), 0.0, None) ** SHININESS
    rgb = albedo * out + SPECULAR * spec[:, None]
    return np.clip(rgb, 0.0, 1.0)
