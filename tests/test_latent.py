"""Exactness tests of the latent-variable family (vae, iwae, discrete-vae).

Tiny models whose log p(x) is computable: a discrete latent with 3 states (p(x) = Σ_z p(z) p(x|z))
and a 1-D Gaussian latent (p(x) = ∫ N(z; 0, 1) p(x|z) dz by quadrature), over binary (1, 2, 5) data
whose 1 024 configurations are enumerated to check that p(x) sums to 1.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from genmodels.core import Batch, LikelihoodKind, create_model
from genmodels.data import DataSpec, load_dataset
from genmodels.data.base import Split
from genmodels.errors import UserError
from genmodels.evaluate import evaluate_likelihood
from genmodels.latent.base import SAMPLE_CHUNK
from genmodels.latent.networks import decoder_level_log_probs, decoder_log_prob, discretized_logistic_log_probs

BINARY = DataSpec("b", (1, 2, 5), 2)
DIGITS = DataSpec("d", (1, 8, 8), 17, 10)


def _all_binary():
    return torch.tensor(list(itertools.product(range(2), repeat=10))).reshape(-1, 1, 2, 5)


def _perturbed(model, scale=0.5, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def _records(model, x, k, **kw):
    torch.manual_seed(kw.pop("seed", 0))
    elbo, iwae = model.log_likelihoods(Batch(x), k=k)
    return elbo, iwae


# --- a 3-state discrete latent: log p(x) by summation -----------------------------------------------
@pytest.fixture(scope="module")
def three_state():
    torch.manual_seed(0)
    model = _perturbed(create_model("discrete-vae", BINARY, {"variables": 1, "classes": 3, "hidden": (16,)}), 0.3)
    x = _all_binary()
    with torch.no_grad():
        z = torch.eye(3)  # the 3 one-hot latents
        log_px_z = torch.stack([model.log_px_given_z(z[i].expand(len(x), 3), x) for i in range(3)], 1)  # (1024, 3)
        log_joint = log_px_z - math.log(3)
        exact = torch.logsumexp(log_joint.double(), 1)  # log p(x) = log Σ_z p(z) p(x|z)
        log_q = model.encode(x)[:, 0, :].double()  # (1024, 3)
        exact_elbo = (log_q.exp() * (log_joint.double() - log_q)).sum(1)
    return model, x, exact, exact_elbo


def test_discrete_latent_model_normalizes_over_all_1024_configurations(three_state):
    _, _, exact, _ = three_state
    assert float(torch.logsumexp(exact, 0).exp()) == pytest.approx(1.0, abs=1e-5)


def test_elbo_is_below_log_p_and_its_record_estimates_the_exact_elbo(three_state):
    model, x, exact, exact_elbo = three_state
    assert (exact_elbo <= exact + 1e-9).all()
    assert (exact - exact_elbo).mean() > 0.05  # a real gap: the test is not vacuous
    elbo, _ = _records(model, x, k=50)
    assert elbo.kind is LikelihoodKind.BOUND and elbo.samples == 50
    # the recorded ELBO averages log p(x|z) over k draws and uses the closed-form KL: unbiased
    error = elbo.values.double() - exact_elbo
    assert float(error.mean().abs()) < 4 * float(error.std()) / math.sqrt(len(error)) + 1e-6
    assert float(error.abs().mean()) < 0.1


def test_iwae_rises_with_k_towards_the_exact_log_p(three_state):
    model, x, exact, exact_elbo = three_state
    means, errors = [], []
    for k in (1, 4, 32, 1000):
        elbo, iwae = _records(model, x, k=k, seed=k)
        assert iwae.kind is LikelihoodKind.ESTIMATE and iwae.samples == k
        if k > 1:  # ELBO ≤ IWAE_k (at k = 1 they are equal in expectation)
            assert float(elbo.values.mean()) < float(iwae.values.mean())
        means.append(float(iwae.values.double().mean()))
        errors.append(float((iwae.values.double() - exact).abs().mean()))
    # rises with k in expectation (at k = 32 the remaining gap is within the Monte Carlo noise)
    assert means[:3] == sorted(means[:3]) and means[3] > means[2] - 0.01, means
    assert means[-1] <= float(exact.mean()) + 1e-3
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 0.05
    assert means[0] == pytest.approx(float(exact_elbo.mean()), abs=0.05)  # L_1 is the ELBO


# --- a 1-D Gaussian latent: log p(x) by quadrature -------------------------------------------------
def test_gaussian_latent_bounds_against_quadrature():
    model = _perturbed(create_model("vae", BINARY, {"latent_dim": 1, "hidden": (16,)}), 0.3)
    x = _all_binary()
    z = torch.linspace(-12, 12, 40_001, dtype=torch.float64)
    with torch.no_grad():
        log_p_levels = decoder_level_log_probs(model.decode(z.float()[:, None]), "bernoulli", 2).double()  # (G, 10, 2)
        one_hot = F.one_hot(x.reshape(len(x), -1), 2).double()  # (1024, 10, 2)
        log_px_z = torch.einsum("ndk,gdk->ng", one_hot, log_p_levels)  # (1024, G)
        log_prior = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        dz = float(z[1] - z[0])
        exact = torch.logsumexp(log_px_z + log_prior, 1) + math.log(dz)  # ∫ p(z) p(x|z) dz (Riemann sum)
    assert float(torch.logsumexp(exact, 0).exp()) == pytest.approx(1.0, abs=1e-6)
    means, errors = [], []
    for k in (1, 10, 1000):
        elbo, iwae = _records(model, x, k=k, seed=k)
        means.append(float(iwae.values.double().mean()))
        errors.append(float((iwae.values.double() - exact).abs().mean()))
        assert float(elbo.values.double().mean()) <= float(exact.mean())
    assert means == sorted(means) and means[-1] <= float(exact.mean()) + 1e-3, (means, float(exact.mean()))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.05, errors


# --- terms, KL, decoders ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["vae", "iwae", "discrete-vae"])
def test_elbo_terms_sum_to_the_value_and_kl_is_the_closed_form(name):
    model = _perturbed(create_model(name, DIGITS))
    x = torch.randint(0, 17, (12, 1, 8, 8))
    elbo, iwae = _records(model, x, k=32)
    assert set(elbo.terms) == {"reconstruction", "neg_kl"}
    assert torch.allclose(elbo.terms["reconstruction"] + elbo.terms["neg_kl"], elbo.values)
    assert (elbo.terms["reconstruction"] < 0).all() and (elbo.terms["neg_kl"] <= 1e-6).all()
    with torch.no_grad():
        q = model.encode(x)
        if name == "discrete-vae":
            dist = torch.distributions.Categorical(logits=q)
            prior = torch.distributions.Categorical(logits=torch.zeros_like(q))
        else:
            dist = torch.distributions.Normal(q[0], q[1].exp())
            prior = torch.distributions.Normal(torch.zeros_like(q[0]), torch.ones_like(q[1]))
        expected = torch.distributions.kl_divergence(dist, prior).sum(1)
    assert torch.allclose(-elbo.terms["neg_kl"], expected, atol=1e-5)


@pytest.mark.parametrize("likelihood", ["categorical", "logistic"])
def test_decoder_distributions_normalize_over_the_levels(likelihood):
    params = torch.randn(7, 64 * (17 if likelihood == "categorical" else 2)) * 3
    log_p = decoder_level_log_probs(params, likelihood, 17)  # (7, 64, 17)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(7, 64), atol=1e-5)


def test_discretized_logistic_matches_cdf_differences():
    mu, log_s = torch.tensor([3.2, 0.1, 15.7]), torch.tensor([0.0, -1.0, 0.5])
    got = discretized_logistic_log_probs(mu.double(), log_s.double(), 17).exp()
    edges = torch.arange(17, dtype=torch.float64)[:-1] + 0.5  # between levels
    cdf = torch.sigmoid((edges - mu.double()[:, None]) / log_s.double().exp()[:, None])
    expected = torch.diff(cdf, dim=1, prepend=torch.zeros(3, 1, dtype=torch.float64),
                          append=torch.ones(3, 1, dtype=torch.float64))
    assert torch.allclose(got, expected, atol=1e-10)


@pytest.mark.parametrize("likelihood", ["categorical", "logistic"])
def test_decoder_log_prob_of_the_observed_level_equals_the_full_table_gathered(likelihood):
    # The logistic decoder evaluates only the observed level (O(D), not O(D·K)); it must agree with
    # the full table at every level, edges 0 and K−1 included.
    torch.manual_seed(0)
    params = torch.randn(6, 64 * (17 if likelihood == "categorical" else 2), dtype=torch.float64) * 2
    x = torch.randint(0, 17, (6, 64))
    x[0], x[1] = 0, 16
    table = decoder_level_log_probs(params, likelihood, 17)
    expected = table.gather(2, x.unsqueeze(2)).squeeze(2).sum(1)
    assert torch.allclose(decoder_log_prob(params, x, likelihood, 17), expected, atol=1e-10)


def test_gaussian_latent_model_with_logistic_decoder_normalizes_over_levels():
    spec = DataSpec("t", (3,), 3)
    model = _perturbed(create_model("vae", spec, {"likelihood": "logistic", "latent_dim": 2, "hidden": (8,)}))
    x = torch.tensor(list(itertools.product(range(3), repeat=3)))
    with torch.no_grad():
        z = torch.randn(5, 2)
        for zi in z:
            total = torch.logsumexp(model.log_px_given_z(zi.expand(27, 2), x), 0)
            assert float(total.exp()) == pytest.approx(1.0, abs=1e-5)


# --- evaluation is independent of the batch size ------------------------------------------------------
@pytest.mark.parametrize("name", ["vae", "iwae", "discrete-vae"])
@pytest.mark.parametrize("k", [16, 2 * SAMPLE_CHUNK + 7])
def test_evaluation_figures_do_not_depend_on_the_batch_size(name, k):
    model = _perturbed(create_model(name, BINARY, {"hidden": (16,)}))
    split = Split(torch.randint(0, 2, (23, 1, 2, 5), generator=torch.Generator().manual_seed(0)))
    small = evaluate_likelihood(model, split, batch_size=5, options={"k": k})
    large = evaluate_likelihood(model, split, batch_size=23, options={"k": k})
    assert [r.measure for r in small] == ["elbo", "iwae"]
    # Equal up to float32 rounding (a multi-threaded matmul sums in an order that depends on the batch):
    # 1e-4 nats on a figure of ~500, where drawing the noise per batch would move it by nats.
    for a, b in zip(small, large):
        assert a.samples == k
        assert a.nll_nats == pytest.approx(b.nll_nats, abs=1e-4)
        assert a.terms_nats == pytest.approx(b.terms_nats, abs=1e-4)


# --- training, options, sampling -------------------------------------------------------------------
TRAIN_CASES = [
    ("vae", {}),
    ("vae", {"architecture": "conv", "channels": (8,), "hidden": (32,)}),
    ("iwae", {"k": 4}),
    ("discrete-vae", {"estimator": "gumbel-softmax"}),
    ("discrete-vae", {"estimator": "straight-through"}),
    ("discrete-vae", {"estimator": "reinforce"}),
    ("discrete-vae", {"estimator": "vimco", "k": 4}),
]


@pytest.fixture(scope="module")
def binary_digits():
    return load_dataset("binary-digits")


@pytest.mark.parametrize("name,config", TRAIN_CASES, ids=[f"{n}-{c.get('estimator', c.get('architecture', ''))}" for n, c in TRAIN_CASES])
def test_a_short_training_run_improves_the_elbo(binary_digits, name, config):
    torch.manual_seed(0)
    model = create_model(name, binary_digits.spec, config)
    train = binary_digits.split("train").x
    held = Batch(binary_digits.split("validation").x[:128])

    def elbo():
        torch.manual_seed(1)
        return float(model.log_likelihoods(held, k=8)[0].values.mean())

    before = elbo()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    g = torch.Generator().manual_seed(0)
    for step in range(60):
        index = torch.randint(0, len(train), (64,), generator=g)
        loss = model(Batch(train[index]), step=step).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    after = elbo()
    assert after > before + 3.0, (before, after)


def test_kl_warmup_and_free_bits_shape_the_training_loss():
    model = create_model("vae", DIGITS, {"warmup_steps": 100, "beta": 2.0})
    assert [model.kl_weight(s) for s in (0, 50, 100, 500)] == [0.0, 1.0, 2.0, 2.0]
    x = torch.randint(0, 17, (16, 1, 8, 8))
    torch.manual_seed(0)
    out = model.loss(Batch(x), step=0)
    out.terms = {k: v.detach() for k, v in out.terms.items()}
    assert float(out.loss.detach()) == pytest.approx(-float(out.terms["reconstruction"].mean()), rel=1e-6)  # β_0 = 0

    _perturbed(model, 0.1)
    with torch.no_grad():
        mu, log_sigma = model.encode(x)
        per_example = 0.5 * (mu**2 + (2 * log_sigma).exp() - 1) - log_sigma  # (B, L)
    lam = float(per_example.median())  # λ between the per-example values: a per-example clamp differs
    expected_kl = float(per_example.mean(0).clamp_min(lam).sum())  # IAF: Σ_j max(λ, E_batch KL_j)
    assert abs(expected_kl - float(per_example.clamp_min(lam).sum(1).mean())) > 1e-2
    fb = create_model("vae", DIGITS, {"free_bits": lam})
    fb.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    out = fb.loss(Batch(x), step=0)
    out.terms = {k: v.detach() for k, v in out.terms.items()}
    expected = -float(out.terms["reconstruction"].mean()) + expected_kl
    assert float(out.loss.detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", ["vae", "iwae"])
def test_hubness_guided_sampling_keeps_the_hubs_of_the_models_own_prior_draws(name):
    """``hubness=true`` reaches the Gaussian-latent models: the kept latents are the highest
    k-occurrence rows among ``candidates`` draws of the tempered prior (the same draws a plain
    sample would start from), so they lie nearer the mode than the candidates on average."""
    from genmodels.latent.hubness import k_occurrence

    model = create_model(name, DIGITS, {"latent_dim": 8})
    candidates = model.sample_latents(600, generator=torch.Generator().manual_seed(3), temperature=0.5)
    kept = model.sample_latents(30, generator=torch.Generator().manual_seed(3), temperature=0.5,
                                hubness=True, candidates=600, k=10)
    index = [int((candidates == row).all(1).nonzero()[0]) for row in kept]  # each kept row is a candidate
    counts = k_occurrence(candidates, 10)
    assert counts[index].min() >= counts.float().quantile(0.9)  # 30 of 600: the top 5 %
    assert kept.norm(dim=1).mean() < candidates.norm(dim=1).mean()
    x = model.sample(4, generator=torch.Generator().manual_seed(0), hubness=True, candidates=100, k=5)
    assert x.shape == (4, 1, 8, 8) and x.dtype == torch.int64
    with pytest.raises(UserError, match="candidates"):
        model.sample(5, hubness=True, candidates=5)


def test_sampling_temperature_scales_the_prior_and_samples_are_levels():
    model = create_model("vae", DIGITS, {"latent_dim": 4})
    z = model.sample_latents(20_000, generator=torch.Generator().manual_seed(0), temperature=0.5)
    assert z.std().item() == pytest.approx(0.5, rel=0.03)
    x = model.sample(6, generator=torch.Generator().manual_seed(0), temperature=0.7)
    assert x.shape == (6, 1, 8, 8) and x.dtype == torch.int64 and 0 <= x.min() and x.max() <= 16
    same = model.sample(6, generator=torch.Generator().manual_seed(0), temperature=0.7)
    assert torch.equal(x, same)
    with pytest.raises(UserError):
        model.sample(2, temperature=0.0)
    d = create_model("discrete-vae", DIGITS, {"variables": 3, "classes": 4})
    z = d.sample_latents(40_000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (40_000, 12) and torch.equal(z.reshape(-1, 3, 4).sum(-1), torch.ones(40_000, 3))
    assert torch.allclose(z.mean(0), torch.full((12,), 0.25), atol=0.01)  # the uniform prior


def test_decoder_samples_follow_the_decoder_distribution():
    model = _perturbed(create_model("vae", DataSpec("t", (2,), 3), {"latent_dim": 1, "hidden": (8,), "likelihood": "logistic"}))
    z = torch.full((50_000, 1), 0.3)
    x = model.sample_from_latents(z, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = decoder_level_log_probs(model.decode(z[:1]), "logistic", 3).exp()[0]  # (2, 3)
    for d in range(2):
        freq = x[:, d].bincount(minlength=3).double() / len(x)
        assert torch.allclose(freq, probs[d].double(), atol=0.01)


def test_conditional_models_read_labels():
    for name in ("vae", "discrete-vae"):
        model = create_model(name, DIGITS, {"conditional": True})
        assert model.conditional
        x, y = torch.randint(0, 17, (4, 1, 8, 8)), torch.tensor([0, 3, 9, 1])
        assert torch.isfinite(model(Batch(x, y)).loss)
        assert len(model.log_likelihoods(Batch(x, y), k=4)) == 2
        assert model.sample(3, y=torch.tensor(5), generator=torch.Generator().manual_seed(0)).shape == (3, 1, 8, 8)
        assert model.sample(3, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 8, 8)
        with pytest.raises(UserError):
            model.log_likelihoods(Batch(x), k=4)
    with pytest.raises(UserError):
        create_model("vae", BINARY, {"conditional": True})


def test_bad_configurations_are_clear_user_errors():
    with pytest.raises(UserError, match="conv"):
        create_model("vae", DataSpec("v", (64,), 17), {"architecture": "conv"})
    with pytest.raises(UserError, match="bernoulli"):
        create_model("vae", DIGITS, {"likelihood": "bernoulli"})
    with pytest.raises(UserError, match="estimator"):
        create_model("discrete-vae", DIGITS, {"estimator": "magic"})
    with pytest.raises(UserError, match="k"):
        create_model("discrete-vae", DIGITS, {"estimator": "vimco", "k": 1})
    with pytest.raises(UserError, match="beta"):
        create_model("iwae", DIGITS, {"beta": 0.5})
    with pytest.raises(UserError, match="mse|likelihood"):
        create_model("vae", DIGITS, {"likelihood": "mse"})


def test_conv_networks_fit_mnist_sized_images():
    spec = DataSpec("f", (1, 28, 28), 256)
    model = create_model("vae", spec, {"architecture": "conv", "likelihood": "logistic", "latent_dim": 8})
    x = torch.randint(0, 256, (2, 1, 28, 28))
    assert torch.isfinite(model(Batch(x)).loss)
    assert model.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 28, 28)


@pytest.mark.parametrize("name,config", [("iwae", {"k": 7}), ("discrete-vae", {"estimator": "vimco", "k": 7})])
def test_multi_sample_training_objective_is_the_recorded_k_sample_bound(name, config):
    """With the same noise, the training loss is −mean log (1/k) Σ w_i, the IWAE record's value."""
    model = _perturbed(create_model(name, DIGITS, config))
    x = torch.randint(0, 17, (9, 1, 8, 8))
    torch.manual_seed(3)
    loss = float(model.loss(Batch(x)).loss.detach())
    torch.manual_seed(3)
    _, iwae = model.log_likelihoods(Batch(x), k=7)
    assert loss == pytest.approx(-float(iwae.values.mean()), rel=1e-5)


