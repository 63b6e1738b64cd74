"""The registry of named data sets, and the one entry point that loads a name or a user's file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError, unknown_name
from .base import Dataset, LoaderFn

__all__ = ["register_dataset", "load_dataset", "dataset_names", "dataset_descriptions"]


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


def load_dataset(name: str, data_dir: str | None = None) -> Dataset:
    """Load a registered data set by name, or a user's data from a path.

    A path may be a folder of images, a ``.npy`` array or a ``.csv`` table (see ``data.files``).
    """
    if name in _DATASETS:
        dataset = _DATASETS[name].loader(data_dir)
        dataset.source = {"name": name, "data_dir": data_dir}
        return dataset
    if not name.strip():  # Path("") is ".", the working folder: never read it by accident
        raise unknown_name(
            "data set", name, _DATASETS, extra="; or give a path to a folder of images, a .npy or a .csv file"
        )
    from .files import load_path, path_exists  # a user's own files

    path = Path(name)
    # A name with a folder separator, a suffix or a leading ~ or . is a path: a missing one says so.
    if path_exists(path) or path.suffix or "/" in name or os.sep in name or name.startswith(("~", ".")):
        dataset = load_path(path)
        # The spec's name is the resolved path and the source records that same string, so that a
        # checkpoint's data, reloaded from any working folder, have a spec equal to the one it stored.
        dataset.source = {"name": dataset.spec.name, "data_dir": None}
        return dataset
    raise unknown_name(
        "data set", name, _DATASETS, extra="; or give a path to a folder of images, a .npy or a .csv file"
    )
