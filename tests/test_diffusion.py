"""Diffusion and flow matching: schedules, parameterizations, samplers and the ODE likelihood against
closed forms. The Gaussian cases use data N(μ, diag s²), whose ideal denoiser is analytic:
D(x̂; σ) = μ + s²/(s² + σ²)(x̂ − μ), and whose probability-flow ODE maps x̂_σ to
μ + (x̂_σ − μ) s/sqrt(s² + σ²) exactly."""

from __future__ import annotations

import math

import pytest
import torch

from genmodels.core import Batch, LikelihoodKind, create_model
from genmodels.data import DataSpec
from genmodels.diffusion.likelihood import _drift_and_divergence, ode_log_likelihood
from genmodels.diffusion.losses import denoising_loss
from genmodels.diffusion.preconditioning import PREDICTIONS, Preconditioning, from_denoised, to_denoised
from genmodels.diffusion.processes import EDM, VE, VP, Flow, karras_sigmas
from genmodels.diffusion.samplers import SOLVERS, nfe_of, solve
from genmodels.errors import UserError

MU = torch.tensor([1.0, -0.5], dtype=torch.float64)
S = torch.tensor([0.5, 1.5], dtype=torch.float64)
PROCESSES = {
    "vp-linear": VP("linear", 1000),
    "vp-cosine": VP("cosine", 1000),
    "vp-linear-continuous": VP("linear", 0),
    "vp-cosine-continuous": VP("cosine", 0),
    "ve": VE(0.01, 50.0),
    "edm": EDM(),
    "flow": Flow(),
}


def gaussian_denoiser(x, sigma):
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


# --- schedules ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PROCESSES)
def test_time_and_sigma_are_inverse(name):
    process = PROCESSES[name]
    sigma = torch.logspace(math.log10(process.sigma_min), math.log10(process.sigma_max), 50, dtype=torch.float64)
    assert torch.allclose(process.sigma(process.time(sigma)), sigma, rtol=1e-6)


@pytest.mark.parametrize("name", ["vp-linear", "vp-cosine", "vp-linear-continuous", "vp-cosine-continuous"])
def test_vp_preserves_unit_variance(name):
    """Var x_t = s(t)²(Var x_0 + σ(t)²) = ᾱ + (1 − ᾱ) = 1 for unit-variance data, at every t."""
    process = PROCESSES[name]
    t = torch.linspace(1, 1000, 37, dtype=torch.float64) if process.discrete else torch.linspace(1e-3, 0.99, 37, dtype=torch.float64)
    var = process.scale(t) ** 2 * (1 + process.sigma(t) ** 2)
    assert torch.allclose(var, torch.ones_like(var), atol=1e-12)


def test_discrete_vp_alpha_bar_is_the_product_and_matches_its_continuous_limit():
    linear = VP("linear", 1000)
    assert torch.allclose(linear.alpha_bars, torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0))
    # ᾱ_i = Π(1 − β_j) → exp(−∫_0^{i/T} β(s) ds) as T grows (β_j = β((j−1)/(T−1))/T): an O(1/T) gap.
    errors = []
    for T in (1000, 4000):
        t = torch.arange(1, T + 1, dtype=torch.float64) / T
        gap = (VP("linear", T).alpha_bars.log() - VP("linear", 0).alpha_bar(t).log()).abs().max().item()
        errors.append(gap)
    assert errors[0] < 0.1 and errors[1] < errors[0] / 3, errors
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    # The cosine schedule's ᾱ_t = f(t/T)/f(0) exactly, until β is clipped at 0.999 near t = T.
    cosine = VP("cosine", 1000)
    unclipped = cosine.betas < 0.999
    assert unclipped[:990].all()
    assert torch.allclose(cosine.alpha_bars[:990], VP("cosine", 0).alpha_bar(t[:990]), rtol=1e-9)


def test_karras_steps_and_flow_grid():
    sigmas = karras_sigmas(18, 0.002, 80.0)
    assert len(sigmas) == 19 and sigmas[0] == 80.0 and sigmas[-1] == 0
    assert sigmas[-2] == pytest.approx(0.002) and (sigmas[:-1].diff() < 0).all()
    # ρ = 1 is uniform in σ.
    assert torch.allclose(karras_sigmas(5, 1.0, 5.0, rho=1.0)[:-1], torch.tensor([5.0, 4, 3, 2, 1], dtype=torch.float64))
    flow = Flow()
    t = flow.time(flow.sampling_sigmas(4)[:-1])
    assert torch.allclose(t, torch.tensor([0.9999, 0.9999 * 3 / 4, 0.9999 / 2, 0.9999 / 4], dtype=torch.float64))


