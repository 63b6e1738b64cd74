"""The run folder's lock: a second writer is refused in one line naming the holder, the first
writer's run is the run it would have been alone, a lock left by a dead process is taken over with a
note, and the lock is released on every way out (return, UserError, SIGTERM)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genmodels.cli import main
from genmodels.errors import UserError
from genmodels.runlock import LOCK_NAME, hold_run_lock, release_run_lock
from genmodels.training.rundir import check_run_dir

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
TINY = ["train", "fvsbn", "--data", "digits", "--steps", "40", "--eval-every", "20", "--log-every", "10",
        "--batch-size", "32", "--num-samples", "4", "--no-progress"]


def _wait_for(condition, what: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _metric_rows(run: Path) -> list[tuple]:
    """metrics.csv without its seconds column (wall time differs between runs)."""
    with open(run / "metrics.csv", newline="") as handle:
        return [(r["step"], r["epoch"], r["examples"], r["split"], r["metric"], r["value"]) for r in csv.DictReader(handle)]


def _figures(run: Path) -> object:
    results = json.loads((run / "results.json").read_text())
    return results.get("test"), Path(str(results.get("best_checkpoint"))).name


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_writer_is_refused_in_one_line_and_the_first_run_is_as_if_alone(tmp_path, capsys):
    """The first `train --out X` is paused (SIGSTOP) while it holds X's lock, so that the second
    surely starts during it: the second exits 2 with one line naming the first's pid and host, and
    writes nothing; the first, continued, ends exactly as the same run alone (metrics and figures)."""
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "genmodels.cli", *TINY, "--out", str(run)], env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: (run / "metrics.csv").exists() or first.poll() is not None, "the first run to start")
        assert first.poll() is None, first.stderr.read()
        first.send_signal(signal.SIGSTOP)
        lock = json.loads((run / LOCK_NAME).read_text())
        assert lock["pid"] == first.pid and lock["host"] == socket.gethostname()
        files = sorted(p.name for p in run.rglob("*"))
        second = subprocess.run([sys.executable, "-m", "genmodels.cli", *TINY, "--out", str(run)], env=ENV,
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 2
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert second.stderr.startswith(f"genmodels: error: {run} is in use by pid {first.pid} on host "
                                        f"{socket.gethostname()} since {lock['since']} (another genmodels run")
        assert sorted(p.name for p in run.rglob("*")) == files
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert not (run / LOCK_NAME).exists()
    alone = tmp_path / "alone"
    subprocess.run([sys.executable, "-m", "genmodels.cli", *TINY, "--out", str(alone)], env=ENV, check=True,
                   capture_output=True, timeout=600)
    assert _metric_rows(run) == _metric_rows(alone)
    assert _figures(run) == _figures(alone)


def test_a_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    pid = _dead_pid()
    (run / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "start": "1",
                                             "since": "2026-01-01 00:00:00 UTC"}))
    capsys.readouterr()
    assert check_run_dir(run, resume=False) is None
    err = capsys.readouterr().err
    assert err == (f"genmodels: {run} was locked by pid {pid} on host {socket.gethostname()} since 2026-01-01 00:00:00 UTC, "
                   "which ended without releasing it; took the lock over\n")
    assert json.loads((run / LOCK_NAME).read_text())["pid"] == os.getpid()
    release_run_lock(run)
    assert run.is_dir() and list(run.iterdir()) == []  # the folder was there before: it stays


_HOLDER = """
import sys, time
from genmodels.runlock import hold_run_lock
hold_run_lock(sys.argv[1])
print("held", flush=True)
time.sleep(600)
"""


def _holder(run: Path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_a_live_holder_is_named_and_its_end_frees_the_folder(tmp_path, capsys, how):
    """While another process holds the lock, the folder is refused naming it; SIGTERM releases the
    lock (the file goes); after SIGKILL the kernel has released it and the next writer takes the
    leftover file over with a note."""
    run = tmp_path / "run"
    holder = _holder(run)
    try:
        with pytest.raises(UserError, match=rf"^{run} is in use by pid {holder.pid} on host {socket.gethostname()} since .*; "
                                            rf"wait for it to finish or stop it, or run_dir=another folder"):
            check_run_dir(run, resume=False)
        assert not list(run.glob("step-*")) and sorted(p.name for p in run.iterdir()) == [LOCK_NAME]
    finally:
        holder.send_signal(getattr(signal, how))
        holder.wait(timeout=60)
    capsys.readouterr()
    assert (run / LOCK_NAME).exists() == (how == "SIGKILL")
    assert check_run_dir(run, resume=False) is None
    assert ("took the lock over" in capsys.readouterr().err) == (how == "SIGKILL")
    release_run_lock(run)


def test_the_lock_is_released_when_the_folder_is_refused_and_a_created_folder_goes(tmp_path):
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="holds no checkpoint and no run.json but other files"):
        check_run_dir(tmp_path / "other", resume=True)
    assert sorted(p.name for p in (tmp_path / "other").iterdir()) == ["notes.txt"]
    assert check_run_dir(tmp_path / "new" / "deeper" / "run", resume=True) is None  # starts from the beginning
    release_run_lock(tmp_path / "new" / "deeper" / "run")
    assert not (tmp_path / "new").exists()
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="already holds files"):
        check_run_dir(used, resume=False)
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]


def test_the_lock_is_released_when_training_stops_with_a_user_error(digits, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "fvsbn", "--data", "digits", "--steps", "1", "--sample-option", "nope=1", "--out", str(run)]) == 2
    assert not run.exists()
    assert main([*TINY[:5], "2", "--eval-every", "1", "--batch-size", "32", "--num-samples", "4", "--out", str(run)]) == 0
    assert not (run / LOCK_NAME).exists()


def test_only_the_main_process_takes_the_lock_and_it_is_reentrant(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert hold_run_lock(tmp_path / "run") is False and not (tmp_path / "run").exists()
    monkeypatch.setenv("RANK", "0")
    assert hold_run_lock(tmp_path / "run") is True
    assert hold_run_lock(tmp_path / "run") is False  # this process holds it already
    assert check_run_dir(tmp_path / "run", resume=False) is None  # the lock file alone is not "files"
    release_run_lock(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_eval_and_sample_read_a_run_being_written_consistently_or_say_why_not(tmp_path, capsys, monkeypatch):
    """While a train holds the run's lock, eval and sample read its best checkpoint with a one-line
    note naming the writer; a read that the writer's changes break (the best checkpoint pruned
    between best.json and its files) is read again; reads that keep failing end in one line, exit 2."""
    from genmodels import checkpoint, runlock

    run = tmp_path / "run"
    assert main(["train", "independent", "--steps", "1", "--num-samples", "4", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert runlock.run_writer(run) is None  # finished: nobody writes it
    holder = _holder(run)
    try:
        writer = runlock.run_writer(run / "checkpoints" / "step-000000000")  # a checkpoint folder of the run
        assert writer["pid"] == holder.pid
        assert main(["sample", str(run), "-n", "4", "--out", str(tmp_path / "s.png")]) == 0
        err = capsys.readouterr().err
        assert err.startswith(f"genmodels: {run} is being written by pid {holder.pid} on host ") and err.count("\n") == 1
        real, calls = checkpoint._read_checkpoint, []

        def pruned_once(path, with_trainer_state):
            calls.append(path)
            if len(calls) == 1:
                raise UserError(f"{path}/checkpoints/step-000000000/model.safetensors is corrupt or truncated")
            return real(path, with_trainer_state)

        monkeypatch.setattr(checkpoint, "_read_checkpoint", pruned_once)
        monkeypatch.setattr(runlock, "READ_PAUSE_SECONDS", 0.0)
        assert main(["eval", str(run)]) == 0 and len(calls) == 2  # read again, consistently
        capsys.readouterr()

        def always_pruned(path, with_trainer_state):
            raise UserError("model.safetensors is corrupt or truncated")

        monkeypatch.setattr(checkpoint, "_read_checkpoint", always_pruned)
        assert main(["eval", str(run)]) == 2
        err = capsys.readouterr().err.splitlines()
        assert err[-1].startswith(f"genmodels: error: {run} is being written by pid {holder.pid}")
        assert "changed during each of 5 reads (model.safetensors is corrupt or truncated); wait for the run" in err[-1]
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=60)
    assert runlock.run_writer(run) is None
