"""Samplers: plain functions with one signature, over a denoiser that predicts clean data.

Every sampler is called as::

    x0 = sample_xxx(denoise, x_T, schedule, steps, *, eta=0.0, generator=None, callback=None, inpaint=None,
                    spacing="logsnr")

``denoise(x_t (B, T, C), t (B,) long) -> x0_hat (B, T, C)`` is a closure over the model, its condition and the
classifier-free guidance (:func:`guided`). ``x_T`` is standard normal noise (:func:`initial_noise`). ``steps`` picks
a decreasing sub-sequence of the schedule's timesteps (:func:`ksdiff.diffusion.schedule.timesteps`; default
``logsnr`` spacing: uniform in log-SNR from step N-1 to step 0); after the last one the sampler returns the
denoiser's clean estimate, so the result is always clean data.

``inpaint = (known (B, T, C), mask (B, T, C) bool)``: before every denoiser call the masked region of x_t is replaced
by the known data diffused to the same step, ``q_sample(known, t, ε_k)`` (Lugmayr et al. 2022, RePaint without
resampling), and the returned x0 equals ``known`` on the mask exactly. ε_k is drawn once per call so that the known
region follows one deterministic ODE path. This is how each window of long audio is conditioned on the end of the
previous window.

``callback({"i", "t", "x", "x0"})`` is called after each step with the step index, its timestep, the new sample and
the denoiser's x0 estimate (like k-diffusion). Randomness comes only from ``generator`` (a ``torch.Generator``), so
the same seed gives bit-identical results.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch
from torch import Tensor

from ksdiff.diffusion.schedule import NoiseSchedule, timesteps
from ksdiff.errors import KsdiffError

Denoiser = Callable[[Tensor, Tensor], Tensor]
Callback = Callable[[dict], None]
Inpaint = tuple[Tensor, Tensor]

__all__ = ["sample_ddpm", "sample_ddim", "sample_dpmpp_2m", "SAMPLERS", "get_sampler", "initial_noise", "guided",
           "Denoiser"]


def initial_noise(shape: tuple[int, ...], generator: Optional[torch.Generator] = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal x_T of ``shape`` drawn from ``generator`` (on the generator's device, then moved)."""
    return _randn(shape, generator, torch.device(device), dtype)


def guided(denoise_cond: Denoiser, denoise_uncond: Denoiser, scale: float) -> Denoiser:
    """Classifier-free guidance (Ho & Salimans 2022) in x0 space: x0 = x0_u + s · (x0_c - x0_u); s = 1 is off."""
    if scale == 1.0:
        return denoise_cond

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        x_u = denoise_uncond(x_t, t)
        return x_u + scale * (denoise_cond(x_t, t) - x_u)

    return denoise


@torch.no_grad()
def sample_ddpm(denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, eta: float = 0.0,
                generator: Optional[torch.Generator] = None, callback: Optional[Callback] = None,
                inpaint: Optional[Inpaint] = None, spacing: str = "logsnr") -> Tensor:
    """Ancestral DDPM sampling (Ho et al. 2020), respaced to ``steps`` (Nichol & Dhariwal 2021); ``eta`` is unused.

    Each step draws x_{t'} from the posterior q(x_{t'} | x_t, x0_hat) of the respaced process (variance β̃).
    x_T: (B, T, C). Returns x0: (B, T, C).
    """
    ts = timesteps(schedule, steps, spacing)
    x, ctx = _start(x_T, schedule, ts[0], generator, inpaint)
    for i, (t, tp) in enumerate(zip(ts, ts[1:] + [-1])):
        x0 = _predict(denoise, x, t, ctx)
        ac, acp = _ac(schedule, t), _ac(schedule, tp)
        beta = 1.0 - ac / acp
        c0 = math.sqrt(acp) * beta / (1.0 - ac)
        ct = math.sqrt(1.0 - beta) * (1.0 - acp) / (1.0 - ac)
        var = beta * (1.0 - acp) / (1.0 - ac)
        x = c0 * x0 + ct * x
        if tp >= 0 and var > 0:
            x = x + math.sqrt(var) * _randn(x.shape, generator, x.device, x.dtype)
        x = _paste(x, tp, ctx, schedule)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
    return x


