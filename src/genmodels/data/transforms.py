"""Image transforms that define or augment a data set: resize, center-crop and horizontal flip.

- **Resize** to H x W (``--resize H[xW]``; one number means a square) with Pillow's bilinear filter.
  When shrinking it is antialiased (a triangle filter as wide as the scale factor); its weights are
  non-negative and sum to one, so every resized value is a convex combination of input values and
  discrete data stay within their levels 0..K-1 (rounded to the nearest level).
- **Center-crop** (``--center-crop``): before resizing, keep the centred region with the output's
  aspect ratio, so nothing is stretched (without ``--resize``: the centred square of side min(H, W)).
- **Horizontal flip** (``--hflip``): each training example is mirrored left-right with probability
  1/2, drawn afresh each epoch from (epoch, index) alone (:func:`flip_drawn`), so a resumed run and
  any number of data-loader workers see the same flips as one uninterrupted run.

Resize and crop define the data, so they apply to every split and change the data set's name
(``fashion-mnist (resize 32x32)``): a model trained on them is evaluated on the same pixels. The flip
is an augmentation of the training split only; validation and test stay unflipped, so runs with and
without it are scored on the same examples. The transform is recorded with the data's source in
run.json and in every checkpoint, and replayed whenever the run's data are loaded again (eval,
classify, mixture, encode: ``data.load_source``); ``--resume`` refuses a different transform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError

__all__ = ["ImageTransform", "parse_size", "flip_drawn", "FLIP_SEED", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 4096 * 4096
"""The largest image (width x height) read or made by default, ``--max-pixels`` to change it: a
16-megapixel photograph passes; a decompression bomb (a small file declaring 10**10 pixels) or a
stray scan is refused from its header, before any pixel is decoded. 16.8 M pixels decode to 50 MB
of RGB."""

FLIP_SEED = 0
"""Seed of the flip draws: like the dynamic binarization's, fixed per data set, so that runs with
different training seeds differ in their order of examples, not in which examples are mirrored."""

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    """One step of SplitMix64 (Steele, Lea & Flood 2014), a bijective 64-bit mixer: an explicit
    formula, so the same draws come out on every Python version, platform and process."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def flip_drawn(seed: int, epoch: int, index: int) -> bool:
    """Whether example ``index`` is mirrored in ``epoch``: the top bit of a hash of (seed, epoch, index).

    >>> [flip_drawn(0, 0, i) for i in range(4)] == [flip_drawn(0, 0, i) for i in range(4)]
    True
    """
    return bool(_splitmix64(_splitmix64(_splitmix64(seed) ^ epoch) ^ index) >> 63)


def parse_size(text: str) -> tuple[int, int]:
    """``"32"`` -> (32, 32), ``"64x48"`` -> (64, 48) as (H, W).

    >>> parse_size("64x48")
    (64, 48)
    >>> parse_size("0")
    Traceback (most recent call last):
    genmodels.errors.UserError: --resize '0': expected H or HxW with positive integers, e.g. 32 or 64x48
    """
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?", text)
    if match is None or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
        raise UserError(f"--resize '{text}': expected H or HxW with positive integers, e.g. 32 or 64x48")
    height = int(match[1])
    return height, int(match[2]) if match[2] is not None else height


