"""``rectified-flow``: flow matching / rectified flow (Liu et al. 2023; Lipman et al. 2023):
x_t = (1 − t) x_0 + t ε, a network predicting the velocity ε − x_0, Euler sampling. It is the same
denoiser contract, loss and sampler code as every other method here (s(t) = 1 − t, σ = t/(1 − t)).

Reflow (Liu et al. 2023, sec. 2.3) is this model trained on another run's coupling: with
``reflow_from=RUN`` the model starts from that teacher's weights, draws ``reflow_pairs`` (ε, z_0) pairs
with the teacher's ODE, and the ordinary trainer fits the flow-matching loss on those fixed pairs
instead of on (data, independent noise). Every rectified flow reports the straightness of its ODE
paths as an evaluation figure, so before and after are two ``genmodels eval`` results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..core import Batch, Loss, register_model
from ..data.base import DataSpec
from ..errors import UserError
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
    reflow_from: a trained rectified-flow run (or checkpoint) to reflow: start from its weights and
        train on its ODE's (noise, sample) coupling; the network options must be the teacher's.
    reflow_pairs: the coupling's size (pairs drawn once, from ``reflow_seed``).
    reflow_steps: the teacher's Euler steps per pair.
    reflow_seed: the seed of the coupling's noise (and labels, for a conditional teacher).
    """

    logit_normal: bool = False
    t_max: float = 0.9999
    reflow_from: str = ""
    reflow_pairs: int = 5000
    reflow_steps: int = 32
    reflow_seed: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        Flow(t_max=self.t_max)
        if self.reflow_pairs < 1 or self.reflow_steps < 1:
            raise ValueError("reflow_pairs and reflow_steps must be ≥ 1")


@register_model("rectified-flow")
class RectifiedFlow(DiffusionModel):
    """Flow matching with velocity prediction; Euler with 32 uniform steps in t by default."""

    Config = RectifiedFlowConfig
    default_solver = "euler"
    default_steps = 32
    #: Euler steps of the straightness figure reported by evaluation (validation too: kept cheap)
    straightness_steps = 8

    def __init__(self, config: RectifiedFlowConfig, spec: DataSpec):
        super().__init__(config, spec)
        self._coupling: tuple[Tensor, Tensor, Tensor | None] | None = None

    def make_process(self, config: RectifiedFlowConfig, spec: DataSpec) -> Flow:
        return Flow(t_max=config.t_max, logit_normal=config.logit_normal)

    def make_preconditioning(self, config: RectifiedFlowConfig, spec: DataSpec) -> Preconditioning:
        return Preconditioning("velocity")

    # --- reflow -----------------------------------------------------------------------------------
    def teacher(self) -> RectifiedFlow:
        """The run named by ``reflow_from``, checked to be a rectified flow of this network on this data."""
        from ..checkpoint import load_model  # checkpoint imports the registry, which imports this module

        source = self.config.reflow_from
        if not Path(source).exists():
            raise UserError(f"reflow_from='{source}' does not exist; give a trained rectified-flow run folder or checkpoint")
        teacher, _ = load_model(source, device=self.device)
        if teacher.name != self.name:
            raise UserError(f"reflow_from='{source}' is a '{teacher.name}' run; reflow needs a '{self.name}' run")
        if (teacher.spec.shape, teacher.spec.levels) != (self.spec.shape, self.spec.levels):
            raise UserError(
                f"reflow_from='{source}' was trained on '{teacher.spec.name}' {teacher.spec.shape}, not on "
                f"'{self.spec.name}' {self.spec.shape}; reflow on the teacher's data"
            )
        mine, theirs = self.state_dict(), teacher.state_dict()
        if mine.keys() != theirs.keys() or any(mine[k].shape != theirs[k].shape for k in mine):
            network = ("channels", "channel_mults", "num_res_blocks", "attention", "embedding", "hidden", "depth", "conditional")
            differ = [f"{k}={getattr(teacher.config, k)!r}" for k in network if getattr(teacher.config, k) != getattr(self.config, k)]
            raise UserError(
                f"reflow_from='{source}' has another network; give the teacher's options ({', '.join(differ) or 'see its run.json'})"
            )
        return teacher

    @torch.no_grad()
    def coupling(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """The teacher's (ε, z_0, labels) pairs, drawn once from ``reflow_seed`` (so a resumed run
        trains on the same coupling) and kept out of the checkpoint."""
        if self._coupling is None:
            teacher = self.teacher().eval()
            config, generator = self.config, torch.Generator().manual_seed(self.config.reflow_seed)
            noise, z0, labels = [], [], []
            for start in range(0, config.reflow_pairs, 1000):
                n = min(1000, config.reflow_pairs - start)
                y = torch.randint(self.spec.num_classes, (n,), generator=generator) if self.conditional else None
                eps, z = reflow_pairs(teacher, n, steps=config.reflow_steps, generator=generator,
                                      y=None if y is None else y.to(self.device))
                noise.append(eps), z0.append(z), labels.append(y)
            self._coupling = (torch.cat(noise), torch.cat(z0), torch.cat(labels).to(self.device) if self.conditional else None)
        return self._coupling

    @torch.no_grad()
    def initialize(self, batches) -> None:
        """Reflow starts from the teacher's weights (Liu et al. 2023 fine-tune the previous flow)."""
        super().initialize(batches)
        if self.config.reflow_from:
            self.load_state_dict(self.teacher().state_dict())

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        """With ``reflow_from``: the flow-matching loss on ``len(batch)`` pairs of the teacher's coupling,
        drawn with the trainer's RNG (the data batch only sets the size); else the ordinary loss."""
        if not self.config.reflow_from:
            return super().loss(batch, step=step, group=group)
        noise, z0, labels = self.coupling()
        index = torch.randint(len(noise), (len(batch),), device=noise.device)
        per_example = reflow_loss(self, noise[index], z0[index], None if labels is None else labels[index])
        return Loss(per_example.mean(), {"reflow": per_example})

    @torch.no_grad()
    def evaluation_figures(self, batch: Batch) -> dict[str, Tensor]:
        """``straightness`` of the ODE path from per-example noise (Liu et al. 2023, eq. 7; 0 when straight),
        with the example's label for a conditional model."""
        noise = batch.randn(*self.spec.shape)
        return {"straightness": straightness(self, noise, steps=self.straightness_steps, y=self.labels(batch.y, len(batch)))}


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


def reflow_loss(model: RectifiedFlow, noise: Tensor, data: Tensor, labels: Tensor | None = None) -> Tensor:
    """The flow-matching loss on a fixed coupling (ε, z_0) (Liu et al. 2023, eq. 1 with (X_0, X_1) from
    :func:`reflow_pairs`), per example: the same loss as training with independent noise."""
    per_example, _ = denoising_loss(lambda x, s: model.denoise(x, s, labels), model.process, data, noise=noise)
    return per_example
