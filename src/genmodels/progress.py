"""Progress of one long phase (validation, test evaluation, sampling, feature extraction), shared by
every command: a bar on a terminal, plain lines anywhere else, and one line of cost up front.

A phase that finishes within ``GENMODELS_PROGRESS_SECONDS`` (default 10) prints nothing, so quick
commands stay quiet. A longer one prints, when stderr is not a terminal, a line at least every that
many seconds, whether or not a batch has finished (a heartbeat thread: one slow batch must not make
the phase silent), with what is done, the elapsed time and the ETA. On a terminal a tqdm bar shows
the same and the heartbeat redraws it.

After the first unit of work, :class:`Phase` extrapolates the whole phase; if that exceeds
``GENMODELS_COST_NOTICE_SECONDS`` (default 60) it prints one line naming what is computed, the
rough time and the option that makes it cheaper.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from contextvars import ContextVar
from typing import TextIO

__all__ = ["Phase", "sampling_step", "progress_seconds", "cost_notice_seconds", "format_duration", "now"]

#: the phase that counts the sequential steps of the draw running now (see :func:`sampling_step`)
_counting: ContextVar[Phase | None] = ContextVar("genmodels_counting_phase", default=None)

#: the clock phases measure with (a test may replace it to make a phase look slow)
now = time.monotonic


def _env_seconds(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        return default
    return value if value > 0 else default


def progress_seconds() -> float:
    """Seconds between two plain progress lines (env ``GENMODELS_PROGRESS_SECONDS``, default 10)."""
    return _env_seconds("GENMODELS_PROGRESS_SECONDS", 10.0)


def cost_notice_seconds() -> float:
    """A phase expected to take longer than this states its cost first (env ``GENMODELS_COST_NOTICE_SECONDS``, default 60)."""
    return _env_seconds("GENMODELS_COST_NOTICE_SECONDS", 60.0)


def format_duration(seconds: float) -> str:
    """``42 s``, ``3.5 min``, ``1.2 h``."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class Phase:
    """One phase's progress: ``with Phase("validation", total=256, unit="examples") as p: ... p.update(64)``.

    Args:
        desc: what is computed, shown on every line, e.g. "validation iwae (k=64)".
        total: the units of work (None: unknown; lines then show the elapsed time only).
        unit: what one unit is ("examples", "samples", "NFE").
        cheaper: how to make the phase cheaper, named in the cost line (e.g. "--validation-examples N").
        enabled: False on every process but the first, or when the caller wants silence.
        bar: draw a tqdm bar when the stream is a terminal (else plain lines there too).
        stream: where lines go (default: stderr).
        counts_steps: a single draw whose model reports its sequential steps through
            :func:`sampling_step` (an autoregressive model's positions, a diffusion solver's NFE):
            the phase counts them, so its lines get an ETA and a long draw states its cost first.
    """

    def __init__(self, desc: str, total: int | None = None, *, unit: str = "examples", cheaper: str | None = None,
                 enabled: bool = True, bar: bool = True, stream: TextIO | None = None, counts_steps: bool = False):
        self.desc, self.total, self.unit, self.cheaper = desc, total, unit, cheaper
        self._token = _counting.set(self) if counts_steps else None
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = progress_seconds()
        self.done = 0
        self.cost_line: str | None = None
        self._started = now()
        self._first_measured = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar = None
        if not enabled:
            return
        if bar and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit.split()[0], leave=False, dynamic_ncols=True,
                             file=self.stream, mininterval=1.0)
        self._thread = threading.Thread(target=self._heartbeat, name=f"progress {desc}", daemon=True)
        self._thread.start()

    def __enter__(self) -> Phase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def elapsed(self) -> float:
        return now() - self._started

    def eta(self) -> float | None:
        """Seconds left, extrapolated from the rate so far (None when unknown)."""
        if self.total is None or self.done <= 0:
            return None
        return self.elapsed * max(self.total - self.done, 0) / self.done

    def update(self, units: int = 1) -> None:
        """``units`` more are done; after the first, the phase may state its cost."""
        if not self.enabled:
            return
        with self._lock:
            self.done += units
            if self._bar is not None:
                self._bar.update(units)
        if not self._first_measured:
            self._first_measured = True
            self._state_cost()

    def _state_cost(self) -> None:
        estimate = self.eta()
        if estimate is None or self.done >= self.total or self.elapsed + estimate <= cost_notice_seconds():
            return
        cheaper = f"; for less, pass {self.cheaper}" if self.cheaper else ""
        self.cost_line = (
            f"{self.desc}: {self.total:,} {self.unit} will take about {format_duration(self.elapsed + estimate)} "
            f"(measured on the first {self.done:,}){cheaper}"
        )
        self.write(self.cost_line)

    def line(self) -> str:
        """What is done so far, the elapsed time and the ETA, in one line."""
        eta = self.eta()
        left = f", ETA {format_duration(eta)}" if eta is not None else ""
        if self.total is None and self.done == 0:  # one call (a draw): nothing to count
            return f"{self.desc}: {format_duration(self.elapsed)} elapsed"
        of = f"/{self.total:,}" if self.total is not None else ""
        return f"{self.desc}: {self.done:,}{of} {self.unit}, {format_duration(self.elapsed)} elapsed{left}"

    def write(self, text: str) -> None:
        """A line of its own, above the bar on a terminal."""
        if not self.enabled:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.interval):
            if self._bar is not None:
                with self._lock:
                    self._bar.refresh()
            else:
                self.write(self.line())

    def close(self) -> None:
        if self._token is not None:
            _counting.reset(self._token)
            self._token = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def sampling_step(total: int, unit: str = "positions") -> None:
    """One of ``total`` sequential steps of the draw in progress (a model calls it once per step):
    the enclosing :class:`Phase` opened with ``counts_steps`` counts it; without one it does nothing."""
    phase = _counting.get()
    if phase is None or not phase.enabled:
        return
    if phase.total is None:
        with phase._lock:
            phase.total, phase.unit = total, unit
            if phase._bar is not None:
                phase._bar.total, phase._bar.unit = total, unit
    phase.update(1)
