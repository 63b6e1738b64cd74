"""A single draw of an autoregressive model counts its positions: the sampling phase's lines carry
``done/total positions`` and an ETA, and a draw projected past the cost threshold says so first."""

import io

import torch

from genmodels import progress
from genmodels.core import create_model
from genmodels.data import load_dataset
from genmodels.progress import Phase, sampling_step


def test_sampling_step_does_nothing_outside_a_counting_phase():
    sampling_step(10)  # no phase: no error, nothing printed
    log = io.StringIO()
    with Phase("plain", total=3, stream=log) as phase:
        sampling_step(10)  # a phase that does not count steps keeps its own total
        assert phase.total == 3 and phase.done == 0


def test_an_autoregressive_draw_counts_every_position_and_states_its_cost(monkeypatch):
    spec = load_dataset("digits").spec
    model = create_model("fvsbn", spec, None)
    ticks = {"t": 0.0}

    def slow_clock() -> float:  # every reading is 5 s later: 64 positions look like minutes
        ticks["t"] += 5.0
        return ticks["t"]

    monkeypatch.setattr(progress, "now", slow_clock)
    log = io.StringIO()
    with Phase("sampling 4 from fvsbn", unit="samples", counts_steps=True, stream=log, bar=False,
               cheaper="-n N") as phase:
        model.sample(4, generator=torch.Generator().manual_seed(0))
    assert phase.total == spec.dims and phase.done == spec.dims and phase.unit == "positions"
    lines = log.getvalue().splitlines()
    assert lines and lines[0].startswith("sampling 4 from fvsbn: 64 positions will take about")
    assert "-n N" in lines[0]
    assert progress._counting.get() is None  # the phase no longer counts once closed


def test_a_diffusion_draw_counts_its_network_evaluations_against_the_solvers_nfe():
    spec = load_dataset("digits").spec
    model = create_model("edm", spec, {"channels": 8, "channel_mults": [1], "attention": False, "hidden": 16,
                                       "embedding": "scale-shift"})
    for solver, steps in (("heun", 5), ("euler", 4), ("ddim", 3)):
        log = io.StringIO()
        with Phase("sampling", unit="samples", counts_steps=True, stream=log, bar=False) as phase:
            _, info = model.sample_with_info(2, generator=torch.Generator().manual_seed(0), solver=solver, steps=steps)
        assert phase.unit == "NFE" and phase.done == info["nfe"] == phase.total, (solver, phase.done, phase.total)
