"""``transformer``: a causal decoder-only Transformer over the dimensions in raster order.

p(x) = Π_t p(x_t | x_<t) with every conditional a softmax over the K levels, computed for all t in one
pass by causal self-attention (Vaswani et al. 2017; the image-as-sequence setting of Chen et al. 2020,
"Generative Pretraining from Pixels"). Sampling uses cached keys and values: one position per
network step, D steps in all. Images get a row/column (and channel) position embedding
(``positions="grid"``), other data learned or sinusoidal positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..accepts import FLATTENED
from ..core import register_model
from ..data.base import DataSpec
from ..nn.transformer import CausalTransformer
from .base import AutoregressiveModel, HybridConfig

__all__ = ["Transformer", "TransformerConfig"]


@dataclass
class TransformerConfig(HybridConfig):
    """Args:
    dim: model width.
    layers: Transformer blocks.
    heads: attention heads (must divide dim).
    dropout: dropout on attention, residual branches and embeddings.
    positions: "grid" (a learned embedding per row, column and channel of an image; per position
        for vectors), "learned" (one per position) or "sinusoidal" (fixed).
    conditional: model p(x | y) with a class embedding at the start position (needs labelled data).
    checkpointing: gradient checkpointing of the Transformer blocks in training (less memory, more time).
    """

    dim: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.0
    positions: str = "grid"
    conditional: bool = False
    checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.dim < 1 or self.layers < 1 or self.heads < 1:
            raise ValueError("dim, layers and heads must be ≥ 1")
        if self.dim % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide dim ({self.dim})")
        if self.positions not in ("grid", "learned", "sinusoidal"):
            raise ValueError(f"positions must be 'grid', 'learned' or 'sinusoidal', got {self.positions!r}")
        if self.positions == "sinusoidal" and self.dim % 2:
            raise ValueError("sinusoidal positions need an even dim")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@register_model("transformer")
class Transformer(AutoregressiveModel):
    """Causal Transformer over the flattened example (raster order, channels outermost)."""

    Config = TransformerConfig
    accepts = FLATTENED

    def __init__(self, config: TransformerConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.net = CausalTransformer(
            spec.levels,
            spec.dims,
            dim=config.dim,
            layers=config.layers,
            heads=config.heads,
            dropout=config.dropout,
            positions=config.positions,
            grid=spec.shape,
            num_classes=self.num_classes,
            checkpointing=config.checkpointing,
        )

    def input_features(self, x: Tensor) -> Tensor:
        return self.net.token(x.reshape(len(x), -1))  # (B, D, dim)

    def params_from_features(self, features: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        return self.net(features, y)  # (B, D, K)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        use_cache: bool = True,
    ) -> Tensor:
        """Ancestral sampling; with ``use_cache`` one position per step from cached keys/values
        (D steps), without it a full pass per dimension (the reference the cache must match)."""
        self.check_temperature(temperature)
        y = self.labels(y, n, generator, draw=True)
        if not use_cache:
            return self._sample_ordering(n, y, 0, generator, temperature)
        x = torch.zeros(n, self.spec.dims, dtype=torch.int64, device=self.device)
        cache = self.net.new_cache()
        for t in range(self.spec.dims):
            logits = self.net.step(x[:, t - 1] if t else None, t, cache, y, n)  # (n, K)
            x[:, t] = self.draw(logits, generator, temperature)
        return x.reshape(n, *self.spec.shape)
