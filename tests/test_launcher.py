"""`genmodels train --num-processes N` owns its processes: killing the launcher (SIGKILL included)
ends them within seconds, and a process that dies stops the others and makes the launcher exit
non-zero with one line naming it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads processes from /proc")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children(pid: int) -> dict[int, int]:
    """The live children of ``pid`` that carry a RANK, as {rank: pid}."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        rank = next((v[5:] for v in environ if v.startswith(b"RANK=")), None)
        if ppid == pid and rank is not None and _alive(int(entry.name)):
            found[int(rank)] = int(entry.name)
    return found


def _start_training(tmp_path: Path) -> tuple[subprocess.Popen, dict[int, int]]:
    """A 2-process training with a budget far beyond the test, once both processes train."""
    run = tmp_path / "run"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "genmodels.cli", "train", "fvsbn", "--steps", "1000000", "--eval-every", "1000000",
         "--batch-size", "8", "--num-processes", "2", "--no-progress", "--out", str(run)],
        env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 240
    while not (run / "checkpoints" / "step-000000000").exists():  # written once both processes joined
        assert launcher.poll() is None, launcher.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the training did not start"
        time.sleep(0.2)
    workers = _children(launcher.pid)
    assert sorted(workers) == [0, 1]
    return launcher, workers


def test_killing_the_launcher_ends_its_processes(tmp_path):
    launcher, workers = _start_training(tmp_path)
    launcher.kill()  # SIGKILL: the launcher cannot pass anything on
    launcher.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in workers.values() if _alive(pid)]
    for pid in left:  # leave nothing behind, even when failing
        os.kill(pid, signal.SIGKILL)
    assert not left, "processes outlived their launcher by 10 s"


def test_a_process_that_dies_stops_the_others_and_the_launcher_names_it(tmp_path):
    launcher, workers = _start_training(tmp_path)
    os.kill(workers[1], signal.SIGKILL)
    try:
        _, stderr = launcher.communicate(timeout=120)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 128 + signal.SIGKILL
    assert stderr.strip().splitlines()[-1].startswith("genmodels: process 1 of 2 was killed by SIGKILL")
    assert not _alive(workers[0])


def test_the_watchdog_ends_a_process_whose_launcher_died_where_no_death_signal_exists(tmp_path):
    """The fallback of systems without prctl: a thread polling the parent's PID."""
    worker = textwrap.dedent("""
        import time
        from genmodels.cli import launcher
        launcher._parent_death_signal = lambda signum: False
        launcher.end_with_launcher()
        time.sleep(120)
    """)
    parent = textwrap.dedent(f"""
        import os, subprocess, sys, time
        env = {{**os.environ, "GENMODELS_LAUNCHER_PID": str(os.getpid())}}
        child = subprocess.Popen([sys.executable, "-c", {worker!r}], env=env)
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    launcher = subprocess.Popen([sys.executable, "-c", parent], env=_env(), stdout=subprocess.PIPE, text=True)
    child = int(launcher.stdout.readline())
    time.sleep(3)  # the child has imported genmodels and started watching
    assert _alive(child)
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("the watchdog did not end the process within 10 s")
