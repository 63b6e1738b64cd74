"""The registry of named data sets, and the one entry point that loads a name or a user's file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError, unknown_name, option
from .base import Dataset, LoaderFn
from .transforms import DEFAULT_MAX_PIXELS, ImageTransform

__all__ = [
    "register_dataset", "load_dataset", "load_source", "transform_change", "dataset_names", "dataset_descriptions",
]


@dataclass(frozen=True)
class _Entry:
    loader: LoaderFn
    description: str


_DATASETS: dict[str, _Entry] = {}


def register_dataset(name: str, description: str):
    """Decorator: register ``loader(data_dir: str | None) -> Dataset`` under ``name``."""

    def wrap(loader: LoaderFn) -> LoaderFn:
        if name in _DATASETS:
            raise ValueError(f"data set '{name}' is registered twice")
        _DATASETS[name] = _Entry(loader, description)
        return loader

    return wrap


def dataset_names() -> list[str]:
    return sorted(_DATASETS)


def dataset_descriptions() -> dict[str, str]:
    return {name: _DATASETS[name].description for name in dataset_names()}


def load_dataset(
    name: str,
    data_dir: str | None = None,
    transform: ImageTransform | None = None,
    max_pixels: int | None = None,
) -> Dataset:
    """Load a registered data set by name, or a user's data from a path.

    A path may be a folder of images, a ``.npy`` array or a ``.csv`` table (see ``data.files``).

    Args:
        name: a registered name or a path.
        data_dir: where a registered data set's files are (e.g. Fashion-MNIST's IDX files).
        transform: resize / center-crop / flip the images (see ``data.transforms``).
        max_pixels: the largest image (width x height) read or made; default ``DEFAULT_MAX_PIXELS``.

    ``Dataset.source`` records all of this (the transform and a non-default ``max_pixels`` only when
    given), so that :func:`load_source` loads the same data again, e.g. for a checkpoint.
    """
    if max_pixels is not None and (type(max_pixels) is not int or max_pixels < 1):
        raise UserError(f"{option('max_pixels', repr(max_pixels))}: expected a positive integer (width x height)")
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    if name in _DATASETS:
        dataset = _DATASETS[name].loader(data_dir).transformed(transform, limit)
        source: dict[str, Any] = {"name": name, "data_dir": data_dir}
    else:
        if not name.strip():  # Path("") is ".", the working folder: never read it by accident
            raise unknown_name(
                "data set", name, _DATASETS, extra="; or give a path to a folder of images, a .npy or a .csv file"
            )
        from .files import load_path, path_exists  # a user's own files

        path = Path(name)
        # A name with a folder separator, a suffix or a leading ~ or . is a path: a missing one says so.
        if not (path_exists(path) or path.suffix or "/" in name or os.sep in name or name.startswith(("~", "."))):
            raise unknown_name(
                "data set", name, _DATASETS, extra="; or give a path to a folder of images, a .npy or a .csv file"
            )
        dataset = load_path(path, transform, limit)
        # The source records the resolved path, the spec's name before a transform's suffix, so that
        # a checkpoint's data, reloaded from any working folder, have a spec equal to the one it stored.
        source = {"name": str(path.expanduser().resolve()), "data_dir": None}
    if transform is not None:
        source["transform"] = transform.to_json()
    if max_pixels is not None:
        source["max_pixels"] = max_pixels
    dataset.source = source
    return dataset


def load_source(source: dict[str, Any], data_dir: str | None = None) -> Dataset:
    """The data a run recorded (``Dataset.source``, as run.json and checkpoints store it), loaded
    again with the same transform: from ``data_dir`` if given, else from where training found them."""
    if not isinstance(source, dict) or not isinstance(source.get("name"), str):
        raise UserError(f"recorded data {source!r}: expected an object with the data set's name")
    transform = ImageTransform.from_json(source.get("transform"))
    return load_dataset(source["name"], data_dir or source.get("data_dir"), transform, source.get("max_pixels"))


def transform_change(recorded: dict[str, Any], source: dict[str, Any]) -> str | None:
    """How the transforms of two data sources differ (``--resume`` refuses a change), or None.

    >>> transform_change({"name": "d"}, {"name": "d", "transform": ImageTransform(hflip=True).to_json()})
    'with no image transform, not --hflip'
    """
    before, after = (ImageTransform.from_json(s.get("transform")) for s in (recorded, source))
    if before == after:
        return None
    flags = lambda t: "no image transform" if t is None else t.flags()  # noqa: E731
    return f"with {flags(before)}, not {flags(after)}"
