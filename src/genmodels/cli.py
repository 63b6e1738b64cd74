"""The ``genmodels`` command: list, train, eval, sample, bench.

User mistakes (an unknown name, a missing file, a bad value) print one line and exit with status 2;
no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__
from .errors import UserError

__all__ = ["main", "build_parser"]


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _add_budget(parser: argparse.ArgumentParser, *, steps: int | None = None) -> None:
    group = parser.add_argument_group("budget (training stops at the first reached)")
    group.add_argument("--steps", type=int, default=steps, help="optimizer steps")
    group.add_argument("--epochs", type=float, help="passes over the training split")
    group.add_argument("--minutes", type=float, help="minutes of training time")


def _add_training(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="folder holding the data set's files (e.g. Fashion-MNIST's IDX files)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (0: none)")
    parser.add_argument("--ema", type=float, default=None, metavar="DECAY", help="keep an EMA of the weights")
    parser.add_argument("--eval-every", type=int, default=500, help="steps between evaluations/checkpoints")
    parser.add_argument("--eval-batch-size", type=int, default=500, help="examples per evaluation batch")
    parser.add_argument("--keep-checkpoints", type=int, default=2, help="latest checkpoints kept besides the best")
    parser.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genmodels",
        description="Train, evaluate and sample deep generative models with honest likelihoods.",
    )
    parser.add_argument("--version", action="version", version=f"genmodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the models and data sets")

    p = sub.add_parser("train", help="train a model on a data set")
    p.add_argument("model", help="a model name (see `genmodels list`)")
    p.add_argument("--data", default="digits", help="a data set name, or a path to images / .npy / .csv")
    _add_budget(p)
    _add_training(p)
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATA-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--set", dest="options", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a model config option (repeatable), e.g. --set rank=8")

    p = sub.add_parser("eval", help="evaluate a checkpoint's likelihood on a split")
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--batch-size", type=int, help="default: the run's evaluation batch size")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the records as JSON")

    p = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG grid")
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

    p = sub.add_parser("bench", help="train and evaluate several models on data sets; write one table")
    p.add_argument("--models", default="all", help="comma-separated model names, or 'all'")
    p.add_argument("--data", default="digits", help="comma-separated data set names")
    _add_budget(p, steps=3000)
    _add_training(p)
    p.set_defaults(lr=3e-3, eval_every=250)
    p.add_argument("--out", help="bench folder (default: runs/bench-TIME)")
    return parser


def _train_config(args: argparse.Namespace):
    from .train import TrainConfig

    return TrainConfig(
        steps=args.steps,
        epochs=args.epochs,
        minutes=args.minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip or None,
        ema_decay=args.ema,
        eval_every=args.eval_every,
        eval_batch_size=args.eval_batch_size,
        keep_checkpoints=args.keep_checkpoints,
        num_workers=args.num_workers,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
    )


def _device(cpu: bool) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and not cpu else "cpu"


def cmd_list(args: argparse.Namespace) -> None:
    from .core import model_class, model_names
    from .data import dataset_descriptions

    print("models:")
    for name in model_names():
        cls = model_class(name)
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        print(f"  {name:<14} likelihood: {cls.likelihood_kind.value:<9} {summary}")
    print("data sets:")
    for name, description in dataset_descriptions().items():
        print(f"  {name:<30} {description}")
    print("  PATH                           a folder of images, a .npy array or a .csv table")


def cmd_train(args: argparse.Namespace) -> None:
    from .core import model_class
    from .data import load_dataset
    from .evaluate import format_records
    from .train import train

    cls = model_class(args.model)  # an unknown name fails before the data is loaded
    options = dict(args.options)
    config = cls.Config.from_strings(options).to_json() if options else None
    if args.resume and not args.out:
        raise UserError("--resume needs --out RUN_FOLDER (the run to continue)")
    dataset = load_dataset(args.data, args.data_dir)
    safe_data = Path(args.data).stem if Path(args.data).exists() else args.data
    run_dir = Path(args.out or f"runs/{args.model}-{safe_data}-{time.strftime('%Y%m%d-%H%M%S')}")
    result = train(
        args.model, dataset, _train_config(args), run_dir, model_config=config, resume=args.resume,
        progress=not args.no_progress,
    )
    from accelerate import PartialState

    if not PartialState().is_main_process:  # several processes: one report
        return
    print(f"{args.model} on {dataset.spec.name}: test split, best-on-validation checkpoint "
          f"{result.best_checkpoint.name}")
    print(format_records(result.test))
    for what, path in result.files.items():
        print(f"  {what:<12} {path}")


def cmd_eval(args: argparse.Namespace) -> None:
    from .checkpoint import load_model
    from .data import load_dataset
    from .evaluate import evaluate_likelihood, format_records

    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    source = ckpt.meta["data"]["source"]
    dataset = load_dataset(source["name"], args.data_dir or source.get("data_dir"))
    if dataset.spec != model.spec:
        raise UserError(f"the data found ({dataset.spec}) is not what {ckpt.path} was trained on ({model.spec})")
    batch_size = args.batch_size or ckpt.meta.get("train_config", {}).get("eval_batch_size", 500)
    records = evaluate_likelihood(model, dataset.split(args.split), batch_size=batch_size, progress=True)
    if args.json:
        print(json.dumps({"checkpoint": str(ckpt.path), "split": args.split, "records": [r.to_json() for r in records]}, indent=2))
    else:
        print(f"{ckpt.meta['model']} on {model.spec.name}, {args.split} split, {ckpt.path}")
        print(format_records(records))


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from .checkpoint import load_model
    from .plotting import save_samples

    if args.num < 1:
        raise UserError(f"-n must be ≥ 1, got {args.num}")
    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=_device(args.cpu))
    options = _sampling_options(model, dict(args.options))
    if args.label is not None:
        if not model.conditional:
            raise UserError(f"model '{model.name}' is not class-conditional; drop --label")
        if not 0 <= args.label < (model.spec.num_classes or 0):
            raise UserError(f"--label must be in 0..{(model.spec.num_classes or 1) - 1}, got {args.label}")
        options["y"] = torch.full((args.num,), args.label, dtype=torch.int64, device=model.device)
    generator = torch.Generator(device=model.device).manual_seed(args.seed)
    started = time.perf_counter()
    samples, info = model.sample_with_info(args.num, generator=generator, **options)
    seconds = time.perf_counter() - started
    path = save_samples(samples, model.spec, args.out, title=ckpt.meta["model"])
    details = "".join(f", {key} {value}" for key, value in info.items())
    print(f"{args.num} samples from {ckpt.path} in {seconds:.2f}s ({args.num / seconds:.1f} samples/s{details}) → {path}")
    if args.npy:
        np.save(args.npy, samples.cpu().numpy())
        print(f"  array → {args.npy}")


def _sampling_options(model, options: dict[str, str]) -> dict:
    """Check ``--option`` names against the model's ``sample`` keywords and parse each value by its
    annotation (as config options are parsed; an unannotated keyword gets the text)."""
    import inspect
    import typing

    from .core import parse_option

    hints = typing.get_type_hints(model.sample)
    accepted = [
        name for name, p in inspect.signature(model.sample).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("y", "generator")
    ]
    for key in options:
        if key not in accepted:
            raise UserError(
                f"model '{model.name}' has no sampling option '{key}'; its options: {', '.join(accepted) or '(none)'}"
            )
    return {key: parse_option(value, hints.get(key, str), key) for key, value in options.items()}


def cmd_bench(args: argparse.Namespace) -> None:
    from .bench import run_bench
    from .core import model_names

    models = model_names() if args.models == "all" else [m.strip() for m in args.models.split(",") if m.strip()]
    datasets = [d.strip() for d in args.data.split(",") if d.strip()]
    out = Path(args.out or f"runs/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    files = run_bench(models, datasets, _train_config(args), out, data_dir=args.data_dir, progress=not args.no_progress)
    print("\nwritten:")
    for what, path in files.items():
        print(f"  {what:<12} {path}")


COMMANDS = {"list": cmd_list, "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"genmodels: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genmodels: interrupted; checkpoints already written are intact", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
