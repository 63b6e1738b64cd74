"""Output distributions over K discrete levels, parameterized per dimension by a network.

An autoregressive network emits, for every dimension i, a vector of P parameters of the
conditional p(x_i | x_<i); a head turns it into log-probabilities. Two heads:

- :class:`CategoricalHead`: P = K logits, a softmax over the levels.
- :class:`DiscretizedLogisticMixture`: P = 3M (mixture logits, means, log-scales) of a mixture of M
  logistics discretized into K bins on [−1, 1] (Salimans et al. 2017, "PixelCNN++", eq. 2). Its
  :meth:`~DiscretizedLogisticMixture.channel_conditionals` turns one colour pixel's mixture (eq. 3)
  into the exact conditionals of its channels, one after the other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OutputHead", "CategoricalHead", "DiscretizedLogisticMixture", "log_sigmoid_difference"]


class OutputHead(nn.Module):
    """Maps parameters (..., P) to log-probabilities of the K levels."""

    levels: int
    num_params: int

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x) for levels ``x`` (...,) int64 under ``params`` (..., P): shape (...)."""
        return self.level_log_probs(params).gather(-1, x.unsqueeze(-1)).squeeze(-1)

    def level_log_probs(self, params: Tensor) -> Tensor:
        """log p(k) for every level k: (..., K), normalized over the last axis."""
        raise NotImplementedError


