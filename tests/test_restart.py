"""Restarts that just work: ``train … --resume`` on a run stopped before its first checkpoint starts
it from the beginning (and ends as the run alone would), and the command printed on Ctrl-C or
SIGTERM continues the run when pasted as it is."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genmodels.cli import main

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
TINY = ["train", "fvsbn", "--data", "digits", "--steps", "40", "--eval-every", "20", "--log-every", "10",
        "--batch-size", "32", "--num-samples", "4", "--no-progress"]


class _Killed(BaseException):
    """Stands for SIGKILL: nothing in genmodels catches it."""


def _metric_rows(run: Path) -> list[tuple]:
    """metrics.csv without its seconds column (wall time differs between runs)."""
    with open(run / "metrics.csv", newline="") as handle:
        return [(r["step"], r["epoch"], r["examples"], r["split"], r["metric"], r["value"]) for r in csv.DictReader(handle)]


def _figures(run: Path) -> object:
    results = json.loads((run / "results.json").read_text())
    return results["test"], results.get("test_figures"), results["steps"], Path(str(results["best_checkpoint"])).name


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("alone") / "run"
    assert main([*TINY, "--out", str(run)]) == 0
    return run


def _killed_before_its_first_checkpoint(run: Path, monkeypatch) -> None:
    """Run TINY into ``run`` and die while the first checkpoint (step 0) is being written: run.json
    and metrics.csv are there, and a partial temporary checkpoint folder."""
    import genmodels.training.loop as loop

    def die(run_dir, name, *args, **kwargs):
        partial = Path(run_dir) / "checkpoints" / f".tmp-{name}-99999"
        partial.mkdir(parents=True)
        (partial / "model.safetensors").write_bytes(b"half")
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(loop, "write_checkpoint", die)
        with pytest.raises(_Killed):
            main([*TINY, "--out", str(run)])
    assert (run / "run.json").is_file() and not list((run / "checkpoints").glob("step-*"))


@pytest.mark.parametrize("command", ["the same command with --resume", "train --resume --out RUN"])
def test_a_run_killed_before_its_first_checkpoint_restarts_and_ends_as_the_run_alone(command, alone, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _killed_before_its_first_checkpoint(run, monkeypatch)
    capsys.readouterr()
    again = [*TINY, "--resume", "--out", str(run)] if command.startswith("the same") else \
        ["train", "--resume", "--out", str(run), "--no-progress"]
    assert main(again) == 0
    err = capsys.readouterr().err
    assert f"genmodels: {run} holds no checkpoint yet (it stopped before its first); starting the run from the beginning\n" in err
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert _metric_rows(run) == _metric_rows(alone)
    assert _figures(run) == _figures(alone)
    record = json.loads((run / "run.json").read_text())
    assert record["restarted"] == "no checkpoint yet: started from the beginning" and "resumed" not in record


def test_resume_of_an_empty_or_new_folder_starts_the_run(tmp_path, capsys):
    run = tmp_path / "new"
    assert main([*TINY[:5], "3", "--eval-every", "3", "--batch-size", "32", "--num-samples", "4", "--no-progress",
                 "--resume", "--out", str(run)]) == 0
    assert "starting the run from the beginning" in capsys.readouterr().err
    assert json.loads((run / "results.json").read_text())["steps"] == 3


def test_resume_refuses_what_it_cannot_restart(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    assert main([*TINY, "--resume", "--out", str(other)]) == 2
    err = capsys.readouterr().err
    assert err == (f"genmodels: error: --resume: {other} holds no checkpoint and no run.json but other files (thesis.tex); "
                   "it is not a genmodels run: --out another folder (nothing is overwritten)\n")
    assert [p.name for p in other.iterdir()] == ["thesis.tex"]
    assert main(["train", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == (
        f"genmodels: error: --resume: {tmp_path / 'nothing'} holds no checkpoint and no run.json to restart from; name the "
        "model and its budget (genmodels train MODEL --steps N … --resume --out RUN)\n")
    assert main(["train", "--resume"]) == 2
    assert "--resume needs --out RUN_FOLDER" in capsys.readouterr().err


def test_a_run_started_on_other_data_is_not_restarted_on_these(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    _killed_before_its_first_checkpoint(run, monkeypatch)
    before = sorted(p.name for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["train", "made", "--data", "digits", "--steps", "4", "--resume", "--out", str(run)]) == 2
    assert capsys.readouterr().err == f"genmodels: error: --resume: {run} trains 'fvsbn', not 'made'\n"
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing removed before the refusal


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_the_command_printed_on_an_interruption_continues_the_run_as_printed(signum, tmp_path):
    """The interrupted run prints `continue with: COMMAND`; COMMAND, run as it is (`genmodels` being
    this Python's), finishes the run."""
    run = tmp_path / "my run"  # a space: the printed command quotes it
    steps = 600
    child = subprocess.Popen([sys.executable, "-m", "genmodels.cli", *TINY[:5], str(steps), "--eval-every", "200",
                              "--log-every", "5", "--batch-size", "32", "--num-samples", "4", "--no-progress",
                              "--out", str(run)],
                             env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    metrics = run / "metrics.csv"
    while not (metrics.is_file() and ",train," in metrics.read_text()):  # the loop runs, its handler installed
        assert child.poll() is None and time.monotonic() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.02)
    child.send_signal(signum)
    _, err = child.communicate(timeout=240)
    assert child.returncode == 128 + signum, err
    command = err.rsplit("continue with: ", 1)[1].strip()
    assert command == f"genmodels train --resume --out '{run}'"
    argv = shlex.split(command)
    assert argv[0] == "genmodels"
    done = subprocess.run([sys.executable, "-m", "genmodels.cli", *argv[1:]], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["steps"] == steps and results["model"] == "fvsbn"
