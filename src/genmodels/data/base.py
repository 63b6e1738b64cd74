"""What every data set is: a spec (shape, levels K, classes) and three splits of examples.

Items of discrete data are int64 tensors with values 0..K-1; continuous data (the toy 2D sets, a
float ``.npy``/``.csv``) are float32 and have ``levels = None``. Images are (C, H, W). A split may
keep its examples compactly (uint8) in memory (:class:`Split`) or read them one at a time from a
store, a memory-mapped array or a folder of image files (:class:`LazySplit`); either way an item
becomes int64 only when it is asked for, for its batch.
"""

from __future__ import annotations

import copy

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .transforms import DEFAULT_MAX_PIXELS, FLIP_SEED, ImageTransform, flip_drawn

__all__ = [
    "MAX_LEVELS",
    "DataSpec",
    "Split",
    "ExampleStore",
    "ArrayStore",
    "LazySplit",
    "DynamicBinarizedSplit",
    "JitteredThresholdSplit",
    "Dataset",
    "split_protocol",
    "check_array",
]

MAX_LEVELS = 65_536
"""The largest K genmodels accepts: 16-bit data (0..65 535), the deepest common discrete format.

Models of discrete data hold K numbers per dimension (a softmax over the levels, a K-entry output
layer, one-hot inputs): at K = 65 536 an 8x8 image already needs 4.2 M logits per example, and a K
read from stray values (an ID column, a timestamp, 2**40) would ask for terabytes. Beyond 16 bits
the data are better rescaled to fewer levels, or treated as continuous (stored as floats).
"""


@dataclass(frozen=True)
class DataSpec:
    """The facts about a data set that a model is built from.

    Args:
        name: the data set's registered name (or the path it was read from).
        shape: the shape of one example; images are (C, H, W), vectors (D,).
        levels: K, the number of discrete values (0..K-1) each dimension takes; None if continuous.
        num_classes: how many labels there are, or None for unlabelled data.
    """

    name: str
    shape: tuple[int, ...]
    levels: int | None
    num_classes: int | None = None

    @property
    def dims(self) -> int:
        """D, the number of dimensions of one example (bits/dim divides by it)."""
        return math.prod(self.shape)

    @property
    def is_discrete(self) -> bool:
        return self.levels is not None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def check(self, x: Tensor) -> None:
        """Raise a UserError unless ``x`` is a batch of this data: shape (B, *shape), levels 0..K−1.

        >>> DataSpec("d", (1, 8, 8), 17).check(torch.zeros(2, 64, dtype=torch.int64))
        Traceback (most recent call last):
        genmodels.errors.UserError: data of shape (2, 64) does not fit 'd': expected (B, 1, 8, 8)
        """
        if tuple(x.shape[1:]) != self.shape:
            raise UserError(
                f"data of shape {tuple(x.shape)} does not fit '{self.name}': expected (B, {', '.join(map(str, self.shape))})"
            )
        if self.is_discrete:
            if x.is_floating_point() or x.is_complex():
                raise UserError(f"'{self.name}' holds integer levels 0..{self.levels - 1}, got {x.dtype} values")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) > self.levels - 1):
                raise UserError(
                    f"values {int(x.min())}..{int(x.max())} are outside '{self.name}''s levels 0..{self.levels - 1}"
                )
        elif not torch.isfinite(x).all():
            raise UserError(f"data for '{self.name}' contains NaN or infinite values")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DataSpec:
        """The spec of :meth:`to_json`'s output, checked (it is read from files a user may hand us).

        >>> DataSpec.from_json({"name": "d", "shape": [1, 8, 8], "levels": 2**40})
        Traceback (most recent call last):
        genmodels.errors.UserError: data spec levels 1099511627776: expected None (continuous) or an integer 2..65536
        """
        if not isinstance(obj, dict):
            raise UserError(f"data spec {obj!r}: expected an object with name, shape, levels")
        name, shape, levels, classes = obj["name"], obj["shape"], obj["levels"], obj.get("num_classes")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        if not isinstance(name, str):
            raise UserError(f"data spec name {name!r}: expected a string")
        if not isinstance(shape, list) or not shape or not all(is_int(n) and n > 0 for n in shape):
            raise UserError(f"data spec shape {shape!r}: expected a list of positive integers")
        if levels is not None and not (is_int(levels) and 2 <= levels <= MAX_LEVELS):
            raise UserError(f"data spec levels {levels!r}: expected None (continuous) or an integer 2..{MAX_LEVELS}")
        if classes is not None and not (is_int(classes) and classes >= 1):
            raise UserError(f"data spec num_classes {classes!r}: expected None or a positive integer")
        return cls(name, tuple(shape), levels, classes)


