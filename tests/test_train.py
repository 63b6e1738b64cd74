"""The trainer: artifacts, resume, best-on-validation, EMA, several optimizers, NaN guard."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file

from genmodels.checkpoint import list_checkpoints, load_model, read_checkpoint
from genmodels.core import create_model
from genmodels.errors import UserError
from genmodels.evaluate import evaluate_likelihood
from genmodels.training import Trainer, TrainConfig, TrainingDiverged, train

from .toy_models import NoisyBound, TwoPlayer, registered


def _config(**overrides):
    defaults = dict(steps=30, eval_every=10, batch_size=64, lr=3e-3, num_samples=16)
    return TrainConfig(**{**defaults, **overrides})


def test_training_writes_every_artifact(digits, tmp_path):
    result = train("fvsbn", digits, _config(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("metrics.csv", "run.json", "results.json", "samples.png", "loss_curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert {r["split"] for r in rows} == {"train", "validation", "test"}
    train_steps = [int(r["step"]) for r in rows if r["split"] == "train" and r["metric"] == "loss"]
    assert train_steps == [10, 20, 30]
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert result.best_checkpoint.name == best["checkpoint"]
    results = json.loads((run / "results.json").read_text())
    assert results["test"][0]["kind"] == "exact"
    assert results["test"][0]["bits_per_dim"] == result.test[0].bits_per_dim
    # Every file of a checkpoint is safetensors or JSON.
    for file in result.best_checkpoint.iterdir():
        assert file.suffix in (".safetensors", ".json"), file


def test_best_checkpoint_is_chosen_on_validation_not_test(digits, tmp_path):
    result = train("fvsbn", digits, _config(steps=40, lr=3e-2), tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    validation = {int(r["step"]): float(r["value"]) for r in rows if r["split"] == "validation" and r["metric"] == "log_prob_nll"}
    best_step = min(validation, key=validation.get)
    assert result.best_checkpoint.name == f"step-{best_step:09d}"
    assert result.validation[0].nll_nats == pytest.approx(validation[best_step], rel=1e-12)


def test_validation_options_choose_the_checkpoint_by_the_reported_measure(digits, tmp_path):
    """validation_options=marginal=true: validation records the label-marginal NLL first and the best
    checkpoint is the step where *it* is lowest; a wrong option is refused by name."""
    config = _config(steps=30, eval_every=5, lr=3e-2, validation_options={"marginal": "true"}, eval_options={"marginal": "true"})
    result = train("nade", digits, config, tmp_path / "run", progress=False, model_config={"conditional": True, "hidden": 8})
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    marginal = {int(r["step"]): float(r["value"]) for r in rows if r["split"] == "validation" and r["metric"] == "log_prob_marginal_nll"}
    given = {int(r["step"]): float(r["value"]) for r in rows if r["split"] == "validation" and r["metric"] == "log_prob_nll"}
    assert sorted(marginal) == sorted(given) == list(range(0, 31, 5))
    best = min(marginal, key=marginal.get)
    assert result.best_checkpoint.name == f"step-{best:09d}"
    assert result.validation[0].measure == "log_prob_marginal"
    assert result.validation[0].nll_nats == pytest.approx(marginal[best], rel=1e-12)
    assert result.test[0].measure == "log_prob_marginal"
    with pytest.raises(UserError, match="tolerance"):
        train("nade", digits, _config(steps=2, validation_options={"tolerance": "1"}), tmp_path / "bad", progress=False)


def test_select_measure_chooses_the_checkpoint_by_that_validation_record(digits, tmp_path):
    """Two validation records that disagree: the headline bound improves with training while the
    second measure worsens. By default the headline picks the last step; ``select_measure="ode"``
    picks the step where *ode* is lowest (step 0); an unknown measure is refused by name."""
    def validation_series(run, metric):
        rows = list(csv.DictReader(open(run / "metrics.csv")))
        return {int(r["step"]): float(r["value"]) for r in rows if r["split"] == "validation" and r["metric"] == metric}

    with registered("noisy-bound", NoisyBound):
        settings = dict(steps=20, eval_every=5, lr=3e-2)
        model_config = {"ode_sign": -1.0}
        by_headline = train("noisy-bound", digits, _config(**settings), tmp_path / "a", model_config=model_config, progress=False)
        by_ode = train("noisy-bound", digits, _config(**settings, select_measure="ode"), tmp_path / "b",
                       model_config=model_config, progress=False)
        bound, ode = validation_series(tmp_path / "b", "noisy_bound_nll"), validation_series(tmp_path / "b", "ode_nll")
        assert min(bound, key=bound.get) == 20 and min(ode, key=ode.get) == 0  # they disagree
        assert by_headline.best_checkpoint.name == "step-000000020"
        assert by_ode.best_checkpoint.name == f"step-{min(ode, key=ode.get):09d}"
        with pytest.raises(UserError, match="select_measure=iwae: 'noisy-bound' reports no such validation record; its measures are noisy_bound, ode"):
            train("noisy-bound", digits, _config(steps=2, select_measure="iwae"), tmp_path / "c", progress=False)
        assert not (tmp_path / "c").exists()  # refused before anything was written: the folder stays free
    with pytest.raises(UserError, match="cannot go with select_by=fd"):
        TrainConfig(steps=2, select_by="fd", select_measure="iwae")


@pytest.mark.parametrize("setting, message", [
    ({"eval_options": {"kk": "5"}}, "no likelihood option 'kk'"),
    ({"validation_options": {"kk": "5"}}, "no likelihood option 'kk'"),
    ({"sample_options": {"temprature": "0.5"}}, "no sampling option 'temprature'"),
])
def test_a_misspelt_option_is_refused_before_training_and_writes_nothing(digits, tmp_path, setting, message):
    """The test options are used only after the whole training; a typo there must not cost the run."""
    with pytest.raises(UserError, match=message):
        train("fvsbn", digits, _config(steps=2, **setting), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_refuses_to_overwrite_a_run_and_resume_needs_one(digits, tmp_path):
    train("fvsbn", digits, _config(steps=10), tmp_path / "run", progress=False)
    before = sorted(p.name for p in list_checkpoints(tmp_path / "run"))
    with pytest.raises(UserError, match="resume=True"):
        train("fvsbn", digits, _config(steps=10), tmp_path / "run", progress=False)
    assert sorted(p.name for p in list_checkpoints(tmp_path / "run")) == before
    # Nothing trained yet: resume starts the run from the beginning (tests/test_restart.py).
    assert train("fvsbn", digits, _config(steps=10), tmp_path / "empty", resume=True, progress=False).steps == 10


def _final_state(run_dir):
    return read_checkpoint(list_checkpoints(run_dir)[-1]).model_state


@pytest.mark.parametrize("data_name", ["digits", "binary-digits-dynamic"])
def test_resume_is_bit_exact(tmp_path, data_name):
    """20 + 20 steps with a resume in between equals 40 uninterrupted steps, bit for bit —
    also with RNG in the loss (NoisyBound), EMA, and data redrawn each epoch (dynamic binarization)."""
    from genmodels.data import load_dataset

    data = load_dataset(data_name)
    with registered("noisy-bound", NoisyBound):
        config = dict(eval_every=7, batch_size=100, ema_decay=0.9)  # 7 ∤ 20: resume mid-epoch, mid-interval
        train("noisy-bound", data, _config(steps=40, **config), tmp_path / "straight", progress=False)
        train("noisy-bound", data, _config(steps=20, **config), tmp_path / "split", progress=False)
        train("noisy-bound", data, _config(steps=40, **config), tmp_path / "split", resume=True, progress=False)
        straight, split = _final_state(tmp_path / "straight"), _final_state(tmp_path / "split")
        assert straight.keys() == split.keys()
        for key in straight:
            assert torch.equal(straight[key], split[key]), key
        ema_a = load_file(list_checkpoints(tmp_path / "straight")[-1] / "ema.safetensors")
        ema_b = load_file(list_checkpoints(tmp_path / "split")[-1] / "ema.safetensors")
        assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
        # Evaluations at the same steps agree too (the split run also evaluated at its stop, step 20).
        rows_a = [r for r in csv.DictReader(open(tmp_path / "straight" / "metrics.csv")) if r["split"] != "train"]
        rows_b = [r for r in csv.DictReader(open(tmp_path / "split" / "metrics.csv")) if r["split"] != "train" and r["step"] != "20"]
        assert [(r["step"], r["metric"], r["value"]) for r in rows_a] == [(r["step"], r["metric"], r["value"]) for r in rows_b]
        assert len(rows_a) > 10


def test_ema_weights_are_used_for_evaluation(digits, tmp_path):
    result = train("fvsbn", digits, _config(steps=20, ema_decay=0.5), tmp_path / "run", progress=False)
    ckpt = read_checkpoint(result.best_checkpoint)
    assert ckpt.ema_state is not None
    assert not torch.equal(ckpt.ema_state["weight"], ckpt.model_state["weight"])
    ema_model, _ = load_model(result.best_checkpoint)
    raw_model, _ = load_model(result.best_checkpoint, use_ema=False)
    assert torch.equal(ema_model.weight, ckpt.ema_state["weight"])
    assert torch.equal(raw_model.weight, ckpt.model_state["weight"])
    assert evaluate_likelihood(ema_model, digits.test)[0].nll_nats == pytest.approx(result.test[0].nll_nats, rel=1e-12)


def test_bound_is_reported_as_a_bound_with_its_samples(digits, tmp_path):
    with registered("noisy-bound", NoisyBound):
        result = train("noisy-bound", digits, _config(steps=10), tmp_path / "run", progress=False)
    record, estimate = result.test
    assert record.kind == "bound" and record.measure == "noisy_bound" and record.samples == 2
    assert estimate.kind == "estimate" and estimate.evaluations is not None
    assert record.kind_label == "bound (k=2)"
    assert "log_p" in record.terms_nats


def test_two_optimizers_are_stepped_in_turn_and_no_likelihood_is_claimed(digits, tmp_path):
    with registered("two-player", TwoPlayer):
        model = create_model("two-player", digits.spec)
        trainer = Trainer(model, digits, _config(steps=6, eval_every=3, select_by="latest"), tmp_path / "run", progress=False)
        result = trainer.fit()
        assert model.calls == ["critic", "generator"] * 6
        assert result.test == [] and result.validation == []
        assert result.best_checkpoint.name == "step-000000006"  # no likelihood: the latest is kept
        rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
        metrics = {r["metric"] for r in rows if r["split"] == "train"}
        assert {"critic/loss", "generator/loss", "critic/critic_gap", "generator/fake_score"} <= metrics
        assert not any(r["metric"].endswith("_bpd") for r in rows)
        trainer_state = read_checkpoint(result.best_checkpoint, with_trainer_state=True).trainer_state
        assert set(trainer_state["optimizers"]) == {"critic", "generator"}


def test_nan_loss_stops_training_and_keeps_earlier_checkpoints(digits, tmp_path):
    """With --nan-tolerance 0 the first non-finite loss stops training (tests/test_reliability.py
    covers the skips and roll-backs of the default tolerance)."""
    with registered("noisy-bound", NoisyBound):
        with pytest.raises(TrainingDiverged, match="group 'model' was NaN or infinite at step 15; training stopped"):
            train("noisy-bound", digits, _config(steps=30, nan_tolerance=0), tmp_path / "run",
                  model_config={"diverge_at": 15}, progress=False)
    names = [p.name for p in list_checkpoints(tmp_path / "run")]
    assert names[-1] == "step-000000010"
    read_checkpoint(tmp_path / "run" / "checkpoints" / names[-1])  # intact


def test_closed_form_model_trains_no_steps(digits, tmp_path):
    result = train("independent", digits, _config(steps=50), tmp_path / "run", progress=False)
    assert result.steps == 0
    assert result.best_checkpoint.name == "step-000000000"


def test_epoch_and_minute_budgets(digits, tmp_path):
    result = train("fvsbn", digits, TrainConfig(epochs=2, batch_size=256, eval_every=100), tmp_path / "a", progress=False)
    assert result.steps == 2 * (len(digits.train) // 256)
    result = train("fvsbn", digits, TrainConfig(minutes=0.0, eval_every=100), tmp_path / "b", progress=False)
    assert result.steps == 1  # a zero-minute budget still takes the step it started
    with pytest.raises(UserError, match="budget"):
        TrainConfig()


def test_bf16_mixed_precision_runs_on_cpu_in_its_own_process(tmp_path):
    """Accelerate keeps one precision per process: bf16 runs in a process of its own (the CLI), and
    a second precision in this process is refused with the fix instead of a private reset."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "genmodels.cli", "train", "fvsbn", "--steps", "5", "--eval-every", "5",
         "--mixed-precision", "bf16", "--out", str(tmp_path / "bf16"), "--no-progress"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert results["test"][0]["nll_nats"] > 0


