"""Diffusion formulas pinned to their papers with hand-written expressions (never the code's own values).

EDM Table 1 (Karras et al. 2022) for the preconditioning c_skip, c_out, c_in, c_noise of each process;
DDIM eq. 12/16 (Song et al. 2021a) for one step at an intermediate η; DDPM eq. 13 (Ho et al. 2020)
for the decoder term L₀ at a β₁ where it is far from 0, and L_T and Σ L_{t−1} at T = 4; EDM Alg. 2's churn and
DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) on an uneven grid. Each value is checked where a plausible wrong
formula gives another number (the σ's below are not 0, 1 or σ_data).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from genmodels.core import create_model
from genmodels.data import DataSpec
from genmodels.diffusion.bound import ddpm_bound
from genmodels.diffusion.preconditioning import Preconditioning, from_denoised, score_from_denoised, to_denoised
from genmodels.diffusion.processes import EDM, VE, VP, Flow
from genmodels.diffusion.samplers import sample_ddim, sample_dpmpp_2m, sample_heun

SIGMAS = [0.07, 0.7, 3.0, 40.0]


def _t(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


# --- c_skip, c_out: EDM eq. 7 and Table 1; v (Salimans & Ho 2022); velocity (rectified flow) ------------
@pytest.mark.parametrize("sigma", SIGMAS)
def test_c_skip_and_c_out_of_every_target_are_edm_table_1(sigma):
    sd = 0.3  # σ_data ≠ 0.5 and ≠ 1, so σ_data, σ_data² and 1 are told apart
    expected = {  # prediction: (c_skip, c_out)
        "eps": (1.0, -sigma),  # VP/VE rows of Table 1 (F predicts ε; the sign of F is the target's)
        "x0": (0.0, 1.0),
        "v": (1 / (1 + sigma**2), -sigma / math.sqrt(1 + sigma**2)),  # EDM's form with σ_data = 1
        "velocity": (1 / (1 + sigma), -sigma / (1 + sigma)),  # x_t = (1 − t) x̂, x_0 = x_t − t v, t = σ/(1+σ)
        "edm": (sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2)),  # Table 1, "ours"
    }
    for prediction, (c_skip, c_out) in expected.items():
        pre = Preconditioning(prediction, sd)
        assert float(pre.c_skip(_t(sigma))) == pytest.approx(c_skip, rel=1e-12, abs=1e-15), prediction
        assert float(pre.c_out(_t(sigma))) == pytest.approx(c_out, rel=1e-12), prediction


def test_the_edm_training_target_is_eq_8_with_hand_written_c_skip_and_c_out():
    """EDM eq. 8: F's target is (y − c_skip(σ)(y + n))/c_out(σ), here with c_skip, c_out written out."""
    sd, sigma = 0.3, 0.7
    y, n = 0.4, -1.1 * sigma  # x_0 and the noise σ ε
    c_skip = sd**2 / (sigma**2 + sd**2)  # 0.09/0.58
    c_out = sigma * sd / math.sqrt(sigma**2 + sd**2)  # 0.21/√0.58
    expected = (y - c_skip * (y + n)) / c_out
    x = torch.tensor([[y + n]], dtype=torch.float64)
    target = from_denoised("edm", torch.tensor([[y]], dtype=torch.float64), x, _t(sigma), sigma_data=sd)
    assert float(target) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(1.6588, abs=1e-4)  # (0.4 − (0.09/0.58)(−0.37)) / (0.21/√0.58)


# --- c_in, c_noise of every process: EDM Table 1 --------------------------------------------------------
@pytest.mark.parametrize("sigma", SIGMAS)
def test_c_in_of_every_process_is_edm_table_1(sigma):
    sd = 0.3
    expected = {
        "vp": 1 / math.sqrt(sigma**2 + 1),  # VP: 1/√(σ² + 1)
        "vp-discrete": 1 / math.sqrt(sigma**2 + 1),
        "ve": 1.0,  # VE: 1
        "edm": 1 / math.sqrt(sigma**2 + sd**2),  # EDM: 1/√(σ² + σ_data²)
        "flow": 1 / (1 + sigma),  # x_t = (1 − t) x̂ with t = σ/(1 + σ)
    }
    processes = {"vp": VP(timesteps=0), "vp-discrete": VP(timesteps=1000), "ve": VE(), "edm": EDM(sigma_data=sd), "flow": Flow()}
    for name, process in processes.items():
        assert float(process.c_in(_t(sigma))) == pytest.approx(expected[name], rel=1e-9), name


