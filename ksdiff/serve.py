"""A small web page for people who would rather click: upload or record speech, optional transcript,
steps and seed → the rendered video and the motion files.

``ksdiff serve [--checkpoint C] [--host 127.0.0.1] [--port 7860] [--max-seconds 600] [--max-upload-mb 200]
[--max-jobs 1] [--keep-results 20] [--api-docs]`` (FastAPI + uvicorn).

Limits, so that one request cannot take the machine: the upload is streamed to disk and refused with 413 once
it passes ``max_upload_mb``; the audio is decoded in a streaming way and refused (400) as soon as it passes
``max_seconds``; at most ``max_jobs`` requests are handled at once, any other gets 503 (``Retry-After``) at
once, before its upload is read (no queue). The form fields are checked as they arrive, before the upload is
stored (the page sends them first). Every answer is JSON, errors ``{"detail": "..."}``. The upload is deleted
after every job; results (mp4, npz, csv) are kept for the ``keep_results`` newest jobs; the work folder is
removed at shutdown when serve made it. /docs and /openapi.json only with ``api_docs``.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime

import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ksdiff.errors import KsdiffError

MAX_SECONDS = 600.0  # default audio length cap: 10 minutes
MAX_UPLOAD_MB = 200.0  # default upload cap (10 min of 48 kHz stereo 16-bit wav: 110 MB)
MAX_JOBS = 1  # default number of requests handled at once
KEEP_RESULTS = 20  # default number of finished jobs whose files stay downloadable
FACES = ("auto", "ict", "schematic")
STEPS_RANGE = (2, 200)
SEED_MAX = 2**32 - 1
TEXT_MAX = 2000  # characters of transcript
FIELD_MAX = 16 * 1024  # bytes of any one form field
#: the page's reference-clip input, shown when the model has a style encoder
REFERENCE_FIELD = """<fieldset><legend>Your own style (optional)</legend><label for="reference">A clip of your face
(Live Link Face CSV, a video, or a motion .npz; at least 2 s)</label>
<input id="reference" name="reference" type="file" accept=".csv,.npz,video/*"></fieldset>"""
#: the page's emotion sliders, shown when the model was trained with emotion (unticked: the fields are not sent)
EMOTION_FIELDS = """<fieldset><legend>Emotion</legend><label><input type="checkbox" id="emo"
 onchange="for(const n of ['valence','arousal'])document.getElementById(n).disabled=!this.checked"> set the emotion</label>
<div class="row"><div><label for="valence">Valence (unpleasant … pleasant): <output id="vo">0</output></label>
<input id="valence" name="valence" type="range" min="-1" max="1" step="0.1" value="0" disabled
 oninput="document.getElementById('vo').value=this.value"></div>
