"""No silent minute: every long phase prints progress lines to a log, a costly one states its cost
first, and a biased validation estimate says so.

Slowness is simulated: a phase really sleeps a little (the progress interval is set to 0.05 s, so a
line falls due), and a clock the progress helper reads jumps ahead to make an estimate look costly.
No assertion is about timing itself.
"""

from __future__ import annotations

import functools
import io
import json
import time

import numpy as np
import pytest

from genmodels import progress
from genmodels.data import load_dataset
from genmodels.progress import Phase, format_duration
from genmodels.training import TrainConfig, train

INTERVAL = 0.05


class FakeClock:
    """The real monotonic clock plus an offset a slow phase pushes forward."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock(monkeypatch):
    monkeypatch.setenv("GENMODELS_PROGRESS_SECONDS", str(INTERVAL))
    fake = FakeClock()
    monkeypatch.setattr(progress, "now", fake)
    return fake


def test_a_phase_longer_than_the_interval_prints_lines_a_short_one_prints_nothing(clock):
    log = io.StringIO()
    with Phase("slow thing", total=4, unit="examples", stream=log) as phase:
        for _ in range(4):
            time.sleep(3 * INTERVAL)
            phase.update(1)
    lines = log.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("slow thing: ") for line in lines)
    assert any("/4 examples" in line and "ETA" in line for line in lines[1:])
    quiet = io.StringIO()
    with Phase("quick thing", total=4, stream=quiet) as phase:
        phase.update(4)
    assert quiet.getvalue() == ""


def test_a_slow_batch_does_not_make_the_phase_silent(clock):
    """The heartbeat prints while no batch finishes (one batch may take minutes)."""
    log = io.StringIO()
    with Phase("one big batch", total=1, stream=log):
        time.sleep(4 * INTERVAL)
    assert "one big batch: 0/1 examples" in log.getvalue()


def test_the_cost_line_appears_for_an_expensive_phase_only(clock):
    log = io.StringIO()
    with Phase("expensive", total=100, cheaper="--fewer", stream=log) as phase:
        clock.offset += 10.0  # the first of 100 examples "took" 10 s: about 17 minutes in all
        phase.update(1)
        assert phase.cost_line == "expensive: 100 examples will take about 16.7 min (measured on the first 1); for less, pass --fewer"
    assert log.getvalue().splitlines()[0] == phase.cost_line
    with Phase("cheap", total=100, stream=io.StringIO()) as cheap:
        cheap.update(1)
    assert cheap.cost_line is None


def test_durations_read_as_seconds_minutes_hours():
    assert [format_duration(s) for s in (42, 210, 7200)] == ["42 s", "3.5 min", "2.0 h"]


@pytest.fixture
def images(tmp_path):
    """800 images of 16×16 with K = 256 levels (80 for validation, 80 for test)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "patches.npy"
    np.save(path, rng.integers(0, 256, size=(800, 16, 16), dtype=np.uint8))
    return load_dataset(str(path))


def _slow(model_class, monkeypatch, clock, *, seconds_per_batch: float):
    """Each likelihood batch and each draw of ``model_class`` sleeps a little and "costs" more."""
    log_likelihoods, sample_with_info = model_class.log_likelihoods, model_class.sample_with_info

    @functools.wraps(log_likelihoods)  # keeps the signature: the options are read from it
    def slow_log_likelihoods(self, batch, **options):
        time.sleep(2 * INTERVAL)
        clock.offset += seconds_per_batch
        return log_likelihoods(self, batch, **options)

    @functools.wraps(sample_with_info)
    def slow_sample_with_info(self, n, **options):
        time.sleep(3 * INTERVAL)
        return sample_with_info(self, n, **options)

    monkeypatch.setattr(model_class, "log_likelihoods", slow_log_likelihoods)
    monkeypatch.setattr(model_class, "sample_with_info", slow_sample_with_info)


def _run(model, data, tmp_path, capsys, **overrides):
    config = TrainConfig(**{**dict(steps=2, eval_every=2, batch_size=32, eval_batch_size=16, num_samples=4), **overrides})
    result = train(model, data, config, tmp_path / model, progress=False)
    return result, capsys.readouterr().err


def test_every_phase_of_a_vae_run_prints_lines_and_its_costly_validation_states_its_cost(
    images, tmp_path, monkeypatch, capsys, clock
):
    from genmodels.latent.vae import VAE

    _slow(VAE, monkeypatch, clock, seconds_per_batch=30.0)
    # k = 4 keeps the test fast; the defaults' k (64 for validation) are the same code path
    result, err = _run("vae", images, tmp_path, capsys, validation_options={"k": "4"}, eval_options={"k": "4"})
    lines = err.splitlines()
    # Validation: the timed examples say the whole split (80) would exceed its budget, so each
    # evaluation uses the first 64 (the floor), and the pass states its cost before it is paid.
    assert any(line.startswith("validation: the whole split (80 examples, k=4)") and "first 64" in line for line in lines)
    assert any(line.startswith("validation vae (k=4): 64 examples will take about") and "--validation-examples N" in line
               for line in lines)
    assert any(line.startswith("validation vae (k=4): ") and "elapsed" in line for line in lines)
    assert result.validation[0].examples == 64
    # Test evaluation (the whole test split, as the figures claim) and the sampling show lines too.
    assert any(line.startswith("test vae (k=4): ") and "elapsed" in line for line in lines)
    assert any(line.startswith("test vae (k=4): 80 examples will take about") and "--test-examples N" in line for line in lines)
    assert any(line.startswith("sampling 4 from vae: ") and "elapsed" in line for line in lines)
    assert result.test[0].examples == 80


def test_a_cheap_run_states_no_cost_and_keeps_its_whole_validation_split(images, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GENMODELS_PROGRESS_SECONDS", "60")
    result, err = _run("fvsbn", images, tmp_path, capsys)
    assert "will take about" not in err and "whole split" not in err
    assert result.validation[0].examples == 80


def test_a_diffusion_runs_phases_print_lines_and_its_few_step_validation_is_labelled_biased(
    images, tmp_path, monkeypatch, capsys, clock
):
    from genmodels.diffusion.model import DiffusionModel

    _slow(DiffusionModel, monkeypatch, clock, seconds_per_batch=0.0)
    config = TrainConfig(steps=1, eval_every=1, batch_size=16, eval_batch_size=4, num_samples=4,
                         validation_examples=8, test_examples=8, eval_options={"solver": "euler"})
    result = train("edm", images, config, tmp_path / "edm", progress=False, model_config={"channels": 8, "embedding": "scale-shift"})
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert any(line.startswith("validation edm (steps=4): ") and "elapsed" in line for line in lines)
    assert any(line.startswith("test edm (solver=euler): ") and "elapsed" in line for line in lines)
    assert any(line.startswith("sampling 4 from edm: ") for line in lines)
    # The few-step validation ODE is labelled wherever it is shown: the log line, the record
    # (best.json / results.json) and metrics.csv; the 16-step test figure is not.
    assert any("validation pf-ode-rk4" in line and "biased" in line for line in lines)
    validation = result.record["validation"][0]
    assert validation["biased"] is True and validation["note"].startswith("4-step rk4 ODE: biased")
    assert result.record["test"][0]["biased"] is False
    saved = json.loads((result.run_dir / "results.json").read_text())
    assert saved["validation"][0]["biased"] is True
    assert "validation,pf-ode-rk4_biased,1.0" in (result.run_dir / "metrics.csv").read_text()

