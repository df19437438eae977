"""A small web page for people who would rather click: upload or record speech, optional transcript,
steps and seed → the rendered video and the motion files.

``ksdiff serve [--checkpoint C] [--host 127.0.0.1] [--port 7860]`` (FastAPI + uvicorn).
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

from ksdiff.errors import KsdiffError

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ksdiff — speech to face</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font-family:system-ui,sans-serif;max-width:820px;margin:2em auto;padding:0 1em;color:#222}
 h1{font-size:1.5em;margin-bottom:.2em} .sub{color:#666;margin-top:0}
 fieldset{border:1px solid #ccc;border-radius:8px;padding:1em;margin-bottom:1em}
 label{display:block;margin:.5em 0 .2em;font-weight:600} input[type=text],textarea{width:100%;box-sizing:border-box}
 .row{display:flex;gap:1em} .row>div{flex:1} button{padding:.6em 1.2em;font-size:1em;border-radius:6px;cursor:pointer}
 #go{background:#2b6cb0;color:#fff;border:none} #status{margin:1em 0;color:#444;white-space:pre-wrap}
 video{width:100%;max-width:512px;border-radius:8px;background:#000} .err{color:#b00020}
</style></head><body>
<h1>ksdiff</h1><p class="sub">Speech in, animated 3D face out (KSDiff, keyframe-augmented dual-path diffusion).</p>
<form id="f">
<fieldset><legend>Speech</legend>
 <label for="audio">Audio file (wav, flac, mp3, m4a, ogg, …)</label><input id="audio" name="audio" type="file" accept="audio/*,video/*">
 <div style="margin-top:.6em"><button type="button" id="rec">● Record</button> <span id="recstate"></span></div>
 <label for="text">Transcript (optional)</label><textarea id="text" name="text" rows="2" placeholder="leave empty for an automatic transcript"></textarea>
</fieldset>
<fieldset><legend>Options</legend><div class="row">
 <div><label for="steps">Denoising steps</label><input id="steps" name="steps" type="number" min="2" max="200" value="__STEPS__"></div>
 <div><label for="seed">Seed</label><input id="seed" name="seed" type="number" value="0"></div>
 <div><label for="face">Face</label><select id="face" name="face"><option value="auto">auto</option><option>ict</option><option>schematic</option></select></div>
</div></fieldset>
<button id="go" type="submit">Animate</button></form>
<div id="status"></div><div id="result" hidden><video id="video" controls></video>
<p>Download: <a id="dl_mp4" download>video (mp4)</a> · <a id="dl_npz" download>motion (npz)</a> · <a id="dl_csv" download>Live Link Face CSV</a></p></div>
<script>
let recBlob=null, rec=null, chunks=[];
document.getElementById('rec').onclick=async()=>{
  const b=document.getElementById('rec'), s=document.getElementById('recstate');
  if(rec&&rec.state==='recording'){rec.stop();return;}
  try{const st=await navigator.mediaDevices.getUserMedia({audio:true}); chunks=[]; rec=new MediaRecorder(st);
    rec.ondataavailable=e=>chunks.push(e.data);
    rec.onstop=()=>{recBlob=new Blob(chunks,{type:rec.mimeType||'audio/webm'}); s.textContent='recorded '+Math.round(recBlob.size/1024)+' KiB'; b.textContent='● Record'; st.getTracks().forEach(t=>t.stop());};
    rec.start(); b.textContent='■ Stop'; s.textContent='recording…';}catch(e){s.textContent='microphone unavailable: '+e;}
};
document.getElementById('f').onsubmit=async(ev)=>{
  ev.preventDefault(); const st=document.getElementById('status'); st.className='';
  const fd=new FormData(); const f=document.getElementById('audio').files[0];
  if(f) fd.append('audio',f); else if(recBlob) fd.append('audio',recBlob,'recording.webm'); else {st.textContent='Choose an audio file or record one.';return;}
  for(const k of ['text','steps','seed','face']) fd.append(k,document.getElementById(k).value);
  st.textContent='Animating… (features, keyframes, diffusion, rendering)'; document.getElementById('result').hidden=true;
  const t0=performance.now(); const r=await fetch('api/animate',{method:'POST',body:fd}); const j=await r.json();
  if(!r.ok){st.className='err'; st.textContent='Error: '+(j.detail||r.statusText); return;}
  st.textContent='Done in '+((performance.now()-t0)/1000).toFixed(1)+' s. '+j.summary;
  const v=document.getElementById('video'); v.src=j.mp4; document.getElementById('result').hidden=false;
  document.getElementById('dl_mp4').href=j.mp4; document.getElementById('dl_npz').href=j.npz;
  const c=document.getElementById('dl_csv'); if(j.csv){c.href=j.csv;c.hidden=false;}else{c.hidden=true;}
};
</script></body></html>
"""


