"""Masked layers for autoregressive networks.

- :class:`MaskedLinear` and :func:`made_masks`: the connectivity masks of MADE (Germain et al. 2015,
  "MADE: Masked Autoencoder for Distribution Estimation", sec. 4, eqs. 12–13).
- :class:`MaskedConv2d`: the type A / type B masked convolutions of PixelCNN (van den Oord et al.
  2016a, "Pixel Recurrent Neural Networks", sec. 3.4), for one channel per pixel.
- :func:`colour_groups`, :func:`colour_mask` and :class:`ColourMaskedConv2d`: the same masks for
  colour images, whose features are split into one group per colour channel so that R is predicted
  before G before B within a pixel (2016a, sec. 3.4, fig. 2 right).
- :class:`GatedPixelCNNLayer`: one layer of the gated PixelCNN with a vertical and a horizontal
  stack (van den Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders", sec. 2.2,
  fig. 2, eqs. 2 and 4), which has no blind spot.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "MaskedLinear", "made_degrees", "made_masks", "MaskedConv2d", "GatedPixelCNNLayer", "down_shift",
    "colour_groups", "colour_mask", "ColourMaskedConv2d", "pointwise",
]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a 0/1 mask given at call time: y = (W ⊙ M) x + b.

    Taking the mask as an argument lets one set of weights serve several connectivities (MADE's
    order-agnostic ensemble).

    Without autograd (evaluation, sampling) the product W ⊙ M is kept and reused while neither the
    weight nor the mask changes (same mask object, same in-place versions): an autoregressive draw
    calls the network once per dimension, and at small batches re-masking the weight cost as much as
    the matrix product itself."""

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:  # type: ignore[override]
        return F.linear(x, self.masked_weight(mask), self.bias)

    def masked_weight(self, mask: Tensor) -> Tensor:
        """W ⊙ M, from the cache when no gradient is being recorded and nothing changed since."""
        if torch.is_grad_enabled():
            self.__dict__.pop("_masked_cache", None)
            return self.weight * mask
        # A model passes a view of its mask buffer (``masks[ordering]``), a new object every call, so the
        # mask is known by its memory: pointer, shape and strides, and `_version`, which counts in-place
        # writes (optimizer steps, load_state_dict's copy_). The cache holds the mask it was made from,
        # so that memory stays allocated and cannot be reused by another tensor meanwhile; `.to()`
        # moving or converting the weight changes its pointer.
        weight = self.weight
        state = (mask.data_ptr(), mask.shape, mask.stride(), mask._version, weight.data_ptr(), weight._version)
        cached = self.__dict__.get("_masked_cache")
        if cached is None or cached[1] != state:
            cached = (mask, state, weight * mask)
            self.__dict__["_masked_cache"] = cached
        return cached[2]


def made_degrees(dims: int, hidden: tuple[int, ...], order: Tensor, generator: torch.Generator) -> list[Tensor]:
    """MADE's degrees m^l(k): the inputs' degree is their position in the ordering (1..D); every
    hidden unit's degree is drawn uniformly from {min m^{l−1}, …, D−1} (Germain et al. 2015, sec. 4).

    Args:
        dims: D.
        hidden: the hidden layers' widths.
        order: σ, (D,) the dimensions in generation order.
        generator: the seed of the hidden degrees.

    Returns:
        [m^0 (D,), m^1 (H_1,), …]: the input degrees followed by each hidden layer's.
    """
    degrees = [torch.empty(dims, dtype=torch.int64)]
    degrees[0][order] = torch.arange(1, dims + 1)
    low = 1
    for width in hidden:
        high = max(dims - 1, 0)
        low = min(low, high)
        m = torch.randint(low, high + 1, (width,), generator=generator)
        degrees.append(m)
        # On the meta device (counting parameters, recipes.generic) no value exists; shapes do not depend on it.
        low = int(m.min()) if width and not m.is_meta else low
    return degrees


def made_masks(degrees: list[Tensor], in_repeat: int, out_repeat: int) -> list[Tensor]:
    """The masks of MADE from its degrees (Germain et al. 2015, eqs. 12–13).

    Hidden: M^l[k, k'] = 1[m^l(k) ≥ m^{l−1}(k')]; output: M^V[d, k] = 1[m^0(d) > m^L(k)]. Each data
    dimension has ``in_repeat`` input units (its features) and ``out_repeat`` output units (its
    conditional's parameters), all with the dimension's degree.

    Returns:
        one (out, in) float mask per layer, the output layer last.
    """
    inputs = degrees[0].repeat_interleave(in_repeat)
    masks = []
    previous = inputs
    for m in degrees[1:]:
        masks.append((m[:, None] >= previous[None, :]).float())
        previous = m
    outputs = degrees[0].repeat_interleave(out_repeat)
    masks.append((outputs[:, None] > previous[None, :]).float())
    return masks


