"""``genmodels bench``: train models on data sets, measure them on one protocol, write one leaderboard.

Two ways to say what runs: a suite of shipped recipes (``--suite quick``; each recipe has its own
budget, options and expected test figures, :mod:`genmodels.recipes`), or models × data sets at one
training config (``--models a,b --data d``). Test figures are those of the checkpoint that was best
on validation (../shared/PROTOCOL.md). A model that refuses a data set (binary-only models,
continuous-only flows) is reported as skipped, with its reason, and the bench goes on.

The leaderboard (results.md, results.json): test NLL with its kind and the samples or NFE behind it;
the models' other test figures; sample quality in genmodels' feature space (FD, KID, precision,
recall, ...) where a feature network exists; parameters, training examples/s, samples/s and wall
time; for a suite, each expected figure and whether it held. Pictures: a montage of the sample grids,
the loss curves and validation bits/dim against training time.
"""

from __future__ import annotations

import dataclasses
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import write_json_atomic
from .core import accepted_options, model_class
from .data import load_dataset
from .errors import UserError, option
from .plotting import save_bpd_curves, save_loss_curves, save_montage
from .report_page import write_report_page
from .training import TrainConfig, train
from .training.report import results_markdown

__all__ = ["BenchEntry", "default_quality_samples", "run_bench", "run_entries", "run_suite", "bench_markdown", "results_markdown"]


@dataclass
class BenchEntry:
    """One line of a bench: a model on a data set with its training config (and, from a recipe,
    the recipe's name, model options and expected figures)."""

    model: str
    data: str
    config: TrainConfig
    model_config: dict[str, Any] | None = None
    recipe: Any = None  # genmodels.recipes.Recipe
    extra: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None  # why the bench does not train it (e.g. over the generic parameter budget)


def run_bench(
    models: list[str],
    datasets: list[str],
    config: TrainConfig,
    out: str | Path,
    *,
    data_dir: str | None = None,
    progress: bool = True,
    quality_samples: int = 0,
    features: str | None = None,
    inception_weights: str | None = None,
    forced: tuple[str, ...] | list[str] = (),
) -> dict[str, Path]:
    """Train every model on every data set at one config into ``out``; return the files written.

    With ``config.minutes`` the budget is the bench's total, split equally over the (model, data)
    pairs whose model accepts the data. Each model's config follows the data's size and stays within
    the generic recipe's parameter budget (:mod:`genmodels.recipes.generic`); a model over it even at
    its smallest is skipped with the reason, unless ``forced`` names it. The plan is printed before
    training starts.
    """
    from .recipes.generic import OverBudget, bench_model_config, budget_plan, minutes_each

    classes = {name: model_class(name) for name in models}  # unknown names fail before any training
    for key, options in (("sampling", config.sample_options), ("likelihood", config.eval_options)):
        for given in options:
            if not any(accepted_options(c, {given: ""}, key) for c in classes.values()):
                raise UserError(f"no model in this bench has the {key} option '{given}'")
    if inception_weights:
        from .metrics.inception import check_inception_weights

        check_inception_weights(inception_weights)
    loaded = {name: load_dataset(name, data_dir) for name in datasets}
    refused: dict[str, str] = {}
    model_configs: dict[tuple[str, str], dict | None] = {}
    over_budget: dict[tuple[str, str], str] = {}
    for data_name, dataset in loaded.items():
        for name, cls in classes.items():
            try:
                cls.check_data(dataset.spec)
                model_configs[data_name, name] = bench_model_config(name, cls, dataset.spec)
            except UserError as reason:
                refused[f"{name} on {_data_folder(data_name)}"] = str(reason)
            except OverBudget as over:
                if name not in forced:
                    refused[f"{name} on {_data_folder(data_name)}"] = over_budget[data_name, name] = str(over)
                model_configs[data_name, name] = over.config
    pairs = [(d, m) for d in datasets for m in classes if f"{m} on {_data_folder(d)}" not in refused]
    share = None
    if config.minutes is not None:
        share = minutes_each(config.minutes, len(pairs))
        print(budget_plan(config.minutes, [f"{m} on {_data_folder(d)}" if len(datasets) > 1 else m for d, m in pairs],
                          refused), flush=True)
    entries = []
    for data_name in datasets:
        for name, cls in classes.items():
            entry_config = dataclasses.replace(
                config,
                sample_options=accepted_options(cls, config.sample_options, "sampling"),
                eval_options=accepted_options(cls, config.eval_options, "likelihood"),
                **({"minutes": share} if share is not None else {}),
            )
            entries.append(BenchEntry(name, data_name, entry_config, model_configs.get((data_name, name)),
                                      skip=over_budget.get((data_name, name))))
    header = {"train_config": config.to_json(), **({"minutes_total": config.minutes, "minutes_each": share}
                                                  if share is not None else {})}
    return run_entries(entries, out, data_dir=data_dir, progress=progress, quality_samples=quality_samples,
                       header=header, loaded=loaded, features=features, inception_weights=inception_weights)


