"""What a person sees while a model trains: a progress bar on a terminal, plain log lines in a file.

A bar redrawn into a log file leaves carriage-return fragments, so when stderr is not a terminal
there is no bar at all: one plain line per log interval (at most one every ``min_seconds``), and the
validation lines on lines of their own. ``--no-progress`` drops the bar, never the validation lines.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from tqdm.auto import tqdm

__all__ = ["ProgressLog"]


class ProgressLog:
    """The training bar (terminal) or periodic log lines (anything else), and messages.

    Args:
        total: the step budget (None or inf: unknown).
        initial: the step training starts from (a resume).
        desc: what is trained, e.g. "train fvsbn".
        bar: show a bar when the stream is a terminal (``--no-progress`` turns it off).
        enabled: False on every process but the first, which alone reports.
        min_seconds: the least time between two plain log lines.
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
        min_seconds: float = 10.0,
    ):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.total = None if total is None or math.isinf(total) else int(total)
        self.desc = desc
        self.min_seconds = min_seconds
        self._last_line = -math.inf
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._bar = None
        if enabled and bar and is_tty:
            self._bar = tqdm(total=self.total, initial=initial, desc=desc, unit="step", dynamic_ncols=True,
                             file=self.stream)

    @property
    def is_bar(self) -> bool:
        return self._bar is not None

    def update(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

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
            self.message(f"{self.desc}: step {step}{of}  {figures}  {examples_per_second:.0f} ex/s")

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
