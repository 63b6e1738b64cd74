"""Contract tests run over every registered model (new models are picked up automatically)."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from genmodels.checkpoint import load_model, save_checkpoint
from genmodels.core import Batch, LikelihoodKind, create_model, model_class, model_names
from genmodels.data import DataSpec

ALL_MODELS = model_names()
DISCRETE_MODELS = [m for m in ALL_MODELS if model_class(m).handles_discrete]
CONTINUOUS_MODELS = [m for m in ALL_MODELS if model_class(m).handles_continuous]
# Models whose likelihood of discrete data is exact (a continuous-only density is not a probability).
EXACT_MODELS = [m for m in DISCRETE_MODELS if model_class(m).kind_for(DataSpec("b", (1, 2, 5), 2)) is LikelihoodKind.EXACT]
# Models with a class-conditional variant, switched on by their config.
CONDITIONAL_MODELS = [m for m in DISCRETE_MODELS if "conditional" in {f.name for f in dataclasses.fields(model_class(m).Config)}]


def _random_batches(spec, n=64, batch_size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    if spec.is_discrete:
        x = torch.randint(0, spec.levels, (n, *spec.shape), generator=g)
    else:
        x = torch.randn(n, *spec.shape, generator=g)
    y = torch.randint(0, spec.num_classes, (n,), generator=g) if spec.num_classes else None
    return [Batch(x[i : i + batch_size], None if y is None else y[i : i + batch_size]) for i in range(0, n, batch_size)]


def _randomized(name, spec, seed=0, config=None, scale=0.5):
    """A model fitted on random data and then perturbed, so no test passes by symmetry."""
    torch.manual_seed(seed)
    model = create_model(name, spec, config)
    model.initialize(_random_batches(spec, seed=seed))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def _all_configurations(spec):
    points = list(itertools.product(range(spec.levels), repeat=spec.dims))
    return torch.tensor(points, dtype=torch.int64).reshape(-1, *spec.shape)


def test_registry_has_the_baseline_models_independent_and_fvsbn():
    assert {"independent", "fvsbn"} <= set(ALL_MODELS)


@pytest.mark.parametrize("name", EXACT_MODELS)
def test_exact_likelihood_normalizes_over_all_1024_binary_configurations(name, binary10_spec):
    model = _randomized(name, binary10_spec)
    x = _all_configurations(binary10_spec)  # (1024, 1, 2, 5)
    assert len(x) == 1024
    with torch.no_grad():
        total = torch.logsumexp(model.log_prob(x).double(), dim=0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("name", EXACT_MODELS)
def test_samples_follow_the_exact_likelihood(name):
    """On 27 configurations, the empirical distribution of samples matches exp(log_prob)."""
    spec = DataSpec("tiny", (3,), levels=3)
    model = _randomized(name, spec, seed=3)
    x = _all_configurations(spec)
    with torch.no_grad():
        probs = model.log_prob(x).double().exp()
        draws = model.sample(40_000, generator=torch.Generator().manual_seed(0))
    index = (draws[:, 0] * 9 + draws[:, 1] * 3 + draws[:, 2]).bincount(minlength=27).double() / len(draws)
    total_variation = 0.5 * (index - probs).abs().sum().item()
    assert total_variation < 0.02, (probs, index)


def _check_contract(model, spec, batch):
    model.train()
    groups = model.optimizer_groups()
    for group in groups or {"model": []}:
        out = model(batch, step=0, group=group)
        assert out.loss.dim() == 0 and torch.isfinite(out.loss)
        for term in out.terms.values():
            assert term.shape == (len(batch),)
    for group, params in groups.items():
        params = params.params if hasattr(params, "params") else params
        model.zero_grad()
        model(batch, step=0, group=group).loss.backward()
        assert all(p.grad is not None for p in params), f"{group}: a parameter gets no gradient"
    model.eval()
    records = model.log_likelihoods(batch)
    kind = model.likelihood_kind
    assert kind is type(model).kind_for(spec)
    if kind is LikelihoodKind.NONE:
        assert records == []
    else:
        assert records[0].kind is kind
        for record in records:
            assert record.values.shape == (len(batch),) and torch.isfinite(record.values).all()
            if record.terms:  # named terms are signed contributions that sum to the value
                total = sum(record.terms.values())
                assert torch.allclose(total, record.values, rtol=1e-4, atol=1e-3), record.measure
        if spec.is_discrete:
            assert (records[0].values <= 1e-6).all()  # a probability of discrete data is ≤ 1
    extra = {"y": batch.y[:5]} if model.conditional else {}
    samples = model.sample(5, generator=torch.Generator().manual_seed(0), **extra)
    assert samples.shape == (5, *spec.shape)
    if spec.is_discrete:
        assert samples.dtype == torch.int64
        assert samples.min() >= 0 and samples.max() <= spec.levels - 1
    else:
        assert samples.is_floating_point() and torch.isfinite(samples).all()
    assert model.config.to_json() == type(model.config).from_json(model.config.to_json()).to_json()


@pytest.mark.parametrize("name", DISCRETE_MODELS)
@pytest.mark.parametrize("spec", [DataSpec("b", (1, 2, 5), 2), DataSpec("d", (1, 8, 8), 17, 10)], ids=["binary", "digits"])
def test_interface_contract(name, spec):
    model = _randomized(name, spec)
    _check_contract(model, spec, _random_batches(spec, n=8, batch_size=8)[0])


@pytest.mark.parametrize("name", CONTINUOUS_MODELS)
def test_interface_contract_on_continuous_data(name):
    spec = DataSpec("c", (2,), None)
    # A milder perturbation: an ODE likelihood through a network with N(0, 0.5²) added to every
    # weight integrates a field that explodes before σ_max (no trained model is like that).
    model = _randomized(name, spec, scale=0.1)
    _check_contract(model, spec, _random_batches(spec, n=8, batch_size=8)[0])


@pytest.mark.parametrize("name", CONDITIONAL_MODELS)
def test_interface_contract_of_class_conditional_variants(name):
    spec = DataSpec("d", (1, 8, 8), 17, 10)
    model = _randomized(name, spec, config={"conditional": True})
    assert model.conditional
    _check_contract(model, spec, _random_batches(spec, n=8, batch_size=8)[0])


@pytest.mark.parametrize("name", DISCRETE_MODELS)
def test_save_and_load_round_trip(name, tmp_path):
    spec = DataSpec("d", (1, 8, 8), 17, 10)
    model = _randomized(name, spec)
    meta = {"model": name, "model_config": model.config.to_json(), "data": {"source": {}, "spec": spec.to_json()}}
    save_checkpoint(tmp_path / "ckpt", model_state=model.state_dict(), meta=meta)
    loaded, _ = load_model(tmp_path / "ckpt")
    batch = _random_batches(spec, n=8, batch_size=8)[0]
    torch.manual_seed(5)
    before = [(r.measure, r.kind, r.values) for r in model.log_likelihoods(batch)]
    torch.manual_seed(5)
    after = [(r.measure, r.kind, r.values) for r in loaded.log_likelihoods(batch)]
    assert len(after) == len(before)  # a reloaded model that returns no likelihoods fails here
    for (measure_a, kind_a, a), (measure_b, kind_b, b) in zip(before, after):
        assert (measure_a, kind_a) == (measure_b, kind_b) and torch.equal(a, b)
