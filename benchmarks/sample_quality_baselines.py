"""Reference points for the sample-quality metrics: what real data, copies, a trivial model and noise score.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/sample_quality_baselines.py --dataset digits --samples 180

Rows (all measured against the same reference split, with the same number of samples N):
- held-out real: N validation images (what a perfect model would score, up to sampling noise);
- training copies: N training images (a model that memorizes: perfect FD, memorization 1.0);
- independent: N samples of the fitted per-pixel categorical baseline;
- uniform noise: N images of independent uniform levels.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from genmodels.core import Batch, create_model
from genmodels.data import load_dataset
from genmodels.metrics import FeatureReference, draw_samples, sample_quality


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--samples", type=int, default=180)
    parser.add_argument("--reference", default="test")
    parser.add_argument("--json", default=None, help="also write the records here")
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    n, spec = args.samples, data.spec
    started = time.perf_counter()
    reference = FeatureReference(data, args.reference)
    model = create_model("independent", spec)
    model.initialize(Batch.of({"x": data.train.x[i : i + 1000].long()}) for i in range(0, len(data.train), 1000))
    independent, _ = draw_samples(model, n, seed=0)
    g = torch.Generator().manual_seed(0)
    rows = {
        "held-out real (validation)": data.validation.x[:n],
        "training copies": data.train.x[:n],
        "independent (fitted)": independent,
        "uniform noise": torch.randint(0, spec.levels, (n, *spec.shape), generator=g),
    }
    out = {}
    print(f"{args.dataset}: N={n} samples vs {args.reference} (n={len(reference.features)}), "
          f"features {reference.extractor.name} {reference.extractor.sha256[:12]}")
    print("| samples | FD (genmodels features) | KID (genmodels features) | precision | recall | density | coverage | memorized |")
    print("|---|---|---|---|---|---|---|---|")
    for name, x in rows.items():
        records = {r.metric: r for r in sample_quality(x.to(torch.int64), data, reference=reference)}
        kid = records["kid"]
        print(f"| {name} | {records['fd'].value:.2f} | {kid.value:.1f} ± {kid.stderr:.1f} | "
              f"{records['precision'].value:.3f} | {records['recall'].value:.3f} | {records['density'].value:.3f} | "
              f"{records['coverage'].value:.3f} | {records['memorization'].value:.3f} |")
        out[name] = [r.to_json() for r in records.values()]
    print(f"({time.perf_counter() - started:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