class CategoricalHead(OutputHead):
    """A softmax over K levels; the parameters are the K logits."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels
        self.num_params = levels

    def level_log_probs(self, params: Tensor) -> Tensor:
        return F.log_softmax(params, dim=-1)


def log_sigmoid_difference(b: Tensor, a: Tensor) -> Tensor:
    """log(σ(b) − σ(a)) for a < b, stable in both tails.

    σ(b) − σ(a) = σ(b) · σ(−a) · (1 − e^{a−b}), so no difference of nearly equal numbers is taken.

    >>> a, b = torch.tensor([-3.0, 0.1]), torch.tensor([-2.0, 0.2])
    >>> bool(torch.allclose(log_sigmoid_difference(b, a), (torch.sigmoid(b) - torch.sigmoid(a)).log()))
    True

    In the upper tail the direct difference underflows; σ(41) − σ(40) = e^{−40}(1 − e^{−1}) to
    first order, log = −40 + log(1 − e^{−1}):

    >>> round(float(log_sigmoid_difference(torch.tensor(41.0), torch.tensor(40.0))), 4)
    -40.4587
    """
    return F.logsigmoid(b) + F.logsigmoid(-a) + torch.log(-torch.expm1(a - b))


class DiscretizedLogisticMixture(OutputHead):
    """A mixture of M logistics discretized into K bins (Salimans et al. 2017, eq. 2).

    Level k sits at x_k = 2k/(K−1) − 1 ∈ [−1, 1] with bin [x_k − δ, x_k + δ], δ = 1/(K−1); the end
    bins extend to ±∞ so the K probabilities sum to exactly one:

        P(k) = Σ_m π_m [σ((x_k + δ − μ_m)/s_m) − σ((x_k − δ − μ_m)/s_m)].

    Parameters per dimension: (π logits, μ, log s), each M wide.
    """

    def __init__(self, levels: int, mixtures: int, min_log_scale: float = -7.0):
        super().__init__()
        if levels < 2:
            raise ValueError(f"a discretized logistic needs K ≥ 2 levels, got {levels}")
        self.levels = levels
        self.mixtures = mixtures
        self.num_params = 3 * mixtures
        self.min_log_scale = min_log_scale

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        logit_pi, mu, log_s = params.unflatten(-1, (3, self.mixtures)).unbind(-2)
        return F.log_softmax(logit_pi, dim=-1), mu, log_s.clamp(min=self.min_log_scale)

    def pixel_params(self, colours: int) -> int:
        """Parameters of one pixel of C channels under PixelCNN++'s mixture (Salimans et al. 2017,
        eq. 3): M logits, C·M means, C·M log-scales and C(C−1)/2·M coefficients (10M for RGB,
        3M = :attr:`num_params` for one channel)."""
        return self.mixtures * (1 + 2 * colours + colours * (colours - 1) // 2)

    def channel_conditionals(self, pixel_params: Tensor, values: Tensor) -> Tensor:
        """The conditionals p(x_c | x_<c of the same pixel) of a pixel's C channels, each as this head's
        3M parameters, from the pixel's joint mixture (Salimans et al. 2017, eq. 3):

            p(x) = Σ_m π_m Π_c P(x_c | μ_mc + Σ_{c'<c} α_mcc' x_c', s_mc),   α = tanh(raw coefficients)

        (the means of G and B move linearly with the channels already seen; the tanh is that of the
        authors' code, openai/pixel-cnn). Channel c's conditional is a mixture over the same M
        components with the posterior weights w_m ∝ π_m Π_{c'<c} P_m(x_c'), so the product of the C
        conditionals is exactly p(x), and ancestral sampling channel by channel draws from it.

        Args:
            pixel_params: (..., :meth:`pixel_params` (C)) laid out as [logits | means (C, M) |
                log-scales (C, M) | coefficients (C(C−1)/2, M), pairs (1,0), (2,0), (2,1), …].
            values: (..., C) the pixel's values as bin centres in [−1, 1]; channel c's conditional
                reads only values[..., :c].

        Returns:
            (..., C, 3M): per channel [posterior logits | mean | log-scale].
        """
        m, colours = self.mixtures, values.shape[-1]
        logits = pixel_params[..., :m]
        mu = pixel_params[..., m : m + colours * m].unflatten(-1, (colours, m))
        log_s = pixel_params[..., m + colours * m : m + 2 * colours * m].unflatten(-1, (colours, m))
        log_s = log_s.clamp(min=self.min_log_scale)
        alpha = torch.tanh(pixel_params[..., m + 2 * colours * m :].unflatten(-1, (-1, m)))
        log_weight = F.log_softmax(logits, dim=-1)  # log π_m, then the posterior given the channels seen
        pair, out = 0, []
        for c in range(colours):
            mean = mu[..., c, :]
            for earlier in range(c):
                mean = mean + alpha[..., pair, :] * values[..., earlier, None]
                pair += 1
            out.append(torch.cat([log_weight, mean, log_s[..., c, :]], dim=-1))
            centre = values[..., c, None]
            log_weight = log_weight + self._component_log_probs(centre, mean, log_s[..., c, :])
        return torch.stack(out, dim=-2)

    def _component_log_probs(self, centers: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
        """log P_m(k) of each component at bin centres ``centers`` (broadcast with (..., M))."""
        delta = 1.0 / (self.levels - 1)
        inv_s = torch.exp(-log_s)
        upper = (centers + delta - mu) * inv_s  # argument of σ at the bin's upper edge
        lower = (centers - delta - mu) * inv_s
        top = 1.0 - 1e-6  # x_k = 1 up to rounding: the last level
        bottom = -1.0 + 1e-6
        middle = log_sigmoid_difference(upper, lower)
        first = F.logsigmoid(upper)  # k = 0: σ(upper) − σ(−∞)
        last = F.logsigmoid(-lower)  # k = K−1: 1 − σ(lower)
        return torch.where(centers < bottom, first, torch.where(centers > top, last, middle))

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        log_pi, mu, log_s = self._split(params)  # (..., M)
        centers = (2.0 * x.to(mu.dtype) / (self.levels - 1) - 1.0).unsqueeze(-1)  # (..., 1)
        return torch.logsumexp(log_pi + self._component_log_probs(centers, mu, log_s), dim=-1)

    def level_log_probs(self, params: Tensor) -> Tensor:
        log_pi, mu, log_s = self._split(params)
        centers = torch.linspace(-1.0, 1.0, self.levels, dtype=mu.dtype, device=mu.device)
        shape = (1,) * (mu.dim() - 1) + (self.levels, 1)
        per = self._component_log_probs(centers.reshape(shape), mu.unsqueeze(-2), log_s.unsqueeze(-2))  # (..., K, M)
        return torch.logsumexp(log_pi.unsqueeze(-2) + per, dim=-1)

