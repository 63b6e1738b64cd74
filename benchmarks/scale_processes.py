"""Data-parallel scaling on this machine: training examples/s with 1 and 2 processes.

Each setting runs ``genmodels train MODEL --num-processes N`` (N = 1, 2) in a fresh process with the
same global batch (``--batch-size`` is per process: B/N each) and reads the trainer's own
examples/s from results.json (training time only; evaluation and start-up excluded). On a machine
without a GPU the processes are a gloo group of CPU processes, each with OMP_NUM_THREADS=1; with
GPUs, one GPU each. Say how many cores the machine has, and whether they were shared, beside the
figures: two processes on two busy cores cannot show a speed-up.

    OMP_NUM_THREADS=1 python benchmarks/scale_processes.py [--models fvsbn,transformer] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
#: Model options that keep a CPU run to a minute.
OPTIONS = {"transformer": ["--set", "dim=128", "--set", "layers=4", "--set", "heads=4"]}


def run(model: str, processes: int, steps: int, batch: int, out: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable, "-m", "genmodels.cli", "train", model, "--data", "digits", "--steps", str(steps),
        "--batch-size", str(batch // processes), "--eval-every", str(10**6), "--log-every", str(10**6),
        "--num-samples", "1", "--eval-batch-size", "500", "--no-progress", "--num-processes", str(processes),
        "--out", str(out), *OPTIONS.get(model, []),
    ]
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "results.json").read_text())["examples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fvsbn,transformer")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    args = parser.parse_args()
    import torch

    where = "GPU" if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores (os.cpu_count)"
    print(f"{where}; global batch {args.batch_size}, {args.steps} steps, OMP_NUM_THREADS=1 per process")
    print(f"{'model':<12} {'1 process':>12} {'2 processes':>12} {'speed-up':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            rates = [run(model, n, args.steps, args.batch_size, Path(tmp) / f"{model}-{n}") for n in (1, 2)]
            print(f"{model:<12} {rates[0]:>10.0f}/s {rates[1]:>10.0f}/s {rates[1] / rates[0]:>8.2f}x")


if __name__ == "__main__":
    main()
