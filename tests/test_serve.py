"""The web page: the API end to end on real speech (FastAPI TestClient), its limits (upload size, audio length,
jobs at once), its clean-up (uploads, results, the work folder), JSON errors everywhere, and the page in headless
Chromium: a screenshot, then the form driven over the DevTools protocol (an error shown, a video made).

`make test` installs Debian's chromium (scripts/sysdeps.sh --browser) and sets KSDIFF_REQUIRE_BROWSER=1, so the
browser tests fail rather than skip when it is missing."""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.test_decode import silent_flac
from tests.test_generate import make_checkpoint

fastapi = pytest.importorskip("fastapi", reason="install ksdiff[serve]")

CANOE = "harvard_birch_canoe.wav"  # 3.1 s
CANOE_TEXT = "The birch canoe slid on the smooth planks."


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve_ckpt") / "model.safetensors")


@pytest.fixture(scope="module")
def app(ckpt, tmp_path_factory):
    from ksdiff.serve import create_app

    return create_app(ckpt, workdir=tmp_path_factory.mktemp("serve_work"), default_steps=4)


def _client(app, **kw):
    from fastapi.testclient import TestClient

    return TestClient(app, **kw)


def _post(client, audio: tuple[str, bytes], **fields: str):
    """POST /api/animate the way the page does: the fields first, then the file."""
    return client.post("/api/animate", data=fields, files={"audio": (audio[0], audio[1], "audio/wav")})


def _leftovers(app) -> list[str]:
    """What is in the work folder besides the kept results: upload files, job folders of failed or running jobs."""
    jobs = app.state.jobs
    work = jobs.folder()
    return sorted(str(p.relative_to(work)) for p in work.rglob("*")
                  if p.name.startswith("input") or (p.is_dir() and p.name not in jobs._kept))


