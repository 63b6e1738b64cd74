"""``rnn``: an LSTM or GRU over the dimensions in raster order.

h_t = RNN(h_{t−1}, e(x_{t−1}) + E y), p(x_t | x_<t) = softmax(W h_t + b), with e(x_{−1}) a learned
start vector (the pixel RNN of Theis & Bethge 2015 and van den Oord et al. 2016a in its simplest
one-dimensional form). Training runs the whole sequence through ``nn.LSTM``/``nn.GRU`` (cuDNN on a
GPU); sampling carries the state, one step per dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..accepts import FLATTENED
from ..core import register_model
from ..data.base import DataSpec
from .base import AutoregressiveModel, HybridConfig

__all__ = ["RNN", "RNNConfig"]


@dataclass
class RNNConfig(HybridConfig):
    """Args:
    cell: "lstm" or "gru".
    hidden: width of the recurrent state.
    layers: stacked recurrent layers.
    embedding: width of the level embedding fed at each step.
    dropout: dropout between stacked layers and before the output.
    conditional: model p(x | y) with a label embedding added to every step's input (needs labels).
    """

    cell: str = "lstm"
    hidden: int = 128
    layers: int = 1
    embedding: int = 32
    dropout: float = 0.0
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {self.cell!r}")
        if self.hidden < 1 or self.layers < 1 or self.embedding < 1:
            raise ValueError("hidden, layers and embedding must be ≥ 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@register_model("rnn")
class RNN(AutoregressiveModel):
    """A recurrent network over the flattened example, a softmax over the levels per step."""

    Config = RNNConfig
    accepts = FLATTENED

    def __init__(self, config: RNNConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.embed = nn.Embedding(spec.levels, config.embedding)
        self.start = nn.Parameter(torch.randn(config.embedding) * 0.1)
        self.label = nn.Embedding(self.num_classes, config.embedding) if self.conditional else None
        cell = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = cell(
            config.embedding,
            config.hidden,
            num_layers=config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden, spec.levels)

    def input_features(self, x: Tensor) -> Tensor:
        return self.embed(x.reshape(len(x), -1))  # (B, D, E)

    def _inputs(self, previous: Tensor, y: Tensor | None) -> Tensor:
        return previous + self.label(y).unsqueeze(1) if self.label is not None and y is not None else previous

    def params_from_features(self, features: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        B = len(features)
        previous = torch.cat([self.start.expand(B, 1, -1), features[:, :-1]], dim=1)  # e(x_{t−1}): (B, D, E)
        h, _ = self.rnn(self._inputs(previous, y))  # (B, D, hidden)
        return self.out(self.drop(h))  # (B, D, K)

    @torch.no_grad()
    def sample(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Ancestral sampling carrying the recurrent state: one step per dimension."""
        self.check_temperature(temperature)
        y = self.labels(y, n, generator, draw=True)
        x = torch.zeros(n, self.spec.dims, dtype=torch.int64, device=self.device)
        previous = self.start.expand(n, 1, -1)
        state = None
        for t in range(self.spec.dims):
            h, state = self.rnn(self._inputs(previous, y), state)  # (n, 1, hidden)
            x[:, t] = self.draw(self.out(h[:, 0]), generator, temperature)
            previous = self.embed(x[:, t : t + 1])
        return x.reshape(n, *self.spec.shape)
