"""The web page: the API end to end on real speech (FastAPI TestClient), and the page in headless Chromium
with a screenshot when Debian's chromium is installed (`make e2e` installs it)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.test_generate import make_checkpoint

fastapi = pytest.importorskip("fastapi", reason="install ksdiff[serve]")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from ksdiff.serve import create_app

    ckpt = make_checkpoint(tmp_path_factory.mktemp("serve_ckpt") / "model.safetensors")
    return create_app(ckpt, workdir=tmp_path_factory.mktemp("serve_work"), default_steps=4)


def test_page_and_animate_api(app, speech_dir, tmp_path):
    from fastapi.testclient import TestClient

    from ksdiff.render.video import stream_durations

    client = TestClient(app)
    page = client.get("/")
    assert page.status_code == 200 and "Animate" in page.text and 'type="file"' in page.text
    with open(speech_dir / "harvard_birch_canoe.wav", "rb") as fh:
        r = client.post("/api/animate", files={"audio": ("canoe.wav", fh, "audio/wav")},
                        data={"text": "The birch canoe slid on the smooth planks.", "steps": "4", "seed": "1",
                              "face": "schematic"})
    assert r.status_code == 200, r.text
    j = r.json()
    for key in ("mp4", "npz", "csv"):
        got = client.get("/" + j[key])
        assert got.status_code == 200 and len(got.content) > 100, key
    tmp = tmp_path / "served.mp4"
    tmp.write_bytes(client.get("/" + j["mp4"]).content)
    d = stream_durations(tmp)
    assert abs(d["video"] - 3.1) < 0.15 and abs(d["audio"] - 3.1) < 0.15


def test_bad_upload_is_a_clear_400(app):
    from fastapi.testclient import TestClient

    client = TestClient(app)
    r = client.post("/api/animate", files={"audio": ("notes.wav", b"this is not audio at all", "audio/wav")},
                    data={"steps": "4"})
    assert r.status_code == 400
    assert "notes.wav" in r.json()["detail"] and "audio" in r.json()["detail"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (make e2e)")
def test_page_in_headless_chromium(app, tmp_path):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.1)
    shot = tmp_path / "page.png"
    try:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={tmp_path / 'profile'}", "--window-size=900,900",
                        f"--screenshot={shot}", f"http://127.0.0.1:{port}/"],
                       check=True, timeout=90, capture_output=True)
        dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", f"http://127.0.0.1:{port}/"],
                             check=True, timeout=90, capture_output=True, text=True).stdout
    finally:
        server.should_exit = True
        th.join(timeout=10)
    assert shot.is_file() and shot.stat().st_size > 5000
    assert 'id="go"' in dom and "Record" in dom
    out = Path(__file__).resolve().parents[1] / "docs" / "img" / "serve_page.png"
    if out.parent.is_dir() and not out.exists():
        shutil.copy(shot, out)
