"""Optimizers built from the model's declared groups, their learning-rate schedules, and the one
function that steps a group: zero every gradient, backpropagate, clip, step.

Models declare their groups (:meth:`GenerativeModel.optimizer_groups`); the trainer fills in each
group's settings, with defaults from the TrainConfig. Models never own optimizers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..core import GenerativeModel, OptimizerGroup, resolve_groups
from ..errors import UserError
from .config import TrainConfig

__all__ = ["GroupSettings", "build_optimizers", "lr_factor", "build_schedulers", "step_group", "accumulate_and_step"]


@dataclass(frozen=True)
class GroupSettings:
    """One group's resolved settings (the group's own, else the TrainConfig's)."""

    lr: float
    betas: tuple[float, float]
    weight_decay: float
    grad_clip: float | None
    every: int
    start_step: int

    def due(self, step: int) -> bool:
        return step >= self.start_step and step % self.every == 0


def _settings(group: OptimizerGroup, config: TrainConfig) -> GroupSettings:
    lr = group.lr if group.lr is not None else config.lr * group.lr_scale
    clip = config.grad_clip if group.grad_clip is None else (None if math.isinf(group.grad_clip) else group.grad_clip)
    return GroupSettings(
        lr=lr,
        betas=tuple(group.betas) if group.betas is not None else (0.9, 0.999),
        weight_decay=config.weight_decay if group.weight_decay is None else group.weight_decay,
        grad_clip=clip,
        every=group.every,
        start_step=group.start_step,
    )


def build_optimizers(
    model: GenerativeModel, config: TrainConfig
) -> tuple[dict[str, OptimizerGroup], dict[str, GroupSettings], dict[str, torch.optim.Optimizer]]:
    """The model's groups, their resolved settings, and one AdamW per group.

    Each AdamW has two parameter groups: the decayed parameters and the group's ``no_decay`` ones
    (weight decay 0), so biases can be left unpenalized as in a logistic regression.
    """
    try:
        groups = resolve_groups(model)
    except ValueError as error:
        raise UserError(str(error)) from None
    settings = {name: _settings(group, config) for name, group in groups.items()}
    optimizers = {}
    for name, group in groups.items():
        s = settings[name]
        exempt = {id(p) for p in group.no_decay}
        decayed = [p for p in group.params if id(p) not in exempt]
        param_groups: list[dict[str, Any]] = [{"params": decayed, "weight_decay": s.weight_decay}]
        if group.no_decay:
            param_groups.append({"params": group.no_decay, "weight_decay": 0.0})
        optimizers[name] = torch.optim.AdamW(param_groups, lr=s.lr, betas=s.betas)
    return groups, settings, optimizers


def lr_factor(step: int, *, warmup_steps: int, total_steps: float, schedule: str) -> float:
    """The learning rate's factor at ``step``: linear warm-up from 0 to 1 over ``warmup_steps``, then
    constant, or a half cosine from 1 down to 0 at ``total_steps`` (Loshchilov & Hutter 2017, eq. 5
    with η_min = 0 and no restarts).

    >>> [round(lr_factor(s, warmup_steps=2, total_steps=6, schedule="cosine"), 3) for s in range(7)]
    [0.0, 0.5, 1.0, 0.854, 0.5, 0.146, 0.0]
    """
    if step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant" or math.isinf(total_steps):
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedulers(
    optimizers: dict[str, torch.optim.Optimizer], config: TrainConfig, total_steps: float
) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    """One LambdaLR per group, stepped once per training step (so its count is the global step,
    whether or not the group stepped), and checkpointed for resume."""

    def factor(step: int) -> float:
        return lr_factor(step, warmup_steps=config.warmup_steps, total_steps=total_steps, schedule=config.lr_schedule)

    return {name: torch.optim.lr_scheduler.LambdaLR(opt, factor) for name, opt in optimizers.items()}


def zero_all(model: nn.Module) -> None:
    """Every gradient of the model to None, so no group's backward starts from another's."""
    for p in model.parameters():
        p.grad = None


def step_group(
    accelerator,
    model: nn.Module,
    loss: Tensor,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    settings: GroupSettings,
) -> bool:
    """One group's update, isolated from the others: zero every gradient of the model, backpropagate
    ``loss`` (with Accelerate's mixed-precision scaling), clip this group's gradient norm, step this
    group's optimizer, and zero again, so a loss that also reaches another group's parameters (a
    generator's loss through the discriminator) moves nothing but its own group. Returns whether
    the group stepped (False: a non-finite loss or gradient, see :func:`accumulate_and_step`)."""
    return accumulate_and_step(accelerator, None, model, [loss], 1, params, optimizer, settings)


def _all_finite(accelerator, value: Tensor) -> bool:
    """Whether ``value`` is finite on every process: each process takes the same decision."""
    bad = (~torch.isfinite(value.detach().float())).any().to(torch.float32).reshape(1)
    if getattr(accelerator, "num_processes", 1) > 1:
        bad = accelerator.reduce(bad, reduction="sum")
    return not bool(bad.item())


def accumulate_and_step(
    accelerator,
    forward: nn.Module | None,
    model: nn.Module,
    losses: Iterable[Tensor],
    n: int,
    params: list[nn.Parameter],
    optimizer: torch.optim.Optimizer,
    settings: GroupSettings,
) -> bool:
    """:func:`step_group` over ``n`` micro-batches: zero every gradient, backpropagate each loss
    divided by n as it comes (``losses`` is lazy, so one micro-batch's graph is alive at a time),
    then clip and step once. For mean losses over equal micro-batches this is the step of their
    union: ∇(1/n Σᵢ Lᵢ) = 1/n Σᵢ ∇Lᵢ. With several processes the gradients are averaged only at
    the last micro-batch (DDP's ``no_sync`` for the others, whose forwards run inside it).

    A non-finite loss (on any process), or a non-finite gradient norm, skips the step: the
    gradients are zeroed and the optimizer is not stepped. Under fp16 the gradient scaler keeps
    its own overflow check (it skips the step and lowers its scale), so only the loss is checked.
    Returns whether the group stepped; every process returns the same.
    """
    zero_all(model)
    stream = iter(losses)
    total = None
    for i in range(n):
        quiet = forward is not None and i < n - 1 and accelerator.num_processes > 1
        with accelerator.no_sync(forward) if quiet else contextlib.nullcontext():
            loss = next(stream)
            accelerator.backward(loss / n if n > 1 else loss)
        total = loss.detach() if total is None else total + loss.detach()
    scaled = getattr(accelerator, "scaler", None) is not None
    finite = _all_finite(accelerator, total)
    if finite:
        if settings.grad_clip is not None:
            norm = accelerator.clip_grad_norm_(params, settings.grad_clip)
        elif not scaled:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        if not scaled:
            # Gradients are the same on every process (DDP averaged them), and so is this decision.
            finite = _all_finite(accelerator, torch.as_tensor(norm))
    if finite:
        optimizer.step()
    zero_all(model)
    return finite
