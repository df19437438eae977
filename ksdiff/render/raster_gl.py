"""OpenGL rasteriser: a moderngl standalone context on EGL (headless; Mesa llvmpipe on a CPU-only machine).

Per frame the vertex positions and normals are uploaded, the mesh is drawn with a depth test (4× MSAA
optional), shaded per pixel (two-sided Lambert + Blinn-Phong with the lights of :mod:`ksdiff.render.camera`),
resolved and read back as (H, W, 3) uint8.
"""

from __future__ import annotations

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
        import moderngl

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
        for part in (self.triangles[cull], self.triangles[~cull]):
            if len(part) == 0:
                self.ibos.append(None)
                self.vaos.append(None)
                continue
            ibo = ctx.buffer(np.ascontiguousarray(part).tobytes())
            self.ibos.append(ibo)
            self.vaos.append(ctx.vertex_array(self.prog, attrs, index_buffer=ibo))
        self.background = cm.BACKGROUND

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
        culled, two_sided = self.vaos
        if culled is not None:
            self.ctx.front_face = "ccw"
            self.ctx.enable(moderngl.CULL_FACE)
            culled.render(moderngl.TRIANGLES)
            self.ctx.disable(moderngl.CULL_FACE)
        if two_sided is not None:
            two_sided.render(moderngl.TRIANGLES)
        if self.resolve is not self.fbo:
            self.ctx.copy_framebuffer(self.resolve, self.fbo)
        W, H = self.camera.width, self.camera.height
        data = self.resolve.read(components=3, alignment=1)
        return np.frombuffer(data, dtype=np.uint8).reshape(H, W, 3)[::-1].copy()

    def close(self) -> None:
        objs = list(getattr(self, "vaos", [])) + list(getattr(self, "ibos", []))
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
