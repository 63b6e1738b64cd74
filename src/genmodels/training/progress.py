"""What a person sees while a model trains: a progress bar on a terminal, plain log lines in a file.

A bar redrawn into a log file leaves carriage-return fragments, so when stderr is not a terminal
there is no bar at all: one plain line per log interval (at most one every ``min_seconds``), and the
validation lines on lines of their own. ``--no-progress`` drops the bar, never the validation lines.
A ``--minutes`` budget shows its total and the time left, on the bar (in seconds of training) and on
the lines. The phases between steps (validation, test, sampling) show their own progress
(:class:`genmodels.progress.Phase`).
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

from ..progress import format_duration, progress_seconds

__all__ = ["ProgressLog"]


class ProgressLog:
    """The training bar (terminal) or periodic log lines (anything else), and messages.

    Args:
        total: the step budget (None or inf: unknown).
        initial: the step training starts from (a resume).
        desc: what is trained, e.g. "train fvsbn".
        bar: show a bar when the stream is a terminal (``--no-progress`` turns it off).
        enabled: False on every process but the first, which alone reports.
        min_seconds: the least time between two plain log lines (default: ``GENMODELS_PROGRESS_SECONDS``, 10).
        budget_minutes: a time budget (``--minutes``): the bar counts training seconds against it
            when the step budget is unknown, and every line shows the time used and left.
    """

    def __init__(
        self,
        total: float | None,
        initial: int,
        desc: str,
        *,
        bar: bool = True,
        enabled: bool = True,
        stream: TextIO | None = None,
        min_seconds: float | None = None,
        budget_minutes: float | None = None,
    ):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total = None if total is None or math.isinf(total) else int(total)
        self.desc = desc
        self.min_seconds = progress_seconds() if min_seconds is None else min_seconds
        self.budget_seconds = budget_seconds = None if budget_minutes is None else budget_minutes * 60
        self.seconds = 0.0
        self._last_line = -math.inf
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None
        self._bar_in_seconds = self.total is None and budget_seconds is not None
        if enabled and bar and is_tty:
            if self._bar_in_seconds:
                self._bar = tqdm(total=round(budget_seconds), desc=desc, unit="s", dynamic_ncols=True, file=self.stream,
                                 bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]")
            else:
                self._bar = tqdm(total=self.total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                                 file=self.stream)

    @property
    def is_bar(self) -> bool:
        return self._bar is not None

    def update(self, steps: int = 1, *, seconds: float | None = None) -> None:
        """``steps`` more steps; ``seconds``: the training time used so far (for a time budget)."""
        if seconds is not None:
            self.seconds = seconds
        if self._bar is None:
            return
        if self._bar_in_seconds:
            self._bar.n = min(self.seconds, self._bar.total)
            self._bar.update(0)  # redraws at tqdm's own pace
        else:
            self._bar.update(steps)

    def _budget_text(self) -> str:
        """``0.5 min of 1.0 min, 30 s left`` under a time budget, else ''."""
        if self.budget_seconds is None:
            return ""
        left = max(self.budget_seconds - self.seconds, 0.0)
        return f"  {format_duration(self.seconds)} of {format_duration(self.budget_seconds)}, {format_duration(left)} left"

    def log(self, step: int, values: dict[str, float], examples_per_second: float, *, final: bool = False) -> None:
        """Show the latest training figures: in the bar's postfix (no forced redraw) or as a line."""
        if not self.enabled:
            return
        shown = {k: f"{v:.4g}" for k, v in list(values.items())[:3]}
        if self._bar is not None:
            self._bar.set_postfix({**shown, "ex/s": f"{examples_per_second:.0f}"}, refresh=False)
            return
        now = time.monotonic()
        if final or now - self._last_line >= self.min_seconds:
            self._last_line = now
            of = f"/{self.total}" if self.total is not None else ""
            figures = "  ".join(f"{k} {v}" for k, v in shown.items())
            self.message(f"{self.desc}: step {step}{of}  {figures}  {examples_per_second:.0f} ex/s{self._budget_text()}")

    def message(self, text: str) -> None:
        """A line of its own (validation figures, notices), whatever the display."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
