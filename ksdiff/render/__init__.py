"""Rendering: motion -> face model vertices -> frames -> mp4 with the speech (DESIGN.md section 5).

``render_video(motion, audio, out)`` is the one entry point; ``make_renderer`` / ``render_frames`` give frames
for other uses (PNG stills, benchmarks). Backends: ``gl`` (moderngl on EGL, headless) and ``numpy`` (a
z-buffer rasteriser, no OpenGL needed); ``auto`` tries GL first. The schematic face is drawn with Pillow.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.face.base import FaceModel
from ksdiff.face.models import get_face_model
from ksdiff.face.motion import Motion, load_motion
from ksdiff.render.video import VIDEO_FPS_RANGE, check_video_fps
from ksdiff.utils.threads import prefetch

BACKENDS = ("auto", "gl", "numpy")
LABELS = ("prediction", "ground truth")
#: Frame rates of a ground-truth motion (``side_by_side``), which is resampled to the video's: 0 < fps <= 1000.
MOTION_FPS_RANGE = (0.0, 1000.0)
#: The longest video rendered, in seconds (2 hours: at most 1,728,000 frames at 240 fps).
MAX_VIDEO_SECONDS = 7200.0

__all__ = ["BACKENDS", "MAX_VIDEO_SECONDS", "MOTION_FPS_RANGE", "VIDEO_FPS_RANGE", "check_video_fps", "make_renderer",
           "render_frame_count", "render_frames", "render_image", "render_video"]


def make_renderer(model: FaceModel, size: int = 512, backend: str = "auto", antialias: bool = False,
                  skip_hidden: bool = False):
    """A renderer for ``model`` with ``.render(verts (V, 3)) -> (size, size, 3) uint8`` and ``.backend``.

    ``backend``: ``auto`` (GL if an OpenGL context can be made, else numpy), ``gl`` or ``numpy``; ignored for
    the schematic face. ``antialias``: 4× MSAA (GL backend only; about 3× slower on llvmpipe). ``skip_hidden``:
    leave out the ICT head's triangles the camera never sees (:mod:`ksdiff.render.visibility`; only for motion
    inside :func:`~ksdiff.render.visibility.motion_in_range`).
    """
    if backend not in BACKENDS:
        raise KsdiffError(f"unknown render backend {backend!r} (known: {', '.join(BACKENDS)})")
    if not model.is_mesh:
        from ksdiff.face.schematic import SchematicRenderer

        return SchematicRenderer(size)
    from ksdiff.render.camera import frame_camera

    pts = model.neutral if model.frame_vertices is None else model.neutral[model.frame_vertices]
    cam = frame_camera(pts, size)
    tri, cull = model.render_triangles, model.cull_triangles
    if skip_hidden and model.name == "ict" and backend != "numpy":
        from ksdiff.render.visibility import visible_triangles

        keep = visible_triangles(model, cam, cull)
        if keep is not None:
            tri = tri[keep]
            cull = None if cull is None else cull[keep]
    if backend in ("auto", "gl"):
        from ksdiff.render.raster_gl import GLRasterizer

        try:
            return GLRasterizer(cam, tri, model.vertex_colors, samples=4 if antialias else 0, cull=cull)
        except (KsdiffError, ImportError):
            if backend == "gl":
                raise
    from ksdiff.render.raster_np import NumpyRasterizer

    return NumpyRasterizer(cam, tri, model.vertex_colors, cull=cull)


def render_frames(motion: Motion, model: FaceModel, renderer, chunk: int = 64,
                  threaded: bool = True) -> Iterator[np.ndarray]:
    """Yield one (H, W, 3) uint8 frame per motion frame (vertices computed ``chunk`` frames at a time).

    With ``threaded`` the vertices (and, for the GL backend, the normals: ``renderer.prepare``) of the next
    frames are computed in a background thread while the renderer draws the current one.
    """
    prepare = getattr(renderer, "prepare", None)

    def inputs() -> Iterator[tuple]:
        for block in model.iter_vertices(motion, chunk=chunk):
            for verts in block:
                yield prepare(verts) if prepare is not None else (verts,)

    for args in (prefetch(inputs(), depth=8) if threaded else inputs()):
        yield renderer.render(*args)


def render_image(motion: Motion, frame: int = 0, face: str = "auto", size: int = 512, backend: str = "auto",
                 asset: str | os.PathLike | None = None) -> np.ndarray:
    """One frame of ``motion`` as an (size, size, 3) uint8 image."""
    model = get_face_model(motion, face=face, asset=asset)
    model.check_motion(motion)
    sub = Motion(motion.coeffs[frame:frame + 1], motion.channels, motion.fps, motion.spec)
    r = make_renderer(model, size, backend)
    try:
        return r.render(model.vertices(sub)[0])
    finally:
        r.close()


def fit_length(motion: Motion, num_frames: int) -> Motion:
    """``motion`` trimmed, or padded by repeating its last frame, to ``num_frames`` frames."""
    T = motion.num_frames
    if T == 0:
        raise KsdiffError("motion has no frames")
    if T >= num_frames:
        coeffs = motion.coeffs[:num_frames]
    else:
        coeffs = np.concatenate([motion.coeffs, np.repeat(motion.coeffs[-1:], num_frames - T, axis=0)])
    return Motion(coeffs, motion.channels, motion.fps, motion.spec)


def _label_overlay(width: int, height: int, labels: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, int]:
    """(h, W, 3) text colour, (h, W, 1) alpha and h, for labels centred over equal panels."""
    from PIL import Image, ImageDraw, ImageFont

    h = max(18, height // 14)
    img = Image.new("RGBA", (width, h), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=int(h * 0.62))
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    d.rectangle([0, 0, width, h], fill=(0, 0, 0, 110))
    panel = width // len(labels)
    for i, text in enumerate(labels):
        x0, y0, x1, y1 = d.textbbox((0, 0), text, font=font)
        d.text((i * panel + (panel - (x1 - x0)) / 2 - x0, (h - (y1 - y0)) / 2 - y0), text, font=font,
               fill=(240, 240, 240, 255))
    for i in range(1, len(labels)):  # the divider: "prediction | ground truth"
        d.line([(i * panel, 3), (i * panel, h - 4)], fill=(240, 240, 240, 255), width=2)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[..., :3] * 255.0, arr[..., 3:], h


def render_frame_count(motion: Motion, audio_seconds: float | None, motion_path: str | os.PathLike | None = None,
                       audio_path: str | os.PathLike | None = None) -> int:
    """The number of video frames for ``motion`` (its fps checked by :func:`check_video_fps`): round(audio
    seconds × fps), at least 1, with audio, else the motion's own frame count.

    Raises :class:`KsdiffError`, naming the audio file or else the motion file, when the video would last
    longer than :data:`MAX_VIDEO_SECONDS` (this bounds the frames to ``MAX_VIDEO_SECONDS × 240``).
    """
    check_video_fps(motion.fps, motion_path)
    if audio_seconds is not None:
        if audio_seconds > MAX_VIDEO_SECONDS:
            raise KsdiffError(f"audio lasts {audio_seconds:.0f} s; ksdiff renders videos of at most "
                              f"{MAX_VIDEO_SECONDS:.0f} s", audio_path)
        return max(1, round(audio_seconds * motion.fps))
    if motion.duration > MAX_VIDEO_SECONDS:
        raise KsdiffError(f"motion lasts {motion.duration:.0f} s ({motion.num_frames} frames at {motion.fps:g} fps); "
                          f"ksdiff renders videos of at most {MAX_VIDEO_SECONDS:.0f} s", motion_path)
    return motion.num_frames


def _ground_truth(side_by_side: Motion | str | os.PathLike, fps: float, num_frames: int) -> Motion:
    """The ground-truth panel's motion at ``fps``, trimmed or padded to ``num_frames`` (T, C) frames.

    Only the frames shown are resampled (the first ones of the full resampling, the same values), so a
    ground truth at a tiny frame rate cannot make a huge array.
    """
    path = None if isinstance(side_by_side, Motion) else side_by_side
    gt = side_by_side if path is None else load_motion(path)
    lo, hi = MOTION_FPS_RANGE
    if not lo < gt.fps <= hi:
        raise KsdiffError(f"fps {gt.fps:g} is outside the motion frame rates ksdiff renders ({lo:g} < fps <= "
                          f"{hi:g})", path)
    if abs(gt.fps - fps) > 1e-6:
        natural = gt.num_frames / gt.fps * fps  # resample_coeffs' default length, round(duration × fps)
        gt = gt.resample(fps, num_frames=num_frames if natural >= num_frames else None)
    return fit_length(gt, num_frames)


def _side_motions(side_by_side: Motion | str | os.PathLike | list | tuple | None, labels: tuple[str, ...], fps: float,
                  num_frames: int) -> list[Motion]:
    """The motions shown right of the main one (none, one, or a list), each at ``fps`` and ``num_frames``; the
    labels must name every panel."""
    extra = [] if side_by_side is None else list(side_by_side) if isinstance(side_by_side, (list, tuple)) \
        else [side_by_side]
    if extra and len(labels) != 1 + len(extra):
        raise KsdiffError(f"{1 + len(extra)} panels need {1 + len(extra)} labels, got {len(labels)}")
    return [_ground_truth(m, fps, num_frames) for m in extra]


def _panels(motion: Motion, model: FaceModel, others: list[Motion], face: str, size: int, backend: str,
            asset: str | os.PathLike | None, antialias: bool, skip_hidden: bool) -> list[tuple[Motion, FaceModel, Any]]:
    """(motion, face model, renderer) for each panel, left to right: ``motion`` and then each of ``others`` (the
    ground truth, or other takes), those of ``motion``'s spec sharing its renderer, others with their own model and
    renderer. The caller closes the renderers (one per distinct renderer)."""
    if skip_hidden and model.name == "ict":
        from ksdiff.render.visibility import motion_in_range

        skip_hidden = all(motion_in_range(m) for m in [motion, *others])
    renderer = make_renderer(model, size, backend, antialias=antialias, skip_hidden=skip_hidden)
    panels: list[tuple[Motion, FaceModel, Any]] = [(motion, model, renderer)]
    try:
        for gt in others:
            if (gt.spec or "arkit") == (motion.spec or "arkit"):
                panels.append((gt, model, renderer))
                continue
            gmodel = get_face_model(gt, face=face, asset=asset)
            gmodel.check_motion(gt)
            panels.append((gt, gmodel, make_renderer(gmodel, size, backend, antialias=antialias)))
    except BaseException:
        for r in {id(r): r for _, _, r in panels}.values():
            r.close()
        raise
    return panels


def _composite(panels: list[tuple[Motion, FaceModel, Any]], overlay: tuple[np.ndarray, np.ndarray, int] | None,
               threaded: bool) -> Iterator[np.ndarray]:
    """The video frames: the panels' (H, W, 3) frames side by side, (H, W × panels, 3) uint8, under the labels
    ``overlay`` (see :func:`_label_overlay`) if given."""
    iters = [render_frames(m, fm, r, threaded=threaded) for m, fm, r in panels]
    for imgs in zip(*iters):
        frame = imgs[0] if len(imgs) == 1 else np.concatenate(imgs, axis=1)
        if overlay is not None:
            rgb, alpha, h = overlay
            top = frame[:h].astype(np.float32)
            frame = frame.copy()
            frame[:h] = (top * (1.0 - alpha) + rgb * alpha + 0.5).astype(np.uint8)
        yield frame


def render_video(motion: Motion | str | os.PathLike, audio: str | os.PathLike | None, out_path: str | os.PathLike,
                 face: str = "auto", size: int = 512,
                 side_by_side: Motion | str | os.PathLike | list[Motion | str | os.PathLike] | None = None,
                 backend: str = "auto", asset: str | os.PathLike | None = None, antialias: bool = False,
                 labels: tuple[str, ...] = LABELS, threaded: bool = True, skip_hidden: bool = True) -> dict:
    """Render ``motion`` as an mp4 with ``audio`` (written atomically).

    Args:
        motion: a :class:`Motion` or a motion ``.npz``; its fps is the video's and must be in
            :data:`VIDEO_FPS_RANGE` (1 to 240).
        audio: the speech (any format PyAV reads) or None for a silent video. With audio, the video has
            round(audio seconds × fps) frames: the motion is trimmed, or padded with its last frame.
            The video may last at most :data:`MAX_VIDEO_SECONDS` (2 hours).
        out_path: the ``.mp4`` to write.
        face: ``auto`` | ``ict`` | ``flame`` | ``schematic`` (see :func:`ksdiff.face.models.get_face_model`).
        size: frame height and width of one panel in pixels (rounded up to even).
        side_by_side: a ground-truth motion shown to the right, with the labels "prediction | ground truth";
            or a list of motions, each a panel to the right (``labels``: one per panel, ``motion``'s first);
            resampled to the motion's fps (their own must be in :data:`MOTION_FPS_RANGE`).
        backend: ``auto`` | ``gl`` | ``numpy``.
        asset: the face model file (ICT / FLAME ``.npz``), default: found automatically.
        threaded: overlap the stages (vertices + normals, drawing, H.264 encoding) in three threads; False runs
            them one after another (for benchmarks: ``ksdiff bench render``).
        skip_hidden: leave out the ICT head's triangles the camera never sees (:mod:`ksdiff.render.visibility`;
            same pixels, 7–9 % faster) when every motion shown stays inside the range they were measured for.

    Returns:
        {"path", "frames", "fps", "seconds", "face", "backend", "render_fps", "video_seconds", "audio_seconds"}.

    Raises:
        KsdiffError: naming the bad input's file (fps out of range, video too long, unreadable motion or audio).
    """
    from ksdiff.render.video import AUDIO_RATE, load_audio_for_video, write_video

    motion_path = None if isinstance(motion, Motion) else motion
    if motion_path is not None:
        motion = load_motion(motion_path)
    check_video_fps(motion.fps, motion_path)
    size = int(size) + int(size) % 2
    if size < 16:
        raise KsdiffError(f"--size must be at least 16 pixels, got {size}")
    samples = None if audio is None else load_audio_for_video(audio, AUDIO_RATE, max_seconds=MAX_VIDEO_SECONDS)
    num_frames = render_frame_count(motion, None if samples is None else len(samples) / AUDIO_RATE, motion_path,
                                    audio)
    motion = fit_length(motion, num_frames)
    model = get_face_model(motion, face=face, asset=asset)
    model.check_motion(motion)
    others = _side_motions(side_by_side, labels, motion.fps, num_frames)
    panels = _panels(motion, model, others, face, size, backend, asset, antialias, skip_hidden)
    overlay = None if not others else _label_overlay(size * len(panels), size, tuple(labels))
    t0 = time.perf_counter()
    try:
        info = write_video(_composite(panels, overlay, threaded), motion.fps, out_path, audio=samples,
                           audio_rate=AUDIO_RATE, threaded=threaded)
    finally:
        for r in {id(r): r for _, _, r in panels}.values():
            r.close()
    elapsed = time.perf_counter() - t0
    info.update({"fps": motion.fps, "seconds": elapsed, "face": model.name, "backend": panels[0][2].backend,
                 "render_fps": info["frames"] / elapsed if elapsed > 0 else float("inf"),
                 "path": str(Path(out_path))})
    return info
