"""The run config: ``{data, audio, model, train}``, loaded from YAML (``include:`` overlays, ``key=value``).

``RunConfig`` is what ``ksdiff train`` resolves and records (``RUN/config.yaml`` and inside every checkpoint,
together with the face spec, the feature settings and the motion normalisation). Shipped configs live in
``ksdiff/configs``: ``default`` (CPU-sized), ``paper`` (the paper's setup) and ``ablations/*`` overlays.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from ksdiff.config import from_dict, load_config_dict, to_dict
from ksdiff.model.config import ModelConfig


@dataclass
class DataConfig:
    """What the model trains on and how clips are cut.

    Attributes:
        datasets: dataset folders (``--data``), all of the same face spec; their fps may differ (motion is
            resampled to ``model.fps``, the rate the model works at).
        jaw_path: ``flame`` only: ``expression`` (ksdiff default) or ``head`` (the paper).
        crop_seconds: length of the random training crops (0 = whole clips); shorter clips are padded + masked.
        train_split / val_split: split names in ``dataset.json``.
        style: ``none``, ``speaker``: a one-hot of the training speakers (``meta.json`` "speaker"; unknown ->
            masked), or ``dataset``: a one-hot of the training datasets (a recording-domain style: synthetic,
            animator-made, tracked video ...); ``model.denoiser.style_dim`` is set to their number.
        speakers: resolved at the start of training (the training set's speakers, ``dataset/speaker``).
        sampling: how often a clip is drawn per epoch: ``duration`` (once per crop it holds, so every second of
            speech is seen about equally often: a 100 s take counts 25 times a 4 s one) or ``clip`` (once each).
        recenter: identity-neutral targets: every training clip's motion minus its own per-channel median plus
            its dataset's centre (the frame-weighted mean of the clip medians), bounded channels clipped to
            [0, 1]. A person's resting face (a constant smile, raised brows, a head turned to the camera) cannot
            be heard; without this a dataset style learns to guess it from the voice, and guesses worse than the
            dataset's average face (docs/RESULTS.md, cross-validation). :func:`ksdiff.train.data.recenter_clips`.

        reference_seconds: (shortest, longest) length of the reference clip drawn for each training crop when the
            model has a style encoder (``model.style_encoder.dim`` > 0): a window of another clip of the same person
            (``meta.json`` ``person``, else ``speaker``), else of the same clip outside the crop. With ``recenter``
            the references are recentered too, so they carry a person's motion but not their resting face.

    Keyframe labels use ``model.kel.label_sigma / label_kappa / label_min_gap``; valence/arousal from
    ``meta.json`` are fed when ``model.denoiser.emotion`` is on.
        preload: keep every clip's features in memory (else re-read the feature cache per item).
        num_workers: DataLoader worker processes.
    """

    datasets: list[str] = field(default_factory=list)
    jaw_path: Literal["expression", "head"] = "expression"
    crop_seconds: float = 4.0
    train_split: str = "train"
    val_split: str = "val"
    style: Literal["none", "speaker", "dataset"] = "none"
    default_style: str = ""  # style used at generation when the caller gives none ("" = the learned null style)
    reference_style: str = ""  # ... and when the caller gives a reference clip but no style ("" = default_style)
    speakers: list[str] = field(default_factory=list)
    sampling: Literal["duration", "clip"] = "duration"
    recenter: bool = False
    reference_seconds: list[float] = field(default_factory=lambda: [2.0, 8.0])
    preload: bool = True
    num_workers: int = 0


@dataclass
class AudioConfig:
    """Speech front-end (DESIGN.md section 2); the checkpoint records it so inference uses the same.

    Attributes:
        encoder: ``whisper-tiny`` | ``hf:<dir>`` | ``mel``.
        tokens: transcript tokens: ``phonemes`` | ``chars`` | ``none``.
        transcribe: run Whisper tiny.en on clips without ``transcript.txt``.
        language: espeak-ng voice for phoneme tokens (``en-us``, ``de``, ``fr-fr``, ``cmn``, ...).
    """

    encoder: str = "whisper-tiny"
    tokens: Literal["phonemes", "chars", "none"] = "phonemes"
    transcribe: bool = True
    language: str = "en-us"


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping.

    Attributes:
        steps: total optimizer steps (the LR schedule spans them).
        batch_size: global batch (split evenly over torchrun ranks).
        lr / min_lr_ratio: peak learning rate; cosine decay ends at ``lr × min_lr_ratio``.
        warmup_steps: linear warm-up from 0 to ``lr``.
        weight_decay / betas / eps: AdamW (decay only on matrices, not on biases / norms / embeddings' gains).
        grad_clip: max global gradient norm (0 = off).
        ema_decay: EMA of the weights saved in ``model.safetensors``.
        seed: seeds python / numpy / torch, the data order and the crops.
        log_every / val_every / save_every: in steps (0 = never; a checkpoint is always written at the end, and
            when a signal stops the run).
        save_every_minutes: also save when this many minutes have passed since the last save (0 = never), so that
            a run killed without warning (SIGKILL, a crash, a lost machine) can ``--resume`` having lost at most
            that much, whatever ``save_every`` is.
        val_clips: at most this many val clips for the validation losses and keyframe F1.
        val_motion_clips: clips whose full motion is generated for the motion error.
        val_sampler / val_sampler_steps: sampler for the motion error.
        val_noise_t: unused (it set the noise level of a fallback without sampler module, which is always there);
            kept so that the configs of older runs still load.
        pos_weight_from_data: when ``model.kel.pos_weight`` is 0, set it to negatives / positives of the
            training set's keyframes (both paths together, clipped to the model's pos_weight_min/max) instead of
            the model's per-batch ratio (DESIGN.md: w1 from the training set).
        stop_after: end this invocation after that step with a resumable checkpoint (for time-sliced jobs;
            the LR schedule still spans ``steps``).
        threads: torch CPU threads per process (None = torch's default).
        tensorboard: write TensorBoard logs to ``RUN/tb``.
        init: the model checkpoint a fine-tune started from (``ksdiff train --init``): its weights start the run
            (raw and EMA), with a fresh optimizer at step 0; recorded for provenance (a resume ignores it).
    """

    steps: int = 3000
    batch_size: int = 8
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    log_every: int = 10
    val_every: int = 250
    save_every: int = 500
    save_every_minutes: float = 10.0
    val_clips: int = 16
    val_motion_clips: int = 2
    val_sampler: str = "ddim"
    val_sampler_steps: int = 10
    val_noise_t: int = 500
    pos_weight_from_data: bool = True
    stop_after: int | None = None
    threads: int | None = None
    tensorboard: bool = True
    init: str | None = None


@dataclass
class GenerationConfig:
    """The sampler settings a checkpoint generates with when the caller gives none (``Animator.animate``,
    ``ksdiff generate``, ``ksdiff serve``, ``ksdiff evaluate``); stored in the checkpoint with the rest.

    Attributes:
        sampler: ``dpmpp`` | ``ddim`` | ``ddpm``.
        steps: denoising steps.
        guidance: classifier-free guidance scale (1 = off; otherwise each denoiser pass runs on a doubled batch).
        encoder_compute: the whisper-tiny speech encoder's weights at generation: ``float32`` (as in training) or
            ``int8`` (0.6x the time; the shipped model's val scores are equal either way).
        smooth: σ in frames of a Gaussian over time applied to the mouth channels of the output
            (:func:`ksdiff.generate.smooth_mouth`; 0 = off).
    """

    sampler: Literal["dpmpp", "ddim", "ddpm"] = "dpmpp"
    steps: int = 20
    guidance: float = 1.0
    encoder_compute: Literal["float32", "int8"] = "float32"
    smooth: float = 0.0


@dataclass
class RunConfig:
    """The whole resolved config of a training run."""

    data: DataConfig = field(default_factory=DataConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)


#: Entries a checkpoint's config has beside the four sections (see ksdiff.train.loop.checkpoint_config).
CHECKPOINT_ONLY_KEYS = ("spec", "fps", "features", "normalization", "typical_faces", "data_stats", "ksdiff_version",
                        "format_version", "kind")


def load_run_config(paths: list[str | os.PathLike] | str | os.PathLike | None,
                    overrides: list[str] | None = None, base: dict | None = None) -> RunConfig:
    """Resolve config files (with includes) and ``key=value`` overrides into a :class:`RunConfig`.

    ``base`` (e.g. a run's saved ``config.yaml`` or a checkpoint's config) is applied first; a checkpoint's extra
    entries (:data:`CHECKPOINT_ONLY_KEYS`) are dropped. Unknown keys give a one-line error.
    """
    from ksdiff.config import merge

    d = load_config_dict(paths, overrides)
    if base:
        d = merge(base, d)
    known = {"data", "audio", "model", "train"}
    extra = {k: d.pop(k) for k in list(d) if k not in known}
    # Entries a checkpoint adds to the recorded config (spec, features, normalization) are not settings.
    for k in CHECKPOINT_ONLY_KEYS:
        extra.pop(k, None)
    if extra:
        return from_dict(RunConfig, {**d, **extra})  # raises the one-line unknown-key error
    return from_dict(RunConfig, d)


def run_config_dict(cfg: RunConfig) -> dict:
    return to_dict(cfg)
