"""``evaluate_likelihood`` and its records against hand-computed figures (mean, standard error,
terms, NFE, bits/dim), chosen so that a wrong formula gives a different number (mutation testing,
docs/MUTATION.md)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genmodels.core import Batch, GenerativeModel, LikelihoodKind, LogLikelihood, ModelConfig
from genmodels.data import DataSpec
from genmodels.data.base import Split
from genmodels.errors import UserError
from genmodels.evaluate import EVAL_SEED, LikelihoodRecord, evaluate_likelihood, format_records


class Table(GenerativeModel):
    """log p(x) = −(x₁ + x₂)·scale, in two pieces, plus a second measure with a cost per batch."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.BOUND
    name = "table"

    def __init__(self, spec):
        super().__init__(ModelConfig(), spec)
        self.w = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[bool, bool, list[int]]] = []  # (grad enabled, training, seeds)

    def log_likelihoods(self, batch, *, scale: float = 1.0):
        self.seen.append((torch.is_grad_enabled(), self.training, batch.seeds.tolist()))
        x = batch.x.double()
        first, second = -x[:, 0] * scale, -x[:, 1] * scale
        values = first + second
        return [
            LogLikelihood(values, LikelihoodKind.BOUND, "table", samples=3, terms={"first": first, "second": second}),
            LogLikelihood(values - 1.0, LikelihoodKind.ESTIMATE, "ode", evaluations=len(batch) + 1),
        ]


#: per-example log p: −1, −2, −3, −4, −6 (mean −3.2; squares sum to 66)
X = torch.tensor([[1, 0], [1, 1], [2, 1], [3, 1], [3, 3]])


def _records(spec=DataSpec("t", (2,), 4), data=None, **kwargs):
    model = Table(spec)
    return model, evaluate_likelihood(model, Split(X if data is None else data), **kwargs)


def test_mean_standard_error_terms_and_bits_per_dim_are_the_hand_computed_ones():
    _, (table, ode) = _records(batch_size=2)  # batches of 2, 2, 1
    assert table.measure == "table" and table.kind == "bound" and table.samples == 3
    assert table.nll_nats == pytest.approx(3.2, abs=1e-12)
    assert table.bits_per_dim == pytest.approx(3.2 / (2 * math.log(2)), abs=1e-12)
    # standard error of the mean: sample std / √n = √((66/5 − 3.2²)/(5 − 1)) = √0.74
    assert table.stderr_nats == pytest.approx(math.sqrt(0.74), abs=1e-12)
    assert table.terms_nats == {"first": pytest.approx(-2.0), "second": pytest.approx(-1.2)}  # mean log p pieces
    assert (table.examples, table.dims, table.discrete, table.evaluations, table.options) == (5, 2, True, None, {})
    assert ode.nll_nats == pytest.approx(4.2) and ode.kind == "estimate" and ode.samples is None
    assert ode.evaluations == pytest.approx((2 * 3 + 2 * 3 + 1 * 2) / 5)  # per example, over batches of 2, 2, 1
    assert ode.terms_nats == {}


def test_one_example_has_a_zero_standard_error_not_a_division_by_zero():
    _, (table, _) = _records(data=X[:1])
    assert table.stderr_nats == 0.0 and table.nll_nats == 1.0


def test_a_density_of_continuous_data_has_no_bits_per_dim():
    _, (table, _) = _records(spec=DataSpec("c", (2,), None), data=X.double())
    assert table.bits_per_dim is None and table.discrete is False and table.nll_nats == pytest.approx(3.2)
    assert "(density of continuous data)" in format_records([table])


def test_options_reach_the_model_and_are_recorded_and_unknown_ones_are_refused():
    _, (table, _) = _records(options={"scale": 2.0})
    assert table.nll_nats == pytest.approx(6.4) and table.options == {"scale": 2.0}
    with pytest.raises(UserError, match=r"model 'table' has no likelihood option k, n; its likelihood options: scale"):
        _records(options={"n": 1, "k": 2, "scale": 1.0})


def test_evaluation_runs_without_gradients_in_eval_mode_and_restores_the_mode():
    model = Table(DataSpec("t", (2,), 4))
    model.train()
    evaluate_likelihood(model, Split(X), batch_size=3)
    assert [(grad, training) for grad, training, _ in model.seen] == [(False, False), (False, False)]
    assert model.training
    model.eval()
    evaluate_likelihood(model, Split(X))
    assert not model.training


def test_every_example_gets_its_own_seed_from_the_seed_and_its_position():
    model = Table(DataSpec("t", (2,), 4))
    evaluate_likelihood(model, Split(X), batch_size=2, seed=7)
    base = 7 * 1_000_000_007
    assert [seeds for _, _, seeds in model.seen] == [[base, base + 1], [base + 2, base + 3], [base + 4]]
    model.seen.clear()
    evaluate_likelihood(model, [Batch(X[:2]), Batch(X[2:])])  # batches given directly, default seed
    assert model.seen[1][2][0] == EVAL_SEED * 1_000_000_007 + 2


def test_a_non_finite_likelihood_stops_evaluation():
    class Broken(Table):
        def log_likelihoods(self, batch, *, scale: float = 1.0):
            values = torch.zeros(len(batch))
            values[-1] = -math.inf
            return [LogLikelihood(values, LikelihoodKind.BOUND, "broken")]

    with pytest.raises(FloatingPointError, match="broken is not finite for some examples"):
        evaluate_likelihood(Broken(DataSpec("t", (2,), 4)), Split(X))


def test_kind_labels_and_the_printed_lines():
    record = LikelihoodRecord("iwae", "estimate", 3.25, 1.5, 0.125, 10, 2, samples=64, evaluations=2.5)
    assert record.kind_label == "estimate (k=64, NFE=2.5)"
    assert LikelihoodRecord("log_prob", "exact", 1.0, 0.5, 0.0, 1, 2).kind_label == "exact"
    assert LikelihoodRecord.from_json(record.to_json()) == record
    record.options = {"k": 64}
    assert format_records([record, record]) == "\n".join(
        ["iwae       estimate (k=64, NFE=2.5) NLL 3.25 nats ± 0.12   1.5 bits/dim   (10 examples)   options {\"k\": 64}"] * 2
    )
