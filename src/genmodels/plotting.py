"""Pictures: sample grids (PNG via Pillow) and loss curves (matplotlib, no display needed)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor

from .data.base import DataSpec

__all__ = ["save_figure", "save_receptive_field", "save_confusion", "save_samples", "image_grid", "save_loss_curves", "read_metrics", "save_bpd_curves", "save_montage"]


def _pyplot():
    """matplotlib's pyplot on the Agg backend: files only, no display needed (CI has none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder created if missing) and close it."""
    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def image_grid(images: np.ndarray, *, columns: int | None = None, pad: int = 2, min_cell: int = 64) -> np.ndarray:
    """Tile (N, C, H, W) uint8 images into one (H', W', C) array with a 1-pixel border.

    Small images are enlarged by an integer factor (nearest neighbour) to at least ``min_cell`` pixels.
    """
    n, channels, height, width = images.shape
    scale = max(1, math.ceil(min_cell / max(height, width)))
    images = images.repeat(scale, axis=2).repeat(scale, axis=3)
    height, width = height * scale, width * scale
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (height + pad) + pad, columns * (width + pad) + pad, channels), 128, np.uint8)
    for index in range(n):
        r, c = divmod(index, columns)
        top, left = pad + r * (height + pad), pad + c * (width + pad)
        grid[top : top + height, left : left + width] = images[index].transpose(1, 2, 0)
    return grid


def _as_images(samples: np.ndarray, spec: DataSpec) -> np.ndarray | None:
    """Discrete samples as (N, C, H, W) uint8, or None when they are not pictures."""
    n = len(samples)
    if spec.is_image:
        images = samples.reshape(n, *spec.shape)
    else:
        side = math.isqrt(spec.dims)
        if side * side != spec.dims:
            return None
        images = samples.reshape(n, 1, side, side)
    if images.shape[1] not in (1, 3):
        images = images[:, :1]
    return np.round(images.astype(np.float64) * 255.0 / (spec.levels - 1)).astype(np.uint8)