@pytest.mark.parametrize("sigma", SIGMAS)
def test_c_noise_of_every_process_is_edm_table_1_in_the_embeddings_units(sigma):
    # VP (continuous, linear β): (M − 1) σ⁻¹(σ), M = 1000, σ⁻¹(σ) = (√(β_min² + 2 β_d ln(σ² + 1)) − β_min)/β_d.
    beta_min, beta_d = 0.1, 19.9
    t_vp = (math.sqrt(beta_min**2 + 2 * beta_d * math.log(sigma**2 + 1)) - beta_min) / beta_d
    assert float(VP(timesteps=0).c_noise(_t(sigma))) == pytest.approx(999 * t_vp, rel=1e-9)
    # VE: ln(½ σ), scaled by 250 for the sinusoidal embedding.
    assert float(VE().c_noise(_t(sigma))) == pytest.approx(250 * math.log(0.5 * sigma), rel=1e-12)
    # EDM: ¼ ln σ, scaled by 1000.
    assert float(EDM().c_noise(_t(sigma))) == pytest.approx(1000 * 0.25 * math.log(sigma), rel=1e-12)
    # Flow matching: t = σ/(1 + σ), scaled by 1000.
    assert float(Flow().c_noise(_t(sigma))) == pytest.approx(1000 * sigma / (1 + sigma), rel=1e-12)


def test_c_noise_of_discrete_vp_is_the_ddpm_step_index():
    """Discrete VP (iDDPM row of Table 1, M − 1 − j in its own order): at σ_t the network sees t − 1, the
    0-based index of step t, with β_t = linspace(β_min/T, β_max/T) and σ_t = √((1 − ᾱ_t)/ᾱ_t)."""
    T = 10
    betas = [0.1 / T + (5.0 / T - 0.1 / T) * i / (T - 1) for i in range(T)]
    alpha_bar, sigmas = 1.0, []
    for beta in betas:
        alpha_bar *= 1 - beta
        sigmas.append(math.sqrt((1 - alpha_bar) / alpha_bar))
    process = VP(timesteps=T, beta_max=5.0)
    got = process.c_noise(torch.tensor(sigmas, dtype=torch.float64))
    assert torch.allclose(got, torch.arange(T, dtype=torch.float64), atol=1e-9)
    # between two steps, log-linear in σ: halfway in ln σ between steps 3 and 4 is 2.5
    assert float(process.c_noise(_t(math.sqrt(sigmas[2] * sigmas[3])))) == pytest.approx(2.5, abs=1e-9)


class _RecordingNet(nn.Module):
    """F(input, c_noise) = 2·input + 0.01·c_noise, recording what it was given."""

    def forward(self, x, c_noise, labels=None):
        self.seen = (x.clone(), c_noise.clone())
        return 2 * x + 0.01 * c_noise[:, None]


@pytest.mark.parametrize("name", ["edm", "ve", "rectified-flow"])
def test_the_model_feeds_its_network_c_in_x_and_c_noise_and_returns_eq_7(name):
    """D(x̂; σ) = c_skip x̂ + c_out F(c_in x̂; c_noise) (EDM eq. 7), each c written out by hand."""
    with torch.device("cpu"):
        model = create_model(name, DataSpec("c", (2,), None), {}).double()
    model.net = _RecordingNet()
    sigma = 0.7
    x = torch.tensor([[0.3, -1.2], [2.0, 0.5]], dtype=torch.float64)
    if name == "edm":
        sd = model.preconditioning.sigma_data
        c_in, c_noise = 1 / math.sqrt(sigma**2 + sd**2), 250 * math.log(sigma)
        c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2)
    elif name == "ve":
        c_in, c_noise, c_skip, c_out = 1.0, 250 * math.log(sigma / 2), 1.0, -sigma
    else:
        c_in, c_noise = 1 / (1 + sigma), 1000 * sigma / (1 + sigma)
        c_skip, c_out = 1 / (1 + sigma), -sigma / (1 + sigma)
    out = model.denoise(x, _t(sigma))
    seen_x, seen_c = model.net.seen
    assert torch.allclose(seen_x, c_in * x, rtol=1e-12)
    assert torch.allclose(seen_c, torch.full((2,), c_noise, dtype=torch.float64), rtol=1e-12)
    assert torch.allclose(out, c_skip * x + c_out * (2 * c_in * x + 0.01 * c_noise), rtol=1e-12)


