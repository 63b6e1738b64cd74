"""``discrete-vae``: a VAE with categorical latents, trained with a chosen gradient estimator.

z = (z_1..z_V), each z_v one of C classes (one-hot), with the uniform prior p(z_v) = 1/C and the
posterior q_φ(z | x) = Π_v Cat(z_v; softmax(ℓ_v(x))). The decoder p_θ(x | z) reads the V·C one-hot
vector. Estimators of ∇ E_q[log p(x|z)] (config ``estimator``; see ``genmodels.estimators``):

- ``gumbel-softmax``: the decoder reads the relaxed sample softmax((ℓ + g)/τ) (Jang et al. 2017,
  eq. 1), with τ annealed as τ_t = max(τ_min, τ_0·exp(−r·t)) (Jang et al. 2017, sec. 4). Biased:
  the decoder is trained on relaxed inputs it never sees at evaluation.
- ``straight-through``: the one-hot sample forward, the relaxed gradient backward (sec. 2.2).
- ``reinforce``: the one-hot sample and the score function with a baseline c + b_ψ(x): c a moving
  average of the signal, b_ψ a learned input-dependent residual fitted by squared error (NVIL, Mnih &
  Gregor 2014, sec. 3.3). The KL to the uniform prior is differentiated in closed form.
- ``vimco``: the k-sample bound log (1/k) Σ_i p(x, z_i)/q(z_i|x) with VIMCO's per-sample baselines
  (Mnih & Rezende 2016, eq. 10).

Evaluation is estimator-independent and honest: the ELBO with the exact KL to the uniform prior, and
the IWAE estimate with one-hot z_i ~ q drawn by Gumbel-max from ``batch.rand``, samples = k stated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Batch, Loss, register_model
from ..data.base import DataSpec
from ..estimators import (
    MovingAverageBaseline,
    gumbel_max,
    gumbel_noise,
    gumbel_softmax,
    score_function_surrogate,
    straight_through_gumbel,
    vimco_surrogate,
)
from .base import LatentConfig, LatentVariableModel
from .networks import mlp, make_decoder, make_encoder

__all__ = ["DiscreteVAE", "DiscreteVAEConfig", "ESTIMATORS"]

ESTIMATORS = ("gumbel-softmax", "straight-through", "reinforce", "vimco")


@dataclass
class DiscreteVAEConfig(LatentConfig):
    """Args:
    variables: V, the number of categorical latent variables.
    classes: C, the classes of each.
    estimator: ``gumbel-softmax``, ``straight-through``, ``reinforce`` (learned + moving-average
        baseline) or ``vimco`` (k samples).
    tau: τ_0, the initial temperature of the Gumbel-softmax relaxation.
    tau_min: the floor of the annealed temperature.
    anneal_rate: r in τ_t = max(τ_min, τ_0·exp(−r·t)); 0 keeps τ fixed.
    k: samples per example of the VIMCO objective (``vimco`` only, ≥ 2).
    baseline_decay: decay of REINFORCE's moving-average baseline.
    architecture: ``mlp`` or ``conv`` (convolutional encoder and decoder; image data only).
    hidden: hidden widths of the MLP encoder (the decoder mirrors them).
    channels: channels of the convolutional layers (``conv`` only).
    likelihood: ``bernoulli``, ``categorical``, ``logistic`` or ``auto``.
    conditional: model p(x | y): encoder and decoder see the one-hot label.
    """

    variables: int = 20
    classes: int = 10
    estimator: str = "gumbel-softmax"
    tau: float = 1.0
    tau_min: float = 0.5
    anneal_rate: float = 1e-4
    k: int = 5
    baseline_decay: float = 0.99

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.variables < 1 or self.classes < 2:
            raise ValueError(f"need variables ≥ 1 and classes ≥ 2, got {self.variables}, {self.classes}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got '{self.estimator}'")
        if not (self.tau > 0 and self.tau_min > 0):
            raise ValueError("tau and tau_min must be > 0")
        if not self.anneal_rate >= 0:
            raise ValueError(f"anneal_rate must be ≥ 0, got {self.anneal_rate}")
        if self.estimator == "vimco" and self.k < 2:
            raise ValueError(f"vimco needs k ≥ 2 samples, got {self.k}")
        if not 0 <= self.baseline_decay < 1:
            raise ValueError(f"baseline_decay must be in [0, 1), got {self.baseline_decay}")


@register_model("discrete-vae")
class DiscreteVAE(LatentVariableModel):
    """Categorical-latent VAE with a uniform prior and a configurable gradient estimator."""

    Config = DiscreteVAEConfig

    def __init__(self, config: DiscreteVAEConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        self.variables, self.classes = c.variables, c.classes
        features = c.variables * c.classes
        self.encoder = make_encoder(spec, c.architecture, c.hidden, c.channels, features, self.num_classes,
                                    c.activation, self.encoder_dropout, c.input_dropout)
        self.decoder = make_decoder(spec, c.architecture, c.hidden, c.channels, features, self.per_dim, self.num_classes,
                                    c.activation, self.decoder_dropout)
        if c.estimator == "reinforce":
            # NVIL's input-dependent baseline b_ψ(x) and a moving average c of the learning signal.
            self.baseline_net = mlp([spec.dims + self.num_classes, c.hidden[0] if c.hidden else 64, 1])
            self.moving_average = MovingAverageBaseline(c.baseline_decay)

    # --- posterior and prior ------------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """log q(z_v = c | x), normalized, (B, V, C)."""
        logits = self.encoder(x, y).reshape(len(x), self.variables, self.classes)
        return F.log_softmax(logits, dim=-1)

    def kl(self, q: Tensor) -> Tensor:
        """KL(q ‖ uniform) = Σ_v Σ_c q log q + V log C, (B,)."""
        p = q.exp()
        return (p * q).masked_fill(p == 0, 0.0).sum(dim=(1, 2)) + self.variables * math.log(self.classes)

    def log_prior(self) -> float:
        """log p(z) of any z under the uniform prior: −V log C."""
        return -self.variables * math.log(self.classes)

    def _one_hot_draw(self, log_q: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """Gumbel-max draws z ~ q from uniforms u (…, V, C): (one-hot z (…, V·C), log q(z) (…))."""
        log_q = log_q.expand_as(u)
        index = gumbel_max(log_q, gumbel_noise(u))  # (…, V)
        log_qz = log_q.gather(-1, index.unsqueeze(-1)).squeeze(-1).sum(-1)
        one_hot = F.one_hot(index, self.classes).to(log_q.dtype)
        return one_hot.flatten(-2), log_qz

    def draw_posterior(self, q: Tensor, batch: Batch, count: int) -> tuple[Tensor, Tensor, Tensor]:
        u = batch.rand(count, self.variables, self.classes).to(q.device)  # (B, c, V, C)
        z, log_qz = self._one_hot_draw(q.unsqueeze(1), u)
        return z, log_qz, torch.full_like(log_qz, self.log_prior())

    # --- training -----------------------------------------------------------------------------------
    def temperature(self, step: int) -> float:
        """τ_t = max(τ_min, τ_0·exp(−r·t)) (Jang et al. 2017, sec. 4)."""
        c = self.config
        return max(c.tau_min, c.tau * math.exp(-c.anneal_rate * step))

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        c = self.config
        x = batch.x
        y = self.labels(batch.y, len(x))
        log_q = self.encode(x, y)  # (B, V, C)
        kl = self.kl(log_q)
        if c.estimator == "vimco":
            u = batch.rand(c.k, self.variables, self.classes).to(log_q.device)
            z, log_qz = self._one_hot_draw(log_q.unsqueeze(1), u)  # (B, k, V·C), (B, k)
            log_px = self._chunked_log_px(z, x.reshape(len(x), -1), y, c.k)
            log_w = log_px + self.log_prior() - log_qz
            bound = vimco_surrogate(log_w, log_qz)  # value: the k-sample bound
            return Loss(-bound.mean(), {"vimco_bound": bound.detach(), "reconstruction": log_px.mean(1).detach()})
        u = batch.rand(self.variables, self.classes).to(log_q.device)  # (B, V, C)
        g = gumbel_noise(u)
        tau = self.temperature(step)
        extra: dict[str, Tensor] = {}
        if c.estimator == "gumbel-softmax":
            z = gumbel_softmax(log_q, g, tau).flatten(1)
            reconstruction = self.log_px_given_z(z, x, y)
            signal = reconstruction
        elif c.estimator == "straight-through":
            z = straight_through_gumbel(log_q, g, tau).flatten(1)
            reconstruction = self.log_px_given_z(z, x, y)
            signal = reconstruction
        else:  # reinforce
            z, log_qz = self._one_hot_draw(log_q, u)  # no gradient through z: the score function
            reconstruction = self.log_px_given_z(z, x, y)
            inputs = x.reshape(len(x), -1).to(log_q.dtype) / (self.spec.levels - 1)
            if self.num_classes:
                inputs = torch.cat([inputs, F.one_hot(y, self.num_classes).to(inputs.dtype)], dim=1)
            learned = self.baseline_net(inputs).squeeze(1)  # b_ψ(x), fitted to f − c
            centre = self.moving_average()
            baseline = centre + learned
            signal = score_function_surrogate(reconstruction, log_qz, baseline)
            baseline_fit = (reconstruction.detach() - baseline).square()
            extra["baseline_mse"] = baseline_fit.detach()
            if self.training:
                self.moving_average.update(reconstruction)
            signal = signal - baseline_fit
        objective = signal - kl
        elbo = reconstruction.detach() - kl.detach()
        # The Gumbel-softmax decoder read a relaxed z: its terms are not the model's ELBO.
        prefix = "relaxed_" if c.estimator == "gumbel-softmax" else ""
        terms = {f"{prefix}reconstruction": reconstruction.detach(), "kl": kl.detach(), f"{prefix}elbo": elbo}
        return Loss(-objective.mean(), {**terms, **extra})

    # --- sampling -----------------------------------------------------------------------------------
    def sample_latents(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n one-hot latents from the uniform prior, (n, V·C)."""
        u = self._noise((n, self.variables, self.classes), generator, self.device, uniform=True)
        index = u.argmax(dim=-1)  # argmax of i.i.d. uniforms: uniform over the C classes
        dtype = next(self.decoder.parameters()).dtype
        return F.one_hot(index, self.classes).to(dtype).flatten(1)

    @torch.no_grad()
    def sample(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """x ~ p(x | z), z ~ uniform; class-conditional models sample uniform labels unless ``y`` is given."""
        labels = self.labels(y, n, generator, draw=True)
        z = self.sample_latents(n, y=labels, generator=generator)
        return self.sample_from_latents(z, y=labels, generator=generator)

