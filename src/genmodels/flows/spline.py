"""Monotonic rational-quadratic splines (Durkan et al. 2019, "Neural Spline Flows", sec. 3.1).

K bins on [−B, B] with knots (x^(k), y^(k)) and positive derivatives δ^(k) at the knots; outside the
interval the map is the identity ("linear tails", sec. 3.3), so the boundary derivatives are 1.
In bin k, with s_k = (y^(k+1) − y^(k)) / (x^(k+1) − x^(k)) and ξ = (x − x^(k)) / (x^(k+1) − x^(k)) (eq. 4):

    g(x) = y^(k) + (y^(k+1) − y^(k)) [s_k ξ² + δ^(k) ξ(1−ξ)] / [s_k + (δ^(k+1) + δ^(k) − 2 s_k) ξ(1−ξ)]

and its derivative (eq. 5) gives the log-determinant; the inverse solves a quadratic (appendix A).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["rational_quadratic_spline", "rational_quadratic_spline_reference", "spline_params_per_dim"]

MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


def spline_params_per_dim(bins: int) -> int:
    """3K − 1 unconstrained parameters per dimension: K widths, K heights, K − 1 inner derivatives."""
    return 3 * bins - 1


def _knots(raw: Tensor, bound: float, minimum: float) -> tuple[Tensor, Tensor]:
    """Knot positions (…, K+1) on [−B, B] and bin sizes (…, K) from unconstrained (…, K)."""
    bins = raw.shape[-1]
    sizes = minimum + (1 - minimum * bins) * F.softmax(raw, dim=-1)
    knots = F.pad(torch.cumsum(sizes, dim=-1), (1, 0))
    knots = 2 * bound * knots - bound
    knots = torch.cat([torch.full_like(knots[..., :1], -bound), knots[..., 1:-1], torch.full_like(knots[..., :1], bound)], -1)
    return knots, knots[..., 1:] - knots[..., :-1]


# softplus(c) = 1 − MIN_DERIVATIVE: the derivative is 1 at the two boundary knots, matching the
# identity tails; the inner ones are shifted by c too, so that all-zero parameters give the identity.
_DERIVATIVE_SHIFT = float(torch.log(torch.expm1(torch.tensor(1.0 - MIN_DERIVATIVE, dtype=torch.float64))))


def rational_quadratic_spline(
    x: Tensor, params: Tensor, bound: float = 5.0, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    """Apply the spline (or its inverse) elementwise: returns (output, log|dg/dx|) of x's shape.

    The same map as :func:`rational_quadratic_spline_reference`, computed with fewer tensor
    operations (on small inputs their count, not their size, sets the time): widths and heights go
    through one softmax and one cumulative sum together, the bin's quantities are read with two
    gathers, and only the two derivatives at the bin's ends pass through the softplus.

    Args:
        x: (…) inputs.
        params: (…, 3K − 1) unconstrained widths, heights and inner derivatives.
        bound: B; the spline lives on [−B, B], the identity outside.
        inverse: apply g⁻¹ instead of g; the log-derivative returned is then log|dg⁻¹/dy|.
    """
    bins = (params.shape[-1] + 1) // 3
    wh_raw, d_raw = params.split([2 * bins, bins - 1], dim=-1)
    # (…, 2, K): bin widths (row 0) and heights (row 1) as fractions of 2B, each ≥ the minimum (sec. 3.1)
    sizes = MIN_BIN_WIDTH + (1 - MIN_BIN_WIDTH * bins) * F.softmax(wh_raw.unflatten(-1, (2, bins)), dim=-1)
    right = torch.cumsum(sizes, dim=-1)  # right edges of the bins, on [0, 1]
    # the bin k of each input: the number of inner edges at or left of it (on the searched axis)
    xc = x.clamp(-bound, bound)
    u = (xc + bound) / (2 * bound)
    searched = right[..., 1 if inverse else 0, :-1]
    index = (u[..., None] >= searched).sum(dim=-1, keepdim=True)  # (…, 1) in 0..K−1
    at = index[..., None, :].expand(*index.shape[:-1], 2, 1)
    size_k = sizes.gather(-1, at).squeeze(-1)  # (…, 2)
    left_k = right.gather(-1, at).squeeze(-1) - size_k
    w_k, h_k = (2 * bound * size_k).unbind(-1)
    x_k, y_k = (2 * bound * left_k - bound).unbind(-1)
    # derivatives δ^(k), δ^(k+1) at the bin's two knots; the boundary knots' raw value is the shift
    d_pad = F.pad(d_raw + _DERIVATIVE_SHIFT, (1, 1), value=_DERIVATIVE_SHIFT)  # (…, K+1)
    d_k, d_k1 = (MIN_DERIVATIVE + F.softplus(d_pad.gather(-1, torch.cat([index, index + 1], -1)))).unbind(-1)
    s_k = h_k / w_k
    c_sum = d_k1 + d_k - 2 * s_k
    if not inverse:
        # ξ ∈ [0, 1] in exact arithmetic; the bin is searched on the unit scale and x_k computed on the
        # input scale, so a rounding can put ξ a hair outside, which in a bin of minimum width with a
        # large slope makes the log-det's numerator negative (NaN): clamp to the bin
        xi = ((xc - x_k) / w_k).clamp(0, 1)
        xi1 = xi * (1 - xi)
        denominator = s_k + c_sum * xi1
        out = y_k + h_k * (s_k * xi * xi + d_k * xi1) / denominator
    else:
        # the root of a ξ² + b ξ + c = 0 in [0, 1] (appendix A, eq. 29-32)
        dy = xc - y_k
        a = h_k * (s_k - d_k) + dy * c_sum
        b = h_k * d_k - dy * c_sum
        c = -s_k * dy
        discriminant = (b * b - 4 * a * c).clamp_min(0)
        xi = (2 * c) / (-b - torch.sqrt(discriminant))
        out = xi * w_k + x_k
        xi1 = xi * (1 - xi)
        denominator = s_k + c_sum * xi1
    one_minus = 1 - xi
    numerator = s_k * s_k * (d_k1 * xi * xi + 2 * s_k * xi1 + d_k * one_minus * one_minus)
    logabsdet = torch.log(numerator) - 2 * torch.log(denominator)  # eq. 5
    if inverse:
        logabsdet = -logabsdet
    inside = (x >= -bound) & (x <= bound)
    out = torch.where(inside, out, x)
    logabsdet = torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
    return out, logabsdet


def rational_quadratic_spline_reference(
    x: Tensor, params: Tensor, bound: float = 5.0, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    """The spline computed step by step as in the paper (knots, then the bin's quantities): the
    reference :func:`rational_quadratic_spline` is tested against. Same arguments and result."""
    bins = (params.shape[-1] + 1) // 3
    w_raw, h_raw, d_raw = params[..., :bins], params[..., bins : 2 * bins], params[..., 2 * bins :]
    cw, widths = _knots(w_raw, bound, MIN_BIN_WIDTH)
    ch, heights = _knots(h_raw, bound, MIN_BIN_HEIGHT)
    # softplus(c) = 1 − MIN_DERIVATIVE: derivative 1 at the two boundary knots, matching the identity
    # tails; the inner ones are shifted by c too, so that all-zero parameters give the identity map.
    c = float(torch.log(torch.expm1(torch.tensor(1.0 - MIN_DERIVATIVE, dtype=torch.float64))))
    d_raw = F.pad(d_raw + c, (1, 1), value=c)
    derivatives = MIN_DERIVATIVE + F.softplus(d_raw)  # (…, K+1)

    inside = (x >= -bound) & (x <= bound)
    xc = x.clamp(-bound, bound)
    knots = ch if inverse else cw
    index = (torch.sum(xc[..., None] >= knots[..., 1:-1], dim=-1)).clamp(0, bins - 1)[..., None]  # (…, 1)

    def at(t: Tensor) -> Tensor:
        return t.gather(-1, index).squeeze(-1)

    x_k, w_k, y_k, h_k = at(cw[..., :-1]), at(widths), at(ch[..., :-1]), at(heights)
    d_k, d_k1 = at(derivatives[..., :-1]), at(derivatives[..., 1:])
    s_k = h_k / w_k
    if not inverse:
        xi = (xc - x_k) / w_k
        xi1 = xi * (1 - xi)
        denominator = s_k + (d_k1 + d_k - 2 * s_k) * xi1
        out = y_k + h_k * (s_k * xi**2 + d_k * xi1) / denominator
        numerator = s_k**2 * (d_k1 * xi**2 + 2 * s_k * xi1 + d_k * (1 - xi) ** 2)
        logabsdet = torch.log(numerator) - 2 * torch.log(denominator)
    else:
        dy = xc - y_k
        c_sum = d_k1 + d_k - 2 * s_k
        a = h_k * (s_k - d_k) + dy * c_sum
        b = h_k * d_k - dy * c_sum
        c = -s_k * dy
        discriminant = (b**2 - 4 * a * c).clamp_min(0)
        xi = (2 * c) / (-b - torch.sqrt(discriminant))
        out = xi * w_k + x_k
        xi1 = xi * (1 - xi)
        denominator = s_k + c_sum * xi1
        numerator = s_k**2 * (d_k1 * xi**2 + 2 * s_k * xi1 + d_k * (1 - xi) ** 2)
        logabsdet = -(torch.log(numerator) - 2 * torch.log(denominator))
    out = torch.where(inside, out, x)
    logabsdet = torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
    return out, logabsdet
