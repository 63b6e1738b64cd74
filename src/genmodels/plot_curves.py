"""Training and validation curves that scale to every model of a bench.

``save_loss_curves`` draws small multiples: one row per model family (autoregressive, latent,
flows, diffusion, ...), the training loss on the left and the validation likelihood on the right
(in one unit: bits/dim where every series has it, nats per example otherwise); figures that are not
likelihoods of the data (a VQ model's code NLL, a reconstruction NLL) get a panel of their own so
units never mix. ``save_bpd_curves`` puts every model's validation bits/dim against training time on
one axis framed on the range the models reach. Each model has one colour in every plot
(:func:`genmodels.plot_style.model_colours`); a panel whose values span 100× or more is
logarithmic; a validation figure computed with cheaper settings than the test figure (a 4-step ODE
estimate, an IWAE bound with fewer samples) is drawn hollow and dashed and the legend says so.
"""

from __future__ import annotations

import csv
import json
import textwrap
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .plot_style import FAMILY_ORDER, apply_scale, family_of, legend_outside, model_colours, new_figure, save_figure

__all__ = [
    "read_metrics", "save_loss_curves", "save_bpd_curves", "loss_curves_figure", "bpd_curves_figure", "Series",
    "validation_series",
]

#: marker per likelihood measure, in order of appearance within a figure
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def read_metrics(path: str | Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """metrics.csv → {(split, metric): [(step, value), ...]} (the last row wins for a repeated step)."""
    series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            series[(row["split"], row["metric"])][int(row["step"])] = float(row["value"])
    return {key: sorted(points.items()) for key, points in series.items()}


def _read_seconds(path: Path) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """metrics.csv → {(split, metric): [(training seconds, value), ...]} sorted by time."""
    series: dict[tuple[str, str], dict[int, tuple[float, float]]] = defaultdict(dict)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            series[(row["split"], row["metric"])][int(row["step"])] = (float(row["seconds"]), float(row["value"]))
    return {key: sorted(points.values()) for key, points in series.items()}


def _run_records(metrics: Path) -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """The validation records of the run that wrote ``metrics`` and, per measure, the likelihood
    options its test figure used: from results.json beside it, else from its newest checkpoint."""
    run = metrics.parent
    results = run / "results.json"
    try:
        if results.is_file():
            data = json.loads(results.read_text())
            if "validation" in data:
                reference = {r["measure"]: _as_text(r.get("options")) for r in data.get("test") or []}
                return data["validation"], reference
        checkpoints = sorted((run / "checkpoints").glob("*/checkpoint.json"))
        if checkpoints:
            meta = json.loads(checkpoints[-1].read_text())
            test_options = _as_text((meta.get("train_config") or {}).get("eval_options"))
            records = meta.get("validation") or []
            return records, {r["measure"]: test_options for r in records}
    except (OSError, ValueError, KeyError):
        pass
    return [], {}


def _as_text(options: dict[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in (options or {}).items()}


@dataclass
class Series:
    """One model's validation curve of one measure, and how it was computed."""

    model: str
    measure: str
    points: list[tuple[float, float]]
    kind: str = ""
    #: the validation-only likelihood options (e.g. {"steps": "4"}) where they differ from the
    #: test figure's: the curve is then a cheaper, biased version of what the test split reports
    reduced: dict[str, str] | None = None



def validation_series(
    label: str, metrics: Path, suffix: str, records: list[dict[str, Any]] | None = None, *, by: str = "step",
) -> tuple[list[Series], list[Series]]:
    """A run's validation curves of metrics ending in ``suffix`` (``_nll`` or ``_bpd``), split into
    likelihoods of the data and other figures (a metric with no likelihood record and no bits/dim
    twin, e.g. ``code_nll``). ``by`` is ``step`` or ``seconds``."""
    found, reference = _run_records(metrics)
    if records is not None:
        found = records
    by_measure = {r["measure"]: r for r in found}
    table = read_metrics(metrics) if by == "step" else _read_seconds(metrics)
    names = {metric for split, metric in table if split == "validation"}
    likelihoods, others = [], []
    for (split, metric), points in table.items():
        if split != "validation" or not metric.endswith(suffix):
            continue
        measure = metric[: -len(suffix)]
        record = by_measure.get(measure)
        options = _as_text(record.get("options")) if record else {}
        test_options = reference.get(measure, {})
        reduced = {k: v for k, v in options.items() if test_options.get(k) != v} or None
        series = Series(label, measure, [(float(s), v) for s, v in points], record.get("kind", "") if record else "", reduced)
        is_likelihood = record is not None or f"{measure}_bpd" in names or suffix == "_bpd"
        (likelihoods if is_likelihood else others).append(series)
    return likelihoods, others


def _draw(ax, series: Series, colour: str, marker: str | None, linestyle: str = "-") -> None:
    xs, ys = zip(*series.points)
    if len(series.points) == 1:  # fitted in closed form: one figure, drawn as a level line
        ax.axhline(ys[0], color=colour, linestyle=":", linewidth=1.2)
        return
    hollow = series.reduced is not None
    ax.plot(xs, ys, color=colour, linestyle="--" if hollow else linestyle, linewidth=1.1, marker=marker, markersize=3.5,
            markerfacecolor="none" if hollow else colour, markeredgecolor=colour)


def _notes(series: list[Series]) -> list[str]:
    """'steps=4: ddpm, edm' for each set of cheaper validation settings: the models validated with it."""
    by_settings: dict[str, list[str]] = defaultdict(list)
    for s in series:
        if s.reduced:
            by_settings[", ".join(f"{k}={v}" for k, v in s.reduced.items())].append(s.model)
    return [f"{settings}: {', '.join(dict.fromkeys(names))}" for settings, names in by_settings.items()]


def _style_legend(models: list[str], colours: dict[str, str], markers: dict[str, str], linestyles: dict[str, str],
                  notes: list[str]):
    """Legend handles: one coloured line per model, one grey marker per likelihood measure and one
    grey line style per loss group where a panel has several, and what hollow and dashed mean."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colours[m], linewidth=2) for m in models]
    labels = list(models)
    if len(markers) > 1:
        for measure, marker in markers.items():
            handles.append(Line2D([], [], color="0.4", marker=marker, linestyle="none", markersize=4))
            labels.append(measure)
    if len(linestyles) > 1:
        for group, style in linestyles.items():
            handles.append(Line2D([], [], color="0.4", linestyle=style))
            labels.append(group if group == "loss" else f"{group} loss")
    if notes:
        handles.append(Line2D([], [], color="0.4", marker="o", markerfacecolor="none", linestyle="--", markersize=4))
        labels.append("\n".join(textwrap.wrap("hollow, dashed: validation with cheaper settings than the test "
                                              "figure (a looser bound or a biased estimate) — " + "; ".join(notes), 40)))
    return handles, labels


def _values(series: list[Series]) -> list[float]:
    return [v for s in series for _, v in s.points]


#: the panels of a row, in order: (key, title, y label)
PANELS = (
    ("train", "training loss", "loss"),
    ("likelihood", "validation NLL", None),
    ("fd", "validation FD (genmodels features)", "FD"),
    ("figures", "validation figures, not likelihoods (nats per example)", "nats per example"),
)
LINESTYLES = ("-", ":", "-.", (0, (5, 1, 1, 1)))


def _training_series(label: str, table: dict[tuple[str, str], list[tuple[int, float]]]) -> list[Series]:
    """The training loss, or each optimizer group's (``generator/loss``, ``discriminator/loss``)."""
    if ("train", "loss") in table:
        return [Series(label, "loss", [(float(s), v) for s, v in table[("train", "loss")]])]
    return [Series(label, metric[: -len("/loss")], [(float(s), v) for s, v in points])
            for (split, metric), points in sorted(table.items()) if split == "train" and metric.endswith("/loss")]


def _panel_series(runs: dict[str, str | Path], records: dict[str, list[dict[str, Any]]]) -> tuple[dict, str]:
    """{panel: {label: [Series]}} and the likelihood panel's unit: bits/dim where every run with a
    likelihood has it (discrete data), nats per example otherwise; one unit per panel, never mixed."""
    panels: dict[str, dict[str, list[Series]]] = {key: {} for key, _, _ in PANELS}
    in_bits: dict[str, list[Series]] = {}
    for label, csv_path in runs.items():
        table = read_metrics(csv_path)
        panels["train"][label] = _training_series(label, table)
        in_bits[label] = validation_series(label, Path(csv_path), "_bpd", records.get(label))[0]
        panels["likelihood"][label], panels["figures"][label] = validation_series(
            label, Path(csv_path), "_nll", records.get(label))
        panels["fd"][label] = [Series(label, metric, [(float(s), v) for s, v in points])
                               for (split, metric), points in table.items() if split == "validation" and metric.startswith("fd")]
    bits = all(in_bits[label] for label in runs if panels["likelihood"][label])
    if bits:
        panels["likelihood"] = in_bits
    return panels, "bits/dim" if bits else "nats per example"


def save_loss_curves(
    runs: dict[str, str | Path], path: str | Path, *, title: str | None = None,
    records: dict[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """Save :func:`loss_curves_figure` of ``runs`` as a PNG at ``path``; return the path."""
    return save_figure(loss_curves_figure(runs, title=title, records=records), path)


def loss_curves_figure(
    runs: dict[str, str | Path], *, title: str | None = None, records: dict[str, list[dict[str, Any]]] | None = None,
):
    """Training loss and validation figures against steps, one row per model family (a figure).

    Columns: the training loss (each optimizer group's where there are several), the validation
    likelihood in one unit, and where any run has them, validation FD and validation figures that
    are not likelihoods of the data (a code NLL, a reconstruction NLL).

    Args:
        runs: a label (a model name, for its family and colour) → its metrics.csv.
        title: the figure's title.
        records: a label → its validation records (results.json's ``validation``), to tell which
            curves are cheaper estimates; by default read from the run folder beside metrics.csv.
    """
    colours = model_colours(runs)
    rows: dict[str, list[str]] = defaultdict(list)
    for label in runs:
        rows[family_of(label)].append(label)
    families = sorted(rows, key=lambda f: (FAMILY_ORDER.index(f) if f in FAMILY_ORDER else len(FAMILY_ORDER), f))
    series, unit = _panel_series(runs, records or {})
    keys = [key for key, _, _ in PANELS if key in ("train", "likelihood") or any(series[key].values())]
    last_step = max((x for panel in series.values() for found in panel.values() for s in found for x, _ in s.points), default=1.0)
    fig, axes = new_figure(3.9 * len(keys) + 2.8, 2.8 * len(families) + (0.5 if title else 0.2),
                           nrows=len(families), ncols=len(keys), squeeze=False)
    for row, family in zip(axes, families):
        labels = rows[family]
        markers: dict[str, str] = {}
        linestyles: dict[str, str] = {}
        for ax, key in zip(row, keys):
            drawn = [s for label in labels for s in series[key][label]]
            for s in drawn:
                if key == "train":
                    _draw(ax, s, colours[s.model], None, linestyles.setdefault(s.measure, LINESTYLES[len(linestyles) % 4]))
                else:
                    marker = markers.setdefault(s.measure, MARKERS[len(markers) % len(MARKERS)]) if key == "likelihood" else "o"
                    _draw(ax, s, colours[s.model], marker)
            if key == "figures":
                for s in drawn:  # several figures may share a model's colour: name each at its end
                    ax.annotate(s.measure, s.points[-1], fontsize=6, color=colours[s.model], ha="right", va="bottom")
            apply_scale(ax, _values(drawn))
            if drawn and all(len(s.points) == 1 for s in drawn):  # level lines only: the other panels' steps
                ax.set_xlim(0, max(1.0, last_step))
            heading, ylabel = next((t, y) for k, t, y in PANELS if k == key)
            ax.set_title(f"{family}: {heading}" + (f" ({unit})" if key == "likelihood" else ""), fontsize=9)
            ax.set_ylabel(ylabel or unit, fontsize=8)
            ax.set_xlabel("step", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if not drawn:
                ax.set_axis_off()  # an empty panel keeps its place in the grid, and says why
                empty = "no training loss\n(fitted in closed form)" if key == "train" else f"{family}: no {heading}"
                ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes, fontsize=8, color="0.5")
        notes = _notes([s for label in labels for s in series["likelihood"][label]])
        handles, texts = _style_legend(labels, colours, markers, linestyles, notes)
        legend_outside(row[-1], handles, texts)
    if title:
        fig.suptitle(title)
    return fig


def _frame(series: list[Series]) -> tuple[float, float, bool] | None:
    """The y range that matters: from the lowest value up to the highest value any model has after
    its first evaluation, but no further than half a bit/dim above twice the spread of the final
    values (the untrained step-0 figures, often 10+ bits/dim, and a slow start would squash the
    rest). Returns (low, high, whether some values lie above)."""
    values = _values(series)
    if not values:
        return None
    later = [v for s in series for _, v in s.points[1:]] or values
    low, last = min(values), max(s.points[-1][1] for s in series)
    high = min(max(later), last + (last - low) + 0.5)
    margin = 0.05 * max(high - low, 0.1)
    return low - margin, high + margin, max(values) > high + margin


def save_bpd_curves(
    runs: dict[str, str | Path], path: str | Path, *, title: str | None = None,
    records: dict[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """Save :func:`bpd_curves_figure` of ``runs`` as a PNG at ``path``; return the path."""
    return save_figure(bpd_curves_figure(runs, title=title, records=records), path)


def bpd_curves_figure(
    runs: dict[str, str | Path], *, title: str | None = None, records: dict[str, list[dict[str, Any]]] | None = None,
):
    """Validation bits/dim against training seconds, one colour per model (one marker per measure):
    what each model reaches for the time it is given. ``runs`` maps a label to a metrics.csv.

    The y axis is framed on the range the models reach (the untrained first evaluations above it are
    cut, and the title says so); the time axis is logarithmic where the runs' times span 100×.
    """
    colours = model_colours(runs)
    series = [s for label, csv_path in runs.items()
              for s in validation_series(label, Path(csv_path), "_bpd", (records or {}).get(label), by="seconds")[0]]
    fig, ax = new_figure(10.5, 5.5)
    measures: dict[str, str] = {}
    for s in series:
        _draw(ax, s, colours[s.model], measures.setdefault(s.measure, MARKERS[len(measures) % len(MARKERS)]))
    frame = _frame(series)
    clipped = False
    if frame is not None:
        low, high, clipped = frame
        ax.set_ylim(low, high)
    times = [t for s in series for t, _ in s.points if t > 0]
    if times and max(times) / min(times) >= 100:
        ax.set_xscale("symlog", linthresh=float(min(times)))  # linear near 0 s, where the first evaluation is
        ax.set_xlim(0, max(times) * 1.3)
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation bits/dim")
    ax.grid(alpha=0.3)
    if not series:
        ax.text(0.5, 0.5, "no validation bits/dim to draw", ha="center", va="center", transform=ax.transAxes, color="0.5")
    models = list(dict.fromkeys(s.model for s in series))
    handles, texts = _style_legend(models, colours, measures, {}, _notes(series))
    legend_outside(ax, handles, texts)
    heading = title or "validation bits/dim against training time"
    ax.set_title(heading + ("\n(the first, untrained evaluations lie above the frame)" if clipped else ""), fontsize=10)
    return fig
