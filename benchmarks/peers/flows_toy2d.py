"""genmodels' flows against zuko and normflows on 2-D densities, interleaved on the peer harness.

For each data set (``checkerboard``, ``eight-gaussians``, ``two-moons``, ``spirals``: PROTOCOL splits
100 000 / 20 000 / 20 000; or a ``.npy`` file, split like ``genmodels train --data FILE``) every
contender is trained in this one process by ``harness.run_interleaved``: ``--cpu-seconds`` of thread
CPU time each, the next step always to whoever has used the least, the same batches, Adam, schedule and
clipping; the validation split picks the checkpoint; the best state is scored once on test.

Where the true density is known (the analytic ``checkerboard`` and ``eight-gaussians``, or a ``.npy``
written by ``toy_densities.py`` with its ``.json`` sidecar) each row also carries the gap to the true
density **paired on the same test points**: mean(−log q(x) + log p(x)) ± its standard error, which
does not carry the test sample's own offset from the entropy (the entropy is printed beside it).

Every contender sees the same standardization of the data (the training split's per-dimension mean
and standard deviation, a fixed affine map whose log-Jacobian −Σ log σ is part of the density):
genmodels' flows do it themselves (``standardize=True``), the peers' flows get it here.

    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/peers/flows_toy2d.py --cpu-seconds 180 --out DIR
    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/peers/flows_toy2d.py --data /tmp/rings.npy \\
        --models nsf zuko-nsf --batch-size 128 --grad-clip 1 --cpu-seconds 180
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import Standardized, genmodels_contender, parse_model_text, peer_contender  # noqa: E402
from harness import HarnessSettings, paired_differences, print_differences, run_interleaved, version, write_results  # noqa: E402
from toy_densities import load_sidecar  # noqa: E402

import genmodels  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402
from genmodels.data.toy2d import ANALYTIC_DENSITIES  # noqa: E402

PEERS = ("zuko-nsf", "normflows-realnvp")
OURS = ("nsf", "realnvp")


def zuko_nsf(train_x, transforms: int, hidden: tuple[int, ...], bins: int):
    import zuko

    flow = zuko.flows.NSF(2, transforms=transforms, hidden_features=hidden, bins=bins)
    return peer_contender(
        "zuko-nsf", version("zuko"), Standardized(flow, lambda h: flow().log_prob(h), train_x),
        f"zuko.flows.NSF(2, transforms={transforms}, hidden_features={hidden}, bins={bins}): "
        f"{transforms} × autoregressive RQ-spline (bound 5), order reversed between layers")


def normflows_realnvp(train_x, couplings: int, hidden: int, hidden_layers: int):
    import normflows as nf

    flows = []
    for _ in range(couplings):
        param_map = nf.nets.MLP([1, *([hidden] * hidden_layers), 2], init_zeros=True)
        flows += [nf.flows.AffineCouplingBlock(param_map), nf.flows.Permute(2, mode="swap")]
    flow = nf.NormalizingFlow(nf.distributions.base.DiagGaussian(2), flows)
    return peer_contender(
        "normflows-realnvp", version("normflows"), Standardized(flow, flow.log_prob, train_x),
        f"normflows: {couplings} × [AffineCouplingBlock(MLP([1, {hidden}]×{hidden_layers}, 2], init_zeros)) "
        "+ Permute swap], DiagGaussian base (trainable)")


def true_density(data_name: str):
    """(log_density, entropy) of a data set, or (None, None)."""
    if data_name in ANALYTIC_DENSITIES:
        d = ANALYTIC_DENSITIES[data_name]
        return d.log_density, d.entropy
    found = load_sidecar(data_name) if data_name.endswith(".npy") else None
    return (found[0].log_density, found[1]) if found else (None, None)


def build(model_text: str, spec, train_x, args):
    name, overrides = parse_model_text(model_text)
    if name in OURS:  # genmodels at its own defaults unless the text carries a config
        return genmodels_contender(model_text, spec, train_x)
    if overrides or name not in PEERS:
        raise SystemExit(f"unknown model {model_text!r}: {', '.join(OURS)} (optionally name:JSON) or {', '.join(PEERS)}")
    if name == "zuko-nsf":
        return zuko_nsf(train_x, args.zuko_transforms, tuple(args.zuko_hidden), args.zuko_bins)
    return normflows_realnvp(train_x, args.realnvp_couplings, args.realnvp_hidden, args.realnvp_hidden_layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["checkerboard", "eight-gaussians"], help="names or .npy files")
    parser.add_argument("--models", nargs="+", default=["nsf", "zuko-nsf", "realnvp", "normflows-realnvp"],
                        help=f"{', '.join(OURS)} (at genmodels' defaults, or name:JSON) and {', '.join(PEERS)}")
    parser.add_argument("--cpu-seconds", type=float, default=180.0, help="thread CPU seconds of training per model")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--eval-every", type=float, default=10.0, help="CPU seconds of training between validations")
    parser.add_argument("--patience", type=int, default=None)
    parser.add_argument("--zuko-transforms", type=int, default=3, help="zuko's default: 3")
    parser.add_argument("--zuko-hidden", type=int, nargs="+", default=[64, 64], help="zuko's default: 64 64")
    parser.add_argument("--zuko-bins", type=int, default=8, help="zuko's default: 8")
    parser.add_argument("--realnvp-couplings", type=int, default=8)
    parser.add_argument("--realnvp-hidden", type=int, default=64)
    parser.add_argument("--realnvp-hidden-layers", type=int, default=2)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-test", action="store_true", help="report validation only (for searches): no test figure is computed")
    parser.add_argument("--out", default=None, help="folder for results.json (printed either way)")
    args = parser.parse_args()
    settings = HarnessSettings(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, lr=args.lr,
                               schedule=args.schedule, grad_clip=args.grad_clip, eval_every=args.eval_every,
                               patience=args.patience, seed=args.seed)
    results, differences = [], []
    for data_name in args.data:
        data = load_dataset(data_name)
        train_x, val_x, test_x = data.train.x.float(), data.validation.x.float(), data.test.x.float()
        if args.skip_test:  # a search: no test figure is computed at all
            test_x = None
        log_density, entropy = true_density(data_name)
        contenders = []
        for model_text in args.models:
            torch.manual_seed(args.seed)
            contenders.append(build(model_text, data.spec, train_x, args))
        rows = run_interleaved(contenders, train_x, val_x, test_x, settings, progress=lambda s: print("#", s, flush=True))
        for row in rows:
            row.update(data=data_name, kind="exact", entropy=None if entropy is None else round(entropy, 4))
            if not args.skip_test and log_density is not None:
                gap = log_density(test_x.double()) - row["test_values"]  # paired on the same points
                row.update(gap_to_true_density_nats=round(gap.mean().item(), 4),
                           gap_standard_error=round(gap.std().item() / math.sqrt(len(gap)), 4),
                           true_density_test_nll=round(-log_density(test_x.double()).mean().item(), 4))
            print(json.dumps({k: v for k, v in row.items() if k not in ("history", "test_values")}), flush=True)
        results += rows
        if not args.skip_test:
            ours = [r["model"] for r in rows if r["library"].startswith("genmodels")]
            peers = [r["model"] for r in rows if not r["library"].startswith("genmodels")]
            differences += [{"data": data_name, **d} for d in paired_differences(rows, [(a, b) for a in ours for b in peers])]

    meta = {"script": "benchmarks/peers/flows_toy2d.py", "argv": sys.argv[1:],
            "versions": [f"genmodels {genmodels.__version__}", version("zuko"), version("normflows")]}
    print("\n| data | model | library | params | FLOPs/ex | CPU s | steps | val NLL | test NLL ± se | gap to p, paired ± se |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        test = "–" if r["test_nll_nats"] is None else f"{r['test_nll_nats']:.4f} ± {r['test_nll_standard_error']:.4f}"
        gap = f"{r['gap_to_true_density_nats']:.4f} ± {r['gap_standard_error']:.4f}" if "gap_to_true_density_nats" in r else "–"
        print(f"| {r['data']} | {r['model']} | {r['library']} | {r['parameters']:,} | {r['flops_per_train_example'] or 0:,} | "
              f"{r['cpu_s']:.0f} | {r['steps']} | {r['validation_nll_nats']:.4f} | {test} | {gap} |")
    print_differences(differences, "Paired test differences, nats (a − b; negative: a is better), ± standard error:")
    write_results(args.out, meta, results, paired_differences_nats=differences)


if __name__ == "__main__":
    main()
