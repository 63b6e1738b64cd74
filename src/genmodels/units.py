"""Units of likelihood, in one place: nats of the *discrete* data, bits/dim, dequantization and the
log-Jacobians of preprocessing.

Every model reports log P(x) of the discrete data x ∈ {0..K-1}^D in nats per example. A model of a
continuous density p on y ∈ [0,1)^D becomes a bound on it by uniform dequantization
(Theis et al. 2016, "A note on the evaluation of generative models", eq. 10; Ho et al. 2019, Flow++, eq. 3):

    y = (x + u) / K,  u ~ U[0,1)^D   ⇒   log P(x) ≥ E_u[ log p(y) ] − D ln K.

Further preprocessing z = f(y) (scaling to [−1,1], a logit) enters through the change of variables
log p_Y(y) = log p_Z(f(y)) + log|det ∂f/∂y|; each transform below returns its log-determinant.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "LN2",
    "bits_per_dim",
    "nats_from_bits_per_dim",
    "uniform_dequantize",
    "dequantize_with_noise",
    "dequantization_log_jacobian",
    "discrete_bound_from_density",
    "variational_dequantization_bound",
    "scale_to_symmetric",
    "logit_transform",
    "inverse_logit_transform",
    "quantize",
]

LN2 = math.log(2.0)


def bits_per_dim(nll_nats: Tensor | float, dims: int) -> Tensor | float:
    """Negative log-likelihood in nats per example → bits per dimension, −log P(x) / (D ln 2).

    >>> round(bits_per_dim(64 * math.log(17), 64), 12) == round(math.log2(17), 12)
    True
    """
    return nll_nats / (dims * LN2)


def nats_from_bits_per_dim(bpd: Tensor | float, dims: int) -> Tensor | float:
    """Bits per dimension → negative log-likelihood in nats per example (the inverse of the above)."""
    return bpd * dims * LN2


def uniform_dequantize(x: Tensor, levels: int, generator: torch.Generator | None = None) -> Tensor:
    """y = (x + u) / K with u ~ U[0,1)^D: discrete levels 0..K−1 → a point of [0,1)^D.

    ``y`` is float32 on ``x``'s device, whatever torch's default dtype; ``generator`` is the only
    source of randomness.

    >>> y = uniform_dequantize(torch.tensor([0, 16]), 17)
    >>> bool((y >= 0).all() and (y < 1).all())
    True
    """
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return (x.to(torch.float32) + u) / levels


def dequantize_with_noise(x: Tensor, u: Tensor, levels: int) -> Tensor:
    """y = (x + u) / K for given noise u ∈ [0,1)^D (drawn by the caller, e.g. with ``Batch.rand``, so
    that an evaluation does not depend on the batch size; or learned, as in Flow++).

    >>> dequantize_with_noise(torch.tensor([0, 3]), torch.tensor([0.5, 0.25]), 4).tolist()
    [0.125, 0.8125]
    """
    if u.shape != x.shape:
        raise ValueError(f"noise of shape {tuple(u.shape)} for data of shape {tuple(x.shape)}")
    return (x.to(u.dtype) + u) / levels


def dequantization_log_jacobian(dims: int, levels: int) -> float:
    """The −D ln K that turns a density on [0,1)^D into (a bound on) a probability of the levels."""
    return -dims * math.log(levels)


def discrete_bound_from_density(log_density_y: Tensor, dims: int, levels: int) -> Tensor:
    """Per-example lower bound on log P(x) (nats) from log p(y) at a uniformly dequantized y.

    Averaging over several draws of u tightens the Monte Carlo estimate of the same bound.
    A uniform density on [0,1)^D gives log P(x) = −D ln K exactly, i.e. log2 K bits/dim:

    >>> float(bits_per_dim(-discrete_bound_from_density(torch.zeros(1), 64, 256), 64)[0])
    8.0
    """
    return log_density_y + dequantization_log_jacobian(dims, levels)


def variational_dequantization_bound(log_density_y: Tensor, log_q_u: Tensor, dims: int, levels: int) -> Tensor:
    """Flow++ (Ho et al. 2019, eq. 4): log P(x) ≥ E_q[ log p(y) − log q(u|x) ] − D ln K, y = (x+u)/K.

    ``log_q_u`` is the density of the learned dequantization noise u ∈ [0,1)^D given x.
    """
    return log_density_y - log_q_u + dequantization_log_jacobian(dims, levels)


def _sum_per_example(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1).sum(dim=1)


def scale_to_symmetric(y: Tensor) -> tuple[Tensor, Tensor]:
    """z = 2y − 1 maps [0,1)^D to [−1,1)^D; returns (z, log|det ∂z/∂y| = D ln 2 per example)."""
    z = 2.0 * y - 1.0
    logdet = torch.full((y.shape[0],), y[0].numel() * LN2, dtype=y.dtype, device=y.device)
    return z, logdet


def logit_transform(y: Tensor, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    """z = logit(s), s = α + (1 − 2α) y (RealNVP, Dinh et al. 2017, sec. 4.1).

    Returns (z, log|det ∂z/∂y|) with the per-dimension log-derivative
    log(1 − 2α) − log s − log(1 − s), summed over each example's dimensions.
    """
    s = alpha + (1.0 - 2.0 * alpha) * y
    z = torch.log(s) - torch.log1p(-s)
    logdet = _sum_per_example(math.log(1.0 - 2.0 * alpha) - torch.log(s) - torch.log1p(-s))
    return z, logdet


def inverse_logit_transform(z: Tensor, alpha: float = 0.05) -> Tensor:
    """The inverse of :func:`logit_transform`: z → y = (sigmoid(z) − α) / (1 − 2α)."""
    return (torch.sigmoid(z) - alpha) / (1.0 - 2.0 * alpha)


def quantize(y: Tensor, levels: int) -> Tensor:
    """A point of [0,1]^D → the discrete level 0..K−1 whose dequantization cell contains it.

    >>> quantize(torch.tensor([0.0, 0.499, 0.5, 1.0]), 2).tolist()
    [0, 0, 1, 1]
    """
    return torch.clamp(torch.floor(y * levels), 0, levels - 1).to(torch.int64)
