"""Noise schedules of the forward diffusion process and conversions between x0, eps and x_t.

The forward process (Ho et al. 2020) is ``x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) eps`` with
``ᾱ_t = Π_{s<=t} (1 - β_s)`` and ``t`` in ``0 .. num_steps - 1`` (0 is the least noisy step). Everything is kept
in float64 on the CPU and cast to the data's dtype and device at the point of use, so the schedule itself never
decides the device.

Kinds:
  ``scaled_linear`` (default; Stable Diffusion / DiffSpeaker): ``β = linspace(sqrt(β0), sqrt(β1), N) ** 2``,
      β0 = 0.00085, β1 = 0.012, N = 1000.
  ``linear`` (DDPM): ``β = linspace(β0, β1, N)`` (use β0 = 1e-4, β1 = 0.02 for the DDPM paper's values).
  ``cosine`` (Nichol & Dhariwal 2021): ``ᾱ(t) = cos²(((t/N) + s) / (1 + s) · π/2)``, s = 0.008,
      β clipped at 0.999.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ksdiff.errors import KsdiffError

SCHEDULE_KINDS = ("scaled_linear", "linear", "cosine")
SPACINGS = ("logsnr", "linspace", "trailing", "leading")


@dataclass
class NoiseSchedule:
    """A discrete noise schedule.

    Attributes:
        betas: (N,) float64 per-step noise variances β_t.
        alphas_cumprod: (N,) float64 ᾱ_t = Π (1 - β_s), decreasing from ≈1 to ≈0.
        kind: how it was made (``scaled_linear`` / ``linear`` / ``cosine``).
    """

    betas: Tensor
    alphas_cumprod: Tensor
    kind: str = "scaled_linear"

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    def alpha_sigma(self, t: Tensor | int, like: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(sqrt(ᾱ_t), sqrt(1 - ᾱ_t)) for timesteps ``t``.

        With ``like`` (B, ...), ``t`` is (B,) (or a scalar) and the result is shaped (B, 1, ..., 1) in ``like``'s
        dtype and device so it broadcasts against it; without it, float64 tensors shaped like ``t``.
        A timestep of -1 means "clean data": ᾱ = 1.
        """
        ac = _gather(self.alphas_cumprod, t)
        a, s = ac.sqrt(), (1.0 - ac).clamp_min(0.0).sqrt()
        if like is None:
            return a, s
        return _bcast(a, like), _bcast(s, like)

    def log_snr(self, t: Tensor | int) -> Tensor:
        """λ_t = log(ᾱ_t / (1 - ᾱ_t)) as float64 (the log signal-to-noise ratio; +inf at t = -1)."""
        ac = _gather(self.alphas_cumprod, t)
        return torch.log(ac) - torch.log1p(-ac)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "num_steps": self.num_steps}


def make_schedule(kind: str = "scaled_linear", num_steps: int = 1000, beta_start: float = 0.00085,
                  beta_end: float = 0.012) -> NoiseSchedule:
    """Build a :class:`NoiseSchedule` of ``num_steps`` steps (see the module docstring for the kinds).

    ``beta_start`` / ``beta_end`` apply to ``scaled_linear`` and ``linear``; ``cosine`` ignores them.
    """
    if num_steps < 1:
        raise KsdiffError(f"a noise schedule needs at least 1 step, got {num_steps}")
    if kind == "scaled_linear":
        if not 0 < beta_start <= beta_end < 1:
            raise KsdiffError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        betas = torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), num_steps, dtype=torch.float64) ** 2
    elif kind == "linear":
        if not 0 < beta_start <= beta_end < 1:
            raise KsdiffError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
        betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    elif kind == "cosine":
        s = 0.008
        steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        ac = f / f[0]
        betas = (1.0 - ac[1:] / ac[:-1]).clamp(0.0, 0.999)
    else:
        raise KsdiffError(f"unknown noise schedule {kind!r} (known: {', '.join(SCHEDULE_KINDS)})")
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return NoiseSchedule(betas=betas, alphas_cumprod=alphas_cumprod, kind=kind)


