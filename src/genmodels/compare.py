"""``genmodels compare A B``: what changed between two result files, and whether it is beyond noise.

Either file may be a run's results.json (one model), a bench's (many rows) or the eval.json of
``genmodels eval --out`` (one checkpoint on one split); a folder holding one is accepted too.
Figures are matched by (data, model, figure), a split other than test named in the figure: each
likelihood measure's NLL in nats (with its standard error), the models' other test figures (with theirs) and the sample-quality
metrics (KID has a standard error; FD, precision and recall have none, so their changes are shown but
never flagged). A change is flagged when |b − a| > sigmas · se, where se is the standard error of the
difference:

- **paired**, for a likelihood measured on the same examples by both sides (each run saves its
  per-example values, ``test_log_likelihoods.safetensors``, and so does ``eval --out``): se = sd(ℓ_b − ℓ_a)/√n over the examples.
  Both figures share the test sample (and, for estimates, each example's noise), so most of their
  sampling error cancels and the paired error is usually far smaller;
- otherwise √(se_a² + se_b²), as for independent estimates.

``--across-models`` matches two different models' figures on the same data (one model per data set on
each side), e.g. made against pixelcnn on the same test images, paired like two runs of one model.

Either way the error is that of the evaluation (the test sample, an estimate's noise), not of the
training: two seeds of one recipe are often flagged by the paired error (binary-digits-vae's two
seeds differ by 0.07 ± 0.03 nats, BENCHMARKS.md), so a setting is better only if it is so across seeds.
``genmodels compare A1 A2 ... --vs B1 B2 ...`` (:func:`compare_across_runs`) compares groups of runs
by their means, with the standard error from the spread between the runs of each group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .evaluate import mean_and_stderr

__all__ = ["Figure", "read_results", "figures_of", "compare_results", "compare_across_runs", "as_one_model", "format_comparison"]


@dataclass(frozen=True)
class Figure:
    value: float
    stderr: float | None
    lower_is_better: bool | None
    #: per-example log-likelihoods (nats, float64) behind an NLL figure, when the run saved them
    per_example: torch.Tensor | None = field(default=None, compare=False, repr=False)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a results.json (a bench's ``rows``, or a run's single record) or of an ``eval --out``
    eval.json (one row), each with its per-example values where they were saved."""
    from .checkpoint import read_json

    path = Path(path)
    if path.is_dir():
        path = next((path / name for name in ("results.json", "eval.json") if (path / name).is_file()), path / "results.json")
    if not path.is_file():
        raise UserError(f"{path}: no such results file; give a results.json (or eval.json), or the run, bench or "
                        "`eval --out` folder that holds one")
    data = read_json(path)
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a genmodels results file (a JSON object was expected)")
    if "rows" in data:
        return [_with_per_example(r, path.parent) for r in data["rows"] if "skipped" not in r]
    if "model" in data and "test" in data:
        return [_with_per_example(data, path.parent)]
    if {"model", "data", "split", "records"} <= set(data):  # `genmodels eval --out`
        row = {"model": data["model"], "data": data["data"], "split": data["split"], "test": data["records"],
               "test_figures": data.get("figures") or [], "sample_quality": data.get("sample_quality") or []}
        if data.get("per_example"):
            row["test_per_example"] = data["per_example"]
        return [_with_per_example(row, path.parent)]
    raise UserError(f"{path}: not a genmodels results file (no 'rows' of a bench, no 'model' and 'test' of a run, "
                    "no 'records' of an eval)")


