"""Continuous data that a density would model badly get a warning when loaded: a constant column, and
columns with only a few distinct values (discrete data stored as floats)."""

from __future__ import annotations

import numpy as np

from genmodels.data import load_dataset
from genmodels.data.checks import continuous_data_warnings


def _load(tmp_path, x, capsys) -> str:
    path = tmp_path / "data.npy"
    np.save(path, x)
    capsys.readouterr()
    load_dataset(str(path))
    return capsys.readouterr().err


def test_floats_with_three_values_look_discrete(tmp_path, capsys):
    x = np.random.default_rng(0).choice([0.0, 0.5, 1.0], size=(300, 4)).astype(np.float32)
    err = _load(tmp_path, x, capsys)
    assert err == (f"genmodels: warning: {tmp_path / 'data.npy'}: every varying column has only 3–3 distinct values in 300 "
                   "rows: they look discrete, and a continuous density on them is not a likelihood of the data; store "
                   "them as non-negative integers (a discrete data set with exact bits/dim), or add noise to them if "
                   "they are truly continuous\n")


def test_a_constant_column_is_named(tmp_path, capsys):
    x = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float16)
    x[:, 1] = 0.25
    err = _load(tmp_path, x, capsys)
    assert err == (f"genmodels: warning: {tmp_path / 'data.npy'}: column(s) 1 of 3 are constant (value 0.25); a density on "
                   "a constant column is a spike whose NLL runs to −∞ and means nothing: drop such columns before training\n")


def test_continuous_and_discrete_data_load_quietly(tmp_path, capsys):
    assert _load(tmp_path, np.random.default_rng(0).normal(size=(300, 5)).astype(np.float32), capsys) == ""
    assert _load(tmp_path, np.random.default_rng(0).integers(0, 3, size=(300, 5)), capsys) == ""  # levels: discrete


def test_few_rows_are_not_called_discrete_and_some_columns_are_named():
    rng = np.random.default_rng(1)
    assert continuous_data_warnings(rng.normal(size=(20, 2)).round(0), "x") == []  # 20 rows: too few to tell
    x = rng.normal(size=(500, 8))
    x[:, [2, 5]] = x[:, [2, 5]].round(0).clip(-2, 2)
    (line,) = continuous_data_warnings(x, "x")
    assert line.startswith("x: column(s) 2, 5 have only 5 or fewer distinct values in 500 rows: they look discrete")
    everything = continuous_data_warnings(np.ones((50, 2)), "x")
    assert everything[0].startswith("x: every column is constant (value 1)")
