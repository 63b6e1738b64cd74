"""The data loader alone on a folder of colour PNGs: memory, and the CPU it costs the training thread.

Makes (once) a folder of N 64x64 RGB PNGs under --folder: smooth random images (16x16 noise upscaled
bilinearly, plus +-8 grain), which compress about as well as photographs do (12 KB each, ~3x), no
test uses them. Then, in one process with OMP_NUM_THREADS=1:

- load: the folder scan's thread CPU time, the RSS it adds, and tracemalloc's peak during it;
- loader: for each --workers W (and the prefetch factor), iterate the training split through a
  DataLoader (batch 64, shuffled as the trainer does) for --batches batches and report the main
  thread's CPU time per example (``time.thread_time``: what loading takes from the training step)
  and, for reference only, wall-clock examples/s (the machine is shared; wall time is not a budget);
- the same with ``--resize 32`` and ``--hflip``;
- with ``--epoch``, a whole epoch of the training split; the process's peak RSS comes last.

    OMP_NUM_THREADS=1 python benchmarks/data_loader.py --folder /tmp/png64 --images 5000
"""

from __future__ import annotations

import argparse
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from genmodels.data import load_dataset
from genmodels.training.loop import EpochSampler


def make_folder(folder: Path, n: int, size: int = 64) -> None:
    if folder.is_dir() and len(list(folder.glob("*.png"))) >= n:
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = Image.fromarray(rng.integers(0, 256, size=(size // 4, size // 4, 3), dtype=np.uint8))
        smooth = np.asarray(small.resize((size, size), Image.BILINEAR)).astype(np.int16)
        grain = rng.integers(-8, 9, size=(size, size, 3))
        Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8)).save(folder / f"{i:06d}.png")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return int(Path("/proc/self/status").read_text().split("VmHWM:")[1].split()[0]) / 1024


def measure_loader(split, workers: int, prefetch: int | None, batches: int) -> tuple[float, float]:
    """(main-thread CPU µs per example, wall examples/s) over ``batches`` batches of 64."""
    sampler = EpochSampler(len(split), seed=0)
    kwargs = {} if workers == 0 else {"prefetch_factor": prefetch, "persistent_workers": False}
    loader = DataLoader(split, batch_size=64, sampler=sampler, drop_last=True, num_workers=workers, **kwargs)
    iterator = iter(loader)
    next(iterator)  # warm-up: workers started, first batch in
    cpu, wall = time.thread_time(), time.perf_counter()
    seen = 0
    for _, batch in zip(range(batches), iterator):
        seen += len(batch["x"])
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    del iterator
    return cpu / seen * 1e6, seen / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/genmodels-png64"))
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--epoch", action="store_true", help="also one whole epoch of the training split, workers 0")
    parser.add_argument("--load-only", action="store_true",
                        help="only the load line (runs on older genmodels too, e.g. PYTHONPATH=/tmp/main/src)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    make_folder(args.folder, args.images)

    rss0 = rss_mb()
    tracemalloc.start()
    cpu = time.thread_time()
    dataset = load_dataset(str(args.folder))
    cpu = time.thread_time() - cpu
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n = len(dataset.train) + len(dataset.validation) + len(dataset.test)
    print(f"load {n} images {dataset.spec.shape}: scan {cpu:.2f} s thread CPU ({cpu / n * 1e6:.0f} µs/image), "
          f"RSS +{rss_mb() - rss0:.1f} MB, tracemalloc peak {peak / 2**20:.1f} MB; stored {getattr(dataset.train, 'stored_dtype', None) or dataset.train.x.dtype}; "
          f"int64 in memory would be {n * np.prod(dataset.spec.shape) * 8 / 2**20:.0f} MB")
    if args.load_only:
        print(f"peak RSS {peak_rss_mb():.0f} MB ({Path(__import__('genmodels').__file__).parent})")
        return
    from genmodels.data import ImageTransform

    cases = [("as is", dataset), ("--resize 32 --hflip", dataset.transformed(ImageTransform((32, 32), hflip=True)))]
    for label, data in cases:
        for workers in (int(w) for w in args.workers.split(",")):
            us, per_s = measure_loader(data.train, workers, args.prefetch, args.batches)
            print(f"{label:<20} workers {workers} prefetch {args.prefetch if workers else '-'}: "
                  f"main thread {us:6.1f} µs CPU/example   (wall {per_s:7.0f} examples/s, shared machine)")
    if args.epoch:
        us, per_s = measure_loader(dataset.train, 0, None, len(dataset.train) // 64)
        print(f"one epoch ({len(dataset.train) // 64 * 64} examples), workers 0: main thread {us:.1f} µs CPU/example")
    print(f"peak RSS {peak_rss_mb():.0f} MB, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
