"""Samples of tabular (non-image) data drawn so that they can be judged: one histogram per dimension,
the model's samples over the data's, and a pair plot of a few dimensions (where dependence shows)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from torch import Tensor

from .data.base import Dataset, DataSpec
from .plot_style import _pyplot, save_figure

__all__ = ["save_tabular_samples", "tabular_samples_figure", "reference_examples", "MAX_HISTOGRAMS", "PAIR_DIMENSIONS",
           "REFERENCE_EXAMPLES"]

#: dimensions drawn as histograms (the first ones; the title says how many of how many)
MAX_HISTOGRAMS = 16
#: dimensions of the pair plot
PAIR_DIMENSIONS = 3
SAMPLE_COLOUR, DATA_COLOUR = "#d62728", "0.55"
#: examples of the data drawn beside a table's samples: the validation split's first ones
REFERENCE_EXAMPLES = 2000


def reference_examples(dataset: Dataset) -> Tensor | None:
    """What a non-image data set's samples are drawn over (the end-of-run grid, ``genmodels
    sample``): the validation split's first :data:`REFERENCE_EXAMPLES`; None for images, whose grid
    shows the samples alone."""
    return None if dataset.spec.is_image else dataset.validation.x[:REFERENCE_EXAMPLES]


def _bins(columns: list[np.ndarray], spec: DataSpec) -> np.ndarray:
    """Bin edges shared by data and samples: one bin per level for discrete data with few levels,
    30 bins over the central 99% of both otherwise (a few far samples would flatten the rest)."""
    if spec.is_discrete and spec.levels <= 64:
        return np.arange(spec.levels + 1) - 0.5
    joined = np.concatenate([c for c in columns if c.size])
    low, high = np.quantile(joined, [0.005, 0.995]) if joined.size else (0.0, 1.0)
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, 31)


def _histograms(fig, samples: np.ndarray, reference: np.ndarray | None, spec: DataSpec) -> None:
    shown = min(samples.shape[1], MAX_HISTOGRAMS)
    columns = min(4, shown)
    axes = np.atleast_1d(fig.subplots(math.ceil(shown / columns), columns, squeeze=False)).ravel()
    for dim, ax in enumerate(axes):
        if dim >= shown:
            ax.axis("off")
            continue
        parts = [samples[:, dim]] + ([reference[:, dim]] if reference is not None else [])
        bins = _bins(parts, spec)
        if reference is not None:
            ax.hist(reference[:, dim], bins=bins, density=True, color=DATA_COLOUR, alpha=0.6, label="data")
        ax.hist(samples[:, dim], bins=bins, density=True, histtype="step", color=SAMPLE_COLOUR, linewidth=1.4, label="samples")
        ax.set_title(f"dimension {dim}", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper right", fontsize=8, ncol=2, frameon=False)
    fig.suptitle(f"per-dimension histograms (first {shown} of {samples.shape[1]} dimensions)"
                 if shown < samples.shape[1] else "per-dimension histograms", fontsize=9)


def _pairs(fig, samples: np.ndarray, reference: np.ndarray | None, spec: DataSpec, rng: np.random.Generator) -> None:
    dims = min(samples.shape[1], PAIR_DIMENSIONS)
    axes = fig.subplots(dims - 1, dims - 1, squeeze=False)
    # discrete values jittered by up to half a level, so coinciding points show as a cloud
    jitter = (lambda a: a + rng.uniform(-0.35, 0.35, a.shape)) if spec.is_discrete else (lambda a: a)
    for i in range(1, dims):
        for j in range(dims - 1):
            ax = axes[i - 1, j]
            if j >= i:
                ax.axis("off")
                continue
            if reference is not None:
                ax.scatter(jitter(reference[:, j]), jitter(reference[:, i]), s=3, color=DATA_COLOUR, alpha=0.4, linewidths=0)
            ax.scatter(jitter(samples[:, j]), jitter(samples[:, i]), s=3, color=SAMPLE_COLOUR, alpha=0.6, linewidths=0)
            ax.set_xlabel(f"dimension {j}", fontsize=7)
            ax.set_ylabel(f"dimension {i}", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.set_box_aspect(1)
    fig.suptitle(f"pairs of dimensions 0–{dims - 1} (grey: data, red: samples)", fontsize=9)


def save_tabular_samples(
    samples: np.ndarray, spec: DataSpec, path: str | Path, *, title: str | None = None,
    reference: np.ndarray | None = None, seed: int = 0,
) -> Path:
    """Save :func:`tabular_samples_figure` as a PNG at ``path``; return the path."""
    return save_figure(tabular_samples_figure(samples, spec, title=title, reference=reference, seed=seed), path)


def tabular_samples_figure(
    samples: np.ndarray, spec: DataSpec, *, title: str | None = None, reference: np.ndarray | None = None, seed: int = 0,
):
    """(N, D) samples of tabular data as per-dimension histograms over ``reference`` (examples of
    the data, e.g. the validation split; optional), and a pair plot of the first few dimensions."""
    samples = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    shown = min(samples.shape[1], MAX_HISTOGRAMS)
    rows = math.ceil(shown / min(4, shown))
    pairs = samples.shape[1] >= 2
    plt = _pyplot()
    height = 1.9 * rows + (4.2 if pairs else 0) + 0.8
    fig = plt.figure(figsize=(9.5, height), layout="constrained")
    if pairs:
        top, bottom = fig.subfigures(2, 1, height_ratios=[1.9 * rows + 0.5, 4.2])
    else:
        top, bottom = fig, None
    _histograms(top, samples, reference, spec)
    if bottom is not None:
        _pairs(bottom, samples, reference, spec, np.random.default_rng(seed))
    note = "" if reference is not None else " (no data drawn beside)"
    if title or note:
        fig.suptitle((title or "") + note, fontsize=10)
    return fig
