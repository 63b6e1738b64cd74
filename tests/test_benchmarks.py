"""The benchmark scripts (benchmarks/, not its peers/ folder): each one loads and answers ``--help``,
each shell script parses, and the shared fit loop (benchmarks/fitting.py) checks and keeps the best
step as it says."""

from __future__ import annotations

import pathlib
import runpy
import subprocess
import sys

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
