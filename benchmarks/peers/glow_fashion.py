"""genmodels' ``glow`` against normflows' Glow on ``fashion-mnist``, interleaved on the peer harness at equal CPU time.

``fashion-mnist``: 1×28×28 images of 256 levels, the PROTOCOL split (55 000 / 5 000 / 10 000). Every
contender is a density on y = (x + u)/256 ∈ [0,1)^784 after a fixed preprocessing h = t(y) whose
log-Jacobian is part of the density (``genmodels.units``), and every figure is the dequantization bound

    log P(x) ≥ E_u[ log p_flow(h) + log|det ∂h/∂y| − log q(u|x) ] − 784 ln 256,

converted to bits/dim with ``genmodels.units.bits_per_dim``; q = U[0,1)^784 (log q = 0) for uniform
dequantization, a learned conditional flow for ``glow`` with ``dequantization="variational"``.

The contenders (``--models``):

* ``normflows``: normflows' Glow as in its image example (``examples/glow.ipynb``), unconditional:
  ``nf.MultiscaleFlow(q0, flows, merges, class_cond=False)`` with L levels of K
  ``nf.flows.GlowBlock(channels, hidden, split_mode="channel", scale=True)`` (affine coupling with
  normflows' sigmoid scale map, ``ConvNet2d`` 3×3 → 1×1 → zero-initialized 3×3 with ReLU, LU 1×1
  convolution, actnorm initialized on the first batch) and one ``nf.flows.Squeeze()`` per level,
  ``nf.flows.Merge()`` between levels, and one trainable ``nf.distributions.DiagGaussian`` per level
  (the example's ``ClassCondDiagGaussian`` without the class). Its preprocessing is the example's,
  y = (x + u)/256 fed to the flow as it is (``--peer-preprocess none``; the example's ``Scale(255/256)``
  + ``Jitter(1/256)`` on ``ToTensor``'s x/255, i.e. the same y); ``--peer-preprocess logit`` gives it
  genmodels' logit(α + (1 − 2α)y) instead.
* ``glow``, ``glow-variational``: genmodels' ``glow`` with the same L and K, ``--hidden`` channels (chosen
  so that the parameter counts are close), uniform or variational dequantization, its default logit
  preprocessing (α = 0.05). ``--glow-options JSON`` adds to their config, e.g. Glow's channel-split
  coupling at the matched size with the networks in channels-last layout and bfloat16 autocast:
  ``--hidden 127 --glow-options '{"split": "channel", "channels_last": true, "conditioner_dtype": "bfloat16"}'``.

The peer's bound is computed here with the same ``units`` functions that genmodels' flows use, and on
evaluation every contender draws u with ``Batch.rand`` from the same per-example seeds: all models with
uniform dequantization are scored on identical noise (``check_same_bound.py`` checks the wrapper
against ``glow``'s own bound).

Training (``harness.run_interleaved``): Adam, the same batch size, learning rate, gradient clipping and
sequence of minibatches, ``--cpu-seconds`` of thread CPU time each, interleaved in this process (the
next step to whoever has used the least); the first ``--val-size`` validation images (``--val-draws`` draws of u each, the same seeds
every time) pick the checkpoint every ``--eval-every`` CPU seconds of training, and the best state is scored
once on the test split (all 10 000 images unless ``--test-size`` is given, for smoke runs).

    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/peers/glow_fashion.py --cpu-seconds 300 --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import DequantizedPeer, genmodels_contender, peer_contender  # noqa: E402
from harness import (HarnessSettings, count_parameters, paired_differences, print_differences,  # noqa: E402
                     run_interleaved, version, write_results)

import genmodels  # noqa: E402
from genmodels import units  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402

DEFAULT_MODELS = ["normflows", "glow", "glow-variational"]


class NormflowsDensity(torch.nn.Module):
    """normflows' MultiscaleFlow as a density ``log_prob(h)`` (unconditional)."""

    def __init__(self, flow: torch.nn.Module):
        super().__init__()
        self.flow = flow

    def log_prob(self, h: torch.Tensor) -> torch.Tensor:
        return self.flow.log_prob(h, None)


