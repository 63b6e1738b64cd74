"""The trainer's state: where training is (step, epoch, position in the epoch, examples, seconds),
what is best so far, and the RNG states, all of which a checkpoint stores for a bit-exact resume."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["TrainState", "RunOutcome", "rng_state", "set_rng_state"]


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