class MaskedConv2d(nn.Conv2d):
    """A k×k convolution that sees only the pixels before the centre in raster order.

    Type A (the first layer) also hides the centre pixel itself; type B (later layers) shows it, since
    there the centre holds features computed from earlier pixels only. For one channel per pixel.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        if mask_type not in ("A", "B"):
            raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        mask = torch.ones(kernel_size, kernel_size)
        c = kernel_size // 2
        mask[c, c + (mask_type == "B") :] = 0  # the centre row: right of the centre (and A: the centre)
        mask[c + 1 :] = 0  # every row below the centre
        self.register_buffer("mask", mask)
        self.mask_type = mask_type

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


def colour_groups(units: int, colours: int) -> Tensor:
    """(units,) int64: the colour channel whose group each feature unit belongs to, in contiguous
    blocks (unit i → ⌊i·C / units⌋), so every group is non-empty when units ≥ C.

    >>> colour_groups(8, 3).tolist()
    [0, 0, 0, 1, 1, 1, 2, 2]
    """
    return torch.arange(units) * colours // units


def colour_mask(in_groups: Tensor, out_groups: Tensor, mask_type: str) -> Tensor:
    """(out, in) float: which input units an output unit may read *at the current pixel*
    (van den Oord et al. 2016a, sec. 3.4): type A (the first layer, reading the image) only earlier
    colours, group(out) > group(in); type B (later layers) also its own colour, group(out) ≥ group(in).

    >>> colour_mask(torch.arange(3), torch.arange(3), "A").tolist()
    [[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"mask_type must be 'A' or 'B', got {mask_type!r}")
    out, inp = out_groups[:, None], in_groups[None, :]
    return (out > inp if mask_type == "A" else out >= inp).float()


class ColourMaskedConv2d(nn.Conv2d):
    """A convolution whose taps before the current pixel are all visible, whose taps after it are
    hidden, and whose tap *at* the current pixel is masked between colour groups (:func:`colour_mask`).

    Args:
        in_groups: (in_channels,) the colour group of each input unit.
        out_groups: (out_channels,) the colour group of each output unit.
        kernel_size: (kh, kw).
        visible: (kh, kw) bool, the taps that read earlier pixels (fully visible).
        centre: (row, column) of the tap that reads the current pixel.
        mask_type: "A" or "B" at the current pixel.
        padding: as nn.Conv2d's (the caller pads asymmetrically itself where it must).
    """

    def __init__(
        self,
        in_groups: Tensor,
        out_groups: Tensor,
        kernel_size: tuple[int, int],
        visible: Tensor,
        centre: tuple[int, int],
        mask_type: str,
        padding: int | tuple[int, int] = 0,
    ):
        super().__init__(len(in_groups), len(out_groups), kernel_size, padding=padding)
        mask = visible.float().expand(len(out_groups), len(in_groups), *kernel_size).clone()  # (out, in, kh, kw)
        mask[:, :, centre[0], centre[1]] = colour_mask(in_groups, out_groups, mask_type)
        # Not persistent: the mask follows from the constructor's arguments, so checkpoints keep
        # only the weights.
        self.register_buffer("weight_mask", mask, persistent=False)

    @classmethod
    def square(cls, in_groups: Tensor, out_groups: Tensor, kernel_size: int, mask_type: str) -> ColourMaskedConv2d:
        """PixelCNN's k×k mask (:class:`MaskedConv2d`'s footprint) with colour groups at the centre."""
        c = kernel_size // 2
        visible = torch.zeros(kernel_size, kernel_size, dtype=torch.bool)
        visible[:c] = True  # every row above the centre
        visible[c, :c] = True  # the centre row, left of the centre
        return cls(in_groups, out_groups, (kernel_size, kernel_size), visible, (c, c), mask_type, padding=c)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.weight_mask, self.bias, padding=self.padding)


