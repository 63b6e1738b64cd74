"""Compress, then generate, on digits (CPU, a few minutes): vqvae → two-stage, vqgan, gan, vae.

Reports for each autoencoder the test reconstruction MSE / PSNR (decoder mode, images on [0, 1]),
codebook usage and perplexity on the test split; for two-stage the prior's exact code NLL (bits per
code, test); and sample-quality metrics (FD / KID / precision / recall with the project's digits
feature network, against the test split) of two-stage, gan (with and without hubness-guided
sampling) and a vae, each trained for the same number of steps at batch 64.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/vq_digits.py --steps 1500 --out /tmp/vq-bench
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from genmodels.checkpoint import load_model
from genmodels.core import Batch
from genmodels.data import load_dataset
from genmodels.metrics import quality_figures, sample_quality
from genmodels.training import TrainConfig, train
from vq_report import QUALITY, autoencoder_figures  # the same figures as the report (script folder on sys.path)


def _train(name, data, steps, out, model_config=None, **extra):
    start = time.time()
    config = TrainConfig(steps=steps, batch_size=64, lr=extra.pop("lr", 1e-3), eval_every=steps, num_samples=16, **extra)
    result = train(name, data, config, out / name, model_config=model_config or {}, progress=False)
    return result, time.time() - start


def _quality(samples, data):
    return {m: round(v, 4) for m, v in quality_figures(sample_quality(samples, data, metrics=QUALITY)).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vq-bench"))
    args = parser.parse_args()
    data = load_dataset("digits")
    x_test = data.test[: len(data.test)]["x"]
    lines = []
    for name, cfg in (("vqvae", {}), ("vqgan", {"disc_start": args.steps // 3})):
        result, seconds = _train(name, data, args.steps, args.out, cfg, lr=2e-3)
        model, _ = load_model(result.run_dir)
        figures, _ = autoencoder_figures(model, x_test)
        lines.append(f"{name}: {args.steps} steps, {seconds:.0f} s; test " + ", ".join(f"{k} {v:.4g}" for k, v in figures.items()))
        if name == "vqvae":
            vqvae_run = result.run_dir
    result, seconds = _train("two-stage", data, args.steps, args.out, {"autoencoder": str(vqvae_run)})
    model, _ = load_model(result.run_dir)
    bits = torch.cat([model.evaluation_figures(Batch(x_test[i:i + 120]))["bits_per_code"] for i in range(0, len(x_test), 120)])
    samples = model.sample(args.samples, generator=torch.Generator().manual_seed(0))
    lines.append(f"two-stage: {args.steps} steps, {seconds:.0f} s; test code NLL {bits.mean():.4f} bits/code "
                 f"(uniform: {math.log2(model.autoencoder.num_codes):.3f}); samples {_quality(samples, data)}")
    result, seconds = _train("gan", data, args.steps, args.out, {}, lr=1e-3, ema_decay=0.99)
    model, _ = load_model(result.run_dir)
    for hub in (False, True):
        samples = model.sample(args.samples, generator=torch.Generator().manual_seed(0), hubness=hub)
        lines.append(f"gan (hubness={hub}): {args.steps} steps, {seconds:.0f} s; samples {_quality(samples, data)}")
    result, seconds = _train("vae", data, args.steps, args.out, {})
    model, _ = load_model(result.run_dir)
    samples = model.sample(args.samples, generator=torch.Generator().manual_seed(0))
    lines.append(f"vae: {args.steps} steps, {seconds:.0f} s; samples {_quality(samples, data)}")
    test_quality = _quality(x_test, data)
    lines.append(f"reference (test split against itself): {test_quality}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