def _exact_objective_gradient(model, x, k=None):
    """∇ of the exact objective of a 1-variable discrete-vae by summing over the latent states:
    the ELBO Σ_z q(z|x) log p(x|z) − KL (k None) or the k-sample bound over all C^k tuples."""
    model.zero_grad()
    log_q = model.encode(x)[0, 0]  # (C,)
    classes = log_q.shape[0]
    log_px = model.log_px_given_z(torch.eye(classes), x.expand(classes, *x.shape[1:]))  # (C,)
    if k is None:
        objective = (log_q.exp() * log_px).sum() - model.kl(log_q.reshape(1, 1, -1)).sum()
    else:
        tuples = torch.tensor(list(itertools.product(range(classes), repeat=k)))
        log_w = log_px[tuples] + model.log_prior() - log_q[tuples]
        objective = (log_q[tuples].sum(1).exp() * (torch.logsumexp(log_w, 1) - math.log(k))).sum()
    (-objective).backward()
    return torch.cat([p.grad.flatten() for n, p in model.named_parameters() if not n.startswith("baseline")])


def _loss_gradients(model, x, batches, size):
    grads = []
    for b in range(batches):
        torch.manual_seed(100 + b)
        model.zero_grad()
        model.loss(Batch(x.expand(size, *x.shape[1:]))).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for n, p in model.named_parameters() if not n.startswith("baseline")]))
    return torch.stack(grads)


