"""How close each registered model trains, evaluates and samples to the machine's limit: per model,
training examples per thread CPU second, FLOPs per training example, the achieved GFLOP/s and its share
of a one-thread fp32 matmul ceiling measured in the same process; evaluation examples per second of the
headline likelihood at its default options (with its FLOPs per example, and the network evaluations per
second of ODE estimates); samples per second at the default sampling options, as ../shared/PROTOCOL.md
asks.

    cd benchmarks && OMP_NUM_THREADS=1 python flop_utilization.py --data digits
    cd benchmarks && OMP_NUM_THREADS=1 python flop_utilization.py --data fashion-mnist --batch-size 32
    cd benchmarks && OMP_NUM_THREADS=1 python flop_utilization.py --data colour32 --batch-size 32

``--data colour32`` is ``colour32.make_shapes``'s generated 3×32×32 set (``--colour-images`` images,
written once to a ``.npy`` in the temporary folder and read through ``--data PATH``'s own loader).

FLOPs are those ``torch.utils.flop_counter.FlopCounterMode`` counts in one training step of 16 examples (forward and
backward of every optimizer group's loss, as ``fitting.fit`` steps them) or one likelihood call:
matrix products, convolutions and attention, not elementwise work, so the share is the share of the
matmul ceiling that the model's matmul-type work reaches. The ceiling is the median rate of
``--matmul-size``-square fp32 products on one thread, measured before and after the models (both
printed); a model whose share is low spends its time elsewhere (elementwise ops, small kernels,
Python).

Every phase has a CPU budget rather than a count: training, runs of whole steps until each of
``--repeats`` runs has used its share of ``--train-seconds`` (after a warm-up step); evaluation and
sampling, one example (sample) first, then ``--repeats`` calls of as many as fit in the budget's share
(``throughput.budgeted_rate``); the unit count behind each figure is printed beside it ([n]; "×1" where
one unit took the whole budget and was timed once). A phase that uses more than ``--phase-limit`` CPU
seconds (a per-dimension sampler of a 3 072-dimensional image) is stopped and noted so. Time is thread CPU time (``time.thread_time``),
so the figures hold on a machine shared with other work; run with ``OMP_NUM_THREADS=1`` so that torch
computes in this thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import signal
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from genmodels.core import Batch
from genmodels.data import load_dataset

from fitting import fit, registry_models
from throughput import budgeted_rate, time_training


def matmul_ceiling(size: int, repeats: int = 5) -> float:
    """GFLOP/s of ``size``×``size`` fp32 matrix products on this thread: the median of ``repeats``
    rounds of enough products for about a quarter of a CPU second each (2·size³ FLOPs a product)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)  # warm-up
    started, count = time.thread_time(), 0
    while time.thread_time() - started < 0.05:
        torch.mm(a, b)
        count += 1
    per_round = max(1, int(count * 0.25 / 0.05))
    rates = []
    for _ in range(repeats):
        started = time.thread_time()
        for _ in range(per_round):
            torch.mm(a, b)
        rates.append(2 * size**3 * per_round / (time.thread_time() - started) / 1e9)
    return statistics.median(rates)


def training_flops_per_example(model, batch: Batch) -> float:
    """FLOPs of one training step (every group's forward and backward, and its update) per example."""
    with FlopCounterMode(display=False) as counter:
        fit(model, lambda step: batch, steps=1)
    return counter.get_total_flops() / len(batch)


def counted_flops(work) -> float:
    """The FLOPs ``FlopCounterMode`` counts in ``work()``."""
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def evaluation_examples(dataset, most: int) -> torch.Tensor:
    """The first ``most`` test examples, (n, *shape): the examples every evaluation call draws from."""
    return torch.stack([dataset.test[i]["x"] for i in range(min(most, len(dataset.test)))])


def likelihood_call(model, x: torch.Tensor):
    """``work(n)``: the model's likelihood records at its default options on the first n of ``x``, under
    per-example seeds (as evaluation sets them)."""

    @torch.no_grad()
    def work(n: int):
        return model.log_likelihoods(Batch(x[:n], seeds=torch.arange(n)))

    return work


@dataclass
class Row:
    """One model's figures on one data set (None: not measured, or not applicable); ``notes`` says why
    a phase has no figure (a refusal, a closed-form fit, no likelihood, an error)."""

    model: str
    params: int | None = None
    train_per_s: float | None = None
    train_flops: float | None = None
    eval_measure: str | None = None
    eval_per_s: float | None = None
    eval_examples: int | None = None
    eval_flops: float | None = None
    eval_nfe: float | None = None
    eval_repeats: int | None = None
    sample_per_s: float | None = None
    samples: int | None = None
    sample_repeats: int | None = None
    notes: dict[str, str] = field(default_factory=dict)


