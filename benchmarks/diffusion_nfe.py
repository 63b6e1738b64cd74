"""Sample quality against network evaluations: one trained diffusion / flow-matching run, many samplers.

Every method of the diffusion family shares one sampler code (``genmodels.diffusion.samplers``), so a
trained run can be sampled with any solver and any number of steps. This script draws ``--samples``
images from each given run with each sampler setting, from the same seed, and measures them against
the test split in the project's feature space (FD, KID, precision, recall: ``genmodels.metrics``).
Each row states its NFE (network evaluations per sample, as the sampler reports it), so rows compare
at equal cost. Defaults per method (BENCHMARKS.md's sampler sweep):

- ``edm``, ``ve``: Heun (EDM Alg. 1) with 5, 10 and 25 steps (9, 19 and 49 NFE), and Euler at 20;
- ``ddpm``: DDIM (η = 0) at 20 and 50 steps, DDPM ancestral at all 1 000 steps;
- ``rectified-flow``: Euler at 1, 2, 4 and 20 steps.

``--sweep "solver=heun steps=5,10"`` replaces the defaults for every run (comma lists expand).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diffusion_nfe.py RUN [RUN ...] --samples 500 --out DIR

Writes ``nfe.md`` (the table), ``nfe.json`` and ``samples-<run>.png`` (one grid per setting, side by side).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from genmodels.checkpoint import load_model
from genmodels.data import load_dataset
from genmodels.metrics import quality_figures, sample_quality
from genmodels.plotting import save_montage, save_samples
from genmodels.training.report import sampling_options

QUALITY = ("fd", "kid", "precision", "recall")
DEFAULT_SWEEPS: dict[str, list[dict[str, str]]] = {
    "edm": [{"solver": "heun", "steps": s} for s in ("5", "10", "25")] + [{"solver": "euler", "steps": "20"}],
    "ve": [{"solver": "heun", "steps": s} for s in ("5", "10", "25")] + [{"solver": "euler", "steps": "20"}],
    "ddpm": [{"solver": "ddim", "steps": "20"}, {"solver": "ddim", "steps": "50"}, {"solver": "ddpm", "steps": "1000"}],
    "rectified-flow": [{"solver": "euler", "steps": s} for s in ("1", "2", "4", "20")],
}


def expand(sweep: str) -> list[dict[str, str]]:
    """``"solver=heun steps=5,10"`` → [{solver: heun, steps: 5}, {solver: heun, steps: 10}]."""
    keys, values = [], []
    for part in sweep.split():
        key, _, value = part.partition("=")
        keys.append(key)
        values.append(value.split(","))
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of diffusion-family models")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--sweep", help="sampler settings for every run, e.g. 'solver=heun steps=5,10,25'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows, lines = [], []
    for run in args.runs:
        model, _ = load_model(run)
        results = json.loads((run / "results.json").read_text())
        data = load_dataset(results["data"])
        settings = expand(args.sweep) if args.sweep else DEFAULT_SWEEPS.get(model.name)
        if not settings:
            raise SystemExit(f"no default sweep for model '{model.name}': give --sweep")
        grids = {}
        for options in settings:
            start = time.perf_counter()
            samples, info = model.sample_with_info(args.samples, generator=torch.Generator().manual_seed(args.seed),
                                                   **sampling_options(model, options))
            seconds = time.perf_counter() - start
            label = " ".join(f"{k}={v}" for k, v in options.items())
            row = {"run": str(run), "model": model.name, "data": results["data"], "options": options,
                   "nfe": info.get("nfe"), "seconds": seconds, "samples": args.samples,
                   **quality_figures(sample_quality(samples, data, metrics=QUALITY))}
            rows.append(row)
            print(f"{model.name:<15} {label:<22} NFE {row['nfe']!s:>5}  FD {row['fd']:8.2f}  KID {row['kid']:.3f} ± "
                  f"{row['kid_stderr']:.3f}  P {row['precision']:.3f}  R {row['recall']:.3f}  {seconds:.1f} s", flush=True)
            grids[f"{label} (NFE {row['nfe']})"] = save_samples(
                samples[:36], data.spec, args.out / f"samples-{run.name}-{label.replace(' ', '-')}.png", title=f"{model.name} {label}")
        save_montage(grids, args.out / f"samples-{run.name}.png", title=f"{model.name} ({run.name}): samplers")
    lines += [f"Sample quality against NFE: {args.samples} samples per row (seed {args.seed}) against the test split, "
              "in genmodels' feature space (FD and KID lower is better).", "",
              "| data | model | sampler | NFE | FD (genmodels features) | KID | precision | recall | sampling s |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        label = ", ".join(f"{k}={v}" for k, v in r["options"].items())
        lines.append(f"| {r['data']} | {r['model']} | {label} | {r['nfe']} | {r['fd']:.1f} | {r['kid']:.2f} ± {r['kid_stderr']:.2f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} | {r['seconds']:.1f} |")
    (args.out / "nfe.md").write_text("\n".join(lines) + "\n")
    (args.out / "nfe.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
