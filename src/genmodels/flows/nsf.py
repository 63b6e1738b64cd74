"""``nsf``: Neural Spline Flows (Durkan, Bekasov, Murray & Papamakarios 2019), coupling version.

Each step: optionally an invertible linear map (LU-parameterized, sec. 3.4 "linear layers"; off by
default) and a rational-quadratic spline coupling (RQ-NSF (C), sec. 3.1-3.3) on one half of the
dimensions, the other half in the next coupling (random halves by default, odd/even as an option),
K bins on [−B, B] with identity tails. For vector data: 2-D toys, tables and flattened images.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from ..accepts import FLATTENED
from ..core import register_model
from ..nn.flow_nets import MLP
from .model import FlowConfig, FlowModel
from .spline import spline_params_per_dim
from .transforms import ComposedTransform, InvertibleLinearLU, SplineCoupling, Transform, parity_mask, random_half_mask

__all__ = ["NSF", "NSFConfig"]


# The defaults were chosen on VALIDATION NLL over a panel of 2-D densities (checkerboard,
# eight-gaussians, two-moons; 20 CPU-s each, interleaved, BENCHMARKS.md "Peer comparisons on one
# harness"): without the LU linear layers, 16 bins on [−3.5, 3.5] (on standardized data) was best on
# average (old defaults: LU layers, 8 bins on [−5, 5]); then judged once on a held-out density.
# Random halves (a fixed random split per pair of couplings) replaced odd/even ones, chosen on
# validation over scikit-learn's wine and breast_cancer tables (3 seeds) and digits, where odd/even
# halves kept correlated columns of one parity apart (breast_cancer: 6–7 nats); level on the 2-D
# panel, where both are the same two halves (BENCHMARKS.md, "Defaults on a panel of data ...").
@dataclass
class NSFConfig(FlowConfig):
    """The options of NSF; those every flow shares are :class:`~genmodels.flows.model.FlowConfig`'s.

    Args:
        transforms: the number of spline couplings.
        hidden: hidden widths of each coupling's MLP.
        bins: K, the spline's number of bins.
        bound: B, the spline acts on [−B, B] and is the identity outside.
        linear: an LU-parameterized invertible linear layer before each coupling.
        partition: which half of the dimensions each coupling transforms: "parity" (odd/even,
            alternating) or "random" (a fixed random half per pair of couplings, then its complement).
    """

    transforms: int = 4
    hidden: tuple[int, ...] = (64, 64)
    bins: int = 16
    bound: float = 3.5
    linear: bool = False
    partition: str = "random"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.transforms < 1 or self.bins < 1 or not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("transforms and bins must be ≥ 1 and hidden a non-empty tuple of widths ≥ 1")
        if self.partition not in ("parity", "random"):
            raise ValueError(f"partition must be 'parity' or 'random', got {self.partition!r}")
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
            steps.append(SplineCoupling(self.partition_mask(D, i), MLP(D, P * D, c.hidden, dropout=c.dropout), c.bins, c.bound))
        return ComposedTransform(*steps)

    def partition_mask(self, features: int, index: int) -> Tensor:
        """The transformed half of coupling ``index``: odd/even alternating, or a random half per pair."""
        if self.config.partition == "parity":
            return parity_mask(features, index % 2)
        half = random_half_mask(features, pair=index // 2)
        return half if index % 2 == 0 else 1.0 - half
