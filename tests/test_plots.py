"""Pictures that scale to every model of a bench: legends never cut, one colour per model across
plots, log axes where values span orders of magnitude, cheaper validation estimates labelled,
tabular samples as histograms, grid titles that say each setting once."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from genmodels import plotting
from genmodels.core import model_names
from genmodels.data.base import DataSpec
from genmodels.plot_curves import bpd_curves_figure, loss_curves_figure
from genmodels.plot_style import PALETTE, axis_scale, family_of, model_colours
from genmodels.plot_tabular import tabular_samples_figure

FIELDS = ["step", "epoch", "examples", "seconds", "split", "metric", "value"]


def _metrics(folder: Path, train: list[float], validation: dict[str, list[float]], seconds_per_step: float = 1.0) -> Path:
    """A metrics.csv: training loss at steps 1.., validation figures at steps 0.. (as the loop writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for step, value in enumerate(train, 1):
            writer.writerow([step, 0, step * 8, step * seconds_per_step, "train", "loss", value])
        for metric, values in validation.items():
            for step, value in enumerate(values):
                writer.writerow([step, 0, step * 8, step * seconds_per_step, "validation", metric, value])
    return path


def _record(measure: str, kind: str, options: dict | None = None) -> dict:
    return {"measure": measure, "kind": kind, "nll_nats": 1.0, "bits_per_dim": 1.0, "stderr_nats": 0.1, "examples": 10,
            "dims": 4, "samples": None, "evaluations": None, "terms_nats": {}, "options": options or {}, "discrete": True}


def _inside(fig) -> list[str]:
    """The legend entries that stick out of the figure (none when every legend is inside)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    out = []
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        if box.x0 < frame.x0 - 1 or box.y0 < frame.y0 - 1 or box.x1 > frame.x1 + 1 or box.y1 > frame.y1 + 1:
            out += [t.get_text() for t in legend.get_texts()]
    return out


def _legend_colours(fig) -> dict[str, str]:
    """Model name → the colour of its legend entry, over every legend of the figure."""
    colours = {}
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            for handle, text in zip(legend.legend_handles, legend.get_texts()):
                if handle.get_linestyle() == "-" and handle.get_linewidth() == 2:
                    colours[text.get_text()] = to_hex(handle.get_color())
    return colours


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory) -> dict[str, Path]:
    """23 fake runs whose losses range from about 1 to about 300."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    runs = {}
    for i in range(23):
        scale = 1.0 + 300.0 * (i % 3 == 0)
        train = list(scale * (1 + np.exp(-np.arange(6) / 2)) + rng.uniform(0, 0.01, 6))
        runs[f"model-number-{i:02d}"] = _metrics(root / f"m{i}", train,
                                                  {"log_prob_nll": [200 - i, 150 - i, 140 - i], "log_prob_bpd": [11.0, 3.0 + i / 20, 2.5 + i / 20]})
    return runs


def test_a_legend_of_23_models_lies_inside_the_figure(many_runs):
    fig = loss_curves_figure(many_runs, title="23 models")
    assert _inside(fig) == []
    legend_texts = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    assert set(many_runs) <= set(legend_texts)  # every model is named, none is dropped
    fig = bpd_curves_figure(many_runs)
    assert _inside(fig) == []


def test_the_registered_models_get_one_row_per_family_and_their_legends_fit(tmp_path):
    names = model_names()
    runs = {name: _metrics(tmp_path / name, [3.0, 2.0, 1.5], {"log_prob_nll": [3.0, 2.0], "log_prob_bpd": [3.0, 2.0]})
            for name in names}
    fig = loss_curves_figure(runs)
    assert _inside(fig) == []
    families = {family_of(name) for name in names}
    assert {"autoregressive", "latent", "flows", "diffusion"} <= families
    titles = {ax.get_title().split(":")[0] for ax in fig.axes}
    assert families <= titles


def test_each_model_has_one_colour_across_plots_and_subsets(many_runs):
    names = model_names()
    assert len(names) <= len(PALETTE)
    every = model_colours(names)
    assert len(set(every.values())) == len(names)  # 23 models, 23 colours
    subset = names[::3]
    assert model_colours(reversed(subset)) == {name: every[name] for name in reversed(subset)}  # a model keeps its colour
    fake = model_colours(many_runs)
    assert len(set(fake.values())) == len(many_runs)
    in_losses, in_bpd = _legend_colours(loss_curves_figure(many_runs)), _legend_colours(bpd_curves_figure(many_runs))
    assert in_losses == in_bpd == {name: fake[name] for name in many_runs}


def test_a_panel_goes_logarithmic_when_values_span_a_hundredfold(tmp_path):
    assert axis_scale([1.0, 2.0, 99.0]) == "linear"
    assert axis_scale([1.0, 2.0, 100.0]) == "log"
    assert axis_scale([-1.0, 0.5, 300.0]) == "symlog"
    assert axis_scale([float("nan"), 5.0]) == "linear"
    wide = {"fvsbn": _metrics(tmp_path / "a", [1.2, 1.0, 0.9], {}), "nade": _metrics(tmp_path / "b", [300.0, 200.0, 150.0], {})}
    narrow = {"fvsbn": _metrics(tmp_path / "c", [5.0, 4.0, 3.0], {}), "nade": _metrics(tmp_path / "d", [9.0, 8.0, 7.0], {})}
    (ax_wide,) = [ax for ax in loss_curves_figure(wide).axes if ax.get_title().endswith("training loss")]
    (ax_narrow,) = [ax for ax in loss_curves_figure(narrow).axes if ax.get_title().endswith("training loss")]
    assert ax_wide.get_yscale() == "log" and ax_narrow.get_yscale() == "linear"


def test_a_validation_estimate_cheaper_than_the_test_figure_is_hollow_dashed_and_named(tmp_path):
    few = _metrics(tmp_path / "ddpm", [1.0, 0.8], {"pf-ode-rk4_nll": [300, 200], "pf-ode-rk4_bpd": [7.0, 5.0]})
    (tmp_path / "ddpm" / "results.json").write_text(json.dumps({
        "validation": [_record("pf-ode-rk4", "estimate", {"steps": 4})], "test": [_record("pf-ode-rk4", "estimate")]}))
    full = _metrics(tmp_path / "fvsbn", [1.0, 0.8], {"log_prob_nll": [300, 200], "log_prob_bpd": [7.0, 5.0]})
    (tmp_path / "fvsbn" / "results.json").write_text(json.dumps({
        "validation": [_record("log_prob", "exact")], "test": [_record("log_prob", "exact")]}))
    for fig in (loss_curves_figure({"ddpm": few, "fvsbn": full}), bpd_curves_figure({"ddpm": few, "fvsbn": full})):
        colours = model_colours(["ddpm", "fvsbn"])
        lines = [line for ax in fig.axes for line in ax.get_lines() if len(line.get_xdata()) > 1 and line.get_marker() != "None"]
        by_model = {to_hex(line.get_color()): line for line in lines}
        cheap, exact = by_model[colours["ddpm"]], by_model[colours["fvsbn"]]
        assert cheap.get_linestyle() == "--" and cheap.get_markerfacecolor() == "none"
        assert exact.get_linestyle() == "-" and exact.get_markerfacecolor() != "none"
        notes = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts() if "cheaper" in t.get_text()]
        assert len(notes) == 1 and "steps=4" in notes[0] and "ddpm" in notes[0] and "fvsbn" not in notes[0]


