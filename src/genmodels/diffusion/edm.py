"""``edm``: Karras et al. 2022, "Elucidating the design space of diffusion-based generative models":
σ(t) = t, s = 1, EDM preconditioning, log-normal training noise and Heun sampling on Karras steps."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import register_model
from ..data.base import DataSpec
from .model import DiffusionConfig, DiffusionModel
from .preconditioning import Preconditioning
from .processes import EDM as EDMProcess

__all__ = ["EDM", "EDMConfig"]


@dataclass
class EDMConfig(DiffusionConfig):
    """Args:
    sigma_min: the smallest noise level of sampling and of the ODE likelihood.
    sigma_max: the largest noise level.
    rho: ρ of the Karras steps (EDM eq. 5).
    P_mean: mean of ln σ in training.
    P_std: standard deviation of ln σ in training.
    sigma_data: σ_data of the preconditioning; default 0.5 for data in [−1, 1], 1 for standardized continuous data.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        EDMProcess(self.sigma_min, self.sigma_max, self.rho, self.P_mean, self.P_std, self.sigma_data or 0.5)


def _sigma_data(config: EDMConfig, spec: DataSpec) -> float:
    return config.sigma_data or (0.5 if spec.is_discrete else 1.0)


@register_model("edm")
class EDM(DiffusionModel):
    """EDM's process, preconditioning and loss; Heun (Alg. 1) with 18 steps (35 NFE) by default."""

    Config = EDMConfig
    default_solver = "heun"
    default_steps = 18

    def make_process(self, config: EDMConfig, spec: DataSpec) -> EDMProcess:
        return EDMProcess(
            config.sigma_min, config.sigma_max, config.rho, config.P_mean, config.P_std, _sigma_data(config, spec)
        )

    def make_preconditioning(self, config: EDMConfig, spec: DataSpec) -> Preconditioning:
        return Preconditioning("edm", _sigma_data(config, spec))
