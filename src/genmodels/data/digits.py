"""``digits``: scikit-learn's bundled 8x8 handwritten digits, values 0..16 (K = 17).

Splits follow ../shared/PROTOCOL.md: a permutation with seed 0; test = first 360, validation = next
180, train = the remaining 1 257.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import DataSpec, Dataset, Split, split_protocol
from .registry import register_dataset

__all__ = ["load_digits"]

LEVELS = 17


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """All 1 797 images as int64 (N, 1, 8, 8) with values 0..16, and their labels."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images.astype(np.int64).reshape(-1, 1, 8, 8)
    return images, bunch.target.astype(np.int64)


def splits_of(x: np.ndarray, y: np.ndarray, spec: DataSpec) -> Dataset:
    train, validation, test = split_protocol(len(x), n_test=360, n_validation=180, seed=0)
    make = lambda idx: Split(torch.from_numpy(x[idx]), torch.from_numpy(y[idx]))  # noqa: E731
    return Dataset(spec, make(train), make(validation), make(test))


@register_dataset("digits", "scikit-learn's 8x8 digits, 17 levels (0..16), 1257/180/360 split; the default")
def load_digits(data_dir: str | None = None) -> Dataset:
    x, y = digits_arrays()
    return splits_of(x, y, DataSpec("digits", (1, 8, 8), LEVELS, num_classes=10))
