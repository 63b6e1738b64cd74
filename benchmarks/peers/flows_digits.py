"""genmodels' flows against zuko's MAF and NSF on ``digits``, in one run, at equal training time.

``digits``: 8×8 images of 17 levels, the PROTOCOL split (1 257 / 180 / 360). Every contender is a
density p on y = (x + u)/17 ∈ [0,1)^64 after the SAME preprocessing, RealNVP's logit
h = logit(α + (1 − 2α) y), α = 0.05, whose log-Jacobian is part of the density (``genmodels.units``),
and every figure is the uniform-dequantization bound

    log P(x) ≥ E_u[ log p_flow(h) + log|det ∂h/∂y| ] − 64 ln 17,   u ~ U[0,1)^64,

converted to bits/dim with ``genmodels.units.bits_per_dim``. The peers' bound is computed here with the
same ``units`` functions that genmodels' flows use, and on evaluation every contender draws u with
``Batch.rand`` from the same per-example seeds: all models are scored on identical noise.

Training: Adam, the same batch size, learning rate, gradient clipping and sequence of minibatch
indices, ``--seconds`` of training-step time each, one after the other in this process; the
validation split (``--val-draws`` draws of u per image, the same seeds every time) picks the
checkpoint every ``--eval-every`` seconds of training, and the best state is scored once on the full
test split with ``--test-draws`` draws per image.

A model of ours may be given a config: ``--models nsf 'nsf:{"hidden": [128, 128]}' zuko-maf``.

    OMP_NUM_THREADS=1 /work/venv-peers/bin/python benchmarks/peers/flows_digits.py --seconds 180 --out DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Contender, DequantizedBound, paired_differences, print_differences, train_and_evaluate, write_results  # noqa: E402

import genmodels  # noqa: E402
from genmodels import units  # noqa: E402
from genmodels.core import Batch, create_model  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402
from genmodels.nn.resolution import resolution_levels  # noqa: E402

DEFAULT_MODELS = ["nsf", "maf", "realnvp", "zuko-maf", "zuko-nsf"]


def version(name: str) -> str:
    import importlib.metadata

    return f"{name} {importlib.metadata.version(name)}"


def describe_ours(name: str, c) -> str:
    deq = f"{c.dequantization} dequantization, {c.preprocess} α={c.alpha}"
    if name == "nsf":
        arch = (f"{c.transforms} × [{'LU linear + ' if c.linear else ''}RQ-spline coupling (odd/even halves), {c.bins} bins on "
                f"[−{c.bound}, {c.bound}], MLP {list(c.hidden)}]")
    elif name == "maf":
        arch = f"{c.transforms} × [{'actnorm + ' if c.actnorm else ''}affine MADE {list(c.hidden)}], order reversed between layers"
    elif name == "realnvp":
        arch = f"multi-scale conv couplings: {c.scales or resolution_levels(8, 8)} scales, {c.hidden} channels, {c.blocks} residual block(s)"
    else:
        arch = name
    if c.dropout:
        arch += f", dropout {c.dropout}"
    return f"{arch}; {deq}"


def genmodels_contender(spec_text: str, spec, train_x, batch_size: int) -> Contender:
    name, _, config_text = spec_text.partition(":")
    config = json.loads(config_text) if config_text else {}
    model = create_model(name, spec, config)
    model.initialize(Batch(chunk) for chunk in train_x.split(batch_size))  # actnorm's data-dependent init
    return Contender(
        name=spec_text,
        library=f"genmodels {genmodels.__version__}",
        module=model,
        train_nll=lambda x: model.loss(Batch(x)).loss,
        log_likelihoods=lambda batch, draws: model.log_likelihoods(batch, draws=draws)[0].values,
        description=describe_ours(name, model.config),
        extra={"config": config},
    )


class DequantizedPeer(DequantizedBound):
    """A peer's density on h ∈ R^64, turned into the dequantization bound of genmodels' flows."""

    def __init__(self, flow: torch.nn.Module, spec, alpha: float):
        super().__init__()
        self.flow, self.spec, self.alpha = flow, spec, alpha

    def log_density(self, y: torch.Tensor) -> torch.Tensor:
        h, log_jacobian = units.logit_transform(y.flatten(1), self.alpha)
        return self.flow().log_prob(h) + log_jacobian


def zuko_contender(kind: str, spec, args) -> Contender:
    import zuko

    D = spec.dims
    if kind == "zuko-maf":
        flow = zuko.flows.MAF(D, transforms=args.maf_transforms, hidden_features=tuple(args.maf_hidden))
        description = (f"zuko.flows.MAF({D}, transforms={args.maf_transforms}, hidden_features={tuple(args.maf_hidden)}): "
                       "affine MADE layers, order reversed between layers")
    else:
        flow = zuko.flows.NSF(D, transforms=args.nsf_transforms, hidden_features=tuple(args.nsf_hidden), bins=args.nsf_bins)
        description = (f"zuko.flows.NSF({D}, transforms={args.nsf_transforms}, hidden_features={tuple(args.nsf_hidden)}, "
                       f"bins={args.nsf_bins}): autoregressive RQ-spline on [−5, 5], order reversed between layers")
    module = DequantizedPeer(flow, spec, args.alpha)
    return Contender(
        name=kind.split("-")[1].upper(),
        library=version("zuko"),
        module=module,
        train_nll=module.train_nll,
        log_likelihoods=module.log_likelihoods,
        description=f"{description}; uniform dequantization, logit α={args.alpha}",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="genmodels model names (optionally name:JSON-config) and zuko-maf / zuko-nsf")
    parser.add_argument("--seconds", type=float, default=180.0, help="training-step time per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=float, default=5.0, help="seconds of training between validations")
    parser.add_argument("--val-draws", type=int, default=4)
    parser.add_argument("--test-draws", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=0.05, help="the peers' logit α (genmodels' default)")
    parser.add_argument("--maf-transforms", type=int, default=5, help="zuko MAF (genmodels maf default: 5)")
    parser.add_argument("--maf-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--nsf-transforms", type=int, default=4, help="zuko NSF (genmodels nsf default: 4)")
    parser.add_argument("--nsf-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--nsf-bins", type=int, default=8)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                        help="learning rate over the training time, the same for every contender")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.json (printed either way)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset("digits")
    spec = data.spec
    train_x, val_x, test_x = data.train.x.long(), data.validation.x.long(), data.test.x.long()
    results = []
    for name in args.models:
        torch.manual_seed(args.seed)
        if name.startswith("zuko-"):
            contender = zuko_contender(name, spec, args)
        else:
            contender = genmodels_contender(name, spec, train_x, args.batch_size)
        started = time.time()
        row = train_and_evaluate(
            contender, train_x, val_x, test_x, seconds=args.seconds, batch_size=args.batch_size, lr=args.lr,
            eval_every=args.eval_every, val_draws=args.val_draws, test_draws=args.test_draws, seed=args.seed,
            schedule=args.schedule,
        )
        row.update(
            data="digits", kind=f"bound (uniform dequantization, {args.test_draws} draws)"
            if "variational" not in name else f"bound (variational dequantization, {args.test_draws} draws)",
            validation_bits_per_dim=round(float(units.bits_per_dim(row["validation_nll_nats"], spec.dims)), 4),
            test_bits_per_dim=round(float(units.bits_per_dim(row["test_nll_nats"], spec.dims)), 4),
            wall_s=round(time.time() - started, 1),
        )
        row["test_bits_per_dim_standard_error"] = round(
            float(units.bits_per_dim(row["test_nll_standard_error"], spec.dims)), 4)
        print(json.dumps({k: v for k, v in row.items() if k not in ("history", "test_values")}), flush=True)
        results.append(row)
    ours = [r["model"] for r in results if r["library"].startswith("genmodels")]
    peers = [r["model"] for r in results if not r["library"].startswith("genmodels")]
    pairs = [(a, b) for a in ours for b in peers]
    differences = paired_differences(results, pairs, scale=1.0 / (spec.dims * units.LN2))

    meta = {
        "script": "benchmarks/peers/flows_digits.py", "argv": sys.argv[1:], "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
        "machine": platform.platform(), "python": platform.python_version(),
        "versions": [f"torch {torch.__version__}", f"genmodels {genmodels.__version__}", version("zuko")],
    }
    print("\n| model | library | params | budget (s) | train ex/s | best val at (s) | val bits/dim | test bits/dim ± se |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['library']} | {r['parameters']:,} | {r['budget_s']:g} | "
              f"{r['train_examples_per_s']:,.0f} | {r['best_validation_at_s']:g} | {r['validation_bits_per_dim']:.4f} | "
              f"{r['test_bits_per_dim']:.4f} ± {r['test_bits_per_dim_standard_error']:.4f} |")
    print_differences(differences, "Paired test differences, bits/dim (a − b; negative: a is better), ± standard error:")
    write_results(args.out, meta, results, paired_differences_bits_per_dim=differences)


if __name__ == "__main__":
    main()
