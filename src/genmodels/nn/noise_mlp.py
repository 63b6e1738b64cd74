"""An MLP denoiser network for vector data (toy 2-D sets): F(x, c_noise, labels) with the
noise-level (and class) embedding of :class:`~genmodels.nn.unet.NoiseEmbedding` added to every layer."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .unet import NoiseEmbedding

__all__ = ["NoiseConditionedMLP"]


class NoiseConditionedMLP(nn.Module):
    """F(x, c_noise, labels) for x of shape (B, D).

    Args:
        dims: D.
        hidden: width of the hidden layers.
        depth: number of hidden residual layers.
        num_classes: labels for class conditioning (None: unconditional).
    """

    def __init__(self, dims: int, hidden: int = 128, depth: int = 3, num_classes: int | None = None):
        super().__init__()
        self.embed = NoiseEmbedding(hidden, num_classes)
        self.inp = nn.Linear(dims, hidden)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.emb_proj = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(depth))
        self.out = nn.Linear(hidden, dims)

    def forward(self, x: Tensor, c_noise: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.embed(c_noise.expand(len(x)) if c_noise.dim() == 0 else c_noise, labels)
        h = self.inp(x)
        for layer, proj in zip(self.layers, self.emb_proj):
            h = h + layer(F.silu(h + proj(F.silu(emb))))  # (B, hidden)
        return self.out(F.silu(h))
