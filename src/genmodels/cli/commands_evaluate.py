"""The commands that read trained checkpoints: ``eval``, ``sample``, ``classify``, ``mixture``, ``compare``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import UserError
from .launcher import join_processes

__all__ = ["cmd_eval", "cmd_sample", "cmd_classify", "cmd_mixture", "cmd_compare", "device_for", "training_data"]


def device_for(cpu: bool) -> str:
    import torch

    return "cuda" if torch.cuda.is_available() and not cpu else "cpu"


def training_data(ckpt, data_dir: str | None = None):
    """The data set a checkpoint was trained on, from where training found it unless ``data_dir``."""
    from ..data import load_source

    return load_source(ckpt.meta["data"]["source"], data_dir)  # with the run's image transform


def _split_head(dataset, name: str, examples: int | None):
    """(the first ``examples`` of split ``name``, the whole split): ``--examples N`` of eval and classify."""
    if examples is not None and examples < 1:
        raise UserError(f"--examples must be ≥ 1 (or left out for the whole split), got {examples}")
    whole = dataset.split(name)
    return whole.head(examples), whole


def _part(split, whole) -> str:
    return f"first {len(split):,} of {len(whole):,} examples" if len(split) < len(whole) else f"{len(whole):,} examples"


def _sample_quality(args: argparse.Namespace, model, dataset):
    """``eval --samples N``: (sample-quality records against the evaluated split, the standard FID
    record where ``--inception-weights``), or (None, None)."""
    if args.samples is None:
        if args.sample_options:
            raise UserError("--sample-option applies to --samples N; add --samples")
        if args.features or args.inception_weights:
            raise UserError("--features and --inception-weights apply to --samples N; add --samples")
        return None, None
    if args.samples < 2:
        raise UserError(f"--samples must be ≥ 2, got {args.samples}")
    from ..core import sampling_options
    from ..metrics import FeatureReference, evaluate_sample_quality
    from ..metrics.fitted import feature_extractor_for

    if args.inception_weights:
        from ..metrics.inception import check_inception_weights

        check_inception_weights(args.inception_weights)
    extractor = feature_extractor_for(dataset.spec.name, tuple(dataset.spec.shape), path=args.features)
    reference = FeatureReference(dataset, args.split, extractor=extractor)
    options = sampling_options(model, dict(args.sample_options))
    records, samples = evaluate_sample_quality(model, dataset, samples=args.samples, reference=reference,
                                               batch_size=args.batch_size or 500, sampling_options=options,
                                               progress=True)
    inception = None
    if args.inception_weights:
        from ..metrics.inception import standard_fid

        inception = standard_fid(samples, reference.x, dataset.spec.levels, args.inception_weights, args.split)
    return records, inception


def cmd_eval(args: argparse.Namespace) -> None:
    from ..checkpoint import load_model
    from ..core import likelihood_options
    from ..evaluate import LONG_PASSES, evaluate_figures, format_figures, format_records, per_example_likelihoods, record_of

    out = Path(args.out) if args.out else None
    if out is not None and (out.is_file() or (out.is_dir() and any(out.iterdir()))):
        raise UserError(f"--out {out} already holds files; choose a new folder (nothing is overwritten)")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=device_for(args.cpu))
    options = likelihood_options(model, dict(args.options))
    dataset = training_data(ckpt, args.data_dir)
    if dataset.spec != model.spec:
        raise UserError(f"the data found ({dataset.spec}) is not what {ckpt.path} was trained on ({model.spec})")
    batch_size = args.batch_size or ckpt.meta.get("train_config", {}).get("eval_batch_size", 500)
    if batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {batch_size}")
    split, whole = _split_head(dataset, args.split, args.examples)
    main_process = join_processes()
    per_example = per_example_likelihoods(model, split, batch_size=batch_size, progress=LONG_PASSES, options=options,
                                          desc=f"{args.split} {ckpt.meta['model']}",
                                          cheaper="--examples N or a cheaper --option")
    records = [record_of(found, model.spec, options, bias=model.estimate_bias(found.measure, options)) for found in per_example]
    figures = evaluate_figures(model, split, batch_size=batch_size, progress=LONG_PASSES, desc=f"{args.split} figures {ckpt.meta['model']}")
    if not main_process:
        return
    from ..checkpoint import strict_json, write_json_atomic

    quality, inception = _sample_quality(args, model, dataset)
    report = {"model": ckpt.meta["model"], "data": model.spec.name, "checkpoint": str(ckpt.path), "split": args.split,
              "examples": len(split), "split_size": len(whole),
              "records": [r.to_json() for r in records], "figures": [f.to_json() for f in figures]}
    if quality is not None:
        report["sample_quality"] = [r.to_json() for r in quality]
    if inception is not None:
        report["inception_fid"] = inception
    if out is not None:
        from ..evaluate import save_per_example

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
            from ..metrics import format_sample_quality

            print(format_sample_quality(quality))
        if inception is not None:
            from ..metrics.inception import format_standard_fid

            print(format_standard_fid(inception))


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from ..checkpoint import load_model
    from ..plotting import save_samples
    from ..plotting import sample_title
    from ..training.report import draw_samples

    if args.num < 1:
        raise UserError(f"-n must be ≥ 1, got {args.num}")
    if not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=device_for(args.cpu))
    extra = {}
    if args.label is not None:
        if not model.conditional:
            raise UserError(f"model '{model.name}' is not class-conditional; drop --label")
        if not 0 <= args.label < (model.spec.num_classes or 0):
            raise UserError(f"--label must be in 0..{(model.spec.num_classes or 1) - 1}, got {args.label}")
        extra["y"] = torch.full((args.num,), args.label, dtype=torch.int64, device=model.device)
    samples, info = draw_samples(model, args.num, seed=args.seed, options=dict(args.options), progress=True, **extra)
    seconds = info["seconds"]
    path = save_samples(samples, model.spec, args.out, title=sample_title(ckpt.meta["model"], model.spec.name, ckpt.meta.get("step"), info,
                                                                 label=args.label), reference=_data_beside(model, ckpt, args.data_dir))
    details = "".join(f", {key} {value}" for key, value in info.items() if key not in ("seconds", "options"))
    print(f"{args.num} samples from {ckpt.path} in {seconds:.2f}s ({args.num / seconds:.1f} samples/s{details}) → {path}")
    if args.npy:
        np.save(args.npy, samples.cpu().numpy())
        print(f"  array → {args.npy}")


def _data_beside(model, ckpt, data_dir: str | None):
    """The data a table's samples are drawn over, as at the end of training (None for images, or
    with a note where the training data cannot be read any more)."""
    import sys

    from ..plot_tabular import reference_examples

    if model.spec.is_image:
        return None
    try:
        return reference_examples(training_data(ckpt, data_dir))
    except UserError as error:
        print(f"note: drawing the samples without the data beside them: {error}", file=sys.stderr)
        return None


def cmd_classify(args: argparse.Namespace) -> None:
    from ..autoregressive.classify import classify
    from ..checkpoint import load_model

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    if args.out and not args.out.lower().endswith(".png"):
        raise UserError(f"--out must name a .png file, got '{args.out}'")
    model, ckpt = load_model(args.checkpoint, use_ema=not args.no_ema, device=device_for(args.cpu))
    dataset = training_data(ckpt, args.data_dir)
    split, whole = _split_head(dataset, args.split, args.examples)
    result = classify(model, split, batch_size=args.batch_size)
    if args.out:
        from ..plotting import save_confusion

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

    from ..checkpoint import load_model
    from ..evaluate import LONG_PASSES
    from ..mixture import Member, MixtureOfModels

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
        model, ckpt = load_model(path, use_ema=not args.no_ema, device=device_for(args.cpu))
        options = dict(ckpt.meta.get("train_config", {}).get("validation_options", {}))
        options.update(per_member.get(path, {}), **per_member.get(str(position), {}))
        members.append(Member(model, f"{ckpt.meta['model']} ({path})", options))
        datasets.append(training_data(ckpt))
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
        mixture.fit(datasets[0].validation, batch_size=args.batch_size, progress=LONG_PASSES)
    split, whole = _split_head(datasets[0], args.split, args.examples)
    record, member_records, gains = mixture.evaluate_paired(split, batch_size=args.batch_size, progress=LONG_PASSES)
    if args.samples is not None:
        from ..plotting import save_samples

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


def cmd_compare(args: argparse.Namespace) -> None:
    from ..compare import compare_across_runs, compare_results, format_comparison, read_results

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