<div><label for="arousal">Arousal (calm … excited): <output id="ao">0</output></label>
<input id="arousal" name="arousal" type="range" min="-1" max="1" step="0.1" value="0" disabled
 oninput="document.getElementById('ao').value=this.value"></div></div></fieldset>"""
RESULT_FILES = ("video.mp4", "motion.npz", "motion.csv")

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
 <label for="audio">Audio file (wav, flac, mp3, m4a, ogg, …; __LIMITS__)</label><input id="audio" name="audio" type="file" accept="audio/*,video/*">
 <div style="margin-top:.6em"><button type="button" id="rec">● Record</button> <span id="recstate"></span></div>
 <label for="text">Transcript (optional)</label><textarea id="text" name="text" rows="2" placeholder="leave empty for an automatic transcript"></textarea>
</fieldset>
<fieldset><legend>Options</legend><div class="row">
 <div><label for="steps">Denoising steps</label><input id="steps" name="steps" type="number" min="2" max="200" value="__STEPS__"></div>
 <div><label for="seed">Seed</label><input id="seed" name="seed" type="number" value="0"></div>
 <div><label for="face">Face</label><select id="face" name="face"><option value="auto">auto</option><option>ict</option><option>schematic</option></select></div>
</div></fieldset>
__EMOTION__
__REFERENCE__
<button id="go" type="submit">Animate</button></form>
<fieldset><legend>Live</legend>
 <p class="sub" style="margin:.2em 0 .6em">The face follows your voice as you speak (about half a second behind), or an audio file played in real time with its sound delayed to match.</p>
 <button type="button" id="live">● Live from the microphone</button> <button type="button" id="livefile">▶ Live from the audio file</button> <span id="livestate"></span>
 <div><canvas id="liveface" width="320" height="320" style="margin-top:.6em;border-radius:8px;background:#f3f1ee"></canvas></div>
</fieldset>
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
  if(!f&&!recBlob){st.textContent='Choose an audio file or record one.';return;}
  // the fields first: the server checks them before it stores any of the upload
  for(const k of ['text','steps','seed','face']) fd.append(k,document.getElementById(k).value);
  for(const k of ['valence','arousal']){const e=document.getElementById(k); if(e&&!e.disabled) fd.append(k,e.value);}
  if(f) fd.append('audio',f); else fd.append('audio',recBlob,'recording.webm');
  const rf=document.getElementById('reference'); if(rf&&rf.files[0]) fd.append('reference',rf.files[0]);
  st.textContent='Animating… (features, keyframes, diffusion, rendering)';
  document.getElementById('result').hidden=true;
  const go=document.getElementById('go'); go.disabled=true; const t0=performance.now(); let r, j=null, body='';
  try{r=await fetch('api/animate',{method:'POST',body:fd}); body=await r.text(); try{j=JSON.parse(body);}catch(e){}}
  catch(e){st.className='err'; st.textContent='Error: the server did not answer ('+e.message+')'; return;}
  finally{go.disabled=false;}
  if(!r.ok||!j||!j.mp4){  // any error, JSON or not (a proxy's page), is shown: never "Animating…" forever
    const d=j&&j.detail, raw=(r.status+' '+r.statusText+' '+body.slice(0,200)).trim();
    st.className='err'; st.textContent='Error: '+(typeof d==='string'?d:d?JSON.stringify(d):raw); return;}
  st.textContent='Done in '+((performance.now()-t0)/1000).toFixed(1)+' s. '+j.summary;
  const v=document.getElementById('video'); v.src=j.mp4; document.getElementById('result').hidden=false;
  document.getElementById('dl_mp4').href=j.mp4; document.getElementById('dl_npz').href=j.npz;
  const c=document.getElementById('dl_csv'); if(j.csv){c.href=j.csv;c.hidden=false;}else{c.hidden=true;}
};
// ---- live mode: audio to ws/live in chunks, JSON frames back, the face drawn at each frame's time
let live=null; window.liveFrames=0;
const B=(f,n)=>(f.blendshapes&&f.blendshapes[n])||0;
function drawFace(f){
  const c=document.getElementById('liveface'), g=c.getContext('2d'), W=c.width, H=c.height;
  g.clearRect(0,0,W,H); if(!f) return;
  const h=f.head||{yaw:0,pitch:0,roll:0};
  g.save(); g.translate(W/2+h.yaw*120, H/2-h.pitch*120); g.rotate(-h.roll);
  g.fillStyle='#e9c9a8'; g.strokeStyle='#8a6a50'; g.lineWidth=3;
  g.beginPath(); g.ellipse(0,0,W*0.32,H*0.42,0,0,2*Math.PI); g.fill(); g.stroke();
  g.fillStyle='#fff'; g.strokeStyle='#333'; g.lineWidth=2;
  for(const [side,x] of [['Left',-1],['Right',1]]){
    const open=Math.max(0.05,1-B(f,'eyeBlink'+side)+0.5*B(f,'eyeWide'+side)), ex=x*W*0.12, ey=-H*0.08;
    g.beginPath(); g.ellipse(ex,ey,W*0.06,H*0.035*open,0,0,2*Math.PI); g.fill(); g.stroke();
    g.fillStyle='#333'; g.beginPath(); g.arc(ex,ey,Math.min(6,H*0.035*open),0,2*Math.PI); g.fill(); g.fillStyle='#fff';
    const up=(B(f,'browInnerUp')+B(f,'browOuterUp'+side)-B(f,'browDown'+side))*H*0.05;
    g.beginPath(); g.moveTo(ex-x*W*0.07,ey-H*0.07-up); g.lineTo(ex+x*W*0.06,ey-H*0.075-up*0.6); g.stroke();
  }
  const smile=(B(f,'mouthSmileLeft')+B(f,'mouthSmileRight'))/2, narrow=B(f,'mouthPucker')+B(f,'mouthFunnel');
  const open=Math.max(0,B(f,'jawOpen')-B(f,'mouthClose'))+0.5*(B(f,'mouthLowerDownLeft')+B(f,'mouthLowerDownRight'))/2;
  const mw=W*0.13*(1+0.4*smile+0.3*(B(f,'mouthStretchLeft')+B(f,'mouthStretchRight'))/2-0.5*narrow), mh=H*0.01+H*0.22*open, my=H*0.2;
  g.fillStyle='#5a1f1f'; g.strokeStyle='#a0464b'; g.lineWidth=5;
  g.beginPath(); g.moveTo(-mw,my-smile*H*0.03); g.quadraticCurveTo(0,my-mh*0.5-H*0.01,mw,my-smile*H*0.03);
  g.quadraticCurveTo(0,my+mh,-mw,my-smile*H*0.03); g.closePath(); g.fill(); g.stroke();
  g.restore();
}
async function startLive(fromFile){
  const st=document.getElementById('livestate');
  if(live){live.stop();return;}
  const file=document.getElementById('audio').files[0];
  if(fromFile&&!file){st.textContent='choose an audio file above first';return;}
  const ctx=new AudioContext(); await ctx.resume();
  let src, stream=null, el=null;
  try{
    if(fromFile){el=new Audio(URL.createObjectURL(file)); src=ctx.createMediaElementSource(el);}
    else{stream=await navigator.mediaDevices.getUserMedia({audio:{echoCancellation:false,noiseSuppression:false,autoGainControl:false}}); src=ctx.createMediaStreamSource(stream);}
  }catch(e){st.textContent='audio unavailable: '+e; ctx.close(); return;}
  const base=location.pathname.replace(/[^/]*$/,'');
  const ws=new WebSocket((location.protocol==='https:'?'wss://':'ws://')+location.host+base+'ws/live');
  ws.binaryType='arraybuffer';
  const D=0.6, frames=[]; let t0=null, shown=null, running=true;
  const proc=ctx.createScriptProcessor(2048,1,1);
  proc.onaudioprocess=e=>{if(ws.readyState===1&&running){if(t0===null)t0=ctx.currentTime-e.inputBuffer.duration; ws.send(e.inputBuffer.getChannelData(0).slice().buffer);}};
  src.connect(proc); proc.connect(ctx.destination);  // the processor runs only when connected; it outputs silence
  if(fromFile){const d=ctx.createDelay(2.0); d.delayTime.value=D; src.connect(d); d.connect(ctx.destination); el.onended=()=>setTimeout(()=>live&&live.stop(),1500); el.play();}
  ws.onopen=()=>ws.send(JSON.stringify({sample_rate:ctx.sampleRate,format:'f32'}));
  ws.onmessage=m=>{const f=JSON.parse(m.data); if(f.error){st.textContent=f.error;return;}
    if(f.ready){st.textContent='live: listening…';return;} if(f.frame!==undefined){frames.push(f); window.liveFrames++;}};
  ws.onclose=()=>{if(running){st.textContent='live: the server closed the stream'; live&&live.stop();}};
  const show=()=>{ if(t0===null) return; const now=ctx.currentTime-t0-D;
    while(frames.length&&frames[0].t<=now) shown=frames.shift();
    drawFace(shown); window.liveShown=shown?shown.frame:-1;};
  const tick=()=>{if(!running) return; show(); requestAnimationFrame(tick);};
  requestAnimationFrame(tick);
  const timer=setInterval(()=>running&&show(),40);  // also where animation frames are paused (a hidden tab)
  const btn=document.getElementById(fromFile?'livefile':'live'); const label=btn.textContent; btn.textContent='■ Stop';
  live={stop:()=>{running=false; live=null; clearInterval(timer); btn.textContent=label; try{ws.close();}catch(e){}
    if(stream) stream.getTracks().forEach(t=>t.stop()); if(el) el.pause(); ctx.close();
    st.textContent='stopped ('+window.liveFrames+' frames)';}};
}
document.getElementById('live').onclick=()=>startLive(false);
document.getElementById('livefile').onclick=()=>startLive(true);
drawFace({blendshapes:{},head:{yaw:0,pitch:0,roll:0}});
</script></body></html>
"""


