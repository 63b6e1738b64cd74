"""Test bits/dim of the autoregressive models on ``digits`` (CPU, a fixed step budget each).

Each model trains with AdamW for ``--steps`` steps of batch 64, evaluating the validation split every
``--eval-every`` steps; the test figure is the one at the best-validation checkpoint (PROTOCOL.md).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/autoregressive_digits.py --steps 1500 --out /tmp/ar-digits
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from genmodels.data import load_dataset
from genmodels.training import TrainConfig, train

#: (model, config, lr, weight decay) of each line. With 1 257 training images the MLP models
#: overfit within a few hundred steps; the best-validation checkpoint decides.
RUNS = [
    ("fvsbn", {}, 3e-3, 0.0),
    ("nade", {"hidden": 128}, 3e-3, 0.0),
    ("made", {"hidden": (256, 256), "num_masks": 1, "direct": False}, 2e-3, 0.0),
    ("made", {"hidden": (256, 256), "num_masks": 8, "order": "random", "direct": False}, 2e-3, 0.0),
    ("nade", {"hidden": 64}, 2e-3, 0.5),
    ("made", {"hidden": (128,), "num_masks": 8, "order": "random", "direct": True}, 2e-3, 0.5),
    ("made", {"hidden": (128,), "num_masks": 16, "order": "random", "direct": False}, 2e-3, 0.5),
    ("made", {"hidden": (128,), "num_masks": 1, "direct": True}, 2e-3, 0.5),
    ("made", {"hidden": (128,), "num_masks": 4, "order": "natural", "direct": True}, 2e-3, 0.5),
    ("pixelcnn", {"channels": 32, "layers": 5, "dropout": 0.1}, 2e-3, 0.0),
    ("transformer", {"dim": 64, "layers": 2, "heads": 4, "dropout": 0.1}, 2e-3, 0.0),
    ("rnn", {"cell": "lstm", "hidden": 128}, 3e-3, 0.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ar-digits"))
    parser.add_argument("--only", nargs="*", help="model names to run (default: all)")
    parser.add_argument("--runs", nargs="*", type=int, help="indices into RUNS to run (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = load_dataset("digits")
    print(f"{'#':>2} {'model':<12} {'config':<62} {'wd':>4} {'params':>8} {'test nats':>9} {'bits/dim':>8} {'kind':>6} {'train s':>7}")
    for index, (name, config, lr, weight_decay) in enumerate(RUNS):
        if (args.only and name not in args.only) or (args.runs and index not in args.runs):
            continue
        tc = TrainConfig(
            steps=args.steps, batch_size=64, lr=lr, weight_decay=weight_decay, eval_every=args.eval_every,
            num_samples=16, cpu=True,
        )
        start = time.time()
        result = train(name, data, tc, args.out / f"{index}-{name}", model_config=config, progress=False)
        head = result.test[0]
        print(
            f"{index:>2} {name:<12} {str(config):<62} {weight_decay:>4} {result.num_parameters:>8} {head.nll_nats:>9.2f} {head.bits_per_dim:>8.3f} "
            f"{head.kind:>6} {time.time() - start:>7.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
