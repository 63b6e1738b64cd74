"""Quick CPU benchmark of the flows: test NLL on a toy 2-D set (vs its entropy) or test bits/dim on
``digits`` (the dequantization bound), after a budget of thread CPU seconds of training.

Follows the benchmark protocol: the validation split picks the checkpoint (evaluated every
``--eval-every`` CPU seconds of training), the test split is scored once, with the best state. A plain
loop (``fitting.fit``: Adam, fixed batch size, gradient norm clipped to 10), so it does not depend on
the trainer's internals.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/flows_toy2d.py --model nsf --data eight-gaussians --seconds 120
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/flows_toy2d.py --model realnvp --data digits --seconds 180
"""

from __future__ import annotations

import argparse
import json

import torch

from genmodels import units
from genmodels.core import Batch, create_model
from genmodels.data import load_dataset
from genmodels.data.toy2d import ANALYTIC_DENSITIES

from fitting import fit


@torch.no_grad()
def mean_log_likelihood(model, x: torch.Tensor, draws: int, batch_size: int = 4096) -> float:
    """Mean per-example log-likelihood (nats), per-example seeds (independent of the batch size)."""
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        seeds = torch.arange(start, start + len(chunk))
        options = {"draws": draws} if model.spec.is_discrete else {}
        total += model.log_likelihoods(Batch(chunk, seeds=seeds), **options)[0].values.double().sum().item()
    model.train()
    return total / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="nsf")
    parser.add_argument("--data", default="eight-gaussians")
    parser.add_argument("--seconds", type=float, default=120.0, help="thread CPU seconds of training")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--config", default="{}", help="model config as JSON")
    parser.add_argument("--eval-every", type=float, default=10.0, help="CPU seconds of training between validations")
    parser.add_argument("--draws", type=int, default=4, help="dequantization draws for the test bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default=None, help="2-D data: save the learned density picture (PNG) here")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    data = load_dataset(args.data)
    spec = data.spec
    model = create_model(args.model, spec, json.loads(args.config))
    train_x = data.train.x if data.train.x.is_floating_point() else data.train.x.to(torch.int64)
    model.initialize(Batch(chunk) for chunk in train_x.split(args.batch_size))
    val_x, test_x = data.validation.x, data.test.x
    if not val_x.is_floating_point():
        val_x, test_x = val_x.to(torch.int64), test_x.to(torch.int64)

    fitted = fit(model, lambda step: Batch(train_x[torch.randint(0, len(train_x), (args.batch_size,))]),
                 cpu_seconds=args.seconds, lr=args.lr, grad_clip=10.0,
                 check=lambda step, scored: -mean_log_likelihood(scored, val_x, 1), check_every_seconds=args.eval_every,
                 keep_best=True)
    test = mean_log_likelihood(model, test_x, args.draws)
    report = {
        "model": args.model,
        "data": args.data,
        "config": json.loads(args.config),
        "parameters": model.num_parameters(),
        "seconds": args.seconds,
        "steps": fitted.steps,
        "train_examples_per_s": round(fitted.examples_per_second, 1),
        "kind": model.likelihood_kind.value,
        "test_nll_nats": round(-test, 4),
        "threads": torch.get_num_threads(),
    }
    if spec.is_discrete:
        report["test_bits_per_dim"] = round(float(units.bits_per_dim(-test, spec.dims)), 4)
        report["draws"] = args.draws
    if args.data in ANALYTIC_DENSITIES:
        entropy = ANALYTIC_DENSITIES[args.data].entropy
        report["entropy"] = round(entropy, 4)
        report["gap_nats"] = round(-test - entropy, 4)
    print(json.dumps(report))
    if args.plot and not spec.is_discrete and tuple(spec.shape) == (2,):
        from genmodels.plot_density import plot_density

        plot_density(model, data, args.plot)


if __name__ == "__main__":
    main()
