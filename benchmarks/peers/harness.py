"""The one peer harness: every peer comparison trains its contenders here, interleaved in one process.

Rules it enforces (../../../shared/PROTOCOL.md, /work/shared/PROTOCOL.md):

* **Interleaved, budgeted in thread CPU time.** All contenders live in one process; the next training
  step always goes to the contender that has used the least of its budget so far (``time.thread_time``
  of its training steps, one thread). A load elsewhere on the machine, or in another thread of this
  process, slows every contender's wall clock alike and does not move anyone's CPU budget. Wall time
  is recorded beside it, never budgeted by.
* **The same training for all**: the same sequence of minibatch indices (one generator per contender,
  all from the same seed: the k-th step of every contender sees the same examples), Adam with the same
  learning rate, the same schedule over the budget (cosine in the fraction of the CPU budget spent, or
  constant), the same gradient clipping. Options only one library has (EMA, augmentation) are fields of
  the :class:`Contender` and are written into its row, so a table can show them as a separate row.
* **Validation chooses, test is scored once.** The validation split picks the checkpoint (and stops a
  contender early after ``patience`` validations without improvement); the best state is scored on
  the test split once, by the same code path for every contender (:func:`per_example_log_likelihoods`).
  A contender whose ``selects_on`` is not ``"validation"``, or a validation split equal to the test
  split, is refused with :class:`SelectsOnTestError` before anything trains.
* **One JSON row per contender** with the versions, the machine (torch's CPU capability string, the
  threads), the parameters, FLOPs per training example (``torch.utils.flop_counter``: matmuls and
  convolutions; elementwise work is not counted), steps, the budget and whether it was reached.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from genmodels.core import Batch
from genmodels.training import EMA

__all__ = [
    "Contender",
    "SelectsOnTestError",
    "HarnessSettings",
    "run_interleaved",
    "per_example_log_likelihoods",
    "mean_log_likelihood",
    "count_parameters",
    "flops_per_example",
    "machine",
    "version",
    "paired_differences",
    "print_differences",
    "write_results",
]


class SelectsOnTestError(ValueError):
    """A contender or a configuration would choose something on the test split."""


def version(name: str) -> str:
    """``"name X.Y.Z"`` of an installed distribution (a peer library, torch, genmodels)."""
    import importlib.metadata

    return f"{name} {importlib.metadata.version(name)}"


def machine() -> dict:
    """What a figure was measured on: torch's CPU capability string (e.g. ``AVX2``, ``AVX512``;
    bf16 units come with AVX512-BF16 / AMX), the threads, the cores, the platform."""
    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
    }


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
        extra: more fields for its JSON row (its config, ...).
        ema_decay: keep θ̄ ← d·θ̄ + (1 − d)·θ after every update (its cost counts in the budget);
            validation, the checkpoint kept and the test score use θ̄. An option, reported in the row.
        train_batch: the training examples of a step from its indices into the training split
            (an augmentation); default ``train_x[index]``. Reported in the row as ``augmentation``.
        augmentation: a name for ``train_batch``, for the row.
        selects_on: the split that chooses its checkpoint; anything but "validation" is refused.
    """

    name: str
    library: str
    module: nn.Module
    train_nll: Callable[[Tensor], Tensor]
    log_likelihoods: Callable[[Batch, int], Tensor]
    description: str = ""
    extra: dict = field(default_factory=dict)
    ema_decay: float | None = None
    train_batch: Callable[[Tensor], Tensor] | None = None
    augmentation: str | None = None
    selects_on: str = "validation"


@dataclass
class HarnessSettings:
    """The training every contender gets.

    Args:
        cpu_seconds: the budget per contender, thread CPU seconds of training steps.
        batch_size: examples per step.
        lr: Adam's learning rate (the peak, under a cosine schedule).
        schedule: "constant" or "cosine" (lr · ½(1 + cos(π · spent/budget)), spent in CPU seconds).
        grad_clip: clip the gradient norm to this.
        eval_every: CPU seconds of training between validations.
        patience: stop a contender after this many validations without improvement (None: never).
        val_draws, test_draws: dequantization draws per example (discrete data).
        seed: the minibatch sequence (the same for everyone) and each contender's initialization.
        max_steps: stop a contender after this many steps too (None: the budget alone).
    """

    cpu_seconds: float
    batch_size: int = 256
    lr: float = 1e-3
    schedule: str = "constant"
    grad_clip: float = 10.0
    eval_every: float = 10.0
    patience: int | None = None
    val_draws: int = 1
    test_draws: int = 1
    seed: int = 0
    max_steps: int | None = None

    def __post_init__(self) -> None:
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if not self.cpu_seconds > 0 or self.batch_size < 1 or not self.eval_every > 0:
            raise ValueError("cpu_seconds and eval_every must be > 0 and batch_size ≥ 1")


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