def test_training_noise_distributions():
    u = (torch.arange(20000, dtype=torch.float64) + 0.5) / 20000
    log_sigma = EDM(P_mean=-1.2, P_std=1.2).training_sigma(u).log()
    assert log_sigma.mean().item() == pytest.approx(-1.2, abs=1e-3)
    assert log_sigma.std().item() == pytest.approx(1.2, abs=2e-2)
    ve = VE(0.01, 50.0).training_sigma(u)
    assert ve.min() >= 0.01 and ve.max() <= 50.0 and ve.log().mean().item() == pytest.approx(math.log(math.sqrt(0.5)), abs=1e-3)
    discrete = VP("linear", 1000).training_sigma(u)
    assert set(discrete.unique().tolist()) == set(VP("linear", 1000).discrete_sigmas.tolist())


# --- parameterizations --------------------------------------------------------------------------
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_each_target_is_what_its_paper_says(prediction):
    """Given the true x_0, from_denoised gives the paper's regression target for x̂ = x_0 + σ ε."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(6, 3, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 2.0, 10.0, 80.0], dtype=torch.float64)
    s = sigma[:, None]
    x = x0 + s * eps
    alpha, sigma_vp = 1 / torch.sqrt(1 + s**2), s / torch.sqrt(1 + s**2)  # VP: x_t = α x_0 + σ_t ε
    pre = Preconditioning("edm", 0.5)
    expected = {
        "eps": eps,
        "x0": x0,
        "v": alpha * eps - sigma_vp * x0,  # Salimans & Ho 2022, sec. 4
        "velocity": eps - x0,  # rectified flow: d/dt[(1 − t) x_0 + t ε]
        "edm": (x0 - pre.c_skip(s) * x) / pre.c_out(s),  # EDM eq. 7
    }[prediction]
    target = from_denoised(prediction, x0, x, sigma)
    assert torch.allclose(target, expected, atol=1e-9)
    assert torch.allclose(to_denoised(prediction, target, x, sigma), x0, atol=1e-9)


def test_conversions_give_the_same_denoiser():
    """An ε-network, re-expressed as an x_0-, v-, velocity- or EDM-network, is the same denoiser."""
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(3, 3, generator=g, dtype=torch.float64)

    def eps_net(x, sigma):
        return torch.tanh(x @ weight) * torch.log1p(sigma)[:, None]

    x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 3
    sigma = torch.tensor([0.05, 0.5, 1.0, 5.0, 50.0], dtype=torch.float64)
    reference = to_denoised("eps", eps_net(x, sigma), x, sigma)
    for prediction in PREDICTIONS:
        output = from_denoised(prediction, reference, x, sigma)
        assert torch.allclose(to_denoised(prediction, output, x, sigma), reference, atol=1e-10), prediction
        for other in PREDICTIONS:  # target → target directly, through D
            converted = from_denoised(other, to_denoised(prediction, output, x, sigma), x, sigma)
            assert torch.allclose(to_denoised(other, converted, x, sigma), reference, atol=1e-10)


# --- samplers -----------------------------------------------------------------------------------
def _start(process, steps, n=4000, seed=0):
    sigmas = process.sampling_sigmas(steps)
    g = torch.Generator().manual_seed(seed)
    # Start from the exact marginal N(μ, s² + σ_0²), so only the solver's error remains.
    x = MU + torch.randn(n, 2, generator=g, dtype=torch.float64) * torch.sqrt(S**2 + sigmas[0] ** 2)
    return x, sigmas


@pytest.mark.parametrize("solver", ["euler", "heun", "ddim", "dpmpp-2m"])
@pytest.mark.parametrize("process", ["edm", "vp-linear", "flow"])
def test_deterministic_samplers_transport_gaussian_noise_exactly(solver, process):
    """The ODE's exact solution is x_0 = μ + (x̂_σ0 − μ) s/sqrt(s² + σ_0²): each solver converges to it
    at its order (doubling the steps divides the error by ≥ 1.7 for first order, ≥ 3 for second)."""
    steps = {"euler": 100, "ddim": 100, "heun": 60, "dpmpp-2m": 60}[solver]
    if process == "flow" and solver == "heun":
        steps = 120  # Heun in σ from t_max = 0.9999 (σ ≈ 10⁴): a huge first step needs a finer grid
    errors = []
    for n in (steps, 2 * steps):
        x, sigmas = _start(PROCESSES[process], n, n=500)
        out, _ = solve(solver, gaussian_denoiser, x, sigmas)
        exact = MU + (x - MU) * S / torch.sqrt(S**2 + sigmas[0] ** 2)
        errors.append((out - exact).abs().max().item())
    order = 1 if solver in ("euler", "ddim") else 2
    assert errors[1] < 0.06 and errors[1] < errors[0] / (1.7 if order == 1 else 3), errors


@pytest.mark.parametrize(
    "solver,options", [("ddpm", {}), ("ddim", {"eta": 0.5}), ("heun", {"s_churn": 20.0})], ids=["ddpm", "ddim-eta", "edm-churn"]
)
def test_stochastic_samplers_reproduce_the_gaussian(solver, options):
    process = PROCESSES["vp-linear"] if solver == "ddpm" else PROCESSES["edm"]
    steps = {"ddpm": 1000, "ddim": 320, "heun": 80}[solver]
    x, sigmas = _start(process, steps, n=20000, seed=1)
    out, nfe = solve(solver, gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(2), **options)
    # 20 000 draws: the standard errors of the mean and std are s/141 and s/200.
    assert torch.allclose(out.mean(0), MU, atol=4 * S.max().item() / 141)
    assert torch.allclose(out.std(0), S, rtol=0.03)
    assert nfe == nfe_of(solver, steps)


def test_ddim_with_eta_zero_is_deterministic_and_eta_one_is_ddpm():
    x, sigmas = _start(PROCESSES["vp-linear"], 20, n=50)
    a, _ = solve("ddim", gaussian_denoiser, x, sigmas, eta=0.0, generator=torch.Generator().manual_seed(0))
    b, _ = solve("ddim", gaussian_denoiser, x, sigmas, eta=0.0, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    c, _ = solve("ddim", gaussian_denoiser, x, sigmas, eta=1.0, generator=torch.Generator().manual_seed(3))
    d, _ = solve("ddpm", gaussian_denoiser, x, sigmas, generator=torch.Generator().manual_seed(3))
    assert torch.equal(c, d) and not torch.equal(a, c)
    euler, _ = solve("euler", gaussian_denoiser, x, sigmas)
    assert torch.allclose(a, euler, atol=1e-12)  # DDIM(η = 0) is Euler in the scaled frame


def test_ddpm_step_is_the_posterior_of_the_forward_process():
    """With the true x_0 as D, one η = 1 step from σ to σ' draws from q(x̂_σ' | x̂_σ, x_0):
    mean x_0 + (σ'²/σ²)(x̂_σ − x_0), variance σ'²(σ² − σ'²)/σ² (Ho et al. 2020, eq. 7 in the scaled frame)."""
    x0 = torch.zeros(200000, 1, dtype=torch.float64)
    x = torch.full_like(x0, 2.0)
    sigmas = torch.tensor([2.0, 1.0], dtype=torch.float64)
    out, _ = solve("ddpm", lambda x, s: torch.zeros_like(x), x, torch.cat([sigmas, sigmas.new_zeros(0)]),
                   generator=torch.Generator().manual_seed(0))
    assert out.mean().item() == pytest.approx(0.25 * 2.0, abs=0.01)
    assert out.var().item() == pytest.approx(1.0 * (4 - 1) / 4, rel=0.02)


@pytest.mark.parametrize("solver", list(SOLVERS))
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_nfe_matches_each_solvers_cost(solver, steps):
    calls = 0

    def counting(x, sigma):
        nonlocal calls
        calls += 1
        return gaussian_denoiser(x, sigma)

    x, sigmas = _start(PROCESSES["edm"], steps, n=4)
    _, nfe = solve(solver, counting, x, sigmas, s_churn=5.0, eta=0.3, generator=torch.Generator().manual_seed(0))
    assert nfe == calls == nfe_of(solver, steps)
    assert nfe_of("heun", steps) == 2 * steps - 1


def test_flow_matching_and_edm_share_the_sampler_code():
    """Euler over the shared contract is exactly rectified flow's Euler step x_{t'} = x_t + (t' − t) v̂ in x_t space."""
    flow = PROCESSES["flow"]
    sigmas = flow.sampling_sigmas(4)
    x, _ = _start(flow, 4, n=10)
    out, _ = solve("euler", gaussian_denoiser, x, sigmas)
    t = flow.time(sigmas)
    xt = x * flow.scale(t[0])
    for i in range(4):
        x_hat = xt / flow.scale(t[i])
        v = from_denoised("velocity", gaussian_denoiser(x_hat, sigmas[i]), x_hat, sigmas[i])
        xt = xt + (t[i + 1] - t[i]) * v
    assert torch.allclose(out, xt, atol=1e-10)


# --- likelihood ---------------------------------------------------------------------------------
def test_ode_likelihood_matches_the_gaussian_log_density():
    g = torch.Generator().manual_seed(0)
    x0 = MU + torch.randn(64, 2, generator=g, dtype=torch.float64) * S
    sigma_min = 1e-3
    exact = torch.distributions.Normal(MU, torch.sqrt(S**2 + sigma_min**2)).log_prob(x0).sum(1)
    for solver, steps in [("rk4", 160), ("heun", 1600)]:
        result = ode_log_likelihood(gaussian_denoiser, x0, sigma_min=sigma_min, sigma_max=1e4, steps=steps, solver=solver)
        # The prior N(0, σ_max²) ignores the data's μ and s² next to σ_max: an O(‖μ‖/σ_max) error.
        assert (result.log_prob - exact).abs().max() < 3e-3, (solver, (result.log_prob - exact).abs().max())
        assert torch.allclose(result.prior + result.divergence, result.log_prob)
    assert result.nfe == 3200


def test_hutchinson_trace_is_unbiased_and_its_ode_agrees_in_expectation():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 3, generator=g, dtype=torch.float64)

    def denoiser(x, sigma):  # a non-linear denoiser with a non-diagonal Jacobian
        return torch.tanh(x @ weight) / (1 + sigma)

    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    u = torch.tensor(0.3, dtype=torch.float64)
    _, exact = _drift_and_divergence(denoiser, x, u, None)
    probes = torch.randn(20000, 4, 3, generator=g, dtype=torch.float64)
    _, estimate = _drift_and_divergence(denoiser, x, u, probes)
    assert torch.allclose(estimate, exact, atol=0.05)
    # Whole solves: the mean of single-probe estimates over draws ≈ the exact-trace solve.
    x0 = MU + torch.randn(8, 2, generator=g, dtype=torch.float64) * S
    kwargs = dict(sigma_min=1e-3, sigma_max=50.0, steps=3, solver="heun")
    reference = ode_log_likelihood(gaussian_denoiser, x0, **kwargs).log_prob
    draws = torch.stack([
        ode_log_likelihood(gaussian_denoiser, x0, probes=torch.randn(1, 8, 2, generator=g, dtype=torch.float64), **kwargs).log_prob
        for _ in range(100)
    ])
    assert (draws.std(0) > 0.01).all()  # a real estimate, not the exact trace
    assert torch.allclose(draws.mean(0), reference, atol=4 * draws.std(0).max().item() / math.sqrt(100))


# --- models -------------------------------------------------------------------------------------
def _continuous_model(name, **config):
    spec = DataSpec("toy", (2,), None)
    model = create_model(name, spec, config or None)
    model.data_mean.copy_(torch.tensor([0.3, -1.0]))
    model.data_std.copy_(torch.tensor([2.0, 0.7]))  # Σ ln std ≠ 0
    return model


def test_model_likelihood_applies_the_standardization_jacobian(monkeypatch):
    """With the analytic denoiser for z ~ N(μ, s²) plugged in, the model's figure is the exact log-density of x."""
    model = _continuous_model("edm", sigma_max=1e4)
    monkeypatch.setattr(model, "denoise", lambda x, sigma, labels=None: gaussian_denoiser(x.double(), sigma.double()).to(x.dtype))
    z = (MU + torch.randn(16, 2, dtype=torch.float64) * S).float()
    x = z * model.data_std + model.data_mean
    exact = torch.distributions.Normal(MU.float() * model.data_std + model.data_mean, S.float() * model.data_std).log_prob(x).sum(1)
    (record,) = model.log_likelihoods(Batch(x), steps=160, solver="rk4")
    assert record.kind is LikelihoodKind.ESTIMATE and record.evaluations == 640 and record.samples is None
    assert torch.allclose(record.values, exact, atol=5e-3)
    assert torch.allclose(sum(record.terms.values()), record.values)


def test_dequantization_terms_and_a_figure_independent_of_the_batch_size():
    spec = DataSpec("d", (1, 4, 4), 17)
    torch.manual_seed(0)
    model = create_model("rectified-flow", spec).eval()
    x = torch.randint(0, 17, (6, 1, 4, 4))
    seeds = torch.arange(6)
    whole = model.log_likelihoods(Batch(x, seeds=seeds), steps=3, solver="heun")[0]
    halves = [model.log_likelihoods(Batch(x[i : i + 3], seeds=seeds[i : i + 3]), steps=3, solver="heun")[0] for i in (0, 3)]
    assert torch.allclose(whole.values, torch.cat([h.values for h in halves]), atol=1e-5)
    assert whole.samples == 1 and whole.evaluations == 6
    assert torch.allclose(whole.terms["dequantization"], torch.full((6,), 16 * (math.log(2) - math.log(17))))
    # With the exact trace (D = 4 ≤ 8) the one dequantization draw is the only randomness: seeds matter.
    small = create_model("rectified-flow", DataSpec("s", (1, 2, 2), 17)).eval()
    x = torch.randint(0, 17, (4, 1, 2, 2))
    first = small.log_likelihoods(Batch(x, seeds=torch.arange(4)), steps=2)[0]
    again = small.log_likelihoods(Batch(x, seeds=torch.arange(4)), steps=2)[0]
    other = small.log_likelihoods(Batch(x, seeds=torch.arange(4) + 10), steps=2)[0]
    assert first.samples is None and torch.equal(first.values, again.values)
    assert not torch.allclose(first.values, other.values)


def test_a_short_training_run_lowers_the_loss():
    from genmodels.data.toy2d import sample_toy

    torch.manual_seed(0)
    data = sample_toy("eight-gaussians", 2048, seed=0).float()
    model = create_model("edm", DataSpec("eight-gaussians", (2,), None), {"hidden": 64, "depth": 2})
    model.initialize([Batch(data)])

    def fixed_loss():
        torch.manual_seed(123)
        with torch.no_grad():
            return model.loss(Batch(data)).loss.item()

    before = fixed_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(150):
        batch = Batch(data[torch.randint(0, len(data), (256,))])
        optimizer.zero_grad()
        model.loss(batch, step=step).loss.backward()
        optimizer.step()
    after = fixed_loss()
    assert after < 0.85 * before, (before, after)


def test_class_conditioning_and_guidance():
    spec = DataSpec("d", (1, 8, 8), 17, 10)
    model = create_model("ddpm", spec, {"conditional": True, "channels": 8, "embedding": "scale-shift"})
    x, y = torch.randint(0, 17, (4, 1, 8, 8)), torch.tensor([0, 1, 2, 9])
    loss = model.loss(Batch(x, y))
    assert loss.terms["denoising"].shape == (4,)
    samples, info = model.sample_with_info(3, y=torch.tensor([1, 2, 3]), solver="ddim", steps=3, guidance=2.0)
    assert samples.shape == (3, 1, 8, 8) and samples.dtype == torch.int64
    assert info == {"nfe": 3, "solver": "ddim", "steps": 3, "guidance": 2.0, "clip": True}
    with pytest.raises(UserError, match="labels"):
        model.loss(Batch(x))
    with pytest.raises(UserError, match="class-conditional"):
        create_model("ddpm", spec).sample(2, guidance=1.0)
    with pytest.raises(UserError, match="no classes"):
        create_model("ddpm", DataSpec("u", (1, 8, 8), 17), {"conditional": True})


@pytest.mark.parametrize("name, default", [("ddpm", True), ("edm", False), ("rectified-flow", False)])
def test_clip_clamps_every_denoised_estimate_to_the_data_range(name, default, monkeypatch):
    """``clip`` wraps the denoiser the sampler sees in a clamp to [−1, 1] (Ho et al. 2020's x̂_0
    clipping), on by default for ε-prediction (ddpm) only; in-range estimates pass unchanged."""
    import genmodels.diffusion.model as diffusion_model

    model = create_model(name, DataSpec("d", (1, 4, 4), 17), {"channels": 8, "attention": False})
    seen = []

    def spy(solver, denoiser, x, sigmas, **kwargs):
        seen.append(denoiser)
        return x.clamp(-1, 1), 1

    monkeypatch.setattr(diffusion_model, "solve", spy)
    model.denoise = lambda x, sigma, labels=None: torch.linspace(-3.0, 3.0, x.numel()).reshape(x.shape)
    x, sigma = torch.zeros(2, 1, 4, 4), torch.tensor(1.0)
    raw = model.denoise(x, sigma)
    for clip in (None, True, False):
        _, info = model.sample_with_info(2, steps=1, clip=clip)
        applied = default if clip is None else clip
        assert info.get("clip", False) == applied
        expected = raw.clamp(-1, 1) if applied else raw
        torch.testing.assert_close(seen[-1](x, sigma), expected)


def test_sampling_options_and_info():
    model = _continuous_model("rectified-flow")
    samples, info = model.sample_with_info(7, steps=2, solver="heun", generator=torch.Generator().manual_seed(0))
    assert samples.shape == (7, 2) and samples.dtype == torch.float32
    assert info == {"nfe": 3, "solver": "heun", "steps": 2}
    assert create_model("ddpm", DataSpec("d", (1, 8, 8), 17)).sample_with_info(1, steps=2)[1]["solver"] == "ddpm"
    _, info = model.sample_with_info(3, steps=4, solver="heun", schedule="karras")
    assert info == {"nfe": 7, "solver": "heun", "steps": 4, "schedule": "karras"}
    with pytest.raises(UserError, match="unknown solver"):
        model.sample(2, solver="rk45")
    with pytest.raises(UserError, match="unknown schedule"):
        model.sample(2, schedule="cosine")


def test_denoising_loss_weighting_is_each_methods_target_mse():
    """λ(σ)‖D − x_0‖² is DDPM's ε-MSE, flow matching's velocity MSE and EDM's weighted x_0-MSE."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(16, 3, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64)
    u = torch.rand(16, generator=g, dtype=torch.float64)
    net_out = torch.randn(16, 3, generator=g, dtype=torch.float64)
    for process, prediction in [(VP("linear", 0), "eps"), (Flow(), "velocity"), (EDM(), "edm")]:
        sigma = process.training_sigma(u)
        target = from_denoised(prediction, x0, x0 + sigma[:, None] * eps, sigma)
        loss, _ = denoising_loss(lambda x, s: to_denoised(prediction, net_out, x, s), process, x0, u, eps)
        if prediction == "edm":  # λ c_out² = 1 (EDM sec. 5, "loss weighting")
            c_out = Preconditioning("edm").c_out(sigma)
            assert torch.allclose(process.loss_weight(sigma) * c_out**2, torch.ones_like(sigma))
        assert torch.allclose(loss, (net_out - target).pow(2).mean(1), rtol=1e-6)


# --- DDPM's variational bound -------------------------------------------------------------------
def _box_denoiser(x, sigma):
    """E[x_0 | x̂] for x_0 ~ U[−1, 1]^D: the mean of N(x̂, σ²) truncated to [−1, 1]."""
    x, s = x.double(), torch.as_tensor(sigma, dtype=torch.float64)
    s = s.reshape(-1, *([1] * (x.dim() - 1))) if s.dim() else s
    a, b = (-1 - x) / s, (1 - x) / s
    pdf = lambda z: torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)  # noqa: E731
    mass = (torch.special.ndtr(b) - torch.special.ndtr(a)).clamp_min(1e-300)
    return (x + s * (pdf(a) - pdf(b)) / mass).float()


def _point_mass_denoiser(x, sigma, levels=4):
    """E[x_0 | x̂] for x_0 uniform on the K bin centres c_k = 2(k + ½)/K − 1 (each dimension)."""
    x, s = x.double(), torch.as_tensor(sigma, dtype=torch.float64)
    s = s.reshape(-1, *([1] * (x.dim() - 1))) if s.dim() else s
    centres = 2 * (torch.arange(levels, dtype=torch.float64) + 0.5) / levels - 1
    weights = torch.softmax(-((x[..., None] - centres) ** 2) / (2 * s[..., None] ** 2), dim=-1)
    return (weights * centres).sum(-1).float()


def test_discretized_gaussian_decoder():
    from genmodels.diffusion.bound import _discretized_gaussian_log_prob

    g = torch.Generator().manual_seed(0)
    mean = torch.randn(2000, generator=g, dtype=torch.float64) * 0.7
    x = torch.randint(0, 4, (2000,), generator=g)
    lower = torch.where(x == 0, torch.full_like(mean, -math.inf), x.double() / 2 - 1)
    upper = torch.where(x == 3, torch.full_like(mean, math.inf), x.double() / 2 - 0.5)
    direct = torch.log(torch.special.ndtr((upper - mean) / 0.3) - torch.special.ndtr((lower - mean) / 0.3))
    ours = _discretized_gaussian_log_prob(x, mean, 0.3, 4)
    finite = direct > -30
    assert torch.allclose(ours[finite], direct[finite], atol=1e-9)
    # Far tails keep their precision: the top bin [0.5, ∞) under N(−2, 0.3²) is log Φ(−(0.5 + 2)/0.3).
    tail = _discretized_gaussian_log_prob(torch.tensor([3]), torch.tensor([-2.0], dtype=torch.float64), 0.3, 4)
    assert tail.item() == pytest.approx(torch.special.log_ndtr(torch.tensor(-2.5 / 0.3, dtype=torch.float64)).item(), rel=1e-9)
    # Probabilities of the 4 bins sum to 1.
    bins = torch.arange(4).repeat(5)
    means = torch.linspace(-1.5, 1.5, 5, dtype=torch.float64).repeat_interleave(4)
    total = _discretized_gaussian_log_prob(bins, means, 0.4, 4).exp().reshape(5, 4).sum(1)
    assert torch.allclose(total, torch.ones(5, dtype=torch.float64))


def test_ddpm_bound_is_tight_for_the_true_denoiser_and_below_the_ode_estimate():
    """Data uniform on K = 4 levels in D = 2 dimensions: log P(x) = −2 ln 4 for every x.

    With the exact denoiser of the discrete data (point masses at the bin centres), DDPM's bound is
    tight up to its T = 1000 discretization; with the exact denoiser of the dequantized data (uniform on
    [−1, 1]²), the ODE estimate is exact and the bound (which sees the data as bin centres) is looser."""
    spec = DataSpec("uniform", (1, 1, 2), 4)
    model = create_model("ddpm", spec).eval()
    x = torch.randint(0, 4, (200, 1, 1, 2), generator=torch.Generator().manual_seed(0))
    truth = -2 * math.log(4)
    model.denoise = lambda x, sigma, labels=None: _point_mass_denoiser(x, sigma)
    _, bound = model.log_likelihoods(Batch(x, seeds=torch.arange(200)), bound=True, steps=2)
    assert bound.kind is LikelihoodKind.BOUND and bound.evaluations == 1000 and bound.samples == 1
    assert set(bound.terms) == {"prior", "diffusion", "decoder"}
    assert torch.allclose(sum(bound.terms.values()), bound.values)
    standard_error = bound.values.std().item() / math.sqrt(200)
    assert truth - 0.1 < bound.values.mean().item() < truth + 3 * standard_error
    model.denoise = lambda x, sigma, labels=None: _box_denoiser(x, sigma)
    ode, bound = model.log_likelihoods(Batch(x, seeds=torch.arange(200)), bound=True, steps=32)
    assert ode.values.mean().item() == pytest.approx(truth, abs=0.02)
    assert bound.values.mean().item() < ode.values.mean().item()  # NLL: bound ≥ ODE estimate
    with pytest.raises(UserError, match="discrete-time"):
        create_model("ddpm", spec, {"timesteps": 0}).log_likelihoods(Batch(x[:2]), bound=True)


# --- reflow -------------------------------------------------------------------------------------
def test_reflow_pairs_and_straightness():
    from genmodels.diffusion.rectified_flow import reflow_loss, reflow_pairs, straightness

    model = _continuous_model("rectified-flow")
    model.denoise = lambda x, sigma, labels=None: gaussian_denoiser(x.double(), sigma.double()).float()
    noise, z0 = reflow_pairs(model, 2000, steps=200, generator=torch.Generator().manual_seed(0))
    # The ODE of Gaussian data maps ε to μ + s ε (the marginals' monotone map).
    assert torch.allclose(z0, (MU + S * noise.double()).float(), atol=0.05)
    # A point mass moves on straight lines at constant speed (S = 0); Gaussian data do not.
    curved = straightness(model, noise[:200], steps=100)
    model.denoise = lambda x, sigma, labels=None: MU.float().expand_as(x)
    straight = straightness(model, noise[:200], steps=100)
    assert straight.max() < 1e-6 and curved.mean() > 0.01
    loss = reflow_loss(create_model("rectified-flow", DataSpec("toy", (2,), None)), noise[:8], z0[:8])
    assert loss.shape == (8,) and torch.isfinite(loss).all()


# --- reflow through the trainer -------------------------------------------------------------------
def _toy_data(n=96):
    from genmodels.data.base import Dataset, Split

    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.5, 2.0]) + torch.tensor([1.0, 0.0])
    return Dataset(DataSpec("toy", (2,), None), Split(x[:64]), Split(x[64:80]), Split(x[80:]))


def _saved(model, path):
    from genmodels.checkpoint import save_checkpoint

    meta = {"model": model.name, "model_config": model.config.to_json(), "data": {"source": {}, "spec": model.spec.to_json()}}
    save_checkpoint(path, model_state=model.state_dict(), meta=meta)
    return path


def test_reflow_trains_the_teachers_weights_on_the_teachers_coupling(tmp_path):
    from genmodels.diffusion.rectified_flow import reflow_loss, reflow_pairs

    data, small = _toy_data(), {"hidden": 16, "depth": 2}
    torch.manual_seed(0)
    teacher = create_model("rectified-flow", data.spec, small)
    teacher.initialize([Batch(data.train.x)])
    run = _saved(teacher, tmp_path / "teacher")
    student = create_model("rectified-flow", data.spec, {**small, "reflow_from": str(run), "reflow_pairs": 40,
                                                         "reflow_steps": 4, "reflow_seed": 3})
    student.initialize([Batch(data.train.x * 3)])  # the teacher's weights and standardization win
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in student.state_dict().items())
    noise, z0, labels = student.coupling()
    want_noise, want_z0 = reflow_pairs(teacher, 40, steps=4, generator=torch.Generator().manual_seed(3))
    assert labels is None and torch.equal(noise, want_noise) and torch.equal(z0, want_z0)
    # The loss is the flow-matching loss on coupling rows drawn by the trainer's RNG, whatever the batch holds.
    torch.manual_seed(7)
    loss = student.loss(Batch(data.train.x[:8] + 100.0))
    torch.manual_seed(7)
    index = torch.randint(40, (8,))
    assert loss.loss.item() == pytest.approx(reflow_loss(student, noise[index], z0[index]).mean().item(), rel=1e-6)
    assert set(loss.terms) == {"reflow"} and loss.terms["reflow"].shape == (8,)


def test_reflow_through_train_reports_straightness(tmp_path):
    import json

    from genmodels.training import TrainConfig, train

    data, small = _toy_data(), {"hidden": 16, "depth": 2}
    config = TrainConfig(steps=6, eval_every=3, batch_size=16, num_samples=4, seed=0)
    teacher = train("rectified-flow", data, config, tmp_path / "teacher", model_config=small, progress=False)
    reflowed = train("rectified-flow", data, config, tmp_path / "reflow", progress=False,
                     model_config={**small, "reflow_from": str(teacher.run_dir), "reflow_pairs": 32, "reflow_steps": 4})
    for run in (teacher.run_dir, reflowed.run_dir):
        figures = {f["name"]: f for f in json.loads((run / "results.json").read_text())["test_figures"]}
        assert figures["straightness"]["examples"] == 16 and figures["straightness"]["mean"] > 0
    metrics = (reflowed.run_dir / "metrics.csv").read_text()
    assert "reflow" in metrics and "straightness" in metrics


def test_straightness_figure_is_zero_for_straight_paths():
    model = _continuous_model("rectified-flow")
    x = torch.zeros(50, 2)
    model.denoise = lambda x, sigma, labels=None: MU.float().expand_as(x)  # a point mass: straight lines
    assert model.evaluation_figures(Batch(x, seeds=torch.arange(50)))["straightness"].max() < 1e-6
    model.denoise = lambda x, sigma, labels=None: gaussian_denoiser(x.double(), sigma.double()).float()
    assert model.evaluation_figures(Batch(x, seeds=torch.arange(50)))["straightness"].mean() > 0.01


def test_reflow_refuses_a_missing_or_different_teacher(tmp_path):
    spec = DataSpec("d", (1, 8, 8), 17, 10)
    tiny = {"channels": 8, "channel_mults": [1], "attention": False, "embedding": "scale-shift"}
    missing = create_model("rectified-flow", spec, {**tiny, "reflow_from": str(tmp_path / "nowhere")})
    with pytest.raises(UserError, match="does not exist"):
        missing.initialize([])
    teacher = _saved(create_model("rectified-flow", spec, tiny), tmp_path / "teacher")
    wider = create_model("rectified-flow", spec, {**tiny, "channels": 16, "reflow_from": str(teacher)})
    with pytest.raises(UserError, match=r"another network; give the teacher's options \(channels=8\)"):
        wider.initialize([])
    ddpm = _saved(create_model("ddpm", spec, tiny), tmp_path / "ddpm")
    with pytest.raises(UserError, match="is a 'ddpm' run; reflow needs a 'rectified-flow' run"):
        create_model("rectified-flow", spec, {**tiny, "reflow_from": str(ddpm)}).initialize([])
    with pytest.raises(UserError, match="reflow_pairs"):
        create_model("rectified-flow", spec, {"reflow_pairs": 0})


def test_reflow_of_a_conditional_teacher_draws_labels_and_uses_them(tmp_path):
    from genmodels.diffusion.rectified_flow import reflow_pairs

    spec = DataSpec("d", (1, 8, 8), 17, 10)
    tiny = {"channels": 16, "channel_mults": [1], "attention": False, "conditional": True}
    torch.manual_seed(0)
    teacher = create_model("rectified-flow", spec, tiny)
    with torch.no_grad():
        for parameter in teacher.parameters():  # zero-initialized layers would hide the labels
            parameter.add_(0.1 * torch.randn_like(parameter))
    run = _saved(teacher, tmp_path / "teacher")
    student = create_model("rectified-flow", spec, {**tiny, "reflow_from": str(run), "reflow_pairs": 12, "reflow_steps": 2})
    noise, z0, labels = student.coupling()
    generator = torch.Generator().manual_seed(0)
    want_labels = torch.randint(10, (12,), generator=generator)
    want_noise, want_z0 = reflow_pairs(teacher.eval(), 12, steps=2, y=want_labels, generator=generator)
    assert torch.equal(labels, want_labels) and torch.equal(noise, want_noise) and torch.allclose(z0, want_z0)
    generator = torch.Generator().manual_seed(0)
    torch.randint(10, (12,), generator=generator)
    _, unlabelled = reflow_pairs(teacher, 12, steps=2, generator=generator)  # the same noise, no labels
    assert not torch.allclose(z0, unlabelled, atol=1e-3)
    assert torch.isfinite(student.loss(Batch(torch.zeros(4, 1, 8, 8, dtype=torch.int64))).loss)


# --- the U-Net's embedding -------------------------------------------------------------------------
def test_unet_block_embedding_add_and_scale_shift_formulas():
    import torch.nn.functional as F

    from genmodels.nn.unet import ResBlock

    torch.manual_seed(0)
    x, emb = torch.randn(3, 16, 4, 4), torch.randn(3, 12)
    for embedding in ("add", "scale-shift"):
        block = ResBlock(16, 16, 12, 0.0, embedding)
        h = block.conv1(F.silu(block.norm1(x)))
        e = block.emb(F.silu(emb))[:, :, None, None]
        if embedding == "add":
            h = block.norm2(h + e)
        else:
            h = block.norm2(h) * (1 + e[:, :16]) + e[:, 16:]
        assert torch.allclose(block(x, emb), x + block.conv2(F.silu(h)), atol=1e-5)
    # With one channel per norm group, an added embedding is subtracted again; scale-shift survives.
    one_per_group = {e: ResBlock(8, 8, 12, 0.0, e) for e in ("add", "scale-shift")}
    x8 = torch.randn(3, 8, 4, 4)
    assert torch.allclose(one_per_group["add"](x8, emb), one_per_group["add"](x8, 3 * emb), atol=1e-5)
    assert not torch.allclose(one_per_group["scale-shift"](x8, emb), one_per_group["scale-shift"](x8, 3 * emb), atol=1e-3)


def test_a_unet_whose_added_embedding_would_be_erased_warns():
    import warnings

    spec = DataSpec("d", (1, 8, 8), 17)
    with pytest.warns(UserWarning, match=r"erased by the one-channel norm groups at width 8; use embedding=scale-shift"):
        create_model("rectified-flow", spec, {"channels": 8})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_model("rectified-flow", spec, {"channels": 8, "embedding": "scale-shift"})
        create_model("rectified-flow", spec, {"channels": 16})
    with pytest.raises(UserError, match="embedding must be one of add, scale-shift"):
        create_model("rectified-flow", spec, {"embedding": "film"})