def create_app(checkpoint: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
               default_steps: int | None = None):
    """The FastAPI app. The model is loaded once, at the first request (or eagerly by :func:`serve`)."""
    from fastapi import FastAPI, File, Form, HTTPException, UploadFile
    from fastapi.responses import FileResponse, HTMLResponse

    from ksdiff.generate import load_model

    work = Path(workdir or tempfile.mkdtemp(prefix="ksdiff-serve-"))
    work.mkdir(parents=True, exist_ok=True)
    state: dict = {}
    lock = threading.Lock()

    def model():
        with lock:
            if "model" not in state:
                state["model"] = load_model(checkpoint)
            return state["model"]

    app = FastAPI(title="ksdiff", docs_url=None, redoc_url=None)
    app.state.model = model
    steps_default = default_steps or 20

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return PAGE.replace("__STEPS__", str(steps_default))

    @app.post("/api/animate")
    def animate(audio: UploadFile = File(...), text: str = Form(""), steps: int = Form(steps_default),
                seed: int = Form(0), face: str = Form("auto")) -> dict:
        from ksdiff.render import render_video

        job = uuid.uuid4().hex[:12]
        d = work / job
        d.mkdir()
        suffix = Path(audio.filename or "audio.wav").suffix or ".wav"
        src = d / f"input{suffix}"
        with open(src, "wb") as fh:
            shutil.copyfileobj(audio.file, fh)
        if not 2 <= steps <= 200:
            raise HTTPException(400, "steps must be between 2 and 200")
        try:
            t0 = time.perf_counter()
            m = model().animate(src, text=text.strip() or None, steps=steps, seed=seed)
            t_gen = time.perf_counter() - t0
            m.save(d / "motion.npz")
            csv = None
            if m.spec == "arkit":
                from ksdiff.export.livelink import write_livelink_csv

                write_livelink_csv(m, d / "motion.csv")
                csv = f"files/{job}/motion.csv"
            t1 = time.perf_counter()
            render_video(m, src, d / "video.mp4", face=face)
            t_render = time.perf_counter() - t1
        except KsdiffError as e:
            raise HTTPException(400, str(e).replace(str(src), audio.filename or "upload")) from None
        summary = (f"{m.num_frames} frames at {m.fps:g} fps ({m.duration:.1f} s); generation {t_gen:.1f} s, "
                   f"rendering {t_render:.1f} s.")
        return {"mp4": f"files/{job}/video.mp4", "npz": f"files/{job}/motion.npz", "csv": csv, "summary": summary}

    @app.get("/files/{job}/{name}")
    def files(job: str, name: str):
        if not job.isalnum() or name not in ("video.mp4", "motion.npz", "motion.csv"):
            raise HTTPException(404)
        p = work / job / name
        if not p.is_file():
            raise HTTPException(404)
        return FileResponse(p, filename=name)

    return app


def serve(checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 7860, steps: int | None = None) -> None:
    import uvicorn

    app = create_app(checkpoint, default_steps=steps)
    app.state.model()  # load now: fail early with a clear error
    print(f"ksdiff: serving on http://{host}:{port}/", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