def test_the_records_in_a_checkpoint_tell_a_cheaper_estimate_before_results_json_exists(tmp_path):
    metrics = _metrics(tmp_path / "vae", [1.0, 0.8], {"iwae_nll": [30, 20], "iwae_bpd": [7.0, 5.0]})
    checkpoint = tmp_path / "vae" / "checkpoints" / "step-000000001"
    checkpoint.mkdir(parents=True)
    (checkpoint / "checkpoint.json").write_text(json.dumps({
        "validation": [_record("iwae", "estimate", {"k": 64})], "train_config": {"eval_options": {}}}))
    (line,) = [line for ax in loss_curves_figure({"vae": metrics}).axes for line in ax.get_lines() if line.get_marker() != "None"]
    assert line.get_linestyle() == "--"


def test_units_never_mix_in_a_validation_panel(tmp_path):
    runs = {"fvsbn": _metrics(tmp_path / "f", [2.0, 1.0], {"log_prob_nll": [100.0, 90.0], "log_prob_bpd": [2.5, 2.2]}),
            "two-stage": _metrics(tmp_path / "t", [2.0, 1.0], {"code_nll": [60.0, 40.0], "bits_per_code": [3.0, 2.0]})}
    fig = loss_curves_figure(runs)
    panels = {ax.get_title(): ax for ax in fig.axes}
    likelihood = [ax for title, ax in panels.items() if "validation NLL" in title]
    figures = [ax for title, ax in panels.items() if "not likelihoods" in title]
    assert all("bits/dim" in ax.get_title() for ax in likelihood)
    assert sum(len(ax.get_lines()) for ax in likelihood) == 1  # fvsbn's bits/dim only
    assert sum(len(ax.get_lines()) for ax in figures) == 1  # two-stage's code NLL, on its own panel


