"""``glow``: Glow (Kingma & Dhariwal 2018).

Each step of flow (sec. 3, fig. 2a): actnorm (data-dependent initialization through ``initialize``),
an invertible 1×1 convolution (LU-parameterized, eq. 10) and an affine (or additive) coupling. On
images, the multi-scale architecture of fig. 2b: L levels of squeeze → K steps → split (half of the
channels factored out), the last level without split. A side that cannot be halved skips the squeeze,
and a one-channel input couples on a checkerboard mask instead of the channel split. On vectors,
K·L steps with a linear LU layer and odd/even coupling masks.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from pathlib import Path

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

__all__ = ["Glow", "GlowConfig", "CONDITIONER_DTYPES", "cpu_has_bf16_units", "resolve_conditioner_dtype"]

#: conditioner_dtype → the autocast dtype of the coupling networks (None: no autocast); "auto" is
#: resolved by :func:`resolve_conditioner_dtype` when the model is built
CONDITIONER_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "auto": None}


@functools.cache
def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX-BF16 in /proc/cpuinfo's flags).

    torch's CPU capability string says only "AVX2" or "AVX512"; an AVX512 CPU without the BF16
    extension, and every AVX2-only CPU, emulate bf16 convolutions, which there run several times
    slower than float32 (a Glow step at 0.145× normflows' fp32 speed on an AVX2 machine).
    Where /proc/cpuinfo is missing, oneDNN's own bf16 check decides."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False


def resolve_conditioner_dtype(name: str) -> tuple[torch.dtype | None, str]:
    """The autocast dtype for ``conditioner_dtype=name`` on this machine, and a note saying why.

    "auto": bf16 where it is fast (a CUDA device, or a CPU with bf16 units), else float32.
    "bfloat16" on a CPU-only machine without bf16 units is kept (it was asked for) with a warning
    that it will be slower than float32 there."""
    capability = torch.backends.cpu.get_cpu_capability()
    fast = torch.cuda.is_available() or cpu_has_bf16_units()
    if name == "auto":
        if fast:
            return torch.bfloat16, f"auto: bfloat16 (CUDA or a CPU with bf16 units; CPU capability {capability})"
        return None, f"auto: float32 (this CPU, capability {capability}, has no bf16 units: bf16 would be slower)"
    if name == "bfloat16" and not fast:
        note = (f"conditioner_dtype='bfloat16' on a CPU without bf16 units (torch CPU capability {capability}, no "
                "avx512_bf16/amx_bf16): the coupling networks will run several times slower than in float32; "
                "use conditioner_dtype='auto' (float32 here) or 'float32'")
        warnings.warn(note, RuntimeWarning, stacklevel=3)
        return torch.bfloat16, note
    return CONDITIONER_DTYPES[name], f"{name} (as asked; CPU capability {capability})"


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
        conditioner_dtype: split="channel": "float32", "bfloat16" (the coupling networks under autocast;
            the flow's own arithmetic, its log-determinants and the likelihood stay in float32) or "auto"
            (bfloat16 on a CUDA device or a CPU with bf16 units, AVX512-BF16/AMX; float32 elsewhere, where
            bf16 is emulated and slower). "bfloat16" on a CPU without bf16 units warns that it will be
            slower; the choice made is in ``model.conditioner_note``.
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
            autocast_dtype=self._conditioner_autocast(),
        )

    def _conditioner_autocast(self) -> torch.dtype | None:
        if not hasattr(self, "conditioner_note"):  # resolved once per model (one warning, one note)
            self._conditioner_dtype, self.conditioner_note = resolve_conditioner_dtype(self.config.conditioner_dtype)
        return self._conditioner_dtype

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
