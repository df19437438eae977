"""Face models: ICT-FaceKit (real asset), FLAME (a tiny synthetic FLAME-like model), the schematic face, and the
asset builders (a tiny ICT-FaceKit-style OBJ set, a chumpy-style pickle)."""

from __future__ import annotations

import pickle
import sys
import types

import numpy as np
import pytest

from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion
from ksdiff.face.specs import get_spec

ARKIT = get_spec("arkit")
FLAME = get_spec("flame")


def arkit_motion(T: int = 2, **channels: float | np.ndarray) -> Motion:
    c = np.zeros((T, ARKIT.dim), np.float32)
    for name, v in channels.items():
        c[:, ARKIT.channels.index(name)] = v
    return Motion(c, ARKIT.channels, 25.0, "arkit")


@pytest.fixture(scope="module")
def ict(ict_path):
    from ksdiff.face.ict import ICTFaceModel

    return ICTFaceModel(ict_path)


def test_ict_units_masks_and_mapping(ict):
    from ksdiff.face.ict import arkit_to_ict

    width = np.ptp(ict.neutral[:, 0])
    assert 200 < width < 300  # a human head in mm (ICT is in cm)
    assert ict.triangles.shape[1] == 3 and ict.triangles.max() < ict.num_vertices
    assert len(ict.lip_vertices) > 500 and len(ict.upper_face_vertices) > 1000
    assert not np.intersect1d(ict.lip_vertices, ict.upper_face_vertices).size
    A = arkit_to_ict(ict.expression_names)
    names = list(ict.expression_names)
    row = A[ARKIT.channels.index("browInnerUp")]
    assert row[names.index("browInnerUp_L")] == 1 and row[names.index("browInnerUp_R")] == 1
    assert A[ARKIT.channels.index("eyeBlinkLeft"), names.index("eyeBlink_L")] == 1
    assert A[ARKIT.channels.index("tongueOut")].sum() == 0  # ICT has no tongue shape
    assert (A.sum(axis=0) == 1).all()  # every ICT shape is driven by exactly one ARKit weight


def test_ict_expressions_move_the_right_parts(ict):
    v = ict.vertices(arkit_motion(2, jawOpen=np.array([0.0, 0.6])))
    assert v.shape == (2, ict.num_vertices, 3) and v.dtype == np.float32
    np.testing.assert_allclose(v[0], ict.neutral, atol=1e-5)
    lips = ict.lip_vertices
    lower = lips[ict.neutral[lips, 1] < np.median(ict.neutral[lips, 1])]
    assert (v[1, lower, 1] - v[0, lower, 1]).mean() < -5.0  # the lower lip drops by more than 5 mm
    blink = ict.vertices(arkit_motion(1, eyeBlinkLeft=1.0))[0] - ict.neutral
    moved = np.linalg.norm(blink, axis=1) > 0.5
    assert moved.any() and (ict.neutral[moved, 0] > 0).all()  # subject's left = +x
    sub = ict.vertices(arkit_motion(2, jawOpen=np.array([0.2, 0.9]), headRotY=0.3), indices=lips)
    full = ict.vertices(arkit_motion(2, jawOpen=np.array([0.2, 0.9]), headRotY=0.3))
    np.testing.assert_allclose(sub, full[:, lips], atol=1e-4)
    chunks = np.concatenate(list(ict.iter_vertices(arkit_motion(5, jawOpen=np.linspace(0, 1, 5)), chunk=2)))
    np.testing.assert_allclose(chunks, ict.vertices(arkit_motion(5, jawOpen=np.linspace(0, 1, 5))), atol=1e-5)


def test_ict_head_pose_is_rigid(ict):
    v = ict.vertices(arkit_motion(1, headRotX=0.2, headRotY=-0.3, headRotZ=0.1))[0]
    i, j = ict.lip_vertices[:50], ict.upper_face_vertices[:50]
    d0 = np.linalg.norm(ict.neutral[i] - ict.neutral[j], axis=1)
    np.testing.assert_allclose(np.linalg.norm(v[i] - v[j], axis=1), d0, rtol=1e-4, atol=1e-3)
    t = ict.vertices(arkit_motion(1, headTx=1.0, headTy=-2.0))[0] - ict.neutral
    np.testing.assert_allclose(t.mean(axis=0), [10.0, -20.0, 0.0], atol=1e-3)  # cm -> mm
    nod = ict.vertices(arkit_motion(1, headRotX=0.3))[0]
    nose = int(np.argmax(ict.neutral[:, 2]))
    assert nod[nose, 1] < ict.neutral[nose, 1] - 10  # positive pitch about x nods the face down


