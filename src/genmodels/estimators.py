"""Gradient estimators for L(θ) = E_{z~p_θ(z)}[f(z)], as plain functions usable on any such expectation.

Three ways to differentiate an expectation over a distribution that depends on θ:

- **Reparameterization** (Kingma & Welling 2014, sec. 2.4; Rezende et al. 2014): write z = g_θ(ε)
  with ε from a fixed law, so ∇_θ E[f(z)] = E_ε[∇_θ f(g_θ(ε))]. For a Gaussian, z = μ + σ·ε.
- **Relaxation** (Jang et al. 2017, "Categorical reparameterization with Gumbel-softmax"; Maddison et
  al. 2017, "The Concrete distribution"): replace the one-hot argmax_i(log π_i + g_i) by
  softmax((log π + g)/τ), g ~ Gumbel(0, 1) — biased, low variance; τ → 0 recovers the one-hot sample.
  The straight-through variant (Jang et al. 2017, sec. 2.2; Bengio et al. 2013) uses the one-hot
  sample forward and the relaxed gradient backward.
- **Score function / REINFORCE** (Williams 1992): ∇_θ E[f(z)] = E[(f(z) − b) ∇_θ log p_θ(z)] for
  any b that does not depend on z (a constant, a moving average, a learned b(x) as in NVIL, Mnih &
  Gregor 2014). Unbiased, works for any z, high variance. VIMCO (Mnih & Rezende 2016, eq. 10) gives
  each of k samples of a multi-sample bound its own baseline built from the other k − 1 samples.

And **perturb-and-argmax**: argmax_i(μ_i + ε_i) with i.i.d. noise ε defines a distribution over
classes; Gumbel noise gives exactly softmax(μ) (the Gumbel-max trick, Gumbel 1954; Papandreou &
Yuille 2011). Other noise laws give other distributions, computed here by 1-D quadrature:

    P(argmax = i) = ∫ f(t − μ_i) Π_{j≠i} F(t − μ_j) dt          (f, F: the noise's density and CDF)

Every function takes its noise as an argument (or a generator), so callers can draw it from
``Batch.rand`` / ``Batch.randn`` and keep evaluation figures independent of the batch size.

Surrogates: the score-function estimators return a *surrogate* s whose value equals f (so it can
be logged as the objective) and whose gradient is the estimator: s = f + c·(log p − stop(log p)).

>>> logits = torch.tensor([0.0, 1.0, 2.0])
>>> g = gumbel_noise(torch.rand(3, generator=torch.Generator().manual_seed(0)))
>>> hard = straight_through_gumbel(logits, g, tau=0.5)
>>> hard.tolist() == torch.nn.functional.one_hot(gumbel_max(logits, g), 3).float().tolist()
True
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "reparameterize_gaussian",
    "gaussian_kl_standard_normal",
    "gumbel_noise",
    "gumbel_max",
    "gumbel_softmax",
    "straight_through_gumbel",
    "score_function_surrogate",
    "MovingAverageBaseline",
    "log_mean_exp",
    "vimco_baselines",
    "vimco_surrogate",
    "NOISE_LAWS",
    "perturb_and_argmax",
    "perturb_and_softmax",
    "perturb_and_argmax_probs",
]


# --- reparameterization ------------------------------------------------------------------------------
def reparameterize_gaussian(mu: Tensor, log_sigma: Tensor, eps: Tensor) -> Tensor:
    """z = μ + σ·ε with ε ~ N(0, I) given (Kingma & Welling 2014, eq. 10); broadcasts μ, σ over ε."""
    return mu + log_sigma.exp() * eps


def gaussian_kl_standard_normal(mu: Tensor, log_sigma: Tensor) -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) per dimension, in closed form (Kingma & Welling 2014, appendix B):

        KL = ½ (μ² + σ² − 1) − log σ.

    >>> float(gaussian_kl_standard_normal(torch.zeros(1), torch.zeros(1)))
    0.0
    """
    return 0.5 * (mu.square() + (2 * log_sigma).exp() - 1.0) - log_sigma


# --- Gumbel: perturb-and-argmax, relaxation, straight-through -------------------------------------
def gumbel_noise(u: Tensor, eps: float = 1e-20) -> Tensor:
    """g = −log(−log u): u ~ U(0, 1) → g ~ Gumbel(0, 1) (inverse CDF; ``eps`` keeps u = 0 finite)."""
    return -torch.log((-torch.log(u.clamp_min(eps))).clamp_min(eps))