# --- DDIM at an intermediate η: Song et al. 2021a, eq. 12 and 16 ---------------------------------------
def test_one_ddim_step_at_eta_one_half_has_eq_12_mean_and_eq_16_std():
    """x_{t−1} = √ᾱ_{t−1} x̂_0 + √(1 − ᾱ_{t−1} − σ_t²) ε̂ + σ_t ε (eq. 12), σ_t(η) = η √((1 − ᾱ_{t−1})/(1 − ᾱ_t))
    √(1 − ᾱ_t/ᾱ_{t−1}) (eq. 16), ε̂ = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t); in the scaled frame x̂ = x/√ᾱ."""
    sigma, sigma_next, eta = 1.0, 0.5, 0.5
    abar, abar_prev = 1 / (1 + sigma**2), 1 / (1 + sigma_next**2)  # 0.5, 0.8
    x_hat, x0_hat = 1.5, 0.3  # every entry of x̂ is 1.5; the denoiser says 0.3
    x_t = math.sqrt(abar) * x_hat
    eps_hat = (x_t - math.sqrt(abar) * x0_hat) / math.sqrt(1 - abar)
    sigma_t = eta * math.sqrt((1 - abar_prev) / (1 - abar)) * math.sqrt(1 - abar / abar_prev)
    mean = (math.sqrt(abar_prev) * x0_hat + math.sqrt(1 - abar_prev - sigma_t**2) * eps_hat) / math.sqrt(abar_prev)
    std = sigma_t / math.sqrt(abar_prev)
    assert (mean, std) == pytest.approx((0.84083, 0.21651), abs=1e-5)  # by hand from the lines above
    n = 200_000
    x = torch.full((n, 1), x_hat, dtype=torch.float64)
    sigmas = torch.tensor([sigma, sigma_next], dtype=torch.float64)
    out, nfe = sample_ddim(lambda v, s: torch.full_like(v, x0_hat), x, sigmas, eta=eta,
                           generator=torch.Generator().manual_seed(0))
    assert nfe == 1
    # standard errors: std/√n ≈ 5e-4 for the mean, std/√(2n) ≈ 3.4e-4 for the std
    assert float(out.mean()) == pytest.approx(mean, abs=3e-3)
    assert float(out.std()) == pytest.approx(std, abs=2e-3)


def test_one_ddim_step_at_eta_zero_is_deterministic_eq_12():
    sigma, sigma_next = 1.0, 0.5
    abar, abar_prev = 0.5, 0.8
    x_hat, x0_hat = torch.tensor([[1.5, -0.4]], dtype=torch.float64), torch.tensor([[0.3, 0.1]], dtype=torch.float64)
    eps_hat = (math.sqrt(abar) * x_hat - math.sqrt(abar) * x0_hat) / math.sqrt(1 - abar)
    expected = x0_hat + math.sqrt((1 - abar_prev) / abar_prev) * eps_hat
    out, _ = sample_ddim(lambda v, s: x0_hat, x_hat, torch.tensor([sigma, sigma_next], dtype=torch.float64), eta=0.0)
    assert torch.allclose(out, expected, rtol=1e-12)


# --- DDPM's decoder term L₀: Ho et al. 2020, eq. 13 ----------------------------------------------------
def test_the_decoder_term_l0_is_eq_13_at_a_large_beta_1():
    """L₀ = −Σ_i log ∫_{δ−(x_i)}^{δ+(x_i)} N(z; D_i, β₁) dz, bins of width 2/K on [−1, 1] with the outer
    ones open (eq. 13); β₁ = 0.1 (so √β₁ ≈ 0.316 ≠ σ₁ = √(β₁/(1 − β₁)) ≈ 0.333 ≠ β₁)."""
    process = VP(timesteps=10, beta_min=1.0, beta_max=5.0)  # β_1 = β_min/T = 0.1
    levels = 4
    x = torch.tensor([[0, 1, 2, 3, 1]])
    D = torch.tensor([-0.6, -0.1, 0.3, 0.9, 0.4], dtype=torch.float64)  # the denoiser's x̂_0 at step 1
    edges = [(-math.inf, -0.5), (-0.5, 0.0), (0.0, 0.5), (0.5, math.inf)]  # K = 4 bins of [−1, 1]
    std = math.sqrt(0.1)
    expected = -sum(
        math.log(norm.cdf((edges[int(v)][1] - d) / std) - norm.cdf((edges[int(v)][0] - d) / std))
        for v, d in zip(x[0], D.tolist())
    )
    # 0.471 + 0.652 + 0.571 + 0.109 + 2.294 (Φ by table): far from 0, the denoiser is ≥ 0.1 off per dim
    assert expected == pytest.approx(4.0979, abs=1e-3)
    terms = ddpm_bound(lambda v, s: D.to(v.dtype).expand_as(v), process, x, levels,
                       lambda n: torch.zeros(1, n, 5), network_dtype=torch.float64)
    assert float(terms["decoder"][0]) == pytest.approx(expected, rel=1e-9)


