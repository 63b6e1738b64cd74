"""Defaults on a panel of data they were not tuned on: genmodels' flows against the peers' defaults.

PROTOCOL: "Defaults are judged on a panel of data none of their settings were chosen on". Three steps:

``tables --out DIR`` writes two of scikit-learn's bundled tables (no download) as a user would pass them
to ``genmodels train --data``: ``wine.npy`` (178 × 13) and ``breast_cancer.npy`` (569 × 30), float32,
so genmodels reads them as **continuous** data (``data/files.py``: floats are continuous, exact
log-density after a fixed standardization). The tables store rounded values (column d to Δ_d: 1 for
wine's magnesium and proline, 0.01 for most others), and a density on rounded values can put spikes
on the grid; so each value is dequantized once, at its own precision, x + (u − ½)Δ_d with u ~ U[0,1)
from a fixed seed (the noise the warning in ``data/checks.py`` asks for). Every contender trains and
is scored on the same noised file; its continuous NLL bounds the NLL of the recorded values,
−log P(x) ≤ E_u[−log p(x + (u − ½)Δ)] − Σ_d log Δ_d (the constant is in the sidecar ``.json``).

``run --data wine.npy breast_cancer.npy digits ...`` trains every contender at its defaults on each
data set on the harness (``harness.run_interleaved``: the same thread-CPU budget, batches, Adam,
clipping; the validation split picks the checkpoint; test is scored once). ``digits`` is discrete
(17 levels): every contender is the uniform-dequantization bound after the same logit preprocessing
(α = 0.05, genmodels' default; the peers through ``contenders.DequantizedPeer``). The peers at their
documented defaults: ``zuko-nsf`` = ``zuko.flows.NSF(D)`` (3 transforms, 64×64, 8 bins),
``zuko-maf`` = ``zuko.flows.MAF(D)`` (3 transforms, 64×64), ``normflows-realnvp`` = 8 ×
[AffineCouplingBlock(MLP [⌈D/2⌉, 64, 64, 2⌊D/2⌋], init_zeros) + Permute swap] with a trainable diagonal
Gaussian base (normflows has no default RealNVP for vectors; the same as ``flows_toy2d.py``'s).

``summarize DIR...`` reads the ``results.json`` of several runs (this script's or ``flows_toy2d.py``'s,
one per seed) and prints, per data set and model, the mean and standard deviation over seeds of the
validation and test NLL, and the paired test differences (each seed's ± its standard error, then
mean ± sd over seeds).

    python benchmarks/peers/defaults_panel.py tables --out /tmp/panel
    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/peers/defaults_panel.py run \\
        --data /tmp/panel/wine.npy /tmp/panel/breast_cancer.npy --cpu-seconds 10 --seed 0 --out DIR
    python benchmarks/peers/defaults_panel.py summarize DIR_SEED0 DIR_SEED1 DIR_SEED2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import DequantizedPeer, Standardized, genmodels_contender, parse_model_text, peer_contender  # noqa: E402
from harness import HarnessSettings, paired_differences, run_interleaved, version, write_results  # noqa: E402

import genmodels  # noqa: E402
from genmodels import units  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402

TABLES = ("wine", "breast_cancer")
OURS = ("nsf", "maf", "realnvp")
PEERS = ("zuko-nsf", "zuko-maf", "normflows-realnvp")
#: whom each of ours is compared with (the same kind of flow)
COUNTERPART = {"nsf": "zuko-nsf", "maf": "zuko-maf", "realnvp": "normflows-realnvp"}


# --- the tables ----------------------------------------------------------------------------------
def recorded_precision(column: np.ndarray, max_decimals: int = 6) -> float:
    """Δ, the step of the grid the values were recorded on: 10^−k for the fewest decimals k that
    hold every value (within float rounding).

    >>> recorded_precision(np.array([1.0, 12.0, 3.0])), recorded_precision(np.array([0.25, 1.5]))
    (1.0, 0.01)
    """
    for decimals in range(max_decimals + 1):
        scaled = column * 10.0**decimals
        if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 * np.maximum(1.0, np.abs(scaled))):
            return 10.0**-decimals
    return 10.0**-max_decimals


def write_tables(out: Path, seed: int = 0) -> None:
    """``out/NAME.npy`` (float32, dequantized at each column's recorded precision) + ``NAME.npy.json``."""
    from sklearn import datasets

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in TABLES:
        x = getattr(datasets, f"load_{name}")().data.astype(np.float64)
        steps = np.array([recorded_precision(x[:, d]) for d in range(x.shape[1])])
        noised = x + (rng.uniform(size=x.shape) - 0.5) * steps
        np.save(out / f"{name}.npy", noised.astype(np.float32))
        meta = {"table": f"sklearn.datasets.load_{name}().data", "shape": list(x.shape), "noise_seed": seed,
                "recorded_precision": steps.tolist(), "sum_log_precision": float(np.log(steps).sum())}
        (out / f"{name}.npy.json").write_text(json.dumps(meta, indent=1))
        print(json.dumps({"file": str(out / f"{name}.npy"), **meta}))


# --- the peers, for D features -----------------------------------------------------------------------
def zuko_flow(kind: str, features: int):
    import zuko

    return zuko.flows.NSF(features) if kind == "zuko-nsf" else zuko.flows.MAF(features)


def normflows_realnvp(features: int, couplings: int = 8, hidden: int = 64, hidden_layers: int = 2):
    import normflows as nf

    flows = []
    for _ in range(couplings):
        # chunk(2) gives the first ⌈D/2⌉ features to the network, the last ⌊D/2⌋ are transformed
        param_map = nf.nets.MLP([math.ceil(features / 2), *([hidden] * hidden_layers), 2 * (features // 2)], init_zeros=True)
        flows += [nf.flows.AffineCouplingBlock(param_map), nf.flows.Permute(features, mode="swap")]
    return nf.NormalizingFlow(nf.distributions.base.DiagGaussian(features), flows)


def peer(text: str, spec, train_x: torch.Tensor, alpha: float):
    D = spec.dims
    if text == "normflows-realnvp":
        flow, library = normflows_realnvp(D), version("normflows")
        log_prob = flow.log_prob
        description = (f"normflows: 8 × [AffineCouplingBlock(MLP [{math.ceil(D / 2)}, 64, 64, {2 * (D // 2)}], "
                       "init_zeros) + Permute swap], DiagGaussian base (trainable)")
    else:
        flow, library = zuko_flow(text, D), version("zuko")
        log_prob = lambda h: flow().log_prob(h)  # noqa: E731
        description = (f"zuko.flows.{text[5:].upper()}({D}) at its defaults: 3 transforms, 64×64"
                       + (", 8 bins (bound 5)" if text == "zuko-nsf" else ""))
    if spec.is_discrete:
        module = DequantizedPeer(flow, log_prob, spec, "logit", alpha)
        description += f"; uniform dequantization, logit α={alpha}"
    else:
        module = Standardized(flow, log_prob, train_x)
        description += "; the training split's standardization"
    return peer_contender(text, library, module, description)


def build(text: str, spec, train_x: torch.Tensor, alpha: float):
    name, _ = parse_model_text(text)
    if name in OURS:
        return genmodels_contender(text, spec, train_x)
    if name in PEERS and name == text:
        return peer(text, spec, train_x, alpha)
    raise SystemExit(f"unknown model {text!r}: {', '.join(OURS)} (optionally name:JSON) or {', '.join(PEERS)}")


def run(args) -> None:
    settings = HarnessSettings(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, lr=args.lr,
                               grad_clip=args.grad_clip, eval_every=args.eval_every, patience=args.patience,
                               val_draws=args.val_draws, test_draws=args.test_draws, seed=args.seed)
    results, differences = [], []
    for data_name in args.data:
        data = load_dataset(data_name)
        spec = data.spec
        as_type = (lambda t: t.long()) if spec.is_discrete else (lambda t: t.float())  # noqa: E731
        train_x, val_x, test_x = (as_type(split.x) for split in (data.train, data.validation, data.test))
        contenders = []
        for text in args.models:
            torch.manual_seed(args.seed)
            contenders.append(build(text, spec, train_x, args.alpha))
        rows = run_interleaved(contenders, train_x, val_x, None if args.skip_test else test_x, settings,
                               progress=lambda s: print("#", s, flush=True))
        short = Path(data_name).stem if data_name.endswith(".npy") else data_name
        for row in rows:
            row.update(data=short, dims=spec.dims, examples=[len(train_x), len(val_x), len(test_x)],
                       kind="exact (continuous)" if not spec.is_discrete else f"bound (uniform dequantization, {args.test_draws} draws)")
            print(json.dumps({k: v for k, v in row.items() if k not in ("history", "test_values")}), flush=True)
        results += rows
        if not args.skip_test:
            names = [r["model"] for r in rows]
            pairs = [(a, COUNTERPART[parse_model_text(a)[0]]) for a in names
                     if parse_model_text(a)[0] in OURS and COUNTERPART[parse_model_text(a)[0]] in names]
            differences += [{"data": short, **d} for d in paired_differences(rows, pairs)]
    meta = {"script": "benchmarks/peers/defaults_panel.py", "argv": sys.argv[1:],
            "versions": [f"genmodels {genmodels.__version__}", version("zuko"), version("normflows")]}
    write_results(args.out, meta, results, paired_differences_nats=differences)
    summarize_payloads([{"meta": meta, "results": results, "paired_differences_nats": differences}])


# --- the summary over seeds -------------------------------------------------------------------------
def _mean_sd(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def summarize_payloads(payloads: list[dict]) -> None:
    """Per (data, model): validation and test NLL, mean ± sd over the runs (seeds); then each paired
    difference per seed (± its paired standard error) and its mean ± sd over seeds."""
    rows: dict[tuple[str, str], list[dict]] = {}
    diffs: dict[tuple[str, str, str], list[dict]] = {}
    for payload in payloads:
        for r in payload["results"]:
            rows.setdefault((str(r["data"]), r["model"]), []).append(r)
        for d in payload.get("paired_differences_nats", []):
            diffs.setdefault((str(d["data"]), d["a"], d["b"]), []).append(d)
    print("\n| data | model | params | steps (mean) | seeds | validation NLL, mean ± sd | test NLL, mean ± sd "
          "| gap to the true density (paired), mean ± sd |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for (data, model), group in rows.items():
        tests = [r["test_nll_nats"] for r in group if r["test_nll_nats"] is not None]
        gaps = [r["gap_to_true_density_nats"] for r in group if "gap_to_true_density_nats" in r]
        print(f"| {Path(data).name} | {model} | {group[0]['parameters']:,} | {statistics.mean(r['steps'] for r in group):,.0f} | "
              f"{len(group)} | {_mean_sd([r['validation_nll_nats'] for r in group])} | {_mean_sd(tests) if tests else '–'} "
              f"| {_mean_sd(gaps) if gaps else '–'} |")
    print("\n| data | a − b (nats; negative: a is better) | each seed: d ± paired se | mean ± sd over seeds |")
    print("|---|---|---|---:|")
    for (data, a, b), group in diffs.items():
        each = ", ".join(f"{d['difference']:+.4f} ± {d['standard_error']:.4f}" for d in group)
        print(f"| {Path(data).name} | {a} − {b} | {each} | {_mean_sd([d['difference'] for d in group])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tables = commands.add_parser("tables", help="write the tabular sets as .npy")
    tables.add_argument("--out", required=True)
    tables.add_argument("--seed", type=int, default=0, help="the dequantization noise")
    runner = commands.add_parser("run", help="every contender at its defaults, on the harness")
    runner.add_argument("--data", nargs="+", required=True, help="data set names (digits) or .npy/.csv files")
    runner.add_argument("--models", nargs="+", default=[*OURS, *PEERS])
    runner.add_argument("--cpu-seconds", type=float, default=10.0, help="thread CPU seconds of training per model")
    runner.add_argument("--batch-size", type=int, default=128, help="genmodels' TrainConfig default")
    runner.add_argument("--lr", type=float, default=1e-3, help="genmodels' TrainConfig default")
    runner.add_argument("--grad-clip", type=float, default=1.0, help="genmodels' TrainConfig default")
    runner.add_argument("--eval-every", type=float, default=0.5, help="CPU seconds of training between validations")
    runner.add_argument("--patience", type=int, default=None)
    runner.add_argument("--val-draws", type=int, default=4, help="discrete data: dequantization draws per example")
    runner.add_argument("--test-draws", type=int, default=16)
    runner.add_argument("--alpha", type=float, default=0.05, help="the peers' logit α on discrete data (genmodels' default)")
    runner.add_argument("--seed", type=int, default=0)
    runner.add_argument("--skip-test", action="store_true", help="a search: validation figures only")
    runner.add_argument("--out", default=None)
    summary = commands.add_parser("summarize", help="mean ± sd over seeds of several runs' results.json")
    summary.add_argument("folders", nargs="+")
    args = parser.parse_args()
    if args.command == "tables":
        write_tables(Path(args.out), args.seed)
    elif args.command == "run":
        run(args)
    else:
        summarize_payloads([json.loads(Path(f, "results.json").read_text()) for f in args.folders])


if __name__ == "__main__":
    main()
