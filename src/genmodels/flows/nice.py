"""``nice``: Non-linear Independent Components Estimation (Dinh, Krueger & Bengio 2015).

Additive couplings y₂ = x₂ + m(x₁) on the odd/even partition of the (flattened) dimensions, alternating
which half is updated (sec. 3.2, 5.1), each with log|det| = 0, then a diagonal scaling layer
y = exp(s) ⊙ x (sec. 3.3), the only volume change; a standard logistic prior (sec. 3.4, used for MNIST)
or a standard normal one. The paper's MNIST model has 4 couplings whose m has 5 hidden layers of 1000
units; the default here is small.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..accepts import FLATTENED
from ..core import register_model
from ..nn.flow_nets import MLP
from .distributions import BaseDensity, StandardLogistic, StandardNormal
from .model import FlowConfig, FlowModel
from .transforms import AdditiveCoupling, ComposedTransform, DiagonalScaling, Transform, parity_mask

__all__ = ["NICE", "NICEConfig"]


@dataclass
class NICEConfig(FlowConfig):
    """The options of NICE; those every flow shares are :class:`~genmodels.flows.model.FlowConfig`'s.

    Args:
        couplings: the number of additive coupling layers (the paper: 4).
        hidden: hidden widths of each coupling's network m (the paper: 5 × 1000).
        prior: "logistic" (the paper's, for MNIST) or "gaussian".
    """

    couplings: int = 4
    hidden: tuple[int, ...] = (64, 64)
    prior: str = "logistic"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.couplings < 1 or not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("couplings must be ≥ 1 and hidden a non-empty tuple of widths ≥ 1")
        if self.prior not in ("logistic", "gaussian"):
            raise ValueError(f"prior must be 'logistic' or 'gaussian', got '{self.prior}'")


@register_model("nice")
class NICE(FlowModel):
    """NICE: additive couplings and a diagonal scaling, on flattened data."""

    Config = NICEConfig
    accepts = FLATTENED

    def build_transform(self, event_shape: tuple[int, ...]) -> Transform:
        (features,) = event_shape
        c: NICEConfig = self.config
        couplings = [
            AdditiveCoupling(parity_mask(features, i % 2), MLP(features, features, c.hidden, dropout=c.dropout)) for i in range(c.couplings)
        ]
        return ComposedTransform(*couplings, DiagonalScaling((features,)))

    def build_base(self, features: int) -> BaseDensity:
        return StandardLogistic(features) if self.config.prior == "logistic" else StandardNormal(features)
