"""Noising processes in the EDM view (Karras et al. 2022, "Elucidating the design space of
diffusion-based generative models", eq. 4 and Table 1):

    x_t = s(t) · (x_0 + σ(t) · ε),   ε ~ N(0, I).

Every process is a schedule (s, σ) and little else. Samplers and likelihoods work in the *scaled*
frame x̂ = x_t / s(t) = x_0 + σ ε, where every process is the same variance-exploding one indexed by
σ alone; a process only says how to reach its network (``c_in``, ``c_noise``: the input scale and
noise conditioning of EDM's Table 1), how it draws training noise levels (``training_sigma``) and
how it weights them (``loss_weight``), and its default sampling discretization (``sampling_sigmas``).

- :class:`VP`: DDPM (Ho et al. 2020) with discrete linear or cosine (Nichol & Dhariwal 2021) β
  schedules, or their continuous-time limits (Song et al. 2021, "Score-based generative modeling
  through SDEs", eq. 11/33): s(t) = sqrt(ᾱ(t)), σ(t) = sqrt(1/ᾱ(t) − 1).
- :class:`VE`: score matching with a geometric σ (Song & Ermon 2019; Song et al. 2021), s = 1.
- :class:`EDM`: s = 1, σ(t) = t; log-normal training σ, Karras σ steps (EDM eq. 5, Table 1).
- :class:`Flow`: flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023):
  x_t = (1 − t) x_0 + t ε, i.e. s(t) = 1 − t, σ(t) = t / (1 − t), with a velocity target ε − x_0.

Training noise levels are drawn from uniforms ``u`` by inverse CDF so that a caller controls the
randomness (``Batch.rand`` in evaluation, the global RNG in training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

__all__ = [
    "Process",
    "VP",
    "VE",
    "EDM",
    "Flow",
    "linear_betas",
    "cosine_alpha_bar",
    "alpha_bar_from_betas",
    "karras_sigmas",
    "append_zero",
]


# --- schedules as functions ---------------------------------------------------------------------
def linear_betas(timesteps: int, beta_1: float = 1e-4, beta_T: float = 0.02) -> Tensor:
    """DDPM's linear schedule β_1..β_T (Ho et al. 2020, sec. 4), float64, shape (T,)."""
    return torch.linspace(beta_1, beta_T, timesteps, dtype=torch.float64)


def cosine_alpha_bar(t: Tensor, s: float = 0.008) -> Tensor:
    """ᾱ(t) = f(t)/f(0), f(t) = cos²((t + s)/(1 + s) · π/2) for t ∈ [0, 1] (Nichol & Dhariwal 2021, eq. 17)."""
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    return f / math.cos(s / (1 + s) * math.pi / 2) ** 2


def alpha_bar_from_betas(betas: Tensor) -> Tensor:
    """ᾱ_t = Π_{i ≤ t} (1 − β_i) (Ho et al. 2020, sec. 2)."""
    return torch.cumprod(1.0 - betas, dim=0)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """EDM's steps σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i < N, then σ_N = 0 (EDM eq. 5).

    >>> karras_sigmas(3, 0.002, 80.0).tolist()[0], karras_sigmas(3, 0.002, 80.0).tolist()[-1]
    (80.0, 0.0)
    """
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    inv_rho_min, inv_rho_max = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho
    if n == 1:
        sigmas = torch.tensor([sigma_max], dtype=torch.float64)
    return append_zero(sigmas)


def append_zero(sigmas: Tensor) -> Tensor:
    """The steps followed by σ = 0 (the last step of every sampler lands on the data)."""
    return torch.cat([sigmas, sigmas.new_zeros(1)])