def _error(r, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail
    for w in words:
        assert w in detail, (w, detail)
    return detail


def test_page_and_animate_api(app, speech_dir, tmp_path):
    from ksdiff.render.video import stream_durations

    client = _client(app)
    page = client.get("/")
    assert page.status_code == 200 and "Animate" in page.text and 'type="file"' in page.text
    assert "up to 10 min and 200 MB" in page.text
    r = _post(client, ("canoe.wav", (speech_dir / CANOE).read_bytes()), text=CANOE_TEXT, steps="4", seed="1",
              face="schematic")
    assert r.status_code == 200, r.text
    j = r.json()
    for key in ("mp4", "npz", "csv"):
        got = client.get("/" + j[key])
        assert got.status_code == 200 and len(got.content) > 100, key
    tmp = tmp_path / "served.mp4"
    tmp.write_bytes(client.get("/" + j["mp4"]).content)
    d = stream_durations(tmp)
    assert abs(d["video"] - 3.1) < 0.15 and abs(d["audio"] - 3.1) < 0.15
    assert _leftovers(app) == []  # the upload is gone, the results stay


def test_bad_upload_is_a_clear_400(app):
    r = _post(_client(app), ("notes.wav", b"this is not audio at all"), steps="4")
    _error(r, 400, "notes.wav", "audio")
    assert _leftovers(app) == []  # a failed job leaves nothing


@pytest.mark.parametrize("field,value,words", [
    ("steps", "1", ["steps", "from 2 to 200"]),
    ("steps", "many", ["steps", "'many'"]),
    ("seed", "-1", ["seed"]),
    ("seed", str(2**40), ["seed"]),
    ("face", "flame", ["face", "auto, ict, schematic"]),
    ("text", "x" * 2001, ["text", "2000 characters"]),
    ("text", "nul\x00byte", ["text", "control characters"]),
    ("voice", "deep", ["unknown form field", "'voice'"]),
    ("valence", "1.5", ["valence", "from -1 to 1"]),
    ("arousal", "calm", ["arousal", "'calm'"]),
])
def test_wrong_fields_are_refused_before_the_upload_is_stored(app, speech_dir, field, value, words):
    stats = app.state.jobs.stats
    before = stats["upload_bytes"]
    r = _post(_client(app), ("canoe.wav", (speech_dir / CANOE).read_bytes()), **{field: value})
    _error(r, 400, *words)
    assert stats["upload_bytes"] == before  # not one byte of the upload was written
    assert _leftovers(app) == []


def test_a_field_after_the_file_is_checked_before_decoding(app, speech_dir):
    body = (b"--B\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"canoe.wav\"\r\n"
            b"Content-Type: audio/wav\r\n\r\n" + (speech_dir / CANOE).read_bytes() +
            b"\r\n--B\r\nContent-Disposition: form-data; name=\"steps\"\r\n\r\n500\r\n--B--\r\n")
    r = _client(app).post("/api/animate", content=body, headers={"content-type": "multipart/form-data; boundary=B"})
    _error(r, 400, "steps", "'500'")
    assert _leftovers(app) == []


def test_requests_that_are_not_forms_and_unknown_files_are_json(app):
    client = _client(app)
    _error(client.post("/api/animate", json={"audio": "x"}), 415, "multipart/form-data")
    fields_only = b"--B\r\nContent-Disposition: form-data; name=\"steps\"\r\n\r\n4\r\n--B--\r\n"
    _error(client.post("/api/animate", content=fields_only,
                       headers={"content-type": "multipart/form-data; boundary=B"}), 400, "no audio")
    _error(client.get("/files/0123456789ab/video.mp4"), 404, "no such file")
    _error(client.get("/files/..%2F..%2Fetc/passwd"), 404)
    _error(client.get("/openapi.json"), 404)  # API description off unless asked (--api-docs)
    _error(client.get("/docs"), 404)


def test_api_docs_when_asked(ckpt, tmp_path):
    from ksdiff.serve import create_app

    client = _client(create_app(ckpt, workdir=tmp_path, api_docs=True))
    spec = client.get("/openapi.json").json()
    form = spec["paths"]["/api/animate"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["audio"] and form["properties"]["face"]["enum"] == ["auto", "ict", "schematic"]
    assert client.get("/docs").status_code == 200


def test_upload_size_cap_is_413_and_leaves_nothing(ckpt, tmp_path):
    from ksdiff.serve import Limits, create_app

    app = create_app(ckpt, workdir=tmp_path, limits=Limits(max_upload_mb=0.5))
    client = _client(app)
    big = bytes(1_000_000)
    # declared length over the cap: refused from the headers
    _error(_post(client, ("big.wav", big)), 413, "0.5 MB limit", "--max-upload-mb")
    # no declared length (chunked): counted while it streams to disk, refused once over
    boundary = b"X"
    head = b"--X\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"big.wav\"\r\n\r\n"

    def chunks():
        yield head
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
        yield b"\r\n--X--\r\n"

    r = client.post("/api/animate", content=chunks(),
                    headers={"content-type": f"multipart/form-data; boundary={boundary.decode()}"})
    _error(r, 413, "0.5 MB limit")
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert app.state.jobs.stats["upload_bytes"] <= 500_000  # never more than the cap on disk
    assert _leftovers(app) == []


def test_audio_longer_than_the_cap_is_refused(ckpt, tmp_path, speech_dir):
    from ksdiff.serve import Limits, create_app

    app = create_app(ckpt, workdir=tmp_path / "work", limits=Limits(max_seconds=60))
    client = _client(app)
    honest = silent_flac(tmp_path / "two_hours.flac", 7200)  # 370 KB: 2 h of 48 kHz stereo silence
    _error(_post(client, ("two_hours.flac", honest.read_bytes())), 400, "two_hours.flac", "7200 s long",
           "60 s limit")
    lying = silent_flac(tmp_path / "says_1s.flac", 1800, declared_samples=48_000)  # header: 1 s; really 30 min
    _error(_post(client, ("says_1s.flac", lying.read_bytes())), 400, "says_1s.flac", "longer than the 60 s limit")
    short = create_app(ckpt, workdir=tmp_path / "work2", limits=Limits(max_seconds=2))
    _error(_post(_client(short), (CANOE, (speech_dir / CANOE).read_bytes())), 400, CANOE, "over the 2 s limit")
    assert _leftovers(app) == [] and _leftovers(short) == []


class _Gated:
    """The real animator, made to wait inside animate() until released: a job that is still running."""

    def __init__(self, real, fail: bool = False):
        self.real, self.fail = real, fail
        self.entered, self.release = threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.real, name)

    def animate(self, *a, **kw):
        self.entered.set()
        self.release.wait(120)
        if self.fail:
            raise RuntimeError("a bug")
        return self.real.animate(*a, **kw)


def test_jobs_at_once_are_bounded_503(ckpt, tmp_path, speech_dir):
    from ksdiff.serve import Limits, create_app

    app = create_app(ckpt, workdir=tmp_path, default_steps=4, limits=Limits(max_jobs=1))
    gated = _Gated(app.state.model())
    app.state.model = lambda: gated
    audio = ("canoe.wav", (speech_dir / CANOE).read_bytes())
    first: dict = {}
    th = threading.Thread(target=lambda: first.update(r=_post(_client(app), audio, text=CANOE_TEXT, face="schematic")))
    th.start()
    try:
        assert gated.entered.wait(120)
        before = app.state.jobs.stats["upload_bytes"]
        r = _post(_client(app), audio)
        _error(r, 503, "busy", "1 job")
        assert r.headers["retry-after"] == "30"
        assert app.state.jobs.stats["upload_bytes"] == before  # refused before reading the upload
    finally:
        gated.release.set()
        th.join(120)
    assert first["r"].status_code == 200, first["r"].text
    assert app.state.jobs.stats["busy"] == 1 and not app.state.jobs.running
    assert _leftovers(app) == []


def test_unexpected_error_is_a_json_500_and_cleaned(ckpt, tmp_path, speech_dir):
    from ksdiff.serve import create_app

    app = create_app(ckpt, workdir=tmp_path, default_steps=4)
    gated = _Gated(app.state.model(), fail=True)
    gated.release.set()
    app.state.model = lambda: gated
    r = _post(_client(app, raise_server_exceptions=False), ("canoe.wav", (speech_dir / CANOE).read_bytes()))
    _error(r, 500, "internal error (RuntimeError)")
    assert _leftovers(app) == [] and not app.state.jobs.running


def test_client_file_names_are_never_trusted_and_results_are_pruned(ckpt, tmp_path, speech_dir):
    from ksdiff.serve import Limits, create_app

    app = create_app(ckpt, workdir=tmp_path, default_steps=4, limits=Limits(keep_results=1))
    client = _client(app)
    canoe = (speech_dir / CANOE).read_bytes()
    long_suffix = "talk." + "x" * 300  # once a 500 with a plain-text body (file name too long)
    first = _post(client, (long_suffix, canoe), text=CANOE_TEXT, face="schematic")
    assert first.status_code == 200, first.text
    assert client.get("/" + first.json()["mp4"]).status_code == 200
    hostile = "../../" + "\x1b[31m" + "é" * 200 + ".wav"
    detail = _error(_post(client, (hostile, b"not audio")), 400, "not readable as audio")
    name = detail.split(": ")[0]
    assert len(name) <= 80 and "/" not in name and "\x1b" not in name
    second = _post(client, ("b.wav", canoe), text=CANOE_TEXT, face="schematic")
    assert second.status_code == 200, second.text
    _error(client.get("/" + first.json()["mp4"]), 404)  # keep_results=1: the older job's files are gone
    assert client.get("/" + second.json()["npz"]).status_code == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == [second.json()["npz"].split("/")[1]]
    assert _leftovers(app) == []


def test_shutdown_removes_the_work_folder_serve_made(ckpt):
    from ksdiff.serve import create_app

    app = create_app(ckpt)
    with _client(app) as client:
        _error(_post(client, ("notes.wav", b"not audio")), 400)
        work = app.state.jobs.folder()
        assert work.is_dir() and work.name.startswith("ksdiff-serve-") and not any(work.iterdir())
    assert not work.exists()


# ------------------------------------------------------------------------------------------- the browser


def _chromium() -> str:
    """Debian's chromium; when it is missing: skip, or fail when KSDIFF_REQUIRE_BROWSER or CI is set."""
    exe = shutil.which("chromium")
    if exe is None:
        msg = "Debian's chromium is not installed (make browser, or: sudo bash scripts/sysdeps.sh --browser)"
        if any(os.environ.get(v, "").lower() not in ("", "0", "false") for v in ("KSDIFF_REQUIRE_BROWSER", "CI")):
            pytest.fail(msg + "; KSDIFF_REQUIRE_BROWSER / CI is set, so the browser test may not skip")
        pytest.skip(msg)
    return exe


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    """``app`` under uvicorn on a free local port, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}/"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _above_4(fd: int) -> int:
    import fcntl

    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class _DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON messages
    ending in NUL, Chromium reads fd 3 and writes fd 4), so no websocket package is needed."""

    def __init__(self, exe: str, profile: Path, flags: tuple[str, ...] = ()):
        to_chrome, self._w = os.pipe()
        self._r, from_chrome = os.pipe()
        to_chrome, from_chrome = _above_4(to_chrome), _above_4(from_chrome)  # the redirections below cannot clash
        self.proc = subprocess.Popen(
            ["bash", "-c", 'exec "$0" "$@" 3<&"$FD_IN" 4>&"$FD_OUT"', exe, *CHROMIUM_FLAGS,
             f"--user-data-dir={profile}", *flags, "--remote-debugging-pipe", "about:blank"],
            pass_fds=(to_chrome, from_chrome), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "FD_IN": str(to_chrome), "FD_OUT": str(from_chrome)})
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id, self.session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def call(self, method: str, timeout: float = 60, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        while True:
            while b"\0" not in self._buf:
                ready, _, _ = select.select([self._r], [], [], timeout)
                data = os.read(self._r, 1 << 16) if ready else b""
                if not data:
                    raise RuntimeError(f"chromium did not answer {method}")
                self._buf += data
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def js(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                         awaitPromise=True)["result"].get("value")

    def wait_for(self, expression: str, limit_s: float = 120):
        """Poll ``expression`` until it is truthy (the limit only keeps a broken page from hanging the suite)."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        status = self.js("document.getElementById('status').textContent")
        raise AssertionError(f"never true: {expression}; the status line: {status}")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._r)
        os.close(self._w)


def test_page_in_headless_chromium(app, tmp_path):
    exe = _chromium()
    shot = tmp_path / "page.png"
    with _Server(app) as url:
        subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,900",
                        f"--screenshot={shot}", url], check=True, timeout=90, capture_output=True)
        dom = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", url],
                             check=True, timeout=90, capture_output=True, text=True).stdout
    assert shot.is_file() and shot.stat().st_size > 5000
    assert 'id="go"' in dom and "Record" in dom
    out = Path(__file__).resolve().parents[1] / "docs" / "img" / "serve_page.png"
    if out.parent.is_dir() and not out.exists():
        shutil.copy(shot, out)


def _plain_text_502_when(flag: threading.Event, app):
    """``app``, except that /api/animate answers a plain-text 502 (as a proxy would) while ``flag`` is set."""
    async def wrapped(scope, receive, send):
        if flag.is_set() and scope["type"] == "http" and scope["path"] == "/api/animate":
            await send({"type": "http.response.start", "status": 502, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"Bad Gateway from a proxy"})
            return
        await app(scope, receive, send)
    return wrapped


def _submit(dev: _DevTools, path: Path) -> str:
    """Choose ``path`` in the page's file input, press Animate, and wait for the outcome: the status line."""
    root = dev.call("DOM.getDocument")["root"]["nodeId"]
    node = dev.call("DOM.querySelector", nodeId=root, selector="#audio")["nodeId"]
    dev.call("DOM.setFileInputFiles", nodeId=node, files=[str(path)])
    dev.js("document.getElementById('status').textContent=''; document.getElementById('go').click()")
    return dev.wait_for("(t => /^(Error|Done)/.test(t) && !document.getElementById('go').disabled && t)"
                        "(document.getElementById('status').textContent)")


def test_page_shows_errors_and_results_in_headless_chromium(app, tmp_path, speech_dir):
    exe = _chromium()
    notes = tmp_path / "notes.wav"
    notes.write_text("this is not audio\n" * 20)
    proxy_error = threading.Event()
    with _Server(_plain_text_502_when(proxy_error, app)) as url:
        dev = _DevTools(exe, tmp_path / "profile")
        try:
            dev.call("Page.enable")
            dev.call("Page.navigate", url=url)
            dev.wait_for("document.readyState === 'complete' && !!document.getElementById('go')")
            dev.js(f"document.getElementById('text').value = {json.dumps(CANOE_TEXT)};"
                   "document.getElementById('face').value = 'schematic'")
            bad = _submit(dev, notes)  # a JSON 400: its detail shown, not "Animating…" forever
            assert bad.startswith("Error: notes.wav: not readable as audio"), bad
            assert dev.js("document.getElementById('status').className") == "err"
            proxy_error.set()  # a plain-text error body: once the page hung parsing it as JSON
            plain = _submit(dev, speech_dir / CANOE)
            assert plain.startswith("Error: 502") and "Bad Gateway from a proxy" in plain, plain
            proxy_error.clear()
            done = _submit(dev, speech_dir / CANOE)
            assert done.startswith("Done in") and "frames at" in done, done
            assert dev.js("document.getElementById('result').hidden") is False
            assert "/files/" in dev.js("document.getElementById('video').src")
        finally:
            dev.close()


# ------------------------------------------------------------------------------------------- live mode


def test_live_mode_in_headless_chromium_with_a_fake_microphone(speech_dir, tmp_path):
    """The page's live mode with the shipped model: Chromium's fake microphone plays a real speech wav, the page
    streams it to ws/live, frames come back and the face drawn from them moves (the mouth region of two
    screenshots half a second apart differs)."""
    import base64
    import io

    import soxr
    from PIL import Image

    from ksdiff.audio.decode import load_audio, write_wav
    from ksdiff.serve import create_app

    exe = _chromium()
    wav = tmp_path / "mic.wav"  # Chromium's fake capture wants a plain PCM wav; 48 kHz like a real microphone

    write_wav(wav, soxr.resample(load_audio(speech_dir / "jfk.flac"), 16000, 48000), sr=48000)
    app = create_app(None, workdir=tmp_path / "work")
    flags = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
             f"--use-file-for-fake-audio-capture={wav}", "--autoplay-policy=no-user-gesture-required",
             "--window-size=900,1400")
    with _Server(app) as url:
        dt = _DevTools(exe, tmp_path / "profile", flags)
        try:
            dt.call("Page.enable")
            dt.call("Page.navigate", url=url)
            dt.wait_for("document.readyState === 'complete' && !!document.getElementById('live')")
            dt.js("document.getElementById('live').click(); true")
            dt.wait_for("window.liveFrames > 60 && window.liveShown > 20", limit_s=120)
            box = dt.js("(()=>{const r=document.getElementById('liveface').getBoundingClientRect();"
                        "return [r.left + scrollX, r.top + scrollY, r.width, r.height];})()")
            x, y, w, h = box
            mouth = {"x": x + w * 0.25, "y": y + h * 0.55, "width": w * 0.5, "height": h * 0.35, "scale": 1}
            shots = []
            for _ in range(2):
                data = dt.call("Page.captureScreenshot", format="png", clip=mouth, captureBeyondViewport=True)["data"]
                shots.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("L"), np.float32))
                time.sleep(0.5)
            state = dt.js("document.getElementById('livestate').textContent")
            frames = dt.js("window.liveFrames")
            dt.js("document.getElementById('live').click(); true")  # stop
            for _ in range(100):  # the server frees the session's job slot once it sees the socket close
                if not app.state.jobs.running:
                    break
                time.sleep(0.1)
            # the other source: an audio file chosen in the form, played (sound delayed to match) and streamed
            dt.call("DOM.enable")
            node = dt.call("DOM.querySelector", nodeId=dt.call("DOM.getDocument")["root"]["nodeId"],
                           selector="#audio")["nodeId"]
            dt.call("DOM.setFileInputFiles", nodeId=node, files=[str(wav)])
            dt.js("window.liveFrames = 0; document.getElementById('livefile').click(); true")
            dt.wait_for("window.liveFrames > 40 && window.liveShown > 10 || "
                        "/busy|error|unavailable/.test(document.getElementById('livestate').textContent)",
                        limit_s=120)
            file_state = dt.js("document.getElementById('livestate').textContent")
            dt.js("document.getElementById('livefile').click(); true")
        finally:
            dt.close()
    assert "live" in file_state and "error" not in file_state.lower(), file_state
    assert "live" in state and "error" not in state.lower() and "busy" not in state, state
    assert frames > 60
    a, b = shots
    assert a.shape == b.shape and a.std() > 5  # the mouth is drawn
    changed = np.mean(np.abs(a - b) > 30)
    assert changed > 0.005, changed  # the mouth moved between the two shots


