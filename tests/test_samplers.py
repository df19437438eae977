"""Noise schedules and samplers: exactness with an oracle, inpainting, determinism, and accuracy against the
closed-form probability-flow ODE solution for Gaussian data."""

from __future__ import annotations

import math

import pytest
import torch

from ksdiff.diffusion.samplers import SAMPLERS, get_sampler, guided, initial_noise, sample_ddim, sample_ddpm
from ksdiff.diffusion.schedule import (SCHEDULE_KINDS, SPACINGS, eps_from_x0, make_schedule, q_sample, timesteps,
                                       v_from_x0_eps, x0_from_eps, x0_from_v)
from ksdiff.errors import KsdiffError

SCHED = make_schedule()


def gaussian_denoiser(mu: float, sd: float):
    """The exact E[x0 | x_t] for data x0 ~ N(mu, sd²) per element."""

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = SCHED.alpha_sigma(t, like=x)
        return mu + a * sd ** 2 / (a ** 2 * sd ** 2 + s ** 2) * (x - a * mu)

    return denoise


def exact_ode_solution(x_T: torch.Tensor, mu: float, sd: float) -> torch.Tensor:
    """Probability-flow ODE from step N-1 to step 0 in closed form (x_t = α μ + sqrt(α² sd² + σ²) z, z fixed),
    then the final clean estimate E[x0 | x_0] that every sampler returns."""
    aT, sT = SCHED.alpha_sigma(SCHED.num_steps - 1)
    a0, s0 = SCHED.alpha_sigma(0)
    z = (x_T - aT * mu) / math.sqrt(aT ** 2 * sd ** 2 + sT ** 2)
    return mu + a0 * sd ** 2 * z / math.sqrt(a0 ** 2 * sd ** 2 + s0 ** 2)


def test_scaled_linear_matches_stable_diffusion():
    s = make_schedule("scaled_linear", 1000, 0.00085, 0.012)
    assert s.num_steps == 1000 and s.betas.dtype == torch.float64
    assert s.betas[0].item() == pytest.approx(0.00085, rel=1e-9)
    assert s.betas[-1].item() == pytest.approx(0.012, rel=1e-9)
    # betas are a square of a linspace: their square roots are equally spaced
    d = torch.diff(s.betas.sqrt())
    assert torch.allclose(d, d[0].expand_as(d), rtol=1e-6)
    # ᾱ_999 of Stable Diffusion's schedule
    assert s.alphas_cumprod[-1].item() == pytest.approx(0.068265 ** 2, rel=1e-4)  # SD: sqrt(ᾱ_999) = 0.068265


@pytest.mark.parametrize("kind", SCHEDULE_KINDS)
def test_schedule_kinds_are_valid(kind):
    s = make_schedule(kind, 1000)
    ac = s.alphas_cumprod
    assert torch.all(s.betas > 0) and torch.all(s.betas < 1)
    assert torch.all(torch.diff(ac) < 0)
    assert ac[0] > 0.99 and ac[-1] < 0.01
    assert torch.allclose(ac, torch.cumprod(1 - s.betas, 0))


def test_bad_schedule_is_a_user_error():
    with pytest.raises(KsdiffError):
        make_schedule("quadratic")
    with pytest.raises(KsdiffError):
        timesteps(SCHED, 0)


