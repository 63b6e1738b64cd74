"""``pixelcnn``: convolutional autoregressive image models in raster order.

- ``variant="gated"`` (default): the gated PixelCNN with a vertical and a horizontal stack (van den
  Oord et al. 2016b, "Conditional Image Generation with PixelCNN Decoders", sec. 2.2), whose
  receptive field holds every earlier pixel once the layers are deep enough: no blind spot.
- ``variant="plain"``: a type-A masked k×k convolution followed by residual blocks of type-B masked
  convolutions (van den Oord et al. 2016a, "Pixel Recurrent Neural Networks", sec. 3.4). Its receptive
  field misses pixels up and to the right of the current one however deep it is (the blind spot;
  ``tests/test_autoregressive.py`` shows it).

The output per pixel is a K-way softmax or a discretized logistic mixture (Salimans et al. 2017,
"PixelCNN++", eq. 2). Class-conditional variants add a label embedding to every layer (2016b, eq. 4).

One channel per pixel: the masks order pixels, not the channels within a pixel, so images with C > 1
are refused rather than modelled with a wrong (non-causal) factorization. Vector data (D,) is read
as a 1×D image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from ..core import register_model
from ..data.base import DataSpec
from ..errors import UserError
from ..nn.masked import GatedPixelCNNLayer, MaskedConv2d
from ..nn.outputs import CategoricalHead, DiscretizedLogisticMixture
from .base import AutoregressiveModel, HybridConfig

__all__ = ["PixelCNN", "PixelCNNConfig", "image_size"]


def image_size(spec: DataSpec) -> tuple[int, int]:
    """(H, W) of a one-channel image spec; a vector (D,) is a 1×D image."""
    if len(spec.shape) == 1:
        return 1, spec.shape[0]
    if len(spec.shape) == 3 and spec.shape[0] == 1:
        return spec.shape[1], spec.shape[2]
    raise UserError(
        f"pixelcnn models one-channel images (1, H, W) or vectors (D,); '{spec.name}' has shape {spec.shape} "
        "(for several channels use transformer, rnn, made or nade, which order every channel of every pixel)"
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
    """h + Conv1×1(ReLU(MaskedConvB(ReLU(h)))) (+ a label bias), with dropout."""

    def __init__(self, channels: int, kernel: int, dropout: float, cond_dim: int):
        super().__init__()
        self.conv = MaskedConv2d(channels, channels, kernel, "B")
        self.mix = nn.Conv2d(channels, channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.condition = nn.Linear(cond_dim, channels, bias=False) if cond_dim else None

    def forward(self, h: Tensor, cond: Tensor | None) -> Tensor:
        a = self.conv(F.relu(h))
        if self.condition is not None and cond is not None:
            a = a + self.condition(cond)[:, :, None, None]
        return h + self.mix(self.dropout(F.relu(a)))


@register_model("pixelcnn")
class PixelCNN(AutoregressiveModel):
    """Gated or plain PixelCNN over one-channel images, softmax or discretized-logistic output."""

    Config = PixelCNNConfig

    def __init__(self, config: PixelCNNConfig, spec: DataSpec):
        self.height, self.width = image_size(spec)
        if config.output == "logistic" and spec.levels < 2:
            raise UserError("output='logistic' needs at least 2 levels")
        head = DiscretizedLogisticMixture(spec.levels, config.mixtures) if config.output == "logistic" else None
        super().__init__(config, spec, head if head is not None else CategoricalHead(spec.levels))
        c = config.channels
        cond_dim = c if self.conditional else 0
        self.label = nn.Embedding(self.num_classes, c) if self.conditional else None
        if config.variant == "gated":
            self.gated = nn.ModuleList(
                GatedPixelCNNLayer(
                    1 if i == 0 else c,
                    c,
                    config.first_kernel if i == 0 else config.kernel,
                    first=i == 0,
                    dropout=config.dropout,
                    cond_dim=cond_dim,
                )
                for i in range(config.layers)
            )
        else:
            self.first = MaskedConv2d(1, c, config.first_kernel, "A")
            self.blocks = nn.ModuleList(
                _PlainBlock(c, config.kernel, config.dropout, cond_dim) for _ in range(config.layers)
            )
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 1), nn.ReLU(), nn.Conv2d(c, self.head.num_params, 1))

    def input_features(self, x: Tensor) -> Tensor:
        flat = x.reshape(len(x), -1).to(self.out[-1].weight.dtype)  # (B, D)
        return (2.0 * flat / (self.spec.levels - 1) - 1.0).unsqueeze(-1)  # (B, D, 1), values in [−1, 1]

    def params_from_features(self, features: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        image = features.reshape(len(features), self.height, self.width, 1).permute(0, 3, 1, 2)  # (B, 1, H, W)
        cond = self.label(y) if self.label is not None and y is not None else None
        if self.config.variant == "gated":
            v = h = image
            for layer in self.gated:
                v, h = layer(v, h, cond)
        else:
            h = self.first(image)
            for block in self.blocks:
                h = block(h, cond)
        params = self.out(h)  # (B, P, H, W)
        return params.flatten(2).transpose(1, 2)  # (B, D, P), raster order
