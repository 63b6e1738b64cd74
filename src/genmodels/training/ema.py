"""Exponential moving average of the weights (Polyak averaging), optionally with a warm-up."""

from __future__ import annotations

import copy

import torch
from torch import Tensor

__all__ = ["EMA"]


class EMA:
    """θ̄ ← d·θ̄ + (1 − d)·θ for floating tensors of the state_dict (buffers follow; integer buffers
    are copied, not averaged).

    With ``warmup`` the decay at update t (counting from 1) is min(d, (1 + t)/(10 + t)), as in
    TensorFlow's ``ExponentialMovingAverage(num_updates=...)``: early averages are not dominated by
    the random initialization.
    """

    def __init__(self, model: torch.nn.Module, decay: float, *, warmup: bool = False, updates: int = 0):
        self.decay = decay
        self.warmup = warmup
        self.updates = updates
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self._copy: torch.nn.Module | None = None  # the model that carries the averages (averaged)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        if not self.warmup:
            return self.decay
        t = self.updates + 1
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        decay = self.current_decay()
        for key, value in model.state_dict().items():
            if value.dtype.is_floating_point:
                # lerp_(θ, w): θ̄ + w(θ − θ̄) = (1 − w)θ̄ + wθ, so the weight of the new θ is 1 − decay.
                self.shadow[key].lerp_(value.detach(), 1.0 - decay)
            else:
                self.shadow[key].copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def averaged(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` with the averaged weights: a copy made once, reloaded at each call."""
        if self._copy is None:
            self._copy = copy.deepcopy(model)
        self._copy.load_state_dict(self.shadow)
        return self._copy

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for key, value in state.items():
            self.shadow[key].copy_(value)