@dataclass(frozen=True)
class Limits:
    """What one request may take: seconds of audio, megabytes of upload; jobs at once; finished jobs kept."""

    max_seconds: float = MAX_SECONDS
    max_upload_mb: float = MAX_UPLOAD_MB
    max_jobs: int = MAX_JOBS
    keep_results: int = KEEP_RESULTS

    def __post_init__(self) -> None:
        for flag, value, least in [("--max-seconds", self.max_seconds, 0), ("--max-upload-mb", self.max_upload_mb, 0),
                                   ("--max-jobs", self.max_jobs, 1), ("--keep-results", self.keep_results, 1)]:
            if not (value > 0 if least == 0 else value >= least):  # NaN fails too
                raise KsdiffError(f"{flag} must be {'positive' if least == 0 else 'at least 1'}, got {value}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


@dataclass(frozen=True)
class Params:
    """The checked form fields of one request."""

    text: str
    steps: int
    seed: int
    face: str
    emotion: tuple[float, float] | None = None
    reference: Path | None = None  # an uploaded clip of the person's face (reference style)
    reference_name: str = ""


def _http(status: int, detail: str, **headers: str):
    from fastapi import HTTPException

    return HTTPException(status, detail, headers=headers or None)


def check_field(name: str, value: str) -> str | int:
    """The parsed value of the form field ``name`` (text, steps, seed, face, valence, arousal); HTTP 400 naming it
    when wrong."""
    if name == "text":
        if len(value) > TEXT_MAX:
            raise _http(400, f"text: at most {TEXT_MAX} characters, got {len(value)}")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
            raise _http(400, "text: control characters are not allowed")
        return value.strip()
    if name in ("steps", "seed"):
        lo, hi = STEPS_RANGE if name == "steps" else (0, SEED_MAX)
        try:
            number = int(value.strip())
        except ValueError:
            number = None
        if number is None or not lo <= number <= hi:
            raise _http(400, f"{name} must be a whole number from {lo} to {hi}, got {value[:24]!r}")
        return number
    if name == "face":
        if value not in FACES:
            raise _http(400, f"face must be one of {', '.join(FACES)}, got {value[:24]!r}")
        if value == "ict":
            from ksdiff.face.ict import find_ict_asset

            try:
                found = find_ict_asset(required=False)
            except KsdiffError:
                found = None
            if found is None:
                raise _http(400, "face 'ict': the ICT-FaceKit head is not installed on this server (choose auto "
                                 "or schematic)")
        return value
    if name in ("valence", "arousal"):
        try:
            number = float(value.strip())
        except ValueError:
            number = float("nan")
        if not -1.0 <= number <= 1.0:
            raise _http(400, f"{name} must be a number from -1 to 1, got {value[:24]!r}")
        return number
    raise _http(400, f"unknown form field {name[:40]!r} (the fields: audio, text, steps, seed, face, valence, "
                     "arousal)")


def display_name(filename: str) -> str:
    """The client's file name as messages show it: its last path part, printable characters, at most 80."""
    name = "".join(c for c in re.split(r"[\\/]", filename)[-1] if c.isprintable()) or "upload"
    return name if len(name) <= 80 else name[:60] + "…" + name[-19:]


def safe_suffix(filename: str) -> str:
    """The extension of the client's file name when it is a plain short one (".wav", ".m4a"), else "": the
    decoder probes the content anyway, and the client's name never reaches the file system."""
    m = re.fullmatch(r"[^\\/]*(\.[A-Za-z0-9]{1,5})", re.split(r"[\\/]", filename)[-1])
    return m.group(1).lower() if m else ""


class FormReader:
    """One multipart/form-data body, streamed from the socket: the small fields into :attr:`fields`, each checked
    by :func:`check_field` as it ends (a wrong field sent before the file stops the request before any of the
    upload is stored), the file of the field ``audio`` written chunk by chunk to ``folder``/input.<ext>, never
    held in memory, and refused with 413 as soon as it passes ``max_bytes``."""

    def __init__(self, boundary: bytes, folder: Path, max_bytes: int, max_mb: float):
        from python_multipart.multipart import MultipartParser

        self.folder, self.max_bytes, self.max_mb = folder, max_bytes, max_mb
        self.fields: dict[str, str | int] = {}
        self.upload: Path | None = None  # where the file went
        self.filename = ""  # the client's name for it, for messages only (display_name)
        self.reference: Path | None = None  # the optional reference clip (field ``reference``)
        self.reference_name = ""
        self.size = 0  # bytes of the files stored (both count against the limit)
        self._hname, self._hvalue, self._disposition, self._value = bytearray(), bytearray(), b"", bytearray()
        self._name = ""
        self._fh = None
        self._parser = MultipartParser(boundary, callbacks={
            "on_part_begin": self._begin, "on_header_field": self._header_field, "on_header_value": self._header_value,
            "on_header_end": self._header_end, "on_headers_finished": self._headers_done,
            "on_part_data": self._data, "on_part_end": self._end})

    async def read(self, request) -> None:
        """Consume the request body; HTTP 400/413 on a bad body, field or size."""
        from python_multipart.exceptions import FormParserError

        try:
            async for chunk in request.stream():
                self._parser.write(chunk)
            self._parser.finalize()
        except FormParserError:
            raise _http(400, "the request body is not valid multipart/form-data") from None
        finally:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def _begin(self) -> None:
        self._disposition, self._name = b"", ""
        self._value.clear()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def _header_end(self) -> None:
        if bytes(self._hname).strip().lower() == b"content-disposition":
            self._disposition = bytes(self._hvalue)
        self._hname.clear()
        self._hvalue.clear()

    def _headers_done(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, opts = parse_options_header(self._disposition)
        self._name = opts.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in opts:
            raw = opts[b"filename"].decode("utf-8", "replace")
            if self._name == "audio" and self.upload is None:
                self.filename, self.upload = display_name(raw), self.folder / f"input{safe_suffix(raw)}"
                path = self.upload
            elif self._name == "reference" and self.reference is None:
                self.reference_name = display_name(raw)
                self.reference = path = self.folder / f"reference{safe_suffix(raw)}"
            else:
                raise _http(400, "send one file in the form field 'audio' (and at most one in 'reference')")
            self._fh = open(path, "wb")  # noqa: SIM115 (written by the following callbacks)
        elif self._name in ("audio", "reference"):
            raise _http(400, f"{self._name}: expected a file")
        elif self._name in self.fields:
            raise _http(400, f"form field {self._name[:40]!r} given twice")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._fh is not None:
            if self.size + (end - start) > self.max_bytes:
                raise _http(413, f"the upload is larger than the {self.max_mb:g} MB limit (--max-upload-mb)")
            self._fh.write(data[start:end])
            self.size += end - start
        else:
            self._value += data[start:end]
            if len(self._value) > FIELD_MAX:
                raise _http(400, f"form field {self._name[:40]!r} is longer than {FIELD_MAX} bytes")

    def _end(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        else:
            self.fields[self._name] = check_field(self._name, self._value.decode("utf-8", "replace"))


class Jobs:
    """The job slots (at most ``limits.max_jobs`` at once), the work folder (made when first needed; removed at
    shutdown when serve made it) and the finished jobs kept (the ``limits.keep_results`` newest)."""

    def __init__(self, workdir: str | os.PathLike | None, limits: Limits):
        self.limits = limits
        self._given = None if workdir is None else Path(workdir)
        self._folder = self._given
        self._lock = threading.Lock()
        self.running: set[str] = set()
        self._kept: list[str] = []  # finished jobs, oldest first
        self.stats = {"jobs": 0, "busy": 0, "upload_bytes": 0}

    def folder(self) -> Path:
        """The work folder, made now if needed."""
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="ksdiff-serve-"))
            self._folder.mkdir(parents=True, exist_ok=True)
            return self._folder

    def result(self, job: str, name: str) -> Path | None:
        """A finished job's file, or None."""
        with self._lock:
            ok = self._folder is not None and job in self._kept and name in RESULT_FILES
        p = self._folder / job / name if ok else None
        return p if p is not None and p.is_file() else None

    def start(self) -> str | None:
        """A new job's id (its slot taken until :meth:`finish`), or None when every slot is taken."""
        with self._lock:
            if len(self.running) >= self.limits.max_jobs:
                self.stats["busy"] += 1
                return None
            job = uuid.uuid4().hex[:12]
            self.running.add(job)
            self.stats["jobs"] += 1
            return job

    def finish(self, job: str, ok: bool) -> None:
        """Free the slot; keep the job's results when ``ok`` (dropping the oldest beyond keep_results), else
        remove its folder."""
        with self._lock:
            self.running.discard(job)
            if ok:
                self._kept.append(job)
            drop = self._kept[:-self.limits.keep_results] if ok else [job]
            self._kept = self._kept[-self.limits.keep_results:]
            folder = self._folder
        for j in drop if folder is not None else []:
            shutil.rmtree(folder / j, ignore_errors=True)

    def close(self) -> None:
        """At shutdown: remove the work folder when serve made it."""
        with self._lock:
            folder, self._folder, self._kept = self._folder, self._given, []
        if self._given is None and folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


def _boundary(request, limits: Limits) -> bytes:
    """The multipart boundary, from the headers alone: 415 when not a form, 413 when the declared length is over."""
    from python_multipart.multipart import parse_options_header

    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not opts.get(b"boundary"):
        raise _http(415, "send multipart/form-data: the fields text, steps, seed, face and the file audio")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limits.max_upload_bytes + 8 * FIELD_MAX:
        raise _http(413, f"the upload is larger than the {limits.max_upload_mb:g} MB limit (--max-upload-mb)")
    return opts[b"boundary"]


def _params(reader: FormReader, steps_default: int) -> Params:
    """The request's parameters (fields checked as they arrived; defaults for the missing)."""
    if reader.upload is None:
        raise _http(400, "no audio: send the file in the form field 'audio'")
    f = reader.fields
    if ("valence" in f) != ("arousal" in f):
        raise _http(400, "send both valence and arousal, or neither")
    emotion = (float(f["valence"]), float(f["arousal"])) if "valence" in f else None
    return Params(text=str(f.get("text", "")), steps=int(f.get("steps", steps_default)), seed=int(f.get("seed", 0)),
                  face=str(f.get("face", "auto")), emotion=emotion, reference=reader.reference,
                  reference_name=reader.reference_name)


def _message(e: KsdiffError, src: Path, shown: str) -> str:
    """A KsdiffError as the client sees it: the upload named by the client's (sanitised) file name."""
    if e.path == str(src):
        return f"{shown}: {e.problem}"
    return e.problem if e.path is None else str(e)


def run_job(animator, src: Path, shown: str, p: Params, max_seconds: float) -> dict:
    """Decode (at most ``max_seconds``: :func:`ksdiff.audio.features.load_speech`), generate, save and render one
    job in ``src``'s folder; its JSON answer.
    User errors come back as HTTP 400."""
    from ksdiff.audio.features import load_speech
    from ksdiff.render import render_video

    d, job = src.parent, src.parent.name
    try:
        wave = load_speech(src, max_seconds=max_seconds)  # generate's rules: long enough, not silent
        if p.face == "ict" and animator.spec.name != "arkit":
            raise KsdiffError(f"face 'ict' shows arkit motion, this model makes {animator.spec.name!r}: choose auto "
                              "or schematic")
        ref, ref_wave = _reference_clip(animator, p)
        t0 = time.perf_counter()
        with _ANIMATE_LOCK:  # one model shared by the jobs: generations take turns, renderings overlap
            m = animator.animate(wave, text=p.text or None, steps=p.steps, seed=p.seed, emotion=p.emotion,
                                 reference=ref, reference_audio=ref_wave)
        t_gen = time.perf_counter() - t0
        m.save(d / "motion.npz")
        csv = None
        if m.spec == "arkit":
            from ksdiff.export.livelink import write_livelink_csv

            write_livelink_csv(m, d / "motion.csv")
            csv = f"files/{job}/motion.csv"
        t1 = time.perf_counter()
        render_video(m, src, d / "video.mp4", face=p.face)
        t_render = time.perf_counter() - t1
    except KsdiffError as e:
        raise _http(400, _message(e, src, shown)) from None
    summary = (f"{m.num_frames} frames at {m.fps:g} fps ({m.duration:.1f} s); generation {t_gen:.1f} s, "
               f"rendering {t_render:.1f} s.")
    return {"mp4": f"files/{job}/video.mp4", "npz": f"files/{job}/motion.npz", "csv": csv, "summary": summary}


def _reference_clip(animator, p: Params) -> tuple:
    """The uploaded reference clip (motion, a video's own sound or None), read and checked (its messages name the
    client's file, never the server's); (None, None) without one."""
    if p.reference is None:
        return None, None
    try:
        return animator.load_reference(p.reference)
    except KsdiffError as e:
        raise KsdiffError(f"reference {p.reference_name}: {e.problem}") from None


#: ``Animator.animate`` keeps per-call state (``last_info``) on the one shared model: with ``--max-jobs`` above 1
#: the generations take turns (rendering, the longer stage, still runs in parallel).
_ANIMATE_LOCK = threading.Lock()

_OPENAPI_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["audio"], "properties": {
        "text": {"type": "string", "maxLength": TEXT_MAX},
        "steps": {"type": "integer", "minimum": STEPS_RANGE[0], "maximum": STEPS_RANGE[1]},
        "seed": {"type": "integer", "minimum": 0, "maximum": SEED_MAX},
        "face": {"type": "string", "enum": list(FACES)},
        "valence": {"type": "number", "minimum": -1, "maximum": 1},
        "reference": {"type": "string", "format": "binary"},
        "arousal": {"type": "number", "minimum": -1, "maximum": 1},
        "audio": {"type": "string", "format": "binary"}}}}}}}


