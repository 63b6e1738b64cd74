"""``rectified-flow``: flow matching / rectified flow (Liu et al. 2023; Lipman et al. 2023):
x_t = (1 − t) x_0 + t ε, a network predicting the velocity ε − x_0, Euler sampling. It is the same
denoiser contract, loss and sampler code as every other method here (s(t) = 1 − t, σ = t/(1 − t))."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import register_model
from ..data.base import DataSpec
from .losses import denoising_loss
from .model import DiffusionConfig, DiffusionModel
from .preconditioning import Preconditioning
from .processes import Flow
from .samplers import sample_euler

__all__ = ["RectifiedFlow", "RectifiedFlowConfig", "reflow_pairs", "straightness", "reflow_loss"]


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


# --- reflow (Liu et al. 2023, "Flow straight and fast", sec. 2.3) ----------------------------------
@torch.no_grad()
def reflow_pairs(
    model: RectifiedFlow, n: int, *, steps: int = 32, y: Tensor | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """(noise ε, sample z_0) pairs in the model's space from the trained flow's ODE (Euler in t):
    the coupling that the next rectified flow is trained on with :func:`reflow_loss`."""
    sigmas = model.process.sampling_sigmas(steps)
    noise = torch.randn((n, *model.spec.shape), generator=generator).to(model.device)
    z0, _ = sample_euler(model.denoiser(y), noise * float(sigmas[0]), sigmas)  # x̂ = σ_max ε ⇔ x_{t_max} ≈ t_max ε
    return noise, z0


def straightness(model: RectifiedFlow, noise: Tensor, *, steps: int = 32, y: Tensor | None = None) -> Tensor:
    """S = ∫_0^1 ‖(Z_1 − Z_0) − v(Z_t, t)‖² dt along the ODE path from ``noise`` (Liu et al. 2023, eq. 7),
    per example and averaged over dimensions, by Euler in t; 0 for a straight flow."""
    process = model.process
    sigmas = process.sampling_sigmas(steps)
    t = process.time(sigmas)  # t_max, ..., 0
    denoiser = model.denoiser(y)
    xt = noise * float(t[0])  # x_{t_max} ≈ t_max ε (the data's share (1 − t_max) z_0 is neglected)
    velocities, dts = [], []
    with torch.no_grad():
        for i in range(steps):
            x_hat = xt / float(1 - t[i])
            denoised = denoiser(x_hat, sigmas[i].to(xt.dtype))
            v = (xt - denoised) / float(t[i])  # x_t = D + t v  ⇒  v = (x_t − D)/t
            velocities.append(v)
            dts.append(float(t[i] - t[i + 1]))
            xt = xt - dts[-1] * v
    displacement = noise * float(t[0]) - xt  # Z_{t_max} − Z_0 over t_max
    total = sum(
        dt * ((displacement / float(t[0]) - v) ** 2).reshape(len(v), -1).mean(1) for dt, v in zip(dts, velocities)
    )
    return total


def reflow_loss(model: RectifiedFlow, noise: Tensor, data: Tensor) -> Tensor:
    """The flow-matching loss on a fixed coupling (ε, z_0) (Liu et al. 2023, eq. 1 with (X_0, X_1) from
    :func:`reflow_pairs`), per example: the same loss as training with independent noise."""
    per_example, _ = denoising_loss(lambda x, s: model.denoise(x, s), model.process, data, noise=noise)
    return per_example
