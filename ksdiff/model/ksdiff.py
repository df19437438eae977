"""KSDiff: DPSE -> KEL -> two DiffSpeaker-style denoisers (paper Fig. 2; DESIGN.md section 3).

    feats, prosody ──DPSE──> f_h, f_e (B, T, D)
    tokens ──TextEncoder──> text memory (B, 1+L, D)  (a learned null token first; alone when there is no transcript)
    f_h, text ──KEL_h──> k_h ;  f_e, text ──KEL_e──> k_e          (teacher-forced in training, autoregressive else)
    x_t[head] , t, f_h, text, k_h ──Denoiser_h──> x0_hat[head]
    x_t[expr] , t, f_e, text, k_e ──Denoiser_e──> x0_hat[expr]

The model works on normalised motion (``normalize`` / ``denormalize`` with the ``motion_mean`` / ``motion_std``
buffers). Interfaces used by the trainer, samplers and generate.py: ``training_loss``, ``encode_condition``,
``denoise``, ``slice_condition``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from ksdiff.diffusion.losses import diffusion_loss, mr_stft_loss, positive_weight, weighted_bce
from ksdiff.diffusion.schedule import make_schedule, q_sample
from ksdiff.errors import KsdiffError
from ksdiff.face.specs import FaceSpec
from ksdiff.model.config import ModelConfig, TextConfig
from ksdiff.model.denoiser import MotionDenoiser
from ksdiff.model.dpse import DPSE, frame_mask_from
from ksdiff.model.keyframes import KeyframePredictor
from ksdiff.model.layers import Attention, FeedForward, mask_to_bias, sinusoid
from ksdiff.model.style import StyleEncoder

PATHS = ("h", "e")  #: head path, expression path
PARALLEL_PATHS_MIN = 300  #: batch × frames from which inference runs the two paths' denoisers in two threads
_POOL: list = []
_SEQUENTIAL = threading.local()


def _path_pool():
    """Two worker threads that run the two paths side by side at inference (made once, on first use), or None
    inside :func:`sequential_paths`."""
    if getattr(_SEQUENTIAL, "on", False):
        return None
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(2, thread_name_prefix="ksdiff-path"))
    return _POOL[0]


@contextlib.contextmanager
def sequential_paths() -> Iterator[None]:
    """Run both paths in the calling thread inside the block (e.g. for torch's FlopCounterMode, which only sees its
    own thread)."""
    before = getattr(_SEQUENTIAL, "on", False)
    _SEQUENTIAL.on = True
    try:
        yield
    finally:
        _SEQUENTIAL.on = before


class TextLayer(nn.Module):
    """Pre-norm Transformer encoder layer (self-attention with key padding, GELU FFN)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.n1, self.n2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.ffn = FeedForward(dim, 2 * dim, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, bias: Tensor) -> Tensor:
        y = self.n1(x)
        x = x + self.drop(self.attn(y, y, bias))
        return x + self.drop(self.ffn(self.n2(x)))


class TextEncoder(nn.Module):
    """Token embeddings + sinusoidal positions through a small Transformer encoder, with a learned null token
    prepended (so a clip without transcript still has one memory entry).

    forward(tokens (B, L) long, 0 = padding) -> (memory (B, 1+L, D), mask (B, 1+L) bool).
    """

    def __init__(self, dim: int, cfg: TextConfig):
        super().__init__()
        self.dim, self.vocab = dim, cfg.vocab_size
        self.emb = nn.Embedding(cfg.vocab_size, dim, padding_idx=0)
        self.null = nn.Parameter(torch.randn(dim) * 0.02)
        self.layers = nn.ModuleList(TextLayer(dim, cfg.heads, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor | None, batch: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if tokens is None or tokens.shape[-1] == 0:
            tokens = torch.zeros(batch, 0, dtype=torch.long, device=device)
        if tokens.numel() and (int(tokens.max()) >= self.vocab or int(tokens.min()) < 0):
            raise KsdiffError(f"token id {int(tokens.max())} is outside the model's vocabulary of {self.vocab} "
                              "(model.text.vocab_size must cover the tokenizer)")
        mask = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=device), tokens > 0], dim=1)
        L = tokens.shape[1]
        x = self.emb(tokens) + sinusoid(torch.arange(1, L + 1, device=device), self.dim)[None]
        x = torch.cat([self.null.expand(batch, 1, -1), x], dim=1)
        bias = mask_to_bias(mask[:, None, None, :], None, x.dtype)
        for layer in self.layers:
            x = layer(x, bias)
        return self.norm(x), mask



