"""Reflow a trained rectified flow (Liu et al. 2023, "Flow straight and fast", sec. 2.3) and measure it.

1. Train the reflowed flow with the project's trainer: ``rectified-flow`` with ``reflow_from=RUN``
   starts from the run's weights, draws ``--pairs`` (noise ε, sample z_0) couplings with its ODE
   (Euler, ``--pair-steps`` steps), and fits the flow-matching loss on them for ``--steps`` steps of
   batch ``--batch-size`` (the same as ``genmodels train rectified-flow --option reflow_from=RUN ...``).
   The last checkpoint is the result (``select_by=latest``: the likelihood is not what reflow improves).
2. Report, before and after: the straightness S = ∫‖(Z_1 − Z_0) − v(Z_t, t)‖² dt on held-out noise
   (``straightness``; 0 for straight paths) and the sample quality (FD, KID, precision, recall in the
   project's feature space, against the test split) of Euler with 1, 2 and 4 steps.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/reflow.py RUN --pairs 5000 --steps 1000 --out DIR
    (Fashion-MNIST on a CPU: add --validation-examples 250 --test-examples 500)

``genmodels sample DIR/reflowed --option steps=1`` then samples the reflowed flow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from genmodels.checkpoint import load_model
from genmodels.data import load_dataset
from genmodels.diffusion.rectified_flow import straightness
from genmodels.metrics import quality_figures, sample_quality
from genmodels.training import TrainConfig, train

QUALITY = ("fd", "kid", "precision", "recall")


def measure(model, data, samples: int, held_out_noise: torch.Tensor, seed: int) -> dict:
    model.eval()
    figures = {"straightness": float(straightness(model, held_out_noise).mean())}
    for steps in (1, 2, 4):
        x = model.sample(samples, generator=torch.Generator().manual_seed(seed), solver="euler", steps=steps)
        figures[f"euler-{steps}"] = quality_figures(sample_quality(x, data, metrics=QUALITY))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a rectified-flow run folder (or checkpoint)")
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument("--pair-steps", type=int, default=32)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--samples", type=int, default=500, help="samples per sample-quality row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-examples", type=int, default=None,
                        help="the trainer's validation ODE likelihood on the first N examples only (default: all)")
    parser.add_argument("--test-examples", type=int, default=None,
                        help="the reflowed run's test ODE likelihood on the first N examples only (default: all; "
                             "a U-Net's on Fashion-MNIST's 10 000 takes about an hour on one CPU thread)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    model, checkpoint = load_model(args.run)
    if model.name != "rectified-flow":
        raise SystemExit(f"reflow needs a rectified-flow run, got '{model.name}'")
    data = load_dataset(model.spec.name)
    held_out = torch.randn((200, *model.spec.shape), generator=torch.Generator().manual_seed(args.seed + 1))
    before = measure(model, data, args.samples, held_out, args.seed)
    print("before", json.dumps(before), flush=True)

    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, eval_every=args.steps,
                         select_by="latest", seed=args.seed, validation_examples=args.validation_examples,
                         test_examples=args.test_examples)
    reflow = {"reflow_from": str(checkpoint.path), "reflow_pairs": args.pairs, "reflow_steps": args.pair_steps,
              "reflow_seed": args.seed + 2}
    result = train("rectified-flow", data, config, args.out / "reflowed",
                   model_config={**model.config.to_json(), **reflow}, progress=False)
    student, _ = load_model(result.best_checkpoint)
    after = measure(student, data, args.samples, held_out, args.seed)
    print("after", json.dumps(after), flush=True)
    train_seconds = result.train_seconds  # the coupling's ODE solves included (they run in the first step)

    report = {"run": str(args.run), "pairs": args.pairs, "pair_steps": args.pair_steps, "steps": args.steps,
              "train_seconds": train_seconds, "reflowed": str(result.run_dir), "samples": args.samples,
              "before": before, "after": after}
    (args.out / "reflow.json").write_text(json.dumps(report, indent=2))
    lines = [f"Reflow of {args.run}: {args.pairs} pairs ({args.pair_steps} Euler steps), {args.steps} steps of batch "
             f"{args.batch_size} ({train_seconds:.0f} s with the pairs); {args.samples} samples per FD.", "",
             "| | straightness | FD, 1 step | FD, 2 steps | FD, 4 steps | precision / recall, 1 step |",
             "|---|---:|---:|---:|---:|---|"]
    for name, f in (("before", before), ("after reflow", after)):
        lines.append(f"| {name} | {f['straightness']:.4f} | {f['euler-1']['fd']:.1f} | {f['euler-2']['fd']:.1f} | "
                     f"{f['euler-4']['fd']:.1f} | {f['euler-1']['precision']:.3f} / {f['euler-1']['recall']:.3f} |")
    (args.out / "reflow.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
