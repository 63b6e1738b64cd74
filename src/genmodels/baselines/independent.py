"""``independent``: one categorical per dimension, p(x) = Π_i Cat(x_i; π_i), fitted in closed form.

The honest floor every model must beat. π_i is the smoothed maximum-likelihood estimate
π_ik = (n_ik + α) / (N + Kα) (add-α smoothing; α = 1/2 is the Krichevsky–Trofimov estimator), which
keeps a level never seen in training from getting probability zero on the test set.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..accepts import FLATTENED
from ..core import Batch, GenerativeModel, LikelihoodKind, ModelConfig, register_model
from ..data.base import DataSpec

__all__ = ["Independent", "IndependentConfig", "smoothed_log_marginals"]


@torch.no_grad()
def smoothed_log_marginals(
    batches: Iterable[Batch], spec: DataSpec, pseudocount: float, device: torch.device | str = "cpu"
) -> Tensor:
    """log π_ik = log (n_ik + α) / (N + Kα): each dimension's smoothed level frequencies, (D, K)."""
    counts = torch.zeros(spec.dims, spec.levels, dtype=torch.float64, device=device)
    total = 0
    for batch in batches:
        x = batch.x.reshape(len(batch), -1).to(device)  # (B, D)
        counts += F.one_hot(x, spec.levels).sum(dim=0).to(torch.float64)  # (D, K)
        total += len(batch)
    return ((counts + pseudocount) / (total + spec.levels * pseudocount)).log().to(torch.float32)


@dataclass
class IndependentConfig(ModelConfig):
    """Args:
    pseudocount: α, added to every level's count before normalizing (must be > 0).
    """

    pseudocount: float = 0.5

    def __post_init__(self) -> None:
        if not self.pseudocount > 0:
            raise ValueError("pseudocount must be > 0, or an unseen level gets probability zero")


@register_model("independent")
class Independent(GenerativeModel):
    """Independent per-dimension categoricals; no trainable parameters (fitted by ``initialize``)."""

    Config = IndependentConfig
    accepts = FLATTENED
    likelihood_kind = LikelihoodKind.EXACT

    def __init__(self, config: IndependentConfig, spec: DataSpec):
        super().__init__(config, spec)
        dims, levels = spec.dims, spec.levels
        # (D, K) unnormalized log-probabilities (normalized by log_softmax where used); uniform until fitted.
        self.register_buffer("logits", torch.zeros(dims, levels))

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        self.logits.copy_(smoothed_log_marginals(batches, self.spec, self.config.pseudocount, self.logits.device))

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        flat = x.reshape(len(x), -1)  # (B, D)
        log_probs = F.log_softmax(self.logits, dim=1)  # (D, K)
        per_dim = log_probs.unsqueeze(0).expand(len(x), -1, -1).gather(2, flat.unsqueeze(2))  # (B, D, 1)
        return per_dim.squeeze(2).sum(dim=1)

    def num_parameters(self) -> int:
        """The fitted probabilities count as parameters, although no gradient trains them."""
        return self.logits.numel()

    @torch.no_grad()
    def sample(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        probs = F.softmax(self.logits, dim=1)  # (D, K)
        draws = torch.multinomial(probs, n, replacement=True, generator=generator)  # (D, n)
        return draws.T.reshape(n, *self.spec.shape)
