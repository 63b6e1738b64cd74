"""The ``genmodels`` command: list, train, eval, sample, bench.

User mistakes (an unknown name, a missing file, a bad value) print one line and exit with status 2;
no traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import time
import typing
from pathlib import Path
from typing import Any

from . import __version__
from .errors import UserError

__all__ = ["main", "build_parser"]


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


#: Settings whose command-line default differs for ``bench`` (a fixed, comparable budget).
BENCH_DEFAULTS = {"steps": 1000, "lr": 3e-3, "eval_every": 250}


def _flag_type(hint: Any, name: str):
    """An argparse ``type`` reading a value by the field's annotation (None from 'none')."""
    from .core import parse_option

    def parse(text: str) -> Any:
        try:
            return parse_option(text, hint, name)
        except UserError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name  # argparse names the type in its error message
    return parse


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, *, defaults: dict[str, Any] | None = None) -> None:
    """One flag per field of a config dataclass, with its type, default and the docstring's doc.

    The flags' defaults are left out of the parsed namespace (argparse.SUPPRESS), so the caller
    knows which settings were given explicitly (a resumed run keeps its stored ones otherwise).
    """
    from .core import docstring_args, type_name

    defaults = defaults or {}
    docs = docstring_args(config_class.__doc__ or "")
    hints = typing.get_type_hints(config_class)
    budget = parser.add_argument_group("budget (training stops at the first reached)")
    settings = parser.add_argument_group("training settings")
    for f in dataclasses.fields(config_class):
        hint = hints[f.name]
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        doc = docs.get(f.name, "").replace("%", "%%")
        group = budget if f.name in ("steps", "epochs", "minutes") else settings
        common = {"dest": f.name, "default": argparse.SUPPRESS}
        origin = typing.get_origin(hint)
        if origin is dict:
            group.add_argument(flag, action="append", type=_key_value, metavar="KEY=VALUE",
                               help=f"{doc} (repeatable)", **common)
        elif hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{doc} (default: {default})", **common)
        elif origin is typing.Literal:
            choices = typing.get_args(hint)
            group.add_argument(flag, choices=choices, help=f"{doc} (default: {default})", **common)
        else:
            group.add_argument(flag, type=_flag_type(hint, flag), metavar=f.metadata.get("metavar", type_name(hint).upper().replace(" ", "")),
                               help=f"{doc} (default: {default})", **common)


