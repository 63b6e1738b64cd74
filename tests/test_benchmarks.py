"""The benchmark scripts (benchmarks/, not its peers/ folder): each one loads and answers ``--help``,
each shell script parses, and the shared fit loop (benchmarks/fitting.py) checks and keeps the best
step as it says."""

from __future__ import annotations

import pathlib
import runpy
import subprocess
import sys
import time

import pytest
import torch

from genmodels.core import Batch, create_model
from genmodels.data import DataSpec

BENCHMARKS = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name != "fitting.py")


@pytest.fixture
def benchmarks_on_path(monkeypatch):
    """The scripts import their shared helpers (``fitting``) from their own folder, as Python does for a
    script run by path."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_each_benchmark_script_loads_and_answers_help(script, benchmarks_on_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(script), "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(script), run_name="__main__")
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")


@pytest.mark.parametrize("script", sorted(BENCHMARKS.glob("*.sh")), ids=lambda p: p.name)
def test_each_benchmark_shell_script_parses(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_fit_checks_every_n_steps_and_at_the_last_and_keeps_the_best_state(benchmarks_on_path):
    from fitting import fit

    torch.manual_seed(0)
    model = create_model("fvsbn", DataSpec("d", (1, 2, 2), 2))
    x = torch.randint(0, 2, (64, 1, 2, 2))
    scores = {2: 3.0, 4: 1.0, 5: 2.0}  # step 4 is the best; step 5, the last, is checked too
    states = {}

    def check(step, scored):
        states[step] = {k: v.clone() for k, v in scored.state_dict().items()}
        return scores[step]

    result = fit(model, lambda step: Batch(x[(step * 8) % 64 :][:8]), steps=5, lr=0.1, check=check, check_every=2,
                 keep_best=True)
    assert sorted(states) == [2, 4, 5]
    assert (result.steps, result.examples, result.best_step, result.best_score) == (5, 40, 4, 1.0)
    assert not torch.equal(states[4]["weight"], states[5]["weight"])
    assert all(torch.equal(v, states[4][k]) for k, v in model.state_dict().items())  # the best state, loaded back
    assert set(result.losses) == {"model"} and result.cpu_seconds > 0


def test_flop_utilization_counts_a_training_steps_matrix_products_per_example(benchmarks_on_path):
    """One linear map x (B, 8) → (B, 4) without bias, its input needing no gradient: the forward
    product is 2·8·4 = 64 FLOPs per example, the backward one (the weight's gradient) 64 more."""
    from flop_utilization import matmul_ceiling, training_flops_per_example

    from genmodels.core import Loss

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.map = torch.nn.Linear(8, 4, bias=False)

        def optimizer_groups(self):
            return {"model": list(self.parameters())}

        def forward(self, batch, *, step, group):
            return Loss(self.map(batch.x).square().sum())

    assert training_flops_per_example(Linear(), Batch(torch.randn(5, 8))) == 128
    assert matmul_ceiling(32, repeats=1) > 0


def tiny_dataset(levels=2):
    """A data set as the benchmark scripts read it: a spec and splits of {"x": ...} items."""
    from types import SimpleNamespace

    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, levels, (40, 1, 2, 2), generator=generator)
    items = [{"x": row} for row in x]
    return SimpleNamespace(spec=DataSpec("d", (1, 2, 2), levels), train=items[:32], test=items[32:])


def test_registry_models_initializes_each_model_on_the_training_split_or_says_why_it_refused(benchmarks_on_path):
    from fitting import registry_models

    from genmodels.data import DataSpec as Spec

    yielded = list(registry_models(tiny_dataset(), ["independent", "fvsbn"]))
    assert [(r.name, r.refusal) for r in yielded] == [("independent", None), ("fvsbn", None)]
    torch.manual_seed(0)
    fresh = create_model("independent", tiny_dataset().spec)
    fitted = yielded[0].model.state_dict()
    assert any(not torch.equal(v, fitted[k]) for k, v in fresh.state_dict().items())  # fitted to the data

    continuous = tiny_dataset()
    continuous.spec = Spec("c", (1, 2, 2), None)
    (refused,) = registry_models(continuous, ["fvsbn"])
    assert refused.model is None and "needs discrete data" in refused.refusal


def test_budgeted_rate_fills_its_call_up_to_the_most_units_and_times_a_slow_unit_once(benchmarks_on_path):
    from throughput import budgeted_rate

    calls = []
    rate = budgeted_rate(calls.append, cpu_seconds=10.0, repeats=3, most=6)  # instant work: grows to `most`
    assert (rate.units, rate.repeats, calls) == (6, 3, [1, 2, 4, 6, 6, 6])

    def slow(n):  # one unit burns more than the whole budget
        started = time.thread_time()
        while time.thread_time() - started < 0.02:
            pass

    rate = budgeted_rate(slow, cpu_seconds=0.01, repeats=3, most=8)
    assert (rate.units, rate.repeats) == (1, 1) and rate.per_second > 0


def test_flop_utilization_counts_an_evaluations_matrix_products_per_example(benchmarks_on_path):
    """A likelihood that is one linear map x (B, 8) → (B, 4) without bias: 2·8·4 = 64 FLOPs an example."""
    from flop_utilization import counted_flops, likelihood_call

    from genmodels.core import LikelihoodKind, LogLikelihood

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.map = torch.nn.Linear(8, 4, bias=False)

        def log_likelihoods(self, batch):
            return [LogLikelihood(self.map(batch.x).sum(1), LikelihoodKind.EXACT, "log_prob")]

    work = likelihood_call(Linear(), torch.randn(10, 8))
    assert counted_flops(lambda: work(5)) == 5 * 64
    assert len(work(3)[0].values) == 3


def test_flop_utilization_measures_every_phase_of_a_model_and_notes_what_does_not_apply(benchmarks_on_path):
    from argparse import Namespace

    from flop_utilization import markdown_header, markdown_row, measure
    from fitting import registry_models

    args = Namespace(phases=["train", "eval", "sample"], batch_size=8, repeats=2, train_seconds=0.01,
                     eval_seconds=0.01, sample_seconds=0.01, eval_examples=8, samples=4)
    dataset = tiny_dataset()
    fvsbn, independent = (measure(name, model, dataset, args) for name, model, _ in registry_models(dataset, ["fvsbn", "independent"]))
    assert fvsbn.notes == {} and fvsbn.train_flops > 0 and fvsbn.train_per_s > 0 and fvsbn.eval_per_s > 0
    assert fvsbn.eval_measure == "log_prob (exact)" and fvsbn.eval_flops > 0 and 1 <= fvsbn.samples <= 4
    assert independent.notes == {"train": "closed form"} and independent.train_per_s is None
    columns = markdown_header().splitlines()[0].count("|")
    assert markdown_row(fvsbn, ceiling=50.0).count("|") == markdown_row(independent, ceiling=50.0).count("|") == columns


def test_flop_utilization_stops_a_phase_at_its_cpu_limit(benchmarks_on_path):
    from flop_utilization import PhaseLimit, cpu_limit

    with pytest.raises(PhaseLimit, match="stopped after 0.05 CPU-s"):
        with cpu_limit(0.05):
            while True:
                pass
    with cpu_limit(5.0):  # a block inside its limit runs to the end, and the timer is off afterwards
        total = sum(range(1000))
    assert total == 499500
