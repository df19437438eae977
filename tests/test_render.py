"""Rendering: both rasterisers on the real ICT head, the schematic face, and mp4 muxing with real speech."""

from __future__ import annotations

import numpy as np
import pytest

from ksdiff.audio.decode import load_audio
from ksdiff.audio.envelope import speech_envelope
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion
from ksdiff.face.specs import get_spec

ARKIT = get_spec("arkit")
SIZE = 160


def arkit_motion(T: int, fps: float = 25.0, **channels) -> Motion:
    c = np.zeros((T, ARKIT.dim), np.float32)
    for name, v in channels.items():
        c[:, ARKIT.channels.index(name)] = v
    return Motion(c, ARKIT.channels, fps, "arkit")


@pytest.fixture(scope="module")
def ict(ict_path):
    from ksdiff.face.ict import ICTFaceModel

    return ICTFaceModel(ict_path)


@pytest.fixture(scope="module")
def gl_available():
    from ksdiff.render.raster_gl import create_context

    try:
        create_context().release()
        return True
    except RuntimeError:
        return False


def _renders(ict, backend):
    from ksdiff.render import make_renderer

    r = make_renderer(ict, SIZE, backend)
    try:
        v = ict.vertices(arkit_motion(2, jawOpen=np.array([0.0, 0.6])))
        return r.backend, [r.render(x) for x in v]
    finally:
        r.close()


def _mouth_box(ict):
    """Pixel box around the lips in the neutral render (projected lip vertices)."""
    from ksdiff.render.camera import frame_camera

    cam = frame_camera(ict.neutral[ict.frame_vertices], SIZE)
    xy, _, _ = cam.project(ict.neutral[ict.lip_vertices])
    x0, y0 = np.floor(xy.min(axis=0)).astype(int)
    x1, y1 = np.ceil(xy.max(axis=0)).astype(int)
    return slice(y0, y1 + 8), slice(x0, x1)


