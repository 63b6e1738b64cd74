"""What every autoregressive model shares: p(x | y) = Π_t p(x_{σ(t)} | x_{σ(<t)}, y) for an ordering σ.

A model maps the data to per-dimension input *features* (a differentiable stand-in for the levels:
scaled values, one-hot codes or token embeddings), and the features to the parameters of every
conditional at once. Splitting the two lets :mod:`~genmodels.autoregressive.audit` prove causality by
gradients: the parameters of dimension σ(t) must not depend on the features of σ(t), σ(t+1), ….

Subclasses implement :meth:`AutoregressiveModel.input_features` and
:meth:`AutoregressiveModel.params_from_features`; the exact ``log_prob`` and an ancestral ``sample``
(one network evaluation per dimension) come from here. Models with a cheaper incremental step (NADE,
the RNN, the Transformer's key/value cache) override ``sample``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import Batch, GenerativeModel, LikelihoodKind, Loss, ModelConfig
from ..data.base import DataSpec
from ..errors import UserError, option
from ..nn.outputs import CategoricalHead, OutputHead
from ..progress import sampling_step

__all__ = ["AutoregressiveModel", "HybridConfig", "l2_penalty"]


def l2_penalty(l2: float, weights: Iterable[Tensor]) -> Tensor | float:
    """(λ/2)·Σ‖W‖²: a Gaussian prior N(0, 1/λ) on the weights, added to the mean NLL (fvsbn, nade, made)."""
    return 0.5 * l2 * sum((w * w).sum() for w in weights) if l2 > 0 else 0.0


@dataclass
class HybridConfig(ModelConfig):
    """Options every autoregressive model's config shares: the hybrid generative–discriminative objective.

    Args:
    label_weight: λ ≥ 0 of the hybrid objective of a class-conditional model (Bishop & Lasserre 2007;
        the "hybrid" of Larochelle & Bengio 2008): the loss adds λ·(−log p(y | x)), p(y | x) from the
        model's own log p(x | c) for every class c by Bayes' rule with a uniform p(y), so the same
        generative model learns to separate the classes. Training only: log p(x | y) stays exact and
        generative classification stays Bayes' rule. Each step then costs C + 1 passes instead of one.
    label_examples: how many of each batch's examples the label term uses (0: all): its cost is C
        passes per example, so a sub-batch keeps a step affordable on K-level images.
    """

    label_weight: float = 0.0
    label_examples: int = 0


class AutoregressiveModel(GenerativeModel):
    """Base of the autoregressive family (exact likelihood of discrete data).

    Attributes:
        head: the output distribution of one dimension (softmax or discretized logistic mixture).
    """

    likelihood_kind = LikelihoodKind.EXACT

    def __init__(self, config: ModelConfig, spec: DataSpec, head: OutputHead | None = None):
        super().__init__(config, spec)
        self.set_conditional(bool(getattr(config, "conditional", False)))
        self.num_classes = spec.num_classes if self.conditional else None
        self.head = head if head is not None else CategoricalHead(spec.levels)
        self.label_weight = float(getattr(config, "label_weight", 0.0))
        self.label_examples = int(getattr(config, "label_examples", 0))
        if not self.label_weight >= 0 or self.label_examples < 0:
            raise UserError(f"label_weight and label_examples must be ≥ 0, got {self.label_weight} and {self.label_examples}")
        if self.label_weight > 0 and not self.conditional:
            raise UserError("label_weight (the hybrid objective's −log p(y | x)) needs a class-conditional model: "
                            f"set conditional=true ({option('model_config')}) and give labelled data")

    # --- what subclasses provide ------------------------------------------------------------------
    @property
    def num_orderings(self) -> int:
        """How many orderings (MADE's ensemble) the model mixes; 1 for a single ordering."""
        return 1

    def ordering(self, index: int = 0) -> Tensor:
        """σ: the dimensions (indices into the flattened example) in the order they are generated."""
        return torch.arange(self.spec.dims, device=self.device)

    def input_features(self, x: Tensor) -> Tensor:
        """(B, *shape) levels → (B, D, F) float features, one row per dimension."""
        raise NotImplementedError

    def params_from_features(self, features: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        """(B, D, F) features → (B, D, P) parameters of every conditional p(x_i | x_<i) at once."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------
    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        """The mean NLL, plus the hybrid objective's label term when ``label_weight`` > 0."""
        return self.add_label_term(super().loss(batch, step=step, group=group), batch)

    def add_label_term(self, out: Loss, batch: Batch) -> Loss:
        """``out`` + λ·mean(−log p(y | x)) in training (term ``label_nll``), p(y | x) =
        softmax_c log p(x | c): the uniform prior's log(1/C) is the same for every class and cancels."""
        if self.label_weight == 0 or not self.training:
            return out
        n = self.label_examples or len(batch.x)
        x, y = batch.x[:n], self.labels(batch.y, len(batch.x))[:n]
        label_nll = F.cross_entropy(self.log_prob_per_label(x), y, reduction="none")
        return Loss(out.loss + self.label_weight * label_nll.mean(), {**out.terms, "label_nll": label_nll})

    def conditional_params(self, x: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        """(B, D, P) parameters of p(x_i | x_<i, y) for every dimension i (flattened order)."""
        return self.params_from_features(self.input_features(x), self.labels(y, len(x)), ordering)

    def log_prob_under(self, x: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        """Exact log p(x | y) in nats, (B,), under one ordering."""
        params = self.conditional_params(x, y, ordering)  # (B, D, P)
        return self.head.log_prob(params, x.reshape(len(x), -1)).sum(dim=1)

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.log_prob_under(x, y, 0)

    @torch.no_grad()
    def sample(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Ancestral sampling, one network evaluation per dimension; ``temperature`` T samples each
        conditional ∝ p(x_i | x_<i)^{1/T} (below 1 sharper, above 1 flatter, 1 the model itself)."""
        self.check_temperature(temperature)
        return self._sample_ordering(n, self.labels(y, n, generator, draw=True), 0, generator, temperature)

    def sample_with_info(self, n: int, **options) -> tuple[Tensor, dict]:
        """Samples and the sequential network steps behind them (one per dimension: D)."""
        return self.sample(n, **options), {"network_steps": self.spec.dims}

    def _sample_ordering(
        self, n: int, y: Tensor | None, ordering: int, generator: torch.Generator | None, temperature: float
    ) -> Tensor:
        x = torch.zeros(n, self.spec.dims, dtype=torch.int64, device=self.device)
        for d in self.ordering(ordering).tolist():
            params = self.params_from_features(self.input_features(x.reshape(n, *self.spec.shape)), y, ordering)
            x[:, d] = self.draw(params[:, d], generator, temperature)
        return x.reshape(n, *self.spec.shape)

    def draw(self, params: Tensor, generator: torch.Generator | None, temperature: float) -> Tensor:
        """One level per row from the head's distribution under ``params`` (n, P), tempered."""
        sampling_step(self.spec.dims)  # one position of the draw: its progress line counts it
        log_p = self.head.level_log_probs(params.float()) / temperature  # (n, K)
        probs = torch.softmax(log_p, dim=-1)
        if generator is not None and generator.device != probs.device:
            return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(probs.device)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