def test_get_face_model_choices(ict_path, monkeypatch, tmp_path):
    from ksdiff.face.models import get_face_model

    monkeypatch.setenv("KSDIFF_ICT_ASSET", str(ict_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("KSDIFF_FLAME_ASSET", raising=False)
    assert get_face_model("arkit").name == "ict"
    assert get_face_model("flame").name == "schematic"  # no FLAME file anywhere
    assert get_face_model(arkit_motion(), face="schematic").name == "schematic"
    with pytest.raises(KsdiffError, match="arkit"):
        get_face_model("flame", face="ict")
    with pytest.raises(KsdiffError, match="FLAME"):
        get_face_model("flame", face="flame")
    monkeypatch.setenv("KSDIFF_ICT_ASSET", str(tmp_path / "missing.npz"))
    with pytest.raises(KsdiffError, match="not found"):
        get_face_model("arkit", face="ict")


def test_schematic_face_follows_coefficients():
    from ksdiff.face.schematic import LAYOUT, SchematicFace, SchematicRenderer

    f = SchematicFace()
    m = arkit_motion(5)
    m.coeffs[1, ARKIT.channels.index("jawOpen")] = 0.6
    m.coeffs[2, ARKIT.channels.index("eyeBlinkLeft")] = 1.0
    m.coeffs[3, ARKIT.channels.index("mouthPucker")] = 1.0
    m.coeffs[4, ARKIT.channels.index("headRotZ")] = 0.3
    v = f.vertices(m)
    gap = lambda k, a, b: (v[k, LAYOUT[a], 1] - v[k, LAYOUT[b], 1]).max()  # noqa: E731
    assert gap(1, "lip_in_up", "lip_in_lo") > gap(0, "lip_in_up", "lip_in_lo") + 8  # mouth opens > 8 mm
    assert gap(2, "lid_up_l", "lid_lo_l") < 0.5 * gap(0, "lid_up_l", "lid_lo_l")  # left eye closes
    assert gap(2, "lid_up_r", "lid_lo_r") == pytest.approx(gap(0, "lid_up_r", "lid_lo_r"))
    width = lambda k: np.ptp(v[k, LAYOUT["lip_out_up"], 0])  # noqa: E731
    assert width(3) < 0.8 * width(0)  # pucker narrows the mouth
    eyes = v[4, LAYOUT["pupil_l"]][0] - v[4, LAYOUT["pupil_r"]][0]
    assert np.degrees(np.arctan2(eyes[1], eyes[0])) == pytest.approx(np.degrees(0.3), abs=0.5)  # in-plane tilt
    img = SchematicRenderer(96).render(v[1])
    assert img.shape == (96, 96, 3) and img.dtype == np.uint8 and img.std() > 20
    m.coeffs[1, ARKIT.channels.index("mouthClose")] = 0.6  # ARKit's closed lips on an open jaw
    assert f.vertices(m)[1, LAYOUT["lip_in_up"], 1].min() - f.vertices(m)[1, LAYOUT["lip_in_lo"], 1].max() < 1.0


def test_arkit_spec_clip_keeps_blendshapes_valid(ict):
    """FaceSpec.clip: blendshapes into [0, 1] and mouthClose down to jawOpen, head untouched; on the ICT head
    mouthClose above jawOpen pushes the upper lip below the lower, at most jawOpen it closes them."""
    c = np.zeros((3, ARKIT.dim), np.float32)
    jaw, close, tx = (ARKIT.channels.index(n) for n in ("jawOpen", "mouthClose", "headTx"))
    c[:, jaw], c[:, close], c[:, tx] = [0.02, 0.3, 1.4], [0.3, 0.2, -0.5], 5.0
    m = Motion(c.copy(), ARKIT.channels, 25.0, "arkit")
    from ksdiff.metrics import inner_lip_gap

    assert inner_lip_gap(m, ict)[0] < -5  # upper lip 5+ mm below the lower
    out = ARKIT.clip(c)
    assert out is c and np.allclose(c[:, jaw], [0.02, 0.3, 1.0]) and np.allclose(c[:, close], [0.02, 0.2, 0.0])
    assert (c[:, tx] == 5.0).all()
    gap = inner_lip_gap(Motion(c, ARKIT.channels, 25.0, "arkit"), ict)
    assert abs(gap[0]) < 1.5 and gap[1] > 2  # closed, not crossed; the open jaw with a partial closure stays open
    flame = get_spec("flame")
    f = np.full((2, flame.dim), 3.0, np.float32)
    assert (flame.clip(f) == 3.0).all()  # FLAME's coefficients are unbounded


# --------------------------------------------------------------------------------------------- FLAME

def tiny_flame(rng: np.random.Generator) -> dict:
    """A FLAME-like model: a 9 x 9 grid face (metres), 5 joints (root, neck, jaw, eyes); the lower rows are
    skinned to the jaw."""
    ys, xs = np.mgrid[0:9, 0:9]
    v = np.stack([(xs - 4) * 0.01, (ys - 4) * 0.01, 0.05 + 0.002 * rng.standard_normal(xs.shape)], -1).reshape(-1, 3)
    V = len(v)
    tri = []
    for r in range(8):
        for c in range(8):
            a = r * 9 + c
            tri += [(a, a + 1, a + 10), (a, a + 10, a + 9)]
    weights = np.zeros((V, 5), np.float32)
    low = v[:, 1] < -0.005
    weights[low, 2] = 1.0
    weights[~low, 1] = 1.0
    J_reg = np.zeros((5, V), np.float32)
    J_reg[0, 40] = J_reg[1, 40] = 1.0
    J_reg[2, 36] = 1.0  # the jaw pivots at the middle row's left edge... the mean of its row
    J_reg[2] = 0
    J_reg[2, 36:45] = 1 / 9
    J_reg[3, 60] = J_reg[4, 56] = 1.0
    shapedirs = 0.001 * rng.standard_normal((V, 3, 4 + 6)).astype(np.float32)
    posedirs = 0.0005 * rng.standard_normal((V, 3, 36)).astype(np.float32)
    return {"v_template": v.astype(np.float32), "shapedirs": shapedirs, "num_shape": np.int32(4),
            "posedirs": posedirs, "J_regressor": J_reg, "weights": weights,
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
            "f": np.array(tri, dtype=np.int32)}


def flame_motion(T: int = 1, **channels) -> Motion:
    c = np.zeros((T, FLAME.dim), np.float32)
    for name, val in channels.items():
        c[:, FLAME.channels.index(name)] = val
    return Motion(c, FLAME.channels, 25.0, "flame")


def test_flame_lbs(tmp_path):
    from ksdiff.face.flame import FLAMEFaceModel, rodrigues

    d = tiny_flame(np.random.default_rng(0))
    np.savez(tmp_path / "flame.npz", **d)
    # Pose correctives: the head's vertices (skinned to the unrotated neck) move by posedirs · (R_jaw − I).
    R = rodrigues(np.array([0.3, 0.0, 0.0]))
    jaw = FLAMEFaceModel(tmp_path / "flame.npz").vertices(flame_motion(jawRotX=0.3))[0]
    up = d["weights"][:, 2] == 0
    expect = d["v_template"] + d["posedirs"][:, :, 9:18] @ (R - np.eye(3)).reshape(-1)
    np.testing.assert_allclose(jaw[up], 1000 * expect[up], atol=1e-2)
    d["posedirs"][:] = 0
    np.savez(tmp_path / "flame.npz", **d)
    lips = np.arange(27, 54)
    np.save(tmp_path / "lips.npy", lips)
    m = FLAMEFaceModel(tmp_path / "flame.npz", lip_vertices=tmp_path / "lips.npy")
    np.testing.assert_array_equal(m.lip_vertices, lips)
    rest = m.vertices(flame_motion())[0]
    np.testing.assert_allclose(rest, d["v_template"] * 1000, atol=1e-3)  # metres -> mm, identity at rest
    e = m.vertices(flame_motion(exp01=2.0))[0]
    np.testing.assert_allclose(e - rest, 2.0 * d["shapedirs"][:, :, 5] * 1000, atol=1e-3)
    jaw = m.vertices(flame_motion(jawRotX=0.3))[0]
    low = d["weights"][:, 2] > 0
    assert np.abs(jaw[~low] - rest[~low]).max() < 1e-3  # the jaw moves only its own vertices...
    assert np.linalg.norm(jaw[low] - rest[low], axis=1).mean() > 2.0  # ... by millimetres
    g = m.vertices(flame_motion(globalRotY=0.5))[0]
    pd = lambda x: np.linalg.norm(x[:, None] - x[None], axis=-1)  # noqa: E731
    np.testing.assert_allclose(pd(g), pd(rest), atol=1e-2)  # the global rotation is rigid
    assert np.abs(g - rest).max() > 5.0
    t = m.vertices(flame_motion(camTx=0.01))[0]
    np.testing.assert_allclose((t - rest)[:, 0], 10.0, atol=1e-3)


def test_flame_default_lip_region(tmp_path):
    from ksdiff.face.flame import FLAMEFaceModel

    d = tiny_flame(np.random.default_rng(1))
    d["weights"][:, 1:3] = 0
    d["weights"][:, 2] = np.clip((0.01 - d["v_template"][:, 1]) / 0.02, 0, 1)  # blended around y = 0
    d["weights"][:, 1] = 1 - d["weights"][:, 2]
    d["v_template"][:, 2] = 0.05  # flat, so every vertex is "front"
    np.savez(tmp_path / "flame.npz", **d)
    m = FLAMEFaceModel(tmp_path / "flame.npz")
    assert len(m.lip_vertices) > 0
    assert (np.abs(m.neutral[m.lip_vertices, 1] - m.mouth_centre[1]) < 15).all()


class _FakeCh:
    """Pickled like chumpy's Ch: a class from module 'chumpy.ch' whose state holds the array as 'x'."""

    def __init__(self, x):
        self.x = x


def test_convert_flame_pickle(tmp_path, monkeypatch):
    import scipy.sparse

    from ksdiff.cli import main
    from ksdiff.face.flame import FLAMEFaceModel

    d = tiny_flame(np.random.default_rng(2))
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    _FakeCh.__module__, _FakeCh.__qualname__ = "chumpy.ch", "Ch"
    ch.Ch = _FakeCh
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch)
    raw = {k: _FakeCh(d[k]) for k in ("v_template", "shapedirs", "posedirs", "weights")}
    raw["J_regressor"] = scipy.sparse.csc_matrix(d["J_regressor"].astype(np.float64))
    raw["kintree_table"], raw["f"] = d["kintree_table"], d["f"].astype(np.uint32)
    pkl = tmp_path / "generic_model.pkl"
    pkl.write_bytes(pickle.dumps(raw, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy.ch")  # the converter must not need chumpy
    out = tmp_path / "flame.npz"
    assert main(["assets", "flame", "--pkl", str(pkl), "--out", str(out), "--num-shape", "4"]) == 0
    with np.load(out, allow_pickle=False) as z:
        np.testing.assert_allclose(z["J_regressor"], d["J_regressor"])
        np.testing.assert_allclose(z["shapedirs"], d["shapedirs"])
    m = FLAMEFaceModel(out)
    assert m.vertices(flame_motion(jawRotX=0.2)).shape == (1, 81, 3)

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    assert main(["assets", "flame", "--pkl", str(bad), "--out", str(tmp_path / "bad.npz")]) == 2
    assert not (tmp_path / "bad.npz").exists()


# --------------------------------------------------------------------------------------------- ICT builder

def _write_obj(path, verts, faces=()):
    lines = ["# tiny ICT-style mesh", "mtllib none.mtl"] + [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in verts]
    lines += ["f " + " ".join(f"{i + 1}/{i + 1}/{i + 1}" for i in f) for f in faces]
    path.write_text("\n".join(lines) + "\n")


def test_build_ict_asset_from_objs(tmp_path):
    from ksdiff.cli import main
    from ksdiff.face.ict import ICTFaceModel

    fx = tmp_path / "ICT-FaceKit" / "FaceXModel"
    fx.mkdir(parents=True)
    neutral = np.array([[0, 0, 10], [1, 0, 10], [1, 1, 10], [0, 1, 10], [2, 0, 9], [2, 1, 9]], np.float32)
    _write_obj(fx / "generic_neutral_mesh.obj", neutral, [(0, 1, 2, 3), (1, 4, 5, 2)])
    jaw = neutral.copy()
    jaw[:2, 1] -= 1.5
    blink = neutral.copy()
    blink[4, 1] -= 0.5
    _write_obj(fx / "jawOpen.obj", jaw)
    _write_obj(fx / "eyeBlink_L.obj", blink)
    _write_obj(fx / "identity000.obj", neutral * 1.1)
    out = tmp_path / "ict_face.npz"
    assert main(["assets", "ict", "--src", str(tmp_path / "ICT-FaceKit"), "--out", str(out)]) == 0
    with np.load(out) as z:
        assert list(z["expression_names"]) == ["eyeBlink_L", "jawOpen"]
        assert z["triangles"].shape == (4, 3) and z["identity_deltas"].shape == (1, 6, 3)
    m = ICTFaceModel(out)
    v = m.vertices(arkit_motion(1, jawOpen=1.0, eyeBlinkLeft=0.5))[0]
    expect = (jaw + 0.5 * (blink - neutral)) * 10.0
    np.testing.assert_allclose(v, expect, atol=1e-2)
    assert main(["assets", "ict", "--src", str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 2
