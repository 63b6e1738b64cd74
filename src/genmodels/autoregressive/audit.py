"""Causality and receptive-field audit of autoregressive models, by gradients.

For an input x, ``dependence(model, x)[i, j]`` is Σ |∂ (r · θ_i) / ∂ f_j| where θ_i are the parameters
of dimension i's conditional, f_j dimension j's input features and r a fixed random projection (so
no two parameters' dependences cancel). It is exactly zero where θ_i cannot depend on x_j, and almost
surely nonzero where it does. A model is causal for its ordering σ when θ_{σ(t)} depends on no
x_{σ(s)} with s ≥ t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import UserError
from .base import AutoregressiveModel

__all__ = [
    "dependence", "causality_violations", "receptive_field", "earlier_mask", "pixelcnn_receptive_field",
    "ReceptiveFieldAudit", "audit_pixel",
]


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


def _dilate(points: set[tuple[int, int]], footprint: list[tuple[int, int]], height: int, width: int) -> set[tuple[int, int]]:
    """Every in-image position p + o for p in ``points`` and o in ``footprint``."""
    return {
        (r + dr, c + dc)
        for r, c in points
        for dr, dc in footprint
        if 0 <= r + dr < height and 0 <= c + dc < width
    }


def _box(rows: range, cols: range, exclude=lambda dr, dc: False) -> list[tuple[int, int]]:
    return [(dr, dc) for dr in rows for dc in cols if not exclude(dr, dc)]


def pixelcnn_receptive_field(
    variant: str, layers: int, first_kernel: int, kernel: int, height: int, width: int, pixel: tuple[int, int]
) -> Tensor:
    """(H, W) bool: the analytic receptive field of ``pixel`` for a PixelCNN layer stack, found by
    composing the kernels' footprints (no network, no gradients), to check the audit against.

    Plain: a type-A k₀×k₀ mask, then ``layers`` residual type-B k×k masks. Gated: per layer, the
    horizontal stack sees columns c−k//2..c (..c−1 in the first layer) of its row and the vertical
    stack, shifted down one row, rows r−1−k//2..r−1 and columns c±k//2; the vertical stack sees rows
    r−k//2..r and columns c±k//2 of the vertical stack below it.
    """
    h0, h = first_kernel // 2, kernel // 2
    target = {tuple(pixel)}
    if variant == "plain":
        mask_b = _box(range(-h, 1), range(-h, h + 1), lambda dr, dc: dr == 0 and dc > 0)
        mask_a = _box(range(-h0, 1), range(-h0, h0 + 1), lambda dr, dc: dr == 0 and dc >= 0)
        points = target
        for _ in range(layers):
            points = points | _dilate(points, mask_b, height, width)
        field = _dilate(points, mask_a, height, width)
    elif variant == "gated":
        horizontal_set, vertical_set = target, set()
        for layer in reversed(range(layers)):
            k = h0 if layer == 0 else h
            horizontal_foot = _box(range(0, 1), range(-k, 0 if layer == 0 else 1))
            vertical_foot = _box(range(-k, 1), range(-k, k + 1))
            above = {(r - 1, c) for r, c in horizontal_set if r >= 1}  # the down-shifted vertical stack
            new_vertical = _dilate(above | vertical_set, vertical_foot, height, width)
            new_horizontal = _dilate(horizontal_set, horizontal_foot, height, width)
            if layer > 0:
                new_horizontal |= horizontal_set  # the residual connection
            horizontal_set, vertical_set = new_horizontal, new_vertical
        field = horizontal_set | vertical_set
    else:
        raise ValueError(f"variant must be 'gated' or 'plain', got {variant!r}")
    out = torch.zeros(height, width, dtype=torch.bool)
    for r, c in field:
        out[r, c] = True
    return out


@dataclass
class ReceptiveFieldAudit:
    """What one pixel's conditional depends on, as (H, W) bool maps (channels merged).

    field: the inputs the conditional depends on (the gradient audit).
    earlier: the pixels before it in the model's ordering (what it may depend on).
    analytic: the layer stack's field computed without gradients (PixelCNN only, else None).
    blind: earlier pixels inside the field's bounding box that it cannot see (a blind spot).
    violations: dimensions it depends on that are not earlier (0 for a causal model).
    """

    pixel: tuple[int, int]
    field: Tensor
    earlier: Tensor
    analytic: Tensor | None
    blind: Tensor
    violations: int


def audit_pixel(model: AutoregressiveModel, pixel: tuple[int, int], *, ordering: int = 0, seed: int = 1) -> ReceptiveFieldAudit:
    """Audit the conditional of ``pixel`` (row, column; the first channel's) of an image model, by
    gradients at random inputs, in eval mode (dropout off: the likelihood's conditionals)."""
    if len(model.spec.shape) != 3:
        raise UserError(f"the audit draws image models (C, H, W); '{model.spec.name}' has shape {model.spec.shape}")
    channels, height, width = model.spec.shape
    row, col = pixel
    if not (0 <= row < height and 0 <= col < width):
        raise UserError(f"--pixel {row},{col} is outside the {height}×{width} image")
    was_training = model.training
    model.eval()
    levels = model.spec.levels or 2
    x = torch.randint(0, levels, (4, *model.spec.shape), generator=torch.Generator().manual_seed(seed)).to(model.device)
    y = torch.zeros(4, dtype=torch.int64, device=model.device) if model.conditional else None
    index = row * width + col  # the first channel's plane, raster order
    dep = dependence(model, x, y, ordering=ordering, seed=seed)[index]  # (D,)
    earlier_flat = earlier_mask(model.ordering(ordering))[index]  # (D,)
    model.train(was_training)
    violations = int(((dep > 0) & ~earlier_flat).sum())
    field = (dep > 0).reshape(channels, height, width).any(0)
    earlier = earlier_flat.reshape(channels, height, width).any(0)
    analytic = None
    if model.name == "pixelcnn" and channels == 1:
        c = model.config
        analytic = pixelcnn_receptive_field(c.variant, c.layers, c.first_kernel, c.kernel, height, width, (row, col))
    box = torch.zeros_like(field)
    if field.any():
        rows, cols = field.nonzero(as_tuple=True)
        box[int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1] = True
    blind = earlier & box & ~field
    return ReceptiveFieldAudit((row, col), field, earlier, analytic, blind, violations)
