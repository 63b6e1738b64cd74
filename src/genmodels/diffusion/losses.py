"""The denoising loss over random noise levels, one formula for every method (EDM eq. 8):

    L = E_{σ ~ p_train, x_0, ε} [ λ(σ) ‖D_θ(x_0 + σ ε; σ) − x_0‖² ],

where the process gives p_train(σ) and λ(σ): DDPM's ε-MSE is λ = 1/σ² (Ho et al. 2020, eq. 14), NCSN's
σ²-weighted score matching is λ = 1/σ² too, EDM's is (σ² + σ_data²)/(σ σ_data)² and flow matching's
velocity MSE is ((1 + σ)/σ)² (see :mod:`.processes`). Per-example terms are averaged over dimensions.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .processes import Process

__all__ = ["denoising_loss"]


def denoising_loss(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    process: Process,
    x0: Tensor,
    u: Tensor | None = None,
    noise: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Per-example weighted denoising error λ(σ)·mean‖D(x_0 + σε; σ) − x_0‖² and the σ drawn.

    Args:
        denoiser: D(x̂, σ) with σ of shape (B,).
        process: gives p_train(σ) (from uniforms ``u``) and λ(σ).
        x0: (B, ...) clean data in the model's space.
        u: (B,) uniforms for the noise levels (default: the global RNG).
        noise: ε, like x0 (default: the global RNG).

    Returns:
        (loss (B,), sigma (B,)).
    """
    batch = x0.shape[0]
    if u is None:
        u = torch.rand(batch, device=x0.device, dtype=x0.dtype)
    if noise is None:
        noise = torch.randn_like(x0)
    sigma = process.training_sigma(u).to(x0.dtype)  # (B,)
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1)))
    denoised = denoiser(x0 + s * noise, sigma)
    error = (denoised - x0).pow(2).reshape(batch, -1).mean(dim=1)
    return process.loss_weight(sigma) * error, sigma
