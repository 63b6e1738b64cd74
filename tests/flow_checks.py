"""Checks shared by the flow test modules."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian


def assert_log_det_matches_autograd(transform, shape: tuple[int, ...], seeds=range(3)) -> list[float]:
    """For float64 inputs of ``shape`` (at most 16 numbers), the transform's reported log|det| equals
    log|det| of its autograd Jacobian (slogdet) within 1e-8; returns the reported values."""
    D = math.prod(shape)
    assert D <= 16
    reported = []
    for seed in seeds:
        x = torch.randn(D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 1.5

        def f(v):
            return transform.call_and_ladj(v.reshape(1, *shape))[0].reshape(-1)

        _, logabsdet = torch.linalg.slogdet(jacobian(f, x))
        _, ladj = transform.call_and_ladj(x.reshape(1, *shape))
        assert ladj.item() == pytest.approx(logabsdet.item(), abs=1e-8)
        reported.append(ladj.item())
    return reported
