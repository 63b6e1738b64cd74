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


def test_a_continuous_density_prints_without_bits_per_dim_or_options():
    flow = LikelihoodRecord("flow", "exact", 2.5, None, 0.25, 4, 2, discrete=False)
    assert format_records([flow]) == "flow       exact              NLL 2.5 nats ± 0.25   (density of continuous data)   (4 examples)"
    assert format_records([]) == "no likelihood (kind: none)"


def test_processes_take_contiguous_blocks_of_batches_the_first_ones_one_more():
    from genmodels.evaluate import _my_batches

    assert [list(_my_batches(7, rank, 3)) for rank in range(3)] == [[0, 1, 2], [3, 4], [5, 6]]
    assert [list(_my_batches(2, rank, 3)) for rank in range(3)] == [[0], [1], []]
    for batches in range(9):
        for world in range(1, 5):
            blocks = [_my_batches(batches, rank, world) for rank in range(world)]
            assert [i for block in blocks for i in block] == list(range(batches))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def _simulate_two_processes(monkeypatch, evaluate_fn, make_model, data):
    """Run ``evaluate_fn`` as process 0, then 1, of two (batches of 2), each stopped at the gather;
    then make ``gather_object`` return what the two gathered, so a further call on one process
    gives the gathered result. Returns each process's example seeds (relative to EVAL_SEED)."""
    import accelerate.utils

    from genmodels import evaluate

    parts, seeds = [], []

    class Gathered(Exception):
        pass

    def capture(objects):
        parts.append(objects[0])
        raise Gathered

    monkeypatch.setattr(accelerate.utils, "gather_object", capture)
    for rank in (0, 1):
        monkeypatch.setattr(evaluate, "_process_group", lambda rank=rank: (rank, 2))
        model = make_model()
        with pytest.raises(Gathered):
            evaluate_fn(model, Split(data), batch_size=2)
        seeds.append([s - EVAL_SEED * 1_000_000_007 for _, _, batch in model.seen for s in batch])
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objects: parts)
    return seeds


def test_several_processes_gather_the_same_records_as_one(monkeypatch):
    """Two processes simulated in turn: each evaluates its block of batches; the gathered
    per-example values give exactly the records of one process (values, terms, NFE, seeds)."""
    spec = DataSpec("t", (2,), 4)
    data = torch.cat([X, X.flip(0), X[:1]])  # 11 examples: batches of 2 → 6 batches, 3 per process
    alone = evaluate_likelihood(Table(spec), Split(data), batch_size=2)
    seeds = _simulate_two_processes(monkeypatch, evaluate_likelihood, lambda: Table(spec), data)
    assert seeds == [list(range(6)), list(range(6, 11))]  # 3 batches each; every example's seed as alone
    together = evaluate_likelihood(Table(spec), Split(data), batch_size=2)
    assert [r.to_json() for r in together] == [r.to_json() for r in alone]
    assert together[1].evaluations is not None and together[0].terms_nats


def test_the_defaults_batches_of_500_and_no_progress_bar(capsys):
    model, _ = _records(data=X.repeat(101, 1))  # 505 examples
    assert [len(seeds) for _, _, seeds in model.seen] == [500, 5]
    assert capsys.readouterr().err == ""  # no bar unless asked (progress=True)


def test_the_refusal_of_an_unknown_option_lists_every_accepted_one_or_none():
    class Two(Table):
        def log_likelihoods(self, batch, *, scale: float = 1.0, k: int = 1):
            return super().log_likelihoods(batch, scale=scale)

    class NoOptions(Table):
        def log_likelihoods(self, batch):
            return super().log_likelihoods(batch)

    with pytest.raises(UserError, match=r"has no likelihood option n; its likelihood options: scale, k$"):
        evaluate_likelihood(Two(DataSpec("t", (2,), 4)), Split(X), options={"n": 1})
    with pytest.raises(UserError, match=r"has no likelihood option n; its likelihood options: \(none\)$"):
        evaluate_likelihood(NoOptions(DataSpec("t", (2,), 4)), Split(X), options={"n": 1})


def test_batches_go_to_the_device_asked_for_else_the_models(monkeypatch):
    moved = []
    monkeypatch.setattr(Batch, "to", lambda self, device: (moved.append(device), self)[1])
    model = Table(DataSpec("t", (2,), 4))
    evaluate_likelihood(model, Split(X), device="meta")  # recorded only: the batch stays where it is
    evaluate_likelihood(model, Split(X))
    assert moved == [torch.device("meta"), torch.device("cpu")]


