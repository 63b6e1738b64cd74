"""Caveats of a finished run that its figures alone do not show: a checkpoint chosen on validation
that is the first one evaluated (step 0, the untrained model, in most runs) means the validation
figure never improved: the model overfit from the start, or did not learn."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["never_improved", "warn_if_never_improved"]


def never_improved(validation_steps: Iterable[int], best_step: int) -> str | None:
    """The warning for a best checkpoint at the first of several validation evaluations, else None.

    >>> never_improved([0, 50, 100], 50) is None
    True
    >>> never_improved([0, 50, 100], 0).startswith("warning: the checkpoint chosen on validation is step 0")
    True
    """
    steps = sorted(set(validation_steps))
    if len(steps) < 2 or best_step != steps[0]:
        return None
    first = "step 0 (the untrained model)" if best_step == 0 else f"step {best_step}, the first evaluated"
    return (f"warning: the checkpoint chosen on validation is {first}: the validation figure never improved over "
            f"{len(steps)} evaluations up to step {steps[-1]} (overfit from the start, or no learning); try a lower "
            "--lr, a smaller model or more data")


def warn_if_never_improved(metrics: Path, best_step: int, say: Callable[[str], None]) -> None:
    """Say :func:`never_improved`'s warning for the validation evaluations logged in ``metrics``
    (metrics.csv), if there is one."""
    with open(metrics, newline="") as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)
                 if row.get("split") == "validation" and (row.get("step") or "").isdigit()]
    warning = never_improved(steps, best_step)
    if warning:
        say(warning)