# --- samplers whose survivors of tools/hand_mutants_families.py needed a hand-written value -----------
def test_heun_churn_raises_sigma_by_edm_alg_2_gamma_capped_at_sqrt2_minus_1():
    """EDM Alg. 2: γ = min(S_churn/N, √2 − 1) when σ_i ∈ [S_tmin, S_tmax], σ̂ = (1 + γ) σ_i, and the
    added noise has std √(σ̂² − σ_i²) S_noise."""
    seen = []

    def denoiser(x, sigma):
        seen.append((x.clone(), float(sigma)))
        return torch.zeros_like(x)

    n, sigma0 = 100_000, 2.0
    x = torch.zeros(n, 1, dtype=torch.float64)
    sigmas = torch.tensor([sigma0, 0.0], dtype=torch.float64)  # N = 1 step, Euler to 0
    g = torch.Generator().manual_seed(0)
    sample_heun(denoiser, x, sigmas, s_churn=1.0, s_noise=1.1, generator=g)  # S_churn/N = 1 > √2 − 1
    x_seen, sigma_hat = seen[-1]
    assert sigma_hat == pytest.approx(sigma0 * math.sqrt(2), rel=1e-12)  # 2.828, not 2·(1 + 1) = 4
    assert float(x_seen.std()) == pytest.approx(math.sqrt(sigma_hat**2 - sigma0**2) * 1.1, rel=0.01)  # 2.2
    sample_heun(denoiser, x, sigmas, s_churn=0.25, generator=g)  # γ = 0.25 below the cap
    assert seen[-1][1] == pytest.approx(2.5, rel=1e-12)
    sample_heun(denoiser, x, sigmas, s_churn=1.0, s_tmax=1.5, generator=g)  # σ_0 = 2 > S_tmax: no churn
    assert seen[-1][1] == pytest.approx(2.0, rel=1e-12) and float(seen[-1][0].abs().max()) == 0.0


def test_dpmpp_2m_on_an_uneven_grid_is_lu_et_al_alg_2_by_hand():
    """DPM-Solver++(2M) (Lu et al. 2022, Alg. 2) with the ideal denoiser of N(0, 1) data, D(x; σ) = x/(1 + σ²):
    x_{i+1} = (σ_{i+1}/σ_i) x_i − (e^{−h_i} − 1) D̃_i, D̃_i = (1 + 1/(2r_i)) D_i − D_{i−1}/(2r_i), r_i = h_{i−1}/h_i,
    first order at the first step; the last step, to σ = 0, returns D. Steps of unequal h (r ≠ 1)."""
    s = [4.0, 1.5, 0.3]

    def D(v, sigma):
        return v / (1 + sigma**2)

    x0 = 1.7
    h0, h1 = math.log(s[0] / s[1]), math.log(s[1] / s[2])  # 0.981, 1.609: r = 0.610 (inverted: 1.640)
    d0 = D(x0, s[0])
    x1 = (s[1] / s[0]) * x0 - math.expm1(-h0) * d0
    d1 = D(x1, s[1])
    r = h0 / h1
    x2 = (s[2] / s[1]) * x1 - math.expm1(-h1) * ((1 + 1 / (2 * r)) * d1 - d0 / (2 * r))
    expected = D(x2, s[2])
    out, nfe = sample_dpmpp_2m(lambda v, sigma: D(v, float(sigma)), torch.tensor([[x0]], dtype=torch.float64),
                               torch.tensor([*s, 0.0], dtype=torch.float64))
    assert nfe == 3
    assert float(out) == pytest.approx(expected, rel=1e-12)