def default_quality_samples(datasets: list[str], features: str | None) -> int:
    """``--quality-samples`` left out: 200 on a user's data that has a feature network (fit with
    ``genmodels features fit``, or ``--features``), else 0 (registered data sets: as before, none)."""
    from .data import dataset_names
    from .metrics import sample_quality_available

    users = [d for d in datasets if d not in dataset_names()]
    missing = [d for d in users if features is None and not sample_quality_available(_load_name(d))]
    for data_name in missing:
        print(f"note: no feature network for {data_name}, so no sample quality in this bench; "
              f"`genmodels features fit --data {data_name}` first to rank samples too", flush=True)
    return 200 if users and not missing else 0


def _load_name(data_name: str) -> str:
    """The spec name a user's path gets when loaded (its resolved path), without loading it."""
    return str(Path(data_name).expanduser().resolve())


def _data_folder(data_name: str) -> str:
    """A data set's folder and file name part in a bench: its name, or a user path's last part.

    A path must never be joined as is: ``out / "/home/me/cats"`` is the user's own folder.

    >>> _data_folder("digits"), _data_folder("/home/me/cats/"), _data_folder("faces.npy")
    ('digits', 'cats', 'faces')
    """
    from .data import dataset_names

    if data_name in dataset_names():
        return data_name
    stem = Path(data_name.rstrip("/")).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "data"


def run_suite(
    suite: str,
    out: str | Path,
    *,
    overrides: dict[str, Any] | None = None,
    models: list[str] | None = None,
    data_dir: str | None = None,
    progress: bool = True,
    quality_samples: int | None = None,
) -> dict[str, Path]:
    """Run the recipes of ``suite`` (only those of ``models`` if given), each with its own budget;
    ``overrides`` (flags given on the command line) apply to every recipe's TrainConfig."""
    from .recipes import suite_recipes, suites

    recipes = suite_recipes(suite)
    if models:
        unknown = sorted(set(models) - {r.model for r in recipes})
        if unknown:
            raise UserError(f"suite '{suite}' has no recipe for {', '.join(unknown)}")
        recipes = [r for r in recipes if r.model in models]
    entries = []
    for recipe in recipes:
        recipe.check()
        entries.append(BenchEntry(recipe.model, recipe.data, recipe.train_config(overrides), recipe.model_config or None, recipe))
    samples = suites()[suite].quality_samples if quality_samples is None else quality_samples
    return run_entries(entries, out, data_dir=data_dir, progress=progress, quality_samples=samples,
                       header={"suite": suite, "overrides": dict(overrides or {})})