class Split(torch.utils.data.Dataset):
    """One split held in memory; items are dicts ``{"x": ..., "y": ...}`` ("y" only if labelled).

    Discrete ``x`` may be stored compactly (uint8: Fashion-MNIST takes 55 MB instead of 440 MB);
    items are always int64 levels, the dtype every model receives, converted one item at a time.
    A training split of a transform with ``hflip`` mirrors each item with probability 1/2, drawn
    from (epoch, index) (:func:`~genmodels.data.transforms.flip_drawn`).
    """

    hflip: bool = False
    epoch: int = 0

    def __init__(self, x: Tensor, y: Tensor | None = None):
        if y is not None and len(y) != len(x):
            raise ValueError(f"{len(x)} examples but {len(y)} labels")
        self.x = x
        self.y = y

    def __len__(self) -> int:
        return len(self.x)

    @property
    def stored_dtype(self) -> torch.dtype:
        """The dtype the examples are kept in (uint8 for 256 levels); items are int64 or float32."""
        return self.x.dtype

    def stored(self, index: int) -> Tensor:
        """Example ``index`` as kept: its storage dtype, after any resize or crop, never flipped."""
        return self.x[index]

    def example(self, index: int) -> Tensor:
        """Example ``index`` as a model receives it (int64 levels or float32), before any flip."""
        x = self.stored(index)
        return x if x.is_floating_point() else x.to(torch.int64)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        x = self.example(index)
        if self.hflip and flip_drawn(FLIP_SEED, self.epoch, int(index)):
            x = x.flip(-1)  # (C, H, W): mirror the width
        item = {"x": x}
        if self.y is not None:
            item["y"] = self.y[index]
        return item

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch (redraws flips and dynamic binarization)."""
        self.epoch = epoch

    def transformed(self, transform: ImageTransform, train: bool) -> Split:
        """This split with ``transform``'s resize and crop applied to every example (here at once,
        since the split is in memory), and its flip if ``train``."""
        out = copy.copy(self)
        if transform.changes_pixels:
            out.x = transform.apply_pixels_to_all(self.x)
        out.hflip = transform.hflip and train
        return out

    def head(self, n: int | None) -> Split:
        """The first ``n`` examples as a split of the same kind (this split itself when ``n`` is None
        or covers it): a fixed, cheaper subset, e.g. for validation during training."""
        if n is None or n >= len(self):
            return self
        subset = copy.copy(self)
        subset.x = self.x[:n]
        subset.y = None if self.y is None else self.y[:n]
        return subset


class ExampleStore(Protocol):
    """Where a :class:`LazySplit` reads examples from, one at a time."""

    dtype: torch.dtype

    def __len__(self) -> int: ...

    def read(self, index: int) -> Tensor:
        """Example ``index`` in ``dtype``: (C, H, W) for images, (D,) for vectors."""
        ...


class ArrayStore:
    """Examples in one array read by indexing, e.g. a memory-mapped ``.npy`` (only the pages read
    are brought into memory, and the operating system may drop them again)."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.tensor = torch.from_numpy(array)
        self.dtype = self.tensor.dtype

    def __len__(self) -> int:
        return len(self.array)

    def read(self, index: int) -> Tensor:
        return self.tensor[index]


