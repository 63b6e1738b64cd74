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

__all__ = ["rational_quadratic_spline", "spline_params_per_dim"]

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


def rational_quadratic_spline(
    x: Tensor, params: Tensor, bound: float = 5.0, inverse: bool = False
) -> tuple[Tensor, Tensor]:
    """Apply the spline (or its inverse) elementwise: returns (output, log|dg/dx|) of x's shape.

    Args:
        x: (…) inputs.
        params: (…, 3K − 1) unconstrained widths, heights and inner derivatives.
        bound: B; the spline lives on [−B, B], the identity outside.
        inverse: apply g⁻¹ instead of g; the log-derivative returned is then log|dg⁻¹/dy|.
    """
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