@pytest.mark.parametrize("estimator,k", [("reinforce", None), ("vimco", 3)])
def test_model_level_score_function_gradients_are_unbiased(estimator, k):
    """The discrete-vae's loss gradient, averaged over draws, is the exact gradient of its objective
    (REINFORCE: the ELBO; VIMCO: the k-sample bound); the Gumbel-softmax gradient is not (control)."""
    config = {"variables": 1, "classes": 3, "hidden": (8,), "estimator": estimator, **({"k": k} if k else {})}
    torch.manual_seed(0)
    model = _perturbed(create_model("discrete-vae", BINARY, config), 0.5)
    model.eval()  # the moving-average baseline stays fixed
    x = torch.tensor([[[[1, 0, 1, 1, 0], [0, 0, 1, 0, 1]]]])
    exact = _exact_objective_gradient(model, x, k)
    estimates = _loss_gradients(model, x, batches=40, size=2000)
    mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(len(estimates))
    assert ((mean - exact).abs() <= 4.5 * stderr + 1e-6).all(), float(((mean - exact).abs() / stderr).max())
    if estimator == "reinforce":  # control: the relaxed estimator of the same ELBO is biased
        relaxed = create_model("discrete-vae", BINARY, {**config, "estimator": "gumbel-softmax"})
        relaxed.load_state_dict({n: v for n, v in model.state_dict().items() if not n.startswith(("baseline", "moving"))})
        estimates = _loss_gradients(relaxed.eval(), x, batches=40, size=2000)
        mean, stderr = estimates.mean(0), estimates.std(0) / math.sqrt(len(estimates))
        assert ((mean - exact).abs() > 4.5 * stderr).any()