def measure_training(row: Row, model, dataset, args) -> None:
    """Fill ``row``'s training figures: FLOPs per example and examples per CPU second (module docstring)."""
    if not model.optimizer_groups():
        row.notes["train"] = "closed form"
        return
    # FLOPs per example do not depend on the batch size: count them on a small batch, cheaply
    batch = Batch.of(next(iter(DataLoader(dataset.train, batch_size=min(args.batch_size, 16), shuffle=True))))
    row.train_flops = training_flops_per_example(model, batch)
    budget = {"steps": args.steps} if getattr(args, "steps", None) else {"cpu_seconds": args.train_seconds}
    row.train_per_s = time_training(model, dataset, args.batch_size, repeats=args.repeats, **budget)


def measure_evaluation(row: Row, model, dataset, args) -> None:
    """Fill ``row``'s evaluation figures: the headline record's name, NFE, FLOPs and examples per CPU second."""
    model.eval()
    work = likelihood_call(model, evaluation_examples(dataset, args.eval_examples))
    records = work(1)
    if not records:
        row.notes["eval"] = "no likelihood"
        return
    headline = records[0]
    behind = [f"k={headline.samples}"] * (headline.samples is not None) + [f"NFE={headline.evaluations}"] * (headline.evaluations is not None)
    row.eval_measure = f"{headline.measure} ({', '.join([headline.kind.value, *behind])})"
    row.eval_nfe = None if headline.evaluations is None else float(headline.evaluations)
    row.eval_flops = counted_flops(lambda: work(1))
    rate = budgeted_rate(work, cpu_seconds=args.eval_seconds, repeats=args.repeats, most=args.eval_examples)
    row.eval_per_s, row.eval_examples, row.eval_repeats = rate.per_second, rate.units, rate.repeats


def measure_sampling(row: Row, model, dataset, args) -> None:
    """Fill ``row``'s sampling figure: samples per CPU second at the default options (``dataset`` unused)."""
    model.eval()
    generator = torch.Generator().manual_seed(0)
    rate = budgeted_rate(lambda n: model.sample(n, generator=generator), cpu_seconds=args.sample_seconds,
                         repeats=args.repeats, most=args.samples)
    row.sample_per_s, row.samples, row.sample_repeats = rate.per_second, rate.units, rate.repeats


PHASES = {"train": measure_training, "eval": measure_evaluation, "sample": measure_sampling}


class PhaseLimit(Exception):
    """A phase used more than its CPU-second limit (``--phase-limit``)."""


@contextlib.contextmanager
def cpu_limit(seconds: float | None):
    """Raise :class:`PhaseLimit` inside the block once this process has used ``seconds`` more of user
    CPU time (``ITIMER_VIRTUAL``; one computing thread, so it is this thread's); None: no limit."""
    if not seconds or not hasattr(signal, "ITIMER_VIRTUAL"):
        yield
        return

    def stop(signum, frame):
        raise PhaseLimit(f"stopped after {seconds:g} CPU-s")

    previous = signal.signal(signal.SIGVTALRM, stop)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def measure(name: str, model, dataset, args) -> Row:
    """Every phase in ``args.phases`` for one model, each within ``args.phase_limit`` CPU seconds; an
    error or a phase over its limit is noted, not raised."""
    row = Row(name, model.num_parameters())
    for phase in args.phases:
        try:
            with cpu_limit(getattr(args, "phase_limit", None)):
                PHASES[phase](row, model, dataset, args)
        except PhaseLimit as stopped:  # a first call, a sample or a step, that alone outlasts the limit
            row.notes[phase] = str(stopped)
        except Exception as error:  # noqa: BLE001 - a model that fails a phase is a row, not a crash
            row.notes[phase] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    return row