def test_bits_per_dim_against_time_is_framed_on_the_range_the_models_reach(tmp_path):
    runs = {"fvsbn": _metrics(tmp_path / "f", [1.0] * 4, {"log_prob_bpd": [12.0, 2.6, 2.4, 2.3]}),
            "nade": _metrics(tmp_path / "n", [1.0] * 4, {"log_prob_bpd": [10.0, 2.9, 2.5, 2.2]})}
    fig = bpd_curves_figure(runs)
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert low < 2.2 and 2.9 < high < 4.0
    assert "above the frame" in ax.get_title()


def test_tabular_samples_are_histograms_against_the_data_and_a_pair_plot():
    spec = DataSpec("table", (6,), 5)
    rng = np.random.default_rng(0)
    samples, data = rng.integers(0, 5, (200, 6)), rng.integers(0, 5, (300, 6))
    fig = tabular_samples_figure(samples, spec, title="t", reference=data)
    histograms = [ax for ax in fig.axes if ax.get_title().startswith("dimension")]
    assert [ax.get_title() for ax in histograms] == [f"dimension {d}" for d in range(6)]
    assert all(len(ax.patches) >= 2 for ax in histograms)  # data bars and the samples' outline
    assert all(not ax.images for ax in fig.axes)  # no heat map
    pairs = [ax for ax in fig.axes if ax.collections]
    assert len(pairs) == 3  # dimensions (1, 0), (2, 0), (2, 1)


def test_save_samples_draws_a_table_as_histograms_even_with_a_square_width(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(plotting, "save_tabular_samples", lambda flat, spec, path, **kw: drawn.update(shape=flat.shape, **kw) or path)
    spec = DataSpec("table", (64,), 3)  # 64 columns: once drawn as an 8×8 "image"
    samples = torch.randint(0, 3, (10, 64))
    plotting.save_samples(samples, spec, tmp_path / "s.png", title="x", reference=torch.zeros(4, 64, dtype=torch.long))
    assert drawn["shape"] == (10, 64) and drawn["title"] == "x" and drawn["reference"].shape == (4, 64)
    path = plotting.save_samples(samples, DataSpec("img", (1, 8, 8), 3), tmp_path / "i.png")
    assert path.is_file() and drawn["shape"] == (10, 64)  # images still go to a grid


def test_a_tabular_samples_png_is_written(tmp_path):
    spec = DataSpec("table", (20,), None)  # continuous: 30 shared bins, the first 16 dimensions shown
    samples = torch.randn(50, 20)
    path = plotting.save_samples(samples, spec, tmp_path / "s.png", title="vae on table", reference=torch.randn(80, 20))
    assert path.stat().st_size > 10_000


def test_a_grid_title_says_each_setting_once_and_leaves_out_what_is_off():
    edm = {"options": {"solver": "heun", "steps": "10"}, "nfe": 19, "solver": "heun", "steps": 10, "seconds": 1.0}
    assert plotting.sample_title("edm", "digits", 300, edm) == "edm on digits · step 300 · solver=heun, steps=10 · nfe 19"
    gan = {"options": {}, "hubness": False, "seconds": 0.2}
    assert plotting.sample_title("gan", "digits", 5, gan) == "gan on digits · step 5"
    off = {"options": {"hubness": "false", "temperature": "0.8"}, "hubness": False}
    assert plotting.sample_title("m", "d", None, off, label=3) == "m on d · label 3 · temperature=0.8"
    defaults = {"options": {}, "nfe": 35, "solver": "heun", "steps": 18}
    assert plotting.describe_sampling(defaults) == "nfe 35, solver heun, steps 18"
