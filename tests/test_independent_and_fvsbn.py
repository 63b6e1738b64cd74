"""``independent`` and ``fvsbn`` against independent computations: the closed-form NLL of fitted
categoricals, causality by gradients, normalization, temperature and the L2 prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genmodels.core import Batch, create_model
from genmodels.data import DataSpec
from genmodels.evaluate import evaluate_likelihood
from genmodels.training import TrainConfig, train


def _fit_independent(dataset):
    model = create_model("independent", dataset.spec)
    model.initialize([Batch(dataset.train.x)])
    return model


def test_independent_test_nll_equals_closed_form_of_fitted_categoricals(digits):
    """numpy alone: counts + α over the training split, then the mean test NLL in nats."""
    alpha, levels = 0.5, 17
    train = digits.train.x.numpy().reshape(len(digits.train), -1)
    test = digits.test.x.numpy().reshape(len(digits.test), -1)
    counts = np.stack([np.bincount(train[:, i], minlength=levels) for i in range(train.shape[1])])  # (D, K)
    probs = (counts + alpha) / (len(train) + levels * alpha)
    closed_form = -np.log(probs[np.arange(train.shape[1]), test]).sum(axis=1).mean()

    model = _fit_independent(digits)
    [record] = evaluate_likelihood(model, digits.test)
    assert record.kind == "exact"
    assert record.nll_nats == pytest.approx(closed_form, rel=1e-6)
    assert record.bits_per_dim == pytest.approx(closed_form / (64 * np.log(2)), rel=1e-6)


def test_fvsbn_is_causal_by_gradients():
    """∂ logits_i / ∂ x_j = 0 for every j ≥ i, and ≠ 0 for j < i once the weights are nonzero."""
    spec = DataSpec("d", (1, 3, 4), 5)
    model = create_model("fvsbn", spec)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    x = torch.rand(1, *spec.shape, dtype=torch.float32) * 4
    jac = torch.autograd.functional.jacobian(lambda v: model.conditional_logits(v).sum(-1)[0], x)  # (D, 1, C, H, W)
    dependence = jac.reshape(spec.dims, spec.dims).abs()
    upper = torch.triu(torch.ones(spec.dims, spec.dims, dtype=torch.bool))
    assert dependence[upper].max() == 0
    assert (dependence[~upper] > 0).all()


@pytest.mark.parametrize("rank", [0, 3])
def test_fvsbn_low_rank_and_full_weights_both_normalize(rank, binary10_spec):
    import itertools

    model = create_model("fvsbn", binary10_spec, {"rank": rank})
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    x = torch.tensor(list(itertools.product([0, 1], repeat=10))).reshape(-1, 1, 2, 5)
    assert torch.logsumexp(model.log_prob(x).double(), 0).exp().item() == pytest.approx(1.0, abs=1e-5)


def test_fvsbn_beats_independent_on_digits(digits, tmp_path):
    fvsbn = train("fvsbn", digits, TrainConfig(steps=600, lr=3e-3, eval_every=200), tmp_path / "fvsbn", progress=False)
    independent = train("independent", digits, TrainConfig(steps=1), tmp_path / "independent", progress=False)
    assert fvsbn.test[0].kind == independent.test[0].kind == "exact"
    assert fvsbn.test[0].nll_nats < independent.test[0].nll_nats - 5.0


def test_fvsbn_temperature_near_zero_samples_the_greedy_sequence(binary10_spec):
    model = create_model("fvsbn", binary10_spec)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    cold = model.sample(50, generator=torch.Generator().manual_seed(0), temperature=1e-4)
    assert (cold == cold[0]).all()  # every draw takes each conditional's most likely level
    # Greedy: each pixel is the argmax of its conditional given the pixels before it.
    logits = model.conditional_logits(cold[:1])
    assert torch.equal(logits.argmax(-1).reshape(-1), cold[0].reshape(-1))
    hot = model.sample(200, generator=torch.Generator().manual_seed(0), temperature=100.0)
    assert 0.4 < hot.float().mean().item() < 0.6  # near-uniform bits
    with pytest.raises(Exception, match="temperature must be > 0"):
        model.sample(2, temperature=0.0)


def test_fvsbn_l2_prior_adds_half_lambda_times_the_squared_weights(digits):
    import torch

    from genmodels.core import Batch, create_model

    torch.manual_seed(0)
    plain = create_model("fvsbn", digits.spec)
    with torch.no_grad():
        plain.weight.normal_()
    prior = create_model("fvsbn", digits.spec, {"l2": 0.01})
    prior.load_state_dict(plain.state_dict())
    batch = Batch(digits.train.x[:32].long())
    expected = plain.loss(batch).loss + 0.5 * 0.01 * (plain.weight**2).sum()
    assert torch.allclose(prior.loss(batch).loss, expected)
    assert prior.optimizer_groups()["model"].no_decay == [prior.bias]
