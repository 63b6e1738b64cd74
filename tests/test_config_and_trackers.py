"""Configs and trackers users expect: ``--config FILE`` (TOML of the recipes' schema, at any path;
``--recipe FILE.toml`` too), ``--print-config`` (the whole resolved config, which reads back to the
same run), and every tracker Accelerate drives behind ``--log-with``, with MLflow's local file store
tested for real where MLflow is installed."""

from __future__ import annotations

import json

import pytest

from genmodels.cli import main
from genmodels.trackers import TRACKER_PACKAGES, TRACKERS
from genmodels.training.config import TrainConfig

TINY = ["--steps", "3", "--eval-every", "3", "--batch-size", "32", "--num-samples", "4", "--no-progress"]


def _printed(argv, capsys) -> str:
    capsys.readouterr()
    assert main([*argv, "--print-config"]) == 0
    return capsys.readouterr().out


def test_print_config_reads_back_to_the_same_run(tmp_path, capsys):
    printed = _printed(["train", "fvsbn", "--data", "digits", *TINY, "--lr", "0.02", "--set", "rank=3",
                        "--sample-option", "temperature=0.9", "--grad-clip", "0"], capsys)
    assert 'model = "fvsbn"' in printed and "rank = 3" in printed and "grad_clip = 0" in printed
    path = tmp_path / "my config.toml"
    path.write_text(printed)
    assert _printed(["train", "--config", str(path)], capsys) == printed
    assert _printed(["train", "--recipe", str(path)], capsys) == printed  # --recipe FILE.toml: the same
    run = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(run)]) == 0
    stored = json.loads((run / "run.json").read_text())
    assert stored["model"] == "fvsbn" and stored["model_config"]["rank"] == 3
    assert TrainConfig.from_json(stored["train_config"]) == TrainConfig(
        steps=3, eval_every=3, batch_size=32, num_samples=4, lr=0.02, grad_clip=None, sample_options={"temperature": "0.9"})


def test_a_config_file_may_leave_the_model_and_data_to_the_command_line(tmp_path, capsys):
    path = tmp_path / "settings.toml"
    path.write_text("[train]\nsteps = 7\nlr = 0.005\n")
    printed = _printed(["train", "made", "--config", str(path)], capsys)
    assert 'model = "made"' in printed and 'data = "digits"' in printed and "steps = 7" in printed
    printed = _printed(["train", "made", "--config", str(path), "--steps", "9"], capsys)  # flags override the file
    assert "steps = 9" in printed and "lr = 0.005" in printed
    assert main(["train", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (f"genmodels: error: {path} names no model; add `model = \"NAME\"` to it, or name one: "
                                       "genmodels train MODEL --config FILE\n")


@pytest.mark.parametrize("content, message", [
    (None, "does not exist (or is not a file); give the path of a TOML file"),
    ("model = ", "not valid TOML"),
    ('model = "fvsbn"\n[trian]\nsteps = 3\n', "unknown keys trian"),
    ('model = "fvsbn"\n[train]\nstep = 3\n', "unknown [train] setting 'step' (the settings are the flags of `genmodels train "
     "--help`, with _ for -); did you mean 'steps'?"),
    ('model = "fvsbn"\n[train]\nlr = 0.1\n', "give a training budget"),
    ('model = "fvsbn"\ntrain = 3\n', "'train' must be a table"),
    ('model = "fvsbn"\n[train]\nsteps = 3\n[model_config]\nrnak = 2\n', "bad [model_config] for fvsbn: unknown config option(s) "
     "rnak for FVSBNConfig; valid options: l2, marginal_init, rank; did you mean 'rank'?"),
])
def test_a_bad_config_file_is_one_line(content, message, tmp_path, capsys):
    path = tmp_path / "c.toml"
    if content is not None:
        path.write_text(content)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_config_and_recipe_together_and_print_config_on_resume_are_refused(tmp_path, capsys):
    assert main(["train", "--recipe", "digits-fvsbn", "--config", "x.toml"]) == 2
    assert "give --recipe or --config, not both" in capsys.readouterr().err
    assert main(["train", "fvsbn", "--resume", "--out", str(tmp_path), "--print-config"]) == 2
    assert "--print-config shows a new run's settings" in capsys.readouterr().err


def test_every_accelerate_tracker_is_accepted():
    from accelerate.utils import LoggerType

    assert set(TRACKERS) - {"none"} == {t.value for t in LoggerType} - {"all"} == set(TRACKER_PACKAGES)
    for name in TRACKERS:
        assert TrainConfig(steps=1, log_with=name).log_with == name


@pytest.mark.parametrize("tracker", sorted(TRACKER_PACKAGES))
def test_a_tracker_whose_package_is_missing_is_one_line_with_the_pip_command(tracker, tmp_path, capsys, monkeypatch):
    import importlib.util

    modules, install = TRACKER_PACKAGES[tracker]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a))
    run = tmp_path / "run"
    assert main(["train", "fvsbn", *TINY, "--log-with", tracker, "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"genmodels: error: --log-with {tracker}: the {modules[0]} package is not installed; "
                          f"install it with `{install}`") and err.count("\n") == 1
    assert not run.exists()


def test_mlflow_logs_into_a_file_store_in_the_run_folder(digits, tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed: pip install -e '.[mlflow]'")
    from mlflow.tracking import MlflowClient

    from genmodels.training import train

    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder's mlruns/
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = TrainConfig(steps=20, eval_every=10, log_every=5, batch_size=64, num_samples=4, log_with="mlflow")
    for name in ("first", "second"):  # two runs in one process: each its own store and MLflow run
        train("fvsbn", digits, config, tmp_path / name, progress=False)
    assert not (tmp_path / "mlruns").exists()
    for name in ("first", "second"):
        client = MlflowClient(tracking_uri=(tmp_path / name / "mlruns").as_uri())
        (experiment,) = [e for e in client.search_experiments() if e.name == "genmodels"]
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.run_name == name and run.info.status == "FINISHED"
        assert run.data.params["lr"] == "0.001" and run.data.params["steps"] == "20"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [5, 10, 15, 20]
        assert {"validation/log_prob_nll", "test/log_prob_nll", "test/log_prob_bpd"} <= set(run.data.metrics)
