"""The run's Accelerator, built through Accelerate's public API only, and leaving the process group."""

from __future__ import annotations

import functools
import os

import torch

from ..errors import UserError
from ..run_files import check_tracker_installed
from .config import TrainConfig

__all__ = ["build_accelerator", "leave_process_group_at_exit"]


def build_accelerator(config: TrainConfig, several_groups: bool, run_dir):
    """The Accelerator of this run, through Accelerate's public API only.

    Accelerate keeps the precision in a process-wide state that its public API cannot change once
    set, so a process trains in one precision: a different one is refused with the fix (run it in a
    new process), never forced through a private reset. A tracker whose package is missing is
    refused here, before training (Accelerate would only warn and log nothing).
    """
    check_tracker_installed(config.log_with)
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, is_initialized
    from accelerate.utils import DistributedDataParallelKwargs

    if is_initialized() and AcceleratorState().mixed_precision != config.mixed_precision:
        raise UserError(
            f"this process already trains with mixed precision '{AcceleratorState().mixed_precision}'; "
            f"Accelerate keeps one precision per process: run the '{config.mixed_precision}' training in a new process"
        )
    # Several processes on a machine without a GPU (torchrun/accelerate launch on CPUs) form a gloo
    # group only when Accelerate is told cpu=True; on one process, cpu=False keeps MPS etc.
    several_cpu_processes = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    # With several groups each group's forward uses only part of the parameters (a discriminator's
    # loss on detached fakes never reaches the generator): DDP must be told, or it waits for them.
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)] if several_groups else []
    tracking = {} if config.log_with == "none" else {"log_with": config.log_with, "project_dir": str(run_dir)}
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=config.cpu or several_cpu_processes,
        kwargs_handlers=handlers,
        **tracking,
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        leave_process_group_at_exit()
    return accelerator


@functools.cache
def leave_process_group_at_exit() -> None:
    """Once per process: leave the process group (barrier, then destroy) when the interpreter exits.

    Left to the interpreter's teardown, gloo's worker threads can abort a finished process
    ("terminate called without an active exception"), failing a run that wrote everything. Whatever
    ran the training (the CLI, a script calling :func:`train` several times) exits through this.
    If another process failed, torchrun's agent ends this one, so the barrier cannot hang.
    """
    import atexit

    def leave() -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    atexit.register(leave)
