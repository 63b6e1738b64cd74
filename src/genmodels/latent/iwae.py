"""``iwae``: the importance-weighted autoencoder (Burda et al. 2016).

The same model as ``vae`` (Gaussian latent, discrete decoder), trained on the k-sample bound

    L_k = E_{z_1..k ~ q}[ log (1/k) Σ_i p(x, z_i) / q(z_i | x) ]        (Burda et al. 2016, eq. 8)

with reparameterized z_i = μ + σ·ε_i. L_1 is the ELBO; L_k rises with k towards log p(x). The
records are the ELBO and the IWAE estimate, as for ``vae``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..core import Batch, Loss, register_model
from ..estimators import log_mean_exp
from .vae import VAE, VAEConfig

__all__ = ["IWAE", "IWAEConfig"]


@dataclass
class IWAEConfig(VAEConfig):
    """Args:
    k: importance samples per example in the training objective L_k.
    latent_dim: L, the dimension of z.
    beta: unused by the k-sample objective (must stay 1).
    warmup_steps: unused (must stay 0).
    free_bits: unused (must stay 0).
    architecture: ``mlp`` or ``conv`` (convolutional encoder and decoder; image data only).
    hidden: hidden widths of the MLP encoder (the decoder mirrors them).
    channels: channels of the convolutional layers (``conv`` only).
    likelihood: ``bernoulli``, ``categorical``, ``logistic`` or ``auto``.
    conditional: model p(x | y): encoder and decoder see the one-hot label.
    """

    k: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise ValueError(f"k must be ≥ 1, got {self.k}")
        if self.beta != 1.0 or self.warmup_steps != 0 or self.free_bits != 0:
            raise ValueError("beta, warmup_steps and free_bits apply to vae's ELBO, not to iwae's bound; leave them unset")


@register_model("iwae")
class IWAE(VAE):
    """Gaussian-latent model trained on the k-sample importance-weighted bound."""

    Config = IWAEConfig

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        x = batch.x
        y = self.labels(batch.y, len(x))
        q = self.encode(x, y)
        k = self.config.k
        z, log_q, log_pz = self.draw_posterior(q, batch, k)  # (B, k, L), (B, k), (B, k): reparameterized
        log_px = self._chunked_log_px(z, x.reshape(len(x), -1), y, k)  # (B, k)
        log_w = log_px + log_pz - log_q
        bound = log_mean_exp(log_w, dim=1)  # (B,): L_k, eq. 8
        return Loss(-bound.mean(), {"iwae_bound": bound, "reconstruction": log_px.mean(dim=1)})
