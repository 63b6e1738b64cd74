"""genmodels' flows against zuko and normflows on the toy 2-D sets, in one run, at equal training time.

For each data set (``checkerboard``, ``eight-gaussians``: PROTOCOL splits 100 000 / 20 000 / 20 000,
true entropies 3.4657 and 3.5247 nats) every contender is trained in turn, in this one process, for
``--seconds`` of training-step time (Adam, the same batch size, learning rate, gradient clipping and
sequence of minibatch indices), the validation split picks the checkpoint (every ``--eval-every``
seconds of training), and the best state is scored once on the full test split: test NLL (nats,
exact), its gap to the entropy, training examples/s.

Every contender sees the same standardization of the data (the training split's per-dimension mean
and standard deviation, a fixed affine map whose log-Jacobian −Σ log σ is part of the density):
genmodels' flows do it themselves (``standardize=True``), the peers' flows get it here.

    OMP_NUM_THREADS=1 /work/venv-peers/bin/python benchmarks/peers/flows_toy2d.py --seconds 180 --out DIR
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

from common import Contender, paired_differences, print_differences, train_and_evaluate, write_results  # noqa: E402

import genmodels  # noqa: E402
from genmodels.core import Batch, create_model  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402
from genmodels.data.toy2d import ANALYTIC_DENSITIES  # noqa: E402

MODELS = ("genmodels-nsf", "zuko-nsf", "genmodels-realnvp", "normflows-realnvp")


def version(name: str) -> str:
    import importlib.metadata

    return f"{name} {importlib.metadata.version(name)}"


def genmodels_contender(name: str, spec, train_x, config: dict, label: str | None = None) -> Contender:
    model = create_model(name, spec, config)
    model.initialize(Batch(chunk) for chunk in train_x.split(4096))  # the standardization (whole split)
    c = model.config
    if name == "nsf":
        description = (f"{c.transforms} × [{'LU linear + ' if c.linear else ''}RQ-spline coupling, {c.bins} bins on "
                       f"[−{c.bound}, {c.bound}], MLP {list(c.hidden)}]")
    else:
        description = f"{c.couplings} affine couplings (odd/even masks), MLP [{c.hidden}]×{c.hidden_layers}, clamp {c.clamp}"
    return Contender(
        name=name if label is None or ":" not in label else f"{name}:{label.partition(':')[2]}",
        library=f"genmodels {genmodels.__version__}",
        module=model,
        train_nll=lambda x: model.loss(Batch(x)).loss,
        log_likelihoods=lambda batch, draws: model.log_likelihoods(batch)[0].values,
        description=description,
        extra={"config": config},
    )


class Standardized(torch.nn.Module):
    """log p(x) = log q((x − μ)/σ) − Σ log σ, with (μ, σ) fixed from the training split."""

    def __init__(self, flow_log_prob_module: torch.nn.Module, log_prob, train_x: torch.Tensor):
        super().__init__()
        self.inner = flow_log_prob_module
        self._log_prob = log_prob
        x = train_x.double()
        self.register_buffer("loc", x.mean(0).float())
        self.register_buffer("scale", x.std(0, unbiased=False).float())

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.loc) / self.scale
        return self._log_prob(h) - torch.log(self.scale).sum()


def zuko_nsf(train_x, transforms: int, hidden: tuple[int, ...], bins: int) -> Contender:
    import zuko

    flow = zuko.flows.NSF(2, transforms=transforms, hidden_features=hidden, bins=bins)
    module = Standardized(flow, lambda h: flow().log_prob(h), train_x)
    return Contender(
        name="NSF",
        library=version("zuko"),
        module=module,
        train_nll=lambda x: -module.log_prob(x).mean(),
        log_likelihoods=lambda batch, draws: module.log_prob(batch.x),
        description=(f"zuko.flows.NSF(2, transforms={transforms}, hidden_features={hidden}, bins={bins}): "
                     f"{transforms} × autoregressive RQ-spline (bound 5), order reversed between layers"),
    )


def normflows_realnvp(train_x, couplings: int, hidden: int, hidden_layers: int) -> Contender:
    import normflows as nf

    flows = []
    for _ in range(couplings):
        param_map = nf.nets.MLP([1, *([hidden] * hidden_layers), 2], init_zeros=True)
        flows += [nf.flows.AffineCouplingBlock(param_map), nf.flows.Permute(2, mode="swap")]
    flow = nf.NormalizingFlow(nf.distributions.base.DiagGaussian(2), flows)
    module = Standardized(flow, flow.log_prob, train_x)
    return Contender(
        name="RealNVP",
        library=version("normflows"),
        module=module,
        train_nll=lambda x: -module.log_prob(x).mean(),
        log_likelihoods=lambda batch, draws: module.log_prob(batch.x),
        description=(f"normflows: {couplings} × [AffineCouplingBlock(MLP([1, {hidden}]×{hidden_layers}, 2], "
                     f"init_zeros)) + Permute swap], DiagGaussian base (trainable)"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["checkerboard", "eight-gaussians"])
    parser.add_argument("--models", nargs="+", default=list(MODELS),
                        help=f"any of {', '.join(MODELS)}; a genmodels one may carry a config over the "
                             "--nsf-*/--realnvp-* settings: 'genmodels-nsf:{\"bins\": 16, \"linear\": false}'")
    parser.add_argument("--seconds", type=float, default=180.0, help="training-step time per model")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=float, default=10.0, help="seconds of training between validations")
    parser.add_argument("--nsf-transforms", type=int, default=4)
    parser.add_argument("--nsf-hidden", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--nsf-bins", type=int, default=8)
    parser.add_argument("--realnvp-couplings", type=int, default=8)
    parser.add_argument("--realnvp-hidden", type=int, default=64)
    parser.add_argument("--realnvp-hidden-layers", type=int, default=2)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                        help="learning rate over the training time, the same for every contender")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.json (printed either way)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    results, differences = [], []
    for data_name in args.data:
        data = load_dataset(data_name)
        train_x, val_x, test_x = data.train.x.float(), data.validation.x.float(), data.test.x.float()
        entropy = ANALYTIC_DENSITIES[data_name].entropy
        for model_text in args.models:
            torch.manual_seed(args.seed)
            name, _, config_text = model_text.partition(":")
            if name not in MODELS or (config_text and not name.startswith("genmodels-")):
                parser.error(f"unknown model {model_text!r}: choose from {', '.join(MODELS)} (a config only on genmodels-*)")
            overrides = json.loads(config_text) if config_text else {}
            hidden = tuple(args.nsf_hidden)
            if name == "genmodels-nsf":
                config = {"transforms": args.nsf_transforms, "hidden": hidden, "bins": args.nsf_bins, **overrides}
                contender = genmodels_contender("nsf", data.spec, train_x, config, model_text)
            elif name == "genmodels-realnvp":
                config = {"couplings": args.realnvp_couplings, "hidden": args.realnvp_hidden,
                          "hidden_layers": args.realnvp_hidden_layers, **overrides}
                contender = genmodels_contender("realnvp", data.spec, train_x, config, model_text)
            elif name == "zuko-nsf":
                contender = zuko_nsf(train_x, args.nsf_transforms, hidden, args.nsf_bins)
            else:
                contender = normflows_realnvp(train_x, args.realnvp_couplings, args.realnvp_hidden,
                                              args.realnvp_hidden_layers)
            started = time.time()
            row = train_and_evaluate(
                contender, train_x, val_x, test_x, seconds=args.seconds, batch_size=args.batch_size,
                lr=args.lr, eval_every=args.eval_every, seed=args.seed, schedule=args.schedule,
            )
            row.update(data=data_name, kind="exact", entropy=round(entropy, 4),
                       gap_nats=round(row["test_nll_nats"] - entropy, 4), wall_s=round(time.time() - started, 1))
            print(json.dumps({k: v for k, v in row.items() if k not in ("history", "test_values")}), flush=True)
            results.append(row)
        rows = [r for r in results if r["data"] == data_name]
        ours = [r["model"] for r in rows if r["library"].startswith("genmodels")]
        peers = [r["model"] for r in rows if not r["library"].startswith("genmodels")]
        for d in paired_differences(rows, [(a, b) for a in ours for b in peers]):
            differences.append({"data": data_name, **d})

    meta = {
        "script": "benchmarks/peers/flows_toy2d.py", "argv": sys.argv[1:], "threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
        "machine": platform.platform(), "python": platform.python_version(),
        "versions": [f"torch {torch.__version__}", f"genmodels {genmodels.__version__}", version("zuko"),
                     version("normflows")],
    }
    print("\n| data | model | library | params | budget (s) | train ex/s | test NLL (nats) ± se | gap |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['data']} | {r['model']} | {r['library']} | {r['parameters']:,} | {r['budget_s']:g} | "
              f"{r['train_examples_per_s']:,.0f} | {r['test_nll_nats']:.4f} ± {r['test_nll_standard_error']:.4f} | {r['gap_nats']:.4f} |")
    print_differences(differences, "Paired test differences, nats (a − b; negative: a is better), ± standard error:")
    write_results(args.out, meta, results, paired_differences_nats=differences)


if __name__ == "__main__":
    main()
