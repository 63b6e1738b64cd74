"""Pictures: sample grids (PNG via Pillow), tabular samples as histograms, curves and figures
(matplotlib on the Agg backend, no display needed). The curves live in :mod:`genmodels.plot_curves`,
what every picture shares (colours, log axes, legends) in :mod:`genmodels.plot_style`."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch import Tensor

from .data.base import DataSpec
from .plot_curves import read_metrics, save_bpd_curves, save_loss_curves
from .plot_style import _pyplot, save_figure
from .plot_tabular import save_tabular_samples

__all__ = [
    "save_figure", "save_receptive_field", "save_confusion", "save_samples", "image_grid", "save_loss_curves",
    "read_metrics", "save_bpd_curves", "save_montage", "sample_title", "describe_sampling", "save_tabular_samples",
]

#: option values that mean "off": a title leaves them out ("hubness False" says nothing)
_OFF = ("false", "none", "off", "no")


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
    """Discrete samples of image data as (N, C, H, W) uint8, or None when they are not pictures
    (a table's rows are drawn as histograms, never reshaped into a square)."""
    if not spec.is_image:
        return None
    images = samples.reshape(len(samples), *spec.shape)
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


def save_samples(
    samples: Tensor, spec: DataSpec, path: str | Path, title: str | None = None, *, reference: Tensor | None = None,
) -> Path:
    """Save samples as a PNG: an image grid for pictures, a scatter plot for 2-D continuous data,
    per-dimension histograms and a pair plot for other vectors (tables).

    Args:
        samples: (N, *spec.shape) samples.
        spec: the data's spec.
        path: the PNG to write.
        title: what the picture shows (:func:`sample_title`).
        reference: examples of the data (e.g. the validation split's) drawn beside the samples
            where the picture is not an image grid; optional.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = samples.detach().cpu().numpy()
    data = None if reference is None else reference.detach().cpu().numpy()
    if spec.is_discrete:
        images = _as_images(array, spec)
        if images is not None:
            grid = image_grid(images)
            picture = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid).convert("RGB")
            (_titled(picture, title) if title else picture).save(path)
            return path
    flat = array.reshape(len(array), -1)
    if flat.shape[1] == 2 and not spec.is_discrete:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5, 5))
        if data is not None:
            ax.scatter(data[:, 0], data[:, 1], s=2, alpha=0.3, color="0.55", label="data")
        ax.scatter(flat[:, 0], flat[:, 1], s=2, alpha=0.5, color="#d62728", label="samples")
        ax.set_aspect("equal")
        if data is not None:
            ax.legend(fontsize=8, markerscale=4)
        if title:
            ax.set_title(title, fontsize=9)
        return save_figure(fig, path)
    return save_tabular_samples(flat, spec, path, title=title, reference=data)


def _shown(value: Any) -> bool:
    """Whether a sampling option or reported value is worth a title: not off, not empty."""
    return not (value is None or value is False or str(value).strip().lower() in _OFF)


def describe_sampling(info: dict[str, Any]) -> str:
    """A draw's settings, each once: the sampling options given (``solver=heun, steps=10``), then
    what the model reported that they do not already say (``nfe 19``); options that are off
    (``hubness=false``) and the draw's seconds are left out. Empty for a draw at the defaults."""
    options = {k: v for k, v in (info.get("options") or {}).items() if _shown(v)}
    given = {k: str(v).lower() for k, v in (info.get("options") or {}).items()}
    reported = {k: v for k, v in info.items()
                if k not in ("options", "seconds") and _shown(v) and given.get(k) != str(v).lower()}
    parts = [", ".join(f"{k}={v}" for k, v in options.items()), ", ".join(f"{k} {v}" for k, v in reported.items())]
    return " · ".join(part for part in parts if part)


def sample_title(model: str, data: str, step: int | None, info: dict[str, Any], *, label: int | None = None) -> str:
    """What a grid shows, each setting once: model, data, checkpoint step, the class label sampled,
    then :func:`describe_sampling` of the draw."""
    parts = [f"{model} on {data}"]
    if step is not None:
        parts.append(f"step {step}")
    if label is not None:
        parts.append(f"label {label}")
    sampling = describe_sampling(info)
    return " · ".join(parts + ([sampling] if sampling else []))


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
