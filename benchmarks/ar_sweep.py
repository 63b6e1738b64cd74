"""Train a list of (model, config, training settings) runs one after another and print each run's test
figure at its best-validation checkpoint: the sweep behind the digits-nade-long / digits-made-long /
binary-digits-* recipes. Each argument is one run, as JSON.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/ar_sweep.py digits --out /tmp/sweep \\
        '{"model": "nade", "config": {"hidden": 128, "direct": true, "l2": 0.006, "dropout": 0.3},
          "train": {"steps": 1500, "batch_size": 128, "lr": 0.005, "lr_schedule": "cosine", "eval_every": 250}}'
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from genmodels.data import load_dataset
from genmodels.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data")
    parser.add_argument("runs", nargs="+", help='JSON: {"model": NAME, "config": {...}, "train": {TrainConfig fields}}')
    parser.add_argument("--out", type=Path, default=Path("/tmp/ar-sweep"))
    args = parser.parse_args()
    data = load_dataset(args.data)
    for index, text in enumerate(args.runs):
        run = json.loads(text)
        name, config = run["model"], run.get("config", {})
        start = time.time()
        result = train(name, data, TrainConfig(num_samples=16, cpu=True, **run["train"]), args.out / f"{index}-{name}",
                       model_config=config, progress=False)
        head = result.test[0]
        print(f"{index} {name} {json.dumps(config)} {json.dumps(run['train'])} params={result.num_parameters} "
              f"test {head.nll_nats:.3f} nats {head.bits_per_dim:.4f} bits/dim ({head.kind}) {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