def _with_per_example(row: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The row with ``_per_example`` ({measure: (N,) tensor}) when its run saved per-example values:
    a run's folder, or a bench row's run folder (``run_dir`` as written, or the same data/name under
    this bench's folder, should the bench have been moved)."""
    from .evaluate import PER_EXAMPLE_FILE

    candidates = [folder / row.get("test_per_example", PER_EXAMPLE_FILE)]
    if "run_dir" in row:
        run_dir = Path(row["run_dir"])
        candidates = [run_dir / PER_EXAMPLE_FILE, folder.joinpath(*run_dir.parts[-2:]) / PER_EXAMPLE_FILE]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        return row
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        values = load_file(str(found))
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{found}: not a readable safetensors file ({error}); move it away to compare without pairing") from None
    return {**row, "_per_example": values}


_HIGHER_IS_BETTER = {"precision", "recall", "density", "coverage", "psnr"}


def figures_of(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], Figure]:
    """{(data, model, figure name): Figure} of every comparable figure in the rows."""
    out: dict[tuple[str, str, str], Figure] = {}
    for row in rows:
        key = (row["data"], row["model"])
        # figures of another split than test (an `eval --split validation`) say so, and match only their like
        on = "" if row.get("split", "test") == "test" else f", {row['split']}"
        per_example = row.get("_per_example") or {}
        for record in row.get("test") or []:
            values = per_example.get(record["measure"])
            if values is not None and len(values) != record["examples"]:
                values = None  # not the values behind this figure
            out[(*key, f"{record['measure']} NLL (nats{on})")] = Figure(record["nll_nats"], record["stderr_nats"], True, values)
        for figure in row.get("test_figures") or []:
            out[(*key, figure["name"] + on)] = Figure(figure["mean"], figure["stderr"], figure["name"] not in _HIGHER_IS_BETTER)
        for quality in row.get("sample_quality") or []:
            better = None if quality["metric"] == "memorization" else quality["metric"] not in _HIGHER_IS_BETTER
            out[(*key, quality["label"] + on)] = Figure(quality["value"], quality.get("stderr"), better)
    return out


def as_one_model(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of two sides with their models' names joined ("made → pixelcnn"), so that two
    different models' figures on the same data are matched (``compare --across-models``): each side
    must hold one model per data set."""
    models: dict[str, list[str]] = {}
    for side, rows in (("a", a), ("b", b)):
        for data in {r["data"] for r in rows}:
            names = [r["model"] for r in rows if r["data"] == data]
            if len(names) > 1:
                raise UserError(f"--across-models: side {side} holds {len(names)} models on {data} ({', '.join(names)}); "
                                "give one model per data set on each side")
            models.setdefault(data, []).append(names[0])

    def label(row: dict[str, Any]) -> str:
        names = models[row["data"]]
        return " → ".join(names) if len(names) == 2 else row["model"]

    return [{**r, "model": label(r)} for r in a], [{**r, "model": label(r)} for r in b]


def _matched(fa: dict, fb: dict, judge) -> list[dict[str, Any]]:
    """One line per figure key of either side: ``judge(a's, b's)`` where both have it, else where it is."""
    lines = []
    for key in sorted(set(fa) | set(fb)):
        where = {"data": key[0], "model": key[1], "figure": key[2]}
        if key not in fa or key not in fb:
            lines.append({**where, "only_in": "a" if key in fa else "b"})
        else:
            lines.append({**where, **judge(fa[key], fb[key])})
    return lines


def _verdict(a: float, b: float, error: float | None, lower_is_better: bool | None, sigmas: float) -> dict[str, Any]:
    """The change b − a, its standard error, whether it is beyond ``sigmas`` of them, and if so whether
    it is for the better (None where the figure has no direction)."""
    change = b - a
    flagged = error is not None and abs(change) > sigmas * error
    better = (change < 0) == lower_is_better if flagged and lower_is_better is not None else None
    return {"a": a, "b": b, "change": change, "stderr": error, "flagged": flagged, "better": better}


def compare_results(a: list[dict[str, Any]], b: list[dict[str, Any]], *, sigmas: float = 2.0,
                    across_models: bool = False) -> list[dict[str, Any]]:
    """One line per figure present in both: a, b, the change, its standard error (None where a
    figure has none) and whether it is flagged; figures found in only one file are listed as such.
    ``across_models``: match the figures of different models on the same data (:func:`as_one_model`)."""
    if across_models:
        a, b = as_one_model(a, b)

    def judge(x: Figure, y: Figure) -> dict[str, Any]:
        error = math.hypot(x.stderr, y.stderr) if x.stderr is not None and y.stderr is not None else None
        paired = x.per_example is not None and y.per_example is not None and len(x.per_example) == len(y.per_example) > 1
        if paired:
            # NLL_b − NLL_a = mean(ℓ_a − ℓ_b) over the same examples: its standard error is that of the mean
            error = mean_and_stderr((x.per_example - y.per_example).double())[1]
        return {**_verdict(x.value, y.value, error, y.lower_is_better, sigmas), "paired": paired}

    return _matched(figures_of(a), figures_of(b), judge)


def compare_across_runs(a: list[list[dict[str, Any]]], b: list[list[dict[str, Any]]], *,
                        sigmas: float = 2.0) -> list[dict[str, Any]]:
    """Two groups of runs (e.g. seeds of a baseline and of a change): one line per figure, with each
    group's mean over the runs that report it and the standard error of the difference of the means
    from the spread *between runs*, √(s_a²/n_a + s_b²/n_b) (Welch). That spread holds what one run's
    own error leaves out: the training's randomness (initialization, data order, the seed's luck).
    A figure reported by fewer than two runs of a group gets no standard error (never flagged)."""
    if len(a) < 2 or len(b) < 2:
        raise UserError(f"comparing across runs needs at least two runs on each side (got {len(a)} and {len(b)}); "
                        "for one run against one, give two files without --vs")
    values_a: dict[tuple[str, str, str], list[Figure]] = {}
    values_b: dict[tuple[str, str, str], list[Figure]] = {}
    for groups, into in ((a, values_a), (b, values_b)):
        for rows in groups:
            for key, figure in figures_of(rows).items():
                into.setdefault(key, []).append(figure)

    def judge(xs_figures: list[Figure], ys_figures: list[Figure]) -> dict[str, Any]:
        xs = torch.tensor([f.value for f in xs_figures], dtype=torch.float64)
        ys = torch.tensor([f.value for f in ys_figures], dtype=torch.float64)
        error = None
        if len(xs) >= 2 and len(ys) >= 2:
            error = math.sqrt(xs.var().item() / len(xs) + ys.var().item() / len(ys))
        return {**_verdict(xs.mean().item(), ys.mean().item(), error, ys_figures[0].lower_is_better, sigmas),
                "runs_a": len(xs), "runs_b": len(ys)}

    return _matched(values_a, values_b, judge)


def format_comparison(lines: list[dict[str, Any]], a: str | Path, b: str | Path, sigmas: float) -> str:
    """A Markdown table of the comparison, flagged changes marked (with each group's number of runs
    when the lines compare groups of runs)."""
    groups = any("runs_a" in line for line in lines)
    rule = (f"flagged (**): |mean b − mean a| > {sigmas:g} · √(s_a²/n_a + s_b²/n_b), s² the variance between runs "
            "(seeds); figures reported by fewer than two runs of a side are never flagged") if groups else (
            f"flagged (**): |b − a| > {sigmas:g} · se; se is paired (p) over the same test examples where both runs saved "
            "them, else √(se_a² + se_b²); figures without a standard error are never flagged")
    runs = " n_a | n_b |" if groups else ""
    out = [f"a = {a}", f"b = {b}", rule, "",
           f"| data | model | figure | a | b | b − a | ± se |{runs} |", "|---|---|---|---:|---:|---:|---:|" + "---:|" * (2 * groups) + "---|"]
    for line in lines:
        if "only_in" in line:
            out.append(f"| {line['data']} | {line['model']} | {line['figure']} | | | | |{' | |' * groups} only in {line['only_in']} |")
            continue
        se = f"{line['stderr']:.3g}" if line["stderr"] is not None else "—"
        if line.get("paired"):
            se += " p"
        mark = ""
        if line["flagged"]:
            mark = "** " + {True: "better", False: "worse", None: "changed"}[line["better"]]
        counts = f" {line['runs_a']} | {line['runs_b']} |" if groups else ""
        out.append(f"| {line['data']} | {line['model']} | {line['figure']} | {line['a']:.6g} | {line['b']:.6g} | "
                   f"{line['change']:+.4g} | {se} |{counts} {mark} |")
    flagged = sum(1 for line in lines if line.get("flagged"))
    out += ["", f"{flagged} of {sum(1 for line in lines if 'only_in' not in line)} shared figures changed beyond {sigmas:g} standard errors"]
    return "\n".join(out)
