"""Samplers: stateless functions over one denoiser contract ``denoiser(x̂, σ) → D(x̂; σ)``.

After crowsonkb/k-diffusion's ``sampling.py``: every sampler integrates in the scaled frame
x̂ = x_0 + σ ε (EDM, Karras et al. 2022, sec. 3) from ``x`` at σ_0 = ``sigmas[0]`` down a given
grid ``sigmas`` (σ_0 > … > σ_N = 0), whatever process trained the denoiser: schedule, solver and
parameterization vary independently, and flow matching and EDM share this code. Each returns the
samples and its NFE (denoiser calls). The probability-flow ODE in this frame is
dx̂/dσ = (x̂ − D(x̂; σ))/σ (EDM eq. 4 with s = 1, σ(t) = t).

| solver | NFE for N steps |
|---|---|
| ``euler``, ``ddim``, ``ddpm``, ``dpmpp-2m`` | N |
| ``heun`` (EDM Alg. 1; Alg. 2 when ``s_churn`` > 0) | 2N − 1 (the last step, to σ = 0, is Euler) |
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "Denoiser",
    "SOLVERS",
    "sample_euler",
    "sample_heun",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "solve",
    "nfe_of",
]

#: D(x̂, σ): x̂ (B, ...), σ a 0-dim tensor → the denoised estimate (B, ...)
Denoiser = Callable[[Tensor, Tensor], Tensor]


def _noise(x: Tensor, generator: torch.Generator | None) -> Tensor:
    if generator is not None and generator.device != x.device:
        return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _sigma(sigmas: Tensor, i: int, x: Tensor) -> Tensor:
    return sigmas[i].to(dtype=x.dtype, device=x.device)


@torch.no_grad()
def sample_euler(denoiser: Denoiser, x: Tensor, sigmas: Tensor) -> tuple[Tensor, int]:
    """Euler on the probability-flow ODE: x̂ ← x̂ + (σ_{i+1} − σ_i)(x̂ − D)/σ_i (EDM Alg. 1 without
    the correction). In the VP frame it is DDIM with η = 0; on flow matching's grid it is rectified
    flow's Euler step."""
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        d = (x - denoiser(x, sigma)) / sigma
        x = x + (sigma_next - sigma) * d
    return x, len(sigmas) - 1


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    """EDM's stochastic sampler (Alg. 2); with ``s_churn`` = 0 it is the deterministic Heun sampler (Alg. 1).

    At each step with σ_i ∈ [S_tmin, S_tmax], noise raises σ_i to σ̂ = σ_i(1 + γ), γ = min(S_churn/N, √2 − 1),
    then a Heun step runs from σ̂ to σ_{i+1}, corrected by its trapezoid unless σ_{i+1} = 0.
    """
    steps = len(sigmas) - 1
    nfe = 0
    for i in range(steps):
        sigma, sigma_next = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        gamma = min(s_churn / steps, math.sqrt(2) - 1) if s_tmin <= float(sigma) <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # Alg. 2 lines 5–6: x̂ = x + sqrt(σ̂² − σ²) S_noise ε
            x = x + torch.sqrt(sigma_hat**2 - sigma**2) * s_noise * _noise(x, generator)
        d = (x - denoiser(x, sigma_hat)) / sigma_hat
        nfe += 1
        x_next = x + (sigma_next - sigma_hat) * d
        if float(sigma_next) > 0:  # Alg. 1 lines 9–11: second-order correction
            d_next = (x_next - denoiser(x_next, sigma_next)) / sigma_next
            nfe += 1
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
        x = x_next
    return x, nfe


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, eta: float = 0.0, generator: torch.Generator | None = None
) -> tuple[Tensor, int]:
    """DDIM (Song et al. 2021a, eq. 12) in the scaled frame, for any grid.

    The step from σ to σ' < σ draws from N(D + sqrt(σ'² − σ_up²)(x̂ − D)/σ, σ_up²) with
    σ_up = η σ' sqrt(1 − σ'²/σ²): DDIM's σ_t(η) (eq. 16) divided by sqrt(ᾱ_{t−1}). η = 0 is
    deterministic (Euler); η = 1 samples the posterior q(x̂_{σ'} | x̂_σ, x_0 = D), DDPM's ancestral step.
    """
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        denoised = denoiser(x, sigma)
        sigma_up = eta * sigma_next * torch.sqrt(torch.clamp(1 - sigma_next**2 / sigma**2, min=0))
        sigma_down = torch.sqrt(sigma_next**2 - sigma_up**2)
        x = denoised + sigma_down * (x - denoised) / sigma
        if eta > 0 and float(sigma_next) > 0:
            x = x + sigma_up * _noise(x, generator)
    return x, len(sigmas) - 1


def sample_ddpm(
    denoiser: Denoiser, x: Tensor, sigmas: Tensor, *, generator: torch.Generator | None = None
) -> tuple[Tensor, int]:
    """DDPM's ancestral sampler (Ho et al. 2020, Alg. 2, with σ_t² = β̃_t): x_{t−1} ~ q(x_{t−1} | x_t, x̂_0),
    which is DDIM with η = 1 (Song et al. 2021a, sec. 4.1); on the T-step grid it is DDPM itself."""
    return sample_ddim(denoiser, x, sigmas, eta=1.0, generator=generator)


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: Tensor, sigmas: Tensor) -> tuple[Tensor, int]:
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2), multistep second order in λ = −ln σ with data prediction.

    x̂_{i+1} = (σ_{i+1}/σ_i) x̂_i − (e^{−h} − 1) D̃,  h = λ_{i+1} − λ_i,
    D̃ = (1 + 1/(2r)) D_i − D_{i−1}/(2r),  r = h_{i−1}/h_i   (first order at the first and last step).
    """
    old_denoised = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = _sigma(sigmas, i, x), _sigma(sigmas, i + 1, x)
        denoised = denoiser(x, sigma)
        if float(sigma_next) == 0:
            x = denoised
        else:
            h = torch.log(sigma) - torch.log(sigma_next)
            if old_denoised is None:
                d = denoised
            else:
                h_last = torch.log(_sigma(sigmas, i - 1, x)) - torch.log(sigma)
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * d
        old_denoised = denoised
    return x, len(sigmas) - 1


#: every solver by name; stochastic ones take ``generator``
SOLVERS: dict[str, Callable[..., tuple[Tensor, int]]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "dpmpp-2m": sample_dpmpp_2m,
}
_OPTIONS = {
    "euler": (),
    "heun": ("s_churn", "s_tmin", "s_tmax", "s_noise", "generator"),
    "ddim": ("eta", "generator"),
    "ddpm": ("generator",),
    "dpmpp-2m": (),
}


def nfe_of(solver: str, steps: int) -> int:
    """The NFE of ``steps`` steps of ``solver`` (to σ = 0)."""
    return 2 * steps - 1 if solver == "heun" else steps


def solve(solver: str, denoiser: Denoiser, x: Tensor, sigmas: Tensor, **options: object) -> tuple[Tensor, int]:
    """Run sampler ``solver`` with the options it takes (the others are ignored: η means nothing to Euler)."""
    if solver not in SOLVERS:
        raise KeyError(solver)
    return SOLVERS[solver](denoiser, x, sigmas, **{k: v for k, v in options.items() if k in _OPTIONS[solver]})
