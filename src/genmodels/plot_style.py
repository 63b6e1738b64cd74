"""What every genmodels picture shares: the Agg backend, one colour per model across all plots, the
family a model belongs to (for small multiples), when an axis goes logarithmic, and legends placed
outside the axes so that no entry is ever cut."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "PALETTE", "FAMILY_ORDER", "model_colours", "family_of", "axis_scale", "apply_scale", "legend_outside", "save_figure", "new_figure",
]

#: 30 colours, distinguishable on white: matplotlib's tab10, then Kelly's contrast colours (1965)
#: without white, black and near-duplicates of tab10, then darker tab20b/tab20c tones. A model
#: keeps its slot in every plot (see :func:`model_colours`), so 23+ models never share a colour.
PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#f3c300", "#875692", "#a1caf1", "#be0032", "#c2b280", "#008856", "#e68fac", "#0067a5", "#f99379", "#604e97",
    "#f6a600", "#b3446c", "#dcd300", "#882d17", "#8db600", "#654522", "#e25822", "#2b3d26", "#393b79", "#637939",
)

#: the order of the small multiples' rows, and of the colour slots (neighbours in one family get
#: neighbouring, contrasting palette entries)
FAMILY_ORDER = ("baselines", "autoregressive", "latent", "flows", "diffusion", "gan", "vq", "other")

#: the shortest ratio between a panel's largest and smallest positive value that makes it logarithmic
LOG_RATIO = 100.0


def _pyplot():
    """matplotlib's pyplot on the Agg backend: files only, no display needed (CI has none)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def new_figure(width: float, height: float, **subplots):
    """A figure whose layout engine makes room for legends outside the axes (constrained layout)."""
    plt = _pyplot()
    return plt.subplots(figsize=(width, height), layout="constrained", **subplots)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (its folder created if missing) and close it.

    A figure without a layout engine gets ``tight_layout``; one with constrained layout keeps it.
    Either way the saved area is the figure's tight bounding box, so nothing drawn is cut.
    """
    plt = _pyplot()
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    plt.close(fig)
    return path


def _registered_names() -> list[str]:
    """Registered models by family (in :data:`FAMILY_ORDER`), then name."""
    try:
        from .core import model_names

        names = model_names()
    except Exception:  # plotting never fails because a plugin did not load
        return []
    order = {family: i for i, family in enumerate(FAMILY_ORDER)}
    return sorted(names, key=lambda name: (order.get(family_of(name), len(order)), name))


def model_colours(labels: Iterable[str]) -> dict[str, str]:
    """One colour per label, stable across plots and unique within one.

    A registered model's colour is its slot in the registry sorted by family, then name (the 23
    built-in models take 23 distinct slots, a family's models neighbouring ones), so ``vae`` is the same colour in the loss curves, the validation panel and
    bits/dim against time. Any other label starts at a slot given by its name's CRC-32 and moves
    to the next colour no label of this plot has taken: the same labels give the same colours.
    Labels beyond the palette's size reuse colours (in the same deterministic order).
    """
    labels = list(dict.fromkeys(labels))
    registered = _registered_names()
    fixed = {name: i % len(PALETTE) for i, name in enumerate(registered)} if len(registered) <= len(PALETTE) else {}
    colours: dict[str, str] = {}
    taken: set[int] = set()
    for label in labels:
        if label in fixed:
            colours[label] = PALETTE[fixed[label]]
            taken.add(fixed[label])
    for label in sorted(label for label in labels if label not in colours):
        slot = zlib.crc32(label.encode()) % len(PALETTE)
        for step in range(len(PALETTE)):
            if (slot + step) % len(PALETTE) not in taken:
                slot = (slot + step) % len(PALETTE)
                break
        taken.add(slot)
        colours[label] = PALETTE[slot]
    return {label: colours[label] for label in labels}


def family_of(label: str) -> str:
    """The family folder of a registered model (``autoregressive``, ``latent``, ``flows``, ...), or
    ``other`` for labels that name no registered model."""
    try:
        from .core import is_registered, model_module

        if is_registered(label):
            parts = model_module(label).split(".")
            return parts[1] if len(parts) > 2 and parts[0] == "genmodels" else "other"
    except Exception:
        pass
    return "other"


def axis_scale(values: Iterable[float], ratio: float = LOG_RATIO) -> str:
    """``log`` when the positive values span at least ``ratio``× (and none is ≤ 0), ``symlog`` when
    values of both signs span that much in magnitude, ``linear`` otherwise."""
    finite = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if finite.size < 2:
        return "linear"
    magnitude = np.abs(finite[finite != 0])
    if magnitude.size < 2 or magnitude.max() / magnitude.min() < ratio:
        return "linear"
    return "log" if (finite > 0).all() else "symlog"


def apply_scale(ax, values: Sequence[float], axis: str = "y") -> str:
    """Set ``ax``'s y (or x) scale by :func:`axis_scale`; return the scale chosen."""
    scale = axis_scale(values)
    setter = ax.set_yscale if axis == "y" else ax.set_xscale
    if scale == "symlog":
        finite = np.abs(np.asarray([v for v in values if np.isfinite(v) and v != 0], dtype=float))
        setter("symlog", linthresh=float(np.quantile(finite, 0.1)))
    elif scale == "log":
        setter("log")
    return scale


def legend_outside(ax, handles: Sequence, labels: Sequence[str], *, title: str | None = None, fontsize: float = 7):
    """A legend to the right of ``ax``, outside it (constrained layout makes room, so none is cut);
    long lists go to two columns."""
    if not handles:
        return None
    columns = 1 if len(handles) <= 14 else 2
    return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
                     fontsize=fontsize, title=title, title_fontsize=fontsize, ncol=columns, frameon=False)
