"""``fashion-mnist``: Zalando's 28x28 grayscale clothing images, 256 levels, read from IDX files.

The files come from Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/``)
or from ``--data-dir DIR``. Splits follow ../shared/PROTOCOL.md: train = the official training set's
first 55 000 images, validation = its last 5 000, test = the official 10 000.

Debian recompressed the gzip files, so their MD5s differ from the upstream README. The decompressed
arrays are what matter, so each one is checked against a SHA-256 of its bytes recorded below.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .base import DataSpec, Dataset, Split
from .registry import register_dataset

__all__ = [
    "DEFAULT_DIR",
    "IDX_FILES",
    "SPEC",
    "fashion_mnist_available",
    "fashion_mnist_arrays",
    "fashion_mnist_splits",
    "load_fashion_mnist",
    "read_idx",
]

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
INSTALL_HINT = "sudo apt-get update && sudo apt-get install dataset-fashion-mnist"
LEVELS = 256
N_VALIDATION = 5_000  # the last 5 000 of the official 60 000 training images
SPEC = DataSpec("fashion-mnist", (1, 28, 28), LEVELS, num_classes=10)


@dataclass(frozen=True)
class IdxFile:
    """One IDX file: its name (without ``.gz``), the array it must hold, and that array's SHA-256."""

    stem: str
    shape: tuple[int, ...]
    sha256: str


# SHA-256 of the decompressed payload (the uint8 array's bytes, header excluded), computed from
# Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1 as
# hashlib.sha256(np.frombuffer(gzip.open(f).read(), np.uint8, offset=16 or 8).tobytes()).
# The first test labels are 9 2 1 1 6 1 4 6 5 7 and every class has 6 000 / 1 000 images, as upstream.
IDX_FILES: dict[str, IdxFile] = {
    # Ordered smallest first, so a broken copy is reported before 47 MB are decompressed.
    "train-labels": IdxFile(
        "train-labels-idx1-ubyte", (60_000,), "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7"
    ),
    "test-labels": IdxFile(
        "t10k-labels-idx1-ubyte", (10_000,), "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9"
    ),
    "test-images": IdxFile(
        "t10k-images-idx3-ubyte", (10_000, 28, 28), "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a"
    ),
    "train-images": IdxFile(
        "train-images-idx3-ubyte", (60_000, 28, 28), "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012"
    ),
}

_UBYTE = 0x08  # IDX type code of unsigned bytes, the third byte of the magic number


def _candidate_folders(data_dir: str | None) -> list[Path]:
    # --data-dir may name the folder holding the files, or a parent holding a fashion-mnist/ folder
    # (one --data-dir shared by several data sets).
    if data_dir is None:
        return [DEFAULT_DIR]
    folder = Path(data_dir).expanduser()
    return [folder, folder / "fashion-mnist"]


def _find_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _locate(data_dir: str | None) -> dict[str, Path]:
    """The four files' paths, or a UserError saying where we looked and how to get them."""
    folders = _candidate_folders(data_dir)
    best: dict[str, Path] = {}
    for folder in folders:
        found = {key: p for key, f in IDX_FILES.items() if (p := _find_file(folder, f.stem)) is not None}
        if len(found) == len(IDX_FILES):
            return found
        if len(found) > len(best):
            best = found
    looked = " or ".join(str(f) for f in folders)
    if best:
        missing = ", ".join(IDX_FILES[k].stem + "[.gz]" for k in IDX_FILES if k not in best)
        raise UserError(
            f"Fashion-MNIST is incomplete in {best[next(iter(best))].parent}: missing {missing}; "
            f"reinstall with `{INSTALL_HINT}` or pass --data-dir DIR holding all four IDX files"
        )
    raise UserError(
        f"Fashion-MNIST not found in {looked}; install it with `{INSTALL_HINT}` "
        "or pass --data-dir DIR, a folder holding the four IDX files (.gz or uncompressed)"
    )