@dataclass(frozen=True)
class ImageTransform:
    """What is done to every image of a data set (see the module docstring).

    Args:
        size: (H, W) to resize to, or None to keep the size.
        center_crop: crop the centred region with the output's aspect ratio before resizing.
        hflip: mirror training examples left-right with probability 1/2 (training split only).
    """

    size: tuple[int, int] | None = None
    center_crop: bool = False
    hflip: bool = False

    @classmethod
    def from_flags(cls, resize: str | None, center_crop: bool, hflip: bool) -> ImageTransform | None:
        """The transform the command-line flags ask for, or None when they ask for nothing."""
        if resize is None and not center_crop and not hflip:
            return None
        return cls(parse_size(resize) if resize is not None else None, center_crop, hflip)

    @property
    def changes_pixels(self) -> bool:
        """Whether it defines new pixels (resize or crop) rather than only augmenting (flip)."""
        return self.size is not None or self.center_crop

    def describe(self) -> str:
        """The pixel-defining part, as appended to the data set's name: ``resize 32x32, center-crop``."""
        parts = [] if self.size is None else [f"resize {self.size[0]}x{self.size[1]}"]
        return ", ".join(parts + ["center-crop"] * self.center_crop)

    def flags(self) -> str:
        """The command-line flags that give this transform."""
        parts = [] if self.size is None else [f"--resize {self.size[0]}x{self.size[1]}"]
        return " ".join(parts + ["--center-crop"] * self.center_crop + ["--hflip"] * self.hflip)

    def to_json(self) -> dict[str, Any]:
        return {"size": None if self.size is None else list(self.size), "center_crop": self.center_crop, "hflip": self.hflip}

    @classmethod
    def from_json(cls, obj: Any) -> ImageTransform | None:
        """The transform of :meth:`to_json`'s output (None for None), checked: it is read from files."""
        if obj is None:
            return None
        size = obj.get("size") if isinstance(obj, dict) else None
        good_size = size is None or (
            isinstance(size, list) and len(size) == 2 and all(type(n) is int and n >= 1 for n in size)
        )
        if not (isinstance(obj, dict) and good_size and all(type(obj.get(k)) is bool for k in ("center_crop", "hflip"))):
            raise UserError(f"image transform {obj!r}: expected {{'size': [H, W] or null, 'center_crop': bool, 'hflip': bool}}")
        return cls(None if size is None else (size[0], size[1]), obj["center_crop"], obj["hflip"])

    def output_shape(self, name: str, shape: tuple[int, ...], max_pixels: int) -> tuple[int, ...]:
        """The shape of a transformed example of data set ``name`` whose examples have ``shape``."""
        if len(shape) != 3:
            raise UserError(
                f"{self.flags()} transform images (C, H, W); '{name}' has examples of shape {shape}; drop the flags"
            )
        channels, height, width = shape
        if self.size is not None:
            if self.size[0] * self.size[1] > max_pixels:
                raise UserError(
                    f"--resize {self.size[0]}x{self.size[1]} asks for {self.size[0] * self.size[1]:,} pixels per image, "
                    f"more than the limit of {max_pixels:,}; resize to fewer pixels or raise --max-pixels"
                )
            return channels, *self.size
        if self.center_crop:
            side = min(height, width)
            return channels, side, side
        return shape

    def apply_pixels(self, x: Tensor) -> Tensor:
        """Crop and resize one image (C, H, W) of any size to the output size, keeping its dtype."""
        if self.center_crop:
            height, width = self.size if self.size is not None else (1, 1)  # the aspect ratio kept
            x = _center_crop(x, height, width)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = _resize(x, *self.size)
        return x

    def apply_pixels_to_all(self, x: Tensor) -> Tensor:
        """:meth:`apply_pixels` on every image of (N, C, H, W), into one tensor of x's dtype."""
        first = self.apply_pixels(x[0]) if len(x) else x[0:0]
        out = torch.empty((len(x), *first.shape), dtype=x.dtype)
        for i in range(len(x)):
            out[i] = first if i == 0 else self.apply_pixels(x[i])
        return out


def _center_crop(x: Tensor, ratio_h: int, ratio_w: int) -> Tensor:
    """The centred region of (C, H, W) with aspect ratio ratio_h : ratio_w, as large as fits."""
    height, width = x.shape[-2:]
    if width * ratio_h > height * ratio_w:  # wider than the ratio: crop the width
        new_h, new_w = height, max(1, round(height * ratio_w / ratio_h))
    else:
        new_h, new_w = max(1, round(width * ratio_h / ratio_w)), width
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return x[:, top : top + new_h, left : left + new_w]


def _resize(x: Tensor, height: int, width: int) -> Tensor:
    """Resize (C, H, W) channel by channel with Pillow's bilinear filter (module docstring).

    uint8 channels go through Pillow's 8-bit path (mode L, rounded); every other dtype through
    float32 (mode F), rounded back for integers (exact for levels below 2**24).
    """
    from PIL import Image

    channels = []
    for channel in x.numpy():
        if channel.dtype == np.uint8:
            resized = np.asarray(Image.fromarray(np.ascontiguousarray(channel), "L").resize((width, height), Image.BILINEAR))
        else:
            as_float = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), "F")
            resized = np.asarray(as_float.resize((width, height), Image.BILINEAR))
            if not np.issubdtype(channel.dtype, np.floating):
                resized = np.rint(resized)
            resized = resized.astype(channel.dtype)
        channels.append(resized)
    return torch.from_numpy(np.stack(channels))

