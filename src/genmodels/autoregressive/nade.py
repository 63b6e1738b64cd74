"""``nade``: the neural autoregressive distribution estimator (Larochelle & Murray 2011), K levels.

One hidden layer whose input weights are shared across the conditionals (eqs. 5–6):

    a_1 = c (+ E y),   a_{i+1} = a_i + W_{·,i} x̃_i,   h_i = σ(a_i),
    p(x_i = k | x_<i) = softmax_k(b_i + V_i h_i),

so all D conditionals cost O(D·H) (a cumulative sum), not O(D²·H). x̃_i is the one-hot code of x_i
(K inputs) or its value scaled to [−1, 1]; the output is a softmax over the K levels per dimension
(for K = 2 it is the original sigmoid).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..baselines.independent import smoothed_log_marginals
from ..core import Batch, ModelConfig, register_model
from ..data.base import DataSpec
from .base import AutoregressiveModel, check_temperature
from .made import ONE_HOT_MAX_LEVELS

__all__ = ["NADE", "NADEConfig"]


@dataclass
class NADEConfig(ModelConfig):
    """Args:
    hidden: H, the width of the shared hidden layer.
    input_encoding: "onehot" (K inputs per dimension), "scalar" (the value scaled to [−1, 1]) or
        "auto" (one-hot up to 32 levels).
    marginal_init: start the output biases at the training marginals (the ``independent`` fit).
    conditional: model p(x | y) with a label embedding added to a_1 (needs labelled data).
    """

    hidden: int = 128
    input_encoding: str = "auto"
    marginal_init: bool = True
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"hidden must be ≥ 1, got {self.hidden}")
        if self.input_encoding not in ("auto", "onehot", "scalar"):
            raise ValueError(f"input_encoding must be 'auto', 'onehot' or 'scalar', got {self.input_encoding!r}")


@register_model("nade")
class NADE(AutoregressiveModel):
    """NADE in raster order with a K-way softmax per dimension."""

    Config = NADEConfig

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
        # a_i = a_1 + Σ_{j<i} W_{·,j} x̃_j: an exclusive cumulative sum over the dimensions.
        a = torch.cumsum(contributions, dim=1) - contributions + self._a1(y, len(features)).unsqueeze(1)
        h = torch.sigmoid(a)  # (B, D, H)
        return torch.einsum("bih,ikh->bik", h, self.V) + self.b  # (B, D, K)

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
        check_temperature(temperature)
        y = self.labels(y, n, generator, draw=True)
        x = torch.zeros(n, self.spec.dims, dtype=torch.int64, device=self.device)
        a = self._a1(y, n).clone()  # (n, H)
        for i in range(self.spec.dims):
            logits = torch.sigmoid(a) @ self.V[i].T + self.b[i]  # (n, K)
            x[:, i] = self.draw(logits, generator, temperature)
            feature = self.input_features(x[:, i : i + 1])[:, 0]  # (n, F)
            a += feature @ self.W[i]
        return x.reshape(n, *self.spec.shape)
