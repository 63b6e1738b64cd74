"""Hostile input, generated (hypothesis): the data loaders (.npy, .csv, image folders, IDX/gzip) and
the command line fed wrong data or values raise a UserError (one line, exit status 2 from the CLI)
and never another exception; what they accept is data a model can use.

Few examples per property (CI time), derandomized (the same examples on every run), no example
database written.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from genmodels.data import load_dataset
from genmodels.data.fashion_mnist import read_idx
from genmodels.errors import UserError

FAST = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

_counter = itertools.count()


@pytest.fixture
def scratch(tmp_path):
    """A fresh folder per generated example (hypothesis reuses the test's tmp_path)."""

    def make() -> Path:
        folder = tmp_path / f"case{next(_counter)}"
        folder.mkdir()
        return folder

    return make


def _accepted_or_user_error(path: Path):
    """load_dataset(path): the dataset if it is usable, None after a UserError (the only exception
    allowed); what is accepted is checked to be data a model can use."""
    try:
        dataset = load_dataset(str(path))
    except UserError as error:
        assert str(error) and "\n" not in str(error).strip()
        return None
    spec = dataset.spec
    for split in (dataset.train, dataset.validation, dataset.test):
        assert len(split) >= 1 and tuple(split.x.shape[1:]) == spec.shape
        x = split.x
        if spec.levels is None:
            assert x.is_floating_point() and bool(x.isfinite().all())
        else:
            assert not x.is_floating_point() and int(x.min()) >= 0 and int(x.max()) <= spec.levels - 1
        if split.y is not None:
            assert int(split.y.min()) >= 0 and int(split.y.max()) < spec.num_classes
    return dataset


# --- .npy -------------------------------------------------------------------------------------------
NPY_DTYPES = st.one_of(
    hnp.boolean_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
    hnp.complex_number_dtypes(), hnp.byte_string_dtypes(max_len=3), hnp.unicode_string_dtypes(max_len=3),
    hnp.datetime64_dtypes(),
)


@FAST
@given(array=hnp.arrays(NPY_DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)))
def test_any_npy_array_is_loaded_or_refused_with_a_user_error(scratch, array):
    path = scratch() / "data.npy"
    np.save(path, array)
    _accepted_or_user_error(path)


@FAST
@given(array=hnp.arrays(hnp.floating_dtypes(sizes=(32, 64)), st.tuples(st.integers(3, 8), st.integers(1, 3))),
       bad=st.sampled_from([math.nan, math.inf, -math.inf]), where=st.integers(0, 100))
def test_npy_floats_with_a_nan_or_inf_are_refused(scratch, array, bad, where):
    array = np.nan_to_num(array, nan=0.0, posinf=1.0, neginf=-1.0)
    array.flat[where % array.size] = bad
    path = scratch() / "data.npy"
    np.save(path, array)
    with pytest.raises(UserError, match="NaN or infinite"):
        load_dataset(str(path))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@FAST
@given(data=st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(0, 300), st.integers(0, 255), st.integers(0, 200)).map(
        # a valid file, cut at some byte, or with one byte changed
        lambda t: (lambda raw: raw[: t[2] % (len(raw) + 1)] if t[0] % 2 else
                   raw[: t[2] % len(raw)] + bytes([t[1]]) + raw[t[2] % len(raw) + 1:])(
            _npy_bytes(np.arange(24, dtype=np.int16).reshape(6, 4) % 5))),
))
def test_damaged_npy_bytes_are_refused_or_read_as_usable_data(scratch, data):
    path = scratch() / "data.npy"
    path.write_bytes(data)
    _accepted_or_user_error(path)


# --- .csv -------------------------------------------------------------------------------------------
CELLS = st.one_of(
    st.integers(-3, 300).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=64).map(repr),
    st.sampled_from(["", " ", "nan", "NaN", "inf", "-inf", "1e400", "abc", "cat", "1;2", "1\t2", "0x10", "1_000",
                     "１", "\"", "\"1,2\"", "True", "None", "--", "٣"]),
    st.text(max_size=4),
)


