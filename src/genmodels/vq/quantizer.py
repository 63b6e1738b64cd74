"""Vector quantization (van den Oord et al. 2017, "Neural Discrete Representation Learning").

An encoder output z_e(x) ∈ R^D at each position is replaced by its nearest codebook vector,
z_q = e_k with k = argmin_j ‖z_e − e_j‖² (eq. 1–2). The argmin has no gradient, so the decoder's
gradient is copied straight through to the encoder: z_q_st = z_e + sg[z_q − z_e] (sec. 3.2).
The codebook and the encoder are pulled together by the two terms of eq. 3:

    L = log p(x | z_q(x)) + ‖sg[z_e(x)] − e‖²  +  β ‖z_e(x) − sg[e]‖²,
                            (codebook loss)       (commitment loss)

each summed over the latent positions and dimensions of one example. With ``ema=True`` the
codebook is not learned by gradient: it follows exponential moving averages of the encoder
outputs assigned to each code (appendix A.1),

    N_i ← γ N_i + (1 − γ) n_i,    m_i ← γ m_i + (1 − γ) Σ_{j: k_j = i} z_e,j,    e_i = m_i / N_i,

with N Laplace-smoothed, and the codebook loss drops out. The EMA state (N, m, the codebook) lives
in buffers, so checkpoints and resume carry it.

Dead codes (whose moving-average usage falls below ``restart_threshold`` assignments per batch,
one by default) are restarted at encoder outputs drawn from the current batch (Dhariwal et al. 2020, Jukebox, sec. 3.3).
The layer reports the batch's codebook usage (fraction of codes used) and the perplexity
exp(−Σ_k p̄_k log p̄_k) of the average assignment p̄, which is K for a uniform assignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["VectorQuantizer", "Quantized", "perplexity"]


def perplexity(indices: Tensor, num_codes: int) -> Tensor:
    """exp(H(p̄)) of the empirical code distribution p̄ of ``indices`` (any shape) → scalar."""
    p = torch.bincount(indices.reshape(-1), minlength=num_codes).float() / indices.numel()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


@dataclass
class Quantized:
    """What :meth:`VectorQuantizer.forward` returns.

    Attributes:
        z_q: (B, T, D) quantized vectors with the straight-through gradient to z_e.
        indices: (B, T) int64 code indices.
        codebook_loss: (B,) ‖sg[z_e] − e‖² summed over positions and dims (zero with EMA updates).
        commitment_loss: (B,) β‖z_e − sg[e]‖² summed over positions and dims.
        perplexity: scalar, exp of the entropy of the batch's average assignment.
        usage: scalar, the fraction of codes used in the batch.
    """

    z_q: Tensor
    indices: Tensor
    codebook_loss: Tensor
    commitment_loss: Tensor
    perplexity: Tensor
    usage: Tensor

    def terms(self) -> dict[str, Tensor]:
        """Per-example terms for logging (the batch statistics broadcast to every example)."""
        b = len(self.indices)
        return {
            "codebook": self.codebook_loss.detach(),
            "commitment": self.commitment_loss.detach(),
            "perplexity": self.perplexity.detach().expand(b),
            "code_usage": self.usage.detach().expand(b),
        }


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantization onto a codebook of K vectors of dimension D.

    Args:
        num_codes: K.
        dim: D.
        beta: β, the commitment weight (0.25 in the paper).
        ema: update the codebook by exponential moving averages instead of the codebook loss.
        decay: γ of the EMA updates.
        eps: Laplace smoothing of the EMA counts.
        restart_threshold: a code whose moving-average count per batch falls below this is
            restarted at a random encoder output of the current batch (0 switches restarts off).
        usage_decay: decay of the moving-average counts that decide restarts.
    """

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        eps: float = 1e-5,
        restart_threshold: float = 1.0,
        usage_decay: float = 0.99,
    ):
        super().__init__()
        self.num_codes, self.dim, self.beta = num_codes, dim, beta
        self.ema, self.decay, self.eps = ema, decay, eps
        self.restart_threshold, self.usage_decay = restart_threshold, usage_decay
        init = torch.empty(num_codes, dim).uniform_(-1.0 / num_codes, 1.0 / num_codes)
        if ema:
            self.register_buffer("codebook", init)
            self.register_buffer("ema_count", torch.ones(num_codes))  # N_i
            self.register_buffer("ema_sum", init.clone())  # m_i = N_i e_i
        else:
            self.codebook = nn.Parameter(init)
        # Moving-average assignments per batch; zero at first, so the first training batch restarts
        # every code at an encoder output (a data-dependent initialization).
        self.register_buffer("usage_count", torch.zeros(num_codes))

    def nearest(self, z_e: Tensor) -> Tensor:
        """(…, D) → (…,) index of the nearest code, argmin_j ‖z_e − e_j‖² (eq. 2)."""
        flat = z_e.reshape(-1, self.dim)
        e = self.codebook
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ e.T + e.pow(2).sum(1)  # (N, K)
        return distances.argmin(1).reshape(z_e.shape[:-1])

    def lookup(self, indices: Tensor) -> Tensor:
        """(…,) codes → (…, D) vectors."""
        return F.embedding(indices, self.codebook)

    def forward(self, z_e: Tensor) -> Quantized:
        """Quantize ``z_e`` (B, T, D); in training mode also update the codebook (EMA) and restart
        dead codes."""
        indices = self.nearest(z_e.detach())  # (B, T)
        if self.training:
            with torch.no_grad():
                # in the codebook's dtype: under bf16 autocast z_e is bf16, and the EMA sums and the
                # restarts' index_put need (and deserve) the float32 buffers' precision
                self._update(z_e.detach().reshape(-1, self.dim).to(self.codebook.dtype), indices.reshape(-1))
            indices = self.nearest(z_e.detach()) if self._restarted else indices
        e = self.lookup(indices)  # (B, T, D)
        commitment = self.beta * (z_e - e.detach()).pow(2).sum((1, 2))
        if self.ema:
            codebook = torch.zeros_like(commitment)
        else:
            codebook = (z_e.detach() - e).pow(2).sum((1, 2))
        z_q = z_e + (e - z_e).detach()  # straight-through: ∂z_q/∂z_e = I
        used = torch.bincount(indices.reshape(-1), minlength=self.num_codes) > 0
        return Quantized(z_q, indices, codebook, commitment, perplexity(indices, self.num_codes), used.float().mean())

    @torch.no_grad()
    def _update(self, flat: Tensor, indices: Tensor) -> None:
        """One training batch: the EMA codebook update (appendix A.1), then dead-code restarts."""
        one_hot = F.one_hot(indices, self.num_codes).to(flat.dtype)  # (N, K)
        n = one_hot.sum(0)  # n_i
        if self.ema:
            self.ema_count.mul_(self.decay).add_(n, alpha=1 - self.decay)
            self.ema_sum.mul_(self.decay).add_(one_hot.T @ flat, alpha=1 - self.decay)
            total = self.ema_count.sum()
            smoothed = (self.ema_count + self.eps) / (total + self.num_codes * self.eps) * total
            self.codebook.copy_(self.ema_sum / smoothed.unsqueeze(1))
        self.usage_count.mul_(self.usage_decay).add_(n, alpha=1 - self.usage_decay)
        self._restarted = False
        if self.restart_threshold > 0:
            dead = self.usage_count < self.restart_threshold
            if dead.any():
                picks = torch.randint(len(flat), (int(dead.sum()),), device=flat.device)
                fresh = flat[picks]
                self.codebook.data[dead] = fresh
                if self.ema:
                    self.ema_count[dead] = 1.0
                    self.ema_sum[dead] = fresh
                # A grace period (ln 2 / (1 − decay) batches, 69 at 0.99) before it may restart again.
                self.usage_count[dead] = 2 * self.restart_threshold
                self._restarted = True

    _restarted: bool = False