# --- processes ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Process:
    """A process x_t = s(t)(x_0 + σ(t) ε); subclasses give the schedule.

    All methods take and return tensors; σ tensors may have any shape.
    """

    def sigma(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def scale(self, t: Tensor) -> Tensor:
        """s(t); 1 for VE and EDM."""
        return torch.ones_like(t)

    def time(self, sigma: Tensor) -> Tensor:
        """t(σ), the inverse of σ(t)."""
        raise NotImplementedError

    @property
    def sigma_min(self) -> float:
        raise NotImplementedError

    @property
    def sigma_max(self) -> float:
        raise NotImplementedError

    def c_in(self, sigma: Tensor) -> Tensor:
        """The network's input scale: by default the network sees x_t = s(t) x̂ (EDM Table 1)."""
        return self.scale(self.time(sigma))

    def c_noise(self, sigma: Tensor) -> Tensor:
        """The network's noise conditioning (EDM Table 1), in units a sinusoidal embedding of
        positions 0..1000 resolves."""
        raise NotImplementedError

    def training_sigma(self, u: Tensor) -> Tensor:
        """σ ~ p_train(σ), drawn from uniforms u ∈ [0, 1) by inverse CDF."""
        raise NotImplementedError

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """λ(σ) of the loss λ(σ) ‖D(x_0 + σε, σ) − x_0‖² (EDM eq. 8)."""
        raise NotImplementedError

    def sampling_sigmas(self, steps: int) -> Tensor:
        """The default discretization σ_0 > … > σ_{N−1} > σ_N = 0 for ``steps`` steps, float64."""
        return karras_sigmas(steps, self.sigma_min, self.sigma_max)


def _uniform_time(steps: int, t_max: float, t_min: float) -> Tensor:
    return torch.linspace(t_max, t_min, steps, dtype=torch.float64)


@dataclass(frozen=True)
class VP(Process):
    """Variance preserving (DDPM): s(t) = sqrt(ᾱ(t)), σ(t) = sqrt(1/ᾱ(t) − 1), so Var x_t = 1 for unit data.

    Args:
        schedule: ``linear`` (β from 1e-4 to 0.02 over T = 1000 steps; its limit β(t) = β_min + t(β_max − β_min)
            with β_min = 0.1, β_max = 20) or ``cosine`` (Nichol & Dhariwal 2021).
        timesteps: T for the discrete-time model (t ∈ {1..T}); 0 for continuous time t ∈ [t_min, 1].
        beta_min, beta_max: the linear schedule's continuous β(0), β(1) (the discrete β_1 = β_min/T, β_T = β_max/T).
        t_min: the continuous model's smallest time (EDM's ε_t = 1e-3).
    """

    schedule: str = "linear"
    timesteps: int = 1000
    beta_min: float = 0.1
    beta_max: float = 20.0
    t_min: float = 1e-3
    cosine_s: float = 0.008

    def __post_init__(self) -> None:
        if self.schedule not in ("linear", "cosine"):
            raise ValueError(f"schedule must be 'linear' or 'cosine', got '{self.schedule}'")
        if self.timesteps < 0 or self.timesteps == 1:
            raise ValueError("timesteps must be 0 (continuous time) or ≥ 2")
        if not 0 <= self.beta_min < self.beta_max:
            raise ValueError(f"need 0 ≤ beta_min < beta_max, got {self.beta_min}, {self.beta_max}")
        if self.schedule == "linear" and self.timesteps > 0 and self.beta_max / self.timesteps >= 1:
            # The discrete β_T = β_max/T (Ho et al. 2020's 0.02 = 20/1000) must stay below 1, or
            # ᾱ_T = Π(1 − β_t) reaches 0 or below and every later quantity is NaN.
            raise ValueError(f"timesteps={self.timesteps} with beta_max={self.beta_max} makes the last β "
                             f"{self.beta_max / self.timesteps:g} ≥ 1: use more timesteps or a smaller beta_max")

    @property
    def discrete(self) -> bool:
        return self.timesteps > 0

    # ᾱ in continuous time ------------------------------------------------------------------------
    def alpha_bar(self, t: Tensor) -> Tensor:
        """Continuous ᾱ(t), t ∈ [0, 1]: exp(−∫_0^t β) for linear (Song et al. 2021, eq. 33), f(t)/f(0) for cosine."""
        if self.schedule == "linear":
            return torch.exp(-(self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2))
        return cosine_alpha_bar(t, self.cosine_s)

    # ᾱ in discrete time --------------------------------------------------------------------------
    @cached_property
    def betas(self) -> Tensor:
        """β_1..β_T (float64). Cosine: β_t = min(1 − ᾱ_t/ᾱ_{t−1}, 0.999) (Nichol & Dhariwal 2021, sec. 3.2)."""
        T = self.timesteps
        if self.schedule == "linear":
            return linear_betas(T, self.beta_min / T, self.beta_max / T)
        abar = cosine_alpha_bar(torch.arange(T + 1, dtype=torch.float64) / T, self.cosine_s)
        return torch.clamp(1 - abar[1:] / abar[:-1], max=0.999)

    @cached_property
    def alpha_bars(self) -> Tensor:
        """ᾱ_1..ᾱ_T (float64)."""
        return alpha_bar_from_betas(self.betas)

    @cached_property
    def discrete_sigmas(self) -> Tensor:
        """σ_1 < … < σ_T of the discrete model, σ_t = sqrt((1 − ᾱ_t)/ᾱ_t) (float64)."""
        return torch.sqrt((1 - self.alpha_bars) / self.alpha_bars)

    # the process ---------------------------------------------------------------------------------
    def sigma(self, t: Tensor) -> Tensor:
        """σ(t); for the discrete model t ∈ [1, T] is the step index (interpolated in log σ between steps)."""
        if self.discrete:
            log_sigmas = self.discrete_sigmas.log().to(t.device)
            index = (t.double() - 1).clamp(0, self.timesteps - 1)
            low = index.floor().long().clamp(max=self.timesteps - 2)
            frac = index - low
            return torch.exp(log_sigmas[low] * (1 - frac) + log_sigmas[low + 1] * frac).to(t.dtype)
        abar = self.alpha_bar(t.double())
        return torch.sqrt(1 / abar - 1).to(t.dtype)

    def scale(self, t: Tensor) -> Tensor:
        return 1 / torch.sqrt(1 + self.sigma(t) ** 2)

    def time(self, sigma: Tensor) -> Tensor:
        s = sigma.double()
        if self.discrete:
            log_sigmas = self.discrete_sigmas.log().to(s.device)
            log_s = s.clamp_min(1e-30).log().clamp(log_sigmas[0], log_sigmas[-1])
            high = torch.searchsorted(log_sigmas, log_s.reshape(-1).contiguous()).clamp(1, self.timesteps - 1)
            low = high - 1
            frac = (log_s.reshape(-1) - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])
            return (low.double() + frac + 1).reshape(s.shape).to(sigma.dtype)
        if self.schedule == "linear":
            # Solve ½(β_max − β_min)t² + β_min t = ln(1 + σ²) (EDM Table 1, VP σ^{-1}).
            d = self.beta_max - self.beta_min
            t = (torch.sqrt(self.beta_min**2 + 2 * d * torch.log1p(s**2)) - self.beta_min) / d
        else:
            f0 = math.cos(self.cosine_s / (1 + self.cosine_s) * math.pi / 2) ** 2
            cos = torch.sqrt(f0 / (1 + s**2))
            t = (1 + self.cosine_s) * 2 / math.pi * torch.arccos(cos) - self.cosine_s
        return t.to(sigma.dtype)

    @property
    def sigma_min(self) -> float:
        if self.discrete:
            return float(self.discrete_sigmas[0])
        return float(self.sigma(torch.tensor(self.t_min, dtype=torch.float64)))

    @property
    def sigma_max(self) -> float:
        if self.discrete:
            return float(self.discrete_sigmas[-1])
        t_max = 1.0 if self.schedule == "linear" else 0.999
        return float(self.sigma(torch.tensor(t_max, dtype=torch.float64)))

    def c_noise(self, sigma: Tensor) -> Tensor:
        """(M − 1) t with M = 1000 (EDM Table 1); the discrete model's step index t − 1 ∈ [0, T − 1]."""
        t = self.time(sigma)
        return t - 1 if self.discrete else 999 * t

    def training_sigma(self, u: Tensor) -> Tensor:
        """Discrete: t ~ U{1..T} (Ho et al. 2020, Alg. 1); continuous: t ~ U[t_min, 1]."""
        if self.discrete:
            t = torch.floor(u * self.timesteps).clamp(max=self.timesteps - 1) + 1
            return self.discrete_sigmas.to(u.device)[t.long() - 1].to(u.dtype)
        t_max = 1.0 if self.schedule == "linear" else 0.999
        return self.sigma(self.t_min + u * (t_max - self.t_min))

    def loss_weight(self, sigma: Tensor) -> Tensor:
        """1/σ²: ‖D − x_0‖²/σ² = ‖ε̂ − ε‖², DDPM's L_simple (Ho et al. 2020, eq. 14)."""
        return sigma**-2

    def sampling_sigmas(self, steps: int) -> Tensor:
        """Steps uniform in t (DDIM's uniform sub-sequence of the T steps, Song et al. 2021a, sec. 4.2)."""
        if self.discrete:
            index = torch.linspace(self.timesteps - 1, 0, steps, dtype=torch.float64).round().long()
            return append_zero(self.discrete_sigmas[index])
        t_max = 1.0 if self.schedule == "linear" else 0.999
        return append_zero(self.sigma(_uniform_time(steps, t_max, self.t_min)))