@FAST
@given(rows=st.lists(st.lists(CELLS, min_size=1, max_size=4), max_size=7), header=st.booleans(),
       newline=st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_csv_table_is_loaded_or_refused_with_a_user_error(scratch, rows, header, newline):
    lines = ([",".join(f"c{i}" for i in range(len(rows[0])))] if header and rows else []) + [",".join(r) for r in rows]
    path = scratch() / "data.csv"
    path.write_text(newline.join(lines), encoding="utf-8")
    _accepted_or_user_error(path)


@FAST
@given(data=st.binary(max_size=120))
def test_arbitrary_bytes_as_csv_are_refused_or_read_as_usable_data(scratch, data):
    path = scratch() / "data.csv"
    path.write_bytes(data)
    _accepted_or_user_error(path)


def test_csv_and_npy_edge_cases_get_their_message(tmp_path):
    cases = {
        "empty.csv": (b"", "no data"),
        "header.csv": (b"a,b\n", "only a header row"),
        "text.csv": (b"a,label\n1,cat\n2,dog\n3,cat\n", "holds text"),
        "nan.csv": (b"1,2\nnan,3\n4,5\n", "NaN or infinite"),
        "ragged.csv": (b"1,2\n3\n4,5\n", "row 2 has 1 cells, expected 2"),
        "two.csv": (b"1\n2\n", "at least 3 are needed"),
        "huge.csv": (b"1,2\n" + b"7" * 200_000 + b",1\n3,4\n", "not a readable .csv table"),  # csv's field limit
        "binary.csv": (bytes(range(256)), "cannot read as UTF-8"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError, match=message):
            load_dataset(str(tmp_path / name))
    for name, array, message in [
        ("empty.npy", np.zeros((0, 3)), "no data"),
        ("objects.npy", None, "Python objects"),
        ("strings.npy", np.array(["a", "b", "c"]), "unsupported dtype"),
        ("complex.npy", np.ones(4, dtype=np.complex64), "unsupported dtype"),
        ("negative.npy", np.array([-1, 2, 3]), "negative values"),
    ]:
        if array is None:
            np.save(tmp_path / name, np.array([{"a": 1}, 2, 3], dtype=object), allow_pickle=True)
        else:
            np.save(tmp_path / name, array)
        with pytest.raises(UserError, match=message):
            load_dataset(str(tmp_path / name))


# --- folders of images ------------------------------------------------------------------------------
MODES = ["1", "L", "P", "RGB", "RGBA", "LA", "I", "F", "CMYK", "I;16"]
FORMATS = ["png", "bmp", "gif", "tiff", "jpg", "webp"]
IMAGE = st.tuples(
    st.sampled_from(MODES), st.sampled_from(FORMATS), st.integers(1, 3), st.integers(1, 3),
    st.integers(0, 2),  # class subfolder (used when the folder is labelled)
    st.sampled_from([None, "truncate", "garbage"]),
)


@FAST
@given(images=st.lists(IMAGE, min_size=0, max_size=5), labelled=st.booleans(), loose=st.booleans())
def test_any_image_folder_is_loaded_or_refused_with_a_user_error(scratch, images, labelled, loose):
    from PIL import Image

    folder = scratch() / "images"
    folder.mkdir()
    for i, (mode, fmt, width, height, label, damage) in enumerate(images):
        where = folder / f"class{label}" if labelled and not (loose and i == 0) else folder
        where.mkdir(exist_ok=True)
        file = where / f"im{i}.{fmt}"
        try:
            Image.new(mode, (width, height), color=i % 2).save(file)
        except (OSError, ValueError, KeyError, TypeError):
            file.write_bytes(b"not an image")  # a format that cannot hold that mode: write garbage instead
        if damage == "truncate":
            file.write_bytes(file.read_bytes()[: len(file.read_bytes()) // 2])
        elif damage == "garbage":
            file.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(40)))
    _accepted_or_user_error(folder)


def test_image_folders_of_mixed_sizes_or_modes_are_refused(tmp_path):
    from PIL import Image

    for name, specs, message in [
        ("sizes", [("L", (2, 2)), ("L", (3, 2)), ("L", (2, 2))], "images differ in size"),
        ("modes", [("L", (2, 2)), ("RGB", (2, 2)), ("L", (2, 2))], "images differ in mode"),
        ("alpha", [("RGBA", (2, 2))] * 3, "image mode RGBA is not supported"),
    ]:
        folder = tmp_path / name
        folder.mkdir()
        for i, (mode, size) in enumerate(specs):
            Image.new(mode, size).save(folder / f"{i}.png")
        with pytest.raises(UserError, match=message):
            load_dataset(str(folder))


# --- IDX files, gzipped or not ------------------------------------------------------------------------
def _idx(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape) + array.tobytes()


IDX_ARRAY = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
IDX_SHA = hashlib.sha256(IDX_ARRAY.tobytes()).hexdigest()


@FAST
@given(gzipped=st.booleans(), how=st.sampled_from(["cut", "flip", "append", "bytes"]), at=st.integers(0, 10_000),
       value=st.integers(1, 255), data=st.binary(max_size=80))
def test_damaged_idx_files_are_refused_or_read_exactly(scratch, gzipped, how, at, value, data):
    raw = _idx(IDX_ARRAY)
    if gzipped:
        raw = gzip.compress(raw, mtime=0)
    if how == "cut":
        raw = raw[: at % len(raw)]
    elif how == "flip":
        i = at % len(raw)
        raw = raw[:i] + bytes([raw[i] ^ value]) + raw[i + 1:]
    elif how == "append":
        raw = raw + data[:1] + data
    else:
        raw = data
    path = scratch() / ("images.idx" + (".gz" if gzipped else ""))
    path.write_bytes(raw)
    try:
        array = read_idx(path, IDX_ARRAY.shape, IDX_SHA)
    except UserError:
        return
    assert np.array_equal(array, IDX_ARRAY)  # a damage gzip's CRC or the checks let through changed nothing


def test_a_truncated_fashion_mnist_file_is_refused_naming_it(tmp_path):
    from genmodels.data.fashion_mnist import IDX_FILES

    for key, info in IDX_FILES.items():
        array = np.zeros(info.shape if key.endswith("labels") else (2, 28, 28), dtype=np.uint8)
        (tmp_path / (info.stem + ".gz")).write_bytes(gzip.compress(_idx(array))[:-7])
    with pytest.raises(UserError, match=r"(t10k|train)-.*\.gz: (cannot read|truncated|header declares)"):
        load_dataset("fashion-mnist", str(tmp_path))


# --- the command line ---------------------------------------------------------------------------------
BAD_VALUES = st.one_of(
    st.sampled_from(["-1", "0", "nan", "inf", "-inf", "1e400", "abc", "", " ", "1.5", "1e-30", "２", "0x10",
                     "none", "None", "true", "-0", "99999999999999999999999", "--steps", "=", "1,2"]),
    st.text(max_size=6),
)
NUMERIC_FLAGS = ["--steps", "--epochs", "--minutes", "--batch-size", "--grad-accumulation", "--lr",
                 "--weight-decay", "--grad-clip", "--warmup-steps", "--ema", "--eval-every", "--log-every",
                 "--eval-batch-size", "--keep-checkpoints", "--seed", "--num-samples", "--num-workers",
                 "--fd-samples", "--nan-tolerance", "--nan-rollbacks", "--mixed-precision", "--lr-schedule",
                 "--select-by", "--log-with", "--set", "--sample-option"]


def _run_cli(argv: list[str]) -> tuple[int, str]:
    from genmodels.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit:  # argparse's own refusals
            code = exit.code
    return code, err.getvalue()


@FAST
@given(flag=st.sampled_from(NUMERIC_FLAGS), value=BAD_VALUES, model=st.sampled_from(["fvsbn", "nade", "nosuch"]))
def test_bad_flag_values_exit_2_with_a_message_and_no_traceback(tmp_path, flag, value, model):
    """Whatever the value, the command ends with status 2 and a message: the flag's refusal, or
    (a value that is fine) the missing data file, which is checked after the flags."""
    code, err = _run_cli(["train", model, flag, value, "--steps", "1", "--data", str(tmp_path / "missing.npy"),
                          "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2, err
    assert "Traceback" not in err and "error:" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["train", "fvsbn", "--steps", "-1"], "--steps must be ≥ 0"),
    (["train", "fvsbn", "--steps", "1", "--lr", "nan"], "--lr must be a positive number"),
    (["train", "fvsbn", "--steps", "1", "--batch-size", "0"], "--batch-size must be ≥ 1"),
    (["train", "fvsbn", "--steps", "1", "--ema", "1.5"], r"--ema must be in \(0, 1\)"),
    (["train", "fvsbn", "--steps", "1", "--nan-tolerance", "-2"], "--nan-tolerance must be ≥ 0"),
    (["train", "fvsbn", "--steps", "abc"], "steps"),
    (["train", "fvsbn", "--steps", "1", "--set", "nosuch=1"], "nosuch"),
    (["train", "fvsbn"], "give a training budget"),
])
def test_bad_values_are_named(tmp_path, argv, message):
    import re

    code, err = _run_cli([*argv, "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2 and "Traceback" not in err
    assert re.search(message, err), err