@pytest.mark.parametrize("activation, module", [("gelu", torch.nn.GELU), ("relu", torch.nn.ReLU), ("tanh", torch.nn.Tanh)])
def test_the_mlp_activation_option_reaches_encoder_and_decoder(activation, module):
    model = create_model("vae", DIGITS, {"latent_dim": 2, "hidden": [8, 8], "activation": activation})
    for net in (model.encoder.net, model.decoder.net):
        kinds = {type(m) for m in net.modules() if not isinstance(m, (torch.nn.Sequential, torch.nn.Linear))}
        assert kinds == {module}
    with pytest.raises(UserError, match="activation"):
        create_model("vae", DIGITS, {"activation": "swish"})


@pytest.mark.parametrize("name", ["vae", "iwae", "discrete-vae"])
def test_dropout_acts_in_training_only_and_changes_no_parameter(name):
    """``dropout`` (hidden units of both MLPs) and ``input_dropout`` (the encoder's input): no new
    parameters or state-dict names; in training mode two forward passes differ; in eval mode the
    records equal those of the same weights without dropout, exactly."""
    plain = create_model(name, DIGITS, {"hidden": [16, 16]})
    dropped = create_model(name, DIGITS, {"hidden": [16, 16], "dropout": 0.5, "input_dropout": 0.3})
    assert list(plain.state_dict()) == list(dropped.state_dict())
    dropped.load_state_dict(plain.state_dict())
    for net in (dropped.encoder.net, dropped.decoder.net):  # after each hidden activation, not the output
        slots = [m for m in net if not isinstance(m, torch.nn.Linear)]
        assert [(type(slot[0]), len(slot)) for slot in slots] == [(torch.nn.GELU, 2)] * 2
        assert all(isinstance(slot[1], torch.nn.Dropout) and slot[1].p == 0.5 for slot in slots)
        assert isinstance(net[-1], torch.nn.Linear)
    assert dropped.encoder.input_dropout.p == 0.3
    torch.manual_seed(0)
    x = torch.randint(0, 17, (6, 1, 8, 8))
    z = torch.randn(6, plain.decoder.net[0].in_features)
    dropped.train()
    assert not torch.equal(dropped.encoder(x), dropped.encoder(x))
    assert not torch.equal(dropped.decoder(z), dropped.decoder(z))
    plain.eval(), dropped.eval()
    assert torch.equal(dropped.encoder(x), plain.encoder(x)) and torch.equal(dropped.decoder(z), plain.decoder(z))
    records = [m.log_likelihoods(Batch(x, seeds=torch.arange(6)), k=8) for m in (plain, dropped)]
    for a, b in zip(*records):
        assert torch.equal(a.values, b.values)


