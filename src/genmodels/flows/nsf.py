"""``nsf``: Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios 2019), coupling version.

Each step: optionally an invertible linear map (LU-parameterized, sec. 3.4 "linear layers"; off by
default) and a rational-quadratic spline coupling (RQ-NSF (C), sec. 3.1-3.3) on alternating odd/even
halves, K bins on [−B, B] with identity tails. For vector data: 2-D toys, tables and flattened images.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..accepts import FLATTENED
from ..core import register_model
from ..nn.flow_nets import MLP
from .model import FlowConfig, FlowModel
from .spline import spline_params_per_dim
from .transforms import ComposedTransform, InvertibleLinearLU, SplineCoupling, Transform, parity_mask

__all__ = ["NSF", "NSFConfig"]


# The defaults were chosen on VALIDATION NLL over a panel of 2-D densities (checkerboard,
# eight-gaussians, two-moons; 20 CPU-s each, interleaved, BENCHMARKS.md "Peer comparisons on one
# harness"): without the LU linear layers, 16 bins on [−3.5, 3.5] (on standardized data) was best on
# average (old defaults: LU layers, 8 bins on [−5, 5]); then judged once on a held-out density.
@dataclass
class NSFConfig(FlowConfig):
    """The options of NSF; those every flow shares are :class:`~genmodels.flows.model.FlowConfig`'s.

    Args:
        transforms: the number of spline couplings.
        hidden: hidden widths of each coupling's MLP.
        bins: K, the spline's number of bins.
        bound: B, the spline acts on [−B, B] and is the identity outside.
        linear: an LU-parameterized invertible linear layer before each coupling.
    """

    transforms: int = 4
    hidden: tuple[int, ...] = (64, 64)
    bins: int = 16
    bound: float = 3.5
    linear: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transforms < 1 or self.bins < 1 or not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("transforms and bins must be ≥ 1 and hidden a non-empty tuple of widths ≥ 1")
        if not self.bound > 0:
            raise ValueError(f"bound must be > 0, got {self.bound}")


@register_model("nsf")
class NSF(FlowModel):
    """Rational-quadratic spline couplings (optionally with linear layers), on flattened data."""

    Config = NSFConfig
    accepts = FLATTENED

    def build_transform(self, event_shape: tuple[int, ...]) -> Transform:
        (D,) = event_shape
        c: NSFConfig = self.config
        P = spline_params_per_dim(c.bins)
        steps: list[Transform] = []
        for i in range(c.transforms):
            if c.linear:
                steps.append(InvertibleLinearLU(D))
            steps.append(SplineCoupling(parity_mask(D, i % 2), MLP(D, P * D, c.hidden, dropout=c.dropout), c.bins, c.bound))
        return ComposedTransform(*steps)
