"""Generation: the one place where the stages meet at inference.

    audio ──decode──> wave (16 kHz) ──features──> feats (N', F), prosody (N', 2), tokens, words
          ──per window: model.encode_condition──> speech condition + keyframes (T, 2), for the whole clip first
          ──per window: sampler over model.denoise, overlap inpainted──> x0 (normalised)
          ──model.denormalize, FaceSpec.clip, mouth smoothed──> Motion (T, C)

``T = round(duration × fps)``. Audio longer than a window plus its overlap (default 8 s + 2 s) is generated in
overlapping windows (:func:`plan_windows`). Keyframes are predicted for the whole clip before any diffusion
(window by window, each decode warming up over the overlap and keeping the previous window's keyframes there), so
the same keyframes anchor both sides of every overlap; each window after the first is conditioned on the end of
the previous one by inpainting the overlap at every denoising step (:mod:`ksdiff.diffusion.samplers`). The
initial noise is drawn once for the whole clip, so a frame's noise does not depend on the window plan. Each
window sees its own speech features and the tokens of the words spoken inside it, as the training crops do.
Memory is one window plus O(T) per-frame arrays, and time is linear in length.

Usage::

    from ksdiff.generate import load_model
    animator = load_model("runs/x/model.safetensors")
    motion = animator.animate("speech.flac", steps=20, sampler="dpmpp", seed=0)
    motion.save("speech.npz"); print(animator.last_info["timings"])
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ksdiff.diffusion.samplers import get_sampler, initial_noise
from ksdiff.errors import KsdiffError
from ksdiff.face.motion import Motion
from ksdiff.face.specs import FaceSpec, get_spec
from ksdiff.utils.arrays import fit_rows

#: Where a packaged default model would live (ksdiff ships without one unless a release adds it).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "default.safetensors"
DEFAULT_WINDOW_S = 8.0  # seconds of motion per denoising window
DEFAULT_OVERLAP_S = 2.0  # seconds each window shares with the previous one (inpainted)
SAMPLE_RATE = 16_000
MIN_REFERENCE_S = 2.0  #: shortest reference clip of a person (seconds) for a reference style
#: with a reference, the weight of the person's own typical face (from the reference) against their style token's
#: (the training data's median face, when the checkpoint stores it): :func:`anchor_face`. 0.5 was chosen in a nested
#: grouped cross-validation over 35 tracked people with 2 s references (docs/RESULTS.md, "Style from a reference").
REFERENCE_WEIGHT = 0.5
MAX_SMOOTH = 5.0  #: the largest mouth smoothing σ (frames) accepted: beyond it speech is blurred away
ENCODE_BATCH = 16  # windows whose conditions (and autoregressive keyframes) are computed in one batch


@dataclass(frozen=True)
class Window:
    """Frames [start, stop) of one denoising window; its first ``known`` frames come from the previous window."""

    start: int
    stop: int
    known: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_windows(num_frames: int, window: int, overlap: int) -> list[Window]:
    """Cover frames [0, num_frames) with windows of ``window`` frames, each overlapping the previous by >= ``overlap``.

    One window when ``num_frames <= window + overlap`` (or ``window <= 0``: no windowing). Otherwise
    n = ceil((num_frames - overlap) / (window - overlap)) windows of exactly ``window`` frames, spread evenly from
    the first frame to the last, so the overlaps are equal (± 1 frame) and at least ``overlap``. Each window after
    the first has ``known`` = the frames it shares with the previous one.
    """
    if num_frames <= 0:
        raise KsdiffError("nothing to generate: the audio is shorter than one motion frame")
    if window <= 0 or num_frames <= window + max(overlap, 0):
        return [Window(0, num_frames, 0)]
    if not 0 < overlap < window:
        raise KsdiffError(f"window overlap must be between 0 and the window length ({window} frames), got {overlap}")
    n = -(-(num_frames - overlap) // (window - overlap))  # ceil
    n = max(n, 2)
    starts = [int(round(i * (num_frames - window) / (n - 1))) for i in range(n)]
    out = [Window(starts[0], starts[0] + window, 0)]
    for s in starts[1:]:
        out.append(Window(s, s + window, out[-1].stop - s))
    return out


def seam_jumps(coeffs: np.ndarray, windows: Sequence[Window], scale: np.ndarray | None = None) -> dict[str, float]:
    """Mean absolute frame-to-frame change at window seams vs inside windows.

    Args:
        coeffs: (T, C) motion (raw; divided by ``scale`` (C,) per channel, e.g. the model's motion std, so that
            channels of different units weigh alike).
        windows: the window plan used to generate ``coeffs``.

    Returns:
        ``seam`` (mean over the first generated frame of each window after the first of mean_c |x_t - x_{t-1}|),
        ``inside`` (the same over every other frame), ``ratio`` = seam / inside, ``num_seams``.
    """
    x = np.asarray(coeffs, dtype=np.float64)
    if scale is not None:
        x = x / np.asarray(scale, dtype=np.float64).reshape(1, -1)
    if len(x) < 2:
        return {"seam": float("nan"), "inside": float("nan"), "ratio": float("nan"), "num_seams": 0}
    jump = np.abs(np.diff(x, axis=0)).mean(axis=1)  # jump[t-1] = |x_t - x_{t-1}|
    seam_t = [w.start + w.known for w in windows[1:] if 0 < w.start + w.known < len(x)]
    is_seam = np.zeros(len(jump), dtype=bool)
    is_seam[[t - 1 for t in seam_t]] = True
    seam = float(jump[is_seam].mean()) if is_seam.any() else float("nan")
    inside = float(jump[~is_seam].mean()) if (~is_seam).any() else float("nan")
    return {"seam": seam, "inside": inside, "ratio": seam / inside if inside > 0 else float("nan"),
            "num_seams": int(is_seam.sum())}


def generation_defaults(config: dict) -> dict[str, Any]:
    """``{"steps", "sampler", "guidance", "encoder_compute", "smooth"}`` a checkpoint generates with when the caller
    gives none: its config's ``generation`` section (checkpoints without one: DPM-Solver++ 20 steps, no guidance, the
    Whisper encoder in float32, no smoothing). ``encoder_compute`` ``int8`` runs the whisper-tiny encoder with int8
    weights; ``smooth`` is :func:`smooth_mouth`'s σ in frames."""
    gen = config.get("generation") or {}
    compute = str(gen.get("encoder_compute", "float32"))
    if compute not in ("float32", "int8"):
        raise KsdiffError(f"generation.encoder_compute must be float32 or int8, not {compute!r}")
    return {"steps": int(gen.get("steps", 20)), "sampler": str(gen.get("sampler", "dpmpp")),
            "guidance": float(gen.get("guidance", 1.0)), "encoder_compute": compute,
            "smooth": checked_smooth(gen.get("smooth", 0.0), "generation.smooth")}