def _explicit(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The config settings given on the command line (dict-typed ones from their KEY=VALUE lists)."""
    out = {}
    for f in dataclasses.fields(config_class):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            out[f.name] = dict(value) if isinstance(value, list) else value
    return out


def _model_help(model: str | None) -> str:
    """The options of one model for ``genmodels train MODEL --help``: name, type, default, doc."""
    from .core import keyword_options, model_class

    if not model:
        return "Run `genmodels train MODEL --help` to see that model's options (set them with --set KEY=VALUE)."
    try:
        cls = model_class(model)
    except UserError as error:
        return str(error)
    lines = [f"options of model '{model}' (--set KEY=VALUE):"]
    rows = cls.Config.describe()
    for name, kind, default, doc in rows:
        lines.append(f"  {name} ({kind}, default {default})")
        if doc:
            lines.extend(textwrap.wrap(doc, 88, initial_indent="      ", subsequent_indent="      "))
    if not rows:
        lines.append("  (none)")
    for what, method, exclude in (("sampling", cls.sample, ("y", "generator")), ("likelihood", cls.log_likelihoods, ())):
        options = keyword_options(method, exclude)
        if options:
            shown = ", ".join(f"{k} (default {v[1]!r})" for k, v in options.items())
            flag = "--sample-option" if what == "sampling" else "--eval-option"
            lines.append(f"{what} options ({flag} KEY=VALUE): {shown}")
    return "\n".join(lines)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    from .training.config import TrainConfig

    parser = argparse.ArgumentParser(
        prog="genmodels",
        description="Train, evaluate and sample deep generative models with honest likelihoods.",
    )
    parser.add_argument("--version", action="version", version=f"genmodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imports = argparse.ArgumentParser(add_help=False)
    imports.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                         help="import a module that registers models (repeatable); only modules you trust")

    sub.add_parser("list", help="list the models and data sets", parents=[imports])

    argv = list(argv or [])
    model = argv[1] if len(argv) > 1 and argv[0] == "train" and not argv[1].startswith("-") else None
    p = sub.add_parser("train", help="train a model on a data set", parents=[imports],
                       epilog=_model_help(model), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="a model name (see `genmodels list`); not needed with --recipe")
    p.add_argument("--recipe", help="run a shipped recipe (model, data, budget, options; see `genmodels list`); "
                                    "flags given here override its settings, and its expected figures are checked")
    p.add_argument("--data", help="a data set name, or a path to images / .npy / .csv (default: digits)")
    p.add_argument("--data-dir", help="folder holding the data set's files (e.g. Fashion-MNIST's IDX files)")
    add_config_flags(p, TrainConfig)
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATA-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint, with its stored settings")
    p.add_argument("--allow-config-change", action="store_true",
                   help="on --resume, accept settings that break bit-exactness (recorded in run.json)")
    p.add_argument("--set", dest="options", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a model config option (repeatable), e.g. --set rank=8; see `genmodels train MODEL --help`")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log and validation lines stay)")
    p.add_argument("--num-processes", type=_processes, default=1, metavar="N",
                   help="data-parallel training in N processes on this machine (one per GPU, else CPU "
                        "processes); --batch-size is per process. Several machines: see README (torchrun)")
    p.set_defaults(argv=list(argv))

    p = sub.add_parser("eval", help="evaluate a checkpoint's likelihood on a split", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--batch-size", type=int, help="default: the run's evaluation batch size (figures do not depend on it)")
    p.add_argument("--examples", type=int, metavar="N",
                   help="only the split's first N examples (a cheaper, noisier figure for slow estimates; "
                        "the report says so). Default: the whole split")
    p.add_argument("--option", dest="options", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a likelihood option of the model (repeatable), e.g. --option k=5000")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.add_argument("--out", metavar="DIR",
                   help="also write eval.json and each example's log-likelihoods (safetensors) into DIR, a new "
                        "folder: `genmodels compare` then pairs two evaluations example by example")
    p.add_argument("--samples", type=int, metavar="N",
                   help="also draw N samples and measure their quality against the split: FD, KID, precision/"
                        "recall, density/coverage and memorization in genmodels' own feature space")
    p.add_argument("--sample-option", dest="sample_options", action="append", type=_key_value, default=[],
                   metavar="KEY=VALUE", help="a sampling option for --samples (repeatable)")

    p = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG grid", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("-n", "--num", type=int, default=64, help="how many samples")
    p.add_argument("--out", default="samples.png", help="PNG to write")
    p.add_argument("--npy", help="also save the samples as a .npy array here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, help="draw from p(x | y=LABEL) (class-conditional models)")
    p.add_argument("--option", dest="options", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a sampling option of the model (repeatable), e.g. --option temperature=0.8")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")

    p = sub.add_parser("classify", help="classify a labelled split by Bayes' rule on a class-conditional model",
                       parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--examples", type=int, metavar="N", help="only the split's first N examples (default: all)")
    p.add_argument("--out", help="also draw the confusion matrix into this PNG")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

    p = sub.add_parser("mixture", parents=[imports],
                       help="the exact mixture Σ_k w_k p_k(x) of trained models, weights fitted on validation")
    p.add_argument("checkpoints", nargs="+", metavar="RUN",
                   help="checkpoint or run folders of models of the same data (shape and levels)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"], help="the split to report")
    p.add_argument("--examples", type=int, metavar="N", help="only the reported split's first N examples (default: all)")
    p.add_argument("--uniform", action="store_true", help="equal weights instead of fitting them on validation")
    p.add_argument("--option", dest="options", action="append", type=_key_value, default=[], metavar="RUN:KEY=VALUE",
                   help="a likelihood option of one member (RUN as given, or its 1-based position), repeatable; "
                        "by default each member is scored with its run's validation options (e.g. marginal=true)")
    p.add_argument("--samples", type=int, metavar="N", help="also draw N samples from the mixture into --out")
    p.add_argument("--out", default="mixture-samples.png", help="PNG for --samples")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

    p = sub.add_parser("audit", help="an autoregressive image model's receptive field of one pixel, by gradients",
                       parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--pixel", default=None, metavar="ROW,COL", help="the audited pixel (default: the centre)")
    p.add_argument("--ordering", type=int, default=0, help="which of the model's orderings (MADE's masks)")
    p.add_argument("--out", help="also draw the receptive field into this PNG")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON")

    p = sub.add_parser("plot-density", help="draw a 2-D model's density beside the data and its samples", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--out", default="density.png", help="PNG to write")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"], help="the data drawn beside it")
    p.add_argument("--points", type=int, default=5000, help="data points and samples drawn")
    p.add_argument("--resolution", type=int, default=200, help="grid cells per axis")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")

    p = sub.add_parser("encode", help="images → code grids (.npy) with a vqvae, vqgan or two-stage model", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("inputs", nargs="*", help=".npy arrays in the data's levels, images, or folders of images")
    p.add_argument("--split", choices=["train", "validation", "test"], help="encode this split of the run's data instead")
    p.add_argument("--out", default="codes.npy", help=".npy file to write: int64 (N, h, w) code grids")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them (--split)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")

    p = sub.add_parser("decode", help="code grids (.npy) → images, with the model that made them", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("codes", help="a .npy of int (N, h, w) code grids, e.g. from genmodels encode")
    p.add_argument("--out", default="decoded.png", help="PNG grid to write")
    p.add_argument("--npy", help="also save the images, in the data's levels, as a .npy here")
    p.add_argument("--overwrite", action="store_true", help="replace --npy if it exists")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")

    p = sub.add_parser("compare", help="the differences between two results.json (runs or benches), flagged beyond their errors",
                       parents=[imports])
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="two results: A (the baseline) and B, each a results.json or eval.json, or a run, bench or "
                        "eval folder holding one; with --vs, the runs of side A (seeds)")
    p.add_argument("--vs", nargs="+", metavar="RESULTS",
                   help="compare across runs: the positional results are side A's runs (e.g. its seeds), these side "
                        "B's; each figure's means are compared by the spread between runs (two or more per side)")
    p.add_argument("--across-models", action="store_true",
                   help="match the figures of two different models on the same data (one model per data set on each "
                        "side): e.g. made against pixelcnn, paired on the same test examples")
    p.add_argument("--sigmas", type=float, default=2.0,
                   help="flag a change larger than this many combined standard errors (default 2)")

    p = sub.add_parser("bench", help="train and evaluate several models on data sets; write one table", parents=[imports])
    p.add_argument("--suite", help="run a suite of shipped recipes (quick, fashion), each with its own budget and "
                                   "expected figures; training flags given here override every recipe's")
    p.add_argument("--models", default="all", help="comma-separated model names, or 'all' (with --suite: a subset of its recipes)")
    p.add_argument("--data", default="digits", help="comma-separated data set names (not with --suite)")
    p.add_argument("--quality-samples", type=int, metavar="N",
                   help="samples drawn per model for FD/KID/precision/recall (genmodels features) on data with a "
                        "feature network; 0 for none (default: the suite's, or 0 without --suite)")
    p.add_argument("--data-dir", help="folder holding the data sets' files")
    add_config_flags(p, TrainConfig, defaults=BENCH_DEFAULTS)
    p.add_argument("--out", help="bench folder (default: runs/bench-TIME)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log and validation lines stay)")
    return parser


def _train_config(args: argparse.Namespace, defaults: dict[str, Any] | None = None):
    from .training.config import TrainConfig

    return TrainConfig.from_json({**(defaults or {}), **_explicit(args, TrainConfig)})


def _device(cpu: bool) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and not cpu else "cpu"


def _kind_summary(cls) -> str:
    """The likelihood kind(s) of a model class, e.g. ``exact`` or ``exact (continuous) / bound (discrete)``."""
    from .core import _PROBE_SPECS

    kinds = {}
    for spec in _PROBE_SPECS:
        if cls.handles_discrete if spec.is_discrete else cls.handles_continuous:
            kinds["discrete" if spec.is_discrete else "continuous"] = cls.kind_for(spec).value
    if len(set(kinds.values())) == 1:
        return next(iter(kinds.values()))
    return " / ".join(f"{kind} ({data})" for data, kind in kinds.items())


def cmd_list(args: argparse.Namespace) -> None:
    from .core import model_class, model_names
    from .data import dataset_descriptions

    print("models:")
    for name in model_names():
        cls = model_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"  {name:<16} likelihood: {_kind_summary(cls):<10} {summary}")
    print("data sets:")
    for name, description in dataset_descriptions().items():
        print(f"  {name:<30} {description}")
    print("  PATH                           a folder of images, a .npy array or a .csv table")
    from .recipes import recipe_names, suites

    print("bench suites (genmodels bench --suite NAME):")
    for suite in suites().values():
        print(f"  {suite.name:<16} {suite.description}")
    print("recipes (genmodels train --recipe NAME):")
    print("  " + textwrap.fill(", ".join(recipe_names()), 96, subsequent_indent="  "))


def _processes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes ≥ 1, got '{text}'")
    return n


def _without_num_processes(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--num-processes":
            skip = True
        elif not arg.startswith("--num-processes="):
            out.append(arg)
    return out


def _launch_processes(n: int, argv: list[str]) -> int:
    """Run ``genmodels`` with ``argv`` in ``n`` processes forming one process group on this machine
    (the environment torchrun gives: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT; Accelerate reads
    it), and return the exit status: the first process's, else the first failing one's.

    The first process reports; the others' output is kept only to show why one of them failed.
    SIGTERM and SIGINT are passed on (each process checkpoints and stops; see training.loop).
    """
    import os
    import signal
    import socket
    import subprocess
    import tempfile

    import genmodels

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--num-processes inside torchrun/accelerate launch: give one or the other")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = str(Path(genmodels.__file__).resolve().parents[1])  # the same genmodels in every process
    path = os.pathsep.join(x for x in (source, os.environ.get("PYTHONPATH")) if x)
    procs, logs = [], []
    for rank in range(n):
        env = {**os.environ, "PYTHONPATH": path, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n)}
        log = None if rank == 0 else tempfile.TemporaryFile()
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-m", "genmodels.cli", *argv], env=env,
                                      stdout=None if rank == 0 else subprocess.DEVNULL, stderr=log))

    def forward(signum, frame):
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        failed_at = None
        while True:
            try:
                now = [proc.poll() for proc in procs]
                if all(c is not None for c in now):
                    break
                if failed_at is None and any(c not in (None, 0) for c in now):
                    failed_at = time.monotonic()
                if failed_at is not None and time.monotonic() - failed_at > 30:
                    for proc in procs:  # the others would wait for the failed one forever
                        if proc.poll() is None:
                            proc.kill()
                time.sleep(0.2)
            except KeyboardInterrupt:  # the processes got the Ctrl-C too: they checkpoint and stop
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
    codes = [proc.returncode for proc in procs]
    code = codes[0] if codes[0] != 0 else next((c for c in codes if c != 0), 0)
    for rank, (c, log) in enumerate(zip(codes, logs)):
        if log is not None:
            if c != 0 and codes[0] == 0:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-20:]
                print(f"genmodels: process {rank} of {n} failed (status {c}):", *tail, sep="\n", file=sys.stderr)
            log.close()
    return code if code >= 0 else 128 - code  # killed by a signal: the shell's 128 + its number


def cmd_train(args: argparse.Namespace) -> None:
    if args.num_processes > 1:
        from .core import model_class

        model_class(args.model)  # mistakes that need no process group are reported once, here
        if not args.resume:
            _train_config(args)
        code = _launch_processes(args.num_processes, _without_num_processes(args.argv))
        if code:
            raise SystemExit(code)
        return
    from .core import model_class
    from .data import load_dataset
    from .evaluate import format_figures, format_records
    from .training import train
    from .training.config import TrainConfig

    recipe = None
    if args.recipe:
        from .recipes import load_recipe

        recipe = load_recipe(args.recipe)
        recipe.check()
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
    if args.resume and not args.out:
        raise UserError("--resume needs --out RUN_FOLDER (the run to continue)")
    if args.resume:
        # The run's stored settings, changed only where the command line says so.
        train_config = _explicit(args, TrainConfig) or None
    elif recipe is not None:
        train_config = recipe.train_config(_explicit(args, TrainConfig))
    else:
        train_config = _train_config(args)
    dataset = load_dataset(args.data, args.data_dir)
    safe_data = Path(args.data).stem if Path(args.data).exists() else args.data
    run_dir = Path(args.out or f"runs/{args.model}-{safe_data}-{time.strftime('%Y%m%d-%H%M%S')}")
    if args.resume and train_config is not None:
        from .training import resumed_config

        train_config, _ = resumed_config(run_dir, train_config, allow_config_change=args.allow_config_change)
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
    from .checkpoint import read_json
    from .recipes import check_expected

    print(f"recipe {recipe.name}: expected test figures")
    for c in check_expected(recipe, read_json(result.files["results"])):
        got = "not reported" if c["got"] is None else f"{c['got']:.5g}"
        print(f"  {c['figure']:<14} {got:>12}   expected {c['expected']:.5g} ± {c['tolerance']:.2g}   "
              f"{'ok' if c['within'] else 'OUTSIDE'}")


def _join_processes() -> bool:
    """Under torchrun / accelerate launch (WORLD_SIZE > 1), join the process group so that
    evaluation is shared (gloo on CPUs); returns whether this is the process that reports."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    import torch
    from accelerate import PartialState

    from .training.loop import leave_process_group_at_exit

    state = PartialState(cpu=not torch.cuda.is_available())
    leave_process_group_at_exit()
    return state.is_main_process


def cmd_eval(args: argparse.Namespace) -> None:
    from .checkpoint import load_model
    from .core import parse_keyword_options
    from .evaluate import evaluate_figures, format_figures, format_records, per_example_likelihoods, record_of

    out = Path(args.out) if args.out else None
    if out is not None and (out.is_file() or (out.is_dir() and any(out.iterdir()))):
        raise UserError(f"--out {out} already holds files; choose a new folder (nothing is overwritten)")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    options = parse_keyword_options(model.log_likelihoods, dict(args.options), what="likelihood", model=model.name)
    dataset = _training_data(ckpt, args.data_dir)
    if dataset.spec != model.spec:
        raise UserError(f"the data found ({dataset.spec}) is not what {ckpt.path} was trained on ({model.spec})")
    batch_size = args.batch_size or ckpt.meta.get("train_config", {}).get("eval_batch_size", 500)
    if batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")
    split, whole = _split_head(dataset, args.split, args.examples)
    main_process = _join_processes()
    per_example = per_example_likelihoods(model, split, batch_size=batch_size, progress=sys.stderr.isatty(), options=options)
    records = [record_of(found, model.spec, options) for found in per_example]
    figures = evaluate_figures(model, split, batch_size=batch_size, progress=sys.stderr.isatty())
    if not main_process:
        return
    from .checkpoint import strict_json, write_json_atomic

    quality = _sample_quality(args, model, dataset)
    report = {"model": ckpt.meta["model"], "data": model.spec.name, "checkpoint": str(ckpt.path), "split": args.split,
              "examples": len(split), "split_size": len(whole),
              "records": [r.to_json() for r in records], "figures": [f.to_json() for f in figures]}
    if quality is not None:
        report["sample_quality"] = [r.to_json() for r in quality]
    if out is not None:
        from .evaluate import save_per_example

        out.mkdir(parents=True, exist_ok=True)
        if per_example:
            report["per_example"] = f"{args.split}_log_likelihoods.safetensors"
            save_per_example(per_example, out / report["per_example"])
        write_json_atomic(out / "eval.json", strict_json(report))
    if args.json:
        print(json.dumps(strict_json(report), indent=2, allow_nan=False))
    else:
        print(f"{ckpt.meta['model']} on {model.spec.name}, {args.split} split ({_part(split, whole)}), {ckpt.path}")
        print(format_records(records))
        if figures:
            print(format_figures(figures))
        if quality is not None:
            from .metrics import format_sample_quality

            print(format_sample_quality(quality))


def _training_data(ckpt, data_dir: str | None = None):
    """The data set a checkpoint was trained on, from where training found it unless ``data_dir``."""
    from .data import load_dataset

    source = ckpt.meta["data"]["source"]
    return load_dataset(source["name"], data_dir or source.get("data_dir"))


def _split_head(dataset, name: str, examples: int | None):
    """(the first ``examples`` of split ``name``, the whole split): ``--examples N`` of eval and classify."""
    if examples is not None and examples < 1:
        raise UserError(f"--examples must be ≥ 1 (or left out for the whole split), got {examples}")
    whole = dataset.split(name)
    return whole.head(examples), whole


def _part(split, whole) -> str:
    return f"first {len(split):,} of {len(whole):,} examples" if len(split) < len(whole) else f"{len(whole):,} examples"


def _sample_quality(args: argparse.Namespace, model, dataset):
    """``eval --samples N``: sample-quality records against the evaluated split, or None."""
    if args.samples is None:
        if args.sample_options:
            raise UserError("--sample-option applies to --samples N; add --samples")
        return None
    if args.samples < 2:
        raise UserError(f"--samples must be ≥ 2, got {args.samples}")
    from .metrics import evaluate_sample_quality, sample_quality_available
    from .training.report import sampling_options

    if not sample_quality_available(dataset.spec.name):
        raise UserError(
            f"no feature network for '{dataset.spec.name}': sample-quality metrics exist for digits and "
            "fashion-mnist (and their binarized forms)"
        )
    options = sampling_options(model, dict(args.sample_options))
    records, _ = evaluate_sample_quality(model, dataset, samples=args.samples, reference=args.split,
                                         batch_size=args.batch_size or 500, sampling_options=options,
                                         progress=sys.stderr.isatty())
    return records


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from .checkpoint import load_model
    from .plotting import save_samples
    from .training.report import draw_samples, sample_title

    if args.num < 1:
        raise UserError(f"-n must be ≥ 1, got {args.num}")
    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    extra = {}
    if args.label is not None:
        if not model.conditional:
            raise UserError(f"model '{model.name}' is not class-conditional; drop --label")
        if not 0 <= args.label < (model.spec.num_classes or 0):
            raise UserError(f"--label must be in 0..{(model.spec.num_classes or 1) - 1}, got {args.label}")
        extra["y"] = torch.full((args.num,), args.label, dtype=torch.int64, device=model.device)
    samples, info = draw_samples(model, args.num, seed=args.seed, options=dict(args.options), **extra)
    seconds = info["seconds"]
    path = save_samples(samples, model.spec, args.out, title=sample_title(ckpt.meta["model"], model.spec.name, ckpt.meta.get("step"), info,
                                                                 label=args.label))
    details = "".join(f", {key} {value}" for key, value in info.items() if key not in ("seconds", "options"))
    print(f"{args.num} samples from {ckpt.path} in {seconds:.2f}s ({args.num / seconds:.1f} samples/s{details}) → {path}")
    if args.npy:
        np.save(args.npy, samples.cpu().numpy())
        print(f"  array → {args.npy}")


def cmd_bench(args: argparse.Namespace) -> None:
    from .bench import run_bench, run_suite
    from .core import model_names
    from .training.config import TrainConfig

    chosen = None if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    out = Path(args.out or f"runs/bench-{args.suite + '-' if args.suite else ''}{time.strftime('%Y%m%d-%H%M%S')}")
    if args.suite:
        if args.data != "digits":
            raise UserError("--data does not apply to --suite: each recipe names its data")
        files = run_suite(args.suite, out, overrides=_explicit(args, TrainConfig), models=chosen, data_dir=args.data_dir,
                          progress=not args.no_progress, quality_samples=args.quality_samples)
    else:
        datasets = [d.strip() for d in args.data.split(",") if d.strip()]
        config = _train_config(args, BENCH_DEFAULTS)
        files = run_bench(chosen or model_names(), datasets, config, out, data_dir=args.data_dir,
                          progress=not args.no_progress, quality_samples=args.quality_samples or 0)
    print("\nwritten:")
    for what, path in files.items():
        print(f"  {what:<12} {path}")


def cmd_classify(args: argparse.Namespace) -> None:
    from .autoregressive.classify import classify
    from .checkpoint import load_model

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    if args.out and not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    dataset = _training_data(ckpt, args.data_dir)
    split, whole = _split_head(dataset, args.split, args.examples)
    result = classify(model, split, batch_size=args.batch_size)
    if args.out:
        from .plotting import save_confusion

        save_confusion(result.confusion, args.out, title=f"{ckpt.meta['model']} on {model.spec.name}, {args.split}: "
                       f"accuracy {result.accuracy:.2%}")
    if args.json:
        print(json.dumps({"checkpoint": str(ckpt.path), "split": args.split, "examples": len(split),
                          "split_size": len(whole), "accuracy": result.accuracy,
                          "label_nll_nats": result.label_nll, "confusion": result.confusion.tolist()}, indent=2))
        return
    print(f"{ckpt.meta['model']} on {model.spec.name}, {args.split} split: generative classification, "
          "argmax_y log p(x|y) + log p(y) (uniform prior)")
    print(f"accuracy {result.accuracy:.4f}   label NLL {result.label_nll:.4f} nats   ({_part(split, whole)})")
    print("confusion (rows: true class, columns: predicted)")
    for i, row in enumerate(result.confusion.tolist()):
        print(f"  {i:>3} " + " ".join(f"{v:>5}" for v in row))


def cmd_mixture(args: argparse.Namespace) -> None:
    import torch

    from .checkpoint import load_model
    from .mixture import Member, MixtureOfModels

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    per_member: dict[str, dict[str, str]] = {}
    for key, value in args.options:
        run, sep, option = key.rpartition(":")
        if not sep:
            raise UserError(f"--option for a mixture is RUN:KEY=VALUE (which member it is for), got '{key}={value}'")
        per_member.setdefault(run, {})[option] = value
    positions = {str(i + 1): path for i, path in enumerate(args.checkpoints)}
    for run in per_member:
        if run not in args.checkpoints and run not in positions:
            raise UserError(f"--option names '{run}', which is not one of the mixture's runs "
                            f"({', '.join(args.checkpoints)}) nor a position 1..{len(args.checkpoints)}")
    members, datasets = [], []
    for position, path in enumerate(args.checkpoints, start=1):
        model, ckpt = load_model(path, use_ema=not args.no_ema, device=_device(args.cpu))
        options = dict(ckpt.meta.get("train_config", {}).get("validation_options", {}))
        options.update(per_member.get(path, {}), **per_member.get(str(position), {}))
        members.append(Member(model, f"{ckpt.meta['model']} ({path})", options))
        datasets.append(_training_data(ckpt))
    mixture = MixtureOfModels(members)
    # The members may have trained on different data (e.g. binary-digits and its jittered variant);
    # what they are compared and mixed on must be the same examples.
    for split in ("validation", args.split):
        reference = datasets[0].split(split).x
        for member, dataset in zip(members[1:], datasets[1:]):
            if not torch.equal(dataset.split(split).x, reference):
                raise UserError(f"{member.name} and {members[0].name} were trained on data whose {split} splits "
                                "differ; a mixture is scored on one set of examples")
    if not args.uniform:
        mixture.fit(datasets[0].validation, batch_size=args.batch_size)
    split, whole = _split_head(datasets[0], args.split, args.examples)
    record, member_records, gains = mixture.evaluate_paired(split, batch_size=args.batch_size)
    if args.samples is not None:
        from .plotting import save_samples

        if args.samples < 1:
            raise UserError(f"--samples must be ≥ 1, got {args.samples}")
        if not args.out.lower().endswith(".png"):
            raise UserError(f"--out must name a .png file, got '{args.out}'")
        samples = mixture.sample(args.samples, generator=torch.Generator().manual_seed(0))
        save_samples(samples, mixture.spec, args.out, title=f"mixture of {len(members)} models")
    weights = mixture.weights.tolist()
    if args.json:
        print(json.dumps({
            "split": args.split, "examples": len(split), "split_size": len(whole),
            "weights_fitted_on": None if args.uniform else "validation", "mixture": record.to_json(),
            "members": [{"name": m.name, "options": {k: str(v) for k, v in m.options.items()}, "weight": w, "record": r.to_json(),
                         "mixture_gain_nats": gain, "mixture_gain_paired_stderr": stderr}
                        for m, w, r, (gain, stderr) in zip(members, weights, member_records, gains)],
        }, indent=2))
        return
    how = "equal weights" if args.uniform else "weights fitted on the validation split (EM)"
    print(f"mixture of {len(members)} models, {args.split} split ({_part(split, whole)}), {how}")
    print("| model | weight | kind | NLL (nats) | bits/dim | mixture's gain, paired (nats) |")
    print("|---|---:|---|---:|---:|---:|")
    for member, weight, r, (gain, stderr) in zip(members, weights, member_records, gains):
        print(f"| {member.name} | {weight:.3f} | {r.kind_label} | {r.nll_nats:.3f} ± {r.stderr_nats:.3f} | {r.bits_per_dim:.4f} | "
              f"{gain:.3f} ± {stderr:.3f} |")
    print(f"| **mixture** | 1 | {record.kind_label} | **{record.nll_nats:.3f}** ± {record.stderr_nats:.3f} | "
          f"{record.bits_per_dim:.4f} | |")
    if args.samples is not None:
        print(f"  {args.samples} samples → {args.out}")


def cmd_audit(args: argparse.Namespace) -> None:
    from .autoregressive.audit import audit_pixel
    from .autoregressive.base import AutoregressiveModel
    from .checkpoint import load_model

    if args.out and not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device="cpu")
    if not isinstance(model, AutoregressiveModel):
        raise UserError(f"the audit is of autoregressive models; '{ckpt.meta['model']}' is not one")
    if args.pixel is None:
        pixel = tuple(side // 2 for side in model.spec.shape[-2:])  # the centre (audit_pixel refuses non-images)
    else:
        try:
            pixel = tuple(int(v) for v in args.pixel.split(","))
        except ValueError:
            pixel = ()
        if len(pixel) != 2:
            raise UserError(f"--pixel must be ROW,COL (two integers), got '{args.pixel}'")
    if not 0 <= args.ordering < model.num_orderings:
        raise UserError(f"--ordering must be in 0..{model.num_orderings - 1}, got {args.ordering}")
    audit = audit_pixel(model, pixel, ordering=args.ordering)
    figures = {"checkpoint": str(ckpt.path), "pixel": list(pixel), "field_pixels": int(audit.field.sum()),
               "earlier_pixels": int(audit.earlier.sum()), "blind_spot_pixels": int(audit.blind.sum()),
               "analytic_field_pixels": None if audit.analytic is None else int(audit.analytic.sum()),
               "matches_analytic": None if audit.analytic is None else bool((audit.analytic == audit.field).all()),
               "causality_violations": audit.violations}
    if args.out:
        from .plotting import save_receptive_field

        variant = f" ({model.config.variant})" if hasattr(model.config, "variant") else ""
        save_receptive_field(audit, args.out, title=f"{ckpt.meta['model']}{variant}, pixel {pixel[0]},{pixel[1]}")
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    analytic = "" if audit.analytic is None else (
        f" (analytic {figures['analytic_field_pixels']}: {'matches' if figures['matches_analytic'] else 'DIFFERS'})")
    print(f"{ckpt.meta['model']}: pixel {pixel[0]},{pixel[1]} depends on {figures['field_pixels']} of its "
          f"{figures['earlier_pixels']} earlier pixels{analytic}; blind spot {figures['blind_spot_pixels']} pixels; "
          f"causality violations {audit.violations}" + (f" → {args.out}" if args.out else ""))


def cmd_plot_density(args: argparse.Namespace) -> None:
    from .checkpoint import load_model
    from .plot_density import plot_density

    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    if args.points < 1 or args.resolution < 2:
        raise UserError("--points must be ≥ 1 and --resolution ≥ 2")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    dataset = _training_data(ckpt, args.data_dir)
    path = plot_density(model, dataset, args.out, split=args.split, points=args.points, resolution=args.resolution)
    print(f"density of {ckpt.meta['model']} on {model.spec.name} → {path}")


def _refuse_overwrite(path: str, overwrite: bool, what: str) -> None:
    if Path(path).exists() and not overwrite:
        raise UserError(f"{path} exists; choose another {what} or add --overwrite to replace it")


def cmd_encode(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from .checkpoint import load_model
    from .codes import check_tokenizer, encode_all, read_inputs

    if not args.out.lower().endswith(".npy"):
        raise UserError(f"--out must name a .npy file, got '{args.out}'")
    _refuse_overwrite(args.out, args.overwrite, "--out")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    check_tokenizer(model)
    if args.split and args.inputs:
        raise UserError("give either inputs or --split, not both")
    if args.split:
        dataset = _training_data(ckpt, args.data_dir)
        from torch.utils.data import DataLoader

        # Through the split's items (int64 levels; a dynamically binarized split draws its bits there).
        x = torch.cat([item["x"] for item in DataLoader(dataset.split(args.split), batch_size=1000)])
        where = f"the {args.split} split of {dataset.spec.name}"
    else:
        x = read_inputs(args.inputs, model)
        where = ", ".join(args.inputs)
    codes = encode_all(model, x, args.batch_size)
    np.save(args.out, codes.numpy())
    used = len(codes.unique())
    print(f"{len(codes)} images of {where} → {tuple(codes.shape)} codes ({used} distinct) → {args.out}")


def cmd_decode(args: argparse.Namespace) -> None:
    import numpy as np

    from .checkpoint import load_model
    from .codes import check_codes, check_tokenizer, decode_all
    from .plotting import save_samples

    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    if args.npy:
        _refuse_overwrite(args.npy, args.overwrite, "--npy")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    check_tokenizer(model)
    if not Path(args.codes).is_file():
        raise UserError(f"{args.codes}: no such file; give a .npy of code grids (genmodels encode writes one)")
    try:
        array = np.load(args.codes, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"{args.codes}: cannot read this .npy ({e})") from None
    images = decode_all(model, check_codes(array, args.codes), args.batch_size)
    path = save_samples(images, model.spec, args.out, title=f"{ckpt.meta['model']} on {model.spec.name} · decoded from {Path(args.codes).name}")
    print(f"{len(images)} code grids → images → {path}")
    if args.npy:
        np.save(args.npy, images.numpy())
        print(f"  array → {args.npy}")


def cmd_compare(args: argparse.Namespace) -> None:
    from .compare import compare_across_runs, compare_results, format_comparison, read_results

    if not args.sigmas > 0:
        raise UserError(f"--sigmas must be > 0, got {args.sigmas}")
    if args.vs:
        if args.across_models:
            raise UserError("--across-models compares two results; with --vs, give runs of one model per side")
        lines = compare_across_runs([read_results(r) for r in args.results], [read_results(r) for r in args.vs],
                                    sigmas=args.sigmas)
        print(format_comparison(lines, " ".join(args.results), " ".join(args.vs), args.sigmas))
        return
    if len(args.results) != 2:
        raise UserError(f"compare takes two results, A and B (got {len(args.results)}); to compare groups of runs "
                        "(seeds), give side A's runs, then --vs and side B's")
    a, b = args.results
    lines = compare_results(read_results(a), read_results(b), sigmas=args.sigmas, across_models=args.across_models)
    print(format_comparison(lines, a, b, args.sigmas))


COMMANDS = {"compare": cmd_compare, "encode": cmd_encode, "decode": cmd_decode, "classify": cmd_classify, "mixture": cmd_mixture, "audit": cmd_audit, "plot-density": cmd_plot_density, "list": cmd_list, "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "bench": cmd_bench}


def _pre_import(argv: list[str]) -> None:
    """Import ``--import MODULE`` modules before the parser is built, so that their models are known
    to ``train MODEL --help`` and to checkpoints that name them."""
    from .core import import_model_module

    for i, arg in enumerate(argv):
        if arg == "--import" and i + 1 < len(argv):
            import_model_module(argv[i + 1])
        elif arg.startswith("--import="):
            import_model_module(arg.split("=", 1)[1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        _pre_import(argv)
        args = build_parser(argv).parse_args(argv)
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"genmodels: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from .training.loop import TrainingInterrupted

        if not isinstance(error, TrainingInterrupted):  # a signal stopped training after a checkpoint
            raise
        print(f"genmodels: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("genmodels: interrupted; checkpoints already written are intact", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
