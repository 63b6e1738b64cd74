"""``ddpm``: denoising diffusion probabilistic models (Ho et al. 2020) — the VP process with a
discrete (or continuous-time) linear or cosine β schedule and an ε-, x_0- or v-prediction network.

DDIM (Song et al. 2021a) is not a second model: it samples the same trained network, so it is a
sampling option, ``genmodels sample --option solver=ddim --option steps=50 --option eta=0``. The
default sampler is DDPM's ancestral one on a 100-step sub-sequence of the T steps (respacing, Nichol &
Dhariwal 2021, sec. 4); ``--option steps=1000`` runs the full chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import register_model
from ..data.base import DataSpec
from .model import DiffusionConfig, DiffusionModel
from .preconditioning import Preconditioning
from .processes import VP

__all__ = ["DDPM", "DDPMConfig"]


@dataclass
class DDPMConfig(DiffusionConfig):
    """Args:
    timesteps: T, the number of discrete steps; 0 for the continuous-time VP process (t ∈ [1e-3, 1]).
    beta_schedule: ``linear`` (β 1e-4 → 0.02 for T = 1000) or ``cosine`` (Nichol & Dhariwal 2021).
    prediction: the network's target: ``eps`` (Ho et al.), ``x0`` or ``v`` (Salimans & Ho 2022).
    """

    timesteps: int = 1000
    beta_schedule: str = "linear"
    prediction: str = "eps"

    def __post_init__(self) -> None:
        super().__post_init__()
        VP(self.beta_schedule, self.timesteps)  # validates both
        if self.prediction not in ("eps", "x0", "v"):
            raise ValueError(f"prediction must be eps, x0 or v, got '{self.prediction}'")


@register_model("ddpm")
class DDPM(DiffusionModel):
    """VP process, ε-prediction, DDPM ancestral sampling by default (``solver=ddim`` etc. for fewer steps)."""

    Config = DDPMConfig
    default_solver = "ddpm"
    default_steps = 100

    def make_process(self, config: DDPMConfig, spec: DataSpec) -> VP:
        return VP(config.beta_schedule, config.timesteps)

    def make_preconditioning(self, config: DDPMConfig, spec: DataSpec) -> Preconditioning:
        return Preconditioning(config.prediction)
