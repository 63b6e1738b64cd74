"""``realnvp``: Real NVP (Dinh, Sohl-Dickstein & Bengio 2017).

Affine couplings y₂ = x₂ ⊙ exp(s(x₁)) + t(x₁) (eq. 7). On images, the multi-scale architecture of
sec. 3.6: at each scale 3 couplings with alternating checkerboard masks, a squeeze, 3 couplings with
alternating channel masks, then half of the channels are factored out; the last scale has 4
checkerboard couplings. A side that cannot be halved (odd height or width) skips the squeeze and its
channel couplings; a single channel is not split. On vectors (2-D toys, tables), couplings with
alternating odd/even masks and MLP networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..accepts import Accepts
from ..core import register_model
from ..nn.flow_nets import MLP, ConvNet
from ..nn.resolution import resolution_levels
from .model import FlowConfig, FlowModel
from .transforms import (
    AffineCoupling,
    ComposedTransform,
    MultiScale,
    Squeeze,
    Transform,
    channel_mask,
    checkerboard_mask,
    parity_mask,
)

__all__ = ["RealNVP", "RealNVPConfig"]


@dataclass
class RealNVPConfig(FlowConfig):
    """The options of RealNVP; those every flow shares are :class:`~genmodels.flows.model.FlowConfig`'s.

    Args:
        scales: images: the number of scales of the multi-scale architecture. None (default):
            :func:`~genmodels.nn.resolution.resolution_levels` (2 up to 28×28, 3 at 32×32, 4 at 64×64).
        hidden: hidden channels of the image coupling networks, or the width of the vector ones.
        blocks: images: residual blocks per coupling network.
        couplings: vectors: the number of affine couplings.
        hidden_layers: vectors: hidden layers per coupling MLP.
        clamp: the log-scales s are soft-clamped to (−clamp, clamp).
    """

    scales: int | None = None
    hidden: int = 32
    blocks: int = 1
    couplings: int = 6
    hidden_layers: int = 2
    clamp: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(1 if self.scales is None else self.scales, self.hidden, self.couplings, self.hidden_layers) < 1 or self.blocks < 0:
            raise ValueError("scales, hidden, couplings and hidden_layers must be ≥ 1, blocks ≥ 0")
        if not self.clamp > 0:
            raise ValueError(f"clamp must be > 0, got {self.clamp}")


@register_model("realnvp")
class RealNVP(FlowModel):
    """Real NVP: affine couplings, multi-scale on images."""

    Config = RealNVPConfig
    accepts = Accepts(
        images="multi-scale couplings, scales from the size", sizes="any; 2 scales up to 28×28, 3 at 32×32, 4 at 64×64; a side that cannot be halved skips the squeeze",
        other="vectors and continuous data: coupling MLPs")
    image_transform = True

    def _coupling(self, mask, channels: int) -> AffineCoupling:
        c: RealNVPConfig = self.config
        # Channels-last networks on maps larger than 8×8 (Fashion-MNIST's 28×28 and 14×14 scales), where
        # oneDNN's 1×1 and few-channel convolutions are slow in NCHW: faster training on Fashion-MNIST on
        # an AVX512 CPU (BENCHMARKS.md, "Speed fixes"). On digits' 8×8 and 4×4 maps the layout made no
        # measurable difference, and they keep NCHW and their exact figures.
        large = mask.shape[-2] * mask.shape[-1] > 8 * 8
        net = ConvNet(channels, 2 * channels, c.hidden, c.blocks, dropout=c.dropout, channels_last=large)
        return AffineCoupling(mask, net, c.clamp)

    def _scale(self, shape: tuple[int, int, int], remaining: int) -> MultiScale:
        C, H, W = shape
        last = remaining == 1
        steps: list[Transform] = [self._coupling(checkerboard_mask(shape, i % 2), C) for i in range(4 if last else 3)]
        if last:
            return MultiScale(ComposedTransform(*steps), shape)
        if H % 2 == 0 and W % 2 == 0:
            steps.append(Squeeze())
            shape = (4 * C, H // 2, W // 2)
            steps += [self._coupling(channel_mask(shape, i % 2), shape[0]) for i in range(3)]
        if shape[0] < 2:  # nothing to factor out: finish here with the last scale's couplings
            steps += [self._coupling(checkerboard_mask(shape, i % 2), shape[0]) for i in range(4)]
            return MultiScale(ComposedTransform(*steps), shape)
        kept = (shape[0] - shape[0] // 2, shape[1], shape[2])
        return MultiScale(ComposedTransform(*steps), shape, self._scale(kept, remaining - 1))

    def build_transform(self, event_shape: tuple[int, ...]) -> Transform:
        c: RealNVPConfig = self.config
        if len(event_shape) == 3:
            return self._scale(event_shape, c.scales or resolution_levels(*event_shape[1:]))
        (D,) = event_shape
        return ComposedTransform(
            *(
                AffineCoupling(parity_mask(D, i % 2), MLP(D, 2 * D, (c.hidden,) * c.hidden_layers, dropout=c.dropout), c.clamp)
                for i in range(c.couplings)
            )
        )
