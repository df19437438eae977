"""Render throughput at a given size for each face model and backend (a measurement, not a test).

    python -m ksdiff.render.bench [--size 512] [--frames 60]

Prints frames per second of ``renderer.render`` alone and of the whole pipeline (vertices + render) for the
ICT head on the GL and numpy backends and for the schematic face. Motion: jawOpen sweeping 0 → 0.6 with a
small head turn, so vertices change every frame.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ksdiff.face.models import get_face_model
from ksdiff.face.motion import Motion
from ksdiff.face.specs import get_spec
from ksdiff.render import make_renderer


def bench(face: str, backend: str, size: int, frames: int) -> dict:
    spec = get_spec("arkit")
    c = np.zeros((frames, spec.dim), np.float32)
    c[:, spec.channels.index("jawOpen")] = np.linspace(0, 0.6, frames)
    c[:, spec.channels.index("headRotY")] = 0.2 * np.sin(np.linspace(0, 3, frames))
    motion = Motion(c, spec.channels, 25.0, "arkit")
    model = get_face_model(motion, face=face)
    r = make_renderer(model, size, backend)
    try:
        t0 = time.perf_counter()
        verts = model.vertices(motion)
        t1 = time.perf_counter()
        r.render(verts[0])  # warm-up (shader compile, first allocation)
        t2 = time.perf_counter()
        for v in verts:
            r.render(v)
        t3 = time.perf_counter()
    finally:
        r.close()
    return {"face": model.name, "backend": r.backend, "vertices": model.num_vertices,
            "render_fps": frames / (t3 - t2), "pipeline_fps": frames / (t3 - t2 + t1 - t0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    for face, backend in (("ict", "gl"), ("ict", "numpy"), ("schematic", "auto")):
        b = bench(face, backend, args.size, args.frames)
        print(f"{b['face']:<10} {b['backend']:<10} {b['vertices']:>6} vertices  {args.size}²  "
              f"render {b['render_fps']:6.1f} fps  with vertices {b['pipeline_fps']:6.1f} fps")


if __name__ == "__main__":
    main()
