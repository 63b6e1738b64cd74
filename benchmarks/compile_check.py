"""Whether ``torch.compile`` pays on this CPU: per model, the CPU time compiling costs and the steady
training speed compiled against eager, one thread, in one process.

    cd benchmarks && OMP_NUM_THREADS=1 python compile_check.py --data digits
    cd benchmarks && OMP_NUM_THREADS=1 python compile_check.py --models glow,edm --train-seconds 3

Each model is built at its defaults (``fitting.registry_models``) and copied: the eager copy trains as
``fitting.fit`` steps it, the other is ``torch.compile(model)`` (inductor, default mode) in the same
loop, the optimizer step left eager. The compile cost is the thread CPU time of the compiled copy's
first ``--compile-steps`` steps (tracing, the C++ code inductor writes, and every recompilation these
steps cause) plus the CPU time of the compiler processes they run (``RUSAGE_CHILDREN``), less the
same steps at the compiled steady rate; inductor's ``compile_threads = 1`` keeps its own work in this
thread, and a fresh ``TORCHINDUCTOR_CACHE_DIR`` per run makes each compile cold. Steady speed: the
median of ``--repeats`` interleaved runs (eager, compiled, eager, ...) of whole steps until each has
used its share of ``--train-seconds``, in examples per thread CPU second. Graph breaks and
recompilations are dynamo's own counters over the whole run; an error is reported in one line.

One representative per model family by default (``REPRESENTATIVES``): compiling costs tens of CPU
seconds a model, so the whole registry does not fit one session's budget.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch._inductor.config
from torch.utils.data import DataLoader

from genmodels.core import Batch
from genmodels.data import load_dataset

from fitting import fit, registry_models

#: one model per family folder of src/genmodels (``independent``, the baselines' only model, has no
#: training step to compile)
REPRESENTATIVES = {
    "autoregressive": "made",
    "autoregressive (convolutional)": "pixelcnn",
    "latent": "vae",
    "flows": "glow",
    "diffusion": "edm",
    "gan": "gan",
    "vq": "vqvae",
}


def cpu_seconds_with_children() -> float:
    """This thread's CPU time plus that of every finished child process (the C++ compiler's)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.thread_time() + children.ru_utime + children.ru_stime


def compare(model, dataset, batch_size: int, compile_steps: int, train_seconds: float, repeats: int) -> dict:
    """The figures of one model (module docstring); raises what compiling raises."""
    loader = DataLoader(dataset.train, batch_size=batch_size, shuffle=True, drop_last=True)
    batches = (Batch.of(item) for _ in itertools.count() for item in loader)
    eager, compiled = model, torch.compile(copy.deepcopy(model))

    def run(module, **budget):
        return fit(module, lambda step: next(batches), weight_decay=0.01, **budget)

    torch._dynamo.utils.counters.clear()
    started = cpu_seconds_with_children()
    run(compiled, steps=compile_steps)
    first_steps = cpu_seconds_with_children() - started
    run(eager, steps=1)  # warm-up
    rates: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(repeats):
        for label, module in (("eager", eager), ("compiled", compiled)):
            rates[label].append(run(module, cpu_seconds=train_seconds / repeats).examples_per_second)
    eager_rate, compiled_rate = (statistics.median(rates[label]) for label in ("eager", "compiled"))
    counters = torch._dynamo.utils.counters
    return {
        "compile_cpu_s": round(first_steps - compile_steps * batch_size / compiled_rate, 1),
        "eager_ex_per_s": round(eager_rate, 1),
        "compiled_ex_per_s": round(compiled_rate, 1),
        "speedup": round(compiled_rate / eager_rate, 2),
        "graph_breaks": sum(counters["graph_break"].values()),
        "break_reasons": sorted({reason.splitlines()[0][:100] for reason in counters["graph_break"]})[:3],
        "frames_compiled": counters["stats"]["unique_graphs"],
        "recompiles": sum(counters["recompiles"].values()) if "recompiles" in counters else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--models", default=",".join(REPRESENTATIVES.values()), help="comma-separated names")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--compile-steps", type=int, default=3)
    parser.add_argument("--train-seconds", type=float, default=3.0, help="thread CPU seconds of timed steps, each side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="append each model's figures here as a JSON line")
    args = parser.parse_args()
    torch._inductor.config.compile_threads = 1  # inductor's work in this thread, where thread_time sees it
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="compile_check_")  # cold compiles

    dataset = load_dataset(args.data)
    print(f"{platform.machine()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} thread(s), data {args.data}, batch {args.batch_size}, thread CPU time")
    print()
    print("| model | compile CPU-s | eager ex/s | compiled ex/s | compiled / eager | graph breaks | frames compiled |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, model, refusal in registry_models(dataset, args.models.split(",")):
        if model is None or not model.optimizer_groups():
            figures = {"error": refusal or "no training step (closed form)"}
        else:
            try:
                figures = compare(model, dataset, args.batch_size, args.compile_steps, args.train_seconds, args.repeats)
            except Exception as error:  # noqa: BLE001 - a model that does not compile is a finding
                figures = {"error": f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"}
        if "error" in figures:
            print(f"| {name} | fails: {figures['error']} | | | | | |", flush=True)
        else:
            print(f"| {name} | {figures['compile_cpu_s']:.0f} | {figures['eager_ex_per_s']:,.0f} | "
                  f"{figures['compiled_ex_per_s']:,.0f} | {figures['speedup']:.2f}× | {figures['graph_breaks']} | "
                  f"{figures['frames_compiled']} |", flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps({"model": name, "data": args.data, **figures}) + "\n")
        torch._dynamo.reset()


if __name__ == "__main__":
    main()
