"""Shared fixtures: small data, fixed seeds, no network, no GPU."""

from __future__ import annotations

import pytest
import torch

from genmodels.data import DataSpec, load_dataset


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


@pytest.fixture
def binary10_spec() -> DataSpec:
    """Binary data of dimension 10, shaped like a (1, 2, 5) image so image models accept it too."""
    return DataSpec("binary-10", (1, 2, 5), levels=2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
