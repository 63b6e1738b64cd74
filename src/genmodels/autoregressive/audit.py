"""Causality and receptive-field audit of autoregressive models, by gradients.

For an input x, ``dependence(model, x)[i, j]`` is Σ |∂ (r · θ_i) / ∂ f_j| where θ_i are the parameters
of dimension i's conditional, f_j dimension j's input features and r a fixed random projection (so
no two parameters' dependences cancel). It is exactly zero where θ_i cannot depend on x_j, and almost
surely nonzero where it does. A model is causal for its ordering σ when θ_{σ(t)} depends on no
x_{σ(s)} with s ≥ t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import AutoregressiveModel

__all__ = ["dependence", "causality_violations", "receptive_field", "earlier_mask"]


def dependence(model: AutoregressiveModel, x: Tensor, y: Tensor | None = None, *, ordering: int = 0, seed: int = 0) -> Tensor:
    """(D, D) float64: entry [i, j] measures how much dimension i's conditional depends on x_j.

    Args:
        model: an autoregressive model (put it in eval mode to switch dropout off).
        x: (B, *shape) levels at which the gradients are taken (summed over the batch).
        y: labels for a class-conditional model.
        ordering: which of the model's orderings (MADE's masks).
        seed: seed of the random projection r.
    """
    features = model.input_features(x).detach().requires_grad_(True)  # (B, D, F)
    params = model.params_from_features(features, model.labels(y, len(x)), ordering)  # (B, D, P)
    r = torch.randn(params.shape, generator=torch.Generator().manual_seed(seed), dtype=params.dtype).to(params.device)
    projected = (params * r).sum(dim=(0, 2))  # (D,)
    rows = []
    for i in range(model.spec.dims):
        (grad,) = torch.autograd.grad(projected[i], features, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros(features.shape[1]) if grad is None else grad.abs().sum(dim=(0, 2)).double().cpu())
    return torch.stack(rows).double()


def earlier_mask(order: Tensor) -> Tensor:
    """(D, D) bool: [i, j] is True iff x_j comes before x_i in the ordering ``order`` (σ)."""
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return rank[None, :].cpu() < rank[:, None].cpu()


def causality_violations(
    model: AutoregressiveModel, x: Tensor, y: Tensor | None = None, *, ordering: int = 0
) -> list[tuple[int, int]]:
    """Every (i, j) where dimension i's conditional depends on an x_j that is not before it."""
    dep = dependence(model, x, y, ordering=ordering)
    bad = (dep > 0) & ~earlier_mask(model.ordering(ordering))
    return [tuple(pair) for pair in bad.nonzero().tolist()]


def receptive_field(
    model: AutoregressiveModel, x: Tensor, index: int, y: Tensor | None = None, *, ordering: int = 0
) -> Tensor:
    """(*shape) bool: the dimensions whose value dimension ``index``'s conditional depends on."""
    return (dependence(model, x, y, ordering=ordering)[index] > 0).reshape(model.spec.shape)
