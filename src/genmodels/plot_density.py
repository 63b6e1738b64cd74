"""A 2-D model's learned density beside the data and the model's samples (one PNG, three panels).

Works for any model fitted to continuous 2-D data whose ``log_likelihoods`` gives a per-point
log-density (exact for a flow; a bound or an estimate is drawn as what it is, and says so in the title).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .core import Batch, GenerativeModel, LikelihoodKind
from .data.base import Dataset
from .errors import UserError
from .plotting import _pyplot, save_figure

__all__ = ["plot_density", "density_grid"]


@torch.no_grad()
def density_grid(
    model: GenerativeModel, bounds: tuple[float, float, float, float], resolution: int = 200, batch_size: int = 8192
) -> tuple[np.ndarray, np.ndarray, np.ndarray, LikelihoodKind]:
    """The model's log-density at the centres of a ``resolution``² grid on (x0, x1, y0, y1):
    returns (xs, ys, log_p (resolution, resolution) indexed [y, x], kind)."""
    x0, x1, y0, y1 = bounds
    dx, dy = (x1 - x0) / resolution, (y1 - y0) / resolution
    xs = x0 + dx * (np.arange(resolution) + 0.5)
    ys = y0 + dy * (np.arange(resolution) + 0.5)
    gx, gy = np.meshgrid(xs, ys)
    points = torch.tensor(np.stack([gx.ravel(), gy.ravel()], axis=1), dtype=torch.float32, device=model.device)
    values, kind = [], None
    for start in range(0, len(points), batch_size):
        records = model.log_likelihoods(Batch(points[start : start + batch_size]))
        if not records:
            raise UserError(f"model '{model.name}' has no likelihood to draw; plot its samples instead")
        values.append(records[0].values.double().cpu())
        kind = records[0].kind
    return xs, ys, torch.cat(values).numpy().reshape(resolution, resolution), kind


def plot_density(
    model: GenerativeModel,
    dataset: Dataset,
    out_path: str | Path,
    *,
    split: str = "test",
    points: int = 5000,
    resolution: int = 200,
    seed: int = 0,
) -> Path:
    """Draw the model's density on a grid, ``points`` examples of ``split`` and as many model
    samples, side by side on the data's bounding box; save a PNG to ``out_path`` and return its path."""
    spec = dataset.spec
    if spec.is_discrete or tuple(spec.shape) != (2,):
        raise UserError(
            f"plot-density draws continuous 2-D data; '{spec.name}' has shape {tuple(spec.shape)} and "
            f"{'levels ' + str(spec.levels) if spec.is_discrete else 'continuous values'}: use a toy 2-D set"
        )
    plt = _pyplot()  # the Agg backend: files only, no display is needed

    data = dataset.split(split).x[:points].double().numpy()
    low, high = np.quantile(data, 0.001, axis=0), np.quantile(data, 0.999, axis=0)
    margin = 0.1 * (high - low)
    bounds = (low[0] - margin[0], high[0] + margin[0], low[1] - margin[1], high[1] + margin[1])
    was_training = model.training
    model.eval()
    try:
        xs, ys, log_p, kind = density_grid(model, bounds, resolution)
        samples = model.sample(points, generator=torch.Generator().manual_seed(seed)).double().cpu().numpy()
    finally:
        model.train(was_training)

    figure, axes = plt.subplots(1, 3, figsize=(13.5, 4.5))
    extent = bounds
    axes[0].imshow(np.exp(log_p), origin="lower", extent=extent, aspect="auto", cmap="viridis")
    axes[0].set_title(f"{model.name}: density ({kind.value})")
    for ax, pts, title in ((axes[1], data, f"{spec.name}: {split} data ({len(data)})"), (axes[2], samples, f"samples ({len(samples)})")):
        ax.hist2d(pts[:, 0], pts[:, 1], bins=resolution // 2, range=[bounds[:2], bounds[2:]], cmap="viridis")
        ax.set_title(title)
    for ax in axes:
        ax.set_xlim(bounds[0], bounds[1])
        ax.set_ylim(bounds[2], bounds[3])
        ax.set_aspect("equal")
    return save_figure(figure, out_path, dpi=100)
