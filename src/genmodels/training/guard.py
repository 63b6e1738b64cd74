"""The non-finite guard: skip a step whose loss or gradient is NaN or infinite, roll back to the
last good checkpoint after ``nan_tolerance`` such steps in a row, stop after ``nan_rollbacks``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..checkpoint import list_checkpoints
from ..errors import UserError, option
from .config import TrainConfig
from .state import TrainState

__all__ = ["TrainingDiverged", "NonFiniteGuard"]


class TrainingDiverged(UserError):
    """The loss (or its gradient) stayed NaN or infinite through the non-finite guard's skips and
    roll-backs (``nan_tolerance``, ``nan_rollbacks``); the checkpoints written before are intact."""


class NonFiniteGuard:
    """Counts the steps skipped for a non-finite loss or gradient and decides what follows.

    Args:
        config: ``nan_tolerance`` and ``nan_rollbacks``.
        run_dir: the run folder (its checkpoints are what a roll-back returns to).
        load: loads model, optimizers, schedules and EMA from a checkpoint folder
            (the trainer's :func:`~genmodels.training.resume.load_training_state`).
        say: shows a line to the person (or drops it).
    """

    def __init__(self, config: TrainConfig, run_dir: Path, load: Callable[[Path], object], say: Callable[[str], None]):
        self.config, self.run_dir, self.load, self.say = config, run_dir, load, say

    def check(self, failed: list[str], state: TrainState) -> None:
        """Count a step whose update was skipped for a non-finite loss or gradient (``failed``: its
        groups). ``nan_tolerance`` such steps in a row roll model, optimizers, schedules and EMA back
        to the last good checkpoint (the step count and the data order go on: the batches that
        failed are not replayed); once ``nan_rollbacks`` roll-backs are spent, or with a tolerance
        of 0, training stops with :class:`TrainingDiverged`, keeping every checkpoint written."""
        cfg = self.config
        if not failed:
            state.nan_streak = 0
            return
        step = state.step - 1  # the step the model's loss was computed at
        state.nan_streak += 1
        state.skipped_steps += 1
        which = ", ".join(f"'{g}'" for g in failed)
        latest = list_checkpoints(self.run_dir)
        kept = f"every checkpoint written is intact (latest: {latest[-1].name})" if latest else "no checkpoint was written"
        if cfg.nan_tolerance == 0 or (state.nan_streak >= cfg.nan_tolerance and state.rollbacks >= cfg.nan_rollbacks):
            streak = f" and the {state.nan_streak - 1} step(s) before it" if state.nan_streak > 1 else ""
            after = f", after {state.rollbacks} roll-back(s) to {state.good_checkpoint}" if state.rollbacks else ""
            raise TrainingDiverged(
                f"the loss or gradient of group {which} was NaN or infinite at step {step}{streak}{after}; "
                f"training stopped, {kept}. Lower {option('lr')}, set {option('grad_clip')}, or raise {option('nan_tolerance')}/{option('nan_rollbacks')}"
            )
        if state.nan_streak < cfg.nan_tolerance:
            self.say(
                f"step {step}: NaN or infinite loss or gradient of group {which}; update skipped "
                f"({state.nan_streak} of {cfg.nan_tolerance} in a row before a roll-back)"
            )
            return
        self.roll_back(step, state)

    def roll_back(self, step: int, state: TrainState) -> None:
        """Load model, optimizers, schedules and EMA of the last good checkpoint (read from disk,
        checksums verified); the step count, data order, RNG and best checkpoint go on."""
        name = state.good_checkpoint
        path = self.run_dir / "checkpoints" / name if name else None
        try:
            if path is None or not path.is_dir():
                raise UserError(f"the last good checkpoint {name} is gone")
            self.load(path)
        except UserError as error:
            raise TrainingDiverged(
                f"{state.nan_streak} NaN or infinite steps in a row up to step {step}, and no roll-back is "
                f"possible ({error}); training stopped, the checkpoints written are kept"
            ) from None
        state.rollbacks += 1
        state.nan_streak = 0
        self.say(
            f"step {step}: NaN or infinite loss or gradient {self.config.nan_tolerance} steps in a row; rolled back "
            f"model, optimizers, schedules and EMA to {name} (roll-back {state.rollbacks} of {self.config.nan_rollbacks})"
        )