def checked_smooth(sigma: Any, name: str = "smooth") -> float:
    """``sigma`` as a float σ in frames for :func:`smooth_mouth`; a value outside [0, MAX_SMOOTH] is refused."""
    value = float(sigma)
    if not 0.0 <= value <= MAX_SMOOTH:
        raise KsdiffError(f"{name} must lie in [0, {MAX_SMOOTH:g}] frames, got {value:g}")
    return value


def smooth_mouth(raw: np.ndarray, spec: FaceSpec, sigma: float) -> np.ndarray:
    """``raw`` (T, C) with its mouth channels (:func:`ksdiff.metrics.articulation.mouth_channels`) smoothed over time
    by a Gaussian of σ = ``sigma`` frames (edges repeat the end frames; 0: unchanged). A weighted mean of values,
    so bounded channels stay in [0, 1]. Returns a new (T, C) float32 array."""
    if sigma <= 0 or len(raw) < 2:
        return raw
    from scipy.ndimage import gaussian_filter1d

    from ksdiff.metrics.articulation import mouth_channels

    idx = [spec.channels.index(c) for c in mouth_channels(spec.channels)]
    out = np.array(raw, dtype=np.float32, copy=True)
    if idx:
        out[:, idx] = gaussian_filter1d(out[:, idx], float(sigma), axis=0, mode="nearest")
    return out


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "Animator":
    """Load a KSDiff checkpoint (``model.safetensors`` of a run) for generation.

    ``path`` None means the packaged default model (:data:`DEFAULT_CHECKPOINT`). The checkpoint's kind, format
    version and face spec are checked (:func:`ksdiff.train.checkpoint.load_checkpoint`); its config supplies
    everything else (spec, fps, speech encoder, token kind, normalisation).
    """
    from ksdiff.train.checkpoint import model_from_checkpoint

    if path is None:
        path = DEFAULT_CHECKPOINT
        if not path.is_file():
            raise KsdiffError("no default model is installed; train one with `ksdiff train` and pass its "
                              "model.safetensors with --checkpoint", path)
    path = Path(path)
    if path.is_dir() and (path / "model.safetensors").is_file():  # a run folder
        path = path / "model.safetensors"
    model, config = model_from_checkpoint(path, device=device)
    return Animator(model, config, path=path)


