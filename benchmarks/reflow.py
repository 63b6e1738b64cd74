"""Reflow a trained rectified flow (Liu et al. 2023, "Flow straight and fast", sec. 2.3) and measure it.

1. Draw ``--pairs`` (noise ε, sample z_0) couplings from the trained flow's ODE (``reflow_pairs``,
   Euler with ``--pair-steps`` steps).
2. Fine-tune a copy on that fixed coupling with the flow-matching loss (``reflow_loss``): Adam,
   ``--steps`` steps of batch ``--batch-size`` (a plain loop: the coupling is not a data set the
   trainer can read, since each example carries its own noise).
3. Report, before and after: the straightness S = ∫‖(Z_1 − Z_0) − v(Z_t, t)‖² dt on held-out noise
   (``straightness``; 0 for straight paths) and the sample quality (FD, KID, precision, recall in the
   project's feature space, against the test split) of Euler with 1, 2 and 4 steps.
4. Save the reflowed weights as a checkpoint beside the table (``OUT/reflowed``), which
   ``genmodels sample OUT/reflowed --option steps=1`` samples.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/reflow.py RUN --pairs 5000 --steps 1000 --out DIR
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch

from genmodels.checkpoint import checkpoint_name, load_model, read_checkpoint, save_checkpoint
from genmodels.data import load_dataset
from genmodels.diffusion.rectified_flow import reflow_loss, reflow_pairs, straightness
from genmodels.metrics import sample_quality

QUALITY = ("fd", "kid", "precision", "recall")


def measure(model, data, samples: int, held_out_noise: torch.Tensor, seed: int) -> dict:
    model.eval()
    figures = {"straightness": float(straightness(model, held_out_noise).mean())}
    for steps in (1, 2, 4):
        x = model.sample(samples, generator=torch.Generator().manual_seed(seed), solver="euler", steps=steps)
        records = {r.metric: r for r in sample_quality(x, data, metrics=QUALITY)}
        figures[f"euler-{steps}"] = {m: records[m].value for m in QUALITY}
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

    start = time.perf_counter()
    noise, z0 = reflow_pairs(model, args.pairs, steps=args.pair_steps, generator=torch.Generator().manual_seed(args.seed + 2))
    pair_seconds = time.perf_counter() - start
    student = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=args.lr)
    order = torch.Generator().manual_seed(args.seed + 3)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        index = torch.randint(0, args.pairs, (args.batch_size,), generator=order)
        loss = reflow_loss(student, noise[index], z0[index]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        optimizer.step()
        if step % 100 == 0:
            print(f"reflow step {step}/{args.steps}  loss {loss.item():.4f}", flush=True)
    train_seconds = time.perf_counter() - start
    after = measure(student, data, args.samples, held_out, args.seed)
    print("after", json.dumps(after), flush=True)

    meta = {k: v for k, v in read_checkpoint(checkpoint.path).meta.items() if k not in ("sha256", "trainer_state", "has_ema")}
    meta["reflow"] = {"from": str(checkpoint.path), "pairs": args.pairs, "pair_steps": args.pair_steps, "steps": args.steps,
                      "batch_size": args.batch_size, "lr": args.lr}
    target = args.out / "reflowed" / "checkpoints" / checkpoint_name(args.steps)
    if not target.exists():
        save_checkpoint(target, model_state=student.state_dict(), meta=meta)
    report = {"run": str(args.run), "pairs": args.pairs, "pair_steps": args.pair_steps, "steps": args.steps,
              "pair_seconds": pair_seconds, "train_seconds": train_seconds, "samples": args.samples,
              "before": before, "after": after}
    (args.out / "reflow.json").write_text(json.dumps(report, indent=2))
    lines = [f"Reflow of {args.run}: {args.pairs} pairs ({args.pair_steps} Euler steps, {pair_seconds:.0f} s), "
             f"{args.steps} steps of batch {args.batch_size} ({train_seconds:.0f} s); {args.samples} samples per FD.", "",
             "| | straightness | FD, 1 step | FD, 2 steps | FD, 4 steps | precision / recall, 1 step |",
             "|---|---:|---:|---:|---:|---|"]
    for name, f in (("before", before), ("after reflow", after)):
        lines.append(f"| {name} | {f['straightness']:.4f} | {f['euler-1']['fd']:.1f} | {f['euler-2']['fd']:.1f} | "
                     f"{f['euler-4']['fd']:.1f} | {f['euler-1']['precision']:.3f} / {f['euler-1']['recall']:.3f} |")
    (args.out / "reflow.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
