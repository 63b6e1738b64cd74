"""Training and sampling throughput of every registered model, as ../shared/PROTOCOL.md asks:
medians of several timed repeats after a warm-up, on one machine, in one run.

    python benchmarks/throughput.py --data digits --repeats 5

Training: examples per thread CPU second of optimizer steps alone (``fitting.fit``: AdamW, batch 128;
no evaluation, logging or checkpoints). Sampling: samples per thread CPU second of ``model.sample(n)``
(run with OMP_NUM_THREADS=1, so that torch computes in this thread). Models without trainable
parameters are fitted in closed form and have no training throughput.
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.data import DataLoader

from genmodels.core import Batch
from genmodels.data import load_dataset

from fitting import fit, registry_models


def time_training(
    model, dataset, batch_size: int, steps: int = 200, repeats: int = 5, *, cpu_seconds: float | None = None,
) -> float | None:
    """Training examples per thread CPU second of ``fitting.fit`` (AdamW, weight decay 0.01) on shuffled
    batches of ``batch_size``: the median of ``repeats`` runs of ``steps`` steps each, or, with
    ``cpu_seconds``, of runs of at least one step until each has used ``cpu_seconds / repeats``, after
    a warm-up (a tenth of ``steps``, at least 5; one step with ``cpu_seconds``). None: the model has no
    trainable parameters (a closed-form fit)."""
    if not model.optimizer_groups():
        return None
    loader = DataLoader(dataset.train, batch_size=batch_size, shuffle=True, drop_last=True)
    batches = (Batch.of(item) for _ in itertools.count() for item in loader)

    def run(**budget) -> float:
        return fit(model, lambda step: next(batches), weight_decay=0.01, **budget).examples_per_second

    if cpu_seconds is None:
        run(steps=max(steps // 10, 5))  # warm-up
        return statistics.median(run(steps=steps) for _ in range(repeats))
    run(steps=1)
    return statistics.median(run(cpu_seconds=cpu_seconds / repeats) for _ in range(repeats))


def thread_seconds(work: Callable[[], object]) -> float:
    """Thread CPU seconds of ``work()``."""
    started = time.thread_time()
    work()
    return time.thread_time() - started


@dataclass
class Rate:
    """What :func:`budgeted_rate` measured: ``per_second`` units per thread CPU second, the median of
    ``repeats`` timed calls of ``units`` units each."""

    per_second: float
    units: int
    repeats: int


def budgeted_rate(work: Callable[[int], object], *, cpu_seconds: float, repeats: int, most: int) -> Rate:
    """Units (examples, samples) per thread CPU second of ``work(n)``, sized to a CPU budget.

    The call size doubles from one unit (warm-up calls) until a call takes ``cpu_seconds / repeats``
    or reaches ``most`` units; that call and ``repeats − 1`` more of its size are timed, and the median
    rate is returned, so per-call overhead weighs as it does in a batch that fills the budget. Where
    one unit alone takes ``cpu_seconds`` or more (a slow autoregressive sampler), that first call is
    the figure (``repeats`` = 1).
    """
    units, seconds = 1, thread_seconds(lambda: work(1))
    if seconds >= cpu_seconds:
        return Rate(1 / seconds, 1, 1)
    while seconds < cpu_seconds / repeats and units < most:
        units = min(most, 2 * units)
        seconds = thread_seconds(lambda: work(units))
    rates = [units / seconds] + [units / thread_seconds(lambda: work(units)) for _ in range(repeats - 1)]
    return Rate(statistics.median(rates), units, repeats)


def time_sampling(model, n: int, repeats: int) -> float:
    """Samples per thread CPU second of ``model.sample(n)`` at its default options: the median of
    ``repeats`` calls after a warm-up call."""
    generator = torch.Generator().manual_seed(0)
    model.sample(n, generator=generator)  # warm-up
    return statistics.median(n / thread_seconds(lambda: model.sample(n, generator=generator)) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--models", default="all")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    names = None if args.models == "all" else args.models.split(",")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"data {args.data}, batch {args.batch_size}, medians of {args.repeats} after a warm-up")
    print()
    print("| model | params | train ex/s | samples/s |")
    print("|---|---:|---:|---:|")
    for name, model, refusal in registry_models(dataset, names):
        if model is None:
            print(f"| {name} | skipped: {refusal} | | |")
            continue
        train_rate = time_training(model, dataset, args.batch_size, args.steps, args.repeats)
        model.eval()
        sample_rate = time_sampling(model, args.samples, args.repeats)
        train_text = "closed form" if train_rate is None else f"{train_rate:,.0f}"
        print(f"| {name} | {model.num_parameters():,} | {train_text} | {sample_rate:,.0f} |")


if __name__ == "__main__":
    main()
