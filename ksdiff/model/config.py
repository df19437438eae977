"""Hyper-parameters and ablation switches of the KSDiff model (DESIGN.md section 3; paper section 2 and 3.3).

Every field has a default; the defaults are a CPU-sized model that trains in minutes (D = 128, 2-layer blocks,
4 heads). :meth:`ModelConfig.paper` returns the paper's sizes (D = 512, keyframe decoders 6 layers x 8 heads,
DiffSpeaker's 6-layer / 4-head / 1024-wide denoiser). Configs are built from YAML with
``ksdiff.config.from_dict(ModelConfig, d)`` and recorded in checkpoints with ``ksdiff.config.to_dict``.

Ablation switches (paper Table 3), all ``True`` for the full model:

=================  ===================================================================================================
``split_speech``   False: one shared speech feature for both paths (the three DPSE branches fused by one linear layer
                   into a single feature instead of f_h / f_e).
``dual_path``      False: one denoiser over all motion channels, conditioned on Linear(concat(f_h, f_e)) and both
                   keyframe streams.
``keyframes``      False: no KEL (no keyframe predictors, no BCE loss, no keyframe embedding in the denoisers).
``prosody``        False: no FiLM with f0/energy (h' = h_s; the prosody input is ignored).
``transcript``     False: no text encoder; keyframe decoders and denoisers attend to a learned null token instead.
``dpse``           False: encoder features only ("wav2vec only"): projection to D and resampling to the motion frames,
                   no MSDC, no pooling, no cross-attention (both paths get the same feature).
=================  ===================================================================================================

The paper's ``jaw_path`` choice lives in the face spec passed to the model, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DPSEConfig:
    """Dual-Path Speech Encoder (paper 2.1).

    Attributes:
        dilations: one MSDC branch per dilation d_l (L = len(dilations)).
        kernel_size: depthwise convolution kernel k of every branch (paper: 5).
        groups: GroupNorm groups over the 2D channels of a branch (must divide 2D).
        dropout: dropout after the MSDC 1x1 fusion (paper: 0.1), also used in the branch attention / FFN.
        head_coarse_window_s: long pooling window w_h^c of the head branch, seconds (paper: 1.0).
        head_fine_window_s: mid pooling window w_h^f of the head branch, seconds (paper: 0.25).
        expr_window_s: short pooling window w_e of the expression branch, seconds (paper: 0.1).
        head_stride: pooling stride of both head windows, in encoder frames (4: tokens at 12.5 Hz).
        expr_stride: pooling stride of the expression window, in encoder frames (2: tokens at 25 Hz).
        heads: attention heads of the per-branch multi-head cross-attention (Eq. 1-2).
        ffn_mult: width of the feed-forward block after each cross-attention, as a multiple of D.
    """

    dilations: list[int] = field(default_factory=lambda: [1, 2, 4])
    kernel_size: int = 5
    groups: int = 8
    dropout: float = 0.1
    head_coarse_window_s: float = 1.0
    head_fine_window_s: float = 0.25
    expr_window_s: float = 0.1
    head_stride: int = 4
    expr_stride: int = 2
    heads: int = 4
    ffn_mult: int = 2


@dataclass
class KELConfig:
    """Keyframe Establishment Learning (paper 2.2): labels, predictors, loss.

    Attributes:
        layers: Transformer decoder layers of each keyframe predictor (paper: 6).
        heads: attention heads of the predictors (paper: 8).
        ffn_mult: feed-forward width as a multiple of D.
        dropout: dropout inside the predictors.
        threshold: at inference a frame is a keyframe when its probability exceeds this (unless ``sample``).
        sample: at inference draw each bit from Bernoulli(p) instead of thresholding.
        pos_weight: w1 of the weighted BCE (Eq. 4, w0 = 1). 0 = negatives/positives of the current batch, per
            path; set it to the training set's ratio for the DESIGN default.
        pos_weight_min: lower clip of w1 (keeps w1 > w0 when the batch ratio is small).
        pos_weight_max: upper clip of w1.
        label_sigma: Gaussian smoothing of the variation sequences for the ground-truth labels (frames).
        label_kappa: label threshold = mean + kappa * std of the smoothed variation.
        label_min_gap: minimum distance between two ground-truth keyframes of one path (frames).
        encoder_grad: scale of the gradient the keyframe loss sends into the shared speech encoder (DPSE) and the
            text encoder: 1 = the paper's joint training, 0 = stop-gradient (the predictors read the encoders'
            features but do not train them), in between = scaled. The forward pass is the same.
    """

    layers: int = 2
    heads: int = 4
    ffn_mult: int = 2
    dropout: float = 0.1
    threshold: float = 0.5
    sample: bool = False
    pos_weight: float = 0.0
    pos_weight_min: float = 1.5
    pos_weight_max: float = 20.0
    label_sigma: float = 2.0
    label_kappa: float = 1.0
    label_min_gap: int = 5
    encoder_grad: float = 1.0


@dataclass
class TextConfig:
    """Transcript encoder: token embeddings (+ sinusoidal positions) through a small Transformer encoder.

    Attributes:
        vocab_size: number of token ids the embedding holds (id 0 = padding); must be at least the tokenizer's
            ``VOCAB_SIZE_CHARS`` / ``VOCAB_SIZE_PHONEMES`` (ksdiff.audio.tokens). Larger ids are an error.
        layers: encoder layers.
        heads: attention heads.
        dropout: dropout inside the encoder.
    """

    vocab_size: int = 512
    layers: int = 2
    heads: int = 4
    dropout: float = 0.1


@dataclass
class DenoiserConfig:
    """DiffSpeaker-style Transformer decoder of each path (paper 2.3).

    Attributes:
        layers: decoder layers (DiffSpeaker: 6).
        heads: attention heads (DiffSpeaker: 4; ALiBi slopes 1/4, 1/16, 1/64, 1/256).
        ffn_dim: feed-forward width (DiffSpeaker: 1024).
        dropout: dropout in the decoder.
        period: period of the position encoding and of the ALiBi distance buckets, in frames; 0 = round(fps).
        style_dim: size of an optional per-clip style vector (0 = no style conditioning).
        emotion: accept optional valence-arousal conditioning (per frame or per clip).
        cond_drop_prob: training probability of dropping speech, transcript and keyframes together (for
            classifier-free guidance; the unconditional model is the same network with them dropped).
        style_drop_prob: training probability of dropping a given style vector (so generation works without it).
        emotion_drop_prob: training probability of dropping given emotion values.
        frame_cond: also add the time and style embeddings to every frame's input (as FaceFormer adds its
            style), not only as the two prefix tokens the attentions read (DiffSpeaker). False in checkpoints
            that predate it; ``configs/default.yaml`` turns it on.
        text_attention: ``joint`` (the paper's form: prefix, aligned speech and transcript tokens in one
            cross-attention softmax) or ``gated`` (the transcript in its own cross-attention sublayer, added
            through a tanh gate that starts at 0).
        keyframe_drop_prob: training probability of replacing a clip's keyframes by "unknown" while its speech
            stays (so "keyframes unknown, speech present" is learnt, and the denoiser cannot lean on keyframes
            alone).
        keyframe_jitter: training shift of each clip's keyframes by a random whole number of frames in
            [-jitter, jitter] (the predictor's keyframes at inference are that far off).
        ref_drop_prob: training probability of dropping a clip's reference style (``model.style_encoder``), so
            the model also works without a reference.
        skip: sigma_data of EDM's skip connection (Karras et al. 2022) under the VP schedule, 0 = off (the paper's
            plain x0 network). With sigma = sqrt(1 - ᾱ_t) / sqrt(ᾱ_t) and d = skip:
            ``x0_hat = d² / (sigma² + d²) · x_t / sqrt(ᾱ_t) + sigma d / sqrt(sigma² + d²) · F(x_t, t, ...)``.
            The output and every loss stay x0's (Eq. 5-6); only what the network must learn changes: at low noise
            (sigma << d) x0_hat ≈ x_t for free, where the plain x0 network has to learn the identity through its
            layers and, undertrained, shrinks the motion it is given at every sampler step (docs/RESULTS.md,
            "Why the mouth was flat"). d = 1 is the v-parameterisation (x0_hat = sqrt(ᾱ) x_t + sqrt(1 - ᾱ) F);
            smaller d hands x_t over only at lower noise.
    """

    layers: int = 2
    heads: int = 4
    ffn_dim: int = 256
    dropout: float = 0.1
    period: int = 0
    style_dim: int = 0
    emotion: bool = False
    cond_drop_prob: float = 0.1
    style_drop_prob: float = 0.3
    emotion_drop_prob: float = 0.3
    frame_cond: bool = False
    text_attention: str = "joint"
    keyframe_drop_prob: float = 0.0
    keyframe_jitter: int = 0
    ref_drop_prob: float = 0.3
    skip: float = 0.0


@dataclass
class LossConfig:
    """Loss weights (Eq. 5-7) and the multi-resolution STFT over time.

    Attributes:
        rec: lambda_1 of L_diff (MSE of x0).
        vel: lambda_2 of L_diff (MSE of the frame-to-frame velocity).
        diff: lambda_diff of L_p.
        mr: lambda_mr of L_p.
        bce: lambda_BCE of L_p.
        mr_fft_sizes: FFT sizes of the MR-STFT, in motion frames (hop = size / mr_hop_div, Hann window).
        mr_hop_div: hop = fft_size // mr_hop_div.
    """

    rec: float = 1.0
    vel: float = 1.0
    diff: float = 1.0
    mr: float = 0.3
    bce: float = 0.5
    mr_fft_sizes: list[int] = field(default_factory=lambda: [8, 16, 32])
    mr_hop_div: int = 4


@dataclass
class ScheduleConfig:
    """Training noise schedule (ksdiff.diffusion.schedule.make_schedule); DiffSpeaker: 1000 scaled_linear steps."""

    kind: str = "scaled_linear"
    num_steps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012


@dataclass
class StyleEncoderConfig:
    """The reference-clip style encoder (:mod:`ksdiff.model.style`).

    Attributes:
        dim: size of the style vector; 0 = no reference style (the model takes no reference clip).
        hidden: channels of its two temporal convolutions.
        kernel: their kernel size, in frames.
    """

    dim: int = 0
    hidden: int = 64
    kernel: int = 5


@dataclass
class ModelConfig:
    """The whole KSDiff model.

    Attributes:
        dim: hidden size D of every block.
        fps: motion frame rate the model is trained at (periodic position encoding, resampling).
        feat_rate: frame rate of the speech features (50 Hz for every ksdiff encoder).
        split_speech, dual_path, keyframes, prosody, transcript, dpse: ablation switches (module docstring).
        dpse_cfg, kel, text, denoiser, loss, schedule, style_encoder: the parts.
        attn_dropout: dropout on the attention weights of every attention layer; None = each part's ``dropout``
            (the paper's form). 0 lets ``scaled_dot_product_attention`` take its fused kernel instead of the math
            path with a Bernoulli mask per weight (docs/TRAINING.md, "Step time").
    """

    dim: int = 128
    fps: float = 25.0
    feat_rate: float = 50.0
    split_speech: bool = True
    dual_path: bool = True
    keyframes: bool = True
    prosody: bool = True
    transcript: bool = True
    dpse: bool = True
    dpse_cfg: DPSEConfig = field(default_factory=DPSEConfig)
    kel: KELConfig = field(default_factory=KELConfig)
    text: TextConfig = field(default_factory=TextConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    style_encoder: StyleEncoderConfig = field(default_factory=StyleEncoderConfig)
    attn_dropout: float | None = None

    @classmethod
    def paper(cls, **overrides) -> "ModelConfig":
        """The paper's sizes (section 3.3): D = 512, keyframe decoders 6 layers x 8 heads, DiffSpeaker denoisers."""
        cfg = cls(
            dim=512,
            dpse_cfg=DPSEConfig(dilations=[1, 2, 4, 8], groups=16, heads=8, ffn_mult=4),
            kel=KELConfig(layers=6, heads=8, ffn_mult=4),
            text=TextConfig(layers=3, heads=8),
            denoiser=DenoiserConfig(layers=6, heads=4, ffn_dim=1024),
        )
        for k, v in overrides.items():
            setattr(cfg, k, v)
        return cfg