def test_input_dropout_corrupts_the_encoder_input_only():
    """Input dropout reaches q(z | x) (the encoder sees x with pixels zeroed, scaled 1/(1 − p)) while
    the training loss still scores the decoder on the clean x."""
    model = create_model("vae", BINARY, {"latent_dim": 2, "hidden": [8], "input_dropout": 0.5}).train()
    seen = []
    model.encoder.net.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].clone()))
    x = torch.ones(400, 1, 2, 5, dtype=torch.int64)
    with torch.no_grad():  # a decoder that ignores z: log p(x | z) = Σ_d log σ(b_d) for the clean x = 1
        model.decoder.net[0].weight.zero_()
    torch.manual_seed(0)
    loss = model.loss(Batch(x))
    assert set(seen[0].unique().tolist()) == {0.0, 2.0} and abs(seen[0].eq(0).float().mean().item() - 0.5) < 0.05
    clean = decoder_log_prob(model.decode(torch.zeros(1, 2)), x[:1], "bernoulli", 2)
    assert torch.allclose(loss.terms["reconstruction"], clean.expand(400))
    model.eval()
    model.encode(x)
    assert torch.equal(seen[-1], torch.ones(400, 10))


@pytest.mark.parametrize("config, match", [({"dropout": 1.0}, "dropout"), ({"dropout": -0.1}, "dropout"),
                                           ({"input_dropout": 1.5}, "input_dropout"),
                                           ({"architecture": "conv", "dropout": 0.2}, "architecture=mlp")])