def test_conversions_round_trip():
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(4, 7, 5, generator=g)
    eps = torch.randn(4, 7, 5, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    xt = q_sample(SCHED, x0, t, eps)
    assert torch.allclose(eps_from_x0(SCHED, xt, t, x0), eps, atol=1e-3)
    assert torch.allclose(x0_from_eps(SCHED, xt, t, eps), x0, atol=1e-4)
    v = v_from_x0_eps(SCHED, t, x0, eps)
    assert torch.allclose(x0_from_v(SCHED, xt, t, v), x0, atol=1e-5)
    # t = -1 means clean
    assert torch.equal(q_sample(SCHED, x0, torch.full((4,), -1), eps), x0)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_timesteps_are_exactly_steps_strictly_decreasing(spacing):
    for steps in (1, 2, 7, 20, 50, 999, 1000):
        ts = timesteps(SCHED, steps, spacing)
        assert len(ts) == steps
        assert all(a > b for a, b in zip(ts, ts[1:]))
        assert 0 <= ts[-1] and ts[0] <= 999
    assert timesteps(SCHED, 1000, "logsnr") == list(range(999, -1, -1))
    if spacing != "leading":
        assert timesteps(SCHED, 10, spacing)[0] == 999


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 5, 25])
def test_oracle_denoiser_recovers_x0(name, steps):
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 30, 6, generator=g) * 3 - 1
    x_T = initial_noise(x0.shape, torch.Generator().manual_seed(1))
    out = get_sampler(name)(lambda x, t: x0, x_T, SCHED, steps, eta=1.0 if name != "dpmpp" else 0.0,
                            generator=torch.Generator().manual_seed(2))
    assert torch.allclose(out, x0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_inpainting_keeps_the_known_region(name):
    g = torch.Generator().manual_seed(5)
    known = torch.randn(2, 40, 3, generator=g) * 0.5 + 0.2
    mask = torch.zeros(2, 40, 3, dtype=torch.bool)
    mask[:, :12] = True  # the overlap with a previous window
    seen = []

    def denoise(x, t):
        # the known region of x_t is known data diffused to step t (never the raw noise)
        a, s = SCHED.alpha_sigma(t, like=x)
        seen.append(((x - a * known)[mask].abs().max() / s.max()).item())
        return gaussian_denoiser(0.0, 1.0)(x, t)

    x_T = initial_noise(known.shape, torch.Generator().manual_seed(6))
    out = get_sampler(name)(denoise, x_T, SCHED, 10, generator=torch.Generator().manual_seed(7), inpaint=(known, mask))
    assert torch.equal(out[mask], known[mask])
    assert not torch.allclose(out[~mask], known[~mask])
    assert max(seen) < 6.0  # |x_t - α known| / σ is a standard normal sample there


@pytest.mark.parametrize("name,eta", [("ddpm", 0.0), ("ddim", 0.0), ("ddim", 1.0), ("dpmpp", 0.0)])
def test_same_seed_is_bit_identical(name, eta):
    den = gaussian_denoiser(0.3, 0.5)
    known = torch.zeros(1, 20, 2)
    mask = torch.zeros(1, 20, 2, dtype=torch.bool)
    mask[:, :5] = True

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x_T = initial_noise((1, 20, 2), g)
        return get_sampler(name)(den, x_T, SCHED, 8, eta=eta, generator=g, inpaint=(known, mask))

    a, b, c = run(11), run(11), run(12)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("mu,sd", [(0.7, 0.3), (0.0, 1.0), (0.2, 0.05)])
def test_dpmpp_10_steps_matches_ddim_200_and_the_exact_ode(mu, sd):
    den = gaussian_denoiser(mu, sd)
    x_T = initial_noise((8, 100, 4), torch.Generator().manual_seed(0))
    exact = exact_ode_solution(x_T, mu, sd)
    ddim200 = sample_ddim(den, x_T, SCHED, 200)
    dpm10 = get_sampler("dpmpp")(den, x_T, SCHED, 10)
    dpm20 = get_sampler("dpmpp")(den, x_T, SCHED, 20)
    ddim10 = sample_ddim(den, x_T, SCHED, 10)
    err = lambda a, b: ((a - b).abs().mean() / sd).item()  # noqa: E731
    assert err(ddim200, exact) < 0.03
    assert err(dpm10, ddim200) < 0.04
    assert err(dpm10, exact) < 0.03
    assert err(dpm20, exact) < 0.5 * err(dpm10, exact) + 1e-3  # second order: error falls ~4x per doubling
    assert err(dpm10, exact) < 0.3 * err(ddim10, exact)  # and beats first-order DDIM at equal cost


def test_ddpm_samples_the_data_distribution():
    # unit Gaussian data: the full 1000-step ancestral chain reproduces mean 0 and std 1
    x_T = initial_noise((1, 4000, 1), torch.Generator().manual_seed(0))
    out = sample_ddpm(lambda x, t: SCHED.alpha_sigma(t, like=x)[0] * x, x_T, SCHED, 1000,
                      generator=torch.Generator().manual_seed(1))
    assert abs(out.mean().item()) < 0.05
    assert abs(out.std().item() - 1.0) < 0.04


def test_ddim_eta_one_equals_ddpm():
    den = gaussian_denoiser(0.1, 0.4)
    x_T = initial_noise((2, 16, 3), torch.Generator().manual_seed(0))
    a = sample_ddpm(den, x_T, SCHED, 12, generator=torch.Generator().manual_seed(4))
    b = sample_ddim(den, x_T, SCHED, 12, eta=1.0, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(a, b, atol=1e-5)


def test_guidance_combines_in_x0_space():
    cond = lambda x, t: torch.ones_like(x)  # noqa: E731
    uncond = lambda x, t: torch.zeros_like(x)  # noqa: E731
    x = torch.randn(1, 4, 2)
    t = torch.tensor([5])
    assert guided(cond, uncond, 1.0) is cond
    assert torch.allclose(guided(cond, uncond, 2.5)(x, t), torch.full_like(x, 2.5))


def test_unknown_sampler_is_a_user_error():
    with pytest.raises(KsdiffError):
        get_sampler("euler")
