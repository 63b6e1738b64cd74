"""Folders of images, read lazily: the folder is scanned once, each image decoded when it is used.

Loading a folder reads every file's header (size and mode, no pixels) and checks its integrity with
Pillow's ``verify`` (PNG: every chunk's CRC, so a truncated or damaged file is named at once, before
training); memory then holds the file names and labels only. An image is decoded, as uint8 (C, H, W),
when an item is asked for, and becomes int64 levels only as that item, for its batch: a 50 000-image
64x64 RGB folder costs its 50 000 paths, not the 4.9 GB its int64 pixels would take (nor 614 MB of
uint8). Decoding a 64x64 PNG costs the loading thread about 0.3 ms (BENCHMARKS.md), cheap beside a training
step; data-loader workers (``--num-workers``) decode in parallel with the model. A file that passes
the scan but fails to decode (a truncated JPEG: Pillow verifies PNGs only) is named when it is read.
Nothing is written anywhere: no cache, and the user's files are only read.

Images larger than ``max_pixels`` (``DEFAULT_MAX_PIXELS``, ``--max-pixels``) are refused from their
header, before any pixel is decoded.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError, option

__all__ = ["IMAGE_SUFFIXES", "ImageFileStore", "read_image", "image_header", "scan_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Modes converted without loss; every other mode except L and RGB is refused.
_LOSSLESS_CONVERSIONS = {"1": "L", "P": "RGB"}
_CHANNELS = {"L": 1, "RGB": 3}


class ImageFileStore:
    """Images decoded from their files one at a time (an :class:`~genmodels.data.base.ExampleStore`).

    Args:
        files: the image files, in the order of their examples.
        size: (width, height) every image must have, or None when sizes may differ (a resize follows).
        max_pixels: the largest width x height read.
    """

    dtype = torch.uint8

    def __init__(self, files: list[Path], size: tuple[int, int] | None, max_pixels: int):
        self.files, self.size, self.max_pixels = files, size, max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> Tensor:
        array, _, size = read_image(self.files[index], self.max_pixels)
        if self.size is not None and size != self.size:
            raise UserError(
                f"{self.files[index]} is now {_wxh(size)}, not the {_wxh(self.size)} it was when the folder was "
                "read; the folder changed: do not edit it while it is used"
            )
        return torch.from_numpy(array)


def _pixel_limit_error(f: Path, size: tuple[int, int], max_pixels: int) -> UserError:
    return UserError(
        f"{f}: {_wxh(size)} = {size[0] * size[1]:,} pixels, more than the limit of {max_pixels:,}; shrink the "
        f"images first (e.g. Pillow's Image.thumbnail) or raise the limit with {option('max_pixels', 'N')}"
    )


def _open(f: Path, max_pixels: int):
    """The image opened (its header read, no pixels decoded), refused if larger than ``max_pixels``."""
    from PIL import Image

    try:
        image = Image.open(f)
    except Image.DecompressionBombError:
        # Pillow refuses headers beyond 2 * Image.MAX_IMAGE_PIXELS by itself, before we see the size.
        raise UserError(
            f"{f}: declares more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels, more than the limit of {max_pixels:,}; "
            "shrink the images first (e.g. Pillow's Image.thumbnail)"
        ) from None
    if image.size[0] * image.size[1] > max_pixels:
        image.close()
        raise _pixel_limit_error(f, image.size, max_pixels)
    return image


def _read_errors():
    from PIL import Image

    # Pillow raises UnidentifiedImageError (an OSError) for unknown data, OSError for truncation,
    # SyntaxError or ValueError from some decoders for malformed headers.
    return OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError


def image_header(f: Path, max_pixels: int) -> tuple[str, tuple[int, int]]:
    """One image's mode (as it will be read: ``1`` becomes ``L``, ``P`` becomes ``RGB``) and
    (width, height), from its header; its data verified but not decoded.

    Raises:
        UserError: naming the file, if it is larger than ``max_pixels``, of an unsupported mode, or
            unreadable.
    """
    try:
        with _open(f, max_pixels) as image:
            mode, size = _LOSSLESS_CONVERSIONS.get(image.mode, image.mode), image.size
            if mode not in _CHANNELS:
                raise UserError(f"{f}: image mode {image.mode} is not supported; {_conversion_hint(image.mode)}")
            image.verify()
    except UserError:
        raise
    except _read_errors() as e:
        raise UserError(f"{f}: cannot read this image ({e}); the file is corrupt or not an image") from e
    return mode, size


def read_image(f: Path, max_pixels: int | None = None) -> tuple[np.ndarray, str, tuple[int, int]]:
    """One image as uint8 (C, H, W), with its (converted) mode and its (width, height).

    ``max_pixels``: refuse an image with more pixels, from its header (default ``DEFAULT_MAX_PIXELS``).
    """
    from .transforms import DEFAULT_MAX_PIXELS

    try:
        with _open(f, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            mode = image.mode
            if mode in _LOSSLESS_CONVERSIONS:
                image = image.convert(_LOSSLESS_CONVERSIONS[mode])
            if image.mode not in _CHANNELS:
                raise UserError(f"{f}: image mode {mode} is not supported; {_conversion_hint(mode)}")
            array = np.asarray(image, dtype=np.uint8)
            size = image.size
            mode = image.mode
    except UserError:
        raise
    except _read_errors() as e:
        raise UserError(f"{f}: cannot read this image ({e}); the file is corrupt or not an image") from e
    if array.ndim == 2:
        array = array[None]  # (1, H, W)
    else:
        array = array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    array = np.ascontiguousarray(array)
    return (array if array.flags.writeable else array.copy()), mode, size


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")  # .ipynb_checkpoints, .DS_Store, ._x.png from macOS


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    """The image files in ``folder`` (and its subfolders if ``recursive``), sorted; hidden files and
    folders skipped, symbolic links to folders not followed.

    ``os.scandir`` tells files from folders without a ``stat`` per file (``Path.is_file`` made a
    third of the scan's time).
    """
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_file():
                if os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                    found.append(Path(entry.path))
            elif recursive and entry.is_dir(follow_symlinks=False):
                found += _images_in(Path(entry.path), recursive=True)
    return sorted(found)


def _labelled_files(folder: Path) -> tuple[list[Path], np.ndarray | None, int | None]:
    """The folder's images and, if they sit in class subfolders, their labels and the class count."""
    loose = _images_in(folder, recursive=False)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))
    per_class = [_images_in(d, recursive=True) for d in class_dirs]
    if not any(per_class):
        if not loose:
            raise UserError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}, also in subfolders)")
        return loose, None, None
    if loose:
        raise UserError(
            f"{folder}: has both class subfolders and images outside them (e.g. {loose[0].name}); "
            "move every image into the subfolder of its class, or remove the subfolders"
        )
    empty = [d.name for d, files in zip(class_dirs, per_class) if not files]
    if empty:
        raise UserError(f"{folder}: class folder(s) {', '.join(empty)} hold no images; remove them or add images")
    files = [f for group in per_class for f in group]
    labels = np.concatenate([np.full(len(g), c, dtype=np.int64) for c, g in enumerate(per_class)])
    return files, labels, len(class_dirs)