def _model_loader(checkpoint: str | os.PathLike | None):
    """A function that loads the model at its first call (once, whatever the threads) and returns it."""
    from ksdiff.generate import load_model

    state: dict = {}
    lock = threading.Lock()

    def model():
        with lock:
            if "model" not in state:
                state["model"] = load_model(checkpoint)
            return state["model"]

    return model


async def _unexpected(request, exc: Exception):
    """Any exception that is not an HTTP error: a JSON 500 (the traceback goes to the server's log)."""
    from fastapi.responses import JSONResponse

    return JSONResponse({"detail": f"internal error ({type(exc).__name__}); the server's log has the details"},
                        status_code=500)


def _add_animate(app, jobs: Jobs, limits: Limits, steps_default) -> None:
    """POST /api/animate: headers checked, a job slot taken (else 503), the form streamed in, the job run in a
    worker thread; the upload deleted whatever happens, the job's folder too when it failed."""
    from fastapi import Request
    from fastapi.concurrency import run_in_threadpool

    @app.post("/api/animate", openapi_extra=_OPENAPI_FORM)
    async def animate(request: Request) -> dict:
        boundary = _boundary(request, limits)
        job = jobs.start()
        if job is None:
            raise _http(503, f"busy: {limits.max_jobs} job(s) already running; try again in a minute",
                        **{"Retry-After": "30"})
        reader, ok = None, False
        try:
            (jobs.folder() / job).mkdir()
            reader = FormReader(boundary, jobs.folder() / job, limits.max_upload_bytes, limits.max_upload_mb)
            await reader.read(request)
            params = _params(reader, steps_default())
            answer = await run_in_threadpool(lambda: run_job(request.app.state.model(), reader.upload,
                                                             reader.filename, params, limits.max_seconds))
            ok = True
            return answer
        finally:
            if reader is not None:
                jobs.stats["upload_bytes"] += reader.size
                for f in (reader.upload, reader.reference):
                    if f is not None:
                        f.unlink(missing_ok=True)
            jobs.finish(job, ok)


