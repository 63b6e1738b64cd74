"""Binary versions of ``digits`` and ``fashion-mnist`` (K = 2), static and dynamic.

- Static (``binary-digits``, ``binary-fashion-mnist``): threshold at half the range, x_bin = 1 where
  x / (K-1) >= 0.5, else 0; the same bits every epoch.
- Dynamic (``...-dynamic``): the train split draws x_bin ~ Bernoulli(x / (K-1)) afresh each epoch
  (``DynamicBinarizedSplit``), which regularizes like data augmentation. Validation and test are one
  fixed Bernoulli draw with a fixed seed, so that figures from different runs, models and libraries
  are measured on the same bits and stay comparable.
- Jittered (``binary-digits-jitter``): the train split is thresholded with noise on the threshold,
  redrawn each epoch (``JitteredThresholdSplit``: 1[x/16 + u ≥ 7.5/16], u ~ U(−3/16, 3/16), centred
  on the static cut between levels 7 and 8), an augmentation that flips stroke edges only; validation and test are exactly ``binary-digits``', so
  test figures compare with the static set's directly.

Shapes, labels and splits are those of the original data set (../shared/PROTOCOL.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .base import DataSpec, Dataset, DynamicBinarizedSplit, JitteredThresholdSplit, Split
from .digits import load_digits
from .fashion_mnist import SPEC as FASHION_SPEC
from .fashion_mnist import fashion_mnist_splits
from .registry import register_dataset

__all__ = [
    "threshold",
    "bernoulli_draw",
    "EVAL_SEEDS",
    "TRAIN_SEED",
    "load_binary_digits",
    "load_binary_digits_dynamic",
    "load_binary_digits_jitter",
    "load_binary_fashion_mnist",
    "load_binary_fashion_mnist_dynamic",
]

SPLITS = ("train", "validation", "test")
TRAIN_SEED = 0  # seed of the per-(epoch, index) draws of a dynamic train split
EVAL_SEEDS = {"validation": 1, "test": 2}  # the one fixed draw of each evaluation split

SourceFn = Callable[[str | None], tuple[DataSpec, dict[str, tuple[np.ndarray, np.ndarray]]]]


def threshold(x: np.ndarray, levels: int) -> np.ndarray:
    """Static binarization, threshold at half the range: 1 where x / (K-1) >= 0.5, as int64.

    For integers, x >= (K-1)/2 is x >= ceil((K-1)/2) = floor(K/2): no division, no rounding at the
    midpoint, and no widening of uint8 data before the comparison.

    >>> threshold(np.array([0, 7, 8, 16]), levels=17).tolist()
    [0, 0, 1, 1]
    >>> threshold(np.array([127, 128], dtype=np.uint8), levels=256).tolist()
    [0, 1]
    """
    return (x >= levels // 2).astype(np.int64)


def bernoulli_draw(x: np.ndarray, levels: int, seed: int) -> np.ndarray:
    """One draw of x_bin ~ Bernoulli(x / (K-1)), as int64, from ``np.random.default_rng(seed)``.

    u < p with u ~ U[0, 1) has probability exactly p, so 0 stays 0 and K-1 stays 1.
    """
    u = np.random.default_rng(seed).random(x.shape)
    return (u < x / (levels - 1)).astype(np.int64)


def _digits_source(data_dir: str | None) -> tuple[DataSpec, dict[str, tuple[np.ndarray, np.ndarray]]]:
    ds = load_digits(data_dir)
    return ds.spec, {s: (ds.split(s).x.numpy(), ds.split(s).y.numpy()) for s in SPLITS}


def _fashion_source(data_dir: str | None) -> tuple[DataSpec, dict[str, tuple[np.ndarray, np.ndarray]]]:
    # Straight from the cached uint8 arrays: going through load_fashion_mnist would first make a
    # 440 MB int64 copy only to threshold it.
    return FASHION_SPEC, fashion_mnist_splits(data_dir)


def _static(name: str, source: SourceFn, data_dir: str | None) -> Dataset:
    return _thresholded(name, *source(data_dir))


def _thresholded(name: str, spec: DataSpec, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Dataset:
    out = {
        s: Split(torch.from_numpy(threshold(x, spec.levels)), torch.from_numpy(y.astype(np.int64)))
        for s, (x, y) in splits.items()
    }
    return Dataset(DataSpec(name, spec.shape, 2, spec.num_classes), out["train"], out["validation"], out["test"])


def _dynamic(name: str, source: SourceFn, data_dir: str | None) -> Dataset:
    spec, splits = source(data_dir)
    label = lambda s: torch.from_numpy(splits[s][1].astype(np.int64))  # noqa: E731
    x_train = torch.from_numpy(np.array(splits["train"][0]))  # the levels, kept in their compact dtype
    train = DynamicBinarizedSplit(x_train, spec.levels, label("train"), seed=TRAIN_SEED)
    fixed = {
        s: Split(torch.from_numpy(bernoulli_draw(splits[s][0], spec.levels, EVAL_SEEDS[s])), label(s))
        for s in ("validation", "test")
    }
    return Dataset(DataSpec(name, spec.shape, 2, spec.num_classes), train, fixed["validation"], fixed["test"])


@register_dataset("binary-digits", "digits thresholded at half the range (x >= 8), K=2, 1257/180/360 split")
def load_binary_digits(data_dir: str | None = None) -> Dataset:
    return _static("binary-digits", _digits_source, data_dir)


@register_dataset(
    "binary-digits-dynamic", "digits, train redrawn each epoch ~ Bernoulli(x/16); validation/test one fixed draw"
)
def load_binary_digits_dynamic(data_dir: str | None = None) -> Dataset:
    return _dynamic("binary-digits-dynamic", _digits_source, data_dir)


#: the threshold jitter of ``binary-digits-jitter``: 3 of the 16 grey steps either side of the half range
DIGITS_JITTER = 3 / 16


@register_dataset(
    "binary-digits-jitter",
    "binary-digits whose train split is redrawn each epoch with threshold noise, 1[x/16 + u >= 7.5/16], "
    "u ~ U(-3/16, 3/16) per pixel (augmentation); validation/test exactly binary-digits'",
)
def load_binary_digits_jitter(data_dir: str | None = None) -> Dataset:
    spec, splits = _digits_source(data_dir)
    static = _thresholded("binary-digits-jitter", spec, splits)
    x_train, y_train = splits["train"]
    static.train = JitteredThresholdSplit(
        torch.from_numpy(np.array(x_train)), spec.levels, torch.from_numpy(y_train.astype(np.int64)),
        seed=TRAIN_SEED, amplitude=DIGITS_JITTER,
    )
    return static


@register_dataset(
    "binary-fashion-mnist", "Fashion-MNIST thresholded at half the range (x >= 128), K=2, 55000/5000/10000 split"
)
def load_binary_fashion_mnist(data_dir: str | None = None) -> Dataset:
    return _static("binary-fashion-mnist", _fashion_source, data_dir)


@register_dataset(
    "binary-fashion-mnist-dynamic",
    "Fashion-MNIST, train redrawn each epoch ~ Bernoulli(x/255); validation/test one fixed draw",
)
def load_binary_fashion_mnist_dynamic(data_dir: str | None = None) -> Dataset:
    return _dynamic("binary-fashion-mnist-dynamic", _fashion_source, data_dir)
