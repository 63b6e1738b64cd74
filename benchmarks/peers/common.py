"""What the peer comparisons share: one training loop and one evaluation for every library.

Every contender (a genmodels model or a peer library's flow) is wrapped as a :class:`Contender` with
two functions of a data batch:

* ``train_nll(x)``: the mean training loss (nats per example) of a batch, one dequantization draw per
  example on discrete data;
* ``log_likelihoods(batch, draws)``: per-example log-likelihoods (nats) of a :class:`genmodels.core.Batch`
  with per-example seeds. On discrete data every contender draws its dequantization noise with
  ``batch.rand``, so all of them are scored on the SAME noise u for the same example and draw.

:func:`train_and_evaluate` trains a contender with Adam for a budget of training time (seconds spent
in training steps; validation passes are not counted), evaluates the validation split every
``eval_every`` seconds of training time (after three untimed warm-up passes without an update), keeps the best state on validation, and scores it once on the
full test split (../shared/PROTOCOL.md). Two training choices may differ per contender: an EMA of
the weights (genmodels' :class:`~genmodels.training.EMA`; validation, selection and test then use the
averaged weights) and a ``train_batch`` function that turns the loop's minibatch indices into training
examples (e.g. a fresh augmentation draw); both default to off, i.e. ``train_x[index]``.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from genmodels import units
from genmodels.core import Batch
from genmodels.training import EMA

__all__ = [
    "Contender",
    "train_and_evaluate",
    "mean_log_likelihood",
    "per_example_log_likelihoods",
    "count_parameters",
    "paired_differences",
]


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@dataclass
class Contender:
    """One model to compare.

    Args:
        name: the model's name in the tables.
        library: "genmodels 0.1.0", "zuko 1.6.0", ...
        module: the nn.Module whose parameters are trained (and whose state is checkpointed).
        train_nll: x (B, ...) → mean negative log-likelihood (a scalar tensor) for one training step.
        log_likelihoods: (Batch with seeds, draws) → per-example log-likelihoods (B,) in nats.
        description: the architecture, for the report.
    """

    name: str
    library: str
    module: nn.Module
    train_nll: Callable[[Tensor], Tensor]
    log_likelihoods: Callable[[Batch, int], Tensor]
    description: str = ""
    extra: dict = field(default_factory=dict)


class DequantizedBound(nn.Module):
    """A peer's density turned into genmodels' uniform-dequantization bound (``genmodels.units``):
    subclasses give ``log_density(y)``, log p(y) of the dequantized y ∈ [0,1)^D with any
    preprocessing's log-Jacobian included; ``spec`` is the data's DataSpec."""

    spec: object

    def log_density(self, y: Tensor) -> Tensor:
        raise NotImplementedError

    def bound(self, x: Tensor, u: Tensor) -> Tensor:
        y = units.dequantize_with_noise(x, u, self.spec.levels)
        return units.discrete_bound_from_density(self.log_density(y), self.spec.dims, self.spec.levels)

    def train_nll(self, x: Tensor) -> Tensor:
        u = torch.rand(x.shape, dtype=torch.float32)
        return -self.bound(x, u).mean()

    def log_likelihoods(self, batch: Batch, draws: int) -> Tensor:
        # the same calls, in the same order, as genmodels' FlowModel (one batch.rand per draw)
        total = sum(self.bound(batch.x, batch.rand(*self.spec.shape)) for _ in range(draws))
        return total / draws


@torch.no_grad()
def per_example_log_likelihoods(contender: Contender, x: Tensor, draws: int, batch_size: int = 4096) -> Tensor:
    """Per-example log-likelihoods (nats, float64) over x, with per-example seeds (example i has seed
    i), so the figures do not depend on the batch size and every contender sees the same noise."""
    contender.module.eval()
    values = []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        seeds = torch.arange(start, start + len(chunk))
        values.append(contender.log_likelihoods(Batch(chunk, seeds=seeds), draws).double())
    contender.module.train()
    return torch.cat(values)


def mean_log_likelihood(contender: Contender, x: Tensor, draws: int, batch_size: int = 4096) -> float:
    """The mean of :func:`per_example_log_likelihoods`."""
    return per_example_log_likelihoods(contender, x, draws, batch_size).mean().item()


def train_and_evaluate(
    contender: Contender,
    train_x: Tensor,
    val_x: Tensor,
    test_x: Tensor,
    *,
    seconds: float,
    batch_size: int,
    lr: float,
    eval_every: float,
    val_draws: int = 1,
    test_draws: int = 1,
    grad_clip: float = 10.0,
    seed: int = 0,
    schedule: str = "constant",
    ema_decay: float | None = None,
    train_batch: Callable[[Tensor], Tensor] | None = None,
) -> dict:
    """Train for ``seconds`` of training-step time, select on validation, score on test.

    The minibatches are drawn from a generator seeded with ``seed``, so every contender sees the same
    sequence of batch indices (as far as its speed takes it). ``schedule="cosine"`` decays the learning
    rate as lr · ½(1 + cos(π t / seconds)) in the training time t spent so far, so every contender
    gets the same schedule in time, whatever its speed.

    ``ema_decay``: keep θ̄ ← d·θ̄ + (1 − d)·θ after every update (its cost counts as training time);
    every validation, the checkpoint kept and the test score use θ̄. ``train_batch(index)``: the
    training examples of a step from its indices into ``train_x`` (default ``train_x[index]``).
    """
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(contender.module.parameters(), lr=lr)
    best, best_state, best_at = -math.inf, None, 0.0
    seen = steps = 0
    train_time = next_eval = 0.0
    nonfinite = 0
    history: list[tuple[float, float]] = []
    module = contender.module
    ema = EMA(module, ema_decay) if ema_decay is not None else None
    batch_of = train_batch if train_batch is not None else (lambda index: train_x[index])
    for _ in range(3):  # warm-up passes (untimed, no update): first-call costs are nobody's throughput
        contender.train_nll(train_x[:batch_size]).backward()
        optimizer.zero_grad(set_to_none=True)
    while train_time < seconds:
        if schedule == "cosine":
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * min(train_time / seconds, 1.0)))
        tick = time.perf_counter()
        index = torch.randint(0, len(train_x), (batch_size,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss = contender.train_nll(batch_of(index))
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), grad_clip)
            optimizer.step()
            if ema is not None:
                ema.update(module)
        else:
            nonfinite += 1
        train_time += time.perf_counter() - tick
        seen += batch_size
        steps += 1
        if train_time >= next_eval or train_time >= seconds:
            live = None
            if ema is not None:  # evaluate the averaged weights, then train on from the live ones
                live = copy.deepcopy(module.state_dict())
                module.load_state_dict(ema.state_dict())
            value = mean_log_likelihood(contender, val_x, val_draws)
            history.append((round(train_time, 1), round(-value, 4)))
            if value > best or best_state is None:
                best, best_state, best_at = value, copy.deepcopy(module.state_dict()), train_time
            if live is not None:
                module.load_state_dict(live)
            next_eval = train_time + eval_every
    module.load_state_dict(best_state)
    tick = time.perf_counter()
    test_values = per_example_log_likelihoods(contender, test_x, test_draws)
    test = test_values.mean().item()
    return {
        "model": contender.name,
        "library": contender.library,
        "description": contender.description,
        "parameters": count_parameters(contender.module),
        "budget_s": seconds,
        "schedule": schedule,
        "ema_decay": ema_decay,
        "steps": steps,
        "train_examples_per_s": round(seen / train_time, 1),
        "best_validation_at_s": round(best_at, 1),
        "validation_nll_nats": round(-best, 4),
        "test_nll_nats": round(-test, 4),
        "test_nll_standard_error": round(test_values.std().item() / math.sqrt(len(test_values)), 4),
        "test_eval_s": round(time.perf_counter() - tick, 2),
        "nonfinite_steps": nonfinite,
        "history": history,
        "test_values": test_values,  # per-example log-likelihoods (removed from the JSON by the scripts)
        **contender.extra,
    }


def paired_differences(results: list[dict], pairs: list[tuple[str, str]], scale: float = 1.0,
                       key: str = "test_values") -> list[dict]:
    """Test NLL of ``a`` minus that of ``b`` for each pair of model names present in ``results`` (one
    data set), with the standard error of the paired per-example differences (both are scored on the
    same test examples, and on discrete data on the same dequantization noise), times ``scale``.
    ``key`` names the per-example log-likelihoods to compare (another estimator's, if a row has one)."""
    by_name = {r["model"]: r for r in results}
    rows = []
    for a, b in pairs:
        if a in by_name and b in by_name:
            d = -(by_name[a][key] - by_name[b][key]) * scale
            rows.append({"a": a, "b": b, "difference": round(d.mean().item(), 4),
                         "standard_error": round(d.std().item() / math.sqrt(len(d)), 4)})
    return rows


def print_differences(differences: list[dict], heading: str, digits: int = 4, prefix: str = "") -> None:
    """Print the rows of :func:`paired_differences` under ``heading``, one ``a − b: d ± se`` line each."""
    if heading:
        print(f"\n{heading}")
    for d in differences:
        where = f"{d['data']}: " if "data" in d else ""
        print(f"  {prefix}{where}{d['a']} − {d['b']}: {d['difference']:+.{digits}f} ± {d['standard_error']:.{digits}f}")


def write_results(out: str | None, meta: dict, results: list[dict], **differences: list[dict]) -> None:
    """Write ``out/results.json`` (meta, results without their per-example tensors, and each named
    list of paired differences); nothing when ``out`` is None."""
    if not out:
        return
    rows = [{k: v for k, v in r.items() if not isinstance(v, Tensor)} for r in results]
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "results.json").write_text(json.dumps({"meta": meta, "results": rows, **differences}, indent=1))
