"""The end of a run, and what ``bench`` shares with it: reload the best checkpoint from disk (as
``genmodels eval`` does), measure the test split once, draw a titled sample grid with the model's
sampling options, draw the loss curves, and write results.json and results.md."""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import load_model, write_json_atomic
from ..core import GenerativeModel, likelihood_options, sampling_options
from ..data.base import Dataset
from ..evaluate import (
    LONG_PASSES, PER_EXAMPLE_FILE, FigureRecord, LikelihoodRecord, evaluate_figures, per_example_likelihoods, record_of, save_per_example,
)
from ..plot_tabular import reference_examples
from ..plotting import describe_sampling, sample_title, save_loss_curves, save_samples
from ..report_page import write_report_page
from ..progress import Phase
from .caveats import warn_if_never_improved
from .config import TrainConfig
from .rundir import RunDir, likelihood_rows
from .state import RunOutcome, TrainState

__all__ = ["TrainResult", "finish_run", "results_record", "draw_samples", "sample_title", "results_markdown", "has_training_curve"]


@dataclass
class TrainResult:
    """What a finished run produced."""

    run_dir: Path
    best_checkpoint: Path
    test: list[LikelihoodRecord]
    validation: list[LikelihoodRecord]
    #: the model's other per-example figures on the test split (reconstruction MSE, code NLL, ...)
    test_figures: list[FigureRecord]
    steps: int
    best_step: int
    train_seconds: float
    examples_per_second: float
    num_parameters: int
    sampling: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    #: the run's results.json record (:func:`results_record`); ``bench`` builds its rows on it
    record: dict[str, Any] = field(default_factory=dict, compare=False)