def gumbel_max(logits: Tensor, g: Tensor) -> Tensor:
    """The Gumbel-max trick: argmax_i(logits_i + g_i) ~ Categorical(softmax(logits)), over the last axis."""
    return (logits + g).argmax(dim=-1)


def gumbel_softmax(logits: Tensor, g: Tensor, tau: float) -> Tensor:
    """The Gumbel-softmax / Concrete sample softmax((logits + g)/τ) (Jang et al. 2017, eq. 1)."""
    if not tau > 0:
        raise ValueError(f"the temperature τ must be > 0, got {tau}")
    return F.softmax((logits + g) / tau, dim=-1)


def straight_through_gumbel(logits: Tensor, g: Tensor, tau: float) -> Tensor:
    """Straight-through Gumbel (Jang et al. 2017, sec. 2.2): forward the one-hot Gumbel-max sample,
    backward the gradient of the relaxed sample softmax((logits + g)/τ)."""
    soft = gumbel_softmax(logits, g, tau)
    hard = F.one_hot(soft.argmax(dim=-1), soft.shape[-1]).to(soft.dtype)
    return hard + (soft - soft.detach())


# --- score function (REINFORCE), baselines, VIMCO --------------------------------------------------
def score_function_surrogate(f: Tensor, log_p: Tensor, baseline: Tensor | float = 0.0) -> Tensor:
    """REINFORCE (Williams 1992): a surrogate with value f and gradient
    ∇f + (f − b)·∇ log p_θ(z), an unbiased estimate of ∇_θ E_{z~p_θ}[f(z)] when b does not depend on z.

    ``f`` may itself depend on θ (its pathwise gradient is kept, e.g. a decoder's log p(x|z));
    ``log_p`` is log p_θ(z) of the sampled, non-differentiable z; ``baseline`` is detached here.
    """
    signal = (f - baseline).detach()
    return f + signal * (log_p - log_p.detach())


class MovingAverageBaseline(nn.Module):
    """b ← α·b + (1 − α)·mean(f): a baseline that does not depend on the current sample (it is
    updated after use), so REINFORCE stays unbiased. Its state is a buffer (saved in checkpoints)."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        if not 0 <= decay < 1:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.register_buffer("value", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def forward(self) -> Tensor:
        return self.value

    @torch.no_grad()
    def update(self, f: Tensor) -> None:
        mean = f.detach().float().mean()
        if not bool(self.initialized):
            self.value.copy_(mean)
            self.initialized.fill_(True)
        else:
            self.value.mul_(self.decay).add_((1 - self.decay) * mean)


def log_mean_exp(log_w: Tensor, dim: int = -1) -> Tensor:
    """log (1/k) Σ_i exp(log_w_i), stably."""
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def vimco_baselines(log_w: Tensor) -> Tensor:
    """VIMCO's per-sample baselines (Mnih & Rezende 2016, eq. 9), (…, k) → (…, k):

        L̂_{−j} = log (1/k) [ Σ_{i≠j} w_i + ŵ_{−j} ],   log ŵ_{−j} = (1/(k−1)) Σ_{i≠j} log w_i,

    the k-sample bound with sample j replaced by the geometric mean of the others. It does not
    depend on z_j, so the estimator stays unbiased.
    """
    k = log_w.shape[-1]
    if k < 2:
        raise ValueError("VIMCO needs k ≥ 2 samples")
    total = log_w.sum(dim=-1, keepdim=True)
    log_geo = (total - log_w) / (k - 1)  # (…, k): log ŵ_{−j}
    # Replace entry j by log ŵ_{−j}: the matrix M[..., j, i] = log w_i (i ≠ j), log ŵ_{−j} (i = j).
    expanded = log_w.unsqueeze(-2).expand(*log_w.shape[:-1], k, k)
    eye = torch.eye(k, dtype=torch.bool, device=log_w.device)
    replaced = torch.where(eye, log_geo.unsqueeze(-1).expand_as(expanded), expanded)
    return log_mean_exp(replaced, dim=-1)


def vimco_surrogate(log_w: Tensor, log_q: Tensor) -> Tensor:
    """VIMCO (Mnih & Rezende 2016, eq. 10) for the k-sample bound L̂ = log (1/k) Σ_i w_i, (…, k) → (…):

        ∇L̂ ≈ Σ_j (L̂ − L̂_{−j}) ∇ log q(z_j) + Σ_j w̃_j ∇ log w_j,      w̃_j = w_j / Σ_i w_i,

    returned as a surrogate with value L̂. ``log_w`` = log p(x, z_j) − log q(z_j | x) at sampled,
    non-differentiable z_j (its gradient flows through the parameters of p and q at fixed z);
    ``log_q`` = log q(z_j | x).
    """
    bound = log_mean_exp(log_w, dim=-1)  # (…,): pathwise part Σ_j w̃_j ∇ log w_j
    signal = (bound.unsqueeze(-1) - vimco_baselines(log_w)).detach()  # (…, k)
    return bound + (signal * (log_q - log_q.detach())).sum(dim=-1)


# --- perturb-and-argmax with other noise laws -----------------------------------------------------
def _gumbel_law() -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    log_pdf = lambda t: -(t + torch.exp(-t))  # noqa: E731
    cdf = lambda t: torch.exp(-torch.exp(-t))  # noqa: E731
    return log_pdf, cdf, gumbel_noise


def _gaussian_law():
    log_pdf = lambda t: -0.5 * t.square() - 0.5 * math.log(2 * math.pi)  # noqa: E731
    cdf = lambda t: 0.5 * (1 + torch.erf(t / math.sqrt(2)))  # noqa: E731
    inverse = lambda u: math.sqrt(2) * torch.erfinv(2 * u.clamp(1e-7, 1 - 1e-7) - 1)  # noqa: E731
    return log_pdf, cdf, inverse


def _exponential_law():
    # ε ~ Exp(1): density e^{−t} on t ≥ 0.
    log_pdf = lambda t: torch.where(t >= 0, -t, torch.full_like(t, -math.inf))  # noqa: E731
    cdf = lambda t: torch.where(t >= 0, -torch.expm1(-t.clamp_min(0)), torch.zeros_like(t))  # noqa: E731
    inverse = lambda u: -torch.log1p(-u.clamp(0, 1 - 1e-7))  # noqa: E731
    return log_pdf, cdf, inverse


#: name → (log density, CDF, inverse CDF) of each noise law of perturb-and-argmax.
NOISE_LAWS: dict[str, Callable[[], tuple]] = {
    "gumbel": _gumbel_law,
    "gaussian": _gaussian_law,
    "exponential": _exponential_law,
}


def _law(noise: str):
    if noise not in NOISE_LAWS:
        raise ValueError(f"unknown noise law '{noise}'; valid: {', '.join(NOISE_LAWS)}")
    return NOISE_LAWS[noise]()


def perturb_and_argmax(mu: Tensor, u: Tensor, noise: str = "gumbel") -> Tensor:
    """argmax_i(μ_i + ε_i), ε_i = F⁻¹(u_i) i.i.d. from the noise law; u ~ U(0, 1) of μ's shape."""
    return (mu + _law(noise)[2](u)).argmax(dim=-1)


