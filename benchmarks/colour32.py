"""Every image family on generated 3×32×32 colour images, at equal thread CPU time (BENCHMARKS.md).

The data (``make_shapes``): N images of 32×32 RGB drawn from a seed, none of which any test uses: a
background blending two random colours along a random direction, one to three filled discs or
rectangles of random colours, sizes and places, and Gaussian noise of σ = 6 levels, rounded to uint8.
They are written to a ``.npy`` of shape (N, 3, 32, 32) and read back through ``--data PATH``'s own
loader (``genmodels.data.files``: split 80/10/10 by ``default_rng(0)``).

Each model trains at its documented 32×32 defaults (the depth chosen by ``genmodels.nn.resolution``;
``vae`` with ``architecture=conv``), AdamW at ``--lr`` (the GAN's own betas), batch 32, until its
training steps have used ``--cpu-seconds`` of this thread's CPU time (``time.thread_time``,
OMP_NUM_THREADS=1), evaluation excluded. Then: the headline likelihood record on the first
``--test-examples`` test images (bits/dim and its kind) at the model's ``validation_options`` (the
cheap settings the trainer validates with: 4 ODE steps for diffusion, k = 64 for the VAE family;
recorded as ``eval_options``), or the evaluation figures of a model without
one; train examples per CPU-second; samples per CPU-second of one ``sample(--samples)`` call; the
process's peak RSS. One model per process, so the peak RSS is that model's:

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/colour32.py --model pixelcnn --cpu-seconds 60
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/colour32.py --all --cpu-seconds 60 --out /tmp/colour32.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

#: the model of each image family and its options beyond the defaults
FAMILIES = {
    "pixelcnn": {},
    "glow": {},
    "realnvp": {},
    "vae": {"architecture": "conv"},
    "edm": {},
    "two-stage": {},
    "vqvae": {},
    "gan": {},
}


def make_shapes(n: int, seed: int = 0, side: int = 32) -> np.ndarray:
    """(n, 3, side, side) uint8 images (module docstring)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float64) / (side - 1)
    out = np.empty((n, 3, side, side), dtype=np.uint8)
    for i in range(n):
        angle = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (np.cos(angle) * (cols - 0.5) + np.sin(angle) * (rows - 0.5)), 0, 1)
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        image = a[:, None, None] * (1 - t) + b[:, None, None] * t  # (3, side, side)
        for _ in range(rng.integers(1, 4)):
            colour = rng.uniform(0, 255, 3)
            cy, cx = rng.uniform(0.1, 0.9, 2)
            size = rng.uniform(0.08, 0.3)
            if rng.random() < 0.5:
                inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= size**2
            else:
                inside = (np.abs(rows - cy) <= size) & (np.abs(cols - cx) <= size * rng.uniform(0.5, 1.5))
            image[:, inside] = colour[:, None]
        image += rng.normal(0, 6, image.shape)
        out[i] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return out


def run_one(name: str, data: Path, cpu_seconds: float, lr: float, test_examples: int, samples: int) -> dict:
    from genmodels.core import Batch, create_model, resolve_groups
    from genmodels.data import load_dataset

    torch.manual_seed(0)
    dataset = load_dataset(str(data))
    model = create_model(name, dataset.spec, FAMILIES[name])
    loader = torch.utils.data.DataLoader(dataset.train, batch_size=32, shuffle=True, drop_last=True)
    init = torch.utils.data.DataLoader(dataset.train, batch_size=32)
    model.initialize(Batch.of(item) for item in init)
    groups = resolve_groups(model)
    optimizers = {
        g: torch.optim.AdamW(group.params, lr=group.lr or lr * group.lr_scale, betas=group.betas or (0.9, 0.999), weight_decay=0.0)
        for g, group in groups.items()
    }
    model.train()
    step, examples, used = 0, 0, 0.0
    while used < cpu_seconds:
        for item in loader:
            batch = Batch.of(item)
            started = time.thread_time()
            due = [g for g, group in groups.items() if group.due(step)]
            for g, loss in model.training_step(batch, step, due, model.forward):
                model.zero_grad()
                loss.loss.backward()
                optimizers[g].step()
            used += time.thread_time() - started
            step, examples = step + 1, examples + len(batch)
            if used >= cpu_seconds:
                break
    model.eval()
    x = torch.stack([dataset.test[i]["x"] for i in range(min(test_examples, len(dataset.test)))])
    batch = Batch(x, seeds=torch.arange(len(x)))
    with torch.no_grad():
        records = model.log_likelihoods(batch, **model.validation_options)  # the cheap settings (ODE steps, k)
        figures = {k: float(v.mean()) for k, v in model.evaluation_figures(Batch(x, seeds=torch.arange(len(x)))).items()}
        started = time.thread_time()
        model.sample(samples, generator=torch.Generator().manual_seed(0))
        sample_seconds = time.thread_time() - started
    headline = records[0] if records else None
    return {
        "model": name,
        "config": FAMILIES[name],
        "parameters": model.num_parameters(),
        "steps": step,
        "train_cpu_s": round(used, 1),
        "train_examples_per_cpu_s": round(examples / used, 1),
        "bits_per_dim": None if headline is None else round(float(-headline.values.mean()) / (dataset.spec.dims * math.log(2)), 4),
        "kind": "none" if headline is None else f"{headline.kind.value} ({headline.measure})",
        "eval_options": model.validation_options,
        "figures": {k: round(v, 4) for k, v in figures.items()},
        "test_examples": len(x),
        "samples_per_cpu_s": round(samples / sample_seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "machine": f"{platform.machine()}, torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, threads {torch.get_num_threads()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(FAMILIES))
    parser.add_argument("--all", action="store_true", help="every family, one process each")
    parser.add_argument("--data", type=Path, default=Path("/tmp/colour32_shapes.npy"))
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--test-examples", type=int, default=100)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--out", type=Path, help="append each model's JSON line here")
    args = parser.parse_args()
    if not args.data.exists():
        np.save(args.data, make_shapes(args.images))
    names = sorted(FAMILIES) if args.all else [args.model]
    for name in names:
        if args.all:  # a fresh process per model: its own peak RSS
            argv = [sys.executable, __file__, "--model", name, "--data", str(args.data), "--cpu-seconds", str(args.cpu_seconds),
                    "--lr", str(args.lr), "--test-examples", str(args.test_examples), "--samples", str(args.samples)]
            line = subprocess.run(argv, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        else:
            line = json.dumps(run_one(name, args.data, args.cpu_seconds, args.lr, args.test_examples, args.samples))
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(line + "\n")


if __name__ == "__main__":
    main()