def q_sample(schedule: NoiseSchedule, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """Diffuse clean data to step ``t``: ``x_t = sqrt(ᾱ_t) x0 + sqrt(1 - ᾱ_t) noise``.

    Args:
        x0: (B, ...) clean data.
        t: (B,) long timesteps in [0, N) (-1 returns ``x0`` unchanged).
        noise: like ``x0``, standard normal.

    Returns:
        x_t: like ``x0``.
    """
    a, s = schedule.alpha_sigma(t, like=x0)
    return a * x0 + s * noise


def eps_from_x0(schedule: NoiseSchedule, x_t: Tensor, t: Tensor, x0: Tensor) -> Tensor:
    """The noise implied by ``x_t`` and a clean estimate ``x0``: ``(x_t - sqrt(ᾱ_t) x0) / sqrt(1 - ᾱ_t)``.

    x_t, x0: (B, ...); t: (B,) long in [0, N). Returns like ``x_t``.
    """
    a, s = schedule.alpha_sigma(t, like=x_t)
    return (x_t - a * x0) / s


def x0_from_eps(schedule: NoiseSchedule, x_t: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """The clean data implied by ``x_t`` and a noise estimate: ``(x_t - sqrt(1 - ᾱ_t) eps) / sqrt(ᾱ_t)``."""
    a, s = schedule.alpha_sigma(t, like=x_t)
    return (x_t - s * eps) / a


def v_from_x0_eps(schedule: NoiseSchedule, t: Tensor, x0: Tensor, eps: Tensor) -> Tensor:
    """Velocity target (Salimans & Ho 2022): ``v = sqrt(ᾱ_t) eps - sqrt(1 - ᾱ_t) x0``."""
    a, s = schedule.alpha_sigma(t, like=x0)
    return a * eps - s * x0


def x0_from_v(schedule: NoiseSchedule, x_t: Tensor, t: Tensor, v: Tensor) -> Tensor:
    """Clean data from a velocity prediction: ``x0 = sqrt(ᾱ_t) x_t - sqrt(1 - ᾱ_t) v``."""
    a, s = schedule.alpha_sigma(t, like=x_t)
    return a * x_t - s * v


def timesteps(schedule: NoiseSchedule, steps: int, spacing: str = "logsnr") -> list[int]:
    """A strictly decreasing sub-sequence of ``steps`` timesteps of the schedule for a sampler (respacing).

    Spacings:
      ``logsnr`` (default): uniform in log-SNR λ from the noisiest step N-1 to step 0, as DPM-Solver recommends;
          few-step solvers lose most of their accuracy to the big λ jumps that time-uniform spacing makes near t = 0
          (measured in docs/GENERATION.md). ``steps`` = N gives every step.
      ``linspace``: evenly spaced in t from N-1 to 0 (rounded).
      ``trailing``: ``N-1, N-1-N/steps, ...`` (Lin et al. 2024; ends above 0).
      ``leading``: DDIM's ``range(0, N, N // steps)`` reversed (never visits N-1).
    Returns e.g. ``[999, 875, 724, 538, 330, 153, 52, 14, 3, 0]`` for N = 1000, steps = 10, logsnr.
    """
    n = schedule.num_steps
    if not 1 <= steps <= n:
        raise KsdiffError(f"sampler steps must be between 1 and {n}, got {steps}")
    if spacing == "logsnr":
        lam = schedule.log_snr(torch.arange(n)).tolist()  # increasing as t decreases
        targets = torch.linspace(lam[-1], lam[0], steps, dtype=torch.float64).tolist() if steps > 1 else [lam[-1]]
        lam_t = torch.tensor(lam, dtype=torch.float64)
        ts = [int((lam_t - v).abs().argmin()) for v in targets]
    elif spacing == "linspace":
        ts = [int(round(v)) for v in torch.linspace(n - 1, 0, steps, dtype=torch.float64).tolist()]
    elif spacing == "trailing":
        ts = [int(round(n - 1 - i * n / steps)) for i in range(steps)]
    elif spacing == "leading":
        stride = n // steps
        ts = list(range(0, stride * steps, stride))[::-1]
    else:
        raise KsdiffError(f"unknown timestep spacing {spacing!r} (known: {', '.join(SPACINGS)})")
    # exactly `steps` strictly decreasing values in [0, N): leave room for the remaining steps, then push down
    ts = [min(max(t, steps - 1 - i), n - 1) for i, t in enumerate(ts)]
    for i in range(1, steps):
        ts[i] = min(ts[i], ts[i - 1] - 1)
    return ts


def _gather(table: Tensor, t: Tensor | int) -> Tensor:
    """table[t] with t = -1 meaning ᾱ = 1 (clean), as float64 on the CPU."""
    t = torch.as_tensor(t, dtype=torch.long).cpu()
    vals = table[t.clamp_min(0)]
    return torch.where(t < 0, torch.ones_like(vals), vals)


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    v = v.to(device=like.device, dtype=like.dtype)
    if v.ndim == 0:
        return v
    return v.reshape(v.shape[0], *([1] * (like.ndim - 1)))
