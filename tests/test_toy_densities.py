"""The held-out 2-D densities of benchmarks/peers/toy_densities.py: exact log-densities and entropies
against closed forms written by hand."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))

from toy_densities import Blobs  # noqa: E402


def test_one_blob_is_a_rotated_gaussian_with_its_closed_form_density_and_entropy():
    # N(m, R diag(a², b²) Rᵀ) with a = 0.5, b = 0.25, rotated by 90°: the axes swap, so a step of 0.5
    # along y is one standard deviation (a), a step of 0.25 along x is one standard deviation (b).
    blob = Blobs(means=((1.0, -1.0),), stds=((0.5, 0.25),), angles=(math.pi / 2,), weights=(1.0,))
    x = torch.tensor([[1.0, -1.0], [1.0, -0.5], [1.25, -1.0]], dtype=torch.float64)
    log_peak = -math.log(2 * math.pi * 0.5 * 0.25)  # 1/(2π a b) at the mean
    expected = torch.tensor([log_peak, log_peak - 0.5, log_peak - 0.5], dtype=torch.float64)
    torch.testing.assert_close(blob.log_density(x), expected)
    # H = log(2πe a b) for a bivariate normal
    assert abs(blob.entropy() - math.log(2 * math.pi * math.e * 0.5 * 0.25)) < 1e-4


def test_two_far_apart_blobs_add_the_mixing_entropy():
    # disjoint components: H = Σ w_k H_k − Σ w_k log w_k
    blobs = Blobs(means=((-2.5, 0.0), (2.5, 0.0)), stds=((0.2, 0.2), (0.3, 0.1)), angles=(0.0, 0.0), weights=(0.25, 0.75))
    h_0, h_1 = math.log(2 * math.pi * math.e * 0.04), math.log(2 * math.pi * math.e * 0.03)
    mixing = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert abs(blobs.entropy() - (0.25 * h_0 + 0.75 * h_1 + mixing)) < 1e-4
    samples = torch.from_numpy(blobs.sample(4000, seed=0))
    assert abs((samples[:, 0] > 0).double().mean().item() - 0.75) < 0.03
