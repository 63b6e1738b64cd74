"""``vae``: the variational autoencoder with a Gaussian latent (Kingma & Welling 2014).

p(z) = N(0, I), q_φ(z | x) = N(μ_φ(x), diag σ_φ(x)²), z = μ + σ·ε (eq. 10), and a decoder p_θ(x | z)
over the *discrete* data (Bernoulli, categorical or discretized logistic, see ``networks``). The
training objective is the ELBO (eq. 3) with the usual options:

- β (Higgins et al. 2017): E_q[log p(x|z)] − β·KL;
- KL warm-up (Bowman et al. 2016; Sønderby et al. 2016): β_t = β·min(1, t / warmup_steps);
- free bits (Kingma et al. 2016, IAF, eq. 15): each latent dimension's batch-mean KL counts as at
  least λ nats, so the optimizer gains nothing from pushing it below λ.

Warm-up and free bits change only the training loss; the records are always the true ELBO and
the IWAE estimate (see ``latent.base``).

>>> from genmodels.core import Batch, create_model
>>> from genmodels.data import DataSpec
>>> model = create_model("vae", DataSpec("b", (1, 2, 5), 2), {"latent_dim": 2})
>>> elbo, iwae = model.log_likelihoods(Batch(torch.zeros(3, 1, 2, 5, dtype=torch.int64)), k=8)
>>> (elbo.kind.value, iwae.kind.value, iwae.samples, sorted(elbo.terms))
('bound', 'estimate', 8, ['neg_kl', 'reconstruction'])
>>> model.sample(4, generator=torch.Generator().manual_seed(0), temperature=0.8).shape
torch.Size([4, 1, 2, 5])
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import Batch, Loss, register_model
from ..data.base import DataSpec
from ..errors import UserError
from ..estimators import gaussian_kl_standard_normal, reparameterize_gaussian
from .base import LatentConfig, LatentVariableModel
from .hubness import hubness_guided_latents
from .networks import make_decoder, make_encoder

__all__ = ["VAE", "VAEConfig", "gaussian_log_density"]


def gaussian_log_density(z: Tensor, mu: Tensor, log_sigma: Tensor) -> Tensor:
    """log N(z; μ, σ²) summed over the last axis."""
    return (-0.5 * ((z - mu) / log_sigma.exp()).square() - log_sigma - 0.5 * math.log(2 * math.pi)).sum(-1)


@dataclass
class VAEConfig(LatentConfig):
    """Args:
    latent_dim: L, the dimension of z.
    beta: β, the weight of the KL term in the training loss (1: the ELBO).
    warmup_steps: KL warm-up: β_t = β·min(1, step / warmup_steps); 0 switches it off.
    free_bits: λ, nats per latent dimension below which the batch-mean KL is not penalized; 0: off.
    architecture: ``mlp`` or ``conv`` (convolutional encoder and decoder; image data only).
    hidden: hidden widths of the MLP encoder (the decoder mirrors them); for ``conv``, the width of
        the linear layers between features and latents.
    channels: channels of the convolutional layers (``conv`` only).
    likelihood: ``bernoulli`` (K = 2), ``categorical``, ``logistic`` (discretized logistic) or
        ``auto`` (Bernoulli for binary data, else categorical).
    conditional: model p(x | y): encoder and decoder see the one-hot label.
    """

    latent_dim: int = 16
    beta: float = 1.0
    warmup_steps: int = 0
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be ≥ 1, got {self.latent_dim}")
        if not self.beta >= 0:
            raise ValueError(f"beta must be ≥ 0, got {self.beta}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be ≥ 0, got {self.warmup_steps}")
        if not self.free_bits >= 0:
            raise ValueError(f"free_bits must be ≥ 0, got {self.free_bits}")


@register_model("vae")
class VAE(LatentVariableModel):
    """Gaussian-latent VAE trained on the (β-weighted, warmed-up, free-bits) ELBO."""

    Config = VAEConfig

    def __init__(self, config: VAEConfig, spec: DataSpec):
        super().__init__(config, spec)
        c = config
        self.latent_dim = c.latent_dim
        self.encoder = make_encoder(spec, c.architecture, c.hidden, c.channels, 2 * c.latent_dim, self.num_classes,
                                    c.activation, self.encoder_dropout, c.input_dropout)
        self.decoder = make_decoder(spec, c.architecture, c.hidden, c.channels, c.latent_dim, self.per_dim,
                                    self.num_classes, c.activation, self.decoder_dropout)

    def encode(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(μ, log σ) of q(z | x), each (B, L)."""
        mu, log_sigma = self.encoder(x, y).chunk(2, dim=1)
        return mu, log_sigma.clamp(-10.0, 5.0)

    def kl(self, q: tuple[Tensor, Tensor]) -> Tensor:
        return gaussian_kl_standard_normal(*q).sum(dim=1)

    def draw_posterior(self, q: tuple[Tensor, Tensor], batch: Batch, count: int) -> tuple[Tensor, Tensor, Tensor]:
        mu, log_sigma = q[0].unsqueeze(1), q[1].unsqueeze(1)  # (B, 1, L)
        eps = batch.randn(count, self.latent_dim).to(mu.device)  # (B, c, L)
        z = reparameterize_gaussian(mu, log_sigma, eps)
        log_q = gaussian_log_density(z, mu, log_sigma)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
        return z, log_q, log_pz

    def kl_weight(self, step: int) -> float:
        """β_t = β·min(1, step / warmup_steps) (KL warm-up)."""
        c = self.config
        return c.beta if c.warmup_steps == 0 else c.beta * min(1.0, step / c.warmup_steps)

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        x = batch.x
        y = self.labels(batch.y, len(x))
        mu, log_sigma = self.encode(x, y)
        z = reparameterize_gaussian(mu, log_sigma, batch.randn(self.latent_dim).to(mu.device))
        reconstruction = self.log_px_given_z(z, x, y)  # (B,)
        kl_per_dim = gaussian_kl_standard_normal(mu, log_sigma)  # (B, L)
        kl = kl_per_dim.sum(dim=1)
        if self.config.free_bits > 0:
            # IAF eq. 15: Σ_j max(λ, E_batch[KL_j]); the per-example shares keep the batch mean.
            mean_kl = kl_per_dim.mean(dim=0)  # (L,)
            penalized = (kl_per_dim + (mean_kl.clamp_min(self.config.free_bits) - mean_kl)).sum(dim=1)
        else:
            penalized = kl
        objective = reconstruction - self.kl_weight(step) * penalized
        return Loss(-objective.mean(), {"reconstruction": reconstruction, "kl": kl, "elbo": reconstruction - kl})

    def sample_latents(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None,
                       temperature: float = 1.0, hubness: bool = False, candidates: int = 0, k: int = 10) -> Tensor:
        """z ~ N(0, T²·I), (n, L): the prior with its standard deviation scaled by the temperature T;
        with ``hubness``, the n hubs among ``candidates`` such draws (``latent.hubness``)."""
        if not temperature > 0:
            raise UserError(f"temperature must be > 0, got {temperature}")

        def prior(m: int) -> Tensor:
            return temperature * self._noise((m, self.latent_dim), generator, self.device)

        if not hubness:
            return prior(n)
        return hubness_guided_latents(prior, n, candidates=candidates, k=k, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0, hubness: bool = False, candidates: int = 0, k: int = 10) -> Tensor:
        """x ~ p(x | z), z ~ N(0, T²·I); ``temperature`` T < 1 trades diversity for typicality, as does
        ``hubness`` (keep the hubs among ``candidates`` prior draws, k-occurrence with ``k`` neighbours).
        Class-conditional models sample uniform labels unless ``y`` is given."""
        labels = self.labels(y, n, generator, draw=True)
        z = self.sample_latents(n, y=labels, generator=generator, temperature=temperature,
                                hubness=hubness, candidates=candidates, k=k)
        return self.sample_from_latents(z, y=labels, generator=generator)
