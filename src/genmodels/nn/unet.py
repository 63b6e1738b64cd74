"""A small U-Net for denoisers (Ho et al. 2020, app. B; Ronneberger et al. 2015), with a noise-level
embedding, an optional class embedding (with a null class for classifier-free guidance), self-attention
at the lowest resolution and an optional gradient-checkpointing mode.

Inputs whose height or width is not divisible by 2^(levels − 1) are zero-padded and the output is
cropped back, so the same network serves 8×8 digits, 28×28 images and odd shapes like 2×5.

The embedding enters each residual block in one of two ways (``embedding``):

- ``add`` (Ho et al. 2020): a per-channel bias before the second group norm. The norm subtracts each
  group's mean, so only the differences between a group's channels get through, and nothing when a
  group is a single channel (8 groups of 8 channels or fewer): such networks get a warning.
- ``scale-shift`` (Dhariwal & Nichol 2021, "AdaGN"): h = GroupNorm(h)·(1 + s) + b after the norm, which
  nothing cancels, at twice the embedding projection's parameters.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

__all__ = ["SinusoidalEmbedding", "NoiseEmbedding", "UNet", "EMBEDDINGS", "erased_embedding_widths"]

#: how the noise/label embedding enters a residual block (module docstring)
EMBEDDINGS = ("add", "scale-shift")
#: channels of every GroupNorm group count (_norm)
_MAX_GROUPS = 8


class SinusoidalEmbedding(nn.Module):
    """Transformer positional embedding of a real position c (Vaswani et al. 2017, sec. 3.5):
    [cos(c ω_i), sin(c ω_i)], ω_i = 10000^{−i/(dim/2)}; positions of order 0..1000 are resolved."""

    def __init__(self, dim: int, max_positions: int = 10_000):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dim must be even, got {dim}")
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_positions) * torch.arange(half) / half), persistent=False)

    def forward(self, c: Tensor) -> Tensor:
        angles = c.float().reshape(-1, 1) * self.freqs  # (B, dim/2)
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class NoiseEmbedding(nn.Module):
    """c_noise (B,) and optional labels (B,) → an embedding (B, dim): sinusoid → MLP, plus a class
    embedding whose last row (index ``num_classes``) is the null label of classifier-free guidance."""

    def __init__(self, dim: int, num_classes: int | None = None):
        super().__init__()
        self.sinusoid = SinusoidalEmbedding(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.num_classes = num_classes
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes else None

    def forward(self, c_noise: Tensor, labels: Tensor | None = None) -> Tensor:
        emb = self.mlp(self.sinusoid(c_noise))
        if self.label is not None:
            if labels is None:
                labels = torch.full((len(emb),), self.num_classes, dtype=torch.long, device=emb.device)
            emb = emb + self.label(labels)
        return emb


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(_MAX_GROUPS, channels), channels)


def erased_embedding_widths(channels: int, channel_mults: tuple[int, ...]) -> list[int]:
    """The residual-block widths whose group norm has one channel per group: there an ``add``
    embedding is subtracted again by the norm (module docstring)."""
    return sorted({channels * m for m in channel_mults if math.gcd(_MAX_GROUPS, channels * m) == channels * m})


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, embedding: str = "add"):
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got '{embedding}'")
        self.scale_shift = embedding == "scale-shift"
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out if self.scale_shift else c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb(F.silu(emb))[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift  # AdaGN (Dhariwal & Nichol 2021, sec. 3)
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Single-head self-attention over the pixels of one feature map (Ho et al. 2020, app. B)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)  # (B, HW, C) each
        out = F.scaled_dot_product_attention(q, k, v)  # (B, HW, C)
        return x + self.out(out.transpose(-1, -2).reshape(b, c, h, w))


class UNet(nn.Module):
    """F(x, c_noise, labels) for images (B, C, H, W).

    Args:
        in_channels: C.
        channels: width of the first level.
        channel_mults: width multiplier per level; each level after the first halves the resolution.
        num_res_blocks: residual blocks per level.
        attention: self-attention in the middle (lowest resolution).
        num_classes: the number of labels for class conditioning (None: unconditional).
        dropout: dropout in the residual blocks.
        checkpointing: recompute residual blocks in the backward pass (less memory, more time).
        embedding: how the noise/label embedding enters a residual block: ``add`` or ``scale-shift``
            (module docstring).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 32,
        channel_mults: tuple[int, ...] = (1, 2),
        num_res_blocks: int = 1,
        attention: bool = True,
        num_classes: int | None = None,
        dropout: float = 0.0,
        checkpointing: bool = False,
        embedding: str = "add",
    ):
        super().__init__()
        erased = erased_embedding_widths(channels, channel_mults) if embedding == "add" else []
        if erased:
            # A warning, not an error: networks trained this way before ``embedding`` existed still load.
            warnings.warn(
                f"with embedding=add the noise embedding is erased by the one-channel norm groups at width "
                f"{', '.join(map(str, erased))}; use embedding=scale-shift or channels ≥ 16",
                stacklevel=2,
            )
        emb_dim = 4 * channels
        self.embed = NoiseEmbedding(emb_dim, num_classes)
        self.checkpointing = checkpointing
        self.multiple = 2 ** (len(channel_mults) - 1)
        self.conv_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        widths = [channels * m for m in channel_mults]
        self.down = nn.ModuleList()
        skips, c = [channels], channels
        for level, width in enumerate(widths):
            for _ in range(num_res_blocks):
                self.down.append(ResBlock(c, width, emb_dim, dropout, embedding))
                c = width
                skips.append(c)
            if level < len(widths) - 1:
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([ResBlock(c, c, emb_dim, dropout, embedding)])
        if attention:
            self.mid.append(Attention(c))
        self.mid.append(ResBlock(c, c, emb_dim, dropout, embedding))
        self.up = nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(num_res_blocks + 1):
                self.up.append(ResBlock(c + skips.pop(), width, emb_dim, dropout, embedding))
                c = width
            if level > 0:
                self.up.append(nn.Upsample(scale_factor=2, mode="nearest"))
                self.up.append(nn.Conv2d(c, c, 3, padding=1))
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _block(self, block: nn.Module, h: Tensor, emb: Tensor) -> Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, h, emb, use_reentrant=False)
        return block(h, emb)

    def forward(self, x: Tensor, c_noise: Tensor, labels: Tensor | None = None) -> Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        emb = self.embed(c_noise.expand(len(x)) if c_noise.dim() == 0 else c_noise, labels)
        h = self.conv_in(x)
        hs = [h]
        for layer in self.down:
            h = self._block(layer, h, emb) if isinstance(layer, ResBlock) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = self._block(layer, h, emb)
        for layer in self.up:
            if isinstance(layer, ResBlock):
                h = self._block(layer, torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[..., :height, :width]