def test_the_prior_and_diffusion_terms_of_the_bound_at_four_steps_by_hand():
    """Ho et al. 2020, eq. 5: L_T = KL(N(√ᾱ_T x_0, 1 − ᾱ_T) ‖ N(0, 1)) = ½(ᾱ_T x_0² + (1 − ᾱ_T) − 1 − ln(1 − ᾱ_T))
    per dimension; with a denoiser that ignores x̂, Σ_{t≥2} L_{t−1} = Σ_t ½(1/σ_{t−1}² − 1/σ_t²)‖x_0 − D‖²
    telescopes to ½(1/σ_1² − 1/σ_T²)‖x_0 − D‖², σ_t² = (1 − ᾱ_t)/ᾱ_t. T = 4, so ᾱ_T ≈ 0.22 is far from 0."""
    process = VP(timesteps=4, beta_min=0.4, beta_max=2.0)  # β = 0.1, 0.2333, 0.3667, 0.5
    betas = [0.1, 0.1 + 0.4 / 3, 0.1 + 0.8 / 3, 0.5]
    abar_1, abar_T = 1 - betas[0], math.prod(1 - b for b in betas)  # 0.9, 0.2185
    levels, x = 4, torch.tensor([[0, 3, 2]])
    x0 = [2 * (v + 0.5) / levels - 1 for v in (0, 3, 2)]  # bin centres −0.75, 0.75, 0.25
    D = [0.1, 0.2, -0.3]
    prior = sum(0.5 * (abar_T * c**2 + (1 - abar_T) - 1 - math.log(1 - abar_T)) for c in x0)
    squared_error = sum((c - d) ** 2 for c, d in zip(x0, D))
    diffusion = 0.5 * (abar_1 / (1 - abar_1) - abar_T / (1 - abar_T)) * squared_error
    assert abar_T == pytest.approx(0.2185, abs=1e-9)  # 0.9 · 0.7667 · 0.6333 · 0.5
    terms = ddpm_bound(lambda v, s: torch.tensor(D, dtype=v.dtype).expand_as(v), process, x, levels,
                       lambda n: torch.zeros(1, n, 3), network_dtype=torch.float64)
    assert float(terms["prior"][0]) == pytest.approx(prior, rel=1e-10)
    assert float(terms["diffusion"][0]) == pytest.approx(diffusion, rel=1e-10)


# --- the conversions' plumbing: survivors of a mutmut run of preconditioning.py --------------------------
def test_to_denoised_and_score_by_hand_with_sigma_data_a_python_float_and_float64():
    """D = c_skip x̂ + c_out F (EDM eq. 7) with σ_data = 0.3 passed through, σ a Python float, x̂ float64
    (so σ must take x̂'s dtype: a float32 σ is off by ~1e-8); the score ∇ log p = (D − x̂)/σ² (EDM eq. 3)."""
    sd, sigma = 0.3, 0.7
    x = torch.tensor([[0.4, -1.3]], dtype=torch.float64)
    F = torch.tensor([[0.25, 2.0]], dtype=torch.float64)
    c_skip, c_out = sd**2 / (sigma**2 + sd**2), sigma * sd / math.sqrt(sigma**2 + sd**2)
    D = to_denoised("edm", F, x, sigma, sigma_data=sd)
    assert D.dtype == torch.float64
    assert D.tolist()[0] == pytest.approx([c_skip * 0.4 + c_out * 0.25, c_skip * -1.3 + c_out * 2.0], rel=1e-14)
    score = score_from_denoised(D, x, torch.tensor([sigma], dtype=torch.float64))
    assert score.tolist()[0] == pytest.approx(((D - x) / sigma**2).tolist()[0], rel=1e-14)
    assert score_from_denoised(torch.zeros(1, 1), torch.ones(1, 1), torch.tensor(0.5)).item() == pytest.approx(-4.0)


def test_an_unknown_prediction_target_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"prediction must be one of eps, x0, v, velocity, edm, got 'score'"):
        Preconditioning("score")


def test_a_discrete_linear_schedule_whose_last_beta_reaches_one_is_refused_in_one_line():
    """β_T = β_max/T ≥ 1 (e.g. T = 8 with β_max = 20) gives ᾱ_T ≤ 0: refused when built, not NaN later."""
    import pytest

    from genmodels.core import create_model
    from genmodels.data import load_dataset
    from genmodels.errors import UserError

    spec = load_dataset("digits").spec
    with pytest.raises((UserError, ValueError), match="last β"):
        create_model("ddpm", spec, {"timesteps": 8})
    create_model("ddpm", spec, {"timesteps": 21})  # β_T = 20/21 < 1 is allowed
