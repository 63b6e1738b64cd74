"""Generative classification on ``digits``: train a class-conditional autoregressive model, then
classify the test split by Bayes' rule, argmax_y log p(x | y) + log p(y) (uniform prior).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/autoregressive_classify_digits.py --model nade --steps 1500
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genmodels.autoregressive.classify import classify
from genmodels.checkpoint import load_model
from genmodels.data import load_dataset
from genmodels.training import TrainConfig, train

CONFIGS = {
    "nade": ({"hidden": 128, "conditional": True}, 3e-3),
    "rnn": ({"cell": "lstm", "hidden": 128, "conditional": True}, 3e-3),
    "pixelcnn": ({"channels": 32, "layers": 5, "dropout": 0.1, "conditional": True}, 2e-3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(CONFIGS), default="nade")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("/tmp/ar-classify"))
    args = parser.parse_args()
    data = load_dataset("digits")
    config, lr = CONFIGS[args.model]
    tc = TrainConfig(steps=args.steps, batch_size=64, lr=lr, eval_every=100, num_samples=16, cpu=True)
    result = train(args.model, data, tc, args.out / args.model, model_config=config, progress=False)
    model, _ = load_model(result.best_checkpoint)
    scores = classify(model, data.test)
    print(f"{args.model} {config}: test bits/dim {result.test[0].bits_per_dim:.3f}, "
          f"accuracy {scores.accuracy:.4f}, label NLL {scores.label_nll:.4f} nats")
    print(scores.confusion)


if __name__ == "__main__":
    main()
