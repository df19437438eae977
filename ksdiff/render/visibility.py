"""Potentially visible triangles of the ICT head: draw only what the fixed camera can ever see.

About half of the ICT-FaceKit head's 48 836 triangles are never in view from the front camera: the eye sockets,
the back of the eyeballs, the molars, most of the gums and mouth socket, the back of the head. On llvmpipe every
triangle costs vertex work and set-up, drawn or not. After a safety margin 20 % of them are left out, which makes
a 512² ICT render 7–9 % faster (``ksdiff bench render``, mode ``visible``).

The set is measured, not guessed: triangle ids are drawn with the depth test from the render camera for a set
of poses spanning what motion can do (neutral; every expression channel at 1, with the jaw shut and open; head
rotations up to ±:data:`MAX_ROT` rad about each axis and translations up to ±:data:`MAX_TRANS` cm, alone and
with random expressions), the triangles seen in any of them are kept, and the set is grown by
:data:`RINGS` rings of neighbours for what falls between the samples. The face region itself is always kept
whole. :func:`motion_in_range` tells whether a motion stays inside the sampled poses; outside it (larger head
turns, out-of-range weights) the renderer draws every triangle.

The result depends only on the head asset and the camera; it is cached on disk
(:func:`cache_dir` ``/visible-<hash>.npy``, 6 KB) after the first computation (about 4 s on a 2-core CPU;
``make install`` does it once: ``python -m ksdiff.render.visibility``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ksdiff.face.motion import Motion
from ksdiff.face.specs import ARKIT_HEAD, get_spec

#: Largest head rotation (radians, per axis) and translation (cm, per axis) among the sampled poses.
MAX_ROT = 0.6
MAX_TRANS = 3.0
#: Rings of neighbouring triangles added around the triangles seen.
RINGS = 4
#: Image size of the id renders (triangles smaller than a pixel there are caught by the rings).
ID_SIZE = 256
#: Bump when the pose set or the rule changes (invalidates caches).
VERSION = 3

def cache_dir() -> Path:
    """``$KSDIFF_CACHE_DIR``, else ``$XDG_CACHE_HOME/ksdiff`` (default ``~/.cache/ksdiff``)."""
    if os.environ.get("KSDIFF_CACHE_DIR"):
        return Path(os.environ["KSDIFF_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ksdiff"


def sample_poses(seed: int = 0, random_poses: int = 64) -> Motion:
    """The poses the visible set is measured on, as an ``arkit`` :class:`Motion` (one frame each)."""
    spec = get_spec("arkit")
    C = spec.channels
    ci = {c: i for i, c in enumerate(C)}
    expr = [c for c in C if c not in ARKIT_HEAD]
    jaw = ci["jawOpen"]
    poses = [np.zeros(len(C), np.float32)]
    for c in expr:
        for open_jaw in (False, True):
            p = np.zeros(len(C), np.float32)
            p[ci[c]] = 1.0
            if open_jaw:
                p[jaw] = 1.0
            poses.append(p)
    rot = [ci[c] for c in ARKIT_HEAD[:3]]
    trans = [ci[c] for c in ARKIT_HEAD[3:]]
    for axis in range(3):  # each rotation at its limits, mouth shut and wide open
        for sign in (-1.0, 1.0):
            for open_jaw in (False, True):
                p = np.zeros(len(C), np.float32)
                p[rot[axis]] = sign * MAX_ROT
                p[jaw] = 1.0 if open_jaw else 0.0
                poses.append(p)
    rng = np.random.default_rng(seed)
    for _ in range(random_poses):
        p = np.zeros(len(C), np.float32)
        on = rng.random(len(expr)) < 0.3
        p[[ci[c] for c in expr]] = rng.random(len(expr)) * on
        p[rot] = rng.uniform(-MAX_ROT, MAX_ROT, 3)
        p[trans] = rng.uniform(-MAX_TRANS, MAX_TRANS, 3)
        poses.append(p)
    return Motion(np.stack(poses), C, 25.0, "arkit")


def motion_in_range(motion: Motion) -> bool:
    """Whether every frame of ``motion`` is inside the sampled poses' range (head rotation and translation
    within the limits, bounded channels within [0, 1] up to rounding)."""
    spec = get_spec("arkit")
    pos = {c: i for i, c in enumerate(motion.channels)}
    X = motion.coeffs
    for c in ARKIT_HEAD[:3]:
        if c in pos and np.abs(X[:, pos[c]]).max(initial=0.0) > MAX_ROT:
            return False
    for c in ARKIT_HEAD[3:]:
        if c in pos and np.abs(X[:, pos[c]]).max(initial=0.0) > MAX_TRANS:
            return False
    for c in spec.bounded:
        if c in pos and (X[:, pos[c]].min(initial=0.0) < -0.05 or X[:, pos[c]].max(initial=0.0) > 1.05):
            return False
    return True


def grow(mask: np.ndarray, triangles: np.ndarray, num_vertices: int, rings: int) -> np.ndarray:
    """``mask`` (F,) plus every triangle within ``rings`` shared-vertex steps of it."""
    mask = mask.copy()
    for _ in range(rings):
        touched = np.zeros(num_vertices, bool)
        touched[triangles[mask].reshape(-1)] = True
        mask |= touched[triangles].any(axis=1)
    return mask


def measure_visible(model, camera, cull: np.ndarray | None = None, size: int = ID_SIZE) -> np.ndarray:
    """(F,) bool over ``model.render_triangles``: seen from ``camera``'s viewpoint in any sampled pose, grown by
    :data:`RINGS` rings, plus the whole face region. Needs OpenGL (raises :class:`KsdiffError` without)."""
    from ksdiff.render.camera import Camera
    from ksdiff.render.raster_gl import GLRasterizer

    tri = np.ascontiguousarray(model.render_triangles, dtype=np.int32)
    cam = Camera(eye=camera.eye, view=camera.view, proj=camera.proj, width=size, height=size)
    seen = np.zeros(len(tri), bool)
    r = GLRasterizer(cam, tri, model.vertex_colors, cull=cull)  # KsdiffError without OpenGL
    try:
        for verts in model.vertices(sample_poses()):
            seen[r.seen_triangles(verts)] = True
    finally:
        r.close()
    keep = grow(seen, tri, model.num_vertices, RINGS)
    names = list(getattr(model, "region_names", []))
    if "face" in names:  # the skin of the face is always drawn whole
        keep |= (model.vertex_region[tri] == names.index("face")).all(axis=1)
    return keep


def _key(model, camera) -> str:
    h = hashlib.sha1()
    h.update(f"v{VERSION}|{RINGS}|{MAX_ROT}|{MAX_TRANS}|{ID_SIZE}".encode())
    for a in (model.neutral, model.render_triangles, camera.view, camera.proj):
        h.update(np.ascontiguousarray(a).tobytes())
    deltas = getattr(model, "_deltas", None)
    if deltas is not None:
        h.update(np.ascontiguousarray(deltas).tobytes())
    return h.hexdigest()[:20]


def _cache_path(model, camera) -> Path:
    return cache_dir() / f"visible-{_key(model, camera)}.npy"


def visible_triangles(model, camera, cull: np.ndarray | None = None) -> np.ndarray | None:
    """The cached :func:`measure_visible` mask for ``model`` seen by ``camera`` (computed and stored on first
    use); None when it cannot be had (no OpenGL)."""
    from ksdiff.errors import KsdiffError
    from ksdiff.utils.io import atomic_path

    path = _cache_path(model, camera)
    F = len(model.render_triangles)
    if path.is_file():
        try:
            mask = np.unpackbits(np.load(path, allow_pickle=False))[:F].astype(bool)
            if len(mask) == F:
                return mask
        except (OSError, ValueError):
            pass
    try:
        mask = measure_visible(model, camera, cull)
    except KsdiffError:
        return None
    try:
        with atomic_path(path) as tmp:
            np.save(tmp, np.packbits(mask))
    except OSError:  # read-only home: use it without caching
        pass
    return mask


def prepare(face: str = "auto", size: int = 512, backend: str = "auto", asset=None) -> bool:
    """Measure and cache the visible set ahead of a render (what ``render_video`` would do on first use).
    Returns True if it had to be measured now, False if it was cached or does not apply (no ICT head, no GL)."""
    from ksdiff.face.models import get_face_model
    from ksdiff.render import make_renderer
    from ksdiff.render.camera import frame_camera

    if backend == "numpy":
        return False
    model = get_face_model("arkit", face=face, asset=asset)
    if model.name != "ict":
        return False
    size = int(size) + int(size) % 2
    cam = frame_camera(model.neutral[model.frame_vertices], size)
    if _cache_path(model, cam).is_file():
        return False
    try:
        make_renderer(model, size, backend, skip_hidden=True).close()
    except Exception:  # noqa: BLE001 - no GL here: render_video falls back on its own; nothing to prepare
        return False
    return True


if __name__ == "__main__":  # `make install` warms the cache so that the first render does not pay for it
    import sys
    import time

    t0 = time.perf_counter()
    try:
        made = prepare()
    except Exception as e:  # noqa: BLE001 - no ICT head or no GL on this machine: nothing to prepare
        print(f"ICT head visible triangles: skipped ({e})")
        sys.exit(0)
    print(f"ICT head visible triangles: {'measured in %.1f s' % (time.perf_counter() - t0) if made else 'ready'} "
          f"({cache_dir()})")
