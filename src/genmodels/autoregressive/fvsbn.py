"""``fvsbn``: the fully visible sigmoid belief net, generalized to K levels.

Each dimension's distribution is a softmax regression on the dimensions before it, in raster order
(Frey 1998; Gan et al. 2015, "Learning deep sigmoid belief networks", eq. 1, with a softmax over K
levels in place of the sigmoid):

    p(x_i = k | x_<i) = softmax_k( b_ik + Σ_{j<i} W_ikj x̃_j ),   x̃_j = x_j / (K−1) − 1/2.

With ``rank`` r > 0 the weights are factored, W_i = U_i V_i with U_i of shape (K, r) and V_i of
shape (r, D), so that K = 256 images fit in memory (the full W has D²K entries).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accepts import FLATTENED
from ..baselines.independent import smoothed_log_marginals
from ..core import Batch, GenerativeModel, LikelihoodKind, Loss, ModelConfig, OptimizerGroup, register_model
from ..data.base import DataSpec
from ..progress import sampling_step
from .base import l2_penalty

__all__ = ["FVSBN", "FVSBNConfig"]

#: Above this many weights (D²K) the automatic choice factors W (rank 16) instead of keeping it full.
FULL_WEIGHT_LIMIT = 2**22


@dataclass
class FVSBNConfig(ModelConfig):
    """Args:
    rank: 0 for full weights W (D, K, D); r > 0 factors each W_i into (K, r)·(r, D);
        None chooses full when D²K ≤ 4 194 304, else 16.
    marginal_init: start the biases at the training marginals (the ``independent`` fit), so that
        training begins at the floor it must beat.
    l2: λ of a Gaussian prior on the weights (not the biases): the loss adds (λ/2)·‖W‖² to the mean NLL,
        i.e. logistic regression's L2 penalty with C = 1/(λN) for N training examples.
    """

    rank: int | None = None
    marginal_init: bool = True
    l2: float = 0.0

    def __post_init__(self) -> None:
        if self.rank is not None and self.rank < 0:
            raise ValueError(f"rank must be ≥ 0 (0: full weights) or None, got {self.rank}")
        if not self.l2 >= 0:
            raise ValueError(f"l2 must be ≥ 0, got {self.l2}")


@register_model("fvsbn")
class FVSBN(GenerativeModel):
    """Softmax regression of each dimension on the ones before it (an exact likelihood)."""

    Config = FVSBNConfig
    accepts = FLATTENED
    likelihood_kind = LikelihoodKind.EXACT

    def __init__(self, config: FVSBNConfig, spec: DataSpec):
        super().__init__(config, spec)
        dims, levels = spec.dims, spec.levels
        rank = config.rank
        if rank is None:
            rank = 0 if dims * dims * levels <= FULL_WEIGHT_LIMIT else 16
        self.rank = rank
        # mask[i, j] = 1 iff j < i: dimension i sees only the dimensions before it.
        self.register_buffer("mask", torch.ones(dims, dims).tril(diagonal=-1))
        self.bias = nn.Parameter(torch.zeros(dims, levels))
        if rank == 0:
            self.weight = nn.Parameter(torch.zeros(dims, levels, dims))  # W[i, k, j]
        else:
            self.in_proj = nn.Parameter(torch.randn(dims, rank, dims) * dims**-0.5)  # V[i, r, j]
            self.out_proj = nn.Parameter(torch.zeros(dims, levels, rank))  # U[i, k, r]

    def _inputs(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), -1).to(self.bias.dtype) / (self.spec.levels - 1) - 0.5  # (B, D)

    def conditional_logits(self, x: Tensor) -> Tensor:
        """Logits of p(x_i | x_<i) for every i at once: (B, D, K)."""
        inputs = self._inputs(x)  # (B, D)
        if self.rank == 0:
            weight = self.weight * self.mask.unsqueeze(1)  # (D, K, D)
            logits = torch.einsum("bj,ikj->bik", inputs, weight)
        else:
            hidden = torch.einsum("bj,irj->bir", inputs, self.in_proj * self.mask.unsqueeze(1))  # (B, D, r)
            logits = torch.einsum("bir,ikr->bik", hidden, self.out_proj)
        return logits + self.bias

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        log_p = F.log_softmax(self.conditional_logits(x), dim=-1)  # (B, D, K)
        return log_p.gather(2, x.reshape(len(x), -1, 1)).squeeze(2).sum(dim=1)

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        out = super().loss(batch, step=step, group=group)  # the mean NLL, with its per-example terms
        weights = [self.weight] if self.rank == 0 else [self.in_proj, self.out_proj]
        return Loss(out.loss + l2_penalty(self.config.l2, weights), out.terms)

    def optimizer_groups(self) -> dict[str, OptimizerGroup]:
        """One group whose biases are exempt from weight decay: as in a logistic regression, the
        penalty shrinks the weights between dimensions, not each dimension's own marginal."""
        return {"model": OptimizerGroup([p for p in self.parameters() if p.requires_grad], no_decay=[self.bias])}

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        if not self.config.marginal_init:
            return
        # With W = 0 this is exactly the `independent` model's fit (add-1/2 smoothing).
        self.bias.copy_(smoothed_log_marginals(batches, self.spec, 0.5, self.bias.device))

    @torch.no_grad()
    def sample(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Ancestral sampling in raster order; ``temperature`` divides every conditional's logits
        (below 1 sharper, above 1 flatter; 1 samples the model itself)."""
        self.check_temperature(temperature)
        dims = self.spec.dims
        x = torch.zeros(n, dims, dtype=torch.int64, device=self.bias.device)
        for i in range(dims):
            inputs = self._inputs(x)  # (n, D); the mask ignores the not-yet-sampled j ≥ i
            if self.rank == 0:
                logits = inputs @ (self.weight[i] * self.mask[i]).T  # (n, K)
            else:
                logits = (inputs @ (self.in_proj[i] * self.mask[i]).T) @ self.out_proj[i].T
            probs = F.softmax((logits + self.bias[i]) / temperature, dim=-1)
            x[:, i] = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            sampling_step(dims)  # one position of the draw: its progress line counts it
        return x.reshape(n, *self.spec.shape)