def scale_grad(x: Tensor, scale: float) -> Tensor:
    """``x`` in the forward pass; its gradient multiplied by ``scale`` in the backward pass (0 = stop-gradient,
    1 = ``x`` itself)."""
    if scale == 1.0:
        return x
    if scale == 0.0:
        return x.detach()
    return x.detach() + scale * (x - x.detach())


def perturb_keyframes(kf: Tensor, drop_prob: float, jitter: int, generator: torch.Generator | None) -> Tensor:
    """Training keyframes for the denoisers: each clip's stream shifted by a random whole number of frames in
    [-jitter, jitter] (frames shifted in from outside are 0), then replaced by "unknown" (-1) with ``drop_prob``.

    kf: (B, T, K) {0, 1}. Returns (B, T, K) in {-1, 0, 1}.
    """
    B, T, K = kf.shape
    out = kf
    if jitter > 0:
        shifts = torch.randint(-jitter, jitter + 1, (B, K), device=kf.device, generator=generator)
        idx = torch.arange(T, device=kf.device)[None, :, None] - shifts[:, None, :]  # (B, T, K): source frame
        valid = (idx >= 0) & (idx < T)
        out = torch.gather(kf, 1, idx.clamp(0, T - 1)) * valid.to(kf.dtype)
    if drop_prob > 0:
        unknown = torch.rand(B, 1, K, device=kf.device, generator=generator) < drop_prob
        out = torch.where(unknown, torch.full_like(out, -1.0), out)
    return out


def _repeat_batch(cond: Any, B: int) -> Any:
    """``cond`` with every batch-first tensor (leading size ``B``) stacked twice along the batch; dicts recursed,
    other values kept."""
    if isinstance(cond, dict):
        return {k: _repeat_batch(v, B) for k, v in cond.items()}
    if isinstance(cond, Tensor) and cond.dim() >= 1 and cond.shape[0] == B:
        return torch.cat([cond, cond])
    return cond

