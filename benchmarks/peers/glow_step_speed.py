"""Training throughput of genmodels' ``glow`` variants against normflows' Glow, on the peer harness.

Each contender is built as in ``glow_fashion.py`` (L = 2, K = 8, fashion-mnist, batch 64, Adam, grad
clip 10) and trained by ``harness.run_interleaved`` for ``--cpu-seconds`` of thread CPU time each,
interleaved in this process (the next step to whoever has used the least), after three untimed
warm-up passes. Prints examples per CPU second and the ratio to normflows' Glow from the same run, with
the machine's CPU capability: a lever such as ``conditioner_dtype="bfloat16"`` depends on the CPU
(bf16 units: AVX512-BF16 or AMX), and its ratio holds only on the CPU it was measured on. Contenders:
``nf`` or a JSON config for ``glow`` (merged over levels 2, steps 8).

    OMP_NUM_THREADS=1 /work/peer-venv/bin/python benchmarks/peers/glow_step_speed.py --cpu-seconds 30 nf \\
        '{"hidden": 100}' '{"hidden": 128, "split": "channel", "norm": false, "channels_last": true}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import glow_fashion  # noqa: E402
from contenders import genmodels_contender  # noqa: E402
from harness import HarnessSettings, machine, run_interleaved, write_results  # noqa: E402

from genmodels.data import load_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("contenders", nargs="+", help="'nf' or a glow config as JSON")
    parser.add_argument("--cpu-seconds", type=float, default=30.0, help="thread CPU seconds of training per contender")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist")
    spec, train_x, val_x = data.spec, data.train.x.long(), data.validation.x[:64].long()
    contenders = []
    for text in args.contenders:
        torch.manual_seed(0)
        if text == "nf":
            peer_args = argparse.Namespace(levels=2, steps=8, peer_hidden=128, peer_preprocess="none", alpha=0.05)
            contender = glow_fashion.normflows_contender(spec, peer_args)
        else:
            contender = genmodels_contender("glow", spec, train_x[: args.batch_size], {"levels": 2, "steps": 8, **json.loads(text)})
            contender.extra["conditioner"] = getattr(contender.module, "conditioner_note", "float32")
        contender.name = text
        contenders.append(contender)
    settings = HarnessSettings(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, eval_every=args.cpu_seconds)
    rows = run_interleaved(contenders, train_x, val_x, None, settings)
    reference = next((r for r in rows if r["model"] == "nf"), None)
    m = machine()
    print(f"CPU capability {m['cpu_capability']}, {m['threads']} thread(s), torch {m['torch']}, {m['cpu_count']} cores")
    print("| contender | conditioner | params | FLOPs/ex | steps | train ex/CPU-s | ms/step (CPU) | / normflows |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = f"{r['train_examples_per_cpu_s'] / reference['train_examples_per_cpu_s']:.2f}" if reference else "–"
        print(f"| `{r['model']}` | {r.get('conditioner', 'float32 (normflows)')} | {r['parameters']:,} | {r['flops_per_train_example'] or 0:,} | {r['steps']} | "
              f"{r['train_examples_per_cpu_s']:.1f} | {1000 * r['cpu_s'] / r['steps']:.0f} | {ratio} |")
    write_results(args.out, {"script": "benchmarks/peers/glow_step_speed.py", "argv": sys.argv[1:]}, rows)


if __name__ == "__main__":
    main()
