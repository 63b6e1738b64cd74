"""One small training loop for the benchmark scripts that need a plain loop rather than the trainer
(``genmodels.training``): a budget of steps or of thread CPU seconds, an AdamW per optimizer group, an
optional cosine decay, gradient clipping and a parameter EMA, and a validation callback whose score
picks the best step.

Time is thread CPU time (``time.thread_time``; run with ``OMP_NUM_THREADS=1``, so that torch computes
in this thread), as the benchmark protocol asks: wall time on a shared machine swings with the load.

    from fitting import fit   # the scripts' own folder is on sys.path when run as a script

    result = fit(model, lambda step: Batch(x[torch.randint(0, len(x), (128,))]), steps=1000, lr=1e-3,
                 check=validate, check_every=250, keep_best=True)

Scripts that walk the whole registry take each model from :func:`registry_models`: built at its
defaults under one seed and initialized on the training split, or the reason it refused the data.
"""

from __future__ import annotations

import copy
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from genmodels.core import Batch, GenerativeModel, create_model, model_class, model_names
from genmodels.errors import UserError

__all__ = ["FitResult", "RegisteredModel", "fit", "registry_models"]


class RegisteredModel(NamedTuple):
    """One registered model as :func:`registry_models` yields it: ``model`` built and initialized, or
    None and ``refusal``, the one-line reason it refused the data."""

    name: str
    model: GenerativeModel | None
    refusal: str | None = None


def registry_models(
    dataset, names: list[str] | None = None, *, seed: int = 0, init_batch_size: int = 500,
    init_examples: int | None = None,
) -> Iterator[RegisteredModel]:
    """Each named model (default: every registered one) at its default config on ``dataset``: built
    under ``torch.manual_seed(seed)`` and initialized (actnorm, marginal biases, closed-form fits,
    code counts) on the training split in its stored order, in batches of ``init_batch_size``.

    ``init_examples`` caps the examples initialization reads (None: the whole split, as the trainer
    does); a model that refuses the data (its ``check_data``) or cannot be built at its defaults on it
    comes with the refusal's message instead of a model. One model at a time, so the caller can drop
    each before the next is built.
    """
    train = dataset.train if init_examples is None else Subset(dataset.train, range(min(init_examples, len(dataset.train))))
    for name in model_names() if names is None else names:
        try:
            model_class(name).check_data(dataset.spec)
            torch.manual_seed(seed)
            model = create_model(name, dataset.spec)
        except UserError as reason:
            yield RegisteredModel(name, None, str(reason))
            continue
        model.initialize(Batch.of(item) for item in DataLoader(train, batch_size=init_batch_size))
        yield RegisteredModel(name, model)
        del model  # before the next is built: one model in memory at a time, if the caller drops it too


@dataclass
class FitResult:
    """What :func:`fit` did.

    Attributes:
        steps: training steps taken (each steps every optimizer group once).
        examples: training examples seen.
        cpu_seconds: thread CPU time of the steps (drawing the batch, forward, backward, update, EMA);
            the checks are excluded.
        losses: each group's loss at the last step.
        best_step: the step whose check gave the lowest score (None: no check gave one).
        best_score: that score (inf: none).
    """

    steps: int = 0
    examples: int = 0
    cpu_seconds: float = 0.0
    losses: dict[str, float] = field(default_factory=dict)
    best_step: int | None = None
    best_score: float = math.inf

    @property
    def examples_per_second(self) -> float:
        """Training examples per thread CPU second."""
        return self.examples / self.cpu_seconds if self.cpu_seconds > 0 else math.nan


def fit(
    model: nn.Module,
    next_batch: Callable[[int], Batch],
    *,
    steps: int | None = None,
    cpu_seconds: float | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    cosine: bool = False,
    grad_clip: float | None = None,
    ema_decay: float = 0.0,
    check: Callable[[int, nn.Module], float | None] | None = None,
    check_every: int | None = None,
    check_every_seconds: float | None = None,
    keep_best: bool = False,
) -> FitResult:
    """Train ``model`` until ``steps`` steps or ``cpu_seconds`` of thread CPU time, whichever comes first.

    Each of the model's ``optimizer_groups`` gets its own AdamW and, every step, in the order listed
    (a GAN's discriminator, then its generator), its own loss ``model(batch, step=k, group=name)``
    from zeroed gradients, backward pass, clipping and update, as in the trainer.

    Args:
        model: a ``GenerativeModel`` (initialized by the caller where it needs data).
        next_batch: the training batch of step k (k = 1, 2, ...); the caller draws it, with its own RNG.
        steps: stop after this many steps.
        cpu_seconds: stop once the steps have used this much thread CPU time.
        lr: AdamW's learning rate.
        weight_decay: AdamW's decoupled weight decay (0: the updates of Adam).
        cosine: decay the learning rate to 0 over ``steps`` (``CosineAnnealingLR``, stepped each step).
        grad_clip: clip each group's gradient norm to this; None: never.
        ema_decay: if > 0, keep an exponential moving average of the parameters with this decay, in a
            copy of the model (its buffers as at the start); the checks score the copy.
        check: ``check(step, scored)``, ``scored`` being the EMA copy or the model; its return value, if
            not None, is a score (lower is better) that picks the best step.
        check_every: check every this many steps.
        check_every_seconds: check every this many thread CPU seconds of training.
        keep_best: keep the scored module's state at each new best score and load it back at the end.

    The last step is always checked (unless it just was). Returns a :class:`FitResult`.
    """
    if steps is None and cpu_seconds is None:
        raise ValueError("fit needs a budget: steps or cpu_seconds")
    if cosine and steps is None:
        raise ValueError("a cosine decay needs steps")
    groups = {name: list(getattr(group, "params", group)) for name, group in model.optimizer_groups().items()}
    optimizers = {name: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) for name, params in groups.items()}
    schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(o, steps) for o in optimizers.values()] if cosine else []
    average = copy.deepcopy(model) if ema_decay else None
    scored = average if average is not None else model
    result, best_state, checked_at = FitResult(), None, (0, 0.0)

    def run_check(step: int) -> None:
        nonlocal best_state, checked_at
        checked_at = (step, result.cpu_seconds)
        score = check(step, scored)
        model.train()
        if score is not None and score < result.best_score:
            result.best_step, result.best_score = step, score
            if keep_best:
                best_state = copy.deepcopy(scored.state_dict())

    model.train()
    losses: dict[str, torch.Tensor] = {}
    for step in itertools.count(1):
        if (steps is not None and step > steps) or (cpu_seconds is not None and result.cpu_seconds >= cpu_seconds):
            break
        started = time.thread_time()
        batch = next_batch(step)
        for name, optimizer in optimizers.items():
            model.zero_grad(set_to_none=True)
            loss = model(batch, step=step, group=name).loss
            loss.backward()
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(groups[name], grad_clip)
            optimizer.step()
            losses[name] = loss.detach()
        for schedule in schedules:
            schedule.step()
        if average is not None:
            with torch.no_grad():
                for kept, current in zip(average.parameters(), model.parameters()):
                    kept.lerp_(current, 1 - ema_decay)
        result.cpu_seconds += time.thread_time() - started
        result.steps, result.examples = step, result.examples + len(batch)
        if check is not None and (
            (check_every and step % check_every == 0)
            or (check_every_seconds and result.cpu_seconds - checked_at[1] >= check_every_seconds)
        ):
            run_check(step)
    if check is not None and checked_at[0] != result.steps:
        run_check(result.steps)
    if best_state is not None:
        scored.load_state_dict(best_state)
    result.losses = {name: loss.item() for name, loss in losses.items()}
    return result