def run_entries(
    entries: list[BenchEntry],
    out: str | Path,
    *,
    data_dir: str | None = None,
    progress: bool = True,
    quality_samples: int = 0,
    header: dict[str, Any] | None = None,
    loaded: dict[str, Any] | None = None,
    features: str | None = None,
    inception_weights: str | None = None,
) -> dict[str, Path]:
    """Train and measure each entry into ``out/DATA/MODEL``; write the leaderboard and pictures.

    ``loaded``: data sets already loaded, by name; ``features``: the feature network file for sample
    quality (default: the shipped one or the one fit to the data); ``inception_weights``: also the
    standard FID of the same samples (:mod:`genmodels.metrics.inception`).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option('out', out)} is a file; choose a new folder for the bench")
    if (out / "results.json").exists():
        raise UserError(f"{out} already holds bench results; choose another {option('out')} (nothing is overwritten)")
    if quality_samples == 1 or quality_samples < 0:
        raise UserError(f"{option('quality_samples')} must be 0 (none) or ≥ 2, got {quality_samples}")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {}
    datasets: dict[str, Any] = dict(loaded or {})
    curves: dict[str, dict[str, Path]] = {}
    grids: dict[str, dict[str, Path]] = {}
    started = time.perf_counter()
    bar = tqdm(entries, desc="bench", unit="model", disable=not progress, position=0)
    for number, entry in enumerate(bar, 1):
        label = f"{entry.model} on {entry.data}"
        bar.set_postfix_str(label)
        if entry.data not in datasets:
            datasets[entry.data] = load_dataset(entry.data, data_dir)
        dataset = datasets[entry.data]
        folder = _data_folder(entry.data)
        run_dir = out / folder / (entry.recipe.name if entry.recipe is not None else entry.model)
        print(f"== [{number}/{len(entries)}] {label}" + (f" (recipe {entry.recipe.name})" if entry.recipe else ""), flush=True)
        samples = quality_samples
        if entry.recipe is not None and entry.recipe.quality_samples is not None and quality_samples:
            samples = entry.recipe.quality_samples  # the recipe's own (smaller) count, where sampling is slow
        row = _bench_one(entry, dataset, run_dir, progress=progress, quality_samples=samples,
                         measures={"features": features, "inception_weights": inception_weights})
        rows.append(row)
        if "skipped" in row:
            print(f"   skipped: {row['skipped']}", flush=True)
        else:
            # every run, a closed-form fit too: no loss curve, but its validation level is drawn as a line
            curves.setdefault(folder, {})[entry.model] = Path(row["run_dir"]) / "metrics.csv"
            grid = out / f"samples-{folder}-{entry.model}.png"
            shutil.copyfile(Path(row["run_dir"]) / "samples.png", grid)
            files[f"samples {entry.model}"] = grid
            grids.setdefault(folder, {})[entry.model] = grid
            for check in row.get("expected", []):
                if not check["within"]:
                    got = "not reported" if check["got"] is None else f"{check['got']:.5g}"
                    print(f"   outside the expected range: {check['figure']} {got}, expected "
                          f"{check['expected']:.5g} ± {check['tolerance']:.2g}", flush=True)
        _write_json(out, rows, header, time.perf_counter() - started)  # after every model: a crash keeps the rest
    for data_name, runs in curves.items():
        files[f"loss curves {data_name}"] = save_loss_curves(runs, out / f"loss_curves-{data_name}.png", title=data_name)
        files[f"bits/dim vs time {data_name}"] = save_bpd_curves(runs, out / f"bpd_vs_time-{data_name}.png",
                                                                 title=f"{data_name}: validation bits/dim against training time")
    for data_name, pngs in grids.items():
        files[f"montage {data_name}"] = save_montage(pngs, out / f"montage-{data_name}.png", title=f"samples on {data_name}")
    files["table"] = out / "results.md"
    files["table"].write_text(bench_markdown(rows))
    files["json"] = _write_json(out, rows, header, time.perf_counter() - started)
    files["page"] = write_report_page(files["json"])  # results.html: the leaderboard and every picture
    from .bench_table import leaderboard_markdown

    print()
    print(leaderboard_markdown(rows))
    print(f"(every measure, all sample-quality metrics and the costs: {files['table']})")
    outside = [(r, c) for r in rows for c in r.get("expected", []) if not c["within"]]
    if outside:
        print(f"{len(outside)} figure(s) outside their recipe's expected range: "
              + ", ".join(f"{r['recipe']} {c['figure']}" for r, c in outside))
    return files


def _write_json(out: Path, rows: list[dict[str, Any]], header: dict[str, Any] | None, seconds: float) -> Path:
    path = out / "results.json"
    write_json_atomic(
        path,
        {
            **(header or {}),
            "wall_seconds": seconds,
            "machine": {"platform": platform.platform(), "processor": platform.machine(),
                        "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
            "versions": {"genmodels": __version__, "torch": torch.__version__},
            "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows],
        },
    )
    return path


def _bench_one(entry: BenchEntry, dataset, run_dir: Path, *, progress: bool, quality_samples: int,
               measures: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one entry, measure its sample quality; its leaderboard row (or why it was skipped)."""
    cls = model_class(entry.model)
    started = time.perf_counter()
    try:
        if entry.skip:
            raise UserError(entry.skip)
        cls.check_data(dataset.spec)
        result = train(entry.model, dataset, entry.config, run_dir, model_config=entry.model_config, progress=progress)
    except UserError as reason:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise  # it failed in training, not by refusing the data: that is an error
        return {"data": entry.data, "model": entry.model, "skipped": str(reason),
                **({"recipe": entry.recipe.name} if entry.recipe else {})}
    sampling = result.sampling
    row: dict[str, Any] = {
        **result.record,  # the run's results.json record
        "data": entry.data,
        "model": entry.model,
        # the kind of the headline test record (a model without one: none)
        "likelihood_kind": result.test[0].kind if result.test else "none",
        # One draw of num_samples after the model's first use: a timing, not a benchmark
        # (benchmarks/throughput.py measures properly).
        "sampling": sampling,
        "samples_per_second": entry.config.num_samples / sampling["seconds"] if sampling.get("seconds") else None,
        "train_config": entry.config.to_json(),
        "model_config": entry.model_config or {},
        "run_dir": str(run_dir),
    }
    if quality_samples:
        row["sample_quality"], inception = _sample_quality(result, dataset, entry, quality_samples, **(measures or {}))
        if inception is not None:
            row["inception_fid"] = inception
    row["wall_seconds"] = time.perf_counter() - started
    if entry.recipe is not None:
        from .recipes import check_expected

        row["recipe"] = entry.recipe.name
        row["expected"] = check_expected(entry.recipe, row)
    return row