def read_idx(path: Path, shape: tuple[int, ...], sha256: str | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzipped or not) and check its header, size and hash.

    Args:
        path: the file; a ``.gz`` suffix means gzip-compressed.
        shape: the array shape the header must declare.
        sha256: the expected SHA-256 of the array's bytes, or None to skip that check.

    Returns:
        A read-only uint8 array of ``shape``.

    Raises:
        UserError: naming the file, if it cannot be read, is not such an IDX file, or differs.
    """
    header_len = 4 + 4 * len(shape)
    expected_len = header_len + math.prod(shape)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                raw = f.read(expected_len + 1)  # +1 detects trailing data without inflating a bomb
        else:
            with open(path, "rb") as f:
                raw = f.read(expected_len + 1)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise UserError(f"{path}: cannot read ({e}); the file is corrupt, reinstall or re-download it") from e

    magic = raw[:4]
    expected_magic = bytes([0, 0, _UBYTE, len(shape)])
    if len(raw) < 4 or magic != expected_magic:
        raise UserError(
            f"{path}: not an IDX file of {len(shape)}-D unsigned bytes "
            f"(magic number {magic.hex() or 'missing'}, expected {expected_magic.hex()}); the file is corrupt"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(len(shape)))
    if dims != shape:
        raise UserError(f"{path}: header declares shape {dims}, expected {shape}; this is not Fashion-MNIST")
    if len(raw) != expected_len:
        what = "truncated" if len(raw) < expected_len else "longer than its header says"
        raise UserError(f"{path}: {what} ({len(raw) - header_len} data bytes, expected {math.prod(shape)})")

    payload = memoryview(raw)[header_len:]
    if sha256 is not None:
        digest = hashlib.sha256(payload).hexdigest()
        if digest != sha256:
            raise UserError(
                f"{path}: contents differ from Fashion-MNIST (SHA-256 {digest[:12]}..., expected "
                f"{sha256[:12]}...); the file is corrupt or another data set, reinstall or re-download it"
            )
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


@functools.lru_cache(maxsize=2)
def _decoded(paths: tuple[tuple[str, Path], ...]) -> dict[str, np.ndarray]:
    # Keyed on the resolved file paths: decompressing and hashing 55 MB takes about a second, and a
    # test session or a sweep loads the same folder many times. The arrays are read-only, so sharing
    # them between callers is safe.
    return {key: read_idx(path, IDX_FILES[key].shape, IDX_FILES[key].sha256) for key, path in paths}


def fashion_mnist_arrays(data_dir: str | None = None) -> dict[str, np.ndarray]:
    """The four official arrays, read-only uint8: ``train-images`` (60000, 28, 28), ``train-labels``,
    ``test-images`` (10000, 28, 28), ``test-labels``; decoded once per folder and process."""
    found = _locate(data_dir)
    return _decoded(tuple((key, found[key].resolve()) for key in IDX_FILES))


def fashion_mnist_splits(data_dir: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The protocol splits as read-only views: ``{split: (x uint8 (N, 1, 28, 28), y uint8 (N,))}``."""
    a = fashion_mnist_arrays(data_dir)
    train_x = a["train-images"].reshape(-1, 1, 28, 28)
    train_y = a["train-labels"]
    cut = len(train_x) - N_VALIDATION
    return {
        "train": (train_x[:cut], train_y[:cut]),
        "validation": (train_x[cut:], train_y[cut:]),
        "test": (a["test-images"].reshape(-1, 1, 28, 28), a["test-labels"]),
    }


def fashion_mnist_available(data_dir: str | None = None) -> bool:
    """Whether the four files are present (their contents are checked only when loaded)."""
    try:
        _locate(data_dir)
    except UserError:
        return False
    return True


@register_dataset(
    "fashion-mnist",
    "Fashion-MNIST 28x28 grayscale, 256 levels, 55000/5000/10000 split (apt-get install dataset-fashion-mnist)",
)
def load_fashion_mnist(data_dir: str | None = None) -> Dataset:
    # Copies, so the cached arrays stay read-only; x stays uint8 (Split hands out int64 items).
    make = lambda x, y: Split(torch.from_numpy(x.copy()), torch.from_numpy(y.astype(np.int64)))  # noqa: E731
    s = fashion_mnist_splits(data_dir)
    return Dataset(SPEC, make(*s["train"]), make(*s["validation"]), make(*s["test"]))
