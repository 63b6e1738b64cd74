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

from ..core import register_model
from ..nn.flow_nets import MLP, ConvNet
from .model import FLOW_CONFIG_ARGS, FlowConfig, FlowModel
from .transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ComposedTransform,
    InvertibleLinearLU,
    MultiScale,
    Squeeze,
    Transform,
    channel_mask,
    checkerboard_mask,
    parity_mask,
)

__all__ = ["Glow", "GlowConfig"]


@dataclass
class GlowConfig(FlowConfig):
    levels: int = 2
    steps: int = 4
    hidden: int = 32
    hidden_layers: int = 2
    coupling: str = "affine"
    clamp: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.levels, self.steps, self.hidden, self.hidden_layers) < 1:
            raise ValueError("levels, steps, hidden and hidden_layers must be ≥ 1")
        if self.coupling not in ("affine", "additive"):
            raise ValueError(f"coupling must be 'affine' or 'additive', got '{self.coupling}'")


GlowConfig.__doc__ = """Args:
    levels: L, the number of levels (images; vectors get L·K steps).
    steps: K, steps of flow per level.
    hidden: hidden channels of the image coupling networks, or the width of the vector ones.
    hidden_layers: vectors: hidden layers per coupling MLP.
    coupling: "affine" or "additive".
    clamp: the affine log-scales are soft-clamped to (−clamp, clamp).
""" + FLOW_CONFIG_ARGS


@register_model("glow")
class Glow(FlowModel):
    """Glow: actnorm, invertible 1×1 convolution, coupling; multi-scale on images."""

    Config = GlowConfig
    image_transform = True

    def _coupling(self, mask, net) -> Transform:
        c: GlowConfig = self.config
        return AffineCoupling(mask, net, c.clamp) if c.coupling == "affine" else AdditiveCoupling(mask, net)

    def _level(self, shape: tuple[int, int, int], remaining: int) -> MultiScale:
        c: GlowConfig = self.config
        C, H, W = shape
        steps: list[Transform] = []
        if H % 2 == 0 and W % 2 == 0:
            steps.append(Squeeze())
            shape = C, H, W = (4 * C, H // 2, W // 2)
        params = 2 if c.coupling == "affine" else 1
        for k in range(c.steps):
            mask = channel_mask(shape, k % 2) if C >= 2 else checkerboard_mask(shape, k % 2)
            net = ConvNet(C, params * C, c.hidden, dropout=c.dropout)
            steps += [ActNorm(C), InvertibleLinearLU(C), self._coupling(mask, net)]
        if remaining == 1 or C < 2:
            return MultiScale(ComposedTransform(*steps), shape)
        kept = (C - C // 2, H, W)
        return MultiScale(ComposedTransform(*steps), shape, self._level(kept, remaining - 1))

    def build_transform(self, event_shape: tuple[int, ...]) -> Transform:
        c: GlowConfig = self.config
        if len(event_shape) == 3:
            return self._level(event_shape, c.levels)
        (D,) = event_shape
        params = 2 if c.coupling == "affine" else 1
        steps: list[Transform] = []
        for k in range(c.levels * c.steps):
            net = MLP(D, params * D, (c.hidden,) * c.hidden_layers, dropout=c.dropout)
            steps += [ActNorm(D), InvertibleLinearLU(D), self._coupling(parity_mask(D, k % 2), net)]
        return ComposedTransform(*steps)
