"""What each family's default estimates cost beside its training: thread CPU seconds of training
between two validations (``eval_every`` steps at the default batch size), of one validation pass with
the model's ``validation_options``, of the test pass with the default likelihood options, and of the
end-of-run grid (64 samples), on digits (and a 32×32 random set for the dimension-scaled IWAE k).

Untrained weights: these costs do not depend on the weights (every solver here takes fixed steps).
Thread CPU time, OMP_NUM_THREADS=1, as ../shared/PROTOCOL.md asks (the machine is shared).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/evaluation_cost.py [--models vae edm] [--train-steps 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from genmodels.core import Batch, create_model
from genmodels.data import load_dataset
from genmodels.evaluate import evaluate_likelihood
from genmodels.training.config import TrainConfig

MODELS = ["fvsbn", "made", "pixelcnn", "transformer", "vae", "realnvp", "edm", "rectified-flow"]


def thread_seconds(work) -> float:
    started = time.thread_time()
    work()
    return time.thread_time() - started


def training_seconds_per_step(model, train_x, batch_size: int, steps: int) -> float:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    rng = torch.Generator().manual_seed(0)

    def step():
        batch = Batch(train_x[torch.randint(0, len(train_x), (batch_size,), generator=rng)])
        loss = model.loss(batch, step=0).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.train()
    step()  # warm-up
    return thread_seconds(lambda: [step() for _ in range(steps)]) / steps


def measure(name: str, dataset, train_steps: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name, dataset.spec)
    defaults = TrainConfig(steps=1)  # the default batch size and eval_every
    per_step = training_seconds_per_step(model, dataset.train.x, defaults.batch_size, train_steps)
    validation = thread_seconds(lambda: evaluate_likelihood(model, dataset.validation, options=dict(model.validation_options)))
    test = thread_seconds(lambda: evaluate_likelihood(model, dataset.test))
    model.eval()
    sampling = thread_seconds(lambda: model.sample(64, generator=torch.Generator().manual_seed(0)))
    between = per_step * defaults.eval_every
    return {"model": name, "data": dataset.spec.name, "validation_options": dict(model.validation_options),
            "train_between_validations": between, "validation": validation, "validation_share": validation / between,
            "validation_examples": len(dataset.validation), "test": test, "test_examples": len(dataset.test),
            "sampling_64": sampling}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--train-steps", type=int, default=10)
    parser.add_argument("--patches", default="/tmp/genmodels-patches32.npy", help="where the 32×32 random set is written")
    args = parser.parse_args()
    digits = load_dataset("digits")
    np.save(args.patches, np.random.default_rng(0).integers(0, 256, size=(2000, 32, 32), dtype=np.uint8))
    patches = load_dataset(args.patches)
    print("| model | data | validation options | training between validations (s) | one validation pass (s) | share "
          "| test pass (s) | 64 samples (s) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    runs = [(name, digits) for name in args.models] + [(name, patches) for name in ("vae",) if name in args.models]
    for name, dataset in runs:
        row = measure(name, dataset, args.train_steps)
        options = ", ".join(f"{k}={v}" for k, v in row["validation_options"].items()) or "defaults"
        print(f"| {name} | {row['data'].split('/')[-1]} | {options} | {row['train_between_validations']:.1f} | "
              f"{row['validation']:.2f} ({row['validation_examples']} ex.) | {row['validation_share']:.1%} | "
              f"{row['test']:.2f} ({row['test_examples']} ex.) | {row['sampling_64']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
