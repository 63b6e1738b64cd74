"""DDPM's variational bound on log P(x) of discrete data, the "hierarchical VAE" view (Ho et al. 2020,
eq. 5), for the discrete-time VP process:

    −log P(x) ≤ L_T + Σ_{t=2}^T L_{t−1} + L_0,
    L_T     = KL(q(x_T | x_0) ‖ N(0, I)),
    L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) = ½ (SNR(t−1) − SNR(t)) ‖x_0 − D(x̂_t; σ_t)‖²,
    L_0     = −log p_θ(x | x_1), a Gaussian N(D(x̂_1; σ_1), β_1) discretized over x's bin.

The KL form of L_{t−1} holds with p_θ's variance σ_t² = β̃_t (the posterior's) and mean μ̃(x_t, D)
(Ho et al. eq. 7; SNR(t) = ᾱ_t/(1 − ᾱ_t) = 1/σ_t², Kingma et al. 2021, VDM, eq. 14 in discrete time).
x_0 is the centre of x's bin in [−1, 1]: c = 2(x + ½)/K − 1; the bins [2x/K − 1, 2(x+1)/K − 1]
tile [−1, 1] with the outermost ones extended to ±∞ (Ho et al. eq. 13). One noise draw ε per term.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .processes import VP

__all__ = ["ddpm_bound"]


def _discretized_gaussian_log_prob(x: Tensor, mean: Tensor, std: float, levels: int) -> Tensor:
    """log ∫_{bin(x)} N(z; mean, std²) dz per dimension, bins of width 2/K on [−1, 1], outer bins to ±∞.

    log(Φ(b) − Φ(a)) in the tail that keeps precision: the lower tails when a ≤ 0, the upper ones else.
    """
    lower = 2 * x.to(mean.dtype) / levels - 1
    a = torch.where(x == 0, torch.full_like(mean, -math.inf), (lower - mean) / std)
    b = torch.where(x == levels - 1, torch.full_like(mean, math.inf), (lower + 2 / levels - mean) / std)
    log_ndtr = torch.special.log_ndtr
    below = log_ndtr(b) + torch.log1p(-torch.exp(log_ndtr(a) - log_ndtr(b)))
    above = log_ndtr(-a) + torch.log1p(-torch.exp(log_ndtr(-b) - log_ndtr(-a)))
    return torch.where(a > 0, above, below)


def ddpm_bound(
    denoiser: Callable[[Tensor, Tensor], Tensor],
    process: VP,
    x: Tensor,
    levels: int,
    noise: Callable[[int], Tensor],
    chunk: int = 50,
    network_dtype: torch.dtype = torch.float32,
) -> dict[str, Tensor]:
    """The bound's terms in nats per example (each ≥ 0; their sum is −ELBO).

    Args:
        denoiser: D(x̂, σ) with σ of shape (B,).
        process: a discrete-time VP process (T ≥ 2 steps).
        x: (B, ...) int64 levels 0..K−1.
        levels: K.
        noise: ``noise(n)`` → (B, n, ...) standard normal draws (``Batch.randn``, per example).
        chunk: time steps evaluated in one denoiser call (memory vs speed).
        network_dtype: the dtype the denoiser takes (the bound itself is summed in float64).

    Returns:
        {"prior": L_T, "diffusion": Σ_{t≥2} L_{t−1}, "decoder": L_0}, each (B,).
    """
    if not process.discrete:
        raise ValueError("DDPM's bound needs the discrete-time process (timesteps ≥ 2)")
    B, T = len(x), process.timesteps
    dtype = torch.float64
    x0 = (2 * (x.to(dtype) + 0.5) / levels - 1).reshape(B, -1)  # (B, D) bin centres
    alpha_bars = process.alpha_bars.to(x0.device)
    sigmas = process.discrete_sigmas.to(x0.device)
    # L_T: KL(N(sqrt(ᾱ_T) x_0, 1 − ᾱ_T) ‖ N(0, 1)) per dimension, summed.
    abar_T = alpha_bars[-1]
    prior = 0.5 * (abar_T * x0**2 + (1 - abar_T) - 1 - torch.log1p(-abar_T)).sum(1)
    diffusion = torch.zeros(B, dtype=dtype, device=x0.device)
    decoder = torch.zeros(B, dtype=dtype, device=x0.device)
    shape = x.shape[1:]
    for start in range(0, T, chunk):
        ts = torch.arange(start, min(start + chunk, T), device=x0.device)  # 0-based: step t = ts + 1
        eps = noise(len(ts)).to(x0.device, dtype).reshape(B, len(ts), -1)  # (B, n, D)
        s = sigmas[ts]  # (n,)
        x_hat = x0[:, None, :] + s[None, :, None] * eps  # (B, n, D)
        flat = x_hat.transpose(0, 1).reshape(len(ts) * B, *shape).to(network_dtype)  # (n·B, ...) time-major
        denoised = denoiser(flat, s.repeat_interleave(B).to(network_dtype)).to(dtype)
        denoised = denoised.reshape(len(ts), B, -1).transpose(0, 1)  # (B, n, D)
        for j, t in enumerate(ts.tolist()):
            if t == 0:  # L_0 = −log N_discretized(x; D(x̂_1; σ_1), β_1)
                std = math.sqrt(float(process.betas[0]))
                log_p = _discretized_gaussian_log_prob(x.reshape(B, -1), denoised[:, j], std, levels)
                decoder = decoder - log_p.sum(1)
            else:  # L_{t−1} = ½ (1/σ_{t−1}² − 1/σ_t²) ‖x_0 − D‖²
                weight = 0.5 * (sigmas[t - 1] ** -2 - sigmas[t] ** -2)
                diffusion = diffusion + weight * ((x0 - denoised[:, j]) ** 2).sum(1)
    return {"prior": prior, "diffusion": diffusion, "decoder": decoder}