def test_two_processes_share_the_work_through_torch_distributed(tmp_path):
    """torchrun with 2 CPU processes (gloo): one run folder, written once, twice the examples per step."""
    import os
    import subprocess
    import sys

    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "genmodels.cli",
         "train", "fvsbn", "--steps", "10", "--eval-every", "5", "--batch-size", "32", "--out", str(run), "--no-progress"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("best-on-validation checkpoint") == 1
    assert json.loads((run / "run.json").read_text())["processes"] == 2
    results = json.loads((run / "results.json").read_text())
    assert results["examples_seen"] == 10 * 32 * 2
    assert [p.name for p in list_checkpoints(run)] == ["step-000000005", "step-000000010"]


def test_resume_keeps_the_first_invocation_and_appends_the_next(digits, tmp_path):
    train("fvsbn", digits, _config(steps=10), tmp_path / "run", progress=False)
    first = json.loads((tmp_path / "run" / "run.json").read_text())
    train("fvsbn", digits, _config(steps=20), tmp_path / "run", resume=True, progress=False)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["train_config"] == first["train_config"]
    assert [(r["from_step"], r["train_config"]["steps"]) for r in record["resumed"]] == [(10, 20)]


def test_continuous_data_trains_evaluates_and_plots(tmp_path):
    """The toy 2-D path: float batches, a density in nats, a scatter plot of samples."""
    import math

    from genmodels.data import load_dataset
    from genmodels.data.toy2d import ANALYTIC_DENSITIES

    from .toy_models import GaussianDensity

    data = load_dataset("eight-gaussians")
    with registered("gaussian", GaussianDensity):
        result = train("gaussian", data, _config(steps=300, lr=0.05, eval_every=100, batch_size=500), tmp_path / "run", progress=False)
    [record] = result.test
    floor = ANALYTIC_DENSITIES["eight-gaussians"].entropy
    # One Gaussian fitted to the mixture: its best NLL is the entropy of the moment-matched Gaussian,
    # ln(2πe) + ln(var) with var = 4²/2 + 0.5² per axis, above the mixture's entropy.
    moment_matched = math.log(2 * math.pi * math.e) + math.log(4**2 / 2 + 0.5**2)
    assert floor < moment_matched
    assert record.kind == "exact" and record.nll_nats == pytest.approx(moment_matched, abs=0.05)
    assert (tmp_path / "run" / "samples.png").is_file()


