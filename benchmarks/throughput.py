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

import torch
from torch.utils.data import DataLoader

from genmodels.core import Batch, create_model, model_class, model_names
from genmodels.data import load_dataset
from genmodels.errors import UserError

from fitting import fit


def time_training(model, dataset, batch_size: int, steps: int, repeats: int) -> float | None:
    if not model.optimizer_groups():
        return None
    loader = DataLoader(dataset.train, batch_size=batch_size, shuffle=True, drop_last=True)

    def run(n_steps: int) -> float:
        batches = (Batch.of(item) for _ in itertools.count() for item in loader)
        return fit(model, lambda step: next(batches), steps=n_steps, weight_decay=0.01).examples_per_second

    run(max(steps // 10, 5))  # warm-up
    return statistics.median(run(steps) for _ in range(repeats))


def time_sampling(model, n: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    model.sample(n, generator=generator)  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.thread_time()
        model.sample(n, generator=generator)
        rates.append(n / (time.thread_time() - started))
    return statistics.median(rates)


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
    names = model_names() if args.models == "all" else args.models.split(",")
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"data {args.data}, batch {args.batch_size}, medians of {args.repeats} after a warm-up")
    print()
    print("| model | params | train ex/s | samples/s |")
    print("|---|---:|---:|---:|")
    for name in names:
        try:
            model_class(name).check_data(dataset.spec)
        except UserError as reason:
            print(f"| {name} | skipped: {reason} | | |")
            continue
        torch.manual_seed(0)
        model = create_model(name, dataset.spec)
        model.initialize(Batch.of(item) for item in DataLoader(dataset.train, batch_size=500))
        train_rate = time_training(model, dataset, args.batch_size, args.steps, args.repeats)
        model.eval()
        sample_rate = time_sampling(model, args.samples, args.repeats)
        train_text = "closed form" if train_rate is None else f"{train_rate:,.0f}"
        print(f"| {name} | {model.num_parameters():,} | {train_text} | {sample_rate:,.0f} |")


if __name__ == "__main__":
    main()
