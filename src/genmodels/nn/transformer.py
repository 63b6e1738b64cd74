"""A causal decoder-only Transformer over a token sequence, with a key/value cache.

Generic over what the tokens are (pixel levels, VQ codes): ``vocab_size`` tokens, a sequence of
``length``, an optional class embedding and three kinds of position embedding:

- ``"learned"``: one learned vector per position (GPT-2);
- ``"sinusoidal"``: the fixed sines and cosines of Vaswani et al. 2017, sec. 3.5;
- ``"grid"``: a learned embedding per axis of a grid (e.g. rows and columns of an image, or of a
  code grid), summed: position (r, c) gets row[r] + col[c].

The network predicts token t from tokens < t: its input at position t is a start vector (plus the
class embedding) for t = 0 and the embedding of token t−1 after, plus the position embedding of t.
:meth:`CausalTransformer.step` runs one position at a time with cached keys and values, so sampling
a sequence costs ``length`` evaluations of one position each (O(T) steps, not O(T²) positions).
Pre-norm blocks (GPT-2, Radford et al. 2019).
"""

from __future__ import annotations

import math

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CausalTransformer", "KVCache", "sinusoidal_positions"]


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """(length, dim): PE[p, 2i] = sin(p / 10000^{2i/d}), PE[p, 2i+1] = cos(·) (Vaswani et al. 2017)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * freq)
    pe[:, 1::2] = torch.cos(position * freq)[:, : dim // 2]
    return pe


class KVCache:
    """Keys and values of every layer for the positions computed so far: (B, heads, T, head_dim)."""

    def __init__(self, layers: int):
        self.keys: list[Tensor | None] = [None] * layers
        self.values: list[Tensor | None] = [None] * layers

    def extend(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))  # (B, h, T, hd)
        if cache is None:
            causal = True
        else:
            # New positions attend to every cached one and causally among themselves.
            k, v = cache.extend(layer, k, v)
            causal = T > 1
            if causal and k.shape[2] != T:
                raise ValueError("a cached step must add one position at a time after the first call")
        out = F.scaled_dot_product_attention(
            q, k, v, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, T, hd)
        return self.resid_dropout(self.proj(out.transpose(1, 2).reshape(B, T, C)))


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, mlp_ratio: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = _Attention(dim, heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class CausalTransformer(nn.Module):
    """Decoder-only Transformer: p(s_t | s_<t, y) for a sequence s of ``length`` tokens.

    Args:
        vocab_size: how many tokens there are (K levels, or a codebook's size).
        length: T, the sequence length.
        dim: model width.
        layers: Transformer blocks.
        heads: attention heads (must divide ``dim``).
        dropout: dropout on attention weights, residual branches and embeddings.
        positions: "learned", "sinusoidal" or "grid".
        grid: the grid's shape for positions="grid" (its product must be ``length``), e.g. (H, W).
        num_classes: size of the class embedding (added to the start vector), or None.
        out_features: width of each position's output (default ``vocab_size`` logits).
        mlp_ratio: hidden width of the MLPs, in multiples of ``dim``.
        checkpointing: in training, recompute each block's activations in the backward pass instead
            of keeping them (gradient checkpointing: memory of one block, about one more forward).
    """

    def __init__(
        self,
        vocab_size: int,
        length: int,
        *,
        dim: int = 64,
        layers: int = 2,
        heads: int = 4,
        dropout: float = 0.0,
        positions: str = "learned",
        grid: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        out_features: int | None = None,
        mlp_ratio: int = 4,
        checkpointing: bool = False,
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"heads ({heads}) must divide dim ({dim})")
        self.length = length
        self.positions = positions
        self.checkpointing = checkpointing
        self.token = nn.Embedding(vocab_size, dim)
        self.start = nn.Parameter(torch.randn(dim) * 0.02)
        self.label = nn.Embedding(num_classes, dim) if num_classes else None
        if positions == "learned":
            self.position = nn.Parameter(torch.randn(length, dim) * 0.02)
        elif positions == "sinusoidal":
            self.register_buffer("position", sinusoidal_positions(length, dim), persistent=False)
        elif positions == "grid":
            grid = tuple(grid or (length,))
            if math.prod(grid) != length:
                raise ValueError(f"the grid {grid} does not hold {length} positions")
            self.grid = grid
            self.axes = nn.ParameterList(nn.Parameter(torch.randn(size, dim) * 0.02) for size in grid)
        else:
            raise ValueError(f"positions must be 'learned', 'sinusoidal' or 'grid', got {positions!r}")
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(_Block(dim, heads, dropout, mlp_ratio) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_features or vocab_size)
        nn.init.zeros_(self.head.weight)

    def position_embedding(self) -> Tensor:
        """(T, dim): the embedding of every position."""
        if self.positions != "grid":
            return self.position
        total = 0
        for axis, table in enumerate(self.axes):
            shape = [1] * len(self.grid) + [table.shape[1]]
            shape[axis] = self.grid[axis]
            total = total + table.reshape(shape)
        return total.reshape(self.length, -1)

    def start_vector(self, n: int, y: Tensor | None) -> Tensor:
        """(n, dim): the input at position 0, the start vector plus the class embedding."""
        start = self.start.expand(n, -1)
        return start + self.label(y) if self.label is not None and y is not None else start

    def forward(self, embedded: Tensor, y: Tensor | None = None) -> Tensor:
        """Every position at once: ``embedded`` (B, T, dim) token embeddings of s → (B, T, out).

        Output t is computed from s_<t only (the input is shifted right by one position).
        """
        B, T, _ = embedded.shape
        inputs = torch.cat([self.start_vector(B, y).unsqueeze(1), embedded[:, :-1]], dim=1)  # (B, T, dim)
        h = self.drop(inputs + self.position_embedding()[:T])
        recompute = self.checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            # Non-reentrant checkpointing replays dropout with the RNG state of the first forward.
            h = torch.utils.checkpoint.checkpoint(block, h, use_reentrant=False) if recompute else block(h)
        return self.head(self.ln_f(h))

    def logits(self, tokens: Tensor, y: Tensor | None = None) -> Tensor:
        """(B, T) tokens → (B, T, out)."""
        return self(self.token(tokens), y)

    def new_cache(self) -> KVCache:
        return KVCache(len(self.blocks))

    def step(self, previous: Tensor | None, t: int, cache: KVCache, y: Tensor | None = None, n: int | None = None) -> Tensor:
        """Output at position t alone, from the cache of positions < t.

        Args:
            previous: (B,) token s_{t−1}, or None at t = 0.
            t: the position.
            cache: filled by the calls for positions 0..t−1.
            y: labels (B,) for a class-conditional network.
            n: the batch size at t = 0 (when there is no previous token).

        Returns:
            (B, out) the output at position t.
        """
        if previous is None:
            x = self.start_vector(n if n is not None else (len(y) if y is not None else 1), y)
        else:
            x = self.token(previous)
        h = (x + self.position_embedding()[t]).unsqueeze(1)  # (B, 1, dim)
        for layer, block in enumerate(self.blocks):
            h = block(h, cache, layer)
        return self.head(self.ln_f(h))[:, 0]
