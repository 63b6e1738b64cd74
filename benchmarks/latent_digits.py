"""ELBO and IWAE-k NLL of the latent-variable family on the digits data sets (a few CPU minutes).

Each model trains with Adam at a fixed number of steps (``fitting.fit``; the table's training seconds
are its thread CPU time); every ``--eval-every`` steps its validation IWAE-64 NLL is measured and the
best state is kept; the test figures (ELBO and IWAE-k, k = 5 000 by default) are those of that state
(../shared/PROTOCOL.md: the test split chooses nothing).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/latent_digits.py --data binary-digits --steps 3000

Prints one Markdown table (NLL in nats per example, bits/dim, kind and k, training seconds).
"""

from __future__ import annotations

import argparse
import time

import torch

from genmodels.core import Batch, create_model
from genmodels.data import load_dataset
from genmodels.evaluate import evaluate_likelihood

from fitting import fit

MODELS: dict[str, tuple[str, dict]] = {
    "vae": ("vae", {"latent_dim": 16, "hidden": (256, 256)}),
    "iwae-k5": ("iwae", {"latent_dim": 16, "hidden": (256, 256), "k": 5}),
    "dvae-gumbel-softmax": ("discrete-vae", {"hidden": (256, 256), "estimator": "gumbel-softmax"}),
    "dvae-straight-through": ("discrete-vae", {"hidden": (256, 256), "estimator": "straight-through"}),
    "dvae-reinforce": ("discrete-vae", {"hidden": (256, 256), "estimator": "reinforce"}),
    "dvae-vimco-k5": ("discrete-vae", {"hidden": (256, 256), "estimator": "vimco", "k": 5}),
}


def run(data: str, label: str, steps: int, batch_size: int, lr: float, k: int, eval_every: int, seed: int,
        validation_examples: int | None = None, test_examples: int | None = None) -> dict:
    dataset = load_dataset(data)
    name, config = MODELS[label]
    torch.manual_seed(seed)
    model = create_model(name, dataset.spec, config)
    train = dataset.split("train")
    g = torch.Generator().manual_seed(seed)

    def next_batch(step: int) -> Batch:
        if hasattr(train, "set_epoch"):
            train.set_epoch(step * batch_size // len(train))
        index = torch.randint(0, len(train), (batch_size,), generator=g)
        return Batch(torch.stack([train[i]["x"] for i in index.tolist()]))

    def validation_iwae64(step: int, scored) -> float:
        records = evaluate_likelihood(scored, dataset.validation.head(validation_examples), options={"k": 64})
        return next(r.nll_nats for r in records if r.measure == "iwae")

    fitted = fit(model, next_batch, steps=steps, lr=lr, check=validation_iwae64, check_every=eval_every, keep_best=True)
    started = time.perf_counter()
    test = dataset.test.head(test_examples)
    records = {r.measure: r for r in evaluate_likelihood(model, test, options={"k": k})}
    return {
        "data": data, "model": label, "steps": steps, "best_step": fitted.best_step, "train_s": fitted.cpu_seconds,
        "eval_s": time.perf_counter() - started, "elbo": records["elbo"], "iwae": records["iwae"],
        "valid_iwae64": fitted.best_score, "test_examples": len(test), "test_split_size": len(dataset.test),
    }


def examples_label(used: int, total: int) -> str:
    return f"all {total}" if used == total else f"first {used} of {total}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=["binary-digits"])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--k", type=int, default=5000, help="importance samples of the test IWAE estimate")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-examples", type=int, default=None,
                        help="select the checkpoint on the first N validation examples (default: all)")
    parser.add_argument("--test-examples", type=int, default=None,
                        help="report the test figures on the first N test examples (default: all); the "
                             "table says so")
    args = parser.parse_args()
    print(f"| data | model | test ELBO NLL (nats) | test IWAE-{args.k} NLL (nats) | bits/dim (IWAE) | "
          "valid IWAE-64 | best step / steps | train s | test examples |")
    print("|---|---|---|---|---|---|---|---|---|")
    for data in args.data:
        for label in args.models:
            r = run(data, label, args.steps, args.batch_size, args.lr, args.k, args.eval_every, args.seed,
                    args.validation_examples, args.test_examples)
            e, i = r["elbo"], r["iwae"]
            print(f"| {data} | {label} | {e.nll_nats:.2f} ± {e.stderr_nats:.2f} | {i.nll_nats:.2f} ± {i.stderr_nats:.2f} | "
                  f"{i.bits_per_dim:.4f} | {r['valid_iwae64']:.2f} | {r['best_step']} / {r['steps']} | {r['train_s']:.0f} | "
                  f"{examples_label(r['test_examples'], r['test_split_size'])} |",
                  flush=True)


if __name__ == "__main__":
    main()
