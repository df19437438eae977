"""Face models: motion coefficients -> vertices, one interface for every model (DESIGN.md section 5).

=============  ==========  ===========================================================================
model          spec        what it is
=============  ==========  ===========================================================================
``ict``        ``arkit``   ICT-FaceKit head (MIT): neutral + Σ w_i·delta_i, then the rigid head pose
``flame``      ``flame``   the user's own FLAME file (converted to ``.npz`` by ``ksdiff assets flame``), LBS
``schematic``  both        a 2D face drawn from the coefficients; needs no asset, so a fresh install can show motion
=============  ==========  ===========================================================================

Every model gives ``vertices(motion) -> (T, V, 3)`` float32 in **millimetres**, ``triangles`` (F, 3),
``neutral`` (V, 3), ``lip_vertices`` (for LVE) and ``upper_face_vertices`` (for FDD). Vertices are in the head
frame of :mod:`ksdiff.face.specs` (x to the subject's left = image right, y up, z towards the camera).
"""

from __future__ import annotations

import os

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.base import FaceModel
from ksdiff.face.motion import Motion
from ksdiff.face.specs import FaceSpec

FACE_NAMES = ("ict", "flame", "schematic")


def get_face_model(spec: str | FaceSpec | Motion = "arkit", face: str = "auto",
                   asset: str | os.PathLike | None = None,
                   lip_vertices: str | os.PathLike | np.ndarray | None = None) -> FaceModel:
    """The face model that renders motion of ``spec``.

    Args:
        spec: a face spec name, a :class:`FaceSpec`, or a :class:`Motion` (its spec is used).
        face: ``"auto"``, ``"ict"``, ``"flame"`` or ``"schematic"``. ``auto`` picks the 3D model for the spec
            (ICT-FaceKit for ``arkit``, FLAME for ``flame``) when its asset can be found, else the schematic face.
        asset: the face model file (ICT ``ict_face.npz`` or FLAME ``flame.npz``); default: see
            :func:`ksdiff.face.ict.find_ict_asset` / :func:`ksdiff.face.flame.find_flame_asset`.
        lip_vertices: FLAME only: a vertex-index file (``.npy``/``.txt``) or array for the lip mask.
    """
    if isinstance(spec, Motion):
        spec_name = spec.spec or "arkit"
    elif isinstance(spec, FaceSpec):
        spec_name = spec.name
    else:
        spec_name = str(spec)
    if face not in ("auto",) + FACE_NAMES:
        raise KsdiffError(f"unknown face model {face!r} (known: auto, {', '.join(FACE_NAMES)})")
    if face == "auto":
        if spec_name == "arkit":
            from ksdiff.face.ict import find_ict_asset

            face = "ict" if find_ict_asset(asset, required=False) is not None else "schematic"
        elif spec_name == "flame":
            from ksdiff.face.flame import find_flame_asset

            face = "flame" if find_flame_asset(asset, required=False) is not None else "schematic"
        else:
            face = "schematic"
    if face == "ict":
        if spec_name != "arkit":
            raise KsdiffError(f"the ICT-FaceKit head reads arkit motion, not {spec_name!r} (try --face schematic)")
        from ksdiff.face.ict import ICTFaceModel

        return ICTFaceModel(asset)
    if face == "flame":
        if spec_name != "flame":
            raise KsdiffError(f"the FLAME head reads flame motion, not {spec_name!r} (try --face schematic)")
        from ksdiff.face.flame import FLAMEFaceModel

        return FLAMEFaceModel(asset, lip_vertices=lip_vertices)
    from ksdiff.face.schematic import SchematicFace

    return SchematicFace(spec_name if spec_name in ("arkit", "flame") else "arkit")