class LazySplit(Split):
    """A split whose examples are read from a store when an item is asked for: ``indices[i]`` is
    example i's position in the store. Memory holds the indices and labels, not the examples.

    ``x`` (every example in one tensor, int64 or float32 as items are) is built on first access
    and kept: it is for small data, metrics and tests; training and evaluation read items.
    """

    def __init__(self, store: ExampleStore, indices: np.ndarray, y: Tensor | None = None):
        if y is not None and len(y) != len(indices):
            raise ValueError(f"{len(indices)} examples but {len(y)} labels")
        self.store = store
        self.indices = np.asarray(indices, dtype=np.int64)
        self.y = y
        self.pixels: ImageTransform | None = None  # resize / crop applied as examples are read
        self._x: Tensor | None = None

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def stored_dtype(self) -> torch.dtype:
        return self.store.dtype

    @property
    def x(self) -> Tensor:
        if self._x is None:
            if isinstance(self.store, ArrayStore) and self.pixels is None:
                x = self.store.tensor[torch.from_numpy(self.indices)]
                self._x = x if x.is_floating_point() else x.to(torch.int64)
            else:
                self._x = torch.stack([self.example(i) for i in range(len(self))])
        return self._x

    def stored(self, index: int) -> Tensor:
        x = self.store.read(int(self.indices[index]))
        return x if self.pixels is None else self.pixels.apply_pixels(x)

    def transformed(self, transform: ImageTransform, train: bool) -> LazySplit:
        """This split with ``transform``'s resize and crop applied as each example is read, and its
        flip if ``train``."""
        out = copy.copy(self)
        out._x = None
        out.pixels = transform if transform.changes_pixels else None
        out.hflip = transform.hflip and train
        return out

    def head(self, n: int | None) -> Split:
        if n is None or n >= len(self):
            return self
        subset = copy.copy(self)
        subset.indices, subset._x = self.indices[:n], None
        subset.y = None if self.y is None else self.y[:n]
        return subset


class DynamicBinarizedSplit(Split):
    """Binary data redrawn each epoch: x_bin ~ Bernoulli(x / (K-1)) (dynamic binarization).

    The draw for example i in epoch e depends only on (seed, e, i), so a resumed run sees the
    same bits as an uninterrupted one, and any number of data-loader workers agree.
    """

    def __init__(self, x_levels: Tensor, levels: int, y: Tensor | None = None, seed: int = 0):
        super().__init__(x_levels, y)
        self.levels = levels
        self.seed = seed
        self.epoch = 0

    def example(self, index: int) -> Tensor:
        # An explicit formula, not hash(): the same seed on every Python version and process.
        seed = (self.seed * 1_000_003 + self.epoch) * 1_000_000_007 + int(index)
        generator = torch.Generator().manual_seed(seed % (2**63 - 1))
        intensity = self.stored(index).to(torch.float32) / (self.levels - 1)
        return self.binarize(intensity, generator).to(torch.int64)

    def binarize(self, intensity: Tensor, generator: torch.Generator) -> Tensor:
        """One draw of the bits from intensities in [0, 1]: here Bernoulli(intensity)."""
        return torch.bernoulli(intensity, generator=generator)