LIVE_BACKLOG_S = 0.5  # a live session further behind than this skips to the present


def _add_live(app, jobs: Jobs, limits: Limits) -> None:
    """WebSocket /ws/live: the page's live mode (and any client). The client sends audio as binary messages
    (float32 little-endian mono; a text message ``{"sample_rate": R, "format": "f32"|"s16"}`` first when not
    16 kHz f32); the server answers ``{"ready": true, "fps", "hop", "lookahead"}``, then one JSON frame per motion
    frame (:func:`ksdiff.stream.frame_json`) as the hops are generated. A session takes a job slot (refused with
    ``{"error"}`` when all are busy) and ends after ``max_seconds`` of audio."""
    from fastapi import WebSocket, WebSocketDisconnect
    from fastapi.concurrency import run_in_threadpool

    @app.websocket("/ws/live")
    async def live(ws: WebSocket) -> None:
        from ksdiff.stream import AudioDecoder, StreamAnimator

        await ws.accept()
        job = jobs.start()
        if job is None:
            await ws.send_json({"error": f"busy: {limits.max_jobs} job(s) already running; try again in a minute"})
            await ws.close(code=1013)
            return
        try:
            animator = await run_in_threadpool(ws.app.state.model)
            engine = StreamAnimator(animator)
            await ws.send_json({"ready": True, "fps": animator.fps, "hop": engine.hop / animator.fps,
                                "lookahead": engine.lookahead / animator.fps, "spec": animator.spec.name})
            audio = AudioDecoder()
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                if msg.get("text") is not None:
                    err = audio.header(msg["text"])
                    if err:
                        await ws.send_json({"error": err})
                        break
                    continue
                engine.push(audio.decode(msg.get("bytes") or b""))
                if engine.heard_s > limits.max_seconds:
                    await ws.send_json({"error": f"live session ended: over {limits.max_seconds:g} s of audio"})
                    break
                await _live_steps(ws, engine, animator)
        except WebSocketDisconnect:
            pass
        except KsdiffError as e:
            await ws.send_json({"error": str(e)})
        finally:
            jobs.finish(job, False)