def _sample_quality(result, dataset, entry: BenchEntry, samples: int, *, features: str | None = None,
                    inception_weights: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """FD, KID, precision/recall, ... of ``samples`` samples of the best checkpoint against the test
    split, in the data's feature space (shipped, fit to the data, or ``features``), and the standard
    FID of the same samples where ``inception_weights``; ([], None) where the data have no feature network."""
    from .checkpoint import load_model
    from .core import sampling_options
    from .metrics import FeatureReference, evaluate_sample_quality, sample_quality_available
    from .metrics.fitted import feature_extractor_for

    if features is None and not sample_quality_available(dataset.spec.name):
        return [], None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model, _ = load_model(result.best_checkpoint, device=device)
    options = sampling_options(model, entry.config.sample_options)
    extractor = feature_extractor_for(dataset.spec.name, tuple(dataset.spec.shape), path=features)
    reference = FeatureReference(dataset, "test", extractor=extractor)
    records, drawn = evaluate_sample_quality(model, dataset, samples=samples, reference=reference,
                                             batch_size=entry.config.eval_batch_size, sampling_options=options,
                                             progress=True)
    inception = None
    if inception_weights:
        from .metrics.inception import standard_fid

        inception = standard_fid(drawn, reference.x, dataset.spec.levels, inception_weights, "test")
    return [r.to_json() for r in records], inception


def bench_markdown(rows: list[dict[str, Any]]) -> str:
    """results.md: the leaderboard (:func:`genmodels.bench_table.leaderboard_markdown`), then the
    details behind it: every likelihood measure, the models' other figures, all sample-quality
    metrics, the costs and the recipes' expected figures, as Markdown tables ready to paste into a paper."""
    from .bench_table import leaderboard_markdown

    return leaderboard_markdown(rows) + "\n## Details\n\n" + _details_markdown(rows)


def _details_markdown(rows: list[dict[str, Any]]) -> str:
    text = results_markdown(rows)
    measured = [r for r in rows if "skipped" not in r]
    if any(r.get("sample_quality") for r in measured):
        lines = ["", "Sample quality: samples of the best checkpoint against the test split, in genmodels' own feature "
                 "space (not Inception; FD and KID lower is better, precision and recall higher; FD is biased upwards "
                 "with fewer samples, so compare rows with the same count).", "",
                 "| data | model | samples | FD (genmodels features) | KID (genmodels features) | precision | recall |",
                 "|---|---|---:|---:|---:|---:|---:|"]
        for r in measured:
            q = {x["metric"]: x for x in r.get("sample_quality") or []}
            if not q:
                continue

            def shown(metric: str) -> str:
                if metric not in q:
                    return "—"
                err = f" ± {q[metric]['stderr']:.2g}" if q[metric].get("stderr") is not None else ""
                return f"{q[metric]['value']:.4g}{err}"

            count = next(iter(q.values()))["samples"]
            lines.append(f"| {r['data']} | {r['model']} | {count} | {shown('fd')} | {shown('kid')} | {shown('precision')} | "
                         f"{shown('recall')} |")
        text += "\n".join(lines) + "\n"
    lines = ["", "Cost (one process; seconds of this machine, see results.json's machine):", "",
             "| data | model | recipe | params | train s | train ex/s | samples/s | wall s |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in measured:
        rate = f"{r['samples_per_second']:.1f}" if r.get("samples_per_second") else "—"
        lines.append(f"| {r['data']} | {r['model']} | {r.get('recipe') or '—'} | {r['num_parameters']:,} | {r['train_seconds']:.1f} | "
                     f"{r['examples_per_second']:.0f} | {rate} | {r.get('wall_seconds', 0):.1f} |")
    text += "\n".join(lines) + "\n"
    checks = [(r, c) for r in measured for c in r.get("expected", [])]
    if checks:
        lines = ["", "Recipes' expected test figures:", "", "| recipe | figure | expected | got | |", "|---|---|---:|---:|---|"]
        for r, c in checks:
            got = "not reported" if c["got"] is None else f"{c['got']:.5g}"
            lines.append(f"| {r['recipe']} | {c['figure']} | {c['expected']:.5g} ± {c['tolerance']:.2g} | {got} | "
                         f"{'ok' if c['within'] else '**outside**'} |")
        text += "\n".join(lines) + "\n"
    return text