def normflows_glow(shape: tuple[int, int, int], levels: int, steps: int, hidden: int) -> torch.nn.Module:
    """normflows' Glow for images, built as in its example (``examples/glow.ipynb``) but unconditional.

    Level i (0 = the coarsest, the last one applied to data) works on C·2^(L+1−i) channels: on data the
    level L−1 squeezes 1×28×28 → 4×14×14, runs K GlowBlocks and splits off 2×14×14 (Merge), the level 0
    squeezes the kept 2×14×14 → 8×7×7 and runs K GlowBlocks.
    """
    import normflows as nf

    C, H, W = shape
    L, K = levels, steps
    if H % 2**L or W % 2**L:
        raise ValueError(f"normflows' Glow needs sides divisible by 2^L = {2**L}, got {H}×{W}")
    q0, merges, flows = [], [], []
    for i in range(L):
        level = [nf.flows.GlowBlock(C * 2 ** (L + 1 - i), hidden, split_mode="channel", scale=True) for _ in range(K)]
        level += [nf.flows.Squeeze()]
        flows.append(level)
        if i > 0:
            merges.append(nf.flows.Merge())
            latent_shape = (C * 2 ** (L - i), H // 2 ** (L - i), W // 2 ** (L - i))
        else:
            latent_shape = (C * 2 ** (L + 1), H // 2**L, W // 2**L)
        q0.append(nf.distributions.DiagGaussian(latent_shape))
    return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def normflows_contender(spec, args):
    flow = normflows_glow(tuple(spec.shape), args.levels, args.steps, args.peer_hidden)
    module = DequantizedPeer(flow, lambda h: flow.log_prob(h, None), spec, args.peer_preprocess, args.alpha, flatten=False)
    pre = {"none": "h = y (the example's)", "logit": f"logit α={args.alpha}", "scale": "h = 2y − 1"}[args.peer_preprocess]
    description = (
        f"nf.MultiscaleFlow(class_cond=False), L={args.levels} × [K={args.steps} × nf.flows.GlowBlock(C, "
        f"hidden_channels={args.peer_hidden}, split_mode='channel', scale=True) + nf.flows.Squeeze()], nf.flows.Merge(), "
        f"nf.distributions.DiagGaussian per level; uniform dequantization, {pre}"
    )
    return peer_contender("Glow (normflows)", version("normflows"), module, description,
                          extra={"config": {"levels": args.levels, "steps": args.steps, "hidden_channels": args.peer_hidden,
                                            "preprocess": args.peer_preprocess}})


def describe_glow(c, has_dequantizer: bool) -> str:
    split = ("channel split (the network reads the C/2 conditioning channels, outputs the free half's parameters)"
             if c.split == "channel" else "channel mask (the network reads all C channels, masked, outputs 2C maps)")
    return (
        f"glow: L={c.levels} × [squeeze, K={c.steps} × (actnorm, LU 1×1 conv, {c.coupling} coupling on a {split}, "
        f"ConvNet {c.hidden} channels{' with GroupNorm' if c.norm else ''}, log-scale soft-clamped to ±{c.clamp}"
        + (", networks in channels-last layout" if c.channels_last else "")
        + (f", networks under {c.conditioner_dtype} autocast" if c.conditioner_dtype != "float32" else "")
        + f"), split]; {c.dequantization} dequantization"
        + (f" (q(u|x): {c.dequantizer_layers} affine couplings, MLP {list(c.dequantizer_hidden)})" if has_dequantizer else "")
        + f", {c.preprocess} α={c.alpha}"
    )


def glow_contender(name: str, spec, train_x, args):
    if name not in ("glow", "glow-variational"):
        raise ValueError(f"unknown contender {name!r}: normflows, glow or glow-variational")
    config = {"levels": args.levels, "steps": args.steps, "hidden": args.hidden, **json.loads(args.glow_options)}
    if name == "glow-variational":
        config["dequantization"] = "variational"
    contender = genmodels_contender("glow", spec, train_x, config, init_batch=args.batch_size)
    model = contender.module
    contender.name = name
    contender.description = describe_glow(model.config, model.dequantizer is not None)
    if model.dequantizer is not None:
        contender.extra.update(flow_parameters=count_parameters(model.flow),
                               dequantizer_parameters=count_parameters(model.dequantizer))
    return contender


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=DEFAULT_MODELS)
    parser.add_argument("--cpu-seconds", type=float, default=300.0, help="thread CPU seconds of training per model")
    parser.add_argument("--levels", type=int, default=2, help="L, for every contender")
    parser.add_argument("--steps", type=int, default=8, help="K, for every contender")
    parser.add_argument("--peer-hidden", type=int, default=128, help="normflows GlowBlock hidden_channels")
    parser.add_argument("--hidden", type=int, default=100, help="genmodels glow hidden (matched in parameters)")
    parser.add_argument("--glow-options", default="{}",
                        help='JSON merged into the glow contenders\' config, e.g. \'{"split": "channel", "hidden": 127, '
                             '"channels_last": true, "conditioner_dtype": "bfloat16"}\'')
    parser.add_argument("--peer-preprocess", choices=["none", "logit", "scale"], default="none",
                        help="normflows' preprocessing of y (none: its example's)")
    parser.add_argument("--alpha", type=float, default=0.05, help="logit α where the peer uses the logit")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=float, default=30.0, help="CPU seconds of training between validations")
    parser.add_argument("--grad-clip", type=float, default=10.0)
    parser.add_argument("--val-size", type=int, default=1000, help="the first N validation images pick the checkpoint")
    parser.add_argument("--test-size", type=int, default=None, help="the first N test images (smoke runs; default all)")
    parser.add_argument("--val-draws", type=int, default=1)
    parser.add_argument("--test-draws", type=int, default=1)
    parser.add_argument("--schedule", choices=["constant", "cosine"], default="constant",
                        help="learning rate over the training time, the same for every contender")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.json (printed either way)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset("fashion-mnist")
    spec = data.spec
    train_x = data.train.x.long()
    val_x = data.validation.x[: args.val_size].long()
    test_x = data.test.x[: args.test_size].long()
    contenders = []
    for name in args.models:
        torch.manual_seed(args.seed)
        contender = normflows_contender(spec, args) if name == "normflows" else glow_contender(name, spec, train_x, args)
        print(f"# {contender.name}: {count_parameters(contender.module):,} parameters; {contender.description}", flush=True)
        contenders.append(contender)
    settings = HarnessSettings(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, lr=args.lr, schedule=args.schedule,
                               grad_clip=args.grad_clip, eval_every=args.eval_every, val_draws=args.val_draws,
                               test_draws=args.test_draws, seed=args.seed)
    results = run_interleaved(contenders, train_x, val_x, test_x, settings, progress=lambda s: print("#", s, flush=True))
    bpd = lambda nats: round(float(units.bits_per_dim(nats, spec.dims)), 4)  # noqa: E731
    for row in results:
        dequantization = "variational" if row["model"] == "glow-variational" else "uniform"
        row.update(
            data="fashion-mnist", test_images=len(test_x), validation_images=len(val_x),
            kind=f"bound ({dequantization} dequantization, {args.test_draws} draw{'s' if args.test_draws > 1 else ''})",
            validation_bits_per_dim=bpd(row["validation_nll_nats"]), test_bits_per_dim=bpd(row["test_nll_nats"]),
            test_bits_per_dim_standard_error=bpd(row["test_nll_standard_error"]),
        )
        print(json.dumps({k: v for k, v in row.items() if k not in ("history", "test_values")}), flush=True)
    names = [r["model"] for r in results]
    pairs = [(a, "Glow (normflows)") for a in ("glow", "glow-variational")] + [("glow-variational", "glow")]
    differences = paired_differences(results, [p for p in pairs if p[0] in names and p[1] in names],
                                     scale=1.0 / (spec.dims * units.LN2))

    meta = {"script": "benchmarks/peers/glow_fashion.py", "argv": sys.argv[1:],
            "versions": [f"genmodels {genmodels.__version__}", version("normflows")]}
    print("\n| model | library | params | FLOPs/ex | CPU s | steps | train ex/CPU-s | best val at (CPU s) | val bits/dim | "
          "test bits/dim ± se |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['library']} | {r['parameters']:,} | {r['flops_per_train_example'] or 0:,} | {r['cpu_s']:.0f} | "
              f"{r['steps']:,} | {r['train_examples_per_cpu_s']:,.1f} | {r['best_validation_at_cpu_s']:g} | {r['validation_bits_per_dim']:.4f} | "
              f"{r['test_bits_per_dim']:.4f} ± {r['test_bits_per_dim_standard_error']:.4f} |")
    peer = next((r for r in results if r["model"] == "Glow (normflows)"), None)
    if peer is not None:
        for r in results:
            if r is not peer:
                print(f"  {r['model']} / normflows train ex/s: {r['train_examples_per_cpu_s'] / peer['train_examples_per_cpu_s']:.2f} (per CPU second, interleaved)")
    print_differences(differences, "Paired test differences, bits/dim (a − b; negative: a is better), ± standard error:")
    write_results(args.out, meta, results, paired_differences_bits_per_dim=differences)


if __name__ == "__main__":
    main()
