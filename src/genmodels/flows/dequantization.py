"""Variational dequantization (Ho et al. 2019, Flow++, sec. 3.1): a conditional flow q(u | x) on [0,1)^D.

u = σ(g(ε; x)), ε ~ N(0, I): g is a stack of affine couplings whose networks also read x, and the
sigmoid maps onto (0, 1). By the change of variables,

    log q(u | x) = log N(ε; 0, I) − log|det ∂g/∂ε| − Σ_d log σ'(v_d),   v = g(ε; x),

and the bound log P(x) ≥ E_q[log p((x + u)/K) − log q(u | x)] − D ln K (eq. 4) is
``units.variational_dequantization_bound``. With g the identity it is not uniform dequantization
(q is a logit-normal); training makes q fit p's mass inside each cell, which tightens the bound.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..nn.flow_nets import MLP
from .transforms import AffineCoupling, ComposedTransform, parity_mask

__all__ = ["VariationalDequantizer"]


class VariationalDequantizer(nn.Module):
    """q(u | x) for x (B, D) of levels 0..K−1 (flattened), as a flow from N(0, I).

    Args:
        features: D.
        levels: K.
        hidden: widths of the coupling networks' hidden layers.
        layers: the number of affine couplings.
    """

    def __init__(self, features: int, levels: int, hidden: tuple[int, ...] = (64,), layers: int = 2):
        super().__init__()
        self.levels = levels
        self.transform = ComposedTransform(
            *(
                AffineCoupling(parity_mask(features, i % 2), MLP(features, 2 * features, hidden, context_features=features))
                for i in range(layers)
            )
        )

    def context(self, x: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        """x's levels scaled to [−1, 1]: what the couplings read."""
        return x.flatten(1).to(dtype) * (2.0 / max(self.levels - 1, 1)) - 1.0

    def forward(self, eps: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """(u (B, D) in (0,1), log q(u | x) (B,)) for the standard normal draws ``eps`` (B, D)."""
        v, ladj = self.transform.call_and_ladj(eps, self.context(x, eps.dtype))
        log_normal = -0.5 * (eps**2).sum(dim=1) - 0.5 * eps.shape[1] * math.log(2 * math.pi)
        log_sigmoid_derivative = -(F.softplus(v) + F.softplus(-v)).sum(dim=1)  # log σ'(v) = −softplus(v) − softplus(−v)
        return torch.sigmoid(v), log_normal - ladj - log_sigmoid_derivative
