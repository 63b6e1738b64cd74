"""Hubness-guided latent sampling (Liang et al. 2022, "Exploring and Exploiting Hubness Priors for
High-Quality GAN Latent Sampling", ICML).

In high dimensions some points ("hubs") appear in the k-nearest-neighbour lists of many others
(Radovanović et al. 2010). Liang et al. observe that GAN latents with a high k-occurrence among a
large set of candidates decode to better images, and sample by drawing M candidates from the prior
and keeping the hubs: those whose k-occurrence N_k(z_i) = #{j ≠ i : z_i ∈ kNN(z_j)} is highest
(their eq. 1–2 keep N_k ≥ t; keeping the n highest is the same rule with t set by n). Like the
truncation trick it trades diversity for quality, but it needs no retraining and no threshold on
the prior's density. It applies to any model with a latent prior (``gan``, ``vae``, ``iwae``):
:func:`hubness_guided_latents` draws the candidates with the model's own prior sampler.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..errors import UserError

__all__ = ["k_occurrence", "select_hubs", "hubness_guided_latents"]


def k_occurrence(z: Tensor, k: int) -> Tensor:
    """N_k of each row of ``z`` (M, L): how many other rows count it among their k nearest
    neighbours (Euclidean, a point is not its own neighbour) → (M,) int64."""
    if not 1 <= k < len(z):
        raise ValueError(f"k must be in 1..{len(z) - 1}, got {k}")
    d = torch.cdist(z.double(), z.double())  # (M, M)
    d.fill_diagonal_(float("inf"))
    neighbours = d.topk(k, dim=1, largest=False).indices  # (M, k): row j's k nearest
    return torch.bincount(neighbours.reshape(-1), minlength=len(z))


def select_hubs(z: Tensor, n: int, k: int, generator: torch.Generator | None = None) -> Tensor:
    """The n rows of ``z`` (M, L) with the highest k-occurrence (ties broken at random) → (n, L)."""
    if n > len(z):
        raise ValueError(f"cannot keep {n} hubs of {len(z)} candidates")
    scores = k_occurrence(z, k).double()
    jitter = torch.rand(len(z), generator=generator, dtype=torch.float64).to(scores.device)
    keep = (scores + 0.5 * jitter).topk(n).indices  # jitter < 1 only reorders equal counts
    return z[keep]


def hubness_guided_latents(draw: Callable[[int], Tensor], n: int, *, candidates: int = 0, k: int = 10,
                           generator: torch.Generator | None = None) -> Tensor:
    """n latents: the hubs among ``candidates`` draws of the prior sampler ``draw(m)`` → (m, L).

    ``candidates`` 0 means 20·n, at least 500 (Liang et al. use tens of candidates per sample).
    """
    m = candidates or max(20 * n, 500)
    if m <= max(n, k):
        raise UserError(f"hubness sampling: candidates ({m}) must exceed n ({n}) and k ({k}); raise --option candidates=M")
    return select_hubs(draw(m), n, k, generator)