def pointwise(in_channels: int, out_channels: int, colours: int) -> nn.Conv2d:
    """A 1×1 convolution that keeps the colour order of its units: plain for one channel (C = 1),
    else type B between contiguous colour groups (an output unit of colour c reads colours ≤ c)."""
    if colours == 1:
        return nn.Conv2d(in_channels, out_channels, 1)
    no_tap = torch.zeros(1, 1, dtype=torch.bool)
    return ColourMaskedConv2d(
        colour_groups(in_channels, colours), colour_groups(out_channels, colours), (1, 1), no_tap, (0, 0), "B"
    )


def down_shift(x: Tensor) -> Tensor:
    """Move every row one down (a zero row on top): row r then holds what row r−1 held. (B, C, H, W)."""
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class GatedPixelCNNLayer(nn.Module):
    """One gated layer (van den Oord et al. 2016b, eq. 2 with the conditioning of eq. 4):

        y = tanh(W_f ∗ x + V_f h) ⊙ σ(W_g ∗ x + V_g h),

    on two stacks. The vertical stack's output at row r sees input rows ≤ r (a (k//2+1)×k
    convolution padded on top); it reaches the horizontal stack only after :func:`down_shift`, so
    the horizontal stack at (r, c) sees rows < r through it and, through its own 1×(k//2+1)
    convolution, row r at columns ≤ c (< c in the first layer: mask type A). Together they cover
    every earlier pixel within the kernels' reach, with no blind spot.

    Args:
        in_channels: channels of both stacks' inputs.
        channels: channels of both stacks' outputs.
        kernel_size: k (odd).
        first: the first layer (horizontal mask type A, no residual connection).
        dropout: dropout on the horizontal stack's gated features.
        cond_dim: width of a conditioning vector h added to both stacks' pre-activations, or 0.
        colours: C, the image's channels ordered within a pixel. With C > 1 the horizontal stack's
            units are split into C colour groups and its convolution also reads the current pixel,
            masked between groups (type A in the first layer, B after; 2016b, sec. 2.1 keeps the
            masks of 2016a there): the vertical stack reaches it only from the rows above, so it
            needs no colour mask.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        kernel_size: int,
        *,
        first: bool,
        dropout: float = 0.0,
        cond_dim: int = 0,
        colours: int = 1,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.k = kernel_size // 2
        self.first = first
        if first and self.k == 0:
            raise ValueError("the first layer needs kernel_size ≥ 3 to see the pixel on its left")
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (self.k + 1, kernel_size))
        self.horizontal: nn.Conv2d
        if colours == 1:
            # Type A: columns c−k..c−1; type B: columns c−k..c (see forward's padding).
            self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, self.k if first else self.k + 1))
        else:
            # Columns c−k..c, the current pixel's column c masked between colour groups.
            in_groups = torch.arange(colours) if first else colour_groups(in_channels, colours)
            unit_groups = colour_groups(channels, colours).repeat(2)  # the filter and the gate halves
            earlier = torch.arange(self.k + 1)[None, :] < self.k  # (1, k+1)
            self.horizontal = ColourMaskedConv2d(
                in_groups, unit_groups, (1, self.k + 1), earlier, (0, self.k), "A" if first else "B"
            )
        self.vertical_to_horizontal = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.horizontal_out = pointwise(channels, channels, colours)
        self.dropout = nn.Dropout(dropout)
        self.condition = nn.Linear(cond_dim, 4 * channels, bias=False) if cond_dim else None
        self.residual = not first and in_channels == channels

    @staticmethod
    def _gate(a: Tensor) -> Tensor:
        f, g = a.chunk(2, dim=1)
        return torch.tanh(f) * torch.sigmoid(g)

    def forward(self, v: Tensor, h: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(v, h) stacks (B, C_in, H, W) → (v', h') (B, C, H, W); ``cond`` (B, cond_dim)."""
        width = h.shape[-1]
        v_pre = self.vertical(F.pad(v, (self.k, self.k, self.k, 0)))  # rows r−k..r, cols c−k..c+k
        h_pre = self.horizontal(F.pad(h, (self.k, 0, 0, 0)))[..., :width]  # cols c−k..c (or ..c−1)
        h_pre = h_pre + self.vertical_to_horizontal(down_shift(v_pre))  # rows < r only
        if self.condition is not None and cond is not None:
            cv, ch = self.condition(cond)[:, :, None, None].chunk(2, dim=1)
            v_pre, h_pre = v_pre + cv, h_pre + ch
        v_out = self._gate(v_pre)
        h_out = self.horizontal_out(self.dropout(self._gate(h_pre)))
        if self.residual:
            h_out = h_out + h
        return v_out, h_out