@dataclass(frozen=True)
class VE(Process):
    """Variance exploding: s = 1, σ(t) = σ_min (σ_max/σ_min)^t (Song et al. 2021, eq. 31).

    Training σ is log-uniform on [σ_min, σ_max] (t ~ U[0, 1]); λ(σ) = 1/σ² is NCSN's σ²-weighted
    score matching ‖σ s_θ + ε‖² (Song & Ermon 2019, eq. 6). Network: c_in = 1, c_noise = ln(σ/2)
    (EDM Table 1), scaled by 250 for the embedding.
    """

    sigma_lo: float = 0.002
    sigma_hi: float = 80.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma_lo < self.sigma_hi:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_lo}, {self.sigma_hi}")

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_lo * (self.sigma_hi / self.sigma_lo) ** t

    def time(self, sigma: Tensor) -> Tensor:
        return torch.log(sigma / self.sigma_lo) / math.log(self.sigma_hi / self.sigma_lo)

    @property
    def sigma_min(self) -> float:
        return self.sigma_lo

    @property
    def sigma_max(self) -> float:
        return self.sigma_hi

    def c_noise(self, sigma: Tensor) -> Tensor:
        return 250 * torch.log(0.5 * sigma)

    def training_sigma(self, u: Tensor) -> Tensor:
        return self.sigma(u)

    def loss_weight(self, sigma: Tensor) -> Tensor:
        return sigma**-2

    def sampling_sigmas(self, steps: int) -> Tensor:
        """Geometric steps (uniform in t), as Song et al. 2021 sample VE models."""
        return append_zero(self.sigma(_uniform_time(steps, 1.0, 0.0)))


