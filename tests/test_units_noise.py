"""units.dequantize_with_noise (given noise, as Flow++'s learned dequantization and batch-size-free
evaluation use it), with values where a right and a wrong formula disagree (docs/MUTATION.md)."""

from __future__ import annotations

import pytest
import torch

from genmodels import units


def test_dequantized_data_take_the_noise_dtype_whatever_the_data_dtype():
    # y = (x + u) / K in u's precision: int64 levels with float64 noise give float64, and levels
    # already held as float64 with float32 noise give float32 (type promotion alone would give float64).
    x = torch.tensor([0, 3])
    y = units.dequantize_with_noise(x, torch.tensor([0.5, 0.25], dtype=torch.float64), 4)
    assert y.dtype == torch.float64 and y.tolist() == [0.125, 0.8125]
    y = units.dequantize_with_noise(x.to(torch.float64), torch.tensor([0.5, 0.25]), 4)
    assert y.dtype == torch.float32 and y.tolist() == [0.125, 0.8125]


def test_noise_of_another_shape_is_refused_with_both_shapes():
    with pytest.raises(ValueError) as err:
        units.dequantize_with_noise(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(3, 2), 4)
    assert str(err.value) == "noise of shape (3, 2) for data of shape (2, 3)"
