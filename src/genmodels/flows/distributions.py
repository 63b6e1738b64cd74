"""Base densities and the flow distribution p_X(x) = p_Z(f(x)) |det ∂f/∂x| (a transform plus a base).

>>> from genmodels.flows.transforms import Reverse
>>> flow = NormalizingFlow(Reverse(), StandardNormal(2))
>>> round(float(flow.log_prob(torch.zeros(1, 2))[0]), 4)  # −ln 2π
-1.8379
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .transforms import Transform

__all__ = ["BaseDensity", "StandardNormal", "StandardLogistic", "NormalizingFlow"]


class BaseDensity(nn.Module):
    """A fixed density on flat latents z (B, D)."""

    def __init__(self, features: int):
        super().__init__()
        self.features = features

    def log_prob(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0,
               device: torch.device | str = "cpu") -> Tensor:
        raise NotImplementedError


class StandardNormal(BaseDensity):
    """N(0, I_D). A temperature T samples N(0, T² I) (Glow sec. 5.2: "reduced-temperature" samples)."""

    def log_prob(self, z: Tensor) -> Tensor:
        return -0.5 * (z**2).sum(dim=1) - 0.5 * self.features * math.log(2 * math.pi)

    def sample(self, n, *, generator=None, temperature=1.0, device="cpu") -> Tensor:
        return temperature * torch.randn(n, self.features, generator=generator, device=device)


class StandardLogistic(BaseDensity):
    """NICE's prior (Dinh et al. 2015, sec. 3.4): log p(z_d) = −log(1 + e^{z_d}) − log(1 + e^{−z_d})."""

    def log_prob(self, z: Tensor) -> Tensor:
        return -(F.softplus(z) + F.softplus(-z)).sum(dim=1)

    def sample(self, n, *, generator=None, temperature=1.0, device="cpu") -> Tensor:
        u = torch.rand(n, self.features, generator=generator, device=device).clamp(1e-7, 1 - 1e-7)
        return temperature * (torch.log(u) - torch.log1p(-u))


class NormalizingFlow(nn.Module):
    """A transform f (data → latent) and a base density p_Z; ``event_shape`` is what f takes."""

    def __init__(self, transform: Transform, base: BaseDensity):
        super().__init__()
        self.transform = transform
        self.base = base

    def log_prob_terms(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(log p_Z(f(x)), log|det ∂f/∂x|), each (B,)."""
        z, ladj = self.transform.call_and_ladj(x, context)
        return self.base.log_prob(z.flatten(1)), ladj

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        log_pz, ladj = self.log_prob_terms(x, context)
        return log_pz + ladj
