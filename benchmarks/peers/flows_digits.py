"""genmodels' flows against zuko's MAF and NSF on ``digits``, interleaved on the peer harness at equal CPU time.

``digits``: 8×8 images of 17 levels, the PROTOCOL split (1 257 / 180 / 360). Every contender is a
density p on y = (x + u)/17 ∈ [0,1)^64 after the SAME preprocessing, RealNVP's logit
h = logit(α + (1 − 2α) y), α = 0.05, whose log-Jacobian is part of the density (``genmodels.units``),
and every figure is the uniform-dequantization bound

    log P(x) ≥ E_u[ log p_flow(h) + log|det ∂h/∂y| ] − 64 ln 17,   u ~ U[0,1)^64,

converted to bits/dim with ``genmodels.units.bits_per_dim``. The peers' bound is computed here with the
same ``units`` functions that genmodels' flows use, and on evaluation every contender draws u with
``Batch.rand`` from the same per-example seeds: all models are scored on identical noise.

Training (``harness.run_interleaved``): Adam, the same batch size, learning rate, gradient clipping and
sequence of minibatches, ``--cpu-seconds`` of thread CPU time each, interleaved in this process (the
next step to whoever has used the least); the validation split (``--val-draws`` draws of u per image,
the same seeds every time) picks the checkpoint every ``--eval-every`` CPU seconds of training, and
the best state is scored once on the full test split with ``--test-draws`` draws per image.

Equal effort: a config given to one of ours (dropout, variational dequantization, ...) must have been
chosen on validation, and a head-to-head claim needs the same search for zuko's side (its options
``zuko-nsf:{"transforms": 5}`` etc. are accepted as well); ``--skip-test`` runs a search on validation
only.

A model of ours may be given a config: ``--models nsf 'nsf:{"hidden": [128, 128]}' zuko-maf``.

    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/peers/flows_digits.py --cpu-seconds 180 --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import DequantizedPeer, genmodels_contender, parse_model_text, peer_contender  # noqa: E402
from harness import HarnessSettings, paired_differences, print_differences, run_interleaved, version, write_results  # noqa: E402

import genmodels  # noqa: E402
from genmodels import units  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402

DEFAULT_MODELS = ["nsf", "maf", "realnvp", "zuko-maf", "zuko-nsf"]


def zuko_contender(text: str, spec, args):
    import zuko

    kind, options = parse_model_text(text)
    D = spec.dims
    if kind == "zuko-maf":
        settings = {"transforms": args.maf_transforms, "hidden_features": tuple(args.maf_hidden), **options}
        flow = zuko.flows.MAF(D, **settings)
    elif kind == "zuko-nsf":
        settings = {"transforms": args.nsf_transforms, "hidden_features": tuple(args.nsf_hidden), "bins": args.nsf_bins, **options}
        flow = zuko.flows.NSF(D, **settings)
    else:
        raise SystemExit(f"unknown zuko model {text!r}: zuko-maf or zuko-nsf (optionally :JSON of its arguments)")
    module = DequantizedPeer(flow, lambda h: flow().log_prob(h), spec, "logit", args.alpha)
    arguments = ", ".join(f"{k}={v}" for k, v in settings.items())
    return peer_contender(text, version("zuko"), module,
                          f"zuko.flows.{kind[5:].upper()}({D}, {arguments}); uniform dequantization, logit α={args.alpha}",
                          extra={"config": settings})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                        help="genmodels model names (optionally name:JSON-config) and zuko-maf / zuko-nsf (optionally :JSON)")
    parser.add_argument("--cpu-seconds", type=float, default=180.0, help="thread CPU seconds of training per model")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grad-clip", type=float, default=10.0)
    parser.add_argument("--eval-every", type=float, default=5.0, help="CPU seconds of training between validations")
    parser.add_argument("--patience", type=int, default=None, help="stop after this many validations without improvement")
    parser.add_argument("--val-draws", type=int, default=4)
    parser.add_argument("--test-draws", type=int, default=16)
    parser.add_argument("--alpha", type=float, default=0.05, help="the peers' logit α (genmodels' default)")
    parser.add_argument("--maf-transforms", type=int, default=5, help="zuko MAF (genmodels maf default: 5)")
    parser.add_argument("--maf-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--nsf-transforms", type=int, default=4, help="zuko NSF (genmodels nsf default: 4)")
    parser.add_argument("--nsf-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--nsf-bins", type=int, default=8)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-test", action="store_true", help="a search: validation figures only, no test figure")
    parser.add_argument("--out", default=None, help="folder for results.json (printed either way)")
    args = parser.parse_args()

    data = load_dataset("digits")
    spec = data.spec
    train_x, val_x, test_x = data.train.x.long(), data.validation.x.long(), data.test.x.long()
    contenders = []
    for text in args.models:
        torch.manual_seed(args.seed)
        contenders.append(zuko_contender(text, spec, args) if text.startswith("zuko-")
                          else genmodels_contender(text, spec, train_x, init_batch=args.batch_size))
    settings = HarnessSettings(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
                               grad_clip=args.grad_clip, eval_every=args.eval_every, patience=args.patience,
                               val_draws=args.val_draws, test_draws=args.test_draws, seed=args.seed)
    results = run_interleaved(contenders, train_x, val_x, None if args.skip_test else test_x, settings,
                              progress=lambda s: print("#", s, flush=True))
    bpd = lambda nats: None if nats is None else round(float(units.bits_per_dim(nats, spec.dims)), 4)  # noqa: E731
    for row in results:
        row.update(data="digits", kind=f"bound ({row.get('config', {}).get('dequantization', 'uniform')} dequantization, "
                                       f"{args.test_draws} draws)",
                   validation_bits_per_dim=bpd(row["validation_nll_nats"]), test_bits_per_dim=bpd(row["test_nll_nats"]),
                   test_bits_per_dim_standard_error=bpd(row["test_nll_standard_error"]))
    ours = [r["model"] for r in results if r["library"].startswith("genmodels")]
    peers = [r["model"] for r in results if not r["library"].startswith("genmodels")]
    differences = [] if args.skip_test else paired_differences(
        results, [(a, b) for a in ours for b in peers], scale=1.0 / (spec.dims * units.LN2))
    meta = {"script": "benchmarks/peers/flows_digits.py", "argv": sys.argv[1:],
            "versions": [f"genmodels {genmodels.__version__}", version("zuko")]}
    print("\n| model | library | params | FLOPs/ex | CPU s | steps | best val at (CPU s) | val bits/dim | test bits/dim ± se |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        test = "–" if r["test_bits_per_dim"] is None else f"{r['test_bits_per_dim']:.4f} ± {r['test_bits_per_dim_standard_error']:.4f}"
        print(f"| {r['model']} | {r['library']} | {r['parameters']:,} | {r['flops_per_train_example'] or 0:,} | {r['cpu_s']:.0f} | "
              f"{r['steps']} | {r['best_validation_at_cpu_s']:g} | {r['validation_bits_per_dim']:.4f} | {test} |")
    print_differences(differences, "Paired test differences, bits/dim (a − b; negative: a is better), ± standard error:")
    write_results(args.out, meta, results, paired_differences_bits_per_dim=differences)


if __name__ == "__main__":
    main()