def test_batches_given_directly_are_this_process_alone_and_the_bar_is_the_first_process(monkeypatch, capsys):
    import accelerate.utils

    from genmodels import evaluate

    def refuse(objects):
        raise AssertionError("batches given directly are not shared with other processes")

    monkeypatch.setattr(accelerate.utils, "gather_object", refuse)
    monkeypatch.setattr(evaluate, "_process_group", lambda: (1, 2))
    model = Table(DataSpec("t", (2,), 4))
    (table, _) = evaluate_likelihood(model, [Batch(X[:2]), Batch(X[2:])], progress=True)
    assert table.examples == 5 and model.seen[0][2][0] == EVAL_SEED * 1_000_000_007
    assert "evaluate" in capsys.readouterr().err  # the bar is shown: this process is alone
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objects: objects * 2)
    evaluate_likelihood(model, Split(X), progress=True)  # the second of two processes
    assert capsys.readouterr().err == ""


def test_a_split_is_read_in_its_own_order():
    class Order(Table):
        def log_likelihoods(self, batch, *, scale: float = 1.0):
            self.rows = getattr(self, "rows", []) + batch.x.tolist()
            return super().log_likelihoods(batch, scale=scale)

    model = Order(DataSpec("t", (2,), 4))
    data = torch.tensor([[i % 4, i // 4] for i in range(16)])
    evaluate_likelihood(model, Split(data), batch_size=3)
    assert model.rows == data.tolist()  # never shuffled: each example keeps the seed of its position


def test_the_evaluation_bar_names_itself_counts_batches_and_leaves_no_trace(capsys):
    _records(progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\revaluate: ") and "batch/s" in err
    assert err.endswith("\r") and err.split("\r")[-2].strip() == ""  # erased when done (leave=False)


def test_the_rng_of_the_cuda_device_evaluated_on_is_saved_and_restored(monkeypatch):
    """No GPU is needed: the batches stay where they are, and fork_rng is asked which devices."""
    from genmodels import evaluate

    asked, fork_rng = [], torch.random.fork_rng
    monkeypatch.setattr(Batch, "to", lambda self, device: self)
    monkeypatch.setattr(evaluate.torch.random, "fork_rng", lambda devices: (asked.append(devices), fork_rng(devices=[]))[1])
    model = Table(DataSpec("t", (2,), 4))
    evaluate_likelihood(model, Split(X), device="cuda:1")
    evaluate_likelihood(model, Split(X))
    assert asked == [[torch.device("cuda:1")], []]


def test_per_example_values_are_summed_in_float64_whatever_the_model_returns():
    class Float32(Table):
        def log_likelihoods(self, batch, *, scale: float = 1.0):
            first = batch.seeds == EVAL_SEED * 1_000_000_007
            values = torch.where(first, torch.tensor(2.0**24), torch.tensor(1.0))  # float32
            return [LogLikelihood(-values, LikelihoodKind.BOUND, "f32", terms={"all": -values}, evaluations=2**24 + 1)]

    (record,) = evaluate_likelihood(Float32(DataSpec("t", (2,), 4)), Split(X), batch_size=5)
    assert record.nll_nats == (2.0**24 + 4) / 5  # in float32, 2^24 + 1 + 1 + 1 + 1 would stay 2^24
    assert record.terms_nats == {"all": -(2.0**24 + 4) / 5}
    assert record.evaluations == 2**24 + 1  # not a float32 count (2^24)


def test_two_examples_divide_by_one_for_the_standard_error():
    _, (table, _) = _records(data=X[:2])  # log p −1, −2: sample variance 0.5, standard error √(0.5/2)
    assert table.stderr_nats == pytest.approx(0.5, abs=1e-12)


# --- evaluate_figures: per-example figures that are not likelihoods (MSE, PSNR, code NLL) ---------------

from genmodels.evaluate import FigureRecord, evaluate_figures, format_figures  # noqa: E402


class Figures(Table):
    """Two figures per example: x₁ + x₂ (as `table`'s −log p: mean 3.2, squares sum to 66) and a
    float32 draw of the global RNG (what the seed and the forked RNG govern)."""

    name = "figures"

    def evaluation_figures(self, batch):
        self.seen.append((torch.is_grad_enabled(), self.training, batch.seeds.tolist()))
        return {"sum": batch.x.double().sum(1), "draw": torch.rand(len(batch))}


SPEC = DataSpec("t", (2,), 4)


def test_figures_are_the_hand_computed_means_and_standard_errors_at_any_batch_size():
    for batch_size in (2, 5, 500):
        total, draw = evaluate_figures(Figures(SPEC), Split(X), batch_size=batch_size)
        assert (total.name, total.examples, draw.name, draw.examples) == ("sum", 5, "draw", 5)
        assert total.mean == pytest.approx(3.2, abs=1e-12)
        assert total.stderr == pytest.approx(math.sqrt(0.74), abs=1e-12)  # √((66/5 − 3.2²)/(5 − 1))
    assert evaluate_figures(Table(SPEC), Split(X)) == []  # a model that reports none: not even run


def test_figures_run_without_gradients_in_eval_mode_with_each_examples_seed():
    model = Figures(SPEC)
    model.train()
    evaluate_figures(model, Split(X), batch_size=2, seed=7)
    base = 7 * 1_000_000_007
    assert model.seen == [(False, False, [base, base + 1]), (False, False, [base + 2, base + 3]), (False, False, [base + 4])]
    assert model.training
    model.eval()
    evaluate_figures(model, Split(X))
    assert not model.training


def test_figures_draw_under_the_seed_and_leave_the_global_rng_as_it_was():
    torch.manual_seed(0)
    (_, first), state = evaluate_figures(Figures(SPEC), Split(X)), torch.get_rng_state()
    torch.manual_seed(1)
    (_, again) = evaluate_figures(Figures(SPEC), Split(X))
    assert first.mean == again.mean  # the draw depends on the evaluation seed, not on the caller's RNG
    torch.manual_seed(0)
    evaluate_figures(Figures(SPEC), Split(X))
    assert torch.equal(torch.get_rng_state(), state)  # forked: the caller's RNG is untouched
    (_, other) = evaluate_figures(Figures(SPEC), Split(X), seed=EVAL_SEED + 1)
    assert other.mean != first.mean


def test_a_figure_of_the_wrong_shape_is_refused_by_name():
    class Wrong(Figures):
        def evaluation_figures(self, batch):
            return {"mse": batch.x.double()}

    with pytest.raises(ValueError) as err:
        evaluate_figures(Wrong(SPEC), Split(X), batch_size=2)
    assert str(err.value) == "figures.evaluation_figures()['mse'] has shape (2, 2), not (2,)"


def test_figures_are_summed_in_float64_whatever_the_model_returns():
    class Float32(Figures):
        def evaluation_figures(self, batch):
            first = batch.seeds == EVAL_SEED * 1_000_000_007
            return {"f32": torch.where(first, torch.tensor(2.0**24), torch.tensor(1.0))}

    (record,) = evaluate_figures(Float32(SPEC), Split(X), batch_size=5)
    assert record.mean == (2.0**24 + 4) / 5  # in float32, 2^24 + 1 + 1 + 1 + 1 would stay 2^24


def test_several_processes_gather_the_same_figures_as_one(monkeypatch, capsys):
    import accelerate.utils

    data = torch.cat([X, X.flip(0), X[:1]])  # 11 examples, batches of 2: 3 batches per process
    alone = evaluate_figures(Figures(SPEC), Split(data), batch_size=2)
    seeds = _simulate_two_processes(monkeypatch, evaluate_figures, lambda: Figures(SPEC), data)
    assert seeds == [list(range(6)), list(range(6, 11))]
    together = evaluate_figures(Figures(SPEC), Split(data), batch_size=2)
    assert together[0] == alone[0] and together[0].examples == 11
    # batches given directly are this process's alone (the second of two): nothing is gathered, and
    # this process shows the bar
    monkeypatch.setattr(accelerate.utils, "gather_object", lambda objects: 1 / 0)
    capsys.readouterr()
    assert evaluate_figures(Figures(SPEC), [Batch(X[:2]), Batch(X[2:])], progress=True)[0].examples == 5
    assert "evaluate" in capsys.readouterr().err


def test_figures_go_to_the_device_asked_for_and_fork_its_rng(monkeypatch):
    from genmodels import evaluate

    moved, asked, fork_rng = [], [], torch.random.fork_rng
    monkeypatch.setattr(Batch, "to", lambda self, device: (moved.append(device), self)[1])
    monkeypatch.setattr(evaluate.torch.random, "fork_rng", lambda devices: (asked.append(devices), fork_rng(devices=[]))[1])
    model = Figures(SPEC)
    evaluate_figures(model, Split(X), device="cuda:1")
    evaluate_figures(model, Split(X))
    assert moved == [torch.device("cuda:1"), torch.device("cpu")] and asked == [[torch.device("cuda:1")], []]


def test_the_figures_defaults_batches_of_500_and_a_bar_only_when_asked(capsys):
    model = Figures(SPEC)
    evaluate_figures(model, Split(X.repeat(101, 1)))
    assert [len(seeds) for _, _, seeds in model.seen] == [500, 5]
    assert capsys.readouterr().err == ""
    evaluate_figures(model, Split(X), progress=True)
    assert capsys.readouterr().err.startswith("\revaluate: ")


def test_figure_records_print_and_round_trip():
    mse = FigureRecord("mse", 0.0123456789, 0.000123, 10)
    assert mse.to_json() == {"name": "mse", "mean": 0.0123456789, "stderr": 0.000123, "examples": 10}
    assert FigureRecord.from_json(mse.to_json()) == mse
    assert format_figures([mse, FigureRecord("psnr", 31.5, 0.25, 10)]) == (
        "mse                0.0123457 ± 0.00012   (10 examples)\npsnr               31.5 ± 0.25   (10 examples)"
    )
    assert format_figures([]) == ""
