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


# --- values where a right and a wrong formula disagree (each kills a one-line mutant) ---------------
def test_variational_dequantization_bound_closed_form():
    """log p(y) − log q(u|x) − D ln K with log q ≠ 0, so the sign of log q matters."""
    log_density = torch.tensor([1.5, -2.0], dtype=torch.float64)
    log_q = torch.tensor([0.25, -0.75], dtype=torch.float64)
    expected = log_density - log_q - 3 * math.log(4)
    bound = units.variational_dequantization_bound(log_density, log_q, 3, 4)
    assert torch.allclose(bound, expected, rtol=0, atol=1e-15)


def test_variational_dequantization_with_the_true_posterior_is_exact_for_every_u():
    """With q(u|x) = p(y) / (K^D P(x)), the dequantization posterior, the Flow++ bound equals log P(x)
    for every draw of u (Ho et al. 2019, eq. 4 is tight). Here D = 1, K = 2, p(y) = 2y on [0, 1):
    P(x=0) = ∫_0^½ 2y dy = 1/4, P(x=1) = 3/4, and q(u|x) = 2 (x + u) / (K² P(x))."""
    levels = 2
    u = torch.rand(1000, dtype=torch.float64) * 0.998 + 0.001
    for x, probability in ((0, 0.25), (1, 0.75)):
        y = (x + u) / levels
        log_density = torch.log(2 * y)
        log_q = torch.log(2 * (x + u) / (levels**2 * probability))
        bound = units.variational_dequantization_bound(log_density, log_q, 1, levels)
        assert torch.allclose(bound, torch.full_like(bound, math.log(probability)), rtol=0, atol=1e-12)


def test_density_bound_and_log_jacobian_closed_forms():
    assert units.dequantization_log_jacobian(3, 5) == pytest.approx(-3 * math.log(5), abs=1e-15)
    log_density = torch.tensor([0.5, -1.25], dtype=torch.float64)
    bound = units.discrete_bound_from_density(log_density, 3, 5)
    assert torch.allclose(bound, log_density - 3 * math.log(5), rtol=0, atol=1e-15)
    assert units.bits_per_dim(10.0, 4) == pytest.approx(10.0 / (4 * math.log(2)), rel=1e-15)
    assert units.nats_from_bits_per_dim(2.0, 3) == pytest.approx(6 * math.log(2), rel=1e-15)
    assert units.LN2 == math.log(2)


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 2, 2)])
def test_scale_to_symmetric_values_and_log_jacobian_per_example(shape):
    y = torch.rand(*shape, dtype=torch.float64)
    z, logdet = units.scale_to_symmetric(y)
    dims = math.prod(shape[1:])
    assert torch.equal(z, 2 * y - 1)
    assert logdet.shape == (shape[0],) and logdet.dtype == torch.float64
    assert torch.allclose(logdet, torch.full((shape[0],), dims * math.log(2), dtype=torch.float64), rtol=0, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_logit_transform_closed_form_on_images(alpha):
    """Per-dimension log-derivative log(1 − 2α) − log s − log(1 − s), summed per example of a (B, C, H, W) batch."""
    torch.manual_seed(3)
    y = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    z, logdet = units.logit_transform(y, alpha)
    s = alpha + (1 - 2 * alpha) * y
    assert torch.allclose(z, torch.log(s / (1 - s)), rtol=0, atol=1e-12)
    expected = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log(1 - s)).reshape(2, -1).sum(dim=1)
    assert logdet.shape == (2,)
    assert torch.allclose(logdet, expected, rtol=0, atol=1e-12)
    assert torch.allclose(units.inverse_logit_transform(z, alpha), y, rtol=0, atol=1e-12)


def test_logit_defaults_agree_and_match_realnvp():
    """The forward and inverse share α = 0.05 (RealNVP's value) by default."""
    y = torch.tensor([[0.0, 0.5, 0.999]], dtype=torch.float64)
    z, _ = units.logit_transform(y)
    assert torch.allclose(units.inverse_logit_transform(z), y, rtol=0, atol=1e-12)
    assert z[0, 0].item() == pytest.approx(math.log(0.05 / 0.95), abs=1e-12)
    assert z[0, 1].item() == pytest.approx(0.0, abs=1e-12)


def test_uniform_dequantize_cells_mean_and_generator():
    levels = 5
    x = torch.arange(levels).repeat(4000)
    y = units.uniform_dequantize(x, levels, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.float32
    assert ((y >= x / levels) & (y < (x + 1) / levels)).all()  # each y in its level's cell of width 1/K
    means = y.reshape(-1, levels).double().mean(dim=0)
    assert torch.allclose(means, (torch.arange(levels) + 0.5).double() / levels, atol=0.005)
    again = units.uniform_dequantize(x, levels, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, again)  # the generator is the only source of randomness


def test_quantize_cell_edges():
    levels = 4
    edges = torch.tensor([0.0, 0.2499, 0.25, 0.5, 0.7499, 0.75, 0.9999, 1.0, -0.1, 1.5])
    assert units.quantize(edges, levels).tolist() == [0, 0, 1, 2, 2, 3, 3, 3, 0, 3]
    assert units.quantize(edges, levels).dtype == torch.int64


# --- device and dtype follow the data, not global state (kills mutants that drop device=/dtype=) ----
def test_outputs_stay_on_the_inputs_device():
    """On the 'meta' device (shapes only, no memory) a tensor made on the default device instead
    of the input's fails, as it would on a GPU."""
    x = torch.zeros(4, 3, dtype=torch.int64, device="meta")
    y = units.uniform_dequantize(x, 17)
    assert y.device.type == "meta" and y.shape == (4, 3)
    z, logdet = units.scale_to_symmetric(torch.zeros(4, 3, device="meta"))
    assert z.device.type == "meta" and logdet.device.type == "meta" and logdet.shape == (4,)


def test_dequantized_data_are_float32_whatever_the_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        y = units.uniform_dequantize(torch.tensor([[0, 3]]), 4)
    finally:
        torch.set_default_dtype(previous)
    assert y.dtype == torch.float32
