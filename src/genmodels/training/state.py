"""The trainer's state: where training is (step, epoch, position in the epoch, examples, seconds),
what is best so far, and the RNG states, all of which a checkpoint stores for a bit-exact resume.

Each process of a data-parallel run draws its own training noise: every process seeds with the
run's seed before the model is built (so parameters start identical), then process r > 0 moves to
its own stream, seeded from (seed, r) (:func:`start_noise_stream`). Process 0 keeps the run seed's
stream, so a run of one process draws exactly what it drew before streams were per process. A
checkpoint stores every process's RNG state (:func:`gathered_rng_states`), and a resume gives each
process its own back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["TrainState", "RunOutcome", "rng_state", "set_rng_state", "process_seed", "start_noise_stream",
           "gathered_rng_states", "restore_noise_stream"]


@dataclass
class TrainState:
    """Where training is. ``seconds`` counts training time only (evaluation excluded).

    ``best_nll`` is the validation NLL (nats) of ``best_checkpoint``; None until a checkpoint with a
    likelihood exists (a model without one keeps its latest checkpoint as the best).

    The non-finite guard: ``skipped_steps`` steps were skipped for a NaN/inf loss or gradient in
    all, ``nan_streak`` in a row up to now, and ``rollbacks`` roll-backs to ``good_checkpoint`` (the
    latest checkpoint written outside such a streak) were made.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    examples: int = 0
    seconds: float = 0.0
    best_nll: float | None = None
    best_checkpoint: str | None = None
    ema_updates: int = 0
    skipped_steps: int = 0
    nan_streak: int = 0
    rollbacks: int = 0
    good_checkpoint: str | None = None

    def improves(self, nll: float | None) -> bool:
        """Whether a checkpoint with validation NLL ``nll`` (None: no likelihood) becomes the best."""
        if nll is None or self.best_checkpoint is None:
            return True
        return self.best_nll is None or nll < self.best_nll

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainState:
        return cls(**obj)


@dataclass(frozen=True)
class RunOutcome:
    """Where a finished training loop left the run, for the end-of-run report
    (:func:`~genmodels.training.report.finish_run`): the folder, the checkpoint chosen as best, the
    final state, the Accelerator it ran on, and where to show a line to the person."""

    run_dir: Path
    best_checkpoint: Path
    state: TrainState
    accelerator: Any
    say: Callable[[str], None]


def rng_state() -> dict[str, Any]:
    """The global RNG states (CPU and every CUDA device) that training draws from."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def process_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of process ``rank``'s training noise (``rank`` > 0) in a run seeded with ``seed``.

    NumPy's ``SeedSequence`` with the rank as its spawn key: the standard way of deriving
    independent child streams from one seed (what ``SeedSequence.spawn`` does), the same on every
    machine and Python version. ``step`` > 0 gives a fresh stream to a process that joins a
    resumed run without a stored state of its own (the run had fewer processes).
    """
    import numpy as np

    key = (rank,) if step == 0 else (rank, step)
    return int(np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint64)[0])


def start_noise_stream(seed: int, rank: int, step: int = 0) -> None:
    """Move process ``rank`` > 0 to its own training noise stream (global CPU and CUDA RNG);
    process 0 keeps the stream it has. Called once the model is built and initialized, so that
    every process starts from the same parameters."""
    if rank > 0:
        torch.manual_seed(process_seed(seed, rank, step))  # seeds every CUDA device too


def gathered_rng_states(accelerator) -> dict[str, Any] | list[dict[str, Any]]:
    """What a checkpoint stores as ``trainer_state.rng``: this process's RNG states with one process
    (the layout of every earlier checkpoint), else a list of every process's, by rank. Every
    process must call it (a collective)."""
    if accelerator.num_processes == 1:
        return rng_state()
    from accelerate.utils import gather_object

    return gather_object([rng_state()])


def restore_noise_stream(saved: dict[str, Any] | list[dict[str, Any]] | None, seed: int, rank: int, step: int) -> None:
    """Where process ``rank`` draws its training noise from, once the model is built and
    initialized: on a new run (``saved`` None) its own stream (:func:`start_noise_stream`); on a
    resumed run its stored RNG state (``saved``: a checkpoint's ``trainer_state.rng``). A process
    with no stored state of its own (the checkpoint was written by fewer processes) starts a fresh
    stream from (seed, rank, step)."""
    if saved is None:
        start_noise_stream(seed, rank)
        return
    states = saved if isinstance(saved, list) else [saved]
    if rank < len(states):
        set_rng_state(states[rank])
    else:
        start_noise_stream(seed, rank, step)
