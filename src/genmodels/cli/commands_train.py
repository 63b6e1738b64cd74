"""The commands that train: ``train`` (a model, or a shipped recipe) and ``bench`` (several models, one table)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from ..errors import UserError
from .launcher import launch_processes, without_num_processes
from .parser import BENCH_DEFAULTS, explicit_settings, train_config_from

__all__ = ["cmd_train", "cmd_bench"]


def _fill_from_run(args: argparse.Namespace) -> None:
    """``train --resume --out RUN``: the model (when not named) and the data (when no --data) come
    from the run, so that the command printed on an interruption works as it is."""
    from ..training.rundir import stored_run

    if not (args.resume and args.out and not args.recipe and not args.config):
        return
    stored = stored_run(Path(args.out))
    if stored is None and args.model:
        return
    if stored is None:
        raise UserError(f"--resume: {args.out} holds no checkpoint and no run.json to restart from; name the model "
                        "and its budget (genmodels train MODEL --steps N … --resume --out RUN)")
    args.model = args.model or stored["model"]
    source = stored["data"]["source"]
    if args.data is None:
        args.data = source["name"]
        if args.data_dir is None:
            args.data_dir = source.get("data_dir")


def _recipe_of(args: argparse.Namespace, overrides: dict):
    """The shipped recipe (``--recipe NAME``) or the user's config file (``--config FILE``, or
    ``--recipe FILE.toml``), checked with the command line's settings on top; None for neither."""
    from ..recipes import load_config_file, load_recipe

    if args.recipe and args.config:
        raise UserError("give --recipe or --config, not both (a config file is a recipe of your own)")
    if not (args.recipe or args.config):
        return None
    recipe = load_config_file(args.config) if args.config else load_recipe(args.recipe)
    if recipe.from_file:  # what the file leaves out, the command line gives
        recipe.model = recipe.model or args.model or ""
        recipe.data = recipe.data or args.data or "digits"
        if not recipe.model:
            raise UserError(f"{recipe.name} names no model; add `model = \"NAME\"` to it, or name one: "
                            "genmodels train MODEL --config FILE")
    recipe.check(overrides)
    return recipe


def cmd_train(args: argparse.Namespace) -> None:
    if args.resume and not args.out:
        raise UserError("--resume needs --out RUN_FOLDER (the run to continue)")
    _fill_from_run(args)
    if args.num_processes > 1 and not args.print_config:
        from ..core import model_class

        if args.model:
            model_class(args.model)  # mistakes that need no process group are reported once, here
        if not (args.resume or args.recipe or args.config):
            train_config_from(args)
        code = launch_processes(args.num_processes, without_num_processes(args.argv))
        if code:
            raise SystemExit(code)
        return
    from ..core import model_class
    from ..data import load_dataset
    from ..data.flags import data_options
    from ..evaluate import format_figures, format_records
    from ..training import train
    from ..training.config import TrainConfig

    recipe = _recipe_of(args, explicit_settings(args, TrainConfig))
    if recipe is not None:
        if args.model and args.model != recipe.model:
            raise UserError(f"recipe '{recipe.name}' trains {recipe.model}, not {args.model}; drop the model name")
        if args.data is not None and args.data != recipe.data:
            raise UserError(f"recipe '{recipe.name}' is on {recipe.data}; drop --data or train without --recipe")
        args.model, args.data = recipe.model, recipe.data
    if not args.model:
        raise UserError("name a model (see `genmodels list`) or a --recipe")
    args.data = "digits" if args.data is None else args.data
    cls = model_class(args.model)  # an unknown name fails before the data is loaded
    # The recipe's TOML values are typed already (lists, numbers, booleans); --set strings are parsed
    # by the config's field types and override them.
    options = {**(recipe.model_config if recipe else {}), **cls.Config.parse_strings(dict(args.options))}
    config = cls.Config.build(**options).to_json() if options else None
    if args.resume:
        if args.print_config:
            raise UserError(f"--print-config shows a new run's settings; the run's own are in {Path(args.out) / 'run.json'}")
        # The run's stored settings, changed only where the command line says so.
        train_config = explicit_settings(args, TrainConfig) or None
    elif recipe is not None:
        train_config = recipe.train_config(explicit_settings(args, TrainConfig))
    else:
        train_config = train_config_from(args)
    if args.print_config:
        from ..recipes import config_toml

        print(config_toml(args.model, args.data, cls.Config.build(**options).to_json(), train_config,
                          description=recipe.description if recipe else "", expected=recipe.expected if recipe else None), end="")
        return
    dataset = load_dataset(args.data, args.data_dir, **data_options(args))
    safe_data = Path(args.data).stem if Path(args.data).exists() else args.data
    run_dir = Path(args.out or f"runs/{args.model}-{safe_data}-{time.strftime('%Y%m%d-%H%M%S')}")
    result = train(
        args.model, dataset, train_config, run_dir, model_config=config, resume=args.resume,
        progress=not args.no_progress, allow_config_change=args.allow_config_change,
    )
    from accelerate import PartialState

    if not PartialState().is_main_process:  # several processes: one report
        return
    print(f"{args.model} on {dataset.spec.name}: test split, best-on-validation checkpoint "
          f"{result.best_checkpoint.name}")
    print(format_records(result.test))
    if result.test_figures:
        print(format_figures(result.test_figures))
    for what, path in result.files.items():
        print(f"  {what:<12} {path}")
    if recipe is not None and recipe.expected:
        _print_expected(recipe, result)


def _print_expected(recipe, result) -> None:
    """Each expected figure of the recipe against the run's (results.json), ok or outside."""
    from ..checkpoint import read_json
    from ..recipes import check_expected

    print(f"recipe {recipe.name}: expected test figures")
    for c in check_expected(recipe, read_json(result.files["results"])):
        got = "not reported" if c["got"] is None else f"{c['got']:.5g}"
        print(f"  {c['figure']:<14} {got:>12}   expected {c['expected']:.5g} ± {c['tolerance']:.2g}   "
              f"{'ok' if c['within'] else 'OUTSIDE'}")


def cmd_bench(args: argparse.Namespace) -> None:
    from ..bench import run_bench, run_suite
    from ..core import model_names
    from ..training.config import TrainConfig

    chosen = None if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    out = Path(args.out or f"runs/bench-{args.suite + '-' if args.suite else ''}{time.strftime('%Y%m%d-%H%M%S')}")
    if args.suite:
        if args.data != "digits":
            raise UserError("--data does not apply to --suite: each recipe names its data")
        files = run_suite(args.suite, out, overrides=explicit_settings(args, TrainConfig), models=chosen, data_dir=args.data_dir,
                          progress=not args.no_progress, quality_samples=args.quality_samples)
    else:
        from ..bench import default_quality_samples

        datasets = [d.strip() for d in args.data.split(",") if d.strip()]
        # --minutes is the bench's total budget: the default step count then does not cut it short
        defaults = {k: v for k, v in BENCH_DEFAULTS.items() if not (k == "steps" and getattr(args, "minutes", None) is not None)}
        config = train_config_from(args, defaults)
        samples = default_quality_samples(datasets, args.features) if args.quality_samples is None else args.quality_samples
        files = run_bench(chosen or model_names(), datasets, config, out, data_dir=args.data_dir,
                          progress=not args.no_progress, quality_samples=samples, features=args.features,
                          inception_weights=args.inception_weights, forced=chosen or ())
    print("\nwritten:")
    for what, path in files.items():
        print(f"  {what:<12} {path}")
