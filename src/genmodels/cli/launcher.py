"""Running ``genmodels`` in several processes on one machine (``--num-processes``), and joining
the process group under torchrun / accelerate launch."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..errors import UserError

__all__ = ["launch_processes", "without_num_processes", "join_processes"]


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


def launch_processes(n: int, argv: list[str]) -> int:
    """Run ``genmodels`` with ``argv`` in ``n`` processes forming one process group on this machine
    (the environment torchrun gives: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT; Accelerate reads
    it), and return the exit status: the first process's, else the first failing one's.

    The first process reports; the others' output is kept only to show why one of them failed.
    SIGTERM and SIGINT are passed on (each process checkpoints and stops; see training.loop).
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
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n)}
        log = None if rank == 0 else tempfile.TemporaryFile()
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "genmodels.cli", *argv], env=env,
                                      stdout=None if rank == 0 else subprocess.DEVNULL, stderr=log))

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        failed_at = None
        while True:
            try:
                now = [proc.poll() for proc in procs]
                if all(c is not None for c in now):
                    break
                if failed_at is None and any(c not in (None, 0) for c in now):
                    failed_at = time.monotonic()
                if failed_at is not None and time.monotonic() - failed_at > 30:
                    for proc in procs:  # the others would wait for the failed one forever
                        if proc.poll() is None:
                            proc.kill()
                time.sleep(0.2)
            except KeyboardInterrupt:  # the processes got the Ctrl-C too: they checkpoint and stop
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    codes = [proc.returncode for proc in procs]
    code = codes[0] if codes[0] != 0 else next((c for c in codes if c != 0), 0)
    for rank, (c, log) in enumerate(zip(codes, logs)):
        if log is not None:
            if c != 0 and codes[0] == 0:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-20:]
                print(f"genmodels: process {rank} of {n} failed (status {c}):", *tail, sep="\n", file=sys.stderr)
            log.close()
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + its number


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
