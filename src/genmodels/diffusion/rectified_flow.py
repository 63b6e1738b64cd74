"""``rectified-flow``: flow matching / rectified flow (Liu et al. 2023; Lipman et al. 2023):
x_t = (1 − t) x_0 + t ε, a network predicting the velocity ε − x_0, Euler sampling. It is the same
denoiser contract, loss and sampler code as every other method here (s(t) = 1 − t, σ = t/(1 − t))."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import register_model
from ..data.base import DataSpec
from .model import DiffusionConfig, DiffusionModel
from .preconditioning import Preconditioning
from .processes import Flow

__all__ = ["RectifiedFlow", "RectifiedFlowConfig"]


@dataclass
class RectifiedFlowConfig(DiffusionConfig):
    """Args:
    logit_normal: draw training t from a logit-normal (Esser et al. 2024) instead of U[0, 1].
    t_max: where sampling and the ODE likelihood start (σ = t/(1 − t) is infinite at t = 1).
    """

    logit_normal: bool = False
    t_max: float = 0.9999

    def __post_init__(self) -> None:
        super().__post_init__()
        Flow(t_max=self.t_max)


@register_model("rectified-flow")
class RectifiedFlow(DiffusionModel):
    """Flow matching with velocity prediction; Euler with 32 uniform steps in t by default."""

    Config = RectifiedFlowConfig
    default_solver = "euler"
    default_steps = 32

    def make_process(self, config: RectifiedFlowConfig, spec: DataSpec) -> Flow:
        return Flow(t_max=config.t_max, logit_normal=config.logit_normal)

    def make_preconditioning(self, config: RectifiedFlowConfig, spec: DataSpec) -> Preconditioning:
        return Preconditioning("velocity")