def perturb_and_softmax(mu: Tensor, u: Tensor, tau: float, noise: str = "gumbel") -> Tensor:
    """The differentiable relaxation of :func:`perturb_and_argmax`: softmax((μ + ε)/τ), which tends
    to its one-hot sample as τ → 0 (for Gumbel noise it is the Gumbel-softmax)."""
    if not tau > 0:
        raise ValueError(f"the temperature τ must be > 0, got {tau}")
    return F.softmax((mu + _law(noise)[2](u)) / tau, dim=-1)


def perturb_and_argmax_probs(mu: Tensor, noise: str = "gumbel", points: int = 20_001) -> Tensor:
    """P(argmax_i(μ_i + ε_i) = i) by 1-D quadrature (trapezoid rule, float64), for μ of shape (C,):

        P_i = ∫ f(t − μ_i) Π_{j≠i} F(t − μ_j) dt.

    For Gumbel noise this is softmax(μ) exactly; other laws give other distributions.
    """
    log_pdf, cdf, _ = _law(noise)
    mu = mu.detach().to(torch.float64)
    hi = float(mu.max()) + 40.0
    probs = []
    for i in range(len(mu)):
        # The integrand vanishes below μ_i when the noise is ≥ 0 (exponential): start there, so the
        # density's jump sits on the grid's end rather than inside a trapezoid.
        lo = float(mu[i]) if noise == "exponential" else float(mu.min()) - 40.0
        t = torch.linspace(lo, hi, points, dtype=torch.float64)
        log_cdf = torch.log(cdf(t.unsqueeze(0) - mu.unsqueeze(1)).clamp_min(1e-300))  # (C, T)
        # log integrand(t) = log f(t − μ_i) + Σ_{j≠i} log F(t − μ_j)
        log_integrand = log_pdf(t - mu[i]) + log_cdf.sum(dim=0) - log_cdf[i]
        probs.append(torch.trapezoid(log_integrand.exp(), t))
    return torch.stack(probs)
