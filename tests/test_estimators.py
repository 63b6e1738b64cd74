"""Exactness tests of the gradient estimators (genmodels.estimators) on problems summable exactly.

Unbiasedness is checked against the exact gradient of E_{z~p_θ}[f(z)] (by enumeration or closed
form) with a tolerance of a few Monte Carlo standard errors, computed from per-sample gradients
(each sample gets its own copy of θ as a leaf, so one backward gives all of them).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from genmodels.estimators import (
    MovingAverageBaseline,
    gaussian_kl_standard_normal,
    gumbel_max,
    gumbel_noise,
    gumbel_softmax,
    log_mean_exp,
    perturb_and_argmax,
    perturb_and_argmax_probs,
    perturb_and_softmax,
    reparameterize_gaussian,
    score_function_surrogate,
    straight_through_gumbel,
    vimco_baselines,
    vimco_surrogate,
)

#: a Monte Carlo mean is accepted within this many standard errors of the exact value (per
#: component; with ~10 components the chance of a false failure at 4.5 s.e. is about 1e-4)
Z = 4.5


def _assert_unbiased(per_sample: torch.Tensor, exact: torch.Tensor) -> None:
    mean = per_sample.mean(0)
    stderr = per_sample.std(0) / math.sqrt(len(per_sample))
    assert ((mean - exact).abs() <= Z * stderr + 1e-9).all(), (mean, exact, stderr)


def _assert_biased(per_sample: torch.Tensor, exact: torch.Tensor) -> None:
    mean = per_sample.mean(0)
    stderr = per_sample.std(0) / math.sqrt(len(per_sample))
    assert ((mean - exact).abs() > Z * stderr).any(), "the test cannot tell a biased estimator"


# --- Gumbel-max, Gumbel-softmax, straight-through -----------------------------------------------
def test_gumbel_max_samples_follow_the_softmax_chi_square():
    logits = torch.tensor([1.0, -0.5, 0.3, 2.0, 0.0])
    n = 200_000
    u = torch.rand(n, 5, generator=torch.Generator().manual_seed(0))
    counts = gumbel_max(logits, gumbel_noise(u)).bincount(minlength=5).double()
    expected = n * torch.softmax(logits.double(), 0)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 18.47, chi2  # χ²(4) 0.999 quantile
    # and it is not softmax of something else: shifting one logit is detected
    wrong = n * torch.softmax(logits.double() + torch.tensor([0.05, 0, 0, 0, 0]), 0)
    assert float(((counts - wrong) ** 2 / wrong).sum()) > 18.47


def test_gumbel_softmax_tends_to_the_one_hot_sample_as_tau_goes_to_zero():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(200, 6, generator=g)
    noise = gumbel_noise(torch.rand(200, 6, generator=g))
    hard = F.one_hot(gumbel_max(logits, noise), 6).float()
    gaps = [float((gumbel_softmax(logits, noise, tau) - hard).abs().max(dim=1).values.median()) for tau in (2.0, 0.5, 0.1, 0.01)]
    assert gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-3, gaps
    assert torch.allclose(gumbel_softmax(logits, noise, 1.0).sum(-1), torch.ones(200))


def test_straight_through_forward_is_one_hot_and_backward_is_the_relaxed_gradient():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 4, generator=g)
    noise = gumbel_noise(torch.rand(50, 4, generator=g))
    weights = torch.randn(50, 4, generator=g)
    a = logits.clone().requires_grad_()
    hard = straight_through_gumbel(a, noise, tau=0.7)
    assert torch.equal(hard.detach(), F.one_hot(gumbel_max(logits, noise), 4).float())
    (hard * weights).sum().backward()
    b = logits.clone().requires_grad_()
    (gumbel_softmax(b, noise, 0.7) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)
    assert a.grad.abs().sum() > 0


# --- REINFORCE -------------------------------------------------------------------------------------
def _reinforce_per_sample(theta, f, n, baseline_fn, seed=0):
    """Per-sample REINFORCE gradients of E_{z~softmax(θ)}[f(z)] w.r.t. θ, (n, C)."""
    g = torch.Generator().manual_seed(seed)
    thetas = theta.detach().repeat(n, 1).requires_grad_()  # one leaf per sample
    log_q = F.log_softmax(thetas, dim=1)
    z = gumbel_max(log_q.detach(), gumbel_noise(torch.rand(n, len(theta), generator=g)))
    fz = f[z]
    surrogate = score_function_surrogate(fz, log_q.gather(1, z[:, None]).squeeze(1), baseline_fn(fz))
    surrogate.sum().backward()
    return thetas.grad


@pytest.fixture
def categorical_problem():
    theta = torch.tensor([0.3, -1.0, 0.8, 0.0], dtype=torch.float64)
    f = torch.tensor([1.0, 4.0, -2.0, 3.0], dtype=torch.float64) + 5.0  # an offset makes baselines matter
    t = theta.clone().requires_grad_()
    (torch.softmax(t, 0) * f).sum().backward()  # exact E[f] = Σ_z softmax(θ)_z f(z)
    return theta, f, t.grad


def test_reinforce_is_unbiased_without_and_with_a_baseline(categorical_problem):
    theta, f, exact = categorical_problem
    plain = _reinforce_per_sample(theta, f, 40_000, lambda fz: 0.0)
    _assert_unbiased(plain, exact)
    constant = _reinforce_per_sample(theta, f, 40_000, lambda fz: torch.tensor(6.0, dtype=fz.dtype), seed=1)
    _assert_unbiased(constant, exact)
    # the baseline reduces the variance here (it is near E[f])
    assert constant.var(0).sum() < 0.5 * plain.var(0).sum()


def test_reinforce_with_a_moving_average_baseline_is_unbiased(categorical_problem):
    theta, f, exact = categorical_problem
    baseline = MovingAverageBaseline(decay=0.9)
    grads = []
    for seed in range(20):  # the baseline is updated *after* each batch: it never sees the sample it centres
        b = baseline().clone() if bool(baseline.initialized) else torch.tensor(0.0)
        grads.append(_reinforce_per_sample(theta, f, 2000, lambda fz: b.to(fz.dtype), seed=seed))
        baseline.update(f[torch.multinomial(torch.softmax(theta, 0), 2000, replacement=True)])
    _assert_unbiased(torch.cat(grads), exact)


def test_a_sample_dependent_baseline_is_caught_as_biased(categorical_problem):
    """Control: the test above has the power to see a baseline that depends on z."""
    theta, f, exact = categorical_problem
    _assert_biased(_reinforce_per_sample(theta, f, 40_000, lambda fz: 0.5 * fz), exact)


# --- reparameterization -------------------------------------------------------------------------------
def test_reparameterized_gaussian_gradient_matches_the_closed_form():
    mu0, log_sigma0, n = 0.7, math.log(1.3), 100_000
    eps = torch.randn(n, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    mu = torch.full((n,), mu0, dtype=torch.float64, requires_grad=True)
    log_sigma = torch.full((n,), log_sigma0, dtype=torch.float64, requires_grad=True)
    z = reparameterize_gaussian(mu, log_sigma, eps)
    (z**3 - 2 * z**2).sum().backward()
    # E[z³ − 2z²] = μ³ + 3μσ² − 2(μ² + σ²):  ∂/∂μ = 3μ² + 3σ² − 4μ,  ∂/∂log σ = σ(6μσ − 4σ)
    s = math.exp(log_sigma0)
    exact = torch.tensor([3 * mu0**2 + 3 * s**2 - 4 * mu0, s * (6 * mu0 * s - 4 * s)], dtype=torch.float64)
    _assert_unbiased(torch.stack([mu.grad, log_sigma.grad], 1), exact)


def test_gaussian_kl_matches_torch_distributions():
    mu, log_sigma = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, log_sigma.exp()), torch.distributions.Normal(0.0, 1.0)
    )
    assert torch.allclose(gaussian_kl_standard_normal(mu, log_sigma), expected)


# --- VIMCO ------------------------------------------------------------------------------------------
def test_vimco_baselines_match_the_definition_and_ignore_their_own_sample():
    log_w = torch.randn(3, 5, dtype=torch.float64)
    got = vimco_baselines(log_w)
    for b in range(3):
        for j in range(5):
            others = torch.cat([log_w[b, :j], log_w[b, j + 1 :]])
            replaced = torch.cat([others, others.mean().reshape(1)])  # ŵ_{−j}: geometric mean of the others
            assert torch.isclose(got[b, j], log_mean_exp(replaced, 0))
    moved = log_w.clone()
    moved[:, 2] += 3.0
    changed = vimco_baselines(moved)
    assert torch.allclose(changed[:, 2], got[:, 2])  # L̂_{−j} does not depend on w_j
    assert not torch.allclose(changed[:, 0], got[:, 0])


def test_vimco_is_unbiased_for_the_gradient_of_the_multi_sample_bound():
    """∇_θ E_{z_1..k ~ q_θ}[log (1/k) Σ p̃(z_i)/q_θ(z_i)] by enumerating all C^k tuples, k = 3."""
    C, k, n = 3, 3, 60_000
    theta = torch.tensor([0.2, -0.6, 0.9], dtype=torch.float64)
    log_p = torch.tensor([-1.0, -0.2, -2.5], dtype=torch.float64)  # an unnormalized target p̃(x, z)
    t = theta.clone().requires_grad_()
    log_q = F.log_softmax(t, 0)
    tuples = torch.tensor(list(itertools.product(range(C), repeat=k)))  # (C^k, k)
    weight = log_q[tuples].sum(1).exp()
    (weight * log_mean_exp(log_p[tuples] - log_q[tuples], 1)).sum().backward()
    exact = t.grad

    thetas = theta.repeat(n, 1).requires_grad_()
    lq = F.log_softmax(thetas, 1)  # (n, C)
    u = torch.rand(n, k, C, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    z = gumbel_max(lq.detach().unsqueeze(1).expand(n, k, C), gumbel_noise(u))  # (n, k)
    log_qz = lq.gather(1, z)
    vimco_surrogate(log_p[z] - log_qz, log_qz).sum().backward()
    _assert_unbiased(thetas.grad, exact)

    # control: with L̂ itself as every sample's baseline (it depends on z_j) the estimator is biased
    thetas2 = theta.repeat(n, 1).requires_grad_()
    lq2 = F.log_softmax(thetas2, 1)
    log_qz2 = lq2.gather(1, z)
    log_w = log_p[z] - log_qz2
    bound = log_mean_exp(log_w, 1)
    bound.sum().backward()  # pathwise part only: the score term's signal L̂ − L̂ is zero
    _assert_biased(thetas2.grad, exact)


# --- perturb-and-argmax ------------------------------------------------------------------------------
MU = torch.tensor([0.0, 1.0, -0.5, 2.0])


@pytest.mark.parametrize("noise", ["gumbel", "gaussian", "exponential"])
def test_perturb_and_argmax_probabilities_sum_to_one_and_match_monte_carlo(noise):
    probs = perturb_and_argmax_probs(MU, noise)
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
    n = 200_000
    u = torch.rand(n, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    counts = perturb_and_argmax(MU.double(), u, noise).bincount(minlength=4).double()
    expected = n * probs
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 16.27, (noise, counts / n, probs)  # χ²(3) 0.999 quantile


def test_only_gumbel_noise_gives_the_softmax():
    softmax = torch.softmax(MU.double(), 0)
    assert torch.allclose(perturb_and_argmax_probs(MU, "gumbel"), softmax, atol=1e-7)
    for noise in ("gaussian", "exponential"):
        assert (perturb_and_argmax_probs(MU, noise) - softmax).abs().max() > 0.02, noise
    # a shift of every μ_i leaves any perturb-and-argmax law unchanged
    for noise in ("gumbel", "gaussian", "exponential"):
        assert torch.allclose(perturb_and_argmax_probs(MU, noise), perturb_and_argmax_probs(MU + 3.0, noise), atol=1e-6)


@pytest.mark.parametrize("noise", ["gumbel", "gaussian", "exponential"])
def test_perturb_and_softmax_relaxes_the_argmax(noise):
    u = torch.rand(100, 4, generator=torch.Generator().manual_seed(6))
    hard = F.one_hot(perturb_and_argmax(MU, u, noise), 4).float()
    soft = perturb_and_softmax(MU, u, 1e-3, noise)
    assert (soft - hard).abs().max() < 1e-3
    mu = MU.clone().requires_grad_()
    perturb_and_softmax(mu, u, 0.5, noise)[:, 3].sum().backward()
    assert mu.grad.abs().sum() > 0


def test_moving_average_baseline_tracks_the_mean():
    baseline = MovingAverageBaseline(decay=0.5)
    baseline.update(torch.tensor([2.0, 4.0]))
    assert float(baseline()) == 3.0
    baseline.update(torch.tensor([5.0]))
    assert float(baseline()) == 4.0
    with pytest.raises(ValueError):
        MovingAverageBaseline(decay=1.0)
