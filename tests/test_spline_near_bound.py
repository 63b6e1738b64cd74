"""The fast rational-quadratic spline stays finite where the bin search (on the unit scale) and the
bin's left knot (on the input scale) disagree by a rounding: ξ a hair below 0 in a bin of minimum
width with a large slope made the log-det numerator negative (NaN). Found by a randomized ``nsf``
without LU layers (tests/test_models.py's round trip); the parameters below are that spline's."""

from __future__ import annotations

import torch

from genmodels.flows.spline import rational_quadratic_spline, rational_quadratic_spline_reference

# widths, heights, inner derivatives (K = 8): one wide bin, the others at the minimum width
PARAMS = [51.71, 67.41, -212.95, -199.77, -7.31, -76.91, 45.88, -0.28,
          -143.78, -124.91, 12.09, -9.88, 36.89, -67.53, 41.23, -61.5,
          -165.02, -91.05, -34.44, -151.75, -74.35, -181.58, 44.22]
X = 3.485999822616577  # u = (x + B)/2B falls 6e-8 below an inner knot


def test_spline_log_det_is_finite_at_a_knot_of_a_minimum_width_bin():
    x, params = torch.tensor([X]), torch.tensor([PARAMS])
    y, logabsdet = rational_quadratic_spline(x, params, bound=3.5)
    y64, logabsdet64 = rational_quadratic_spline_reference(x.double(), params.double(), bound=3.5)
    assert torch.isfinite(logabsdet).all()
    assert torch.allclose(y.double(), y64, atol=1e-4) and torch.allclose(logabsdet.double(), logabsdet64, atol=0.05)