def test_numpy_and_gl_rasterisers_agree(ict, gl_available):
    from ksdiff.render.camera import BACKGROUND

    backend, (neutral, open_) = _renders(ict, "numpy")
    assert backend == "numpy" and neutral.shape == (SIZE, SIZE, 3) and neutral.dtype == np.uint8
    bg = np.round(np.asarray(BACKGROUND) * 255).astype(np.uint8)
    head = (np.abs(neutral.astype(int) - bg).sum(axis=-1) > 6)
    assert 0.25 < head.mean() < 0.8  # the head fills the frame without being cut off at the sides
    assert not head[:, 0].any() and not head[:, -1].any()
    ys, xs = _mouth_box(ict)
    mouth_n, mouth_o = neutral[ys, xs].astype(float), open_[ys, xs].astype(float)
    assert np.abs(mouth_o - mouth_n).mean() > 15  # the open mouth is visible...
    assert mouth_o.mean() < mouth_n.mean() - 5  # ... and darker (the mouth interior)
    far = np.abs(open_[: SIZE // 3].astype(int) - neutral[: SIZE // 3].astype(int))
    assert far.mean() < 0.2 and far.max() <= 8  # the forehead (barely) moves with the jaw
    if not gl_available:
        pytest.skip("no OpenGL context here: numpy backend checked alone")
    gl_backend, (gl_neutral, gl_open) = _renders(ict, "gl")
    assert gl_backend == "gl"
    gl_head = (np.abs(gl_neutral.astype(int) - bg).sum(axis=-1) > 6)
    iou = (head & gl_head).sum() / (head | gl_head).sum()
    assert iou > 0.97
    assert np.abs(gl_neutral.astype(float) - neutral.astype(float)).mean() < 6
    assert np.abs(gl_open.astype(float) - open_.astype(float)).mean() < 6


def test_render_video_matches_audio_duration(tmp_path, speech_dir, ict_path):
    from ksdiff.render import render_video
    from ksdiff.render.video import stream_durations

    wav = speech_dir / "arctic_a0009.wav"
    w = load_audio(wav)
    seconds = len(w) / 16000
    env = speech_envelope(w, 25.0)
    jaw = np.clip(env / np.quantile(env, 0.95), 0, 1) * 0.7
    # Deliberately 9 frames short: the renderer pads to the audio's length.
    pred = arkit_motion(len(jaw) - 9, jawOpen=jaw[:-9], headRotY=0.1 * np.sin(np.arange(len(jaw) - 9) / 10))
    gt = arkit_motion(len(jaw) + 5, jawOpen=np.r_[jaw, np.zeros(5)])
    out = tmp_path / "v.mp4"
    info = render_video(pred, wav, out, face="ict", size=96, side_by_side=gt, asset=ict_path)
    assert info["face"] == "ict" and out.is_file()
    d = stream_durations(out)
    assert abs(d["video"] - seconds) <= 0.1 and abs(d["audio"] - seconds) <= 0.1
    assert d["frames"] == round(seconds * 25)
    import av

    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.name, v.width, v.height) == ("h264", 192, 96)
        assert v.codec_context.pix_fmt == "yuv420p" and c.streams.audio[0].codec_context.name == "aac"
        frame = next(c.decode(v)).to_ndarray(format="rgb24")
    assert frame[: 96 // 14].mean() < frame[96 // 14: 40].mean()  # a dark label strip over the panels
    # The schematic face at another fps, no ground truth; audio in another format (flac, 16 kHz).
    flac = speech_dir / "jfk.flac"
    secs = len(load_audio(flac)) / 16000
    m = arkit_motion(int(secs * 30), fps=30.0, jawOpen=0.3)
    info = render_video(m, flac, tmp_path / "s.mp4", face="schematic", size=64)
    d = stream_durations(tmp_path / "s.mp4")
    assert abs(d["video"] - secs) <= 0.1 and abs(d["audio"] - secs) <= 0.1 and d["fps"] == 30


def test_render_cli_and_atomic_failure(tmp_path, speech_dir):
    from ksdiff.cli import main

    m = arkit_motion(10, jawOpen=np.linspace(0, 1, 10))
    m.save(tmp_path / "m.npz")
    out = tmp_path / "out.mp4"
    assert main(["render", str(tmp_path / "m.npz"), "--out", str(out), "--face", "schematic", "--size", "48"]) == 0
    assert out.is_file()
    assert main(["render", str(tmp_path / "m.npz"), "--out", str(tmp_path / "all.mp4"), "--face", "ict",
                 "--size", "48", "--all-triangles"]) == 0
    bad = tmp_path / "bad.mp4"
    not_audio = tmp_path / "noise.wav"
    not_audio.write_bytes(b"not a wav file at all")
    assert main(["render", str(tmp_path / "m.npz"), "--audio", str(not_audio), "--out", str(bad)]) == 2
    assert main(["render", str(tmp_path / "missing.npz"), "--out", str(bad)]) == 2
    assert not bad.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bad")]
    flame = Motion(np.zeros((3, get_spec("flame").dim), np.float32), get_spec("flame").channels, 25.0, "flame")
    with pytest.raises(KsdiffError, match="arkit"):
        from ksdiff.render import render_video

        render_video(flame, None, bad, face="ict")


def test_threaded_render_matches_serial_and_fails_cleanly(tmp_path, speech_dir, ict_path):
    """The three-thread pipeline (vertices + normals | drawing | encoding) writes the same frames as the serial
    one; an error in any stage reaches the caller as itself and leaves no file behind."""
    import av

    from ksdiff.face.ict import ICTFaceModel
    from ksdiff.render import render_video
    from ksdiff.render.video import stream_durations

    wav = speech_dir / "arctic_a0009.wav"
    w = load_audio(wav)
    env = speech_envelope(w, 25.0)
    m = arkit_motion(len(env), jawOpen=np.clip(env / np.quantile(env, 0.95), 0, 1) * 0.6,
                     headRotY=0.1 * np.sin(np.arange(len(env)) / 8))
    frames = {}
    for threaded in (False, True):
        out = tmp_path / f"t{int(threaded)}.mp4"
        render_video(m, wav, out, face="ict", size=64, asset=ict_path, threaded=threaded)
        with av.open(str(out)) as c:
            frames[threaded] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
        d = stream_durations(out)
        assert abs(d["video"] - len(w) / 16000) <= 0.1 and abs(d["audio"] - len(w) / 16000) <= 0.1
    assert frames[True].shape == frames[False].shape and len(frames[True]) == round(len(w) / 16000 * 25)
    assert np.array_equal(frames[True], frames[False])
    assert frames[True].std(axis=0).max() > 20  # the face moves

    class Broken(ICTFaceModel):  # fails in the vertex thread after a few frames
        def iter_vertices(self, motion, chunk=64):
            yield from super().iter_vertices(Motion(motion.coeffs[:5], motion.channels, motion.fps, motion.spec), 5)
            raise ValueError("vertex stage broke")

    import ksdiff.render as R

    orig = R.get_face_model
    R.get_face_model = lambda *a, **k: Broken(ict_path)
    try:
        with pytest.raises(ValueError, match="vertex stage broke"):
            render_video(m, wav, tmp_path / "broken.mp4", face="ict", size=64)
    finally:
        R.get_face_model = orig
    assert not [p for p in tmp_path.iterdir() if "broken" in p.name]


def test_pipeline_threads_propagate_errors():
    from ksdiff.utils.threads import Worker, prefetch

    assert list(prefetch(iter(range(50)), depth=3)) == list(range(50))

    def bad():
        yield 1
        raise RuntimeError("producer failed")

    it = prefetch(bad())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="producer failed"):
        next(it)
    seen = []
    w = Worker(seen.append, depth=2)
    for i in range(20):
        w.put(i)
    w.close()
    assert seen == list(range(20))

    def boom(x):
        if x == 3:
            raise OSError("disk full")

    w = Worker(boom, depth=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):
            w.put(i)
        w.close()


def test_bench_render_compares_serial_and_threaded(tmp_path, capsys):
    from ksdiff.cli import main

    md = tmp_path / "B.md"
    assert main(["bench", "render", "--seconds", "1.5", "--size", "48", "--repeats", "1", "--face", "schematic",
                 "--record-to", str(md), "--date", "2026-01-01"]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if ln.startswith(("| serial", "| threaded", "| visible"))]
    assert len(rows) == 3 and all("| 38 |" in r for r in rows)
    for r in rows:  # the last column: video s / audio s of the written mp4
        v, a = (float(x) for x in r.strip(" |").split("|")[-1].split("/"))
        assert abs(v - 1.5) <= 0.1 and abs(a - 1.5) <= 0.1
    assert "Rendering: serial vs threaded stages vs visible triangles only — 2026-01-01" in md.read_text()
    assert main(["bench", "render", "--modes", "fast"]) == 2


def test_visible_triangles_render_the_same_pixels(ict):
    """Leaving out the triangles the camera never sees changes no pixel for motion inside the measured range
    (mouth wide open with the head turned to the limits, and a busy random face); the set is cached on disk;
    motion outside the range is drawn with every triangle."""
    from ksdiff.render import make_renderer
    from ksdiff.render.camera import frame_camera
    from ksdiff.render.visibility import (
        MAX_ROT,
        cache_dir,
        motion_in_range,
        visible_triangles,
    )

    cam = frame_camera(ict.neutral[ict.frame_vertices], 128)
    keep = visible_triangles(ict, cam, ict.cull_triangles)
    assert keep is not None and 0.5 * len(keep) < keep.sum() < 0.9 * len(keep)  # a real saving, not everything
    cached = list(cache_dir().glob("visible-*.npy"))
    assert len(cached) == 1
    np.testing.assert_array_equal(visible_triangles(ict, cam, ict.cull_triangles), keep)  # read back
    face = ict.region_names.index("face")
    assert keep[(ict.vertex_region[ict.render_triangles] == face).all(axis=1)].all()

    T = 12
    rng = np.random.default_rng(3)
    c = np.zeros((T, ARKIT.dim), np.float32)
    expr = [i for i, n in enumerate(ARKIT.channels) if not n.startswith("head")]
    c[:, expr] = rng.random((T, len(expr))) * (rng.random((T, len(expr))) < 0.4)
    c[:6, ARKIT.channels.index("jawOpen")] = 1.0
    for k, axis in enumerate(("headRotX", "headRotY", "headRotZ")):
        c[2 * k, ARKIT.channels.index(axis)] = 0.95 * MAX_ROT
        c[2 * k + 1, ARKIT.channels.index(axis)] = -0.95 * MAX_ROT
    m = Motion(c, ARKIT.channels, 25.0, "arkit")
    assert motion_in_range(m)
    full, part = make_renderer(ict, 128, "gl"), make_renderer(ict, 128, "gl", skip_hidden=True)
    try:
        assert len(part.triangles) == keep.sum() < len(full.triangles)
        for v in ict.vertices(m):
            np.testing.assert_array_equal(part.render(v), full.render(v))
    finally:
        full.close()
        part.close()
    c[0, ARKIT.channels.index("headRotY")] = 1.2 * MAX_ROT
    assert not motion_in_range(Motion(c, ARKIT.channels, 25.0, "arkit"))
    c[0, ARKIT.channels.index("headRotY")] = 0.0
    c[1, ARKIT.channels.index("jawOpen")] = 1.5
    assert not motion_in_range(Motion(c, ARKIT.channels, 25.0, "arkit"))


def test_gl_draw_without_gil_matches_moderngl(ict):
    """The per-frame draw and read-back through ctypes (GIL released, so the pipeline's other threads run)
    give the same pixels as moderngl's own calls (the speed-up is measured by ``ksdiff bench render``)."""
    from ksdiff.render import make_renderer

    r = make_renderer(ict, 96, "gl")
    try:
        assert r._raw is not None, "GL entry points not found: frames would be drawn holding the GIL"
        v = ict.vertices(arkit_motion(1, jawOpen=0.7, headRotY=0.2))[0]
        fast = r.render(v)
        raw, r._raw = r._raw, None
        slow = r.render(v)
        r._raw = raw
        np.testing.assert_array_equal(fast, slow)
        assert fast.std() > 10
    finally:
        r.close()


def _ksdiff_cli(*args: str):
    """The real ``ksdiff`` command in a subprocess."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("ksdiff")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ksdiff"]
    env = dict(os.environ, PYTHONWARNINGS="default")
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120, env=env,
                          check=False)


def _assert_one_line_error(r, file, *words: str) -> None:
    lines = r.stderr.strip("\n").splitlines()
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"ksdiff: {file}: "), r.stderr
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.parametrize("fps", [1e9, 1e-6])
def test_render_cli_refuses_a_frame_rate_out_of_range(tmp_path, speech_dir, fps):
    """A motion at 1e9 fps would have made round(seconds × 1e9) frames (hundreds of GiB) for the audio; at 1e-6
    fps one frame lasting days. Both, with or without audio, are one line naming the motion file, exit 2, no
    mp4 and no temporary file left."""
    motion = tmp_path / "m.npz"
    arkit_motion(20, fps=fps, jawOpen=np.linspace(0, 1, 20)).save(motion)
    outs = tmp_path / "outs"
    outs.mkdir()
    for audio in (["--audio", str(speech_dir / "arctic_a0009.wav")], []):
        r = _ksdiff_cli("render", str(motion), "--out", str(outs / "v.mp4"), "--face", "schematic", "--size", "32",
                        *audio)
        _assert_one_line_error(r, motion, f"fps {fps:g}", "1 to 240")
        assert list(outs.iterdir()) == []


def test_render_cli_caps_the_video_length(tmp_path, speech_dir):
    """A ground truth at an absurd frame rate is refused, naming its file; a video over MAX_VIDEO_SECONDS is
    refused before anything is allocated for it; the limits themselves are allowed."""
    from ksdiff.render import MAX_VIDEO_SECONDS, render_frame_count

    motion, gt = tmp_path / "m.npz", tmp_path / "gt.npz"
    arkit_motion(20, jawOpen=0.5).save(motion)
    arkit_motion(20, fps=1e9, jawOpen=0.5).save(gt)
    outs = tmp_path / "outs"
    outs.mkdir()
    r = _ksdiff_cli("render", str(motion), "--gt", str(gt), "--out", str(outs / "v.mp4"), "--face", "schematic",
                    "--size", "32")
    _assert_one_line_error(r, gt, "fps 1e+09", "1000")
    long_motion = tmp_path / "long.npz"
    arkit_motion(int(MAX_VIDEO_SECONDS) + 1, fps=1.0).save(long_motion)
    r = _ksdiff_cli("render", str(long_motion), "--out", str(outs / "v.mp4"), "--face", "schematic", "--size", "32")
    _assert_one_line_error(r, long_motion, "at most 7200 s")
    assert list(outs.iterdir()) == []
    m = arkit_motion(3, fps=240.0)
    assert render_frame_count(m, MAX_VIDEO_SECONDS) == int(MAX_VIDEO_SECONDS * 240)
    with pytest.raises(KsdiffError, match="at most 7200 s") as e:
        render_frame_count(m, MAX_VIDEO_SECONDS + 1, audio_path="long.wav")
    assert e.value.path == "long.wav"
    assert render_frame_count(arkit_motion(3, fps=1.0), None) == 3
    with pytest.raises(KsdiffError, match="fps nan"):
        render_frame_count(arkit_motion(3, fps=float("nan")), 2.0)


def test_ground_truth_at_another_frame_rate_resamples_only_the_frames_shown(tmp_path):
    """The ground truth is resampled to the video's fps; only the frames shown are made (a 1e-6 fps one would
    otherwise be 10⁹ frames), and they equal the full resampling's."""
    from ksdiff.render import _ground_truth

    c = np.random.default_rng(0).uniform(0, 1, (40, ARKIT.dim)).astype(np.float32)
    c[:, 52:] = 0.1
    gt = Motion(c, ARKIT.channels, 30.0, "arkit")
    for n in (10, 33, 60):  # shorter than, equal to and longer than the resampled ground truth (33 frames)
        ref = gt.resample(25.0).coeffs
        ref = np.concatenate([ref, np.repeat(ref[-1:], max(0, n - len(ref)), 0)])[:n]
        np.testing.assert_array_equal(_ground_truth(gt, 25.0, n).coeffs, ref)
    slow = _ground_truth(Motion(c, ARKIT.channels, 1e-6, "arkit"), 25.0, 50)
    assert slow.coeffs.shape == (50, ARKIT.dim)
    np.testing.assert_allclose(slow.coeffs[-1], c[0], atol=1e-5)  # 2 s into a 10⁶ s first frame