class KSDiff(nn.Module):
    """The KSDiff model.

    Args:
        cfg: model hyper-parameters and ablation switches.
        spec: face spec: which channels are on the head path and which on the expression path.
        feat_dim: size of the speech-encoder features (e.g. 384 for whisper-tiny).
    """

    def __init__(self, cfg: ModelConfig, spec: FaceSpec, feat_dim: int):
        super().__init__()
        self.cfg, self.spec, self.feat_dim = cfg, spec, int(feat_dim)
        D = cfg.dim
        C = spec.dim
        self.register_buffer("motion_mean", torch.zeros(C))
        self.register_buffer("motion_std", torch.ones(C))
        self.dpse = DPSE(self.feat_dim, cfg)
        self.text = TextEncoder(D, cfg.text) if cfg.transcript else None
        self.null_text = None if cfg.transcript else nn.Parameter(torch.randn(D) * 0.02)
        self.kel = nn.ModuleDict({p: KeyframePredictor(D, cfg.kel) for p in PATHS}) if cfg.keyframes else None
        if cfg.dual_path:
            self.path_idx = {"h": spec.head_idx, "e": spec.expression_idx}
            kf = 1 if cfg.keyframes else 0
            self.fuse = None
        else:
            self.path_idx = {"all": list(range(C))}
            kf = 2 if cfg.keyframes else 0
            self.fuse = nn.Linear(2 * D, D) if (cfg.split_speech and cfg.dpse) else None
        R = int(cfg.style_encoder.dim)
        self.style_encoder = StyleEncoder(C, cfg.style_encoder) if R > 0 else None
        self.denoisers = nn.ModuleDict({p: MotionDenoiser(len(idx), D, cfg.fps, cfg.denoiser, keyframe_streams=kf,
                                                          ref_dim=R)
                                        for p, idx in self.path_idx.items()})
        s = cfg.schedule
        self.schedule = make_schedule(s.kind, s.num_steps, s.beta_start, s.beta_end)
        if cfg.attn_dropout is not None:
            for m in self.modules():
                if isinstance(m, Attention):
                    m.dropout = float(cfg.attn_dropout)

    # ------------------------------------------------------------------------------------------------------------
    # normalisation
    # ------------------------------------------------------------------------------------------------------------

    def set_normalization(self, mean: Any, std: Any) -> None:
        """Set the per-channel motion statistics (C,) used by normalize / denormalize (std floored at 1e-4)."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(-1)
        if mean.numel() != self.spec.dim or std.numel() != self.spec.dim:
            raise KsdiffError(f"normalisation statistics must have {self.spec.dim} channels, "
                              f"got {mean.numel()} and {std.numel()}")
        self.motion_mean.copy_(mean)
        self.motion_std.copy_(std.clamp_min(1e-4))

    def normalize(self, x: Tensor) -> Tensor:
        """Raw motion (..., C) -> normalised."""
        return (x - self.motion_mean) / self.motion_std

    def denormalize(self, x: Tensor) -> Tensor:
        """Normalised motion (..., C) -> raw."""
        return x * self.motion_std + self.motion_mean

    # ------------------------------------------------------------------------------------------------------------
    # conditioning
    # ------------------------------------------------------------------------------------------------------------

    def _text(self, batch: dict, B: int, device: torch.device) -> tuple[Tensor, Tensor]:
        if self.text is None:
            return self.null_text.expand(B, 1, -1), torch.ones(B, 1, dtype=torch.bool, device=device)
        tokens = batch.get("tokens")
        if tokens is not None:
            tokens = tokens.to(device).long()
            tm = batch.get("token_mask")
            if tm is not None:
                tokens = tokens * tm.to(device).long()
        return self.text(tokens, B, device)

    def _path_features(self, f: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.cfg.dual_path:
            return {"h": f["h"], "e": f["e"]}
        if self.fuse is not None:
            return {"all": self.fuse(torch.cat([f["h"], f["e"]], dim=-1))}
        return {"all": f["e"]}

    def _encode(self, batch: dict, num_frames: Tensor | int) -> dict[str, Any]:
        feats = batch["feats"]
        if feats.dim() != 3 or feats.shape[-1] != self.feat_dim:
            raise KsdiffError(f"speech features must be (B, N', {self.feat_dim}) for this model, "
                              f"got {tuple(feats.shape)} (was it trained with another encoder?)")
        B, dev = feats.shape[0], feats.device
        frame_mask, T = frame_mask_from(num_frames, B, dev)
        f = self.dpse(feats, batch.get("prosody"), batch.get("feat_mask"), T)
        text, text_mask = self._text(batch, B, dev)
        return {"f": f, "speech": self._path_features(f), "text": text, "text_mask": text_mask,
                "frame_mask": frame_mask, "num_frames": T, **self._reference(batch, B, dev)}

    def _reference(self, batch: dict, B: int, dev: torch.device) -> dict[str, Tensor]:
        """{"ref": (B, R) style vectors of the reference clips, "ref_mask": (B,) bool} when the model has a style
        encoder and the batch brings ``ref_motion`` (B, Tr, C) raw + ``ref_frames`` (B, Tr) bool + ``ref_mask``
        (B,) bool (clips without a reference); else {}."""
        ref = batch.get("ref_motion")
        if self.style_encoder is None or ref is None:
            return {}
        if ref.dim() != 3 or ref.shape[0] != B or ref.shape[2] != self.spec.dim:
            raise KsdiffError(f"a reference clip must be (B, T, {self.spec.dim}) motion of this face spec, got "
                              f"{tuple(ref.shape)}")
        frames = batch.get("ref_frames")
        frames = torch.ones(ref.shape[:2], dtype=torch.bool, device=dev) if frames is None else frames.bool()
        present = batch.get("ref_mask")
        present = torch.ones(B, dtype=torch.bool, device=dev) if present is None else present.bool()
        return {"ref": self.style_encoder(self.normalize(ref.to(dev)), frames), "ref_mask": present}

    @torch.no_grad()
    def encode_condition(self, batch: dict, num_frames: Tensor | int, keyframes: Tensor | None = None,
                         generator: torch.Generator | None = None,
                         keyframe_prefix: Tensor | None = None) -> dict[str, Any]:
        """Everything the denoisers need, computed once per clip.

        Args:
            batch: feats (B, N', F), optional prosody (B, N', 2), feat_mask (B, N'), tokens (B, L) + token_mask,
                style (B, S) + style_mask (B,), emotion (B, T, 2) or (B, 2) + emotion_mask (B,), keyframes (B, T, 2).
            num_frames: T (int) or per-clip frame counts (B,).
            keyframes: (B, T, 2) given keyframes; None (and none in ``batch``) = predict them autoregressively
                with the KV cache (threshold or sampling per ``cfg.kel``; ``generator`` for sampling).
            keyframe_prefix: (B, P, 2) keyframes already fixed for frames [0, P) when predicting (streaming): only
                frames [P, T) are decoded step by step (:meth:`KeyframePredictor.decode`'s ``prefix``).

        Returns:
            cond: a dict (opaque to callers; see :meth:`slice_condition`), with "keyframes" (B, T, 2) when the
            model uses keyframes and "frame_mask" (B, T).
        """
        cond = self._encode(batch, num_frames)
        if keyframes is None:
            keyframes = batch.get("keyframes")
        if self.kel is not None:
            if keyframes is None:
                keyframes = self._decode_keyframes(cond, generator, keyframe_prefix)
            cond["keyframes"] = keyframes.to(cond["text"].dtype)
        else:
            cond["keyframes"] = None
        for k in ("style", "style_mask", "emotion", "emotion_mask"):
            cond[k] = batch.get(k)
        del cond["f"]
        return cond

    def _decode_keyframes(self, cond: dict[str, Any], generator: torch.Generator | None,
                          prefix: Tensor | None) -> Tensor:
        """Both paths' keyframes (B, T, 2), decoded autoregressively. On the CPU without sampling the two
        predictors run side by side in two threads of one intra-op thread each (a step is a few tiny matmuls, so
        two cores help by running the paths at once, not by splitting a matmul); the bits are the same."""
        def one(i: int, p: str) -> Tensor:
            pre = None if prefix is None else prefix[..., i]
            return self.kel[p].decode(cond["f"][p], cond["text"], cond["text_mask"], cond["frame_mask"],
                                      threshold=self.cfg.kel.threshold, sample=self.cfg.kel.sample,
                                      generator=generator, prefix=pre)[0]

        dev = cond["text"].device
        pool = _path_pool()
        # below ~4 sequences a step is all Python overhead, and two threads only fight over the GIL
        if (pool is None or self.cfg.kel.sample or dev.type != "cpu" or torch.get_num_threads() < 2
                or cond["text"].shape[0] < 4):
            return torch.stack([one(i, p) for i, p in enumerate(PATHS)], dim=-1)
        from ksdiff.utils.threads import torch_threads

        with torch_threads(1, dev):
            cols = list(pool.map(lambda ip: one(*ip), enumerate(PATHS)))
        return torch.stack(cols, dim=-1)

    @staticmethod
    def slice_condition(cond: dict[str, Any], start: int, stop: int) -> dict[str, Any]:
        """The condition of frames [start, stop) (for windowed generation of long audio); the transcript, style
        and per-clip emotion stay whole."""
        out = dict(cond)
        out["speech"] = {p: f[:, start:stop] for p, f in cond["speech"].items()}
        out["frame_mask"] = cond["frame_mask"][:, start:stop]
        out["num_frames"] = out["frame_mask"].shape[1]
        if cond.get("keyframes") is not None:
            out["keyframes"] = cond["keyframes"][:, start:stop]
        em = cond.get("emotion")
        if em is not None and em.dim() == 3:
            out["emotion"] = em[:, start:stop]
        return out

    # ------------------------------------------------------------------------------------------------------------
    # denoising
    # ------------------------------------------------------------------------------------------------------------

    def _denoise_paths(self, x_t: Tensor, t: Tensor, cond: dict[str, Any], drop: Tensor | None,
                       style_keep: Tensor | None = None, emotion_keep: Tensor | None = None,
                       ref_keep: Tensor | None = None) -> Tensor:
        out = torch.zeros_like(x_t)
        ref_mask = cond.get("ref_mask")
        if ref_mask is not None and ref_keep is not None:
            ref_mask = ref_mask & ref_keep
        kf = cond.get("keyframes")
        style_mask, emotion_mask = cond.get("style_mask"), cond.get("emotion_mask")
        B = x_t.shape[0]
        if cond.get("style") is not None:
            style_mask = torch.ones(B, dtype=torch.bool, device=x_t.device) if style_mask is None else style_mask
            style_mask = style_mask if style_keep is None else style_mask & style_keep
        if cond.get("emotion") is not None:
            emotion_mask = torch.ones(B, dtype=torch.bool, device=x_t.device) if emotion_mask is None else emotion_mask
            emotion_mask = emotion_mask if emotion_keep is None else emotion_mask & emotion_keep
        def one(p: str) -> Tensor:
            if kf is None:
                k = None
            elif p == "all":
                k = kf
            else:
                k = kf[..., PATHS.index(p):PATHS.index(p) + 1]
            return self.denoisers[p](
                x_t[..., self.path_idx[p]], t, cond["speech"][p], cond["frame_mask"], cond["text"],
                cond["text_mask"], keyframes=k, style=cond.get("style"), style_mask=style_mask,
                emotion=cond.get("emotion"), emotion_mask=emotion_mask, drop=drop, ref=cond.get("ref"),
                ref_mask=ref_mask)

        paths = list(self.path_idx)
        # inference on the CPU with windows of some size: the two paths' denoisers side by side in two threads
        # (same numbers; measured 0.58 -> 0.50 s of diffusion for 60 s of speech on 2 cores); small inputs
        # (streaming hops) stay sequential, where threads would only contend for the GIL
        pool = _path_pool() if len(paths) > 1 and not torch.is_grad_enabled() and x_t.device.type == "cpu" \
            and x_t.shape[0] * x_t.shape[1] >= PARALLEL_PATHS_MIN else None
        if pool is not None:
            results = list(pool.map(one, paths))
        else:
            results = [one(p) for p in paths]
        for p, y in zip(paths, results):
            out[..., self.path_idx[p]] = y
        d = float(self.cfg.denoiser.skip)
        if d > 0:  # EDM's skip connection (DenoiserConfig.skip)
            a, s = self.schedule.alpha_sigma(t, like=x_t)
            sigma = s / a
            norm = sigma * sigma + d * d
            out = d * d / norm * (x_t / a) + sigma * d / norm.sqrt() * out
        return out

    def denoise(self, x_t: Tensor, t: Tensor, cond: dict[str, Any], guidance: float = 1.0) -> Tensor:
        """Predict clean motion.

        Args:
            x_t: (B, T, C) noisy normalised motion (T = the condition's frames).
            t: (B,) long diffusion steps (or a scalar).
            cond: from :meth:`encode_condition` (or :meth:`slice_condition`).
            guidance: classifier-free guidance scale (1 = conditional model only; the unconditional model drops
                speech, transcript and keyframes).

        Returns:
            x0_hat: (B, T, C) normalised.
        """
        B = x_t.shape[0]
        t = torch.as_tensor(t, device=x_t.device).long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(B)
        if x_t.shape[1] != cond["frame_mask"].shape[1]:
            raise ValueError(f"x_t has {x_t.shape[1]} frames, the condition {cond['frame_mask'].shape[1]}")
        if guidance == 1.0:
            return self._denoise_paths(x_t, t, cond, None)
        # the conditional and the unconditional prediction in one pass over a doubled batch (one set of matmuls
        # instead of two: on a CPU the small per-call overheads dominate)
        drop = torch.cat([torch.zeros(B, dtype=torch.bool, device=x_t.device),
                          torch.ones(B, dtype=torch.bool, device=x_t.device)])
        both = self._denoise_paths(torch.cat([x_t, x_t]), torch.cat([t, t]), _repeat_batch(cond, B), drop)
        x_c, x_u = both[:B], both[B:]
        return x_u + guidance * (x_c - x_u)

    # ------------------------------------------------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------------------------------------------------

    def training_loss(self, batch: dict[str, Tensor], t: Tensor | None = None, noise: Tensor | None = None,
                      generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """The KSDiff loss of one batch (Eq. 4-7), summed over paths.

        Args:
            batch: see the module docstring of ksdiff.model.ksdiff / encode_condition, plus motion (B, T, C) raw,
                motion_mask (B, T) bool and keyframes (B, T, 2) ground truth.
                Optional channel_mask (B, C) bool: False = the clip does not observe that channel (left out of
                the diffusion losses; a path with no observed channel also skips its keyframe loss).
            t, noise: optional fixed diffusion steps (B,) and noise (B, T, C) (random otherwise).

        Returns:
            dict with "loss" (scalar to minimise) and detached parts: diff_<p>, rec_<p>, vel_<p>, mr_<p> per
            denoiser path p ("h", "e", or "all"), bce_h, bce_e, w1_h, w1_e (with keyframes).
        """
        motion = batch["motion"]
        B, T, C = motion.shape
        if C != self.spec.dim:
            raise KsdiffError(f"motion has {C} channels, the model's face spec {self.spec.name!r} has {self.spec.dim}")
        mask = batch.get("motion_mask")
        mask = torch.ones(B, T, dtype=torch.bool, device=motion.device) if mask is None else mask.bool()
        cond = self._encode(batch, T)
        cond["frame_mask"] = mask
        # channels a clip does not observe (e.g. FACEGOOD animates only the mouth) are unknown, not zero:
        # they are left out of every loss; a path with no observed channel also skips its keyframe loss
        cmask = batch.get("channel_mask")
        cmask = None if cmask is None else cmask.bool().to(motion.device)  # (B, C)
        out: dict[str, Tensor] = {}
        total = self._keyframe_loss(batch, cond, mask, cmask, out)  # before the noise draws: keeps the RNG order
        for k in ("style", "style_mask", "emotion", "emotion_mask"):
            cond[k] = batch.get(k)
        out["loss"] = self._diffusion_loss(motion, cond, mask, cmask, out, total, (t, noise, generator))
        return out

    def _keyframe_loss(self, batch: dict, cond: dict[str, Any], mask: Tensor, cmask: Tensor | None,
                       out: dict[str, Tensor]) -> Tensor:
        """``bce × L_BCE`` summed over paths (Eq. 4), teacher-forced; sets ``cond["keyframes"]`` (B, T, 2) or None
        and ``out`` bce_<p>, w1_<p>. ``mask`` (B, T) valid frames; ``cmask`` (B, C) observed channels or None."""
        motion = batch["motion"]
        total = motion.new_zeros(())
        kf_gt = batch.get("keyframes")
        if self.kel is None:
            cond["keyframes"] = None
            return total
        if kf_gt is None:
            raise KsdiffError("the batch has no ground-truth 'keyframes' but the model uses keyframes")
        kf_gt = kf_gt.to(motion.dtype)
        c = self.cfg.kel
        text = scale_grad(cond["text"], c.encoder_grad)
        for i, p in enumerate(PATHS):
            logits = self.kel[p](scale_grad(cond["f"][p], c.encoder_grad), kf_gt[..., i], text, cond["text_mask"])
            pmask = mask
            if cmask is not None:
                seen = cmask[:, self.spec.head_idx if p == "h" else self.spec.expression_idx].any(dim=1)
                pmask = mask & seen[:, None]
            w1 = positive_weight(kf_gt[..., i], pmask, c.pos_weight, lo=c.pos_weight_min, hi=c.pos_weight_max)
            bce = weighted_bce(logits, kf_gt[..., i], pmask, w1=w1)
            total = total + self.cfg.loss.bce * bce
            out[f"bce_{p}"], out[f"w1_{p}"] = bce.detach(), torch.tensor(w1, device=motion.device)
        cond["keyframes"] = kf_gt
        return total

    def _diffusion_loss(self, motion: Tensor, cond: dict[str, Any], mask: Tensor, cmask: Tensor | None,
                        out: dict[str, Tensor], total: Tensor,
                        draw: tuple[Tensor | None, Tensor | None, torch.Generator | None]) -> Tensor:
        """``total`` plus ``diff × L_diff + mr × L_mr`` of every denoiser path (Eq. 5-6), added in that order, for
        one draw of (t, noise, condition dropout); sets ``out`` diff_<p>, rec_<p>, vel_<p>, mr_<p>.

        ``motion`` (B, T, C) raw; ``draw`` = (t (B,) or None, noise (B, T, C) or None, generator) as given to
        :meth:`training_loss`."""
        (t, noise, generator), B, dev, lc = draw, motion.shape[0], motion.device, self.cfg.loss
        x0 = self.normalize(motion) * mask[..., None]
        if t is None:
            t = torch.randint(0, self.schedule.num_steps, (B,), device=dev, generator=generator)
        if noise is None:
            noise = torch.randn(x0.shape, device=dev, generator=generator, dtype=x0.dtype)
        x_t = q_sample(self.schedule, x0, t, noise)
        dc = self.cfg.denoiser
        drop = style_keep = emotion_keep = ref_keep = None
        if self.training:
            u = torch.rand(3, B, device=dev, generator=generator)
            drop, style_keep, emotion_keep = u[0] < dc.cond_drop_prob, u[1] >= dc.style_drop_prob, \
                u[2] >= dc.emotion_drop_prob
            if cond.get("ref") is not None:  # a draw of its own: models without a reference keep their RNG order
                ref_keep = torch.rand(B, device=dev, generator=generator) >= dc.ref_drop_prob
            if cond.get("keyframes") is not None and (dc.keyframe_drop_prob > 0 or dc.keyframe_jitter > 0):
                cond = dict(cond, keyframes=perturb_keyframes(cond["keyframes"], dc.keyframe_drop_prob,
                                                              dc.keyframe_jitter, generator))
        x0_hat = self._denoise_paths(x_t, t, cond, drop, style_keep, emotion_keep, ref_keep)
        target = x0 if cmask is None else torch.where(cmask[:, None, :], x0, x0_hat.detach())
        for p, idx in self.path_idx.items():
            l_diff, l_rec, l_vel = diffusion_loss(x0_hat[..., idx], target[..., idx], mask, lc.rec, lc.vel)
            l_mr = mr_stft_loss(x0_hat[..., idx], target[..., idx], mask, lc.mr_fft_sizes, lc.mr_hop_div)
            total = total + lc.diff * l_diff + lc.mr * l_mr
            out[f"diff_{p}"], out[f"rec_{p}"], out[f"vel_{p}"], out[f"mr_{p}"] = (
                l_diff.detach(), l_rec.detach(), l_vel.detach(), l_mr.detach())
        return total

    def num_parameters(self) -> dict[str, int]:
        """Trainable parameters per part and in total."""
        parts = {"dpse": self.dpse, "text": self.text, "kel": self.kel, "denoisers": self.denoisers,
                 "style_encoder": self.style_encoder}
        out = {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in parts.items()}
        out["total"] = sum(p.numel() for p in self.parameters())
        return out
