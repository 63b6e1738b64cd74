"""``nade``: the neural autoregressive distribution estimator (Larochelle & Murray 2011), K levels.

One hidden layer whose input weights are shared across the conditionals (eqs. 5–6):

    a_1 = c (+ E y),   a_{i+1} = a_i + W_{·,i} x̃_i,   h_i = σ(a_i),
    p(x_i = k | x_<i) = softmax_k(b_i + V_i h_i),

so all D conditionals cost O(D·H) (a cumulative sum), not O(D²·H). x̃_i is the one-hot code of x_i
(K inputs) or its value scaled to [−1, 1]; the output is a softmax over the K levels per dimension
(for K = 2 it is the original sigmoid).

Regularization for small data sets (digits has 1 257 training images): ``l2``, a Gaussian prior on the
weights; ``dropout`` on the hidden units h_i in training; and ``direct`` connections, a linear term
Σ_{j<i} A_{i,·,j} x̄_j on every conditional's logits (fvsbn's model, with x̄_j the value in [−1, 1]),
so that NADE contains fvsbn and its hidden layer learns what the linear term misses.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accepts import FLATTENED
from ..baselines.independent import smoothed_log_marginals
from ..core import Batch, Loss, register_model
from ..data.base import DataSpec
from .base import AutoregressiveModel, HybridConfig, l2_penalty
from .made import ONE_HOT_MAX_LEVELS, scaled_values

__all__ = ["NADE", "NADEConfig"]


@dataclass
class NADEConfig(HybridConfig):
    """Args:
    hidden: H, the width of the shared hidden layer.
    input_encoding: "onehot" (K inputs per dimension), "scalar" (the value scaled to [−1, 1]) or
        "auto" (one-hot up to 32 levels).
    marginal_init: start the output biases at the training marginals (the ``independent`` fit).
    l2: λ of a Gaussian prior on the weights (W, V, the direct A and the label embedding; not the
        biases): the training loss adds (λ/2)·‖W‖² to the mean NLL, as fvsbn's ``l2``.
    dropout: probability of zeroing each hidden unit h_i during training (inverted dropout, off in
        evaluation and sampling, so the likelihood stays exact).
    direct: add direct connections, a linear term Σ_{j<i} A_{i,k,j} x̄_j (fvsbn's) on the logits,
        x̄_j the value in [−1, 1]; A starts at zero. D²K weights: for small images.
    conditional: model p(x | y) with a label embedding added to a_1 (needs labelled data).
    """

    hidden: int = 128
    input_encoding: str = "auto"
    marginal_init: bool = True
    l2: float = 0.0
    dropout: float = 0.0
    direct: bool = False
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"hidden must be ≥ 1, got {self.hidden}")
        if not self.l2 >= 0:
            raise ValueError(f"l2 must be ≥ 0, got {self.l2}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.input_encoding not in ("auto", "onehot", "scalar"):
            raise ValueError(f"input_encoding must be 'auto', 'onehot' or 'scalar', got {self.input_encoding!r}")


@register_model("nade")
class NADE(AutoregressiveModel):
    """NADE in raster order with a K-way softmax per dimension."""

    Config = NADEConfig
    accepts = FLATTENED

    def __init__(self, config: NADEConfig, spec: DataSpec):
        super().__init__(config, spec)
        dims, levels, hidden = spec.dims, spec.levels, config.hidden
        encoding = config.input_encoding
        if encoding == "auto":
            encoding = "onehot" if levels <= ONE_HOT_MAX_LEVELS else "scalar"
        self.encoding = encoding
        features = levels if encoding == "onehot" else 1
        self.W = nn.Parameter(torch.randn(dims, features, hidden) * (dims * features) ** -0.5)  # W[i, f, h]
        self.c = nn.Parameter(torch.zeros(hidden))
        self.V = nn.Parameter(torch.randn(dims, levels, hidden) * hidden**-0.5)  # V[i, k, h]
        self.b = nn.Parameter(torch.zeros(dims, levels))
        self.label = nn.Embedding(self.num_classes, hidden) if self.conditional else None
        # Direct connections A[i, k, j], used only for j < i (the strictly lower-triangular mask).
        self.A = nn.Parameter(torch.zeros(dims, levels, dims)) if config.direct else None
        if self.A is not None:
            self.register_buffer("direct_mask", torch.ones(dims, dims).tril(diagonal=-1).unsqueeze(1))  # (D, 1, D)

    def input_features(self, x: Tensor) -> Tensor:
        flat = x.reshape(len(x), -1)  # (B, D)
        if self.encoding == "onehot":
            return F.one_hot(flat, self.spec.levels).to(self.W.dtype)  # (B, D, K)
        return (2.0 * flat.to(self.W.dtype) / (self.spec.levels - 1) - 1.0).unsqueeze(-1)  # (B, D, 1)

    def _a1(self, y: Tensor | None, n: int) -> Tensor:
        a = self.c.expand(n, -1)
        return a + self.label(y) if self.label is not None and y is not None else a

    def params_from_features(self, features: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        contributions = torch.einsum("bif,ifh->bih", features, self.W)  # W_{·,i} x̃_i: (B, D, H)
        # a_i = a_1 + Σ_{j<i} W_{·,j} x̃_j: an exclusive cumulative sum over the dimensions, as one
        # product with the strictly lower-triangular ones (D, D) that adds a_1 in the same pass. The
        # einsum lays the contributions out as (D, B·H) in memory, which the product reads once;
        # torch's CPU scan (cumsum) strides across them, and its backward flips and scans again.
        B, D = contributions.shape[:2]
        before = torch.ones(D, D, dtype=contributions.dtype, device=contributions.device).tril(-1)  # j < i
        a1 = self._a1(y, B).reshape(1, -1)  # (1, B·H), the same for every i
        a = torch.addmm(a1, before, contributions.transpose(0, 1).reshape(D, -1)).reshape(D, B, -1).transpose(0, 1)
        h = F.dropout(torch.sigmoid(a), self.config.dropout, self.training)  # (B, D, H)
        logits = torch.einsum("bih,ikh->bik", h, self.V) + self.b  # (B, D, K)
        if self.A is not None:
            values = scaled_values(features, self.encoding, self.spec.levels)  # (B, D)
            logits = logits + torch.einsum("bj,ikj->bik", values, self.A * self.direct_mask)
        return logits

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        """The mean NLL (per-example term ``nll``) plus the ``l2`` prior's penalty."""
        out = super().loss(batch, step=step, group=group)
        return Loss(out.loss + l2_penalty(self.config.l2, self.weights()), out.terms)

    def weights(self) -> list[Tensor]:
        """The weights under the ``l2`` prior (not the biases c and b)."""
        return [w for w in (self.W, self.V, self.A, None if self.label is None else self.label.weight) if w is not None]

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        if self.config.marginal_init:
            # The output starts at the training marginals plus the (small) V h term.
            self.b.copy_(smoothed_log_marginals(batches, self.spec, 0.5, self.b.device))

    @torch.no_grad()
    def sample(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Ancestral sampling in O(D·H) per sample, updating a_i as each x_i is drawn."""
        self.check_temperature(temperature)
        y = self.labels(y, n, generator, draw=True)
        x = torch.zeros(n, self.spec.dims, dtype=torch.int64, device=self.device)
        a = self._a1(y, n).clone()  # (n, H)
        values = torch.zeros(n, self.spec.dims, dtype=a.dtype, device=self.device)  # x̄_j, 0 until drawn
        for i in range(self.spec.dims):
            logits = torch.sigmoid(a) @ self.V[i].T + self.b[i]  # (n, K)
            if self.A is not None:
                logits = logits + values @ (self.A[i] * self.direct_mask[i]).T
            x[:, i] = self.draw(logits, generator, temperature)
            feature = self.input_features(x[:, i : i + 1])[:, 0]  # (n, F)
            a += feature @ self.W[i]
            if self.A is not None:
                values[:, i] = scaled_values(feature.unsqueeze(1), self.encoding, self.spec.levels)[:, 0]
        return x.reshape(n, *self.spec.shape)