@torch.no_grad()
def sample_ddim(denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, eta: float = 0.0,
                generator: Optional[torch.Generator] = None, callback: Optional[Callback] = None,
                inpaint: Optional[Inpaint] = None, spacing: str = "logsnr") -> Tensor:
    """DDIM (Song et al. 2021): deterministic for ``eta`` = 0, ancestral DDPM-like for ``eta`` = 1.

    x_T: (B, T, C). Returns x0: (B, T, C).
    """
    if eta < 0:
        raise KsdiffError(f"DDIM eta must be >= 0, got {eta}")
    ts = timesteps(schedule, steps, spacing)
    x, ctx = _start(x_T, schedule, ts[0], generator, inpaint)
    for i, (t, tp) in enumerate(zip(ts, ts[1:] + [-1])):
        x0 = _predict(denoise, x, t, ctx)
        ac, acp = _ac(schedule, t), _ac(schedule, tp)
        eps = (x - math.sqrt(ac) * x0) / math.sqrt(1.0 - ac)
        sigma = eta * math.sqrt(max((1.0 - acp) / (1.0 - ac) * (1.0 - ac / acp), 0.0))
        x = math.sqrt(acp) * x0 + math.sqrt(max(1.0 - acp - sigma ** 2, 0.0)) * eps
        if tp >= 0 and sigma > 0:
            x = x + sigma * _randn(x.shape, generator, x.device, x.dtype)
        x = _paste(x, tp, ctx, schedule)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoise: Denoiser, x_T: Tensor, schedule: NoiseSchedule, steps: int, *, eta: float = 0.0,
                    generator: Optional[torch.Generator] = None, callback: Optional[Callback] = None,
                    inpaint: Optional[Inpaint] = None, spacing: str = "logsnr") -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022): multistep second-order data-prediction ODE solver; ``eta`` is unused.

    With λ = log(α/σ) and h = λ' - λ: x' = (σ'/σ) x + α' (1 - e^{-h}) D, where D = x0_hat on the first and the
    last step and D = (1 + 1/(2r)) x0_hat - 1/(2r) x0_hat_prev (r = h_prev / h) otherwise. Good in 5-20 steps.
    x_T: (B, T, C). Returns x0: (B, T, C).
    """
    ts = timesteps(schedule, steps, spacing)
    x, ctx = _start(x_T, schedule, ts[0], generator, inpaint)
    x0_prev: Optional[Tensor] = None
    h_prev = 0.0
    for i, (t, tp) in enumerate(zip(ts, ts[1:] + [-1])):
        x0 = _predict(denoise, x, t, ctx)
        if tp < 0:  # last step: to clean data (σ' = 0), first order
            x = x0
        else:
            ac, acp = _ac(schedule, t), _ac(schedule, tp)
            a_p, s_t, s_p = math.sqrt(acp), math.sqrt(1.0 - ac), math.sqrt(1.0 - acp)
            lam, lam_p = _lam(ac), _lam(acp)
            h = lam_p - lam
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * x0_prev
            x = (s_p / s_t) * x - a_p * math.expm1(-h) * d
            x0_prev, h_prev = x0, h
        x = _paste(x, tp, ctx, schedule)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
    return x


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "dpmpp": sample_dpmpp_2m,
}


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler called ``name`` (``ddpm``, ``ddim`` or ``dpmpp``)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise KsdiffError(f"unknown sampler {name!r} (known: {', '.join(SAMPLERS)})") from None


# ----------------------------------------------------------------------------------------------------------- helpers


class _Ctx:
    """Inpainting state: known data, mask and the fixed noise of the known region."""

    def __init__(self, known: Tensor, mask: Tensor, noise: Tensor):
        self.known, self.mask, self.noise = known, mask, noise


def _start(x_T: Tensor, schedule: NoiseSchedule, t0: int, generator: Optional[torch.Generator],
           inpaint: Optional[Inpaint]) -> tuple[Tensor, Optional[_Ctx]]:
    if inpaint is None:
        return x_T, None
    known, mask = inpaint
    if known.shape != x_T.shape or mask.shape != x_T.shape:
        raise ValueError(f"inpaint known {tuple(known.shape)} and mask {tuple(mask.shape)} must match x_T "
                         f"{tuple(x_T.shape)}")
    known = known.to(device=x_T.device, dtype=x_T.dtype)
    mask = mask.to(device=x_T.device, dtype=torch.bool)
    ctx = _Ctx(known, mask, _randn(x_T.shape, generator, x_T.device, x_T.dtype))
    return _paste(x_T, t0, ctx, schedule), ctx


def _paste(x: Tensor, t: int, ctx: Optional[_Ctx], schedule: NoiseSchedule) -> Tensor:
    """Replace the known region of x (at step t; t = -1 is clean) by the known data diffused to t."""
    if ctx is None:
        return x
    ac = _ac(schedule, t)
    xk = math.sqrt(ac) * ctx.known + math.sqrt(1.0 - ac) * ctx.noise if t >= 0 else ctx.known
    return torch.where(ctx.mask, xk, x)


def _predict(denoise: Denoiser, x: Tensor, t: int, ctx: Optional[_Ctx]) -> Tensor:
    tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
    x0 = denoise(x, tt)
    if x0.shape != x.shape:
        raise ValueError(f"denoiser returned shape {tuple(x0.shape)} for input {tuple(x.shape)}")
    if ctx is not None:  # the known region's clean value is known: keeps multistep solvers consistent
        x0 = torch.where(ctx.mask, ctx.known, x0)
    return x0


def _ac(schedule: NoiseSchedule, t: int) -> float:
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def _lam(ac: float) -> float:
    return 0.5 * (math.log(ac) - math.log1p(-ac))


def _randn(shape: tuple[int, ...] | torch.Size, generator: Optional[torch.Generator], device: torch.device,
           dtype: torch.dtype) -> Tensor:
    gdev = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(tuple(shape), generator=generator, device=gdev, dtype=dtype).to(device)
