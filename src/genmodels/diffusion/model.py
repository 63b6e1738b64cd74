"""The one diffusion model class every method (``ddpm``, ``ve``, ``edm``, ``rectified-flow``) builds on.

A method is a process (:mod:`.processes`) and a prediction target (:mod:`.preconditioning`); the
network, the loss (:mod:`.losses`), the samplers (:mod:`.samplers`) and the likelihood
(:mod:`.likelihood`) are shared. The model's space:

- discrete data (levels 0..K−1): uniform dequantization y = (x + u)/K, then z = 2y − 1 ∈ [−1, 1)^D; its
  log P(x) ≥ log p(z) + D ln 2 − D ln K (``units.scale_to_symmetric``, ``units.discrete_bound_from_density``),
  and samples go back through ``units.quantize``;
- continuous data: z = (x − mean)/std per dimension, from the training split (``initialize``), with
  log p(x) = log p(z) − Σ ln std.

Either way the figure is an ``estimate`` (a finite-step ODE solve, a Hutchinson trace, one
dequantization draw), with its NFE.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..accepts import Accepts
from .. import units
from ..core import Batch, GenerativeModel, LikelihoodKind, LogLikelihood, Loss, ModelConfig
from ..data.base import DataSpec
from ..errors import UserError
from ..nn.noise_mlp import NoiseConditionedMLP
from ..nn.resolution import resolution_levels
from ..nn.unet import EMBEDDINGS, UNet
from ..progress import sampling_step
from .likelihood import ODE_SOLVERS, ode_log_likelihood
from .losses import denoising_loss
from .preconditioning import Preconditioning
from .processes import Process, karras_sigmas
from .samplers import SOLVERS, solve

__all__ = ["DiffusionConfig", "DiffusionModel", "unet_channel_mults"]

#: exact divergence (D backward passes per evaluation) up to this dimension, Hutchinson above
EXACT_DIVERGENCE_MAX_DIMS = 8


@dataclass
class DiffusionConfig(ModelConfig):
    """Args:
    channels: U-Net width of the first level (images).
    channel_mults: U-Net width multipliers; each level after the first halves the resolution. None
        (default): (1, 2, 2, …) with one level per resolution of :func:`~genmodels.nn.resolution.resolution_levels`
        ((1, 2) up to 28×28, (1, 2, 2) at 32×32, (1, 2, 2, 2) at 64×64: a bottom map of 4×4 to 8×8).
    num_res_blocks: U-Net residual blocks per level.
    attention: U-Net self-attention at the lowest resolution.
    dropout: U-Net dropout.
    hidden: MLP width (vector data).
    depth: MLP residual layers (vector data).
    conditional: model p(x | y) with classifier-free guidance (needs labelled data).
    label_dropout: probability of training on the null label (classifier-free guidance, Ho & Salimans 2022).
    checkpointing: gradient checkpointing of the U-Net's residual blocks (less memory, more time).
    embedding: how the U-Net's residual blocks take the noise/label embedding: ``add`` (a bias before the
        group norm, Ho et al. 2020) or ``scale-shift`` (AdaGN after it, Dhariwal & Nichol 2021), which
        small networks need: with ``add`` a norm group of one channel cancels the embedding.
    """

    channels: int = 16
    channel_mults: tuple[int, ...] | None = None
    num_res_blocks: int = 1
    attention: bool = True
    dropout: float = 0.0
    hidden: int = 128
    depth: int = 3
    conditional: bool = False
    label_dropout: float = 0.1
    checkpointing: bool = False
    embedding: str = "add"

    def __post_init__(self) -> None:
        if self.channel_mults is not None:
            self.channel_mults = tuple(self.channel_mults)
        if self.channels < 1 or self.hidden < 1 or self.depth < 1 or self.num_res_blocks < 1:
            raise ValueError("channels, hidden, depth and num_res_blocks must be ≥ 1")
        if self.channel_mults is not None and (not self.channel_mults or min(self.channel_mults) < 1):
            raise ValueError(f"channel_mults must be positive integers, got {self.channel_mults}")
        if not 0 <= self.dropout < 1 or not 0 <= self.label_dropout < 1:
            raise ValueError("dropout and label_dropout must be in [0, 1)")
        if self.embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {', '.join(EMBEDDINGS)}, got '{self.embedding}'")


def unet_channel_mults(config: DiffusionConfig, spec: DataSpec) -> tuple[int, ...]:
    """The U-Net's width multipliers: the config's, or (1, 2, 2, …) with one level per resolution of
    :func:`~genmodels.nn.resolution.resolution_levels` (the bottom map 4×4 to 8×8)."""
    if config.channel_mults is not None:
        return tuple(config.channel_mults)
    return (1,) + (2,) * (resolution_levels(*spec.shape[1:]) - 1)


class DiffusionModel(GenerativeModel):
    """A denoiser D(x̂; σ) = c_skip x̂ + c_out F(c_in x̂; c_noise) over a process; subclasses give
    ``make_process`` and ``make_preconditioning`` and the default sampler."""

    Config: ClassVar[type[ModelConfig]] = DiffusionConfig
    accepts = Accepts(
        images="U-Net, one level per resolution down to about 4×4 to 8×8",
        sizes="any (padded to a multiple of 2^(levels−1)); mults (1, 2) up to 28×28, (1, 2, 2) at 32×32, (1, 2, 2, 2) at 64×64",
        other="vectors and continuous data: a noise-conditioned MLP",
    )
    likelihood_kind = LikelihoodKind.ESTIMATE
    handles_continuous = True
    handles_discrete = True
    #: cheap ODE solves for the validation split during training: biased (a 4-step ODE is far from
    #: converged), so its records say so (:meth:`estimate_bias`); fit to rank checkpoints of one run
    validation_options: ClassVar[dict[str, Any]] = {"steps": 4}
    #: fewer fixed solver steps than this make an ODE estimate that is labelled biased
    converged_steps: ClassVar[int] = 16
    default_solver: ClassVar[str] = "heun"
    default_steps: ClassVar[int] = 18
    #: whether sampling clamps D(x̂; σ) to the data range by default (``clip``)
    clip_denoised: ClassVar[bool] = False

    def __init__(self, config: DiffusionConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.set_conditional(config.conditional)
        self.process: Process = self.make_process(config, spec)
        self.preconditioning: Preconditioning = self.make_preconditioning(config, spec)
        num_classes = spec.num_classes if self.conditional else None
        if spec.is_image:
            self.net = UNet(
                spec.shape[0],
                config.channels,
                unet_channel_mults(config, spec),
                config.num_res_blocks,
                config.attention,
                num_classes,
                config.dropout,
                config.checkpointing,
                config.embedding,
            )
        else:
            self.net = NoiseConditionedMLP(spec.dims, config.hidden, config.depth, num_classes)
        # Per-dimension standardization of continuous data (set by ``initialize``); unused for discrete data.
        self.register_buffer("data_mean", torch.zeros(spec.shape))
        self.register_buffer("data_std", torch.ones(spec.shape))

    # --- what a method chooses ------------------------------------------------------------------
    def make_process(self, config: DiffusionConfig, spec: DataSpec) -> Process:
        raise NotImplementedError

    def make_preconditioning(self, config: DiffusionConfig, spec: DataSpec) -> Preconditioning:
        raise NotImplementedError

    # --- the denoiser contract ------------------------------------------------------------------
    def denoise(self, x: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        """D(x̂; σ) = c_skip x̂ + c_out F(c_in x̂; c_noise) (EDM eq. 7); σ a scalar or (B,)."""
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        sigma_b = sigma.expand(len(x)) if sigma.dim() == 0 else sigma  # (B,)
        s = sigma_b.reshape(-1, *([1] * (x.dim() - 1)))
        c_in, c_noise = self.process.c_in(s), self.process.c_noise(sigma_b)
        if not self.spec.is_image:
            shape = x.shape
            out = self.net((c_in * x).reshape(len(x), -1), c_noise, labels).reshape(shape)
        else:
            out = self.net(c_in * x, c_noise, labels)
        return self.preconditioning.c_skip(s) * x + self.preconditioning.c_out(s) * out.to(x.dtype)

    def denoiser(self, labels: Tensor | None = None, guidance: float = 0.0) -> Callable[[Tensor, Tensor], Tensor]:
        """The contract D(x̂, σ) for samplers; with ``guidance`` w, classifier-free guidance
        D = (1 + w) D(x̂; σ, y) − w D(x̂; σ, ∅) (Ho & Salimans 2022, eq. 6)."""
        if guidance == 0 or labels is None:
            return lambda x, sigma: self.denoise(x, sigma, labels)
        null = torch.full_like(labels, self.spec.num_classes)

        def guided(x: Tensor, sigma: Tensor) -> Tensor:
            both = self.denoise(torch.cat([x, x]), sigma, torch.cat([labels, null]))
            cond, uncond = both.chunk(2)
            return (1 + guidance) * cond - guidance * uncond

        return guided

    # --- data ↔ model space ---------------------------------------------------------------------
    def to_model_space(self, x: Tensor, u: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data → z, and the per-example log-Jacobian term that turns log p(z) into log P(x)
        (discrete: a dequantization bound D ln 2 − D ln K; continuous: −Σ ln std)."""
        if self.spec.is_discrete:
            K = self.spec.levels
            if u is None:
                u = torch.rand(x.shape, device=x.device)
            z, logdet = units.scale_to_symmetric((x.to(self.data_mean.dtype) + u) / K)
            return z, units.discrete_bound_from_density(logdet, self.spec.dims, K)
        z = (x.to(self.data_mean.dtype) - self.data_mean) / self.data_std
        return z, (-self.data_std.log().sum()).expand(len(x))

    def from_model_space(self, z: Tensor) -> Tensor:
        if self.spec.is_discrete:
            return units.quantize((z + 1) / 2, self.spec.levels)
        return z * self.data_std + self.data_mean

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        """Continuous data: per-dimension mean and std of the training split."""
        if self.spec.is_discrete:
            return
        xs = torch.cat([b.x.to(self.data_mean.dtype) for b in batches])
        self.data_mean.copy_(xs.mean(0))
        self.data_std.copy_(xs.std(0).clamp_min(1e-6))

    # --- training -------------------------------------------------------------------------------
    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        """EDM eq. 8 with this method's p_train(σ) and λ(σ); labels dropped to ∅ with ``label_dropout``."""
        z, _ = self.to_model_space(batch.x)
        labels = self.labels(batch.y, len(batch))
        if labels is not None and self.config.label_dropout > 0:
            drop = torch.rand(len(labels), device=labels.device) < self.config.label_dropout
            labels = torch.where(drop, torch.full_like(labels, self.spec.num_classes), labels)
        per_example, _ = denoising_loss(lambda x, s: self.denoise(x, s, labels), self.process, z)
        return Loss(per_example.mean(), {"denoising": per_example})

    # --- likelihood -----------------------------------------------------------------------------
    @torch.no_grad()
    def log_likelihoods(
        self,
        batch: Batch,
        *,
        steps: int = 16,
        solver: str = "rk4",
        trace_probes: int = 1,
        exact_divergence: bool | None = None,
    ) -> list[LogLikelihood]:
        """The probability-flow ODE estimate of log P(x) (``pf-ode``).

        Args:
            steps: fixed solver steps in ln σ from σ_min to σ_max.
            solver: ``euler``, ``heun``, ``rk4`` or ``dopri5`` (adaptive; needs torchdiffeq, else rk4).
            trace_probes: Hutchinson probes per example (ignored with the exact divergence).
            exact_divergence: the exact trace (D backward passes per evaluation); default: when D ≤ 8.
        """
        if solver not in ODE_SOLVERS:
            raise UserError(f"unknown ODE solver '{solver}'; valid: {', '.join(ODE_SOLVERS)}")
        if steps < 1 or trace_probes < 1:
            raise UserError("steps and trace_probes must be ≥ 1")
        exact = self.spec.dims <= EXACT_DIVERGENCE_MAX_DIMS if exact_divergence is None else exact_divergence
        u = batch.rand(*self.spec.shape) if self.spec.is_discrete else None
        z, jacobian = self.to_model_space(batch.x, u)
        probes = None if exact else batch.randn(trace_probes, *self.spec.shape).transpose(0, 1)  # (k, B, ...)
        was_training = self.training
        self.eval()
        result = ode_log_likelihood(
            self.denoiser(self.labels(batch.y, len(batch))),
            z,
            sigma_min=self.process.sigma_min,
            sigma_max=self.process.sigma_max,
            steps=steps,
            solver=solver,
            probes=probes,
        )
        self.train(was_training)
        name = "dequantization" if self.spec.is_discrete else "standardization"
        terms = {"prior": result.prior, "divergence": result.divergence, name: jacobian}
        return [
            LogLikelihood(
                result.log_prob + jacobian,
                LikelihoodKind.ESTIMATE,
                f"pf-ode-{result.solver}",
                samples=None if exact else trace_probes,
                evaluations=result.nfe,
                terms=terms,
            )
        ]

    def estimate_bias(self, measure: str, options: dict[str, Any]) -> str | None:
        """A fixed-step ODE with fewer than :attr:`converged_steps` steps is biased (on digits a
        4-step rectified-flow estimate reads 1.7 bits/dim against 2.35 at 16 steps)."""
        steps, solver = int(options.get("steps", 16)), str(options.get("solver", "rk4"))
        if not measure.startswith("pf-ode") or solver == "dopri5" or steps >= self.converged_steps:
            return None
        return f"{steps}-step {solver} ODE: biased (not converged); compare only checkpoints of one run"

    # --- sampling -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        solver: str | None = None,
        eta: float = 0.0,
        s_churn: float = 0.0,
        guidance: float = 0.0,
        schedule: str = "default",
        clip: bool | None = None,
    ) -> Tensor:
        """n samples in the data's space (int64 levels for discrete data).

        Args:
            y: labels (n,) of a conditional model (None: its null label, an unconditional draw).
            steps: sampler steps (default: the method's; ``ddpm`` on a discrete VP model: all T).
            solver: ``euler``, ``heun`` (EDM Alg. 1; Alg. 2 with s_churn > 0), ``ddim``, ``ddpm``, ``dpmpp-2m``.
            eta: DDIM's η (0: deterministic; 1: DDPM's ancestral step).
            s_churn: EDM's S_churn (stochasticity of ``heun``).
            guidance: classifier-free guidance weight w (conditional models with ``y``).
            schedule: the σ steps: ``default`` (the method's: DDPM's sub-sequence, VE's geometric, flow's
                uniform t) or ``karras`` (EDM eq. 5, ρ = 7, between the process's σ_min and σ_max).
            clip: clamp every denoised estimate D(x̂; σ) to the data's range [−1, 1] (discrete data): the
                x̂_0 clipping of Ho et al. 2020's sampler and diffusers' ``clip_sample``. Every solver then
                uses the clipped D throughout, so ``ddim`` also recomputes its step direction
                ε̂ = (x̂ − D)/σ from the clipped D: diffusers' DDIMScheduler with ``clip_sample=True`` and
                ``use_clipped_model_output=True`` (its default, False, keeps the network's ε̂). Default: the
                method's (on for ``ddpm``, whose ε-prediction D = x̂ − σ ε̂ multiplies the network's error
                by σ, up to 157 at t = T; off where preconditioning bounds D, as EDM's does).
        """
        return self.sample_with_info(
            n, y=y, generator=generator, steps=steps, solver=solver, eta=eta, s_churn=s_churn, guidance=guidance,
            schedule=schedule, clip=clip,
        )[0]

    @torch.no_grad()
    def sample_with_info(self, n: int, **options: Any) -> tuple[Tensor, dict[str, Any]]:
        y, generator = options.pop("y", None), options.pop("generator", None)
        solver = options.pop("solver", None) or self.default_solver
        steps = options.pop("steps", None)
        eta, s_churn = float(options.pop("eta", 0.0)), float(options.pop("s_churn", 0.0))
        guidance = float(options.pop("guidance", 0.0))
        schedule = options.pop("schedule", "default") or "default"
        clip = options.pop("clip", None)
        # the data lie in [−1, 1] in model space (to_model_space) only when they are discrete
        clip = (self.clip_denoised if clip is None else bool(clip)) and self.spec.is_discrete
        if options:
            raise UserError(f"unknown sampling option(s) {', '.join(options)} for model '{self.name}'")
        if solver not in SOLVERS:
            raise UserError(f"unknown solver '{solver}'; valid: {', '.join(SOLVERS)}")
        if steps is None:
            steps = self.default_steps_for(solver)
        if steps < 1:
            raise UserError(f"steps must be ≥ 1, got {steps}")
        if guidance and not self.conditional:
            raise UserError(f"guidance needs a class-conditional model (conditional=true); '{self.name}' is not")
        if y is not None:
            if not self.conditional:
                raise UserError(f"model '{self.name}' is not class-conditional; drop y")
            y = y.to(self.device).long()
        if guidance and y is None:
            raise UserError("guidance needs labels y (genmodels sample --label)")
        if schedule == "default":
            sigmas = self.process.sampling_sigmas(steps)
        elif schedule == "karras":
            sigmas = karras_sigmas(steps, self.process.sigma_min, self.process.sigma_max)
        else:
            raise UserError(f"unknown schedule '{schedule}'; valid: default, karras")
        x = torch.randn((n, *self.spec.shape), generator=generator, device=generator.device if generator else None)
        x = x.to(self.device, self.data_mean.dtype) * float(sigmas[0])
        was_training = self.training
        self.eval()
        denoiser = self.denoiser(y, guidance)
        if clip:
            unclipped = denoiser
            denoiser = lambda x, sigma: unclipped(x, sigma).clamp(-1.0, 1.0)  # noqa: E731
        # The draw's progress line counts network evaluations against the solver's expected NFE
        # (Heun: two per step but the last, EDM Alg. 1; the others one per step).
        expected = 2 * (len(sigmas) - 1) - 1 if solver == "heun" else len(sigmas) - 1
        counted = denoiser

        def denoiser(x: Tensor, sigma: Tensor) -> Tensor:
            sampling_step(expected, "NFE")
            return counted(x, sigma)

        z, nfe = solve(solver, denoiser, x, sigmas, eta=eta, s_churn=s_churn, generator=generator)
        self.train(was_training)
        info = {"nfe": nfe, "solver": solver, "steps": steps}
        if schedule != "default":
            info["schedule"] = schedule
        if clip:
            info["clip"] = True
        if guidance:
            info["guidance"] = guidance
        return self.from_model_space(z), info

    def default_steps_for(self, solver: str) -> int:
        return self.default_steps