class JitteredThresholdSplit(DynamicBinarizedSplit):
    """Threshold binarization with noise on the threshold, redrawn each epoch: an augmentation.

    x_bin = 1[x / (K-1) + u ≥ c], u ~ U(−a, a) independently per pixel, where c = (⌊K/2⌋ − 1/2) / (K-1)
    is the static threshold's cut: the midpoint between the last level that binarizes to 0 and the
    first that binarizes to 1 (7.5/16 for K = 17, exactly 1/2 for K = 256). Centred there, every
    pixel's more likely bit is its static bit, and levels the same distance either side of the cut
    flip with the same probability; a cut at 1/2 itself would sit *on* level 8 of 17 and turn half
    of those pixels, static 1s, into 0s. With a = 0 it is the static threshold; a > 0 flips only the
    pixels whose intensity lies within a of the cut, i.e. the edges of the strokes, where the static
    threshold's choice is arbitrary. Unlike Bernoulli redraws it keeps the images as clean as the
    thresholded evaluation splits.
    """

    def __init__(self, x_levels: Tensor, levels: int, y: Tensor | None = None, seed: int = 0, amplitude: float = 0.1875):
        super().__init__(x_levels, levels, y, seed)
        if not 0.0 <= amplitude <= 0.5:
            raise ValueError(f"the threshold jitter's amplitude must lie in [0, 0.5], got {amplitude}")
        self.amplitude = amplitude
        self.cut = (levels // 2 - 0.5) / (levels - 1)

    def binarize(self, intensity: Tensor, generator: torch.Generator) -> Tensor:
        u = (torch.rand(intensity.shape, generator=generator) * 2 - 1) * self.amplitude
        return (intensity + u >= self.cut).to(torch.int64)


@dataclass
class Dataset:
    """A data set: its spec and its train / validation / test splits.

    ``source`` is the JSON-able recipe that loads the same data again (a checkpoint stores it).
    """

    spec: DataSpec
    train: Split
    validation: Split
    test: Split
    source: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> Split:
        if name not in ("train", "validation", "test"):
            raise UserError(f"unknown split '{name}'; valid splits: train, validation, test")
        return getattr(self, name)

    def transformed(self, transform: ImageTransform | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> Dataset:
        """This data set with ``transform`` applied (itself for None): resize and crop on every split,
        in the spec's shape and in its name (``fashion-mnist (resize 32x32)``: other pixels are other
        data), and the flip on the training split only. ``source`` is kept; the caller records the
        transform in it (:func:`~genmodels.data.load_dataset` does)."""
        if transform is None:
            return self
        shape = transform.output_shape(self.spec.name, self.spec.shape, max_pixels)
        name = f"{self.spec.name} ({transform.describe()})" if transform.changes_pixels else self.spec.name
        return Dataset(
            replace(self.spec, name=name, shape=shape),
            self.train.transformed(transform, train=True),
            self.validation.transformed(transform, train=False),
            self.test.transformed(transform, train=False),
            dict(self.source),
        )


def split_protocol(n: int, n_test: int, n_validation: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Indices (train, validation, test) of a seeded permutation: test first, then validation.

    This is ../shared/PROTOCOL.md's rule for ``digits`` (n=1797, 360 test, 180 validation, seed 0).
    """
    idx = np.random.default_rng(seed).permutation(n)
    return idx[n_test + n_validation :], idx[n_test : n_test + n_validation], idx[:n_test]


def check_array(x: np.ndarray, where: str, levels: int | None) -> None:
    """Reject data a model cannot use, naming the problem: NaN/inf, values outside 0..K-1.

    The passes go a block of examples at a time, so a memory-mapped array is never copied whole.
    """
    if x.size == 0:
        raise UserError(f"{where}: no data")
    if np.issubdtype(x.dtype, np.floating):
        rows = x.reshape(len(x), -1) if x.ndim else x.reshape(1, 1)
        step = max(1, (64 << 20) // max(1, rows[:1].nbytes))
        bad, first = 0, None
        for start in range(0, len(rows), step):
            finite = np.isfinite(rows[start : start + step])
            if not finite.all():
                bad += int((~finite).sum())
                first = start + int(np.flatnonzero(~finite.all(axis=1))[0]) if first is None else first
        if bad:
            raise UserError(
                f"{where}: {bad} value{'s are' if bad > 1 else ' is'} NaN or infinite (the first in example "
                f"{first}, counting from 0); remove or impute them first"
            )
    if levels is not None:
        lo, hi = x.min(), x.max()
        if lo < 0 or hi > levels - 1:
            raise UserError(
                f"{where}: values must be integers in 0..{levels - 1}, found {lo}..{hi}; "
                "rescale the data or state the number of levels"
            )


LoaderFn = Callable[..., Dataset]
