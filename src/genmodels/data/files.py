"""A user's own data: a folder of images, a ``.npy`` array or a ``.csv`` table.

What each becomes:

- **Folder of images** (png, jpg, jpeg, bmp, gif, webp, tif, tiff; read with Pillow): every image must
  have the same size and mode. Grayscale (``L``) gives (1, H, W), ``RGB`` gives (3, H, W); K = 256.
  Two modes are converted without loss: ``1`` (bilevel) to ``L`` (values 0 and 255) and ``P``
  (palette) to ``RGB`` (a palette only encodes colours). Modes that would lose information if
  converted silently (alpha in ``LA``/``RGBA``/``PA``, 16-bit or float ``I;16``/``I``/``F``,
  ``CMYK``, ...) are refused with a note on how to convert them. Of an animated GIF the first frame
  is read. If the images sit in subfolders, the sorted subfolder names are the class labels 0..C-1
  (like torchvision's ImageFolder); else the data are unlabelled. Hidden files and folders (``.*``)
  and files with other suffixes are skipped.
- **.npy** (read with ``allow_pickle=False``; object arrays are refused, never unpickled): the first
  axis indexes examples. bool gives K = 2, uint8 K = 256, other integers K = max + 1 (at least 2;
  negative values and K beyond ``MAX_LEVELS`` = 65 536 are refused); floats are continuous
  (float32, ``levels = None``). (N,) gives shape (1,), (N, D) gives (D,), (N, H, W) gives
  (1, H, W), (N, C, H, W) is kept (but an (N, H, W, C) look, with 1, 3 or 4 last and more than 4
  second, is refused with a transpose hint). A file that is not a .npy (random bytes, an .npz, a
  header declaring more data than the file holds) is refused before anything is allocated.
- **.csv**: comma-separated numbers, one example per row, shape (D,). The first row is a header if
  none of its cells is a number. All-integral values give discrete data with K = max + 1 (at least 2;
  negatives and K beyond 65 536 refused); otherwise continuous. Every cell must be a number: a .csv
  carries no labels, so a text column (e.g. class names) is refused with a note to drop it.

The data set's name (``DataSpec.name``) is the file's resolved absolute path, the same string that
``Dataset.source`` records, so a checkpoint's data, reloaded from any working folder, have an equal
spec.

Splits: ``idx = np.random.default_rng(0).permutation(N)``; test = ``idx[:n]``, validation =
``idx[n:2n]``, train = the rest, with n = max(1, N // 10); at least 3 examples are needed.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import MAX_LEVELS, DataSpec, Dataset, Split, check_array, split_protocol
from .checks import warn_about_continuous_data

__all__ = ["load_path", "path_exists", "read_image", "IMAGE_SUFFIXES", "SUPPORTED"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SUPPORTED = "a folder of images (" + ", ".join(s[1:] for s in IMAGE_SUFFIXES) + "), a .npy array or a .csv table"
MIN_EXAMPLES = 3  # one each for train, validation and test
_NPY_MAGIC = b"\x93NUMPY"  # the first six bytes of every .npy file (numpy.lib.format)
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz archive is a zip file

# Modes converted without loss; every other mode except L and RGB is refused.
_LOSSLESS_CONVERSIONS = {"1": "L", "P": "RGB"}
_CHANNELS = {"L": 1, "RGB": 3}


def load_path(path: Path) -> Dataset:
    """Load a user's data from a folder of images, a ``.npy`` or a ``.csv`` file (see the module doc).

    The spec's name is the resolved absolute path, so that the same data read from another working
    folder (``genmodels eval`` of a run trained with ``--data good.npy``) have an equal spec.

    Raises:
        UserError: for a missing path, an unsupported file, or data a model cannot use, naming the
            file and the problem.
    """
    path = Path(path).expanduser()
    if not path_exists(path):
        raise UserError(f"{path}: no such file or folder; give {SUPPORTED}")
    try:
        if path.is_dir():
            x, y, num_classes = _read_image_folder(path)
            levels: int | None = 256
        elif path.suffix.lower() == ".npy":
            x, levels = _read_npy(path)
            y, num_classes = None, None
        elif path.suffix.lower() == ".csv":
            x, levels = _read_csv(path)
            y, num_classes = None, None
        else:
            raise UserError(f"{path}: unsupported file type '{path.suffix or '(no suffix)'}'; give {SUPPORTED}")
    except MemoryError as e:
        raise UserError(f"{path}: too large to hold in memory ({e}); use a smaller subset of the data") from None
    if levels is None:
        warn_about_continuous_data(x, str(path))
    name = str(path.resolve())
    return _with_splits(x, y, DataSpec(name, tuple(x.shape[1:]), levels, num_classes), path)


def path_exists(path: Path) -> bool:
    """``path.exists()``, but a name the system refuses (too long, ...) is a UserError, not an OSError."""
    try:
        return path.exists()
    except (OSError, ValueError) as e:
        shown = str(path) if len(str(path)) <= 80 else str(path)[:77] + "..."
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UserError(f"{shown}: not a usable path ({reason}); give {SUPPORTED}") from None


def _with_splits(x: np.ndarray, y: np.ndarray | None, spec: DataSpec, path: Path) -> Dataset:
    n = len(x)
    if n < MIN_EXAMPLES:
        raise UserError(f"{path}: {n} example(s); at least {MIN_EXAMPLES} are needed (train, validation, test)")
    n_held_out = max(1, n // 10)
    train, validation, test = split_protocol(n, n_test=n_held_out, n_validation=n_held_out, seed=0)
    xt = torch.from_numpy(x)
    yt = None if y is None else torch.from_numpy(y)
    make = lambda idx: Split(xt[idx], None if yt is None else yt[idx])  # noqa: E731
    return Dataset(spec, make(train), make(validation), make(test))


def _discrete_levels(x: np.ndarray, where: str) -> int:
    """K for integer data: max + 1, at least 2 (one level would make every model trivially exact).

    K beyond ``MAX_LEVELS`` is refused (see its note): models hold K numbers per dimension.
    """
    lo, hi = x.min(), x.max()
    if lo < 0:
        raise UserError(
            f"{where}: negative values (min {lo}); discrete data must be counts 0..K-1, "
            "so shift them, or store floats for continuous data"
        )
    if hi > MAX_LEVELS - 1:
        raise UserError(
            f"{where}: values up to {int(hi)} would mean K = {int(hi) + 1} discrete levels, more than the "
            f"{MAX_LEVELS} (16 bits) genmodels handles; rescale them, e.g. to 0..255 with "
            "x * 255 // x.max(), or store floats for continuous data"
        )
    return max(int(hi) + 1, 2)


# --- folders of images --------------------------------------------------------------------------
def _visible(p: Path) -> bool:
    return not p.name.startswith(".")  # .ipynb_checkpoints, .DS_Store, ._x.png from macOS


def _images_in(folder: Path, recursive: bool) -> list[Path]:
    files = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in files
        if p.is_file()
        and p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    loose = _images_in(folder, recursive=False)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))
    per_class = [_images_in(d, recursive=True) for d in class_dirs]
    labelled = any(per_class)
    if labelled:
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
    else:
        files, labels = loose, None
    if not files:
        raise UserError(f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}, also in subfolders)")

    arrays = []
    first: tuple[Path, str, tuple[int, int]] | None = None
    for f in files:
        array, mode, size = read_image(f)
        if first is None:
            first = (f, mode, size)
        elif size != first[2]:
            raise UserError(
                f"images differ in size: {first[0]} is {_wxh(first[2])}, {f} is {_wxh(size)} (width x height); "
                "resize or crop them all to one size first"
            )
        elif mode != first[1]:
            raise UserError(
                f"images differ in mode: {first[0]} is {first[1]}, {f} is {mode}; convert them all to "
                "grayscale (L) or all to RGB first, e.g. Image.open(f).convert('RGB').save(f)"
            )
        arrays.append(array)
    x = np.stack(arrays).astype(np.int64)  # (N, C, H, W)
    return x, labels, (len(class_dirs) if labelled else None)


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


def _as_float32(x: np.ndarray, where: str) -> np.ndarray:
    """Continuous data as float32, refusing NaN/inf and values float32 cannot hold."""
    check_array(x, where, None)
    biggest = float(np.abs(x).max())
    if biggest > float(np.finfo(np.float32).max):
        raise UserError(f"{where}: values up to {biggest:.3g} exceed float32's range (3.4e38); rescale them")
    return x.astype(np.float32)


def read_image(f: Path) -> tuple[np.ndarray, str, tuple[int, int]]:
    """One image as uint8 (C, H, W), with its (converted) mode and its (width, height)."""
    from PIL import Image

    try:
        with Image.open(f) as image:
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
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        # Pillow raises UnidentifiedImageError (an OSError) for unknown data, OSError for truncation,
        # SyntaxError or ValueError from some decoders for malformed headers.
        raise UserError(f"{f}: cannot read this image ({e}); the file is corrupt or not an image") from e
    if array.ndim == 2:
        array = array[None]  # (1, H, W)
    else:
        array = array.transpose(2, 0, 1)  # (H, W, C) -> (C, H, W)
    return array, mode, size


# --- .npy -------------------------------------------------------------------------------------------
def _read_npy(path: Path) -> tuple[np.ndarray, int | None]:
    try:
        with open(path, "rb") as handle:
            magic = handle.read(len(_NPY_MAGIC))
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e})") from e
    if magic.startswith(_ZIP_MAGIC):
        raise UserError(f"{path}: is an .npz archive, not a single array; save one array with np.save")
    if magic != _NPY_MAGIC:
        # Without this check np.load would try to unpickle the bytes, and report "object arrays".
        raise UserError(
            f"{path}: not a valid .npy file (it does not start with numpy's magic bytes \\x93NUMPY); "
            "write it with np.save(path, array)"
        )
    _check_npy_size(path)
    try:
        x = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UserError(
                f"{path}: holds Python objects (an object array), which genmodels will not unpickle; "
                "save a numeric array instead, e.g. np.save(path, np.asarray(data, dtype=np.float32))"
            ) from e
        raise UserError(f"{path}: not a valid .npy file ({e})") from e
    except (OSError, EOFError) as e:
        raise UserError(f"{path}: not a valid .npy file ({e}); write it with np.save(path, array)") from e

    where = str(path)
    if x.ndim == 0:
        raise UserError(f"{where}: a single number; the first axis must index examples")
    if x.ndim > 4:
        raise UserError(f"{where}: array of shape {x.shape}; expected (N,), (N, D), (N, H, W) or (N, C, H, W)")
    # (N, H, W, C) with C = 1, 3 or 4 is the usual mistake; more than 4 channels first is rare.
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] > 4:
        raise UserError(
            f"{where}: shape {x.shape} looks channels-last (N, H, W, C); genmodels wants (N, C, H, W): "
            "save x.transpose(0, 3, 1, 2)"
        )
    if x.ndim == 1:
        x = x[:, None]  # N scalars: examples of one dimension
    elif x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)

    if x.dtype == np.bool_:
        levels: int | None = 2
        x = x.astype(np.int64)
    elif x.dtype == np.uint8:
        levels = 256
        x = x.astype(np.int64)
    elif np.issubdtype(x.dtype, np.integer):
        if x.size == 0:
            raise UserError(f"{where}: no data")
        if x.dtype == np.uint64 and x.max() > np.iinfo(np.int64).max:
            raise UserError(f"{where}: values up to {x.max()} do not fit in int64")
        levels = _discrete_levels(x, where)
        x = x.astype(np.int64)
    elif np.issubdtype(x.dtype, np.floating):
        levels = None
        x = _as_float32(x, where)
    else:
        raise UserError(f"{where}: unsupported dtype {x.dtype}; save integers, booleans or floats")
    check_array(x, where, levels)
    return np.ascontiguousarray(x), levels


def _check_npy_size(path: Path) -> None:
    """Refuse a .npy whose header declares more data than the file holds, before np.load allocates it
    (a damaged header declaring 10**13 values would otherwise ask for terabytes)."""
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = npy_format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = npy_format.read_array_header_2_0(handle)
            else:
                return  # format 3.0 (utf-8 field names): np.load checks it
            have = path.stat().st_size - handle.tell()
    except (OSError, ValueError, SyntaxError, TypeError) as e:
        raise UserError(f"{path}: not a valid .npy file (bad header: {e}); write it with np.save(path, array)") from e
    if dtype.hasobject or any(n < 0 for n in shape):
        return  # refused by np.load below, with its own message
    need = math.prod(shape) * dtype.itemsize
    if need > have:
        raise UserError(
            f"{path}: not a valid .npy file (truncated: its header declares shape {shape} of {dtype}, "
            f"{need} bytes, the file holds {have}); write it again with np.save(path, array)"
        )


# --- .csv -------------------------------------------------------------------------------------------
def _number(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def _read_csv(path: Path) -> tuple[np.ndarray, int | None]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig drops the byte-order mark Excel writes
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read as UTF-8 text ({e})") from e
    # (file line number, cells); blank lines (often a trailing one) are skipped.
    reader = csv.reader(io.StringIO(text))
    try:
        rows = [(i, [c.strip() for c in r]) for i, r in enumerate(reader, 1) if any(c.strip() for c in r)]
    except csv.Error as e:  # e.g. a cell longer than the csv module's field limit, an open quote
        raise UserError(
            f"{path}: not a readable .csv table (line {reader.line_num}: {e}); save plain comma-separated numbers"
        ) from e
    if not rows:
        raise UserError(f"{path}: no data")

    header: list[str] | None = None
    if all(_number(c) is None for c in rows[0][1]):
        header = rows[0][1]
        rows = rows[1:]
        if not rows:
            raise UserError(f"{path}: only a header row, no data")
    width = len(header) if header is not None else len(rows[0][1])
    width_from = "the header" if header is not None else f"row {rows[0][0]}"

    values = np.empty((len(rows), width), dtype=np.float64)
    for r, (line, cells) in enumerate(rows):
        if len(cells) != width:
            raise UserError(f"{path}: row {line} has {len(cells)} cells, expected {width} (as in {width_from})")
        for c, cell in enumerate(cells):
            v = _number(cell)
            if v is None:
                name = f" ('{header[c]}')" if header is not None else ""
                separated = ";" in cell or "\t" in cell
                text_column = all(_number(row[c]) is None for _, row in rows if len(row) == width)
                if header is not None and text_column and not separated:
                    raise UserError(
                        f"{path}: column {c + 1}{name} holds text (e.g. {cell!r}), not numbers; a .csv must be "
                        "all numbers and genmodels reads no labels from it: drop the column, or write its values "
                        "as numbers 0..K-1 if they are data (labelled images go in a folder with one subfolder "
                        "per class)"
                    )
                hint = ""
                if separated:
                    hint = "; genmodels reads comma-separated values"
                elif r == 0 and header is None:
                    hint = "; a header row must have no numeric names"
                shown = repr(cell) if cell else "an empty cell"
                raise UserError(f"{path}: row {line}, column {c + 1}{name}: {shown} is not a number{hint}")
            values[r, c] = v

    where = str(path)
    check_array(values, where, None)
    if np.array_equal(values, np.round(values)):
        levels: int | None = _discrete_levels(values, where)
        x = values.astype(np.int64)
    else:
        levels = None
        x = _as_float32(values, where)
    return x, levels