def markdown_row(row: Row, ceiling: float) -> str:
    """The row of the utilization table (``markdown_header``)."""
    def number(value, form=",.0f"):
        return "" if value is None else format(value, form)

    def rate(value):  # three significant figures, no exponent
        return "" if value is None else f"{value:,.0f}" if value >= 100 else f"{value:.{max(0, 2 - math.floor(math.log10(value)))}f}"

    def share(flops, rate):
        if flops is None or rate is None:
            return "", ""
        achieved = flops * rate / 1e9
        return f"{achieved:.2f}", f"{achieved / ceiling:.0%}"

    train_gflops, train_share = share(row.train_flops, row.train_per_s)
    eval_gflops, eval_share = share(row.eval_flops, row.eval_per_s)
    train = row.notes.get("train") or number(row.train_per_s)
    evaluation = row.notes.get("eval") or (f"{rate(row.eval_per_s)} [{row.eval_examples}{'×1' if row.eval_repeats == 1 else ''}]" if row.eval_per_s else "")
    nfe = "" if row.eval_nfe is None or row.eval_per_s is None else number(row.eval_nfe * row.eval_per_s)
    sampling = row.notes.get("sample") or (
        f"{rate(row.sample_per_s)} [{row.samples}{'×1' if row.sample_repeats == 1 else ''}]" if row.sample_per_s else "")
    cells = [row.model, number(row.params), train, number(row.train_flops and row.train_flops / 1e6, ",.2f"), train_gflops,
             train_share, row.eval_measure or "", evaluation, number(row.eval_flops and row.eval_flops / 1e6, ",.2f"),
             eval_gflops, eval_share, nfe, sampling]
    return "| " + " | ".join(cells) + " |"


def markdown_header() -> str:
    return ("| model | params | train ex/s | MFLOP / train ex. | train GFLOP/s | train share | headline likelihood | "
            "eval ex/s [n] | MFLOP / eval ex. | eval GFLOP/s | eval share | NFE/s | samples/s [n] |\n"
            "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")


def colour_set(images: int) -> str:
    """The path of ``colour32.make_shapes(images)``'s set, written to the temporary folder once."""
    from colour32 import make_shapes

    path = Path(tempfile.gettempdir()) / f"colour32_shapes_{images}.npy"
    if not path.exists():
        np.save(path, make_shapes(images))
    return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="digits", help="a data set name or path, or colour32 (the generated set)")
    parser.add_argument("--models", default="all", help="comma-separated names, or all")
    parser.add_argument("--phases", default="train,eval,sample", help="comma-separated: train, eval, sample")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-seconds", type=float, default=1.5, help="thread CPU seconds of timed training steps")
    parser.add_argument("--steps", type=int, help="time training by this many steps a run instead of --train-seconds")
    parser.add_argument("--eval-seconds", type=float, default=4.5, help="thread CPU seconds of timed likelihood calls")
    parser.add_argument("--sample-seconds", type=float, default=1.5, help="thread CPU seconds of timed sampling calls")
    parser.add_argument("--phase-limit", type=float, default=60.0,
                        help="stop a phase (and note it) after this many CPU seconds: a sampler too slow for one sample")
    parser.add_argument("--eval-examples", type=int, default=256, help="the most test examples in one likelihood call")
    parser.add_argument("--samples", type=int, default=64, help="the most samples in one sampling call")
    parser.add_argument("--init-examples", type=int, default=5000, help="the most training examples initialization reads")
    parser.add_argument("--colour-images", type=int, default=3000)
    parser.add_argument("--matmul-size", type=int, default=512)
    parser.add_argument("--out", type=Path, help="append each model's figures here as a JSON line")
    args = parser.parse_args()
    args.phases = args.phases.split(",")
    if set(args.phases) - set(PHASES):
        parser.error(f"--phases takes {', '.join(PHASES)}; got {', '.join(sorted(set(args.phases) - set(PHASES)))}")

    dataset = load_dataset(colour_set(args.colour_images) if args.data == "colour32" else args.data)
    names = None if args.models == "all" else args.models.split(",")
    ceiling = matmul_ceiling(args.matmul_size)
    print(f"{platform.machine()}, torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} thread(s), data {args.data} {tuple(dataset.spec.shape)}, batch {args.batch_size}, "
          f"medians of {args.repeats} timed runs per phase after a warm-up, thread CPU time")
    print(f"fp32 matmul ceiling ({args.matmul_size}²): {ceiling:.1f} GFLOP/s")
    print()
    print(markdown_header())
    run_started = time.thread_time()
    for name, model, refusal in registry_models(dataset, names, init_examples=args.init_examples):
        if model is None:
            print(f"| {name} | refused: {refusal} |" + " |" * 11, flush=True)
            row = Row(name, notes={"data": refusal})
        else:
            started = time.thread_time()
            row = measure(name, model, dataset, args)
            row.notes["cpu_seconds"] = f"{time.thread_time() - started:.1f}"
            print(markdown_row(row, ceiling), flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(json.dumps({"data": args.data, "ceiling": ceiling, **asdict(row)}) + "\n")
        del model
    print()
    print(f"thread CPU seconds of the whole run, initialization included: {time.thread_time() - run_started:.0f}")
    print(f"fp32 matmul ceiling again, after the models: {matmul_ceiling(args.matmul_size):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
