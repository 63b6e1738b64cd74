"""Training and sampling throughput of every registered model, as ../shared/PROTOCOL.md asks:
medians of several timed repeats after a warm-up, on one machine, in one run.

    python benchmarks/throughput.py --data digits --repeats 5

Training: examples/s of optimizer steps alone (AdamW, batch 128; no evaluation, logging or
checkpoints). Sampling: samples/s of ``model.sample(n)``. Models without trainable parameters are
fitted in closed form and have no training throughput.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.data import DataLoader

from genmodels.core import Batch, create_model, model_class, model_names
from genmodels.data import load_dataset
from genmodels.errors import UserError


def time_training(model, dataset, batch_size: int, steps: int, repeats: int) -> float | None:
    groups = model.optimizer_groups()
    if not groups:
        return None
    optimizers = {name: torch.optim.AdamW(params, lr=1e-3) for name, params in groups.items()}
    loader = DataLoader(dataset.train, batch_size=batch_size, shuffle=True, drop_last=True)

    def run(n_steps: int) -> float:
        done, started = 0, time.perf_counter()
        while done < n_steps:
            for item in loader:
                batch = Batch.of(item)
                for group, optimizer in optimizers.items():
                    model(batch, group=group).loss.backward()
                    optimizer.step()
                    optimizer.zero_grad(set_to_none=True)
                done += 1
                if done == n_steps:
                    break
        return n_steps * batch_size / (time.perf_counter() - started)

    run(max(steps // 10, 5))  # warm-up
    return statistics.median(run(steps) for _ in range(repeats))


def time_sampling(model, n: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    model.sample(n, generator=generator)  # warm-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.sample(n, generator=generator)
        rates.append(n / (time.perf_counter() - started))
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