def test_render_cli_three_panels_side_by_side(tmp_path, speech_dir):
    """`--panel` shows more motions to the right (e.g. one speech at three emotions), each with its label; the
    labels must match the panels."""
    import av

    ms = []
    for i, smile in enumerate((0.0, 0.3, 0.8)):
        ms.append(tmp_path / f"v{i}.npz")
        arkit_motion(30, jawOpen=0.3, mouthSmileLeft=smile, mouthSmileRight=smile).save(ms[-1])
    out = tmp_path / "three.mp4"
    r = _ksdiff_cli("render", str(ms[0]), "--panel", str(ms[1]), "--panel", str(ms[2]), "--labels", "v -1,v 0,v +1",
                    "--out", str(out), "--face", "schematic", "--size", "48")
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (144, 48)
        frame = next(c.decode(v)).to_ndarray(format="rgb24").astype(float)
    thirds = [frame[10:, 48 * i: 48 * (i + 1)] for i in range(3)]
    d02, d01 = np.abs(thirds[0] - thirds[2]).mean(), np.abs(thirds[0] - thirds[1]).mean()
    assert d02 > d01 > 0.1, (d01, d02)  # the smile grows left to right
    r = _ksdiff_cli("render", str(ms[0]), "--panel", str(ms[1]), "--labels", "a,b,c", "--out", str(out),
                    "--face", "schematic", "--size", "48")
    assert r.returncode == 2 and "2 panels need 2 labels, got 3" in r.stderr