def scan_image_folder(
    folder: Path, max_pixels: int, sizes_may_differ: bool = False
) -> tuple[ImageFileStore, np.ndarray | None, int | None, tuple[int, int, int]]:
    """Scan a folder of images (headers only): the store that reads them, their labels (None if
    unlabelled), the number of classes, and the first image's shape (C, H, W).

    Every image must have the first one's mode, and its size unless ``sizes_may_differ`` (a resize
    makes them one size).
    """
    files, labels, num_classes = _labelled_files(folder.resolve())  # read later, maybe from elsewhere
    first_mode, first_size = image_header(files[0], max_pixels)
    for f in files[1:]:
        mode, size = image_header(f, max_pixels)
        if size != first_size and not sizes_may_differ:
            raise UserError(
                f"images differ in size: {files[0]} is {_wxh(first_size)}, {f} is {_wxh(size)} (width x height); "
                "resize or crop them all to one size first, or pass --resize H[xW]"
            )
        if mode != first_mode:
            raise UserError(
                f"images differ in mode: {files[0]} is {first_mode}, {f} is {mode}; convert them all to "
                "grayscale (L) or all to RGB first, e.g. Image.open(f).convert('RGB').save(f)"
            )
    store = ImageFileStore(files, None if sizes_may_differ else first_size, max_pixels)
    return store, labels, num_classes, (_CHANNELS[first_mode], first_size[1], first_size[0])


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _conversion_hint(mode: str) -> str:
    if mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        how = "drop the alpha channel first, e.g. with Pillow: Image.open(f).convert('RGB').save(f) or .convert('L')"
    elif mode.startswith("F"):
        how = (
            "scale the float images to 0..255 first, e.g. for values in [0, 1] "
            "Image.fromarray((np.clip(np.asarray(im), 0, 1) * 255).round().astype(np.uint8))"
        )
    elif mode.startswith("I"):
        how = "scale the images to 8 bits first, e.g. Image.fromarray((np.asarray(im) >> 8).astype(np.uint8))"
    else:
        how = "convert them first, e.g. with Pillow: Image.open(f).convert('RGB').save(f)"
    return "genmodels reads 8-bit grayscale (L) or RGB images; " + how
