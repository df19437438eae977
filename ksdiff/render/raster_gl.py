"""OpenGL rasteriser: a moderngl standalone context on EGL (headless; Mesa llvmpipe on a CPU-only machine).

Per frame the vertex positions and normals are uploaded, the mesh is drawn with a depth test (4× MSAA
optional), shaded per pixel (two-sided Lambert + Blinn-Phong with the lights of :mod:`ksdiff.render.camera`),
resolved and read back as (H, W, 3) uint8.

moderngl holds Python's GIL for the whole of every GL call, and on llvmpipe the draw (vertex processing) and the
read-back (waiting for the rasteriser threads) are most of a frame's time: the other stages of the rendering
pipeline (vertices + normals, H.264 encoding) would stall behind it. So the per-frame draw and read-back go
through ``ctypes`` (which releases the GIL) on the same context; moderngl still creates and owns every object.
Where the GL entry points cannot be found, the moderngl calls are used (same pixels, less overlap).
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from ksdiff.errors import KsdiffError
from ksdiff.render import camera as cm
from ksdiff.render.camera import Camera, vertex_normals

_VERTEX = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
out vec3 v_pos;
out vec3 v_normal;
out vec3 v_color;
void main() {
    v_pos = in_pos;
    v_normal = in_normal;
    v_color = in_color;
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

_FRAGMENT = """
#version 330
uniform vec3 eye;
uniform vec3 key_dir;
uniform vec3 fill_dir;
uniform vec4 coef;  // ambient, key, fill, specular
uniform float shininess;
in vec3 v_pos;
in vec3 v_normal;
in vec3 v_color;
out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal);
    vec3 v = normalize(eye - v_pos);
    if (dot(n, v) < 0.0) n = -n;
    vec3 light = vec3(coef.x);
    float spec = 0.0;
    vec3 l = normalize(key_dir);
    light += coef.y * max(dot(n, l), 0.0);
    spec += pow(max(dot(n, normalize(l + v)), 0.0), shininess);
    l = normalize(fill_dir);
    light += coef.z * max(dot(n, l), 0.0);
    spec += (coef.z / coef.y) * pow(max(dot(n, normalize(l + v)), 0.0), shininess);
    f_color = vec4(clamp(v_color * light + coef.w * spec, 0.0, 1.0), 1.0);
}
"""


_GL_TRIANGLES, _GL_UNSIGNED_INT, _GL_RGB, _GL_UNSIGNED_BYTE, _GL_PACK_ALIGNMENT = 0x0004, 0x1405, 0x1907, 0x1401, 0x0D05


@functools.lru_cache(maxsize=None)
def _raw_gl() -> dict | None:
    """The few GL entry points a frame needs, as ctypes functions (called without the GIL), or None.

    Looked up with ``eglGetProcAddress``, else from libGL / libOpenGL (GLVND dispatches to the current context).
    """
    U, I, P = ctypes.c_uint, ctypes.c_int, ctypes.c_void_p
    sigs = {"glUseProgram": (U,), "glBindVertexArray": (U,), "glDrawElements": (U, I, U, P),
            "glReadPixels": (I, I, I, I, U, U, P), "glPixelStorei": (U, I)}
    lookups = []
    try:
        egl = ctypes.CDLL("libEGL.so.1")
        egl.eglGetProcAddress.restype = P
        egl.eglGetProcAddress.argtypes = [ctypes.c_char_p]
        lookups.append(lambda name: egl.eglGetProcAddress(name.encode()))
    except OSError:
        pass
    for lib in ("libOpenGL.so.0", "libGL.so.1"):
        try:
            gl = ctypes.CDLL(lib)
        except OSError:
            continue
        lookups.append(lambda name, gl=gl: ctypes.cast(getattr(gl, name), P).value if hasattr(gl, name) else None)
    for lookup in lookups:
        addrs = {name: lookup(name) for name in sigs}
        if all(addrs.values()):
            return {name: ctypes.CFUNCTYPE(None, *sigs[name])(addrs[name]) for name in sigs}
    return None


_ID_VERTEX = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
void main() { gl_Position = mvp * vec4(in_pos, 1.0); }
"""

# Triangle id + 1 as 24-bit RGB (0 = background): ``offset`` is the first triangle of the part being drawn.
_ID_FRAGMENT = """
#version 330
uniform int offset;
out vec4 f_color;
void main() {
    int id = gl_PrimitiveID + offset + 1;
    f_color = vec4(float(id & 255), float((id >> 8) & 255), float((id >> 16) & 255), 255.0) / 255.0;
}
"""