def test_bad_dropout_settings_are_refused(config, match):
    with pytest.raises(UserError, match=match):
        create_model("vae", DIGITS, config)


@pytest.mark.parametrize("spec", [BINARY, DIGITS], ids=["bernoulli", "categorical"])
def test_marginal_init_starts_the_decoder_at_the_independent_fit(spec):
    """With ``marginal_init`` and the last layer's weights zeroed, p(x | z) is exactly the
    ``independent`` model fitted to the same batches (add-½ marginals), for any z."""
    torch.manual_seed(0)
    x = torch.randint(0, spec.levels, (40, *spec.shape))
    x[:, 0, 0, 0] = 0  # a skewed dimension: the marginals differ between dimensions
    batches = [Batch(x[:25]), Batch(x[25:])]
    model = create_model("vae", spec, {"latent_dim": 3, "hidden": [8], "marginal_init": True})
    model.initialize(batches)
    with torch.no_grad():
        model.decoder.net[-1].weight.zero_()
    independent = create_model("independent", spec)
    independent.initialize(batches)
    z = torch.randn(len(x), 3)
    assert torch.allclose(model.log_px_given_z(z, x), independent.log_prob(x), atol=1e-5)
    untouched = create_model("vae", spec, {"latent_dim": 3, "hidden": [8]})
    bias = untouched.decoder.net[-1].bias.clone()
    untouched.initialize(batches)  # off by default: the hook changes nothing
    assert torch.equal(untouched.decoder.net[-1].bias, bias)


@pytest.mark.parametrize("config", [{"marginal_init": True, "likelihood": "logistic"},
                                    {"marginal_init": True, "architecture": "conv"}])
def test_marginal_init_is_refused_where_it_has_no_bias_to_set(config):
    with pytest.raises(UserError, match="marginal_init"):
        create_model("vae", DIGITS, config)


@pytest.mark.parametrize("where, encoder, decoder", [("both", 0.4, 0.4), ("decoder", 0.0, 0.4), ("encoder", 0.4, 0.0)])
def test_dropout_on_picks_the_mlps(where, encoder, decoder):
    model = create_model("vae", DIGITS, {"hidden": [8], "dropout": 0.4, "dropout_on": where})
    rates = [[m.p for m in net.net.modules() if isinstance(m, torch.nn.Dropout)]
             for net in (model.encoder, model.decoder)]
    assert rates == [[encoder] if encoder else [], [decoder] if decoder else []]
    with pytest.raises(UserError, match="dropout_on"):
        create_model("vae", DIGITS, {"dropout_on": "prior"})
