"""``glow``: Glow (Kingma & Dhariwal 2018).

Each step of flow (sec. 3, fig. 2a): actnorm (data-dependent initialization through ``initialize``),
an invertible 1×1 convolution (LU-parameterized, eq. 10) and an affine (or additive) coupling. On
images, the multi-scale architecture of fig. 2b: L levels of squeeze → K steps → split (half of the
channels factored out), the last level without split. A side that cannot be halved skips the squeeze,
and a one-channel input couples on a checkerboard mask instead of the channel split. On vectors,
K·L steps with a linear LU layer and odd/even coupling masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..accepts import Accepts
from ..core import register_model
from ..nn.flow_nets import MLP, ConvNet
from ..nn.resolution import resolution_levels
from .model import FlowConfig, FlowModel
from .transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ChannelCoupling,
    ComposedTransform,
    InvertibleLinearLU,
    MultiScale,
    Squeeze,
    Transform,
    channel_mask,
    checkerboard_mask,
    parity_mask,
)

__all__ = ["Glow", "GlowConfig", "CONDITIONER_DTYPES"]

#: conditioner_dtype → the autocast dtype of the coupling networks (None: no autocast)
CONDITIONER_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


@dataclass
class GlowConfig(FlowConfig):
    """The options of Glow; those every flow shares are :class:`~genmodels.flows.model.FlowConfig`'s.

    Args:
        levels: L, the number of levels (images; vectors get L·K steps). None (default): on images
            :func:`~genmodels.nn.resolution.resolution_levels` (2 up to 28×28, 3 at 32×32, 4 at 64×64, as
            Kingma & Dhariwal 2018 use on CIFAR-10 and 64×64 ImageNet); on vectors 2.
        steps: K, steps of flow per level.
        hidden: hidden channels of the image coupling networks, or the width of the vector ones.
        hidden_layers: vectors: hidden layers per coupling MLP.
        coupling: "affine" or "additive".
        clamp: the affine log-scales are soft-clamped to (−clamp, clamp).
        split: images: "mask" (RealNVP's channel mask: each coupling network reads all C channels, the
            passive half zeroed, and outputs parameters for all C of which the free half is used) or
            "channel" (Glow's split(): the network reads the C//2 conditioning channels and outputs only
            the free channels' parameters; the same family of maps without the dead weights, so at equal
            ``hidden`` fewer parameters and less work).
        channels_last: split="channel": the coupling networks run in channels-last layout (faster
            convolutions on CPUs; the same function).
        conditioner_dtype: split="channel": "float32" or "bfloat16" (the coupling networks under autocast;
            the flow's own arithmetic, its log-determinants and the likelihood stay in float32).
        norm: images: GroupNorm (one group, per example) after the coupling networks' hidden convolutions;
            without it the networks are plain 3×3 → 1×1 → 3×3 ReLU nets as in Glow (faster).
    """

    levels: int | None = None
    steps: int = 4
    hidden: int = 32
    hidden_layers: int = 2
    coupling: str = "affine"
    clamp: float = 3.0
    split: str = "mask"
    channels_last: bool = False
    conditioner_dtype: str = "float32"
    norm: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(1 if self.levels is None else self.levels, self.steps, self.hidden, self.hidden_layers) < 1:
            raise ValueError("levels, steps, hidden and hidden_layers must be ≥ 1")
        if self.coupling not in ("affine", "additive"):
            raise ValueError(f"coupling must be 'affine' or 'additive', got '{self.coupling}'")
        if self.split not in ("mask", "channel"):
            raise ValueError(f"split must be 'mask' or 'channel', got '{self.split}'")
        if self.conditioner_dtype not in CONDITIONER_DTYPES:
            raise ValueError(f"conditioner_dtype must be one of {sorted(CONDITIONER_DTYPES)}, got '{self.conditioner_dtype}'")
        if self.split != "channel" and (self.channels_last or self.conditioner_dtype != "float32"):
            raise ValueError("channels_last and conditioner_dtype apply to channel-split couplings: set split='channel'")


@register_model("glow")
class Glow(FlowModel):
    """Glow: actnorm, invertible 1×1 convolution, coupling; multi-scale on images."""

    Config = GlowConfig
    accepts = Accepts(
        images="multi-scale squeeze/split, L levels from the size", sizes="any; L = 2 up to 28×28, 3 at 32×32, 4 at 64×64; a side that cannot be halved skips the squeeze",
        other="vectors and continuous data: LU-linear + coupling steps")
    image_transform = True

    def _coupling(self, mask, net) -> Transform:
        c: GlowConfig = self.config
        return AffineCoupling(mask, net, c.clamp) if c.coupling == "affine" else AdditiveCoupling(mask, net)

    def _channel_coupling(self, C: int, parity: int, params: int) -> ChannelCoupling:
        c: GlowConfig = self.config
        conditioning = C // 2 if parity == 0 else C - C // 2
        net = ConvNet(conditioning, params * (C - conditioning), c.hidden, norm=c.norm, dropout=c.dropout)
        if c.channels_last:
            net = net.to(memory_format=torch.channels_last)
        return ChannelCoupling(
            C, parity, net, affine=c.coupling == "affine", clamp=c.clamp, channels_last=c.channels_last,
            autocast_dtype=CONDITIONER_DTYPES[c.conditioner_dtype],
        )

    def _level(self, shape: tuple[int, int, int], remaining: int) -> MultiScale:
        c: GlowConfig = self.config
        C, H, W = shape
        steps: list[Transform] = []
        if H % 2 == 0 and W % 2 == 0:
            steps.append(Squeeze())
            shape = C, H, W = (4 * C, H // 2, W // 2)
        params = 2 if c.coupling == "affine" else 1
        for k in range(c.steps):
            if c.split == "channel" and C >= 2:
                coupling = self._channel_coupling(C, k % 2, params)
            else:
                mask = channel_mask(shape, k % 2) if C >= 2 else checkerboard_mask(shape, k % 2)
                coupling = self._coupling(mask, ConvNet(C, params * C, c.hidden, norm=c.norm, dropout=c.dropout))
            steps += [ActNorm(C), InvertibleLinearLU(C), coupling]
        if remaining == 1 or C < 2:
            return MultiScale(ComposedTransform(*steps), shape)
        kept = (C - C // 2, H, W)
        return MultiScale(ComposedTransform(*steps), shape, self._level(kept, remaining - 1))

    def build_transform(self, event_shape: tuple[int, ...]) -> Transform:
        c: GlowConfig = self.config
        if len(event_shape) == 3:
            return self._level(event_shape, c.levels or resolution_levels(*event_shape[1:]))
        (D,) = event_shape
        params = 2 if c.coupling == "affine" else 1
        steps: list[Transform] = []
        for k in range((c.levels or 2) * c.steps):
            net = MLP(D, params * D, (c.hidden,) * c.hidden_layers, dropout=c.dropout)
            steps += [ActNorm(D), InvertibleLinearLU(D), self._coupling(parity_mask(D, k % 2), net)]
        return ComposedTransform(*steps)
