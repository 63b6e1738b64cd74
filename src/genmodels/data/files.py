"""A user's own data: a folder of images, a ``.npy`` array or a ``.csv`` table.

What each becomes:

- **Folder of images** (png, jpg, jpeg, bmp, gif, webp, tif, tiff; read with Pillow, lazily: see
  ``data.images``): every image must have the same mode, and the same size unless ``--resize`` makes
  them one size; images above ``--max-pixels`` are refused from their header. Grayscale (``L``) gives (1, H, W), ``RGB`` gives (3, H, W); K = 256.
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
  header declaring more data than the file holds) is refused before anything is allocated. The file
  is memory-mapped (copy-on-write: never written): bool, uint8, uint16 (int8, int16 with no negative
  value) and float32 arrays stay mapped, so only the examples read take memory; other integers are
  converted to uint8 (K <= 256) or uint16, other floats to float32, a chunk at a time. Save uint8
  to train on a large array without holding it.
- **.csv**: comma-separated numbers, one example per row, shape (D,). The first row is a header if
  none of its cells is a number. All-integral values give discrete data with K = max + 1 (at least 2;
  negatives and K beyond 65 536 refused); otherwise continuous. Every cell must be a number: a .csv
  carries no labels, so a text column (e.g. class names) is refused with a note to drop it.

The data set's name (``DataSpec.name``) is the file's resolved absolute path, the same string that
``Dataset.source`` records, so a checkpoint's data, reloaded from any working folder, have an equal
spec.

Discrete data are kept in the smallest unsigned type that holds their levels (``storage_dtype``:
uint8 up to 256 levels) and become int64 one item at a time, as a batch is assembled.

Splits: ``idx = np.random.default_rng(0).permutation(N)``; test = ``idx[:n]``, validation =
``idx[n:2n]``, train = the rest, with n = max(1, N // 10); at least 3 examples are needed.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import MAX_LEVELS, ArrayStore, DataSpec, Dataset, ExampleStore, LazySplit, check_array, split_protocol
from .images import IMAGE_SUFFIXES, read_image, scan_image_folder
from .transforms import DEFAULT_MAX_PIXELS, ImageTransform
from .checks import warn_about_continuous_data

__all__ = ["load_path", "path_exists", "read_image", "storage_dtype", "IMAGE_SUFFIXES", "SUPPORTED"]

SUPPORTED = "a folder of images (" + ", ".join(s[1:] for s in IMAGE_SUFFIXES) + "), a .npy array or a .csv table"
MIN_EXAMPLES = 3  # one each for train, validation and test
_NPY_MAGIC = b"\x93NUMPY"  # the first six bytes of every .npy file (numpy.lib.format)
_ZIP_MAGIC = b"PK\x03\x04"  # an .npz archive is a zip file
_CHUNK_BYTES = 64 << 20  # whole-array checks and conversions go this many bytes at a time


def load_path(
    path: Path, transform: ImageTransform | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Dataset:
    """Load a user's data from a folder of images, a ``.npy`` or a ``.csv`` file (see the module doc).

    The spec's name is the resolved absolute path, so that the same data read from another working
    folder (``genmodels eval`` of a run trained with ``--data good.npy``) have an equal spec.

    Args:
        path: the folder or file.
        transform: resize / crop / flip images (see ``data.transforms``); with a resize, the images of
            a folder may differ in size.
        max_pixels: the largest image (width x height) a folder may hold; larger ones are refused
            from their header, before they are decoded.

    Raises:
        UserError: for a missing path, an unsupported file, or data a model cannot use, naming the
            file and the problem.
    """
    path = Path(path).expanduser()
    if not path_exists(path):
        raise UserError(f"{path}: no such file or folder; give {SUPPORTED}")
    name = str(path.resolve())
    try:
        if path.is_dir():
            resized = transform is not None and transform.size is not None
            store, y, num_classes, shape = scan_image_folder(path, max_pixels, sizes_may_differ=resized)
            spec = DataSpec(name, shape, 256, num_classes)
        elif path.suffix.lower() in (".npy", ".csv"):
            x, levels = _read_npy(path) if path.suffix.lower() == ".npy" else _read_csv(path)
            store, y, spec = ArrayStore(x), None, DataSpec(name, tuple(x.shape[1:]), levels, None)
            if levels is None:  # continuous: say so when the values look discrete or a column is constant
                warn_about_continuous_data(x, str(path))
        else:
            raise UserError(f"{path}: unsupported file type '{path.suffix or '(no suffix)'}'; give {SUPPORTED}")
    except MemoryError as e:
        raise UserError(f"{path}: too large to hold in memory ({e}); use a smaller subset of the data") from None
    return _with_splits(store, y, spec, path).transformed(transform, max_pixels)


def path_exists(path: Path) -> bool:
    """``path.exists()``, but a name the system refuses (too long, ...) is a UserError, not an OSError."""
    try:
        return path.exists()
    except (OSError, ValueError) as e:
        shown = str(path) if len(str(path)) <= 80 else str(path)[:77] + "..."
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise UserError(f"{shown}: not a usable path ({reason}); give {SUPPORTED}") from None


def _with_splits(store: ExampleStore, y: np.ndarray | None, spec: DataSpec, path: Path) -> Dataset:
    n = len(store)
    if n < MIN_EXAMPLES:
        raise UserError(f"{path}: {n} example(s); at least {MIN_EXAMPLES} are needed (train, validation, test)")
    n_held_out = max(1, n // 10)
    train, validation, test = split_protocol(n, n_test=n_held_out, n_validation=n_held_out, seed=0)
    yt = None if y is None else torch.from_numpy(y)
    make = lambda idx: LazySplit(store, idx, None if yt is None else yt[idx])  # noqa: E731
    return Dataset(spec, make(train), make(validation), make(test))


def storage_dtype(levels: int) -> np.dtype:
    """The smallest unsigned integer type that holds levels 0..K-1: uint8 up to 256 levels, else uint16.

    >>> storage_dtype(256), storage_dtype(257)
    (dtype('uint8'), dtype('uint16'))
    """
    return np.dtype(np.uint8) if levels <= 256 else np.dtype(np.uint16)


def _row_chunks(x: np.ndarray) -> Iterator[slice]:
    """Slices of the first axis of about ``_CHUNK_BYTES`` each (whole-array passes over a memory map)."""
    rows = max(1, _CHUNK_BYTES // max(1, x[:1].nbytes))
    for start in range(0, len(x), rows):
        yield slice(start, start + rows)


def _compact(x: np.ndarray, levels: int) -> np.ndarray:
    """Integer levels 0..K-1 (checked) in their storage dtype: a view when the bytes already are
    (uint8, int8 >= 0, bool; uint16, int16 >= 0), else a copy made a chunk at a time."""
    dtype = storage_dtype(levels)
    if x.dtype == np.bool_ or (x.dtype.itemsize == dtype.itemsize and x.dtype.isnative):
        return x.view(dtype)  # values are 0..K-1, so a signed type's bytes read the same unsigned
    out = np.empty(x.shape, dtype=dtype)
    for rows in _row_chunks(x):
        out[rows] = x[rows]
    return out


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


def _as_float32(x: np.ndarray, where: str) -> np.ndarray:
    """Continuous data as float32 (float32 itself as it is, e.g. memory-mapped), refusing NaN/inf and
    values float32 cannot hold; the passes go a chunk at a time, so a memory map stays one."""
    check_array(x, where, None)
    if x.dtype == np.float32:
        return x
    biggest = max(float(np.abs(x[rows]).max()) for rows in _row_chunks(x))
    if biggest > float(np.finfo(np.float32).max):
        raise UserError(f"{where}: values up to {biggest:.3g} exceed float32's range (3.4e38); rescale them")
    out = np.empty(x.shape, dtype=np.float32)
    for rows in _row_chunks(x):
        out[rows] = x[rows]
    return out


# --- .npy -------------------------------------------------------------------------------------------
def _read_npy(path: Path) -> tuple[np.ndarray, int | None]:
    """The array in the dtype a split keeps: integers (and bool) in their storage dtype (uint8 up to
    256 levels, else uint16), floats as float32. Memory-mapped when its bytes serve as they are
    (see ``_check_npy_header``), else converted a chunk at a time."""
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
    mappable = _check_npy_header(path)
    try:
        # Copy-on-write ("c"), not read-only: the file is never written, and a stray in-place write
        # to a tensor over the pages changes a private copy instead of crashing on a read-only page.
        x = np.load(path, allow_pickle=False, mmap_mode="c" if mappable else None)
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

    if x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer):
        if x.size == 0:
            raise UserError(f"{where}: no data")
        if x.dtype == np.uint64 and x.max() > np.iinfo(np.int64).max:
            raise UserError(f"{where}: values up to {x.max()} do not fit in int64")
        levels: int | None = 2 if x.dtype == np.bool_ else 256 if x.dtype == np.uint8 else _discrete_levels(x, where)
        x = _compact(x, levels)
    elif np.issubdtype(x.dtype, np.floating):
        levels = None
        x = _as_float32(x, where)
    else:
        raise UserError(f"{where}: unsupported dtype {x.dtype}; save integers, booleans or floats")
    return x if x.flags.c_contiguous else np.ascontiguousarray(x), levels


_MAPPABLE_KINDS = "biuf"  # bool, signed and unsigned integers, floats


def _check_npy_header(path: Path) -> bool:
    """Refuse a .npy whose header declares more data than the file holds, before np.load allocates it
    (a damaged header declaring 10**13 values would otherwise ask for terabytes); return whether the
    array can be memory-mapped and used as it is: C order, native byte order, not empty, and of a
    dtype a split keeps (bool or integers, whose bytes serve as levels; float32)."""
    from numpy.lib import format as npy_format

    try:
        with open(path, "rb") as handle:
            version = npy_format.read_magic(handle)
            if version == (1, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran_order, dtype = npy_format.read_array_header_2_0(handle)
            else:
                return False  # format 3.0 (utf-8 field names): np.load checks it
            have = path.stat().st_size - handle.tell()
    except (OSError, ValueError, SyntaxError, TypeError) as e:
        raise UserError(f"{path}: not a valid .npy file (bad header: {e}); write it with np.save(path, array)") from e
    if dtype.hasobject or any(n < 0 for n in shape):
        return False  # refused by np.load, with its own message
    need = math.prod(shape) * dtype.itemsize
    if need > have:
        raise UserError(
            f"{path}: not a valid .npy file (truncated: its header declares shape {shape} of {dtype}, "
            f"{need} bytes, the file holds {have}); write it again with np.save(path, array)"
        )
    return dtype.kind in _MAPPABLE_KINDS and dtype.isnative and not fortran_order and need > 0 and len(shape) >= 1


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
        x = values.astype(storage_dtype(levels))
    else:
        levels = None
        x = _as_float32(values, where)
    return x, levels