def flops_per_example(contender: Contender, x: Tensor) -> float | None:
    """FLOPs of one training step (forward and backward) per example, by ``torch.utils.flop_counter``
    (matmuls and convolutions), on the batch x; None where the counter fails on a contender's ops."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        with FlopCounterMode(display=False) as counter:
            contender.train_nll(x).backward()
    except Exception:  # noqa: BLE001 - a counter failure must not stop the comparison
        return None
    finally:
        contender.module.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


def refuse_test_selection(contenders: list[Contender], val_x: Tensor, test_x: Tensor | None) -> None:
    """:class:`SelectsOnTestError` if anything would be chosen on the test split."""
    for c in contenders:
        if c.selects_on != "validation":
            raise SelectsOnTestError(
                f"contender {c.name!r} selects on {c.selects_on!r}: only the validation split may choose "
                "(the test split is scored once, after choosing)")
    if test_x is not None and (val_x is test_x or (val_x.shape == test_x.shape and torch.equal(val_x, test_x))):
        raise SelectsOnTestError("the validation split is the test split: pass a separate validation split")


class _Run:
    """One contender's training state inside :func:`run_interleaved`."""

    def __init__(self, contender: Contender, settings: HarnessSettings):
        self.c, self.s = contender, settings
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.optimizer = torch.optim.Adam(contender.module.parameters(), lr=settings.lr)
        self.ema = EMA(contender.module, contender.ema_decay) if contender.ema_decay is not None else None
        self.cpu = self.wall = self.eval_cpu = 0.0
        self.steps = self.nonfinite = self.since_best = 0
        self.next_eval = 0.0
        self.best, self.best_state, self.best_at = -math.inf, None, 0.0
        self.history: list[tuple[float, float]] = []
        self.stopped = ""
        self.flops: float | None = None

    @property
    def done(self) -> bool:
        return bool(self.stopped) or self.cpu >= self.s.cpu_seconds

    def step(self, train_x: Tensor) -> None:
        s, module = self.s, self.c.module
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        if s.schedule == "cosine":
            for group in self.optimizer.param_groups:
                group["lr"] = s.lr * 0.5 * (1.0 + math.cos(math.pi * min(self.cpu / s.cpu_seconds, 1.0)))
        index = torch.randint(0, len(train_x), (s.batch_size,), generator=self.generator)
        x = self.c.train_batch(index) if self.c.train_batch is not None else train_x[index]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.c.train_nll(x)
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), s.grad_clip)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(module)
        else:
            self.nonfinite += 1
        self.cpu += time.thread_time() - cpu0
        self.wall += time.perf_counter() - wall0
        self.steps += 1
        if s.max_steps is not None and self.steps >= s.max_steps:
            self.stopped = "max_steps"

    def validate(self, val_x: Tensor) -> None:
        cpu0 = time.thread_time()
        module, live = self.c.module, None
        if self.ema is not None:  # evaluate the averaged weights, then train on from the live ones
            live = copy.deepcopy(module.state_dict())
            module.load_state_dict(self.ema.state_dict())
        value = mean_log_likelihood(self.c, val_x, self.s.val_draws)
        self.history.append((round(self.cpu, 2), round(-value, 4)))
        if value > self.best or self.best_state is None:
            self.best, self.best_state, self.best_at, self.since_best = value, copy.deepcopy(module.state_dict()), self.cpu, 0
        else:
            self.since_best += 1
            if self.s.patience is not None and self.since_best >= self.s.patience:
                self.stopped = "early_stopping"
        if live is not None:
            module.load_state_dict(live)
        self.next_eval = self.cpu + self.s.eval_every
        self.eval_cpu += time.thread_time() - cpu0


