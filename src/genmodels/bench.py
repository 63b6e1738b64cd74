"""``genmodels bench``: train several models on several data sets at one budget; write one table.

Every model gets the same training config (steps or examples seen, batch size, learning rate, seed);
test figures are those of the checkpoint that was best on validation (../shared/PROTOCOL.md).
"""

from __future__ import annotations

import platform
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .checkpoint import load_model, write_json_atomic
from .core import model_class
from .data import load_dataset
from .errors import UserError
from .evaluate import LikelihoodRecord
from .plotting import save_loss_curves
from .train import TrainConfig, train

__all__ = ["run_bench", "results_markdown"]


def _time_sampling(run_best: Path, n: int, seed: int) -> tuple[float, dict[str, Any]]:
    """Samples per second of one draw of n from the best checkpoint, and what the model reports."""
    model, _ = load_model(run_best, device="cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator(device=model.device).manual_seed(seed)
    started = time.perf_counter()
    _, info = model.sample_with_info(n, generator=generator)
    return n / max(time.perf_counter() - started, 1e-9), info


def results_markdown(rows: list[dict[str, Any]], config: TrainConfig) -> str:
    """A Markdown table of test likelihoods (one line per measure), ready to paste into a paper."""
    budget = ", ".join(
        f"{k}={v}" for k, v in (("steps", config.steps), ("epochs", config.epochs), ("minutes", config.minutes)) if v is not None
    )
    lines = [
        f"Test split; checkpoint best on validation. Budget: {budget}, batch {config.batch_size}, "
        f"lr {config.lr}, seed {config.seed}. NLL of the discrete data in nats/example (± standard error).",
        "",
        "| data | model | measure | kind | test NLL (nats) | test bits/dim | params | steps (best) | train s | train ex/s | samples/s |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if "skipped" in row:
            lines.append(f"| {row['data']} | {row['model']} | — | — | skipped: {row['skipped']} | | | | | | |")
            continue
        records = row["test"] or [None]
        for record in records:
            measure = record["measure"] if record else "—"
            kind = LikelihoodRecord(**record).kind_label if record else "none"
            nll = f"{record['nll_nats']:.3f} ± {record['stderr_nats']:.2f}" if record else "—"
            bpd = f"{record['bits_per_dim']:.4f}" if record else "—"
            lines.append(
                f"| {row['data']} | {row['model']} | {measure} | {kind} | {nll} | {bpd} | {row['num_parameters']:,} | "
                f"{row['steps']} ({row['best_step']}) | {row['train_seconds']:.1f} | {row['examples_per_second']:.0f} | "
                f"{row['samples_per_second']:.1f} |"
            )
    return "\n".join(lines) + "\n"


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
    if (out / "results.json").exists():
        raise UserError(f"{out} already holds bench results; choose another --out (nothing is overwritten)")
    classes = {name: model_class(name) for name in models}  # unknown names fail before any training
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    for data_name in datasets:
        dataset = load_dataset(data_name, data_dir)
        curves: dict[str, Path] = {}
        for name, cls in classes.items():
            try:
                cls.check_data(dataset.spec)
            except UserError as reason:
                rows.append({"data": data_name, "model": name, "skipped": str(reason)})
                continue
            print(f"== {name} on {data_name}", flush=True)
            run_dir = out / data_name / name
            result = train(name, dataset, config, run_dir, progress=progress)
            curves[name] = result.files["metrics"]
            samples_per_second, sampling_info = _time_sampling(result.best_checkpoint, config.num_samples, config.seed)
            sample_png = out / f"samples-{data_name}-{name}.png"
            shutil.copyfile(result.files["samples"], sample_png)
            files[f"samples {name}"] = sample_png
            rows.append(
                {
                    "data": data_name,
                    "model": name,
                    "likelihood_kind": cls.likelihood_kind.value,
                    "test": [r.to_json() for r in result.test],
                    "validation": [r.to_json() for r in result.validation],
                    "num_parameters": result.num_parameters,
                    "steps": result.steps,
                    "best_step": int(result.best_checkpoint.name.split("-")[1]),
                    "train_seconds": result.train_seconds,
                    "examples_per_second": result.examples_per_second,
                    "samples_per_second": samples_per_second,
                    "sampling": sampling_info,
                    "run_dir": str(run_dir),
                }
            )
        if curves:
            files[f"loss curves {data_name}"] = save_loss_curves(
                curves, out / f"loss_curves-{data_name}.png", title=f"{data_name}"
            )
    files["table"] = out / "results.md"
    files["table"].write_text(results_markdown(rows, config))
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
