"""``ve``: score matching with a variance-exploding process (NCSN, Song & Ermon 2019; Song et al. 2021):
s = 1, geometric σ(t) = σ_min (σ_max/σ_min)^t, the σ²-weighted denoising score matching loss, and
the network predicting ε = −σ ∇ log p_σ (``eps`` preconditioning, c_in = 1)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core import register_model
from ..data.base import DataSpec
from .model import DiffusionConfig, DiffusionModel
from .preconditioning import Preconditioning
from .processes import VE as VEProcess

__all__ = ["VE", "VEConfig"]


@dataclass
class VEConfig(DiffusionConfig):
    """Args:
    sigma_min: the smallest noise level (Song et al. 2021 use 0.01).
    sigma_max: the largest noise level (about the largest distance between training points).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __post_init__(self) -> None:
        super().__post_init__()
        VEProcess(self.sigma_min, self.sigma_max)


@register_model("ve")
class VE(DiffusionModel):
    """VE process, ε (score) prediction; Heun on geometric steps by default."""

    Config = VEConfig
    default_solver = "heun"
    default_steps = 32

    def make_process(self, config: VEConfig, spec: DataSpec) -> VEProcess:
        return VEProcess(config.sigma_min, config.sigma_max)

    def make_preconditioning(self, config: VEConfig, spec: DataSpec) -> Preconditioning:
        return Preconditioning("eps")