class Animator:
    """A loaded model plus everything needed to turn speech into motion.

    Attributes:
        model: the :class:`ksdiff.model.ksdiff.KSDiff` (eval mode).
        config: the checkpoint's resolved config.
        spec: face spec of the output; fps: its frame rate.
        encoder / tokens: speech encoder name and token kind the model was trained with.
        window_s / overlap_s: long-audio window plan (seconds); ``window_s = 0`` generates in one pass.
        last_info: after :meth:`animate`: ``timings`` (seconds per stage), ``windows``, ``seams``, ``num_frames``,
            ``audio_seconds``, ``transcript`` and the sampling settings.
    """

    def __init__(self, model: Any, config: dict, path: str | os.PathLike | None = None,
                 window_s: float = DEFAULT_WINDOW_S, overlap_s: float = DEFAULT_OVERLAP_S):
        self.model = model.eval()
        self.config = config
        self.path = None if path is None else Path(path)
        spec_d = config.get("spec") or {}
        self.spec: FaceSpec = model.spec if hasattr(model, "spec") else get_spec(spec_d["name"],
                                                                                 spec_d.get("jaw_path", "expression"))
        self.fps = float(config.get("fps", model.cfg.fps))
        feats = config.get("features") or {}
        audio = config.get("audio") or {}
        self.encoder = str(feats.get("encoder", audio.get("encoder", "whisper-tiny")))
        self.defaults = generation_defaults(config)
        #: options of the speech encoder at generation (int8 weights when the checkpoint's generation says so)
        self.encoder_options: dict[str, Any] = (
            {"compute_type": "int8"} if self.encoder == "whisper-tiny" and self.defaults["encoder_compute"] == "int8"
            else {})
        self.feat_dim = int(feats.get("dim", model.feat_dim))
        self.tokens = str(feats.get("tokens", audio.get("tokens", "phonemes")))
        self.uses_text = bool(model.cfg.transcript) and self.tokens != "none"
        self.transcribe = bool(audio.get("transcribe", True))
        self.speakers = list((config.get("data") or {}).get("speakers") or [])
        self.default_style = str((config.get("data") or {}).get("default_style") or "") or None
        #: the style used with a reference clip and no style given (data.reference_style, else the default style)
        self.reference_style = str((config.get("data") or {}).get("reference_style") or "") or self.default_style
        #: each style token's typical face (C,): its training data's median (NaN: a channel its data never observed)
        self.typical_faces: dict[str, np.ndarray] = {
            k: np.array([np.nan if v is None else v for v in vals], np.float32)
            for k, vals in (config.get("typical_faces") or {}).items()}
        self.window_s, self.overlap_s = float(window_s), float(overlap_s)
        self.last_info: dict = {}
        self._last_reference: tuple[str | None, np.ndarray | None] = (None, None)  # see _reference_prediction
        self._last_features: tuple[tuple, Any] | None = None  # (key, SpeechFeatures): see speech_features

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------------------------------------ stages

    def speech_features(self, wave: np.ndarray, text: str | None = None):
        """The audio front-end with the checkpoint's settings: a :class:`ksdiff.audio.features.SpeechFeatures`.

        wave: (N,) float32 mono 16 kHz. Transcribes automatically when the model uses text and ``text`` is None.
        The last call's result is kept, keyed by the wave's content and ``text``: animating the same speech again
        (another seed, guidance or style) reuses it instead of running the encoder and Whisper again.
        """
        import hashlib

        from ksdiff.audio.features import compute_features, resolve_encoder

        key = (hashlib.blake2b(np.ascontiguousarray(wave, np.float32).tobytes(), digest_size=16).digest(), text)
        last = self._last_features
        if last is not None and last[0] == key:
            return last[1]
        kind = self.tokens if self.uses_text else "none"
        sf = compute_features(wave, encoder=resolve_encoder(self.encoder, **self.encoder_options),
                              text=text if self.uses_text else None, tokens=kind,
                              transcribe=self.uses_text and self.transcribe)
        if sf.dim != self.feat_dim:
            raise KsdiffError(f"the speech encoder {self.encoder!r} gives {sf.dim}-d features but the model expects "
                              f"{self.feat_dim}-d")
        self._last_features = (key, sf)
        return sf

    def _tokens_for(self, sf, start_s: float, stop_s: float, whole: bool) -> np.ndarray:
        """Tokens of the words spoken in [start_s, stop_s) (all tokens for the whole clip or without word times)."""
        ids = np.asarray(sf.tokens, dtype=np.int64).reshape(-1)
        if whole or not self.uses_text or not sf.words:
            return ids
        from ksdiff.audio.tokens import window_tokens, words_in_window

        return window_tokens(sf.words, words_in_window(sf.words, start_s, stop_s), self.tokens)

    def _batch(self, sf, start: int, stop: int, total: int, emotion: np.ndarray | None,
               style: dict[str, np.ndarray]) -> dict[str, Tensor]:
        """Model inputs for motion frames [start, stop) (feature frames on the same time span); ``style`` as
        :meth:`_style` returns it."""
        dev = self.device
        rate = float(sf.rate)
        n0, n1 = int(round(start * rate / self.fps)), int(round(stop * rate / self.fps))
        feats = fit_rows(np.asarray(sf.feats, dtype=np.float32)[n0:n1], n1 - n0)
        pros = fit_rows(np.asarray(sf.prosody, dtype=np.float32)[n0:n1], n1 - n0)
        toks = self._tokens_for(sf, start / self.fps, stop / self.fps, whole=(start == 0 and stop >= total))
        L = max(1, len(toks))
        tokens = torch.zeros(1, L, dtype=torch.long)
        tokens[0, :len(toks)] = torch.from_numpy(toks)
        batch: dict[str, Tensor] = {
            "feats": torch.from_numpy(feats)[None].to(dev),
            "prosody": torch.from_numpy(pros)[None].to(dev),
            "feat_mask": torch.ones(1, n1 - n0, dtype=torch.bool, device=dev),
            "tokens": tokens.to(dev),
            "token_mask": (tokens > 0).to(dev),
        }
        if emotion is not None:
            batch["emotion"] = torch.from_numpy(emotion[start:stop])[None].to(dev)
            batch["emotion_mask"] = torch.ones(1, dtype=torch.bool, device=dev)
        if style.get("style") is not None:
            batch["style"] = torch.from_numpy(style["style"])[None].to(dev)
            batch["style_mask"] = torch.ones(1, dtype=torch.bool, device=dev)
        if style.get("ref_motion") is not None:
            ref = torch.from_numpy(style["ref_motion"])[None].to(dev)
            batch["ref_motion"] = ref
            batch["ref_frames"] = torch.ones(ref.shape[:2], dtype=torch.bool, device=dev)
            batch["ref_mask"] = torch.ones(1, dtype=torch.bool, device=dev)
        return batch

    def _emotion(self, emotion: Any, T: int) -> np.ndarray | None:
        """(T, 2) valence/arousal from (v, a), (T, 2) per frame, or an :class:`~ksdiff.face.emotion.EmotionCurve`."""
        from ksdiff.face.emotion import EmotionCurve

        if emotion is None:
            return None
        if not self.model.cfg.denoiser.emotion:
            raise KsdiffError("this model was trained without emotion conditioning; leave out --emotion", self.path)
        if isinstance(emotion, EmotionCurve):
            return np.ascontiguousarray(emotion.at(np.arange(T) / self.fps))
        e = np.asarray(emotion, dtype=np.float32)
        if e.shape == (2,):
            e = np.tile(e[None], (T, 1))
        if e.ndim != 2 or e.shape[1] != 2:
            raise KsdiffError(f"emotion must be (valence, arousal) or (T, 2) per frame, got shape {e.shape}")
        e = fit_rows(e, T)
        if not np.isfinite(e).all():
            raise KsdiffError("emotion values must be finite numbers")
        if np.abs(e).max() > 1.0 + 1e-6:
            raise KsdiffError(f"valence and arousal must lie in [-1, 1], got up to {np.abs(e).max():.3g}")
        return np.ascontiguousarray(e)

    def _style(self, style: Any, reference: Motion | None = None,
               reference_weight: float | None = None) -> dict[str, np.ndarray]:
        """{"style": (S,) one-hot or vector, "ref_motion": (Tr, C)}, each only when given (a :class:`Motion` as
        ``style`` is a reference clip with the checkpoint's default style token); all checked."""
        if reference_weight is not None and not 0.0 <= reference_weight <= 1.0:
            raise KsdiffError(f"reference_weight must lie in [0, 1], got {reference_weight}")
        if isinstance(style, Motion):
            style, reference = None, style if reference is None else reference
        out: dict[str, np.ndarray] = {}
        vec = self._style_vector(self.resolve_style(style, reference))
        if vec is not None:
            out["style"] = vec
        if reference is not None:
            out["ref_motion"] = self.reference_motion(reference)
        return out

    def resolve_style(self, style: Any, reference: Motion | None = None) -> Any:
        """The style a generation uses: ``style``; when None, :attr:`reference_style` with a reference, else
        :attr:`default_style`."""
        if style is None:
            return self.reference_style if reference is not None else self.default_style
        return style

    def typical_face(self, style: Any = None) -> np.ndarray | None:
        """The typical face (C,) of a style token from the training data (NaN where its data observed no value),
        the style used with a reference (:attr:`reference_style`) for None or a reference clip; a (S,) vector mixes
        the tokens' by its positive weights. None when the checkpoint stores none for it (models trained before it
        did)."""
        if style is None or isinstance(style, Motion):
            style = self.reference_style
        if style is None or not self.typical_faces:
            return None
        if isinstance(style, str):
            return self.typical_faces.get(style)
        w = np.clip(self._style_vector(style), 0.0, None)
        faces = [(wi, self.typical_faces.get(name)) for wi, name in zip(w, self.speakers) if wi > 0]
        if not faces or any(f is None for _, f in faces):
            return None
        return (sum(wi * f for wi, f in faces) / sum(wi for wi, _ in faces)).astype(np.float32)

    def _anchor(self, raw: np.ndarray, sty: dict, style: Any, audio: Any, text: str | None, weight: float | None,
                gen: dict) -> np.ndarray:
        """:func:`anchor_face` of the output ``raw`` (T, C) with the reference ``sty["ref_motion"]``, the model's own
        motion for the reference's ``audio`` when given (:meth:`_reference_prediction`), and the style's typical
        face."""
        return anchor_face(raw, self.spec, *self._anchor_inputs(sty, style, audio, text, gen), weight=weight)

    def _anchor_inputs(self, sty: dict, style: Any, audio: Any, text: str | None,
                       gen: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(reference (Tr, C), the model's motion for its audio or None, the style's typical face or None)."""
        ref = sty["ref_motion"]
        ref_pred = None if audio is None else self._reference_prediction(ref, style, audio, text, gen)
        return ref, ref_pred, self.typical_face(style)

    def _reference_prediction(self, ref: np.ndarray, style: Any, audio: Any, text: str | None,
                              gen: dict) -> np.ndarray:
        """The model's own motion (Tr, C) for the reference's audio, cut to the reference's length (the two start
        together), with the same style and reference, not anchored. The last one is kept: files animated one after
        another with one reference animate its audio once."""
        import hashlib

        from ksdiff.audio.decode import load_audio
        from ksdiff.audio.features import MIN_SECONDS

        path = audio if isinstance(audio, (str, os.PathLike)) else None
        wave = load_audio(path, allow_silent=True) if path is not None else np.asarray(audio, np.float32).reshape(-1)
        wave = wave[: int(round(len(ref) / self.fps * SAMPLE_RATE))]
        if len(wave) < MIN_SECONDS * SAMPLE_RATE or not np.isfinite(wave).all():
            raise KsdiffError(f"the reference's audio lasts {len(wave) / SAMPLE_RATE:.3f} s or holds NaN/inf; give "
                              f"at least {MIN_SECONDS:g} s of finite samples", path)
        style = None if isinstance(style, Motion) else style
        key = hashlib.sha1(np.ascontiguousarray(ref).tobytes() + wave.tobytes()
                           + repr((text, style, sorted(gen.items()))).encode()).hexdigest()
        if self._last_reference[0] != key:
            motion = Motion(ref, self.spec.channels, self.fps, self.spec.name)
            pred = self.animate(wave, text=text, style=style, reference=motion, anchor=False, num_frames=len(ref),
                                **gen).coeffs
            self._last_reference = (key, pred)
        return self._last_reference[1]

    def stream_anchor(self, sty: dict, style: Any, audio: Any, text: str | None, weight: float | None,
                      gen: dict) -> np.ndarray | None:
        """The constant (E,) :func:`anchor_shift` of the expression channels for motion generated a piece at a time
        (``ksdiff stream``), whose median over the whole output cannot be known in advance: it stands in the model's
        own motion for the reference's ``audio`` (:meth:`_reference_prediction`, the same conditions as the
        stream's), else the style's typical face (the training median the model's output lies around); None when
        there is neither (the style encoder alone)."""
        ref, ref_pred, typical = self._anchor_inputs(sty, style, audio, text, gen)
        idx = np.asarray(self.spec.expression_idx)
        if ref_pred is not None:
            med = np.median(ref_pred[:, idx], axis=0)
        elif typical is not None:  # channels the style never observed: the reference's own median (no shift)
            med = np.where(np.isfinite(typical[idx]), typical[idx], np.median(ref[:, idx], axis=0))
        else:
            return None
        return anchor_shift(med, self.spec, ref, ref_pred, typical, weight)

    def _style_vector(self, style: Any) -> np.ndarray | None:
        if style is None:
            style = self.default_style  # the checkpoint's own default (data.default_style), if any
        if style is None:
            return None
        S = int(self.model.cfg.denoiser.style_dim)
        if S <= 0:
            raise KsdiffError("this model was trained without style conditioning; leave out --style", self.path)
        if isinstance(style, str):
            if style in self.speakers:
                out = np.zeros(S, dtype=np.float32)
                out[self.speakers.index(style)] = 1.0
                return out
            hint = f" (known: {', '.join(self.speakers[:8])}{' ...' if len(self.speakers) > 8 else ''})" \
                if self.speakers else ""
            raise KsdiffError(f"unknown style / speaker {style!r}{hint}", self.path)
        if isinstance(style, (int, np.integer)):
            if not 0 <= int(style) < S:
                raise KsdiffError(f"style index {style} is outside 0..{S - 1}", self.path)
            out = np.zeros(S, dtype=np.float32)
            out[int(style)] = 1.0
            return out
        out = np.asarray(style, dtype=np.float32).reshape(-1)
        if out.shape != (S,):
            raise KsdiffError(f"style vector must have {S} values, got {out.size}", self.path)
        return out

    def load_reference(self, path: str | os.PathLike,
                       audio: str | os.PathLike | None = None) -> tuple[Motion, np.ndarray | None]:
        """A reference clip from a file a user brings (Live Link CSV, video, motion npz) and its own speech (``audio``,
        else a video's sound, else None), both read and checked against this model before any generation."""
        from ksdiff.data.reference import load_reference, load_reference_audio

        ref = load_reference(path)
        self.reference_motion(ref, source=str(path))
        return ref, load_reference_audio(path, audio)

    def reference_motion(self, ref: Motion, source: str | None = None) -> np.ndarray:
        """A reference clip as the model reads it: (Tr, C) float32 in its face spec's channel order at its fps.

        Raises:
            KsdiffError: the model has no style encoder, the clip is of another face spec or lacks channels,
                is shorter than :data:`MIN_REFERENCE_S`, or holds NaN/inf (``source`` names it in the message).
        """
        if self.model.style_encoder is None:
            raise KsdiffError("this model was trained without reference styles (model.style_encoder); leave out "
                              "--style-from", self.path)
        if ref.spec and ref.spec != self.spec.name:
            raise KsdiffError(f"the reference clip is {ref.spec!r} motion, this model makes {self.spec.name!r}",
                              source)
        missing = [c for c in self.spec.channels if c not in ref.channels]
        if missing:
            raise KsdiffError(f"the reference clip lacks {len(missing)} channels of the {self.spec.name} spec "
                              f"({', '.join(missing[:3])} ...)", source)
        if ref.duration < MIN_REFERENCE_S:
            raise KsdiffError(f"the reference clip lasts {ref.duration:.2f} s; give at least {MIN_REFERENCE_S:g} s "
                              "of the person's face", source)
        m = Motion(ref.select(list(self.spec.channels)), self.spec.channels, ref.fps, self.spec.name)
        if abs(m.fps - self.fps) > 1e-6:
            m = m.resample(self.fps)
        if not np.isfinite(m.coeffs).all():
            raise KsdiffError("the reference clip holds NaN/inf values", source)
        return np.ascontiguousarray(m.coeffs, dtype=np.float32)

    # ------------------------------------------------------------------------------------------------ animate

    @torch.no_grad()
    def animate(self, audio: str | os.PathLike | np.ndarray, text: str | None = None, steps: int | None = None,
                sampler: str | None = None, seed: int = 0, guidance: float | None = None, emotion: Any = None,
                style: Any = None, reference: Motion | None = None, anchor: bool = True,
                reference_audio: str | os.PathLike | np.ndarray | None = None, reference_text: str | None = None,
                reference_weight: float | None = None, num_frames: int | None = None,
                window_s: float | None = None, overlap_s: float | None = None, eta: float = 0.0,
                smooth: float | None = None, progress: Callable[[int, int], None] | None = None,
                max_seconds: float | None = None) -> Motion:
        """Speech -> motion in the checkpoint's face spec at its fps.

        Args:
            audio: a file path (any format PyAV reads) or a wave (N,) float32 mono at 16 kHz, at least
                :data:`ksdiff.audio.features.MIN_SECONDS` long; a file not silent throughout (``load_speech``).
            text: the transcript (None: automatic when the model uses text).
            steps: denoising steps of the sampler; sampler: ``dpmpp`` | ``ddim`` | ``ddpm``; eta: DDIM's η.
                None (steps, sampler, guidance, smooth): the checkpoint's ``generation`` defaults (:attr:`defaults`).
            smooth: σ in frames of the Gaussian over time on the output's mouth channels (:func:`smooth_mouth`).
            seed: seeds the initial noise and every random choice (same seed, same output on the same machine).
            guidance: classifier-free guidance scale (1 = off).
            emotion: (valence, arousal) in [-1, 1] for the whole clip, (T, 2) per frame, or an
                :class:`~ksdiff.face.emotion.EmotionCurve` over seconds; needs an emotion-trained model.
            style: speaker name (from the training set), index, or a (S,) vector; needs a style-trained model.
                A :class:`~ksdiff.face.motion.Motion` is a reference clip of the person (``reference``). None: the
                checkpoint's default style (:attr:`reference_style` with a reference).
            reference: a clip of the person's own face motion (≥ :data:`MIN_REFERENCE_S`, any fps, this model's
                face spec): their resting face, mouth and head habits; needs a model with a style encoder.
            anchor: with a reference, move each expression channel's median over the output to the person's
                typical face (:func:`anchor_face`): the reference's beyond its speech (``reference_audio``: its own
                sound, a file or 16 kHz wave; ``reference_text``: its transcript), ``reference_weight`` (None:
                :data:`REFERENCE_WEIGHT`) of it against the style's training median face; False: the encoder alone.
            num_frames: force the output length (default round(duration × fps)).
            window_s / overlap_s: override the long-audio window plan (seconds; window 0 = one pass).
            progress: called as progress(done, total) after each denoiser evaluation.

        Returns Motion with coeffs (T, C) float32, all finite. Raises KsdiffError on bad input, or when the model
        produced NaN/inf (diverged weights): nothing is returned.
        """
        steps, sampler, guidance, smooth = self._options(steps, sampler, guidance, smooth)
        timings: dict[str, float] = {}
        t_all = time.perf_counter()
        with _timed(timings, "decode"):
            wave = self._wave(audio, max_seconds)
        seconds = len(wave) / SAMPLE_RATE
        T = int(num_frames) if num_frames is not None else int(round(seconds * self.fps))
        windows, sample_fn = self._plan(T, seconds, window_s, overlap_s), self._sampler(sampler, steps)
        emo, sty = self._emotion(emotion, T), self._style(style, reference, reference_weight)
        with _timed(timings, "features"):
            sf = self.speech_features(wave, text)
        with _timed(timings, "condition"):
            conds, keyframes = self._conditions(sf, windows, T, emo, sty, seed)
        with _timed(timings, "diffusion"):
            out = self._diffuse(conds, windows, T, sample_fn, steps, guidance, eta, seed, progress)
        with _timed(timings, "output"):
            raw = self._to_coeffs(out, smooth)
        if anchor and "ref_motion" in sty:  # the reference's own audio is animated here, before last_info is set
            with _timed(timings, "reference"):
                raw = self._anchor(raw, sty, style, reference_audio, reference_text, reference_weight,
                                   dict(steps=steps, sampler=sampler, seed=seed, guidance=guidance, smooth=smooth))
        timings["total"] = time.perf_counter() - t_all
        self.last_info = self._info(seconds, T, (steps, sampler, seed, guidance, smooth), sf, timings, windows, raw,
                                    keyframes)
        return Motion(raw, self.spec.channels, self.fps, self.spec.name)

    def _options(self, steps: int | None, sampler: str | None, guidance: float | None,
                 smooth: float | None) -> tuple[int, str, float, float]:
        """(steps, sampler, guidance, smooth) with each None replaced by the checkpoint's default; smooth checked."""
        d = self.defaults
        return (int(d["steps"] if steps is None else steps), d["sampler"] if sampler is None else sampler,
                float(d["guidance"] if guidance is None else guidance),
                d["smooth"] if smooth is None else checked_smooth(smooth))

    def _info(self, seconds: float, T: int, settings: tuple[int, str, int, float, float], sf,
              timings: dict[str, float], windows: list[Window], raw: np.ndarray, keyframes: Tensor | None) -> dict:
        """What :meth:`animate` leaves in :attr:`last_info`; ``settings``: (steps, sampler, seed, guidance, smooth)."""
        steps, sampler, seed, guidance, smooth = settings
        std = self.model.motion_std.detach().float().cpu().numpy()
        return {
            "audio_seconds": seconds, "num_frames": T, "fps": self.fps, "spec": self.spec.name,
            "steps": steps, "sampler": sampler, "seed": int(seed), "guidance": guidance, "smooth": smooth,
            "transcript": getattr(sf, "text", ""), "timings": timings,
            "rtf": timings["total"] / max(seconds, 1e-9),
            "windows": [(w.start, w.stop, w.known) for w in windows],
            "seams": seam_jumps(raw, windows, scale=std),
            "keyframes": None if keyframes is None else keyframes[0].cpu().numpy().astype(np.uint8),
        }

    def _plan(self, T: int, seconds: float, window_s: float | None, overlap_s: float | None) -> list[Window]:
        """The window plan of T frames (window / overlap in seconds; None: the animator's)."""
        if T < 1:
            raise KsdiffError(f"the audio is too short ({seconds:.3f} s) for one motion frame at {self.fps:g} fps")
        W = int(round((self.window_s if window_s is None else window_s) * self.fps))
        O = int(round((self.overlap_s if overlap_s is None else overlap_s) * self.fps))
        return plan_windows(T, W, O)

    def _sampler(self, name: str, steps: int) -> Callable:
        """The sampler function called ``name``, after checking ``steps`` against the model's schedule."""
        sample_fn = get_sampler(name)
        if not 1 <= steps <= self.model.schedule.num_steps:
            raise KsdiffError(f"steps must be between 1 and {self.model.schedule.num_steps}, got {steps}")
        return sample_fn

    def _wave(self, audio: str | os.PathLike | np.ndarray, max_seconds: float | None) -> np.ndarray:
        """(N,) float32 16 kHz wave of a file (decoded, checked by ``load_speech``) or of a given wave (checked)."""
        from ksdiff.audio.features import check_duration, load_speech

        if isinstance(audio, (str, os.PathLike)):
            return load_speech(audio, max_seconds=max_seconds)
        wave = np.asarray(audio, dtype=np.float32).reshape(-1)
        if wave.size == 0 or not np.isfinite(wave).all():
            raise KsdiffError("the audio wave is empty or holds NaN/inf samples")
        check_duration(len(wave) / SAMPLE_RATE)
        return wave

    def _conditions(self, sf, windows: list[Window], T: int, emo: np.ndarray | None, sty: dict[str, np.ndarray],
                    seed: int) -> tuple[list[dict], Tensor | None]:
        """Pass 1, keyframes for the whole clip before any diffusion -> (condition per window, keyframes (1, T, 2)).

        Each window's condition (its speech features, its words' tokens) with keyframes decoded autoregressively
        from the window start; the frames a window shares with the previous one keep the previous window's
        keyframes (its own decode there is only a warm-up), so both windows of an overlap are anchored by the same
        keyframes. Linear in length, and every decode sees positions of the length it was trained on (one long
        decode would be quadratic, with positions never seen).
        """
        conds = []
        keyframes: Tensor | None = None
        for k, cond in enumerate(self._encode_windows(sf, windows, T, emo, sty, seed)):
            w = windows[k]
            kf = cond.get("keyframes")
            if kf is not None:
                if keyframes is None:
                    keyframes = torch.zeros(1, T, kf.shape[-1], dtype=kf.dtype, device=kf.device)
                kf = kf.clone()
                kf[:, :w.known] = keyframes[:, w.start:w.start + w.known]
                keyframes[:, w.start + w.known:w.stop] = kf[:, w.known:]
                cond["keyframes"] = kf
            conds.append(cond)
        return conds, keyframes

    def _encode_windows(self, sf, windows: list[Window], T: int, emo: np.ndarray | None, sty: dict[str, np.ndarray],
                        seed: int) -> Iterator[dict]:
        """The condition of each window (keyframes decoded from its start), :data:`ENCODE_BATCH` windows of equal
        length encoded as one batch: keyframe decoding is one step per frame, so a batch of windows costs about
        what one window does. Each window's features and tokens are padded to the batch's longest (masked)."""
        k = 0
        while k < len(windows):
            group = [windows[k]]
            while (k + len(group) < len(windows) and len(group) < ENCODE_BATCH
                   and windows[k + len(group)].length == group[0].length):
                group.append(windows[k + len(group)])
            batches = [self._batch(sf, w.start, w.stop, T, emo, sty) for w in group]
            g_kf = torch.Generator().manual_seed(_derive_seed(seed, "keyframes", k))
            if len(group) == 1:
                yield self.model.encode_condition(batches[0], group[0].length, generator=g_kf)
            else:
                cond = self.model.encode_condition(_collate(batches), group[0].length, generator=g_kf)
                for i in range(len(group)):
                    yield _take(cond, i, len(group))
            k += len(group)

    def _diffuse(self, conds: list[dict | None], windows: list[Window], T: int, sample_fn: Callable, steps: int,
                 guidance: float, eta: float, seed: int,
                 progress: Callable[[int, int], None] | None) -> Tensor:
        """Pass 2, diffusion window by window -> normalised motion (1, T, C); the overlap with the previous window
        is inpainted at every step. The initial noise is drawn once for the whole clip. Frees ``conds`` as it goes.
        """
        C = self.spec.dim
        x_T = initial_noise((1, T, C), torch.Generator().manual_seed(_derive_seed(seed, "noise")),
                            device=self.device)
        out = torch.zeros(1, T, C, device=self.device)  # normalised motion
        total_evals = len(windows) * steps
        done = [0]

        def callback(_info: dict) -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total_evals)

        for k, (w, cond) in enumerate(zip(windows, conds)):
            def denoise(x_t: Tensor, t: Tensor, cond=cond) -> Tensor:
                return self.model.denoise(x_t, t, cond, guidance=guidance)

            g = torch.Generator().manual_seed(_derive_seed(seed, "window", k))
            x0 = sample_fn(denoise, x_T[:, w.start:w.stop], self.model.schedule, steps, eta=eta, generator=g,
                           callback=callback, inpaint=self._inpaint(out, w))
            out[:, w.start + w.known:w.stop] = x0[:, w.known:]
            conds[k] = None  # free as we go
        return out

    def _inpaint(self, out: Tensor, w: Window) -> tuple[Tensor, Tensor] | None:
        """(known (1, L, C), mask (1, L, C)) holding the frames ``w`` shares with the previous window, or None."""
        if w.known <= 0:
            return None
        C = self.spec.dim
        mask = torch.zeros(1, w.length, C, dtype=torch.bool, device=self.device)
        mask[:, :w.known] = True
        known = torch.zeros(1, w.length, C, device=self.device)
        known[:, :w.known] = out[:, w.start:w.start + w.known]
        return known, mask

    def _to_coeffs(self, out: Tensor, smooth: float = 0.0) -> np.ndarray:
        """Normalised motion (1, T, C) -> raw coefficients (T, C) float32 made valid for the spec
        (:meth:`FaceSpec.clip`: blendshapes in [0, 1], mouthClose at most jawOpen), the mouth smoothed by
        :func:`smooth_mouth` with σ = ``smooth`` frames (a positive weighted mean keeps both).

        Raises:
            KsdiffError: naming the checkpoint, when any value is NaN/inf (checked before anything is written).
        """
        raw = self.model.denormalize(out)[0].float().cpu().numpy()
        if not np.isfinite(raw).all():
            raise KsdiffError("produced non-finite motion (NaN/inf): the checkpoint's weights are probably diverged",
                              self.path)
        return smooth_mouth(self.spec.clip(raw), self.spec, smooth)


def _collate(batches: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Model inputs of one window each (batch size 1) -> one batch; sequences padded at the end (masks False)."""
    out: dict[str, Tensor] = {}
    for key in batches[0]:
        xs = [b[key] for b in batches]
        if xs[0].dim() >= 2 and key in ("feats", "prosody", "feat_mask", "tokens", "token_mask"):
            n = max(x.shape[1] for x in xs)
            xs = [torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, n - x.shape[1])) for x in xs]
        out[key] = torch.cat(xs, dim=0)
    return out


def _take(cond: Any, i: int, batch: int) -> Any:
    """Item ``i`` (kept as a batch of one) of a batched condition: every tensor whose first dimension is the batch."""
    if isinstance(cond, dict):
        return {k: _take(v, i, batch) for k, v in cond.items()}
    if isinstance(cond, Tensor) and cond.dim() > 0 and cond.shape[0] == batch:
        return cond[i:i + 1]
    return cond


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the seconds spent in the ``with`` block to ``timings[stage]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def _derive_seed(seed: int, tag: str, index: int = 0) -> int:
    """An independent 63-bit seed for one use (``tag``: noise, keyframes, window ``index``) of the user's seed."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, _hash_str(tag), int(index)])
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))


