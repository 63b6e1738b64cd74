"""Training examples/s of the bench's generic config for one model on a user's data, before and after
the parameter budget (``genmodels.recipes.generic``), in thread CPU time on one thread.

    OMP_NUM_THREADS=1 python benchmarks/generic_budget_speed.py FOLDER MODEL [STEPS]
    python benchmarks/generic_budget_speed.py --make FOLDER

prints, for the config the bench used before the budget (widths only) and the one it uses now, the
parameters and the median over STEPS (default 5) timed steps, after one warm-up, of one AdamW step
on a batch of 128 (forward, backward, update).
"""

from __future__ import annotations

import sys
import time

import torch


def _make_folder(folder: str, n: int = 600) -> None:
    """``n`` 28×28 grey PNGs: a Gaussian blob at a random place and size, plus noise (seed 0)."""
    from pathlib import Path

    import numpy as np
    from PIL import Image

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]
    for i in range(n):
        cx, cy, r = rng.uniform(6, 22), rng.uniform(6, 22), rng.uniform(3, 9)
        img = 255 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)) + rng.normal(0, 12, (28, 28))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L").save(out / f"{i:04d}.png")


def _examples_per_second(name: str, data, config: dict | None, steps: int) -> tuple[int, float]:
    from genmodels.core import Batch, create_model

    torch.manual_seed(0)
    model = create_model(name, data.spec, config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batch = Batch(data.train.x[:128].long())

    def step() -> None:
        loss = model.loss(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.thread_time()
        step()
        times.append(time.thread_time() - start)
    return sum(p.numel() for p in model.parameters()), 128 / sorted(times)[len(times) // 2]


def main(argv: list[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="the data (a folder of images, .npy or .csv)")
    parser.add_argument("model", nargs="?", help="the model to time (not needed with --make)")
    parser.add_argument("steps", nargs="?", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--make", action="store_true", help="write 600 generated 28×28 grey PNGs into FOLDER and exit")
    args = parser.parse_args(argv)
    if args.make:
        _make_folder(args.folder)
        return
    from genmodels.core import model_class
    from genmodels.data import load_dataset
    from genmodels.recipes.generic import bench_model_config, scaled_model_config

    torch.set_num_threads(1)
    data, cls = load_dataset(args.folder), model_class(args.model)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, 1 thread")
    for label, config in (("widths only", scaled_model_config(cls, data.spec)),
                          ("within the budget", bench_model_config(args.model, cls, data.spec))):
        params, rate = _examples_per_second(args.model, data, config, args.steps)
        print(f"{args.model} {label}: {config}, {params / 1e6:.2f} M parameters, {rate:.1f} examples/s (median of {args.steps})")


if __name__ == "__main__":
    main(sys.argv[1:])
