"""The other commands: ``list``, ``audit``, ``plot-density``, ``encode`` and ``decode``."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

from ..errors import UserError
from .commands_evaluate import device_for, training_data

__all__ = ["cmd_list", "cmd_audit", "cmd_plot_density", "cmd_encode", "cmd_decode"]


def _kind_summary(cls) -> str:
    """The likelihood kind of a model class: ``exact``, or ``exact/bound`` where it depends on the
    data (continuous / discrete; the listing explains the slash once)."""
    from ..core import _PROBE_SPECS

    kinds = {}
    for spec in _PROBE_SPECS:
        if cls.handles_discrete if spec.is_discrete else cls.handles_continuous:
            kinds["discrete" if spec.is_discrete else "continuous"] = cls.kind_for(spec).value
    if len(set(kinds.values())) == 1:
        return next(iter(kinds.values()))
    return f"{kinds['continuous']}/{kinds['discrete']}"


def _plain(text: str) -> str:
    """A docstring's first line without reStructuredText markup (``code``, :func:`name`)."""
    import re

    return re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text).replace("``", "").replace("`", "")


def _table(rows: list[tuple[str, str]], width: int, name_width: int = 16) -> None:
    """Rows of (name, text): the text wrapped beside the name (below a name too long for the column),
    never breaking a word or a hyphenated name."""
    indent = " " * (name_width + 3)
    for name, text in rows:
        lines = textwrap.wrap(text, max(20, width - len(indent)), break_on_hyphens=False) or [""]
        if len(name) > name_width:
            print(f"  {name}")
        else:
            print(f"  {name:<{name_width}} {lines.pop(0)}")
        for line in lines:
            print(indent + line)


def cmd_list(args: argparse.Namespace) -> None:
    import shutil

    from ..accepts import accepts_of
    from ..core import model_class, model_names
    from ..data import dataset_descriptions
    from ..recipes import recipe_names, suites

    width = min(shutil.get_terminal_size((80, 24)).columns, 100) - 1
    print("models (likelihood; exact/bound: exact on continuous data, bound on discrete):")
    rows = []
    for name in model_names():
        cls = model_class(name)
        summary = _plain((cls.__doc__ or "").strip().splitlines()[0]) if cls.__doc__ else ""
        accepts = accepts_of(cls)
        accepted = f" Accepts: {_plain(accepts.describe())}" if accepts is not None else ""
        rows.append((name, f"{_kind_summary(cls) + ':':<12} {summary}{accepted}"))
    _table(rows, width)
    print("data sets (or a PATH: a folder of images, a .npy array or a .csv table):")
    _table([(name, _plain(description)) for name, description in dataset_descriptions().items()], width, 20)
    print("bench suites (genmodels bench --suite NAME):")
    _table([(suite.name, _plain(suite.description)) for suite in suites().values()], width)
    print("recipes (genmodels train --recipe NAME; or --config FILE.toml of your own):")
    print(textwrap.fill(", ".join(recipe_names()), width, initial_indent="  ", subsequent_indent="  ",
                        break_on_hyphens=False, break_long_words=False))


def cmd_audit(args: argparse.Namespace) -> None:
    from ..autoregressive.audit import audit_pixel
    from ..autoregressive.base import AutoregressiveModel
    from ..checkpoint import load_model

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
        from ..plotting import save_receptive_field

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
    from ..checkpoint import load_model
    from ..plot_density import plot_density

    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    if args.points < 1 or args.resolution < 2:
        raise UserError("--points must be ≥ 1 and --resolution ≥ 2")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=device_for(args.cpu))
    dataset = training_data(ckpt, args.data_dir)
    path = plot_density(model, dataset, args.out, split=args.split, points=args.points, resolution=args.resolution)
    print(f"density of {ckpt.meta['model']} on {model.spec.name} → {path}")


def _refuse_overwrite(path: str, overwrite: bool, what: str) -> None:
    if Path(path).exists() and not overwrite:
        raise UserError(f"{path} exists; choose another {what} or add --overwrite to replace it")


def cmd_encode(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from ..checkpoint import load_model
    from ..codes import check_tokenizer, encode_all, read_inputs

    if not args.out.lower().endswith(".npy"):
        raise UserError(f"--out must name a .npy file, got '{args.out}'")
    _refuse_overwrite(args.out, args.overwrite, "--out")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=device_for(args.cpu))
    check_tokenizer(model)
    if args.split and args.inputs:
        raise UserError("give either inputs or --split, not both")
    if args.split:
        dataset = training_data(ckpt, args.data_dir)
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

    from ..checkpoint import load_model
    from ..codes import check_codes, check_tokenizer, decode_all
    from ..plotting import save_samples

    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    if args.npy:
        _refuse_overwrite(args.npy, args.overwrite, "--npy")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=device_for(args.cpu))
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


def cmd_report(args: argparse.Namespace) -> None:
    """``genmodels report DIR``: rebuild a run's or a bench's results.html and results.md from its
    results.json (and a run's run.json, for the training settings), training and measuring nothing."""
    from ..report_page import read_results, write_report_page

    import sys

    data, folder = read_results(args.folder)
    page = write_report_page(args.folder, args.out)
    print(page)
    try:
        text = _results_markdown(data, folder)
    except (KeyError, TypeError, ValueError) as error:  # a results.json of another version
        print(f"note: results.md left as it was: results.json lacks what it needs ({error!r})", file=sys.stderr)
        return
    table = folder / "results.md"
    table.write_text(text)
    print(table)


def _results_markdown(data: dict, folder: Path) -> str:
    """results.md as the run or bench wrote it, from its results.json."""
    if "rows" in data:
        from ..bench import bench_markdown

        return bench_markdown(data["rows"])
    from ..run_files import read_run_record
    from ..training.report import results_markdown

    run_json = folder / "run.json"
    config = read_run_record(run_json).get("train_config") if run_json.is_file() else None
    return results_markdown([{**data, **({"train_config": config} if isinstance(config, dict) else {})}])
