"""Log-likelihood by the probability-flow ODE (Song et al. 2021, "Score-based generative modeling
through SDEs", sec. 4.3 and app. D.2), over the denoiser contract of :mod:`.samplers`.

In the scaled frame x̂ = x_0 + σ ε the ODE is dx̂/dσ = (x̂ − D(x̂; σ))/σ (EDM eq. 4). We integrate in
u = ln σ, where it reads dx̂/du = x̂ − D(x̂; e^u) =: f, from σ_min to σ_max, with the instantaneous
change of variables (Chen et al. 2018, "Neural ODEs", thm. 1):

    log p_{σ_min}(x̂(σ_min)) = log N(x̂(σ_max); 0, σ_max² I) + ∫ div f du,   div f = D − tr ∂D/∂x̂.

The trace is exact (D backward passes, for low dimension) or Hutchinson's estimate
E_v[vᵀ (∂D/∂x̂) v] with v ~ N(0, I) fixed along the path (Grathwohl et al. 2018, FFJORD, eq. 7),
whose probes the caller draws (``Batch.randn``, so figures do not depend on the batch size).
The prior N(0, σ_max²) ignores the data's own variance next to σ_max² (as EDM's sampler does).

Solvers: fixed-step ``euler``, ``heun``, ``rk4`` in u, or ``dopri5`` (adaptive) through torchdiffeq if it
is installed; torchdiffeq is not a dependency, and without it ``dopri5`` falls back to ``rk4`` with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ODELikelihood", "ode_log_likelihood", "gaussian_prior_log_prob", "ODE_SOLVERS", "have_torchdiffeq"]

ODE_SOLVERS = ("euler", "heun", "rk4", "dopri5")


def have_torchdiffeq() -> bool:
    try:
        import torchdiffeq  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class ODELikelihood:
    """Per-example log p(x_0) (nats, in the model's space) = ``prior`` + ``divergence``, and its cost.

    ``nfe`` counts denoiser forward passes (each also needs the trace's backward passes).
    """

    log_prob: Tensor
    prior: Tensor
    divergence: Tensor
    nfe: int
    solver: str


def gaussian_prior_log_prob(x: Tensor, sigma: float) -> Tensor:
    """log N(x; 0, σ² I) per example."""
    flat = x.reshape(x.shape[0], -1)
    dims = flat.shape[1]
    return -0.5 * (flat**2).sum(1) / sigma**2 - dims * (math.log(sigma) + 0.5 * math.log(2 * math.pi))


def _drift_and_divergence(
    denoiser: Callable[[Tensor, Tensor], Tensor], x: Tensor, u: Tensor, probes: Tensor | None
) -> tuple[Tensor, Tensor]:
    """f = x̂ − D(x̂; e^u) and div f = D − tr ∂D/∂x̂ (exact, or Hutchinson over ``probes`` (k, B, ...))."""
    dims = x[0].numel()
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        denoised = denoiser(x, torch.exp(u).to(x.dtype))
        if probes is None:
            flat = denoised.reshape(len(x), -1)
            trace = torch.zeros(len(x), dtype=x.dtype, device=x.device)
            for i in range(dims):
                (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=i < dims - 1)
                trace = trace + grad.reshape(len(x), -1)[:, i]
        else:
            trace = torch.zeros(len(x), dtype=x.dtype, device=x.device)
            for k, v in enumerate(probes):
                (grad,) = torch.autograd.grad((denoised * v).sum(), x, retain_graph=k < len(probes) - 1)
                trace = trace + (grad * v).reshape(len(x), -1).sum(1)
            trace = trace / len(probes)
    return (x - denoised).detach(), (dims - trace).detach()


def ode_log_likelihood(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    *,
    sigma_min: float,
    sigma_max: float,
    steps: int = 64,
    solver: str = "heun",
    probes: Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> ODELikelihood:
    """log p_{σ_min}(x_0) by integrating the probability-flow ODE from σ_min to σ_max.

    Args:
        denoiser: D(x̂, σ) with σ a 0-dim tensor.
        x0: (B, ...) points in the model's space.
        sigma_min, sigma_max: the ODE's ends; log p of data blurred by N(0, σ_min²).
        steps: fixed steps in ln σ (ignored by ``dopri5``).
        solver: ``euler``, ``heun``, ``rk4`` or ``dopri5``.
        probes: (k, B, ...) Hutchinson probes; None for the exact trace.
        rtol, atol: ``dopri5``'s tolerances.
    """
    if solver not in ODE_SOLVERS:
        raise ValueError(f"unknown ODE solver '{solver}'; valid: {', '.join(ODE_SOLVERS)}")
    u0, u1 = math.log(sigma_min), math.log(sigma_max)
    nfe = 0

    def rhs(x: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        nonlocal nfe
        nfe += 1
        return _drift_and_divergence(denoiser, x, u, probes)

    x = x0.detach()
    delta = torch.zeros(len(x0), dtype=x0.dtype, device=x0.device)
    if solver == "dopri5" and not have_torchdiffeq():
        warnings.warn("solver 'dopri5' needs torchdiffeq, which is not installed; using fixed-step 'rk4'", stacklevel=2)
        solver = "rk4"
    if solver == "dopri5":
        import torchdiffeq

        def func(u: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
            return rhs(state[0], u)

        grid = torch.tensor([u0, u1], dtype=x0.dtype, device=x0.device)
        xs, deltas = torchdiffeq.odeint(func, (x, delta), grid, rtol=rtol, atol=atol, method="dopri5")
        x, delta = xs[-1], deltas[-1]
    else:
        grid = torch.linspace(u0, u1, steps + 1, dtype=torch.float64).to(x0.device)
        for i in range(steps):
            u, h = grid[i], grid[i + 1] - grid[i]
            h_ = h.to(x0.dtype)
            k1, d1 = rhs(x, u)
            if solver == "euler":
                x, delta = x + h_ * k1, delta + h_ * d1
            elif solver == "heun":
                k2, d2 = rhs(x + h_ * k1, u + h)
                x, delta = x + h_ / 2 * (k1 + k2), delta + h_ / 2 * (d1 + d2)
            else:  # classical Runge–Kutta
                k2, d2 = rhs(x + h_ / 2 * k1, u + h / 2)
                k3, d3 = rhs(x + h_ / 2 * k2, u + h / 2)
                k4, d4 = rhs(x + h_ * k3, u + h)
                x = x + h_ / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                delta = delta + h_ / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
    prior = gaussian_prior_log_prob(x, sigma_max)
    return ODELikelihood(prior + delta, prior, delta, nfe, solver)
