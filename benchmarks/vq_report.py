"""Compress, then generate: the vq family's reconstruction, code and sample figures, read from a finished
``genmodels bench`` folder.

Training is the bench's (each model's shipped recipe); this script only measures the trained runs:

- ``vqvae`` / ``vqgan`` (and ``two-stage``'s first stage): test reconstruction MSE and PSNR (decoder
  mode, images on [0, 1]), codebook usage (share of codes used on the test split) and perplexity;
- ``two-stage``: the prior's exact test NLL over codes, in bits per code (and the uniform prior's);
- sample quality — FD / KID / precision / recall in the project's feature space, against the test
  split — of ``two-stage``, and of ``gan`` and ``vae`` with and without hubness-guided latent sampling,
  with each run's training wall time beside it (the recipes' budgets are steps, not seconds);
- pictures: ``reconstructions-<data>.png`` (test images above their reconstructions, per autoencoder)
  and ``samples-<data>.png`` (the sample sets side by side).

    PYTHONPATH=src python benchmarks/vq_report.py runs/bench-quick-… --data digits --out vq-digits
    PYTHONPATH=src python benchmarks/vq_report.py runs/bench-fashion-… --data fashion-mnist --out vq-fashion
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from genmodels.checkpoint import load_model
from genmodels.core import Batch
from genmodels.data import load_dataset
from genmodels.metrics import quality_figures, sample_quality
from genmodels.plotting import save_montage, save_samples
from genmodels.vq.quantizer import perplexity

AUTOENCODERS = ("vqvae", "vqgan")
SAMPLERS = (("two-stage", {}), ("gan", {"hubness": False}), ("gan", {"hubness": True}),
            ("vae", {"hubness": False}), ("vae", {"hubness": True}))
QUALITY = ("fd", "kid", "precision", "recall")


def _runs(bench: Path, data: str) -> dict[str, Path]:
    """Model name → run folder, for every run of ``data`` in a bench folder."""
    runs = {}
    for results in sorted((bench / data).glob("*/results.json")):
        runs[json.loads(results.read_text())["model"]] = results.parent
    return runs


def _train_seconds(run: Path) -> float:
    return float(json.loads((run / "results.json").read_text())["train_seconds"])


@torch.no_grad()
def autoencoder_figures(model, x: torch.Tensor, batch: int = 500) -> tuple[dict[str, float], torch.Tensor]:
    codes, recon = [], []
    for i in range(0, len(x), batch):
        c = model.encode(x[i:i + batch])
        codes.append(c)
        recon.append(model.decode(c))
    codes, recon = torch.cat(codes), torch.cat(recon)
    mse = model.reconstruction_mse(x, recon).mean().item()
    figures = {
        "mse": mse,
        "psnr_db": -10 * math.log10(mse),
        "codes_used": torch.unique(codes).numel() / model.num_codes,
        "perplexity": perplexity(codes, model.num_codes).item(),
        "codebook": model.num_codes,
    }
    return figures, recon


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", type=Path, help="a genmodels bench output folder")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.data)
    x_test = data.test[: len(data.test)]["x"]
    runs = _runs(args.bench, args.data)
    report: dict[str, dict] = {}
    lines = [f"# Compress, then generate on {args.data} (bench folder {args.bench})", ""]

    lines += ["| autoencoder | train s | test MSE | PSNR (dB) | codes used | perplexity (of K) |", "|---|---|---|---|---|---|"]
    pairs = {}
    for name in (*AUTOENCODERS, "two-stage"):
        if name not in runs:
            continue
        model, _ = load_model(runs[name])
        autoencoder = model.autoencoder if name == "two-stage" else model
        figures, recon = autoencoder_figures(autoencoder, x_test)
        label = f"{name} (first stage)" if name == "two-stage" else name
        report[label] = {**figures, "train_seconds": _train_seconds(runs[name])}
        lines.append(f"| {label} | {report[label]['train_seconds']:.0f} | {figures['mse']:.5f} | {figures['psnr_db']:.2f} | "
                     f"{figures['codes_used']:.1%} | {figures['perplexity']:.1f} ({figures['codebook']}) |")
        pair = torch.cat([x_test[:16], recon[:16]])
        pairs[label] = save_samples(pair, data.spec, args.out / f"reconstructions-{name}-{args.data}.png",
                                    title=f"{label}: test images (top), reconstructions (bottom)")
        if name == "two-stage":
            bits = torch.cat([model.evaluation_figures(Batch(x_test[i:i + 250]))["bits_per_code"]
                              for i in range(0, len(x_test), 250)])
            report["two-stage prior"] = {"bits_per_code": bits.mean().item(),
                                         "stderr": (bits.std() / math.sqrt(len(bits))).item(),
                                         "uniform_bits_per_code": math.log2(autoencoder.num_codes)}
    if pairs:
        save_montage(pairs, args.out / f"reconstructions-{args.data}.png", title=f"reconstructions on {args.data} test")
    if "two-stage prior" in report:
        prior = report["two-stage prior"]
        lines += ["", f"two-stage prior, exact test NLL over codes: {prior['bits_per_code']:.4f} ± {prior['stderr']:.4f} "
                      f"bits/code (a uniform prior: {prior['uniform_bits_per_code']:.3f})"]

    lines += ["", f"| sampler | train s | FD | KID | precision | recall |  ({args.samples} samples vs the test split, "
                  f"{args.data} feature network)", "|---|---|---|---|---|---|"]
    grids = {}
    for name, options in SAMPLERS:
        if name not in runs:
            continue
        model, _ = load_model(runs[name])
        samples = model.sample(args.samples, generator=torch.Generator().manual_seed(0), **options)
        label = name + (f" hubness={options['hubness']}" if "hubness" in options else "")
        report[label] = {**quality_figures(sample_quality(samples, data, metrics=QUALITY)),
                         "train_seconds": _train_seconds(runs[name])}
        r = report[label]
        lines.append(f"| {label} | {r['train_seconds']:.0f} | {r['fd']:.2f} | {r['kid']:.4f} ± {r['kid_stderr']:.4f} | "
                     f"{r['precision']:.3f} | {r['recall']:.3f} |")
        grids[label] = save_samples(samples[:64], data.spec, args.out / f"samples-{label.replace(' ', '-')}-{args.data}.png",
                                    title=label)
    if grids:
        save_montage(grids, args.out / f"samples-{args.data}.png", title=f"compress-then-generate samples on {args.data}")
    (args.out / "vq_report.json").write_text(json.dumps(report, indent=2))
    (args.out / "vq_report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