def draw_samples(
    model: GenerativeModel, n: int, *, seed: int, options: dict[str, str] | None = None, progress: bool = False,
    **extra: Any,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """n samples from ``model`` under ``seed`` with its sampling ``options`` (text, parsed by the
    model's annotations), and what the draw reports: the options, NFE and the like, and seconds.
    ``progress``: a line every few seconds while the draw lasts: the positions drawn and an ETA for a
    model that reports its steps (autoregressive models), else the elapsed time; a draw projected
    past a minute states its cost first."""
    parsed = sampling_options(model, dict(options or {}))
    generator = torch.Generator(device=model.device).manual_seed(seed)
    started = time.perf_counter()
    shown = ", ".join(f"{k}={v}" for k, v in (options or {}).items())
    with Phase(f"sampling {n} from {model.name}" + (f" ({shown})" if shown else ""), unit="samples", enabled=progress,
               counts_steps=True, cheaper="-n N (sample) or --num-samples N (train)"):
        samples, info = model.sample_with_info(n, generator=generator, **parsed, **extra)
    seconds = time.perf_counter() - started
    return samples, {"options": dict(options or {}), **info, "seconds": seconds}


def has_training_curve(metrics: Path) -> bool:
    """Whether metrics.csv holds any training-loss row (a closed-form fit has none)."""
    with open(metrics, newline="") as handle:
        return any(row["split"] == "train" for row in csv.DictReader(handle))


def finish_run(outcome: RunOutcome, dataset: Dataset, config: TrainConfig, *, progress: bool = True) -> TrainResult:
    """Reload the best checkpoint from disk and report on it (the test split is measured here only);
    ``progress`` shows the test evaluation and the sampling (lines, or a bar on a terminal)."""
    acc, state, run_dir, best_dir = outcome.accelerator, outcome.state, outcome.run_dir, outcome.best_checkpoint
    model, ckpt = load_model(best_dir, device=acc.device)
    # Validation was measured when the checkpoint was chosen; test is measured now, from disk,
    # exactly as `genmodels eval` does, with the final report's likelihood options.
    validation = [LikelihoodRecord.from_json(r) for r in ckpt.meta["validation"]]
    eval_options = likelihood_options(model, config.eval_options)
    test_split = dataset.test.head(config.test_examples)
    shows = progress and acc.is_local_main_process
    passes = LONG_PASSES if shows else False
    per_example = per_example_likelihoods(model, test_split, batch_size=config.eval_batch_size, options=eval_options,
                                          progress=passes, desc=f"test {model.name}",
                                          cheaper="--test-examples N or a cheaper --eval-option")
    test = [record_of(found, model.spec, eval_options, bias=model.estimate_bias(found.measure, eval_options))
            for found in per_example]
    test_figures = evaluate_figures(model, test_split, batch_size=config.eval_batch_size, progress=passes,
                                    desc=f"test figures {model.name}")
    run = RunDir(run_dir, is_main=acc.is_main_process)
    test_rows = likelihood_rows(test, "test")
    run.write_metrics(test_rows, state.to_json())
    if config.log_with != "none" and test_rows:
        acc.log({f"{split}/{metric}": value for split, metric, value in test_rows}, step=state.step)
    files: dict[str, Path] = {}
    seconds = state.seconds
    rate = state.examples / seconds if seconds > 0 else 0.0
    sampling: dict[str, Any] = {}
    if acc.is_main_process:
        samples, sampling = draw_samples(model, config.num_samples, seed=config.seed, options=config.sample_options,
                                         progress=shows)
        title = sample_title(model.name, model.spec.name, ckpt.meta["step"], sampling)
        # a table's samples are drawn as histograms over the validation split's examples
        reference = reference_examples(dataset)
        beside = {} if reference is None else {"reference": reference}
        files["samples"] = save_samples(samples, model.spec, run_dir / "samples.png", title=title, **beside)
        if has_training_curve(run.metrics):
            files["loss_curves"] = save_loss_curves({model.name: run.metrics}, run_dir / "loss_curves.png")
        else:
            outcome.say(f"{model.name} was fitted in closed form: no training curve to draw")
        files["metrics"] = run.metrics
        warn_if_never_improved(run.metrics, ckpt.meta["step"], outcome.say)  # best at step 0: say so
    result = TrainResult(
        run_dir=run_dir,
        best_checkpoint=best_dir,
        test=test,
        validation=validation,
        test_figures=test_figures,
        steps=state.step,
        best_step=ckpt.meta["step"],
        train_seconds=seconds,
        examples_per_second=rate,
        num_parameters=model.num_parameters(),
        sampling=sampling,
        files=files,
    )
    result.record = results = results_record(result, model, state, test_examples=len(test_split), test_split_size=len(dataset.test))
    if acc.is_main_process:
        if per_example:
            # each test example's log-likelihood per measure, in the split's order: what lets
            # `genmodels compare` pair two runs' figures example by example
            files["per_example"] = save_per_example(per_example, run_dir / PER_EXAMPLE_FILE)
            results["test_per_example"] = PER_EXAMPLE_FILE
        files["results"] = run_dir / "results.json"
        write_json_atomic(files["results"], results)
        files["table"] = run_dir / "results.md"
        files["table"].write_text(results_markdown([{**results, "train_config": config.to_json()}]))
        write_report_page(files["results"])  # results.html beside results.md: the same, with the pictures
        if config.log_with != "none":
            _log_images(acc, files, ckpt.meta["step"])
    return result


def results_record(
    result: TrainResult, model: GenerativeModel, state: TrainState, *, test_examples: int, test_split_size: int
) -> dict[str, Any]:
    """The results.json record of a finished run (``bench`` adds its own columns to it)."""
    return {
        "model": model.name,
        "data": model.spec.name,
        "likelihood_kind": model.likelihood_kind.value,
        "best_checkpoint": str(result.best_checkpoint),
        "best_step": result.best_step,
        "steps": result.steps,
        "examples_seen": state.examples,
        "train_seconds": result.train_seconds,
        "examples_per_second": result.examples_per_second,
        # The non-finite guard: steps skipped for a NaN/inf loss or gradient, and roll-backs.
        "skipped_steps": state.skipped_steps,
        "rollbacks": state.rollbacks,
        "num_parameters": result.num_parameters,
        "sampling": result.sampling,
        "validation": [r.to_json() for r in result.validation],
        "test": [r.to_json() for r in result.test],
        "test_figures": [f.to_json() for f in result.test_figures],
        # how much of the test split the figures cover (--test-examples; normally all of it)
        "test_examples": test_examples,
        "test_split_size": test_split_size,
    }


def _log_images(acc, files: dict[str, Path], step: int) -> None:
    """The sample grid and loss curves, as images in the tracker."""
    import numpy as np
    from PIL import Image

    images = {name: np.asarray(Image.open(files[name]).convert("RGB")) for name in ("samples", "loss_curves") if name in files}
    for tracker in acc.trackers:
        if hasattr(tracker, "log_images"):
            tracker.log_images(images, step=step, dataformats="HWC")


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of test likelihoods (one line per measure), ready to paste into a paper.

    Each row is a results.json record (plus ``train_config``, or ``skipped``: why a model refused the
    data). NLL is of the discrete data (nats/example, and bits/dim) or, on continuous data, of the
    density (nats/example; bits/dim does not apply). Sampling options and NFE are recorded beside.
    """
    configs = {json.dumps({k: v for k, v in r["train_config"].items() if k in ("steps", "epochs", "minutes", "batch_size", "lr", "seed")},
                          sort_keys=True) for r in rows if "train_config" in r}
    lines = []
    for text in sorted(configs):
        budget = ", ".join(f"{k} {v}" for k, v in json.loads(text).items() if v is not None)
        lines.append(f"Training: {budget}.")
    lines += [
        "Test split; the checkpoint best on validation. NLL in nats per example ± standard error: of the discrete "
        "data where bits/dim is given, of the density on continuous data otherwise.",
        "",
        "| data | model | measure | kind | test NLL (nats) | bits/dim | params | steps (best) | train ex/s | sampling |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['data']} | {row['model']} | — | — | skipped: {row['skipped']} | | | | | |")
            continue
        records = row["test"] or [None]
        sampling_text = describe_sampling(row.get("sampling") or {}) or "defaults"  # as the grid's title says it
        for record in records:
            r = LikelihoodRecord.from_json(record) if record else None
            measure = r.measure if r else "—"
            kind = r.kind_label if r else "none"
            extra = [f"{k}={v}" for k, v in (r.options if r else {}).items()]
            extra = [e for e in extra if e not in kind]  # k=… is already in the kind's label
            if extra:
                kind += " " + ", ".join(extra)
            if r and row.get("test_examples", r.examples) < row.get("test_split_size", r.examples):
                kind += f"; first {row['test_examples']:,} of {row['test_split_size']:,} test examples"
            nll = f"{r.nll_nats:.3f} ± {r.stderr_nats:.2f}" if r else "—"
            bpd = f"{r.bits_per_dim:.4f}" if r and r.bits_per_dim is not None else "—"
            lines.append(
                f"| {row['data']} | {row['model']} | {measure} | {kind} | {nll} | {bpd} | {row['num_parameters']:,} | "
                f"{row['steps']} ({row['best_step']}) | {row['examples_per_second']:.0f} | {sampling_text} |"
            )
    figures = [(row, FigureRecord.from_json(f)) for row in rows for f in row.get("test_figures") or []]
    if figures:
        lines += [
            "",
            "Other test figures (not likelihoods), mean ± standard error per example:",
            "",
            "| data | model | figure | test value | examples |",
            "|---|---|---|---:|---:|",
        ]
        lines += [f"| {row['data']} | {row['model']} | {f.name} | {f.mean:.4f} ± {f.stderr:.2g} | {f.examples} |" for row, f in figures]
    return "\n".join(lines) + "\n"
