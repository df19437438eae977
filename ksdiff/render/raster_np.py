"""A numpy z-buffer rasteriser: the fallback when no EGL / OpenGL context can be made.

Triangles are binned by the size of their pixel bounding box (exact up to 8 × 8 pixels, then powers of two);
each bin tests all its triangles' candidate pixels at once (vectorised edge functions), and the nearest fragment per pixel wins
through ``np.minimum.at`` on a depth buffer. Vertices are shaded with the OpenGL backend's lights
(:func:`ksdiff.render.camera.shade`, Gouraud: the meshes are dense, a few pixels a triangle) and winning pixels
interpolate the colours with their barycentric weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from ksdiff.render.camera import BACKGROUND, Camera, shade, vertex_normals

_MAX_CANDIDATES = 1 << 22  # pixels tested per chunk (bounds memory: ~4M × a few arrays)


class _Setup(NamedTuple):
    """The triangles kept for one frame: ``ids`` (N,) into the mesh's triangles; ``x0``, ``y0`` (F,) pixel-box
    corners of every triangle; ``bw``, ``bh`` (N,) box sizes; ``A``, ``B``, ``C`` (N, 3) float32 barycentric
    planes l_k = A_k x + B_k y + C_k with x, y measured from the box corner."""

    ids: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    bw: np.ndarray
    bh: np.ndarray
    A: np.ndarray
    B: np.ndarray
    C: np.ndarray


class NumpyRasterizer:
    """Renders one mesh (fixed topology) from a fixed camera.

    Args:
        camera: the :class:`Camera` (its width × height is the image size).
        triangles: (F, 3) int vertex indices.
        colors: (V, 3) float albedo in [0, 1].
        cull: optional (F,) bool: triangles that may be skipped when they face away from the camera (the outer
            skin); the others (mouth interior, eyes) are drawn from both sides.
    """

    backend = "numpy"

    def __init__(self, camera: Camera, triangles: np.ndarray, colors: np.ndarray,
                 cull: np.ndarray | None = None):
        self.camera = camera
        self.triangles = np.ascontiguousarray(triangles, dtype=np.int64)
        self.cull = None if cull is None else np.asarray(cull, dtype=bool)
        self.colors = np.asarray(colors, dtype=np.float32)
        self.background = (np.asarray(BACKGROUND) * 255).round().astype(np.uint8)

    def render(self, verts: np.ndarray) -> np.ndarray:
        """Render (V, 3) vertices; returns (H, W, 3) uint8."""
        cam = self.camera
        W, H = cam.width, cam.height
        verts = np.asarray(verts, dtype=np.float32)
        xy, z, w = cam.project(verts)
        setup = self._setup(xy, w)
        img = np.empty((H * W, 3), dtype=np.uint8)
        img[:] = self.background
        frags = self._fragments(setup, z[self.triangles[setup.ids]], W)
        if frags is None:
            return img.reshape(H, W, 3)
        covered, tri_of, lam = self._depth_test(*frags, H * W)
        img[covered] = self._shade_pixels(verts, setup.ids, tri_of, lam)
        return img.reshape(H, W, 3)

    def _setup(self, xy: np.ndarray, w: np.ndarray) -> _Setup:
        """Triangle setup from projected (V, 2) pixel positions and (V,) clip w: keep the triangles in front
        of the camera and inside the image, with their pixel boxes and barycentric planes."""
        W, H = self.camera.width, self.camera.height
        tri = self.triangles
        txy = xy[tri]  # (F, 3, 2)
        ok = (w[tri] > 0).all(axis=1)
        x0 = np.ceil(txy[..., 0].min(axis=1) - 0.5).astype(np.int64)
        x1 = np.floor(txy[..., 0].max(axis=1) - 0.5).astype(np.int64)
        y0 = np.ceil(txy[..., 1].min(axis=1) - 0.5).astype(np.int64)
        y1 = np.floor(txy[..., 1].max(axis=1) - 0.5).astype(np.int64)
        x0, y0 = np.maximum(x0, 0), np.maximum(y0, 0)
        x1, y1 = np.minimum(x1, W - 1), np.minimum(y1, H - 1)
        txy = txy.astype(np.float64)
        ax, ay = txy[:, 0, 0], txy[:, 0, 1]
        bx, by = txy[:, 1, 0], txy[:, 1, 1]
        cx, cy = txy[:, 2, 0], txy[:, 2, 1]
        area = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        ok &= (x1 >= x0) & (y1 >= y0) & (np.abs(area) > 1e-9)
        if self.cull is not None:  # back faces of closed outer surfaces (negative area = front, y is down)
            ok &= ~(self.cull & (area > 0))
        ids = np.where(ok)[0]
        inv = 1.0 / area[ids]
        # Barycentric weight of vertex k as an affine function of the pixel centre: l_k = A_k x + B_k y + C_k.
        A = np.stack([(by - cy)[ids], (cy - ay)[ids], (ay - by)[ids]], axis=1) * inv[:, None]
        B = np.stack([(cx - bx)[ids], (ax - cx)[ids], (bx - ax)[ids]], axis=1) * inv[:, None]
        C = np.stack([(bx * cy - cx * by)[ids], (cx * ay - ax * cy)[ids], (ax * by - bx * ay)[ids]],
                     axis=1) * inv[:, None]
        # Re-base C at each triangle's bounding-box corner so the per-pixel part stays small (float32-safe).
        C = C + A * x0[ids, None] + B * y0[ids, None]
        return _Setup(ids, x0, y0, (x1 - x0 + 1)[ids], (y1 - y0 + 1)[ids],
                      A.astype(np.float32), B.astype(np.float32), C.astype(np.float32))

    @staticmethod
    def _bins(bw: np.ndarray, bh: np.ndarray) -> Iterator[tuple[int, int, np.ndarray]]:
        """(bin width, bin height, member indices) for triangles with (N,) box sizes ``bw`` × ``bh``: exact
        (width, height) up to 8 pixels, then powers of two; each bin is one vectorised test."""
        kw = np.where(bw <= 8, bw, 1 << np.ceil(np.log2(np.maximum(bw, 1))).astype(np.int64))
        kh = np.where(bh <= 8, bh, 1 << np.ceil(np.log2(np.maximum(bh, 1))).astype(np.int64))
        key = kw * 4096 + kh
        order = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[order], return_index=True)
        bounds = list(starts) + [len(order)]
        for b, k in enumerate(keys):
            yield int(k // 4096), int(k % 4096), order[bounds[b]:bounds[b + 1]]

    def _fragments(self, s: _Setup, tz: np.ndarray, W: int) -> tuple[np.ndarray, ...] | None:
        """Every covered (triangle, pixel) of the setup ``s`` (``tz``: (N, 3) vertex depths of its triangles)
        in an image ``W`` wide: (P,) pixel index, (P,) float32 depth, (P,) triangle (into ``s.ids``) and (P, 2)
        barycentric weights of the first two corners; None when nothing is covered."""
        ids, x0, y0, bw, bh = s.ids, s.x0, s.y0, s.bw, s.bh
        frag_pix, frag_z, frag_t, frag_l = [], [], [], []
        for sw, sh, members in self._bins(bw, bh):
            per = sw * sh
            oy, ox = np.divmod(np.arange(per, dtype=np.int64), sw)
            fx, fy = (ox + 0.5).astype(np.float32), (oy + 0.5).astype(np.float32)
            exact = sw <= 8 and sh <= 8
            chunk = max(1, _MAX_CANDIDATES // per)
            for c0 in range(0, len(members), chunk):
                g = members[c0:c0 + chunk]
                l0 = s.A[g, 0, None] * fx + s.B[g, 0, None] * fy + s.C[g, 0, None]  # (n, per)
                l1 = s.A[g, 1, None] * fx + s.B[g, 1, None] * fy + s.C[g, 1, None]
                l2 = 1.0 - l0 - l1
                inside = (l0 >= -1e-6) & (l1 >= -1e-6) & (l2 >= -1e-6)
                if not exact:
                    inside &= (ox[None, :] < bw[g, None]) & (oy[None, :] < bh[g, None])
                r, q = np.nonzero(inside)
                if not len(r):
                    continue
                L0, L1, L2 = l0[r, q], l1[r, q], l2[r, q]
                t = g[r]
                frag_pix.append((y0[ids[t]] + oy[q]) * W + x0[ids[t]] + ox[q])
                frag_z.append(L0 * tz[t, 0] + L1 * tz[t, 1] + L2 * tz[t, 2])
                frag_t.append(t)
                frag_l.append(np.stack([L0, L1], axis=1))
        if not frag_pix:
            return None
        return (np.concatenate(frag_pix), np.concatenate(frag_z).astype(np.float32), np.concatenate(frag_t),
                np.concatenate(frag_l))

    @staticmethod
    def _depth_test(pix: np.ndarray, fz: np.ndarray, ft: np.ndarray, fl: np.ndarray,
                    num_pixels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nearest fragment per pixel (see :meth:`_fragments`): (P,) covered pixel indices, (P,) their
        triangles (into the setup's ``ids``) and (P, 3) float32 barycentric weights."""
        zbuf = np.full(num_pixels, np.inf, dtype=np.float32)
        np.minimum.at(zbuf, pix, fz)
        win = np.where(fz <= zbuf[pix])[0]
        owner = np.full(num_pixels, -1, dtype=np.int64)
        owner[pix[win]] = win  # ties: any one of the nearest fragments
        covered = np.where(owner >= 0)[0]
        f = owner[covered]
        lam = np.empty((len(f), 3), dtype=np.float32)
        lam[:, :2] = fl[f]
        lam[:, 2] = 1.0 - lam[:, 0] - lam[:, 1]
        return covered, ft[f], lam

    def _shade_pixels(self, verts: np.ndarray, ids: np.ndarray, tri_of: np.ndarray, lam: np.ndarray) -> np.ndarray:
        """(P, 3) uint8 colours of pixels showing triangles ``ids[tri_of]`` at barycentric weights ``lam``."""
        tri = self.triangles
        corners = tri[ids[tri_of]]  # (P, 3)
        # Shade the vertices (the mesh is dense: a few pixels a triangle), then interpolate the colours.
        used = np.unique(tri[ids])
        vrgb = np.zeros((len(verts), 3), dtype=np.float32)
        vrgb[used] = shade(vertex_normals(verts, tri)[used], self.colors[used], verts[used], self.camera.eye)
        rgb = np.einsum("pk,pkc->pc", lam, vrgb[corners])
        return (rgb * 255.0 + 0.5).astype(np.uint8)

    def close(self) -> None:
        pass
