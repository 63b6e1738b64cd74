"""Peak memory and time of one U-Net training step with and without gradient checkpointing (CPU).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/diffusion_checkpointing.py --batch 64

Each setting runs in its own process; peak memory is the rise of the process's peak resident set
(VmHWM, reset through /proc/self/clear_refs) over one forward+backward after a warm-up step, so it
counts activations and gradients, not the model or the interpreter. Time: median of ``--repeats`` steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def _peak_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))


def child(checkpointing: bool, batch: int, repeats: int, channels: int) -> None:
    import torch

    from genmodels.core import Batch, create_model
    from genmodels.data import DataSpec

    torch.manual_seed(0)
    spec = DataSpec("fashion-mnist", (1, 28, 28), 256, 10)
    model = create_model("edm", spec, {"channels": channels, "channel_mults": (1, 2, 2), "checkpointing": checkpointing})
    x = torch.randint(0, 256, (batch, 1, 28, 28))
    model(Batch(x)).loss.backward()  # warm-up
    model.zero_grad(set_to_none=False)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    base = _rss_kib()
    model(Batch(x)).loss.backward()
    peak = _peak_kib() - base
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model(Batch(x)).loss.backward()
        times.append(time.perf_counter() - started)
    print(json.dumps({"checkpointing": checkpointing, "params": model.num_parameters(), "peak_mib": round(peak / 1024, 1),
                      "step_s": round(statistics.median(times), 3)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--child", choices=["on", "off"])
    args = parser.parse_args()
    if args.child:
        child(args.child == "on", args.batch, args.repeats, args.channels)
        return
    for setting in ("off", "on"):
        out = subprocess.run([sys.executable, __file__, "--child", setting, "--batch", str(args.batch),
                              "--repeats", str(args.repeats), "--channels", str(args.channels)],
                             capture_output=True, text=True, check=True)
        print(out.stdout.strip())


if __name__ == "__main__":
    main()
