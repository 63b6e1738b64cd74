"""``pixelcnn``: convolutional autoregressive image models in raster order.

- ``variant="gated"`` (default): the gated PixelCNN with a vertical and a horizontal stack (van den
  Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders", sec. 2.2), whose
  receptive field holds every earlier pixel once the layers are deep enough: no blind spot.
- ``variant="plain"``: a type-A masked k×k convolution followed by residual blocks of type-B masked
  convolutions (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", sec. 3.4). Its receptive
  field misses pixels up and to the right of the current one however deep it is (the blind spot;
  ``tests/test_autoregressive.py`` shows it).

Colour images (C > 1) are modelled sub-pixel by sub-pixel, the channels of a pixel ordered R before G
before B (the ordering σ is pixel-major; the data's own layout stays (C, H, W)). Two outputs:

- ``output="softmax"``: a K-way softmax per sub-pixel. The feature units of every layer are split into C
  colour groups; at the current pixel, group c reads only the image's channels < c (mask A, the first
  layer) and the groups ≤ c (mask B, later layers), so channel c's logits see the earlier pixels and
  the earlier channels of its own pixel (2016a, sec. 3.4, fig. 2 right; 2016b keeps these masks in the
  horizontal stack).
- ``output="logistic"``: PixelCNN++'s discretized logistic mixture (Salimans et al. 2017, eq. 2; eq. 3
  for colour): the network sees earlier *pixels* only (no colour groups) and predicts one mixture per
  pixel whose G and B means move linearly with the R (and G) already drawn; the pixel's joint
  likelihood is split exactly into the channels' conditionals
  (:meth:`~genmodels.nn.outputs.DiscretizedLogisticMixture.channel_conditionals`).

Class-conditional variants add a label embedding to every layer (2016b, eq. 4). A vector (D,) is read
as a 1×D image. For C = 1 both outputs are the one-channel models of the papers, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accepts import Accepts
from ..core import register_model
from ..data.base import DataSpec
from ..errors import UserError
from ..nn.masked import ColourMaskedConv2d, GatedPixelCNNLayer, MaskedConv2d, colour_groups, pointwise
from ..nn.outputs import CategoricalHead, DiscretizedLogisticMixture
from .base import AutoregressiveModel, HybridConfig

__all__ = ["PixelCNN", "PixelCNNConfig", "image_size"]


def image_size(spec: DataSpec) -> tuple[int, int, int]:
    """(C, H, W) of an image spec; a vector (D,) is a 1×1×D image."""
    if len(spec.shape) == 1:
        return 1, 1, spec.shape[0]
    if len(spec.shape) == 3:
        return tuple(spec.shape)  # type: ignore[return-value]
    raise UserError(
        f"pixelcnn models images (C, H, W) or vectors (D,); '{spec.name}' has shape {spec.shape} "
        "(reshape it to an image, or use transformer, rnn, made or nade, which read any flattened shape)"
    )


@dataclass
class PixelCNNConfig(HybridConfig):
    """Args:
    variant: "gated" (vertical + horizontal stacks, no blind spot) or "plain" (masked convolutions).
    channels: feature channels of every layer.
    layers: gated layers (gated) or residual blocks after the first masked convolution (plain).
    first_kernel: the first layer's kernel size k (odd, ≥ 3).
    kernel: the later layers' kernel size (odd).
    output: "softmax" (K logits per pixel) or "logistic" (discretized logistic mixture).
    mixtures: logistic components per pixel (output="logistic").
    dropout: dropout probability inside every layer.
    conditional: model p(x | y) with a label embedding in every layer (needs labelled data).
    """

    variant: str = "gated"
    channels: int = 32
    layers: int = 5
    first_kernel: int = 7
    kernel: int = 3
    output: str = "softmax"
    mixtures: int = 5
    dropout: float = 0.0
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.variant not in ("gated", "plain"):
            raise ValueError(f"variant must be 'gated' or 'plain', got {self.variant!r}")
        if self.output not in ("softmax", "logistic"):
            raise ValueError(f"output must be 'softmax' or 'logistic', got {self.output!r}")
        if self.channels < 1 or self.layers < 1 or self.mixtures < 1:
            raise ValueError("channels, layers and mixtures must be ≥ 1")
        if self.first_kernel < 3 or self.first_kernel % 2 == 0:
            raise ValueError(f"first_kernel must be odd and ≥ 3, got {self.first_kernel}")
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel must be odd, got {self.kernel}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class _PlainBlock(nn.Module):
    """h + Conv1×1(ReLU(MaskedConvB(ReLU(h)))) (+ a label bias), with dropout; colour-grouped when C > 1."""

    def __init__(self, channels: int, kernel: int, dropout: float, cond_dim: int, colours: int = 1):
        super().__init__()
        if colours == 1:
            self.conv: nn.Conv2d = MaskedConv2d(channels, channels, kernel, "B")
        else:
            groups = colour_groups(channels, colours)
            self.conv = ColourMaskedConv2d.square(groups, groups, kernel, "B")
        self.mix = pointwise(channels, channels, colours)
        self.dropout = nn.Dropout(dropout)
        self.condition = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None

    def forward(self, h: Tensor, cond: Tensor | None) -> Tensor:
        a = self.conv(F.relu(h))
        if self.condition is not None and cond is not None:
            a = a + self.condition(cond)[:, :, None, None]
        return h + self.mix(self.dropout(F.relu(a)))


@register_model("pixelcnn")
class PixelCNN(AutoregressiveModel):
    """Gated or plain PixelCNN over grey or colour images, softmax or discretized-logistic output."""

    Config = PixelCNNConfig
    accepts = Accepts(
        images="masked convolutions; colour sub-pixels in the order R, G, B within a pixel",
        sizes="any (the receptive field grows with layers, not with the size)",
        other="vectors (D,) as 1×D images",
    )

    def __init__(self, config: PixelCNNConfig, spec: DataSpec):
        self.colours, self.height, self.width = image_size(spec)
        if config.output == "logistic" and spec.levels < 2:
            raise UserError("output='logistic' needs at least 2 levels")
        head = DiscretizedLogisticMixture(spec.levels, config.mixtures) if config.output == "logistic" else None
        super().__init__(config, spec, head if head is not None else CategoricalHead(spec.levels))
        # Colour groups order the channels inside the network (softmax); the logistic mixture orders
        # them in its own parameters, so its network sees whole earlier pixels only.
        groups = self.colours if config.output == "softmax" else 1
        if config.channels < groups:
            raise UserError(f"channels={config.channels} cannot be split into {groups} colour groups; set channels ≥ {groups}")
        c = config.channels
        cond_dim = c if self.conditional else 0
        self.label = nn.Embedding(self.num_classes, c) if self.conditional else None
        if config.variant == "gated":
            self.gated = nn.ModuleList(
                GatedPixelCNNLayer(
                    self.colours if i == 0 else c,
                    c,
                    config.first_kernel if i == 0 else config.kernel,
                    first=i == 0,
                    dropout=config.dropout,
                    cond_dim=cond_dim,
                    colours=groups,
                )
                for i in range(config.layers)
            )
        else:
            if groups == 1:
                self.first: nn.Conv2d = MaskedConv2d(self.colours, c, config.first_kernel, "A")
            else:
                self.first = ColourMaskedConv2d.square(torch.arange(groups), colour_groups(c, groups), config.first_kernel, "A")
            self.blocks = nn.ModuleList(
                _PlainBlock(c, config.kernel, config.dropout, cond_dim, groups) for _ in range(config.layers)
            )
        if isinstance(self.head, DiscretizedLogisticMixture):
            outputs = self.head.pixel_params(self.colours)  # one mixture per pixel (eq. 3)
        else:
            outputs = self.colours * self.head.num_params  # channel c's logits are output group c
        self.out = nn.Sequential(nn.ReLU(), pointwise(c, c, groups), nn.ReLU(), pointwise(c, outputs, groups))

    def ordering(self, index: int = 0) -> Tensor:
        """σ: pixels in raster order, and within a pixel its channels in order (R, G, B), as indices
        into the (C, H, W) layout: σ = (0, HW, 2HW, 1, HW + 1, …). The identity for one channel."""
        pixels = self.height * self.width
        planes = torch.arange(self.colours, device=self.device) * pixels
        return (torch.arange(pixels, device=self.device)[:, None] + planes[None, :]).flatten()

    def input_features(self, x: Tensor) -> Tensor:
        flat = x.reshape(len(x), -1).to(self.out[-1].weight.dtype)  # (B, D)
        return (2.0 * flat / (self.spec.levels - 1) - 1.0).unsqueeze(-1)  # (B, D, 1), values in [−1, 1]

    def params_from_features(self, features: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        if self.colours == 1:  # the one-channel layout of earlier versions: same strides, same rounding
            image = features.reshape(len(features), self.height, self.width, 1).permute(0, 3, 1, 2)  # (B, 1, H, W)
        else:
            image = features.reshape(len(features), self.colours, self.height, self.width)  # (B, C, H, W)
        params = self.out(self._trunk(image, self._condition(y)))  # (B, P_pixel, H, W)
        if self.colours == 1:
            return params.flatten(2).transpose(1, 2)  # (B, D, P), raster order
        if isinstance(self.head, DiscretizedLogisticMixture):
            values = image.permute(0, 2, 3, 1)  # (B, H, W, C): the pixel's channels as bin centres
            per_channel = self.head.channel_conditionals(params.permute(0, 2, 3, 1), values)  # (B, H, W, C, 3M)
            per_channel = per_channel.permute(0, 3, 1, 2, 4)  # (B, C, H, W, 3M)
        else:
            per_channel = params.unflatten(1, (self.colours, -1)).permute(0, 1, 3, 4, 2)  # (B, C, H, W, K)
        return per_channel.flatten(1, 3)  # (B, D, P) in the (C, H, W) layout

    def _condition(self, y: Tensor | None) -> Tensor | None:
        return self.label(y) if self.label is not None and y is not None else None

    def _trunk(self, image: Tensor, cond: Tensor | None) -> Tensor:
        """(B, C, h, W) scaled image → (B, channels, h, W) features before the output layers."""
        if self.config.variant == "gated":
            v = h = image
            for layer in self.gated:
                v, h = layer(v, h, cond)
            return h
        h = self.first(image)
        for block in self.blocks:
            h = block(h, cond)
        return h

    def rows_above(self) -> int:
        """How many rows above its own a pixel's conditional can reach: each layer's kernel half-size
        (k₀//2 for the first), plus the gated stack's one-row down-shift."""
        c = self.config
        reach = c.first_kernel // 2 + (c.layers - 1) * (c.kernel // 2)
        return reach + 1 if c.variant == "gated" else reach + c.kernel // 2

    def _sample_ordering(
        self, n: int, y: Tensor | None, ordering: int, generator: torch.Generator | None, temperature: float
    ) -> Tensor:
        """Ancestral sampling in σ's order, each step on the rows the current pixel can see (its
        receptive field lies within :meth:`rows_above` rows, so the result is that of the whole
        image) and through the output layers at the current pixel only. The logistic mixture's
        network sees whole earlier pixels, so it runs once per pixel for all C channels; the
        colour-grouped softmax runs once per sub-pixel."""
        colours, height, width = self.colours, self.height, self.width
        x = torch.zeros(n, colours, height, width, dtype=torch.int64, device=self.device)
        cond, reach = self._condition(y), self.rows_above()
        once_per_pixel = colours == 1 or isinstance(self.head, DiscretizedLogisticMixture)
        dtype = self.out[-1].weight.dtype
        for row in range(height):
            top = max(0, row - reach)
            for col in range(width):
                for channel in range(colours):
                    if channel == 0 or not once_per_pixel:
                        image = 2.0 * x[:, :, top : row + 1].to(dtype) / (self.spec.levels - 1) - 1.0  # (n, C, rows, W)
                        params = self.out(self._trunk(image, cond)[:, :, -1:, col : col + 1])[:, :, 0, 0]  # (n, P_pixel)
                    pixel = 2.0 * x[:, :, row, col].to(dtype) / (self.spec.levels - 1) - 1.0  # (n, C)
                    x[:, channel, row, col] = self.draw(self._channel_params(params, pixel, channel), generator, temperature)
        return x.reshape(n, *self.spec.shape)

    def _channel_params(self, pixel_params: Tensor, pixel: Tensor, channel: int) -> Tensor:
        """The head's parameters (n, P) of ``channel``'s conditional from the pixel's (n, P_pixel)."""
        if self.colours == 1:
            return pixel_params
        if isinstance(self.head, DiscretizedLogisticMixture):
            return self.head.channel_conditionals(pixel_params, pixel)[:, channel]
        return pixel_params.unflatten(1, (self.colours, -1))[:, channel]
