"""Running ``genmodels`` in several processes on one machine (``--num-processes``), processes
that end with their launcher, and joining the process group under torchrun / accelerate launch."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import UserError

__all__ = ["launch_processes", "without_num_processes", "join_processes", "end_with_launcher"]


def without_num_processes(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--num-processes":
            skip = True
        elif not arg.startswith("--num-processes="):
            out.append(arg)
    return out


#: Set by the launcher in each worker's environment: the launcher's PID, which the worker watches.
LAUNCHER_PID = "GENMODELS_LAUNCHER_PID"
#: Seconds the other processes get to exit by themselves once one process died, before SIGKILL.
STOP_GRACE_SECONDS = 5.0


def launch_processes(n: int, argv: list[str]) -> int:
    """Run ``genmodels`` with ``argv`` in ``n`` processes forming one process group on this machine
    (the environment torchrun gives: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT; Accelerate reads
    it), and return the exit status: the one that died first, else the first process's.

    The launcher owns its processes: each ends when the launcher dies, even by SIGKILL
    (:func:`end_with_launcher`); when one process dies, the others (which would wait for it in the
    next collective) get :data:`STOP_GRACE_SECONDS` to exit, are then killed, and one line names the
    process that died. The first process reports; the others' output is kept only to show why one of
    them failed. SIGTERM and SIGINT are passed on (each process checkpoints and stops; see
    training.loop).
    """
    import os
    import signal
    import socket
    import subprocess
    import tempfile

    import genmodels

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--num-processes inside torchrun/accelerate launch: give one or the other")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = str(Path(genmodels.__file__).resolve().parents[1])  # the same genmodels in every process
    path = os.pathsep.join(x for x in (source, os.environ.get("PYTHONPATH")) if x)
    procs, logs = [], []
    for rank in range(n):
        env = {**os.environ, "PYTHONPATH": path, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n),
               LAUNCHER_PID: str(os.getpid())}
        log = None if rank == 0 else tempfile.TemporaryFile()
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "genmodels.cli", *argv], env=env,
                                      stdout=None if rank == 0 else subprocess.DEVNULL, stderr=log))
    forwarded = []

    def forward(signum, frame):
        forwarded.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        died, killed = _wait_for(procs, forwarded)
    finally:
        signal.signal(signal.SIGTERM, previous)
    codes = [proc.returncode for proc in procs]
    if died is not None:
        code = codes[died]
    else:
        code = codes[0] if codes[0] != 0 else next((c for c in codes if c != 0), 0)
    for rank, log in enumerate(logs):
        if log is not None:
            if rank == died:  # why it failed (the first process's output is already on the terminal)
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-20:]
                if tail:
                    print(*tail, sep="\n", file=sys.stderr)
            log.close()
    if died is not None:
        stopped = "; the others were stopped" if killed else ""
        print(f"genmodels: process {died} of {n} {_described(codes[died])}{stopped}", file=sys.stderr)
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + its number


def _wait_for(procs: list, forwarded: list[int]) -> tuple[int | None, bool]:
    """Wait until every process has exited. Returns the rank of the first that failed on its own
    (None: none did, or they stopped on a signal the launcher passed on, which they all obey), and
    whether the launcher had to kill the others."""
    died, failed_at, killed = None, None, False
    while True:
        try:
            codes = [proc.poll() for proc in procs]
            if all(c is not None for c in codes):
                return died, killed
            if failed_at is None and any(c not in (None, 0) for c in codes):
                failed_at = time.monotonic()
                if not forwarded:
                    died = next(rank for rank, c in enumerate(codes) if c not in (None, 0))
            # The others wait for the dead one in their next collective: they get a grace period to
            # exit by themselves (gloo may notice the lost peer), then are killed. After a signal
            # passed on, 30 s for every process to reach its checkpoint.
            grace = STOP_GRACE_SECONDS if died is not None else 30.0
            if failed_at is not None and time.monotonic() - failed_at > grace:
                for proc in procs:
                    if proc.poll() is None:
                        proc.kill()
                        killed = True
            time.sleep(0.1)
        except KeyboardInterrupt:  # the processes got the Ctrl-C too: they checkpoint and stop
            forwarded.append(2)
            continue


def _described(code: int) -> str:
    import signal

    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def end_with_launcher() -> None:
    """In a process started by :func:`launch_processes`: end (SIGKILL) as soon as the launcher dies,
    whatever killed it, so that no process is left training, holding the run's lock or a port.

    Linux delivers a parent-death signal (``prctl(PR_SET_PDEATHSIG)``, through ctypes); elsewhere, or
    if that call fails, a daemon thread polls the parent's PID twice a second. Both check the
    parent once set up, in case the launcher died before. Checkpoints already written stay intact
    (they are written atomically), and ``--resume`` continues from the last one.
    """
    import os
    import signal
    import threading

    launcher = os.environ.pop(LAUNCHER_PID, None)  # not inherited by anything this process starts
    if launcher is None:
        return
    launcher_pid = int(launcher)
    if not _parent_death_signal(signal.SIGKILL):

        def watch() -> None:
            while os.getppid() == launcher_pid:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=watch, name="genmodels-launcher-watch", daemon=True).start()
    if os.getppid() != launcher_pid:  # it died before the signal was asked for
        os.kill(os.getpid(), signal.SIGKILL)


def _parent_death_signal(signum: int) -> bool:
    """Ask Linux to send ``signum`` to this process when its parent dies; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def join_processes() -> bool:
    """Under torchrun / accelerate launch (WORLD_SIZE > 1), join the process group so that
    evaluation is shared (gloo on CPUs); returns whether this is the process that reports."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    import torch
    from accelerate import PartialState

    from ..training.accelerator import leave_process_group_at_exit

    state = PartialState(cpu=not torch.cuda.is_available())
    leave_process_group_at_exit()
    return state.is_main_process
