"""Warnings about continuous data that a density would model badly: a constant column (its density is
a spike: the NLL runs to −∞ and means nothing) and columns with only a few distinct values (discrete
data stored as floats: a continuous density on them is not a likelihood of the data)."""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["continuous_data_warnings", "warn_about_continuous_data", "FEW_VALUES", "ROWS_CHECKED"]

#: A column with at most this many distinct values (and far fewer than its rows) looks discrete.
FEW_VALUES = 32
#: Distinct values are counted on at most this many rows (a constant column is checked on all of them).
ROWS_CHECKED = 20_000


def _columns(indices: np.ndarray) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:5])
    return shown + (f" and {len(indices) - 5} more" if len(indices) > 5 else "")


def continuous_data_warnings(x: np.ndarray, where: str) -> list[str]:
    """The warnings for continuous data ``x`` of shape (N, ...): each a line naming ``where``, the
    columns (flattened feature indices) and what to do. Empty when nothing looks wrong."""
    flat = np.asarray(x).reshape(len(x), -1)
    if len(flat) < 2 or flat.shape[1] == 0:
        return []
    out = []
    constant = np.flatnonzero(flat.min(axis=0) == flat.max(axis=0))
    if len(constant):
        what = "every column is" if len(constant) == flat.shape[1] else f"column(s) {_columns(constant)} of {flat.shape[1]} are"
        out.append(f"{where}: {what} constant (value {flat[0, constant[0]]:.6g}); a density on a constant column is a "
                   "spike whose NLL runs to −∞ and means nothing: drop such columns before training")
    rows = flat[:: max(1, len(flat) // ROWS_CHECKED)]
    ordered = np.sort(rows, axis=0)
    distinct = 1 + (np.diff(ordered, axis=0) != 0).sum(axis=0)
    few = np.flatnonzero((distinct > 1) & (distinct <= FEW_VALUES) & (distinct * 10 <= len(rows)))
    varying = int((distinct > 1).sum())
    if len(few):
        what = (f"every varying column has only {int(distinct[few].min())}–{int(distinct[few].max())} distinct values"
                if len(few) == varying else f"column(s) {_columns(few)} have only {int(distinct[few].max())} or fewer distinct values")
        out.append(f"{where}: {what} in {len(rows):,} rows: they look discrete, and a continuous density on them is not "
                   "a likelihood of the data; store them as non-negative integers (a discrete data set with exact "
                   "bits/dim), or add noise to them if they are truly continuous")
    return out


def warn_about_continuous_data(x: np.ndarray, where: str) -> None:
    """Print :func:`continuous_data_warnings` on stderr, one line each (training goes on)."""
    for line in continuous_data_warnings(x, where):
        print(f"genmodels: warning: {line}", file=sys.stderr)
