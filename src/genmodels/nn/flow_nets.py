"""The conditioner networks of normalizing flows: an MLP, a convolutional net and a masked MLP (MADE).

Each maps its input (and an optional context) to the parameters of an elementwise bijection. The last
layer starts at zero, so a freshly built coupling or autoregressive layer is the identity map, which
keeps a deep flow's initial log-determinant at 0 (Kingma & Dhariwal 2018, Glow, sec. 3.3).

Each takes a ``dropout`` probability (default 0: none) applied to its hidden activations in training
mode only (``nn.Dropout``; Flow++, Ho et al. 2019, sec. 4, regularizes its coupling networks this
way). A dropout mask only changes the conditioner's output, so every draw is still an invertible
flow with an exact log-determinant; in eval mode the network, and so the density, is deterministic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .masked import MaskedLinear

__all__ = ["MLP", "ConvNet", "FixedMaskedLinear", "MaskedMLP"]


def _relu_dropout(p: float) -> nn.Module:
    """ReLU, followed by dropout with probability p when p > 0 (one entry of a Sequential)."""
    return nn.Sequential(nn.ReLU(), nn.Dropout(p)) if p > 0 else nn.ReLU()


class MLP(nn.Module):
    """x (B, D) [and context (B, C)] → (B, out_features), ReLU hidden layers, zero-initialized output.

    Args:
        in_features: D.
        out_features: the number of outputs.
        hidden: the widths of the hidden layers.
        context_features: C, the width of a context concatenated to the input (0: none).
        dropout: dropout probability after each hidden layer (training mode only).
    """

    def __init__(
        self, in_features: int, out_features: int, hidden: tuple[int, ...] = (64, 64), context_features: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        widths = [in_features + context_features, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            # ReLU and dropout as one parameterless entry: the weights' keys do not depend on dropout
            layers += [nn.Linear(a, b), _relu_dropout(dropout)]
        last = nn.Linear(widths[-1], out_features)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        self.context_features = context_features

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = x.flatten(1)
        if self.context_features:
            h = torch.cat([h, context.flatten(1)], dim=1)
        return self.net(h)


class ConvNet(nn.Module):
    """Glow's coupling network NN() (Kingma & Dhariwal 2018, sec. 3.3): 3×3 conv → ReLU → 1×1 conv →
    ReLU → zero-initialized 3×3 conv, with ``blocks`` residual 3×3 blocks in between (RealNVP's ResNet).

    With ``norm``, each hidden activation is normalized per example (GroupNorm with one group, in
    place of Glow's actnorm / RealNVP's batch norm: no batch statistics, so a figure does not
    depend on the batch), which keeps a deep stack of couplings well scaled.

    Args:
        in_channels: input channels (the masked input).
        out_channels: output channels (parameters per input channel × channels).
        hidden: hidden channels.
        blocks: residual blocks in the middle.
        context_channels: channels of an image-shaped context concatenated to the input.
        norm: normalize hidden activations per example (see above).
        dropout: dropout probability inside each residual block (between its two convolutions) and
            before the last convolution (training mode only).
        channels_last: keep the weights and run the activations in channels-last layout (NHWC), in
            which oneDNN's CPU convolutions run faster (the 1×1 and few-channel ones most); the same
            function, its sums taken in another order.
    """

    def __init__(
        self, in_channels: int, out_channels: int, hidden: int = 64, blocks: int = 0, context_channels: int = 0,
        norm: bool = True, dropout: float = 0.0, channels_last: bool = False,
    ):
        super().__init__()

        def normalization() -> nn.Module:
            return nn.GroupNorm(1, hidden) if norm else nn.Identity()

        self.first = nn.Sequential(nn.Conv2d(in_channels + context_channels, hidden, 3, padding=1), normalization())
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.ReLU(), nn.Conv2d(hidden, hidden, 3, padding=1), normalization(),
                _relu_dropout(dropout), nn.Conv2d(hidden, hidden, 3, padding=1), normalization(),
            )
            for _ in range(blocks)
        )
        self.middle = nn.Sequential(nn.Conv2d(hidden, hidden, 1), normalization())
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.last = nn.Conv2d(hidden, out_channels, 3, padding=1)
        nn.init.zeros_(self.last.weight)
        nn.init.zeros_(self.last.bias)
        self.context_channels = context_channels
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        if self.context_channels:
            x = torch.cat([x, context], dim=1)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        h = self.first(x)
        for block in self.blocks:
            h = h + block(h)
        h = F.relu(self.middle(F.relu(h)))
        return self.last(self.dropout(h))


class FixedMaskedLinear(MaskedLinear):
    """:class:`~genmodels.nn.masked.MaskedLinear` with one fixed 0/1 mask (out_features, in_features), kept as a buffer."""

    def __init__(self, in_features: int, out_features: int, mask: Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(torch.float32))

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x, self.mask)


class MaskedMLP(nn.Module):
    """MADE (Germain et al. 2015): output (i, p) depends only on inputs j < i, for i in 0..D−1.

    Degrees (eq. 12-13): input j has degree j+1, hidden units degrees in 1..D−1 (cyclic, so every
    degree is represented), output i has degree i+1; a hidden weight is kept when deg_out ≥ deg_in,
    an output weight when deg_out > deg_in. The output is (B, D·P) ordered (i, p), i.e. it reshapes
    to (B, D, P). A context (B, C) enters the first layer unmasked. ``dropout``: probability after
    each hidden layer (training mode only; it drops hidden units, so the masks' dependencies hold).
    """

    def __init__(
        self, features: int, params: int, hidden: tuple[int, ...] = (64, 64), context_features: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__()
        D = features
        in_degrees = torch.arange(1, D + 1)
        degrees = [in_degrees]
        for width in hidden:
            degrees.append(torch.arange(width) % max(1, D - 1) + 1)
        out_degrees = torch.arange(1, D + 1).repeat_interleave(params)
        layers: list[nn.Module] = []
        for i, width in enumerate(hidden):
            mask = (degrees[i + 1][:, None] >= degrees[i][None, :]).float()
            layers.append(FixedMaskedLinear(degrees[i].numel(), width, mask))
        self.hidden = nn.ModuleList(layers)
        self.out = FixedMaskedLinear(degrees[-1].numel(), D * params, (out_degrees[:, None] > degrees[-1][None, :]).float())
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.context = nn.Linear(context_features, hidden[0]) if context_features and hidden else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = x
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if i == 0 and self.context is not None:
                h = h + self.context(context.flatten(1))
            h = self.dropout(F.relu(h))
        return self.out(h)
