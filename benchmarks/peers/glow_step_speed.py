"""Training-step throughput of genmodels' ``glow`` variants against normflows' Glow, interleaved in one process.

Each contender is built as in ``glow_fashion.py`` (L = 2, K = 8, fashion-mnist, batch 64, Adam, grad
clip 10) and, after 3 warm-up steps each, the contenders take turns, one training step each per round,
so that every one of them sees the same machine load (the machine is shared; a sequential run's
examples/s ratio moves with the load during each contender's turn). Prints examples/s and the ratio
to normflows' Glow. Contenders: ``nf`` or a JSON config for ``glow`` (merged over levels 2, steps 8).

    OMP_NUM_THREADS=1 /work/venv-peers/bin/python benchmarks/peers/glow_step_speed.py --rounds 8 nf \\
        '{"hidden": 100}' '{"hidden": 128, "split": "channel", "norm": false, "channels_last": true}'
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import glow_fashion  # noqa: E402
from common import count_parameters  # noqa: E402

from genmodels.core import Batch, create_model  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("contenders", nargs="+", help="'nf' or a glow config as JSON")
    parser.add_argument("--rounds", type=int, default=8, help="timed training steps per contender")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist")
    spec, train_x = data.spec, data.train.x.long()
    built = []
    for text in args.contenders:
        torch.manual_seed(0)
        if text == "nf":
            peer_args = argparse.Namespace(levels=2, steps=8, peer_hidden=128, peer_preprocess="none", alpha=0.05)
            c = glow_fashion.normflows_contender(spec, peer_args)
            built.append((text, c.module, c.train_nll))
        else:
            model = create_model("glow", spec, {"levels": 2, "steps": 8, **json.loads(text)})
            model.initialize([Batch(train_x[: args.batch_size])])
            built.append((text, model, lambda x, m=model: m.loss(Batch(x)).loss))
    optimizers = [torch.optim.Adam(module.parameters(), lr=1e-3) for _, module, _ in built]
    generator = torch.Generator().manual_seed(0)

    def step(k: int) -> None:
        _, module, train_nll = built[k]
        x = train_x[torch.randint(0, len(train_x), (args.batch_size,), generator=generator)]
        optimizers[k].zero_grad(set_to_none=True)
        train_nll(x).backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 10.0)
        optimizers[k].step()

    for k in range(len(built)):
        for _ in range(3):
            step(k)
    seconds = [0.0] * len(built)
    for _ in range(args.rounds):
        for k in range(len(built)):
            tick = time.perf_counter()
            step(k)
            seconds[k] += time.perf_counter() - tick
    rates = [args.rounds * args.batch_size / s for s in seconds]
    reference = rates[args.contenders.index("nf")] if "nf" in args.contenders else None
    print("| contender | params | train ex/s | ms/step | / normflows |")
    print("|---|---:|---:|---:|---:|")
    for (text, module, _), rate, s in zip(built, rates, seconds):
        ratio = f"{rate / reference:.2f}" if reference else "–"
        print(f"| `{text}` | {count_parameters(module):,} | {rate:.1f} | {1000 * s / args.rounds:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