def run_interleaved(
    contenders: list[Contender],
    train_x: Tensor,
    val_x: Tensor,
    test_x: Tensor | None,
    settings: HarnessSettings,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Train every contender on its own CPU budget, interleaved; select on validation; score test once.

    Returns one row per contender (see the module docstring); ``row["test_values"]`` holds the
    per-example test log-likelihoods (a tensor, for paired differences; :func:`write_results` drops it).
    ``test_x=None`` (a search on validation): no test figure is computed; the rows say so.
    """
    refuse_test_selection(contenders, val_x, test_x)
    torch.set_num_threads(1)  # the budget is one thread's CPU time: intra-op threads would escape it
    runs = [_Run(c, settings) for c in contenders]
    warm = train_x[: settings.batch_size]
    for run in runs:
        torch.manual_seed(settings.seed)
        run.flops = flops_per_example(run.c, warm)  # also the first of three untimed warm-up passes
        for _ in range(2):  # first-call costs are nobody's throughput
            run.c.train_nll(warm).backward()
            run.c.module.zero_grad(set_to_none=True)
    wall_start, report_at = time.perf_counter(), 0.0
    while not all(run.done for run in runs):
        run = min((r for r in runs if not r.done), key=lambda r: r.cpu)
        run.step(train_x)
        if run.cpu >= run.next_eval or run.done:
            run.validate(val_x)
        least = min(r.cpu for r in runs)
        if progress is not None and least >= report_at:
            progress("; ".join(f"{r.c.name}: {r.cpu:.0f} cpu-s, {r.steps} steps, val {-r.best:.4f}" for r in runs))
            report_at = least + max(settings.cpu_seconds / 10, 1.0)
    interleaved_wall = time.perf_counter() - wall_start
    return [_score(run, test_x, interleaved_wall) for run in runs]


def _score(run: _Run, test_x: Tensor | None, interleaved_wall: float) -> dict:
    c, s = run.c, run.s
    c.module.load_state_dict(run.best_state)
    cpu0 = time.thread_time()
    test_values = None if test_x is None else per_example_log_likelihoods(c, test_x, s.test_draws)
    return {
        "model": c.name,
        "library": c.library,
        "description": c.description,
        "parameters": count_parameters(c.module),
        "flops_per_train_example": None if run.flops is None else round(run.flops),
        "budget_cpu_s": s.cpu_seconds,
        "cpu_s": round(run.cpu, 2),
        "wall_s": round(run.wall, 2),
        "budget_reached": run.cpu >= s.cpu_seconds,
        "stopped": run.stopped or "budget",
        "interleaved_wall_s": round(interleaved_wall, 1),
        "steps": run.steps,
        "batch_size": s.batch_size,
        "lr": s.lr,
        "schedule": s.schedule,
        "grad_clip": s.grad_clip,
        "seed": s.seed,
        "ema_decay": c.ema_decay,
        "augmentation": c.augmentation,
        "selects_on": c.selects_on,
        "train_examples_per_cpu_s": round(run.steps * s.batch_size / max(run.cpu, 1e-9), 1),
        "validation_cpu_s": round(run.eval_cpu, 2),
        "best_validation_at_cpu_s": round(run.best_at, 2),
        "validation_nll_nats": round(-run.best, 4),
        "test_nll_nats": None if test_values is None else round(-test_values.mean().item(), 4),
        "test_nll_standard_error": None if test_values is None else round(test_values.std().item() / math.sqrt(len(test_values)), 4),
        "test_eval_cpu_s": round(time.thread_time() - cpu0, 2),
        "nonfinite_steps": run.nonfinite,
        "history": run.history,
        **machine(),
        "test_values": test_values,
        **c.extra,
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


def public_row(row: dict) -> dict:
    """A row without its tensors and callables (what goes into JSON)."""
    return {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool, list, tuple, dict, type(None)))}


def write_results(out: str | None, meta: dict, results: list[dict], **differences: list[dict]) -> None:
    """Write ``out/results.json`` (meta with the machine, the rows without their per-example tensors,
    and each named list of paired differences); nothing when ``out`` is None."""
    if not out:
        return
    Path(out).mkdir(parents=True, exist_ok=True)
    payload = {"meta": {**machine(), **meta}, "results": [public_row(r) for r in results], **differences}
    Path(out, "results.json").write_text(json.dumps(payload, indent=1))