def test_emotion_sliders_for_an_emotion_model(tmp_path, speech_dir):
    """The page has valence/arousal sliders only when the model was trained with emotion; they reach the model."""
    from ksdiff.serve import create_app

    plain = _client(create_app(make_checkpoint(tmp_path / "p.safetensors"), workdir=tmp_path / "w1"))
    assert 'name="valence"' not in plain.get("/").text
    emo_app = create_app(make_checkpoint(tmp_path / "e.safetensors", emotion=True), workdir=tmp_path / "w2")
    client = _client(emo_app)
    page = client.get("/").text
    assert 'name="valence"' in page and 'name="arousal"' in page and "disabled" in page
    wav = ("canoe.wav", (speech_dir / CANOE).read_bytes())
    npz = {}
    for v in ("-1", "1"):
        r = _post(client, wav, steps="3", face="schematic", valence=v, arousal="0")
        assert r.status_code == 200, r.text
        npz[v] = client.get("/" + r.json()["npz"]).content
    assert npz["-1"] != npz["1"]  # the sliders change the motion
    _error(_post(client, wav, steps="3", valence="0.5"), 400, "both valence and arousal")


def test_reference_clip_upload_for_a_style_encoder_model(tmp_path, speech_dir):
    """A model with a style encoder: the page offers a reference file; an uploaded Live Link CSV changes the motion,
    a bad one is a 400 naming the client's file, and neither upload is left behind."""
    from ksdiff.export.livelink import write_livelink_csv
    from ksdiff.face.motion import Motion
    from ksdiff.face.specs import get_spec
    from ksdiff.serve import create_app

    plain = _client(create_app(make_checkpoint(tmp_path / "p.safetensors"), workdir=tmp_path / "w1"))
    assert 'name="reference"' not in plain.get("/").text
    app = create_app(make_checkpoint(tmp_path / "r.safetensors", ref_dim=8), workdir=tmp_path / "w2")
    client = _client(app)
    assert 'name="reference"' in client.get("/").text
    spec = get_spec("arkit")
    rng = np.random.default_rng(0)
    me = Motion(rng.uniform(0, 0.4, (90, spec.dim)).astype(np.float32), spec.channels, 30.0, "arkit")
    write_livelink_csv(me, tmp_path / "me.csv")
    wav = ("canoe.wav", (speech_dir / CANOE).read_bytes())
    r0 = _post(client, wav, steps="3", face="schematic")
    r1 = client.post("/api/animate", data={"steps": "3", "face": "schematic"},
                     files=[("audio", wav + ("audio/wav",)), ("reference", ("me.csv", (tmp_path / "me.csv").read_bytes(),
                                                                             "text/csv"))])
    assert r0.status_code == 200 and r1.status_code == 200, r1.text
    assert client.get("/" + r0.json()["npz"]).content != client.get("/" + r1.json()["npz"]).content
    short = Motion(me.coeffs[:30], me.channels, 30.0, "arkit")  # 1 s: too short
    write_livelink_csv(short, tmp_path / "short.csv")
    r2 = client.post("/api/animate", data={"steps": "3"},
                     files=[("audio", wav + ("audio/wav",)), ("reference", ("short.csv",
                                                                             (tmp_path / "short.csv").read_bytes(),
                                                                             "text/csv"))])
    _error(r2, 400, "reference short.csv", "at least 2 s")
    assert _leftovers(app) == [] and not any(p.name.startswith("reference") for p in app.state.jobs.folder().rglob("*"))


