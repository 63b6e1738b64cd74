"""Memory and speed levers, measured: training examples/s and peak resident memory per setting.

Each setting trains the same causal Transformer on digits for a fixed number of steps in a fresh
process (so the peak resident set size, ``ru_maxrss``, is that setting's own), through the same
``train()`` the CLI uses:

- ``base``: batch 128;
- ``accumulate``: batch 32 × ``grad_accumulation`` 4 (the same step, a quarter of the activations);
- ``checkpointing``: batch 128 with the Transformer blocks recomputed in the backward pass;
- ``bf16``: batch 128 under bf16 autocast;
- ``compile``: batch 128 with ``torch.compile`` (``--with-compile``: its compilation takes minutes
  on a CPU and is left out of examples/s, which count training steps only);
- ``2 processes``: torchrun, 2 × 64 (gloo on CPUs), against ``base``'s 1 × 128.

examples/s is the trainer's own figure (training time only, evaluation excluded); memory is the
peak RSS of the process (of the first process under torchrun) minus that of a process that only
imported genmodels and loaded the data, so it shows what training adds. On a GPU the script reports
``torch.cuda.max_memory_allocated`` instead.

    OMP_NUM_THREADS=1 python benchmarks/scale_levers.py [--steps 40] [--with-compile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = {"dim": 128, "layers": 4, "heads": 4}
SETTINGS = {
    "base": ({"batch_size": 128}, {}),
    "accumulate": ({"batch_size": 32, "grad_accumulation": 4}, {}),
    "checkpointing": ({"batch_size": 128}, {"checkpointing": True}),
    "bf16": ({"batch_size": 128, "mixed_precision": "bf16"}, {}),
    "compile": ({"batch_size": 128, "compile": True}, {}),
    "2 processes": ({"batch_size": 64}, {}),
}


def child(setting: str, steps: int, out: str) -> None:
    import torch

    from genmodels.data import load_dataset
    from genmodels.training import TrainConfig, train

    data = load_dataset("digits")
    if setting == "idle":
        print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    config, model = SETTINGS[setting]
    result = train(
        "transformer", data,
        TrainConfig(steps=steps, eval_every=10**6, log_every=10**6, eval_batch_size=32, num_samples=1, **config),
        out, model_config={**MODEL, **model}, progress=False,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        record = {"examples_per_second": result.examples_per_second,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if torch.cuda.is_available():
            record["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print("RESULT " + json.dumps(record))


def run(setting: str, steps: int, folder: Path) -> dict:
    launcher = [sys.executable]
    if setting == "2 processes":
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    out = folder / setting.replace(" ", "-")
    started = time.perf_counter()
    done = subprocess.run([*launcher, __file__, "--child", setting, "--steps", str(steps), "--out", str(out)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ") or x.startswith("{")][-1]
    record = json.loads(line.removeprefix("RESULT "))
    record["wall_s"] = time.perf_counter() - started
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--with-compile", action="store_true")
    parser.add_argument("--only", help="comma-separated settings")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.steps, args.out)
        return
    names = args.only.split(",") if args.only else [n for n in SETTINGS if n != "compile" or args.with_compile]
    with tempfile.TemporaryDirectory(prefix="scale-levers-") as tmp:
        idle = run("idle", args.steps, Path(tmp))
        print(f"transformer {MODEL} on digits, {args.steps} steps, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
              f"an idle process (imports + data) peaks at {idle.get('rss_mb', float('nan')):.0f} MB")
        print("| setting | examples/step | train examples/s | peak RSS − idle (MB) | wall (s) |")
        print("|---|---:|---:|---:|---:|")
        for name in names:
            r = run(name, args.steps, Path(tmp))
            config = SETTINGS[name][0]
            per_step = config["batch_size"] * config.get("grad_accumulation", 1) * (2 if name == "2 processes" else 1)
            if "error" in r:
                print(f"| {name} | {per_step} | failed: {r['error']} | | |")
                continue
            memory = r.get("cuda_peak_mb", r["rss_mb"] - idle.get("rss_mb", 0.0))
            print(f"| {name} | {per_step} | {r['examples_per_second']:.0f} | {memory:.0f} | {r['wall_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