def test_a_folder_with_other_files_is_not_written_into(digits, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already holds files"):
        train("fvsbn", digits, _config(steps=5), tmp_path / "run", progress=False)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    train("fvsbn", digits, _config(steps=5), tmp_path / "empty", progress=False)  # an empty folder is fine


def test_a_model_without_likelihood_chooses_its_checkpoint_by_fd_of_its_samples(digits, tmp_path):
    """Kind none on an image data set with a feature network: FD (genmodels features) of samples on
    the validation split chooses the best checkpoint (lower is better), and says so."""
    with registered("two-player", TwoPlayer):
        result = train("two-player", digits, _config(steps=6, eval_every=3, fd_samples=64), tmp_path / "run", progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    fd = {int(r["step"]): float(r["value"]) for r in rows if r["metric"] == "fd_genmodels_features"}
    assert sorted(fd) == [0, 3, 6]
    best_step = min(fd, key=fd.get)
    assert result.best_checkpoint.name == f"step-{best_step:09d}"
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["selected_by"].startswith("validation FD (genmodels features)")
    assert best["value"] == pytest.approx(fd[best_step])


def test_resume_accepts_the_model_config_it_was_trained_with_tuples_included(digits, tmp_path):
    """A tuple field (nice's hidden) is stored as a JSON list; the same --set on --resume is no change."""
    from genmodels.training import plan_resume

    train("nice", digits, _config(steps=1), tmp_path / "run", model_config={"hidden": (16, 16)}, progress=False)
    plan = plan_resume(tmp_path / "run", "nice", digits, None, model_config={"hidden": (16, 16)})
    assert plan.model_config["hidden"] == [16, 16]
    with pytest.raises(UserError, match="config differs"):
        plan_resume(tmp_path / "run", "nice", digits, None, model_config={"hidden": (16, 8)})
