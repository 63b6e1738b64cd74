"""``maf``: Masked Autoregressive Flow (Papamakarios, Pavlakou & Murray 2017).

Each layer u_i = (x_i − μ_i(x_<i)) exp(−α_i(x_<i)) with (μ, α) from one MADE pass (eq. 2-5), the
order reversed between layers (sec. 3.2); density evaluation is one pass, sampling D passes. An
actnorm per layer (optional) stands in for the paper's batch normalization (sec. 3.3) without
batch statistics, so evaluation does not depend on the batch. For vector data.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..accepts import FLATTENED
from ..core import register_model
from ..nn.flow_nets import MaskedMLP
from .model import FlowConfig, FlowModel
from .transforms import ActNorm, ComposedTransform, MaskedAutoregressive, Reverse, Transform

__all__ = ["MAF", "MAFConfig"]


@dataclass
class MAFConfig(FlowConfig):
    """The options of MAF; those every flow shares are :class:`~genmodels.flows.model.FlowConfig`'s.

    Args:
        transforms: the number of autoregressive layers.
        hidden: hidden widths of each MADE.
        actnorm: an actnorm layer (data-dependent initialization) before each autoregressive layer.
        clamp: the log-scales α are soft-clamped to (−clamp, clamp).
    """

    transforms: int = 5
    hidden: tuple[int, ...] = (64, 64)
    actnorm: bool = True
    clamp: float = 3.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transforms < 1 or not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("transforms must be ≥ 1 and hidden a non-empty tuple of widths ≥ 1")


@register_model("maf")
class MAF(FlowModel):
    """Masked autoregressive flow on flattened data."""

    Config = MAFConfig
    accepts = FLATTENED

    def build_transform(self, event_shape: tuple[int, ...]) -> Transform:
        (D,) = event_shape
        c: MAFConfig = self.config
        steps: list[Transform] = []
        for i in range(c.transforms):
            if c.actnorm:
                steps.append(ActNorm(D))
            steps.append(MaskedAutoregressive(MaskedMLP(D, 2, c.hidden, dropout=c.dropout), c.clamp))
            if i < c.transforms - 1:
                steps.append(Reverse())
        return ComposedTransform(*steps)