def _titled(picture: Image.Image, title: str) -> Image.Image:
    """The picture under a white band holding its title (wrapped to the picture's width)."""
    import textwrap

    from PIL import ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        font = ImageFont.load_default()
    width = max(picture.width, 360)
    characters = max(20, width // 8)
    lines = textwrap.wrap(title, characters) or [""]
    band = 8 + 18 * len(lines)
    canvas = Image.new("RGB", (width, picture.height + band), "white")
    canvas.paste(picture, ((width - picture.width) // 2, band))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((6, 4 + 18 * i), line, fill="black", font=font)
    return canvas


def save_samples(samples: Tensor, spec: DataSpec, path: str | Path, title: str | None = None) -> Path:
    """Save samples as a PNG: an image grid for pictures, a scatter plot for 2-D continuous data,
    a heat map (one row per sample) for other vectors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = samples.detach().cpu().numpy()
    if spec.is_discrete:
        images = _as_images(array, spec)
        if images is not None:
            grid = image_grid(images)
            picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).convert("RGB")
            (_titled(picture, title) if title else picture).save(path)
            return path
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    flat = array.reshape(len(array), -1)
    if flat.shape[1] == 2 and not spec.is_discrete:
        ax.scatter(flat[:, 0], flat[:, 1], s=2, alpha=0.5)
        ax.set_aspect("equal")
    else:
        ax.imshow(flat, aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_xlabel("dimension")
        ax.set_ylabel("sample")
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def read_metrics(path: str | Path) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """metrics.csv → {(split, metric): [(step, value), ...]} (the last row wins for a repeated step)."""
    series: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            series[(row["split"], row["metric"])][int(row["step"])] = float(row["value"])
    return {key: sorted(points.items()) for key, points in series.items()}


def save_loss_curves(runs: dict[str, str | Path], path: str | Path, *, title: str | None = None) -> Path:
    """Plot training loss and validation NLL (nats/example) against steps for one or more runs.

    ``runs`` maps a label to a metrics.csv.
    """
    plt = _pyplot()
    path = Path(path)
    fig, (ax_train, ax_val) = plt.subplots(1, 2, figsize=(11, 4))
    for label, csv_path in runs.items():
        series = read_metrics(csv_path)
        if ("train", "loss") in series:
            steps, values = zip(*series[("train", "loss")])
            ax_train.plot(steps, values, label=label)
        for (split, metric), points in series.items():
            if split == "validation" and metric.endswith("_nll"):
                steps, values = zip(*points)
                if len(points) == 1:  # fitted in closed form: one figure, drawn as a level line
                    ax_val.axhline(values[0], linestyle="--", color="gray", label=f"{label} ({metric[:-4]})")
                else:
                    ax_val.plot(steps, values, marker="o", markersize=3, label=f"{label} ({metric[:-4]})")
    ax_train.set_title("training loss")
    ax_val.set_title("validation NLL (nats/example)")
    for ax in (ax_train, ax_val):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def save_bpd_curves(runs: dict[str, str | Path], path: str | Path, *, title: str | None = None) -> Path:
    """Validation bits/dim against training seconds, one line per run (and likelihood measure):
    what each model reaches for the time it is given. ``runs`` maps a label to a metrics.csv."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 5))
    for label, csv_path in runs.items():
        series: dict[str, list[tuple[float, float]]] = defaultdict(list)
        with open(csv_path, newline="") as handle:
            for row in csv.DictReader(handle):
                if row["split"] == "validation" and row["metric"].endswith("_bpd"):
                    series[row["metric"][:-4]].append((float(row["seconds"]), float(row["value"])))
        for measure, points in series.items():
            seconds, values = zip(*sorted(points))
            ax.plot(seconds, values, marker="o", markersize=3, label=f"{label} ({measure})")
    ax.set_xlabel("training seconds")
    ax.set_ylabel("validation bits/dim")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or "validation bits/dim against training time")
    return save_figure(fig, path)


def save_montage(grids: dict[str, str | Path], path: str | Path, *, title: str | None = None, columns: int = 4) -> Path:
    """Several sample-grid PNGs side by side, each titled with its label, in one PNG."""
    plt = _pyplot()
    path = Path(path)
    rows = max(1, math.ceil(len(grids) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, png) in zip(axes.flat, grids.items()):
        with Image.open(png) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        ax.set_title(label, fontsize=10)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=110)


def save_confusion(confusion: Tensor, path: str | Path, title: str = "") -> Path:
    """A confusion matrix (rows: true class, columns: predicted) as a PNG with its counts."""
    plt = _pyplot()
    counts = confusion.cpu().numpy()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.imshow(counts, cmap="Blues")
    for (i, j), value in np.ndenumerate(counts):
        ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                color="white" if value > counts.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(range(counts.shape[1]))
    ax.set_yticks(range(counts.shape[0]))
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def save_receptive_field(audit, path: str | Path, title: str = "") -> Path:
    """A receptive-field audit (``autoregressive.audit.audit_pixel``) as a PNG: blue the inputs the
    pixel's conditional depends on, red the pixel, orange its blind spot (earlier pixels inside the
    field's bounding box that it cannot see), grey the other earlier pixels; the analytic field's
    size, where known, in the title."""
    plt = _pyplot()
    field, earlier, blind = audit.field.cpu().numpy(), audit.earlier.cpu().numpy(), audit.blind.cpu().numpy()
    height, width = field.shape
    picture = np.ones((height, width, 3))
    picture[earlier & ~field] = (0.82, 0.82, 0.82)
    picture[blind] = (1.0, 0.6, 0.1)
    picture[field] = (0.15, 0.3, 0.6)
    picture[audit.pixel] = (0.85, 0.1, 0.1)
    fig, ax = plt.subplots(figsize=(4, 4.4))
    ax.imshow(picture, interpolation="nearest")
    ax.set_xticks(np.arange(-0.5, width, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, height, 1), minor=True)
    ax.grid(which="minor", color="0.7", linewidth=0.3)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    analytic = "" if audit.analytic is None else f" (analytic {int(audit.analytic.sum())})"
    ax.set_title(f"{title}\nfield {int(field.sum())} px{analytic}, blind spot {int(blind.sum())} px", fontsize=8)
    return save_figure(fig, path)