def create_context():
    """A headless moderngl context (EGL first, then the platform default). Raises RuntimeError if none."""
    import moderngl

    errors = []
    for kwargs in ({"backend": "egl"}, {}):
        try:
            return moderngl.create_standalone_context(require=330, **kwargs)
        except Exception as e:  # noqa: BLE001 - any failure means "no GL here"; the numpy backend takes over
            errors.append(f"{kwargs.get('backend', 'default')}: {e}")
    raise RuntimeError("no OpenGL 3.3 context (" + "; ".join(errors) + ")")


class GLRasterizer:
    """Renders one mesh (fixed topology) from a fixed camera with OpenGL.

    Args:
        camera: the :class:`Camera` (its width × height is the image size).
        triangles: (F, 3) int vertex indices.
        colors: (V, 3) float albedo in [0, 1].
        samples: MSAA samples (0 = off).
        cull: optional (F,) bool: triangles drawn with back-face culling (the outer skin); the others (mouth
            interior, eyes) are drawn from both sides.
    """

    backend = "gl"

    def __init__(self, camera: Camera, triangles: np.ndarray, colors: np.ndarray, samples: int = 0,
                 cull: np.ndarray | None = None):
        import moderngl  # noqa: F401 - without it: ImportError here, and make_renderer falls back to numpy

        self.camera = camera
        self.triangles = np.ascontiguousarray(triangles, dtype=np.int32)
        colors = np.ascontiguousarray(colors, dtype=np.float32)
        V = len(colors)
        try:
            self.ctx = create_context()
        except RuntimeError as e:
            raise KsdiffError(f"OpenGL rendering is unavailable ({e}); use --backend numpy") from None
        ctx = self.ctx
        W, H = camera.width, camera.height
        samples = min(samples, ctx.max_samples) if samples else 0
        self.fbo = ctx.framebuffer(color_attachments=[ctx.renderbuffer((W, H), 4, samples=samples)],
                                   depth_attachment=ctx.depth_renderbuffer((W, H), samples=samples))
        self.resolve = ctx.framebuffer(color_attachments=[ctx.renderbuffer((W, H), 4)]) if samples else self.fbo
        self.prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.prog["mvp"].write(camera.mvp.T.copy().tobytes())  # column-major
        self.prog["eye"].value = tuple(float(x) for x in camera.eye)
        self.prog["key_dir"].value = cm.KEY_DIR
        self.prog["fill_dir"].value = cm.FILL_DIR
        self.prog["coef"].value = (cm.AMBIENT, cm.KEY, cm.FILL, cm.SPECULAR)
        self.prog["shininess"].value = cm.SHININESS
        self.vbo_pos = ctx.buffer(reserve=V * 12, dynamic=True)
        self.vbo_nrm = ctx.buffer(reserve=V * 12, dynamic=True)
        self.vbo_col = ctx.buffer(colors.tobytes())
        cull = np.zeros(len(self.triangles), bool) if cull is None else np.asarray(cull, dtype=bool)
        attrs = [(self.vbo_pos, "3f", "in_pos"), (self.vbo_nrm, "3f", "in_normal"), (self.vbo_col, "3f", "in_color")]
        self.ibos, self.vaos = [], []  # (culled, two-sided)
        self._parts = [np.where(cull)[0], np.where(~cull)[0]]  # triangle indices drawn by each part, in order
        self._id_prog = self._id_vaos = None
        for part in (self.triangles[cull], self.triangles[~cull]):
            if len(part) == 0:
                self.ibos.append(None)
                self.vaos.append(None)
                continue
            ibo = ctx.buffer(np.ascontiguousarray(part).tobytes())
            self.ibos.append(ibo)
            self.vaos.append(ctx.vertex_array(self.prog, attrs, index_buffer=ibo))
        self.background = cm.BACKGROUND
        self.counts = [0 if ibo is None else ibo.size // 4 for ibo in self.ibos]
        self._raw = _raw_gl()
        self._out = np.empty((H, W, 3), np.uint8)

    def prepare(self, verts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What :meth:`render` uploads: (V, 3) float32 vertices and their normals (no GL calls: any thread)."""
        verts = np.ascontiguousarray(verts, dtype=np.float32)
        return verts, vertex_normals(verts, self.triangles)

    def render(self, verts: np.ndarray, normals: np.ndarray | None = None) -> np.ndarray:
        """Render (V, 3) vertices (with their (V, 3) normals if already computed); returns (H, W, 3) uint8."""
        import moderngl

        if normals is None:
            verts, normals = self.prepare(verts)
        self.vbo_pos.write(np.ascontiguousarray(verts, dtype=np.float32))
        self.vbo_nrm.write(np.ascontiguousarray(normals, dtype=np.float32))
        self.fbo.use()
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.fbo.clear(*self.background, 1.0, depth=1.0)
        self._draw(self.prog, self.vaos)
        if self.resolve is not self.fbo:
            self.ctx.copy_framebuffer(self.resolve, self.fbo)
        W, H = self.camera.width, self.camera.height
        raw = self._raw
        if raw is None:
            data = self.resolve.read(components=3, alignment=1)
            return np.frombuffer(data, dtype=np.uint8).reshape(H, W, 3)[::-1].copy()
        self.resolve.use()
        raw["glPixelStorei"](_GL_PACK_ALIGNMENT, 1)
        raw["glReadPixels"](0, 0, W, H, _GL_RGB, _GL_UNSIGNED_BYTE, self._out.ctypes.data)
        return self._out[::-1].copy()

    def _draw(self, prog, vaos: list, offsets: bool = False) -> None:
        """Draw both parts with ``prog``: the outer skin with back faces culled, the interior two-sided (with
        ``offsets``, ``prog``'s ``offset`` uniform is set to each part's first triangle)."""
        import moderngl

        raw = self._raw
        first = 0
        for k, vao in enumerate(vaos):  # 0: culled outer skin, 1: two-sided interior
            if vao is not None:
                if offsets:
                    prog["offset"].value = first
                if k == 0:
                    self.ctx.front_face = "ccw"
                    self.ctx.enable(moderngl.CULL_FACE)
                if raw is None:
                    vao.render(moderngl.TRIANGLES)
                else:
                    raw["glUseProgram"](prog.glo)
                    raw["glBindVertexArray"](vao.glo)
                    raw["glDrawElements"](_GL_TRIANGLES, self.counts[k], _GL_UNSIGNED_INT, None)
                    raw["glBindVertexArray"](0)
                if k == 0:
                    self.ctx.disable(moderngl.CULL_FACE)
            first += len(self._parts[k])

    def seen_triangles(self, verts: np.ndarray) -> np.ndarray:
        """Indices into ``triangles`` of those that cover at least one pixel of the (depth-tested) image of (V, 3)
        ``verts`` (:mod:`ksdiff.render.visibility`). Needs ``samples=0``."""
        import moderngl

        if self.resolve is not self.fbo:
            raise KsdiffError("triangle ids need a renderer without MSAA")
        if self._id_prog is None:
            self._id_prog = self.ctx.program(vertex_shader=_ID_VERTEX, fragment_shader=_ID_FRAGMENT)
            self._id_prog["mvp"].write(self.camera.mvp.T.copy().tobytes())
            self._id_vaos = [None if ibo is None else
                             self.ctx.vertex_array(self._id_prog, [(self.vbo_pos, "3f", "in_pos")], index_buffer=ibo)
                             for ibo in self.ibos]
        self.vbo_pos.write(np.ascontiguousarray(verts, dtype=np.float32))
        self.fbo.use()
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._draw(self._id_prog, self._id_vaos, offsets=True)
        px = np.frombuffer(self.fbo.read(components=3, alignment=1), np.uint8).reshape(-1, 3).astype(np.int64)
        ids = px[:, 0] | (px[:, 1] << 8) | (px[:, 2] << 16)
        order = np.concatenate(self._parts)
        return order[np.unique(ids[ids > 0]) - 1]

    def close(self) -> None:
        objs = list(getattr(self, "vaos", [])) + list(getattr(self, "ibos", []))
        objs += list(getattr(self, "_id_vaos", None) or []) + [getattr(self, "_id_prog", None)]
        objs += [getattr(self, n, None) for n in ("vbo_col", "vbo_nrm", "vbo_pos", "prog", "resolve", "fbo")]
        for o in objs:
            if o is not None:
                try:
                    o.release()
                except Exception:  # noqa: BLE001 - released twice (resolve is fbo without MSAA)
                    pass
        ctx = getattr(self, "ctx", None)
        if ctx is not None:
            ctx.release()
            self.ctx = None