async def _live_steps(ws, engine, animator) -> None:
    """Generate every hop the audio allows (skipping to the present when far behind) and send its frames."""
    import json

    from fastapi.concurrency import run_in_threadpool

    from ksdiff.stream import frame_json

    if engine.backlog_s() > LIVE_BACKLOG_S:
        engine.skip_to_present()
    while engine.ready():
        ch = await run_in_threadpool(engine.step)
        wall = time.time()
        for i, row in enumerate(ch.coeffs):
            f = ch.start + i
            await ws.send_text(json.dumps(frame_json(f, f / animator.fps, row, wall, animator.spec.channels)))


def create_app(checkpoint: str | os.PathLike | None = None, workdir: str | os.PathLike | None = None,
               default_steps: int | None = None, limits: Limits | None = None, api_docs: bool = False):
    """The FastAPI app. The model is loaded once, at the first request (or eagerly by :func:`serve`).

    ``workdir``: where jobs go (default: a new temporary folder, removed at shutdown). ``limits``: see
    :class:`Limits`. ``api_docs``: serve /docs and /openapi.json (off by default).
    """
    import contextlib

    from fastapi import FastAPI
    from fastapi.responses import FileResponse, HTMLResponse

    limits = limits or Limits()
    jobs = Jobs(workdir, limits)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.close()

    app = FastAPI(title="ksdiff", lifespan=lifespan, docs_url="/docs" if api_docs else None, redoc_url=None,
                  openapi_url="/openapi.json" if api_docs else None)
    app.state.model = _model_loader(checkpoint)
    app.state.jobs = jobs
    app.add_exception_handler(Exception, _unexpected)

    def steps_default() -> int:
        """The given default, else the model's own (the shipped model: 4)."""
        return int(default_steps or app.state.model().defaults["steps"])

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        shown = f"up to {limits.max_seconds / 60:g} min and {limits.max_upload_mb:g} MB"
        model = app.state.model().model
        emotion = EMOTION_FIELDS if model.cfg.denoiser.emotion else ""
        reference = REFERENCE_FIELD if model.style_encoder is not None else ""
        return PAGE.replace("__STEPS__", str(steps_default())).replace("__LIMITS__", shown).replace(
            "__EMOTION__", emotion).replace("__REFERENCE__", reference)

    _add_animate(app, jobs, limits, steps_default)
    _add_live(app, jobs, limits)

    @app.get("/files/{job}/{name}")
    def files(job: str, name: str):
        p = jobs.result(job, name)
        if p is None:
            raise _http(404, "no such file (results are kept for the newest jobs only)")
        return FileResponse(p, filename=name)

    return app


def serve(checkpoint: str | None = None, host: str = "127.0.0.1", port: int = 7860, steps: int | None = None,
          limits: Limits | None = None, api_docs: bool = False) -> None:
    """Run the page with uvicorn until interrupted; the work folder is removed on the way out."""
    import uvicorn

    limits = limits or Limits()
    app = create_app(checkpoint, default_steps=steps, limits=limits, api_docs=api_docs)
    app.state.model()  # load now: fail early with a clear error
    print(f"ksdiff: serving on http://{host}:{port}/ (audio up to {limits.max_seconds:g} s, uploads up to "
          f"{limits.max_upload_mb:g} MB, {limits.max_jobs} job(s) at a time)", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print("ksdiff: note: no authentication; anyone who can reach this address can use the page", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
