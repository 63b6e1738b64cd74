"""Stopping on SIGTERM or SIGINT: the loop checkpoints the current step, then stops."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

import torch

__all__ = ["TrainingInterrupted", "SignalFlag", "resume_command"]


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training after a checkpoint of the current step was written.

    ``exit_code`` is the shell's convention for death by that signal (128 + its number: 143 for
    SIGTERM, 130 for SIGINT), so schedulers (SLURM, Kubernetes) see what happened.
    """

    def __init__(self, signum: int, step: int, checkpoint: Path):
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: saved {checkpoint} at step {step}; continue with: "
                         f"{resume_command(checkpoint.parent.parent)}")


def resume_command(run_dir: Path) -> str:
    """The command that continues the run in ``run_dir`` as it is (model, data and settings read
    from the run), to paste as printed; ``--import`` where the model comes from outside genmodels."""
    import shlex

    from ..run_files import read_run_record

    imports = ""
    try:
        module = read_run_record(run_dir / "run.json").get("model_module")
    except Exception:  # the hint never hides the interruption it reports
        module = None
    if (isinstance(module, str) and not module.startswith("genmodels.") and module != "__main__"
            and all(part.isidentifier() for part in module.split("."))):
        imports = f" --import {shlex.quote(module)}"
    return f"genmodels train --resume --out {shlex.quote(str(run_dir))}{imports}"


class SignalFlag:
    """While :meth:`installed` is active, SIGTERM and SIGINT only set a flag that the loop reads
    between steps (:meth:`received`); outside it they act as before."""

    def __init__(self) -> None:
        self.signum = 0

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum, frame):
            self.signum = signum

        previous = {sig: signal.signal(sig, note) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def received(self, accelerator) -> int:
        """The signal received by any process (0: none); every process agrees, so all stop together."""
        if accelerator.num_processes == 1:
            return self.signum
        flag = torch.tensor([self.signum], device=accelerator.device)
        return int(accelerator.reduce(flag, reduction="max").item())
