"""Units: every conversion against a closed form."""

from __future__ import annotations

import math

import pytest
import torch

from genmodels import units


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_uniform_categorical_scores_log2_levels_bits_per_dim(levels):
    dims = 64
    log_p = torch.full((5,), -dims * math.log(levels))  # a uniform model of the K levels
    assert units.bits_per_dim(-log_p, dims) == pytest.approx(torch.full((5,), math.log2(levels)), abs=1e-12)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_uniform_density_on_unit_cube_bound_is_exactly_log2_levels(levels):
    dims = 12
    x = torch.randint(0, levels, (100, dims))
    y = units.uniform_dequantize(x, levels)
    log_density = torch.zeros(len(x), dtype=torch.float64)  # U[0,1)^D has density 1
    bound = units.discrete_bound_from_density(log_density, dims, levels)
    # Exact up to float64 rounding (one ulp): D ln K / (D ln 2) = log2 K.
    expected = torch.full((100,), math.log2(levels), dtype=torch.float64)
    assert torch.allclose(units.bits_per_dim(-bound, dims), expected, rtol=1e-15, atol=0)
    assert ((y >= 0) & (y < 1)).all()
    # Each y lies in the cell of its level, so quantizing recovers x.
    assert torch.equal(units.quantize(y, levels), x)


def test_uniform_density_after_scaling_to_symmetric_interval_gives_the_same_figure():
    dims, levels = 10, 256
    x = torch.randint(0, levels, (7, dims))
    z, logdet = units.scale_to_symmetric(units.uniform_dequantize(x, levels))
    log_density_z = torch.full((7,), -dims * math.log(2.0))  # U[-1,1)^D
    log_density_y = log_density_z + logdet
    bound = units.discrete_bound_from_density(log_density_y, dims, levels)
    assert units.bits_per_dim(-bound, dims) == pytest.approx(torch.full((7,), 8.0), abs=1e-6)
    assert (z >= -1).all() and (z < 1).all()


def test_dequantization_bound_of_discretized_density_is_below_exact_probability():
    """For a product of per-dimension piecewise-constant densities, the bound is tight; for a
    non-constant density inside a cell (a Gaussian), Jensen's gap makes it strictly lower."""
    levels, dims = 4, 3
    x = torch.tensor([[0, 1, 3]])
    normal = torch.distributions.Normal(0.5, 0.2)
    exact = sum(
        math.log(float(normal.cdf(torch.tensor((k + 1) / levels)) - normal.cdf(torch.tensor(k / levels)))) for k in x[0].tolist()
    )
    # Monte Carlo over u of the bound E_u[log p(y)] - D ln K, with p = Normal density scaled to the cell width.
    u = torch.rand(200_000, dims, dtype=torch.float64)
    y = (x.double() + u) / levels
    log_density = normal.log_prob(y).sum(dim=1)
    bound = (log_density + units.dequantization_log_jacobian(dims, levels)).mean().item()
    assert bound < exact


def test_logit_log_jacobian_matches_autograd():
    torch.manual_seed(1)
    y = torch.rand(3, 5, dtype=torch.float64)
    alpha = 0.05
    z, logdet = units.logit_transform(y, alpha)
    for i in range(len(y)):
        jac = torch.autograd.functional.jacobian(lambda v: units.logit_transform(v.unsqueeze(0), alpha)[0][0], y[i])
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign > 0
        assert logdet[i].item() == pytest.approx(logabsdet.item(), abs=1e-10)
    assert torch.allclose(units.inverse_logit_transform(z, alpha), y, atol=1e-12)


def test_scale_log_jacobian_matches_autograd():
    y = torch.rand(2, 4, dtype=torch.float64)
    _, logdet = units.scale_to_symmetric(y)
    jac = torch.autograd.functional.jacobian(lambda v: units.scale_to_symmetric(v.unsqueeze(0))[0][0], y[0])
    assert logdet[0].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-12)


def test_bits_and_nats_are_inverse():
    assert units.nats_from_bits_per_dim(units.bits_per_dim(123.4, 784), 784) == pytest.approx(123.4)


def test_variational_dequantization_with_uniform_q_equals_uniform_dequantization():
    log_density = torch.randn(6, dtype=torch.float64)
    zero_log_q = torch.zeros(6, dtype=torch.float64)  # q(u|x) = U[0,1)^D
    assert torch.equal(
        units.variational_dequantization_bound(log_density, zero_log_q, 5, 17),
        units.discrete_bound_from_density(log_density, 5, 17),
    )
