"""Time, or profile by operator, the training steps of one model, in thread CPU time.

The before/after figures of BENCHMARKS.md's "Speed fixes" come from this script, run once per source
tree (the tree is whatever `genmodels` imports: put a checkout's ``src`` on ``PYTHONPATH``) in
alternating rounds::

    git worktree add --detach /tmp/before 954dc22
    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/before/src python benchmarks/step_profile.py nade --data digits --batch 128 --steps 30
    OMP_NUM_THREADS=1 python benchmarks/step_profile.py nade --data digits --batch 128 --steps 30
    OMP_NUM_THREADS=1 python benchmarks/step_profile.py glow --per-op 10     # where a step's time goes

``--per-op N`` times every aten call of N steps with ``time.thread_time`` (a ``TorchDispatchMode``):
torch.profiler reports wall time per operator, which a loaded machine inflates several-fold.
The step is `throughput.time_training`'s: AdamW (lr 10⁻³, weight decay 0.01) per optimizer group,
shuffled batches of the training split, after a warm-up of a tenth of the steps (at least 3).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections import defaultdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader

import genmodels
from genmodels.core import Batch, create_model
from genmodels.data import load_dataset


class OperatorClock(TorchDispatchMode):
    """Adds each aten operator's thread CPU time and calls, by name (and input shapes if asked)."""

    def __init__(self, shapes: bool):
        super().__init__()
        self.shapes = shapes
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.thread_time()
        out = func(*args, **(kwargs or {}))
        shapes = str([tuple(a.shape) for a in args if isinstance(a, torch.Tensor)][:3]) if self.shapes else ""
        key = (str(func.overloadpacket.__name__), shapes)
        self.seconds[key] += time.thread_time() - start
        self.calls[key] += 1
        return out


def training_step(name: str, data: str, batch_size: int, config: dict):
    """A closure doing one optimizer step of ``name`` at its defaults (plus ``config``) on ``data``."""
    torch.manual_seed(0)
    dataset = load_dataset(data)
    model = create_model(name, dataset.spec, config)
    model.initialize(Batch.of(item) for item in DataLoader(dataset.train, batch_size=500))
    optimizers = {group: torch.optim.AdamW(list(getattr(params, "params", params)), lr=1e-3, weight_decay=0.01)
                  for group, params in model.optimizer_groups().items()}
    loader = DataLoader(dataset.train, batch_size=batch_size, shuffle=True, drop_last=True)
    batches = (Batch.of(item) for _ in itertools.count() for item in loader)
    model.train()
    steps = itertools.count()

    def step() -> None:
        batch, index = next(batches), next(steps)
        for group, optimizer in optimizers.items():
            optimizer.zero_grad(set_to_none=True)
            model(batch, step=index, group=group).loss.backward()
            optimizer.step()

    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default="{}", help="model options as JSON")
    parser.add_argument("--per-op", type=int, default=0, metavar="N", help="profile N steps by operator instead")
    parser.add_argument("--shapes", action="store_true", help="with --per-op: split operators by input shapes")
    parser.add_argument("--rows", type=int, default=30)
    args = parser.parse_args(argv)

    step = training_step(args.model, args.data, args.batch, json.loads(args.config))
    for _ in range(max(args.steps // 10, 3)):
        step()
    source = genmodels.__file__.rsplit("/genmodels/", 1)[0]
    if args.per_op:
        start = time.thread_time()
        for _ in range(args.per_op):
            step()
        plain = (time.thread_time() - start) / args.per_op
        with OperatorClock(args.shapes) as clock:
            for _ in range(args.per_op):
                step()
        total = sum(clock.seconds.values())
        print(f"{args.model} {args.data} ({source}): {plain * 1e3:.1f} ms a step; "
              f"{sum(clock.calls.values()) / args.per_op:.0f} aten calls a step, {total / args.per_op * 1e3:.1f} ms in them")
        for key, seconds in sorted(clock.seconds.items(), key=lambda kv: -kv[1])[: args.rows]:
            print(f"{seconds / args.per_op * 1e3:8.2f} ms {100 * seconds / total:5.1f}% "
                  f"{clock.calls[key] // args.per_op:5d} calls  {key[0]} {key[1]}")
        return
    rates = []
    for _ in range(args.repeats):
        start = time.thread_time()
        for _ in range(args.steps):
            step()
        rates.append(args.steps * args.batch / (time.thread_time() - start))
    print(f"{args.model} {args.data} ({source}): median {statistics.median(rates):.1f} train examples per CPU-second "
          f"{[round(r, 1) for r in rates]}")


if __name__ == "__main__":
    main()
