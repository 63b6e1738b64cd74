"""How close each registered model trains to the machine's limit: training examples per thread CPU
second, FLOPs per training example, the achieved GFLOP/s and its share of a one-thread fp32 matmul
ceiling measured in the same process, as ../shared/PROTOCOL.md asks.

    OMP_NUM_THREADS=1 python benchmarks/flop_utilization.py --data digits --steps 30 --repeats 3

FLOPs are those ``torch.utils.flop_counter.FlopCounterMode`` counts in one training step (forward and
backward of every optimizer group's loss, as ``fitting.fit`` steps them): matrix products,
convolutions and attention, not elementwise work, so the share is the share of the matmul ceiling
that the model's matmul-type work reaches. The ceiling is the median rate of ``--matmul-size``-square
fp32 products on one thread, measured before and after the models (both printed); a model whose
share is low spends its time elsewhere (elementwise ops, small kernels, Python). Time is thread CPU
time (``time.thread_time``), so the figures hold on a machine shared with other work; run with
``OMP_NUM_THREADS=1`` so that torch computes in this thread.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from genmodels.core import Batch, create_model, model_class, model_names
from genmodels.data import load_dataset
from genmodels.errors import UserError

from fitting import fit
from throughput import time_training


def matmul_ceiling(size: int, repeats: int = 5) -> float:
    """GFLOP/s of ``size``×``size`` fp32 matrix products on this thread: the median of ``repeats``
    rounds of enough products for about a quarter of a CPU second each (2·size³ FLOPs a product)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    started, count = time.thread_time(), 0
    while time.thread_time() - started < 0.05:
        torch.mm(a, b)
        count += 1
    per_round = max(1, int(count * 0.25 / 0.05))
    rates = []
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(per_round):
            torch.mm(a, b)
        rates.append(2 * size**3 * per_round / (time.thread_time() - started) / 1e9)
    return statistics.median(rates)


def training_flops_per_example(model, batch: Batch) -> float:
    """FLOPs of one training step (every group's forward and backward, and its update) per example."""
    with FlopCounterMode(display=False) as counter:
        fit(model, lambda step: batch, steps=1)
    return counter.get_total_flops() / len(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--models", default="all", help="comma-separated names, or all")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=512)
    args = parser.parse_args()

    dataset = load_dataset(args.data)
    names = model_names() if args.models == "all" else args.models.split(",")
    ceiling = matmul_ceiling(args.matmul_size)
    print(f"{platform.machine()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} thread(s), data {args.data}, batch {args.batch_size}, medians of {args.repeats} "
          f"× {args.steps} steps after a warm-up, thread CPU time")
    print(f"fp32 matmul ceiling ({args.matmul_size}²): {ceiling:.1f} GFLOP/s")
    print()
    print("| model | params | train ex/s | MFLOP / train example | GFLOP/s | share of ceiling |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in names:
        try:
            model_class(name).check_data(dataset.spec)
        except UserError as reason:
            print(f"| {name} | skipped: {reason} | | | | |")
            continue
        torch.manual_seed(0)
        model = create_model(name, dataset.spec)
        model.initialize(Batch.of(item) for item in DataLoader(dataset.train, batch_size=500))
        if not model.optimizer_groups():
            print(f"| {name} | {model.num_parameters():,} | closed form | | | |")
            continue
        batch = Batch.of(next(iter(DataLoader(dataset.train, batch_size=args.batch_size, shuffle=True))))
        flops = training_flops_per_example(model, batch)
        rate = time_training(model, dataset, args.batch_size, args.steps, args.repeats)
        achieved = flops * rate / 1e9
        print(f"| {name} | {model.num_parameters():,} | {rate:,.0f} | {flops / 1e6:,.2f} | {achieved:.2f} | "
              f"{achieved / ceiling:.0%} |", flush=True)
    print()
    print(f"fp32 matmul ceiling again, after the models: {matmul_ceiling(args.matmul_size):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