@dataclass(frozen=True)
class EDM(Process):
    """EDM: s = 1, σ(t) = t; ln σ ~ N(P_mean, P_std²) in training, λ(σ) = (σ² + σ_data²)/(σ σ_data)²
    (EDM eq. 8, Table 1); c_in = 1/sqrt(σ² + σ_data²), c_noise = ln(σ)/4 (scaled by 1000 for the embedding)."""

    sigma_lo: float = 0.002
    sigma_hi: float = 80.0
    rho: float = 7.0
    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.sigma_lo < self.sigma_hi:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_lo}, {self.sigma_hi}")
        if not (self.P_std > 0 and self.sigma_data > 0 and self.rho > 0):
            raise ValueError("P_std, sigma_data and rho must be > 0")

    def sigma(self, t: Tensor) -> Tensor:
        return t

    def time(self, sigma: Tensor) -> Tensor:
        return sigma

    @property
    def sigma_min(self) -> float:
        return self.sigma_lo

    @property
    def sigma_max(self) -> float:
        return self.sigma_hi

    def c_in(self, sigma: Tensor) -> Tensor:
        return 1 / torch.sqrt(sigma**2 + self.sigma_data**2)

    def c_noise(self, sigma: Tensor) -> Tensor:
        return 1000 * torch.log(sigma) / 4

    def training_sigma(self, u: Tensor) -> Tensor:
        """ln σ = P_mean + P_std · Φ^{-1}(u)."""
        u = u.clamp(1e-7, 1 - 1e-7)
        return torch.exp(self.P_mean + self.P_std * math.sqrt(2) * torch.erfinv(2 * u - 1))

    def loss_weight(self, sigma: Tensor) -> Tensor:
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def sampling_sigmas(self, steps: int) -> Tensor:
        return karras_sigmas(steps, self.sigma_lo, self.sigma_hi, self.rho)


