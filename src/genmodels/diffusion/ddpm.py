"""``ddpm``: denoising diffusion probabilistic models (Ho et al. 2020) — the VP process with a
discrete (or continuous-time) linear or cosine β schedule and an ε-, x_0- or v-prediction network.

DDIM (Song et al. 2021a) is not a second model: it samples the same trained network, so it is a
sampling option, ``genmodels sample --option solver=ddim --option steps=50 --option eta=0``. The
default sampler is DDPM's ancestral one on a 100-step sub-sequence of the T steps (respacing, Nichol &
Dhariwal 2021, sec. 4); ``--option steps=1000`` runs the full chain.

Besides the probability-flow ODE estimate, ``log_likelihoods(batch, bound=True)`` adds DDPM's own
variational bound (kind ``bound``, T network evaluations, per-term figures; :mod:`.bound`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import Batch, LikelihoodKind, LogLikelihood, register_model
from ..data.base import DataSpec
from ..errors import UserError
from .bound import ddpm_bound
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
    # ε-prediction: D = x̂ − σ ε̂ carries the network's error times σ (up to 157 at t = T); Ho et al.
    # 2020's sampler (and diffusers' clip_sample) clamp the x̂_0 estimate to the data range.
    clip_denoised = True

    def make_process(self, config: DDPMConfig, spec: DataSpec) -> VP:
        return VP(config.beta_schedule, config.timesteps)

    def make_preconditioning(self, config: DDPMConfig, spec: DataSpec) -> Preconditioning:
        return Preconditioning(config.prediction)

    @torch.no_grad()
    def log_likelihoods(
        self,
        batch: Batch,
        *,
        steps: int = 16,
        solver: str = "rk4",
        trace_probes: int = 1,
        exact_divergence: bool | None = None,
        bound: bool = False,
    ) -> list[LogLikelihood]:
        """The ODE estimate (see :class:`DiffusionModel`) and, with ``bound``, DDPM's variational bound
        (discrete-time process on discrete data; T network evaluations per example)."""
        records = super().log_likelihoods(
            batch, steps=steps, solver=solver, trace_probes=trace_probes, exact_divergence=exact_divergence
        )
        if not bound:
            return records
        if not (self.process.discrete and self.spec.is_discrete):
            raise UserError("bound=true needs discrete data and a discrete-time model (timesteps ≥ 2)")
        was_training = self.training
        self.eval()
        labels = self.labels(batch.y, len(batch))
        if labels is not None:
            denoiser = lambda x, s: self.denoise(x, s, labels.repeat(len(x) // len(labels)))  # noqa: E731
        else:
            denoiser = lambda x, s: self.denoise(x, s)  # noqa: E731
        terms = ddpm_bound(
            denoiser, self.process, batch.x, self.spec.levels, lambda n: batch.randn(n, *self.spec.shape),
            network_dtype=self.data_mean.dtype,
        )
        self.train(was_training)
        terms = {name: -value.to(self.data_mean.dtype) for name, value in terms.items()}  # log-likelihood terms (≤ 0)
        values = sum(terms.values())
        records.append(
            LogLikelihood(
                values, LikelihoodKind.BOUND, "ddpm-elbo", samples=1, evaluations=self.process.timesteps, terms=terms
            )
        )
        return records