def _hash_str(s: str) -> int:
    """A stable (process-independent) 32-bit FNV-1a hash of a short string."""
    h = 2166136261
    for ch in s.encode("utf-8"):
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h


def anchor_face(coeffs: np.ndarray, spec: FaceSpec, ref: np.ndarray | None = None, ref_pred: np.ndarray | None = None,
                typical: np.ndarray | None = None, weight: float | None = None) -> np.ndarray:
    """``coeffs`` (T, C) with each expression channel shifted so that its median over the clip is the person's
    typical face (their resting face and habitual expression, which speech does not reveal), around which the
    model's speech-driven motion moves; head pose untouched; made valid again (:meth:`FaceSpec.clip`). The shift is
    :func:`anchor_shift` with the output's own median. Returns a new array."""
    idx = np.asarray(spec.expression_idx)
    out = np.array(coeffs, dtype=np.float32, copy=True)
    shift = anchor_shift(np.median(out[:, idx], axis=0), spec, ref, ref_pred, typical, weight)
    if shift is None:
        return out
    out[:, idx] += shift.astype(np.float32)
    return spec.clip(out)


def anchor_shift(med: np.ndarray, spec: FaceSpec, ref: np.ndarray | None = None, ref_pred: np.ndarray | None = None,
                 typical: np.ndarray | None = None, weight: float | None = None) -> np.ndarray | None:
    """The (E,) shift of the spec's expression channels that moves an output whose median is ``med`` (E,) to the
    person's typical face; None when there is nothing to anchor to.

    Estimated from ``ref`` (Tr, C), the person's own motion: its median minus ``med``, or, with ``ref_pred``
    (Tr', C) the model's motion for the reference's own audio, the median of ``ref − ref_pred`` (what the reference
    shows beyond its speech); and from ``typical`` (C,), the style token's training median face (NaN: unknown),
    minus ``med``. Both: ``weight · reference + (1 − weight) · typical`` (a shrinkage of a short, noisy reference
    towards the population; ``weight`` None: :data:`REFERENCE_WEIGHT`); one: that one; neither: None."""
    weight = REFERENCE_WEIGHT if weight is None else weight
    idx = np.asarray(spec.expression_idx)
    to_typical = None if typical is None else np.asarray(typical, np.float64)[idx] - med
    if ref is not None:
        if ref_pred is not None:
            n = min(len(ref), len(ref_pred))
            shift = np.median(ref[:n, idx] - ref_pred[:n, idx], axis=0)
        else:
            shift = np.median(ref[:, idx], axis=0) - med
        if to_typical is not None:
            shift = np.where(np.isfinite(to_typical), weight * shift + (1.0 - weight) * to_typical, shift)
        return shift
    if to_typical is not None:
        return np.nan_to_num(to_typical, nan=0.0)
    return None


__all__ = ["load_model", "generation_defaults", "Animator", "plan_windows", "seam_jumps", "Window",
           "DEFAULT_CHECKPOINT", "anchor_face", "anchor_shift", "smooth_mouth", "checked_smooth", "REFERENCE_WEIGHT",
           "MAX_SMOOTH"]
