"""The training losses between two log lines, summed on the device (no per-step host sync)."""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from ..core import Loss
from ..errors import option
from .guard import TrainingDiverged

__all__ = ["LossWindow"]


class LossWindow:
    """Training losses summed on the device between two log lines (no per-step host sync)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}
        self.examples = 0
        self.started = time.perf_counter()

    @staticmethod
    def pieces(prefix: str, out: Loss) -> dict[str, Tensor]:
        """What :meth:`add` adds for ``out``: its loss and the mean of each term, detached."""
        pieces = {f"{prefix}loss": out.loss.detach().float()}
        pieces.update({f"{prefix}{k}": v.detach().float().mean() for k, v in out.terms.items()})
        return pieces

    def add(self, prefix: str, out: Loss) -> None:
        self.add_pieces(self.pieces(prefix, out))

    def add_pieces(self, pieces: dict[str, Tensor]) -> None:
        for key, value in pieces.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, step: int, accelerator=None) -> tuple[dict[str, float], float]:
        """The mean of each quantity since the last flush (averaged across processes), and the
        examples per second; raises :class:`TrainingDiverged` on a non-finite loss."""
        keys = list(self.sums)
        rate = self.examples / max(time.perf_counter() - self.started, 1e-9)
        if not keys:
            self._reset()
            return {}, rate
        means = torch.stack([self.sums[key] / self.counts[key] for key in keys])
        if accelerator is not None and accelerator.num_processes > 1:
            means = accelerator.reduce(means, reduction="mean")
        values = dict(zip(keys, means.tolist()))
        for key, value in values.items():
            if not math.isfinite(value) and key.endswith("loss"):
                raise TrainingDiverged(
                    f"the {key} became {value} by step {step}; lower {option('lr')} or set {option('grad_clip')} "
                    "(the checkpoints written before are intact)"
                )
        self._reset()
        return values, rate
