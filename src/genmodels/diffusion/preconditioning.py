"""Network parameterizations as one denoiser contract ``denoiser(x̂, σ) → D(x̂; σ)`` (an estimate of x_0).

EDM (Karras et al. 2022, eq. 7) writes every parameterization as

    D(x̂; σ) = c_skip(σ) x̂ + c_out(σ) F(c_in(σ) x̂; c_noise(σ)),

with x̂ = x_0 + σ ε the scaled-frame input. The network's input scale c_in and noise conditioning
c_noise belong to the process (:mod:`.processes`); the output parameterization (c_skip, c_out) is
the prediction target:

| prediction | F estimates | c_skip | c_out |
|---|---|---|---|
| ``eps`` (DDPM, NCSN) | ε | 1 | −σ |
| ``x0`` | x_0 | 0 | 1 |
| ``v`` (Salimans & Ho 2022, σ_data = 1) | α ε − σ_t x_0 | 1/(1 + σ²) | −σ/sqrt(1 + σ²) |
| ``velocity`` (flow matching) | ε − x_0 | 1/(1 + σ) | −σ/(1 + σ) |
| ``edm`` (EDM eq. 7, Table 1) | (x_0 − c_skip x̂)/c_out | σ_d²/(σ² + σ_d²) | σ σ_d/sqrt(σ² + σ_d²) |

(v: with α = 1/sqrt(1+σ²), σ_t = σ α, x_0 = α x_t − σ_t v and x_t = α x̂. velocity: with t = σ/(1+σ),
x_t = (1−t) x̂ and x_0 = x_t − t v.) :func:`from_denoised` and :func:`to_denoised` convert between D and
each target, so a network trained with one target serves any sampler over D.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PREDICTIONS", "Preconditioning", "to_denoised", "from_denoised", "score_from_denoised"]

PREDICTIONS = ("eps", "x0", "v", "velocity", "edm")


@dataclass(frozen=True)
class Preconditioning:
    """c_skip(σ), c_out(σ) of one prediction target (EDM eq. 7).

    Args:
        prediction: one of ``eps``, ``x0``, ``v``, ``velocity``, ``edm``.
        sigma_data: σ_data of EDM's preconditioning (used by ``edm`` only).
    """

    prediction: str = "edm"
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got '{self.prediction}'")

    def c_skip(self, sigma: Tensor) -> Tensor:
        p = self.prediction
        if p == "eps":
            return torch.ones_like(sigma)
        if p == "x0":
            return torch.zeros_like(sigma)
        if p == "v":
            return 1 / (1 + sigma**2)
        if p == "velocity":
            return 1 / (1 + sigma)
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma: Tensor) -> Tensor:
        p = self.prediction
        if p == "eps":
            return -sigma
        if p == "x0":
            return torch.ones_like(sigma)
        if p == "v":
            return -sigma / torch.sqrt(1 + sigma**2)
        if p == "velocity":
            return -sigma / (1 + sigma)
        return sigma * self.sigma_data / torch.sqrt(sigma**2 + self.sigma_data**2)


def _expand(sigma: Tensor, x: Tensor) -> Tensor:
    """σ as a scalar or (B,) → broadcastable against x (B, ...)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return sigma.reshape(-1, *([1] * (x.dim() - 1))) if sigma.dim() else sigma


def to_denoised(prediction: str, output: Tensor, x: Tensor, sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """D = c_skip x̂ + c_out F: the denoised estimate from a network's output F in target ``prediction``."""
    pre = Preconditioning(prediction, sigma_data)
    s = _expand(sigma, x)
    return pre.c_skip(s) * x + pre.c_out(s) * output


def from_denoised(prediction: str, denoised: Tensor, x: Tensor, sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """F = (D − c_skip x̂)/c_out: the target ``prediction`` that gives denoised estimate D (σ > 0)."""
    pre = Preconditioning(prediction, sigma_data)
    s = _expand(sigma, x)
    return (denoised - pre.c_skip(s) * x) / pre.c_out(s)


def score_from_denoised(denoised: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
    """∇ log p_σ(x̂) = (D(x̂; σ) − x̂)/σ² (EDM eq. 3)."""
    return (denoised - x) / _expand(sigma, x) ** 2