def test_page_sends_the_emotion_sliders_and_the_reference_in_headless_chromium(tmp_path, speech_dir):
    """The page's own JavaScript sends valence/arousal only once ticked, and the chosen reference file."""
    from ksdiff.export.livelink import write_livelink_csv
    from ksdiff.face.motion import Motion
    from ksdiff.face.specs import get_spec
    from ksdiff.serve import create_app

    exe = _chromium()
    app = create_app(make_checkpoint(tmp_path / "m.safetensors", emotion=True, ref_dim=8), workdir=tmp_path / "w")
    bodies: list[bytes] = []

    async def recording(scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/api/animate":
            chunks = []

            async def rec():
                msg = await receive()
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body"):
                    bodies.append(b"".join(chunks))
                return msg
            return await app(scope, rec, send)
        return await app(scope, receive, send)

    spec = get_spec("arkit")
    me = Motion(np.full((75, spec.dim), 0.1, np.float32), spec.channels, 25.0, "arkit")
    write_livelink_csv(me, tmp_path / "me.csv")
    with _Server(recording) as url:
        dev = _DevTools(exe, tmp_path / "profile")
        try:
            dev.call("Page.enable")
            dev.call("Page.navigate", url=url)
            dev.wait_for("document.readyState === 'complete' && !!document.getElementById('valence')")
            dev.js("document.getElementById('face').value = 'schematic'")
            assert _submit(dev, speech_dir / CANOE).startswith("Done in")
            dev.js("const c=document.getElementById('emo'); c.click();"
                   "document.getElementById('valence').value='0.7'")
            root = dev.call("DOM.getDocument")["root"]["nodeId"]
            node = dev.call("DOM.querySelector", nodeId=root, selector="#reference")["nodeId"]
            dev.call("DOM.setFileInputFiles", nodeId=node, files=[str(tmp_path / "me.csv")])
            assert _submit(dev, speech_dir / CANOE).startswith("Done in")
        finally:
            dev.close()
    assert len(bodies) == 2
    assert b'name="valence"' not in bodies[0] and b'name="reference"' not in bodies[0]
    assert b'name="valence"\r\n\r\n0.7' in bodies[1] and b'name="arousal"' in bodies[1]
    assert b'name="reference"; filename="me.csv"' in bodies[1]
