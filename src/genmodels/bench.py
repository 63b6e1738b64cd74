"""``genmodels bench``: train several models on several data sets at one budget; write one table.

Every model gets the same training config (steps or examples seen, batch size, learning rate, seed);
test figures are those of the checkpoint that was best on validation (../shared/PROTOCOL.md). A model
that refuses a data set (binary-only models, continuous-only flows) is reported as skipped, with its
reason, and the bench goes on. Sampling and likelihood options reach the models that accept them.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import write_json_atomic
from .core import keyword_options, model_class
from .data import load_dataset
from .errors import UserError
from .plotting import save_loss_curves
from .training import TrainConfig, train
from .training.report import results_markdown

__all__ = ["run_bench", "results_markdown", "options_for"]


def options_for(method, options: dict[str, str], exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """The subset of ``options`` that ``method`` (a model's ``sample`` or ``log_likelihoods``) accepts."""
    accepted = keyword_options(method, exclude)
    return {k: v for k, v in options.items() if k in accepted}


def run_bench(
    models: list[str],
    datasets: list[str],
    config: TrainConfig,
    out: str | Path,
    *,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Train every model on every data set into ``out``; return the files written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; choose a new folder for the bench")
    if (out / "results.json").exists():
        raise UserError(f"{out} already holds bench results; choose another --out (nothing is overwritten)")
    classes = {name: model_class(name) for name in models}  # unknown names fail before any training
    for key, options in (("sampling", config.sample_options), ("likelihood", config.eval_options)):
        for option in options:
            methods = [(c.sample, ("y", "generator")) if key == "sampling" else (c.log_likelihoods, ()) for c in classes.values()]
            if not any(option in keyword_options(m, ex) for m, ex in methods):
                raise UserError(f"no model in this bench has the {key} option '{option}'")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    for data_name in datasets:
        dataset = load_dataset(data_name, data_dir)
        curves: dict[str, Path] = {}
        for name, cls in classes.items():
            run_dir = out / data_name / name
            model_config = dataclasses.replace(
                config,
                sample_options=options_for(cls.sample, config.sample_options, ("y", "generator")),
                eval_options=options_for(cls.log_likelihoods, config.eval_options),
            )
            try:
                cls.check_data(dataset.spec)
                print(f"== {name} on {data_name}", flush=True)
                result = train(name, dataset, model_config, run_dir, progress=progress)
            except UserError as reason:
                if run_dir.exists() and any(run_dir.iterdir()):
                    raise  # it failed in training, not by refusing the data: that is an error
                rows.append({"data": data_name, "model": name, "skipped": str(reason)})
                print(f"   skipped: {reason}", flush=True)
                continue
            if "loss_curves" in result.files:
                curves[name] = result.files["metrics"]
            sample_png = out / f"samples-{data_name}-{name}.png"
            shutil.copyfile(result.files["samples"], sample_png)
            files[f"samples {name}"] = sample_png
            rows.append(
                {
                    "data": data_name,
                    "model": name,
                    "likelihood_kind": _kind(result),
                    "test": [r.to_json() for r in result.test],
                    "test_figures": [f.to_json() for f in result.test_figures],
                    "validation": [r.to_json() for r in result.validation],
                    "num_parameters": result.num_parameters,
                    "steps": result.steps,
                    "best_step": result.best_step,
                    "train_seconds": result.train_seconds,
                    "examples_per_second": result.examples_per_second,
                    # Seconds of one draw of num_samples (after the model's first use, but one draw:
                    # a timing, not a benchmark; benchmarks/throughput.py measures properly).
                    "sampling": result.sampling,
                    "train_config": model_config.to_json(),
                    "run_dir": str(run_dir),
                }
            )
        if curves:
            files[f"loss curves {data_name}"] = save_loss_curves(
                curves, out / f"loss_curves-{data_name}.png", title=f"{data_name}"
            )
    files["table"] = out / "results.md"
    files["table"].write_text(results_markdown(rows))
    files["json"] = out / "results.json"
    write_json_atomic(
        files["json"],
        {
            "train_config": config.to_json(),
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
            "versions": {"genmodels": __version__, "torch": torch.__version__},
            "rows": rows,
        },
    )
    print()
    print(files["table"].read_text())
    return files


def _kind(result) -> str:
    """The kind the run's own records state (the headline test record's), or none."""
    return result.test[0].kind if result.test else "none"