@dataclass(frozen=True)
class Flow(Process):
    """Flow matching / rectified flow: x_t = (1 − t) x_0 + t ε, i.e. s(t) = 1 − t, σ(t) = t/(1 − t).

    The velocity target is dx_t/dt = ε − x_0 (Liu et al. 2023, eq. 1; Lipman et al. 2023). With
    v̂ = (x_t − D)/t, ‖v̂ − (ε − x_0)‖² = ‖D − x_0‖²/t², so λ(σ) = 1/t² = ((1 + σ)/σ)². Training t is
    uniform on [0, 1] (``logit_normal`` = False) or logit-normal (Esser et al. 2024, eq. 19). Samplers
    start at t_max < 1 (σ = t/(1 − t) is infinite at t = 1); the network sees x_t = (1 − t) x̂ and
    c_noise = 1000 t.
    """

    t_max: float = 0.9999
    t_min: float = 1e-4
    logit_normal: bool = False

    def __post_init__(self) -> None:
        if not 0 < self.t_min < self.t_max < 1:
            raise ValueError(f"need 0 < t_min < t_max < 1, got {self.t_min}, {self.t_max}")

    def sigma(self, t: Tensor) -> Tensor:
        return t / (1 - t)

    def scale(self, t: Tensor) -> Tensor:
        return 1 - t

    def time(self, sigma: Tensor) -> Tensor:
        return sigma / (1 + sigma)

    @property
    def sigma_min(self) -> float:
        return self.t_min / (1 - self.t_min)

    @property
    def sigma_max(self) -> float:
        return self.t_max / (1 - self.t_max)

    def c_noise(self, sigma: Tensor) -> Tensor:
        return 1000 * self.time(sigma)

    def training_sigma(self, u: Tensor) -> Tensor:
        if self.logit_normal:
            u = u.clamp(1e-7, 1 - 1e-7)
            t = torch.sigmoid(math.sqrt(2) * torch.erfinv(2 * u - 1))
        else:
            t = u
        return self.sigma(t.clamp(self.t_min, self.t_max))

    def loss_weight(self, sigma: Tensor) -> Tensor:
        return ((1 + sigma) / sigma) ** 2

    def sampling_sigmas(self, steps: int) -> Tensor:
        """Steps uniform in t from t_max to t_min (rectified flow's Euler grid), then σ = 0."""
        t = torch.linspace(self.t_max, 0, steps + 1, dtype=torch.float64)[:-1]
        return append_zero(self.sigma(t))
