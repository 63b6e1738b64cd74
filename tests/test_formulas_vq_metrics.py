"""The two-stage prior's bits per code, VQGAN's hinge and the Gaussian statistics behind FD, by hand.

Bits per code = −(1/T) Σ_t log₂ p(s_t | s_<t) of the T codes of an image; FD (Heusel et al. 2017, eq. 6;
Dowson & Landau 1982) = ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2 (Σ₁Σ₂)^½) with unbiased covariances, checked against
numpy.cov and scipy.linalg.sqrtm in float64 (pytorch-fid's computation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from genmodels.core import Batch, create_model
from genmodels.data import DataSpec
from genmodels.metrics.distances import density_coverage, frechet_distance_features, gaussian_statistics


# --- the two-stage prior: bits per code -----------------------------------------------------------------
def test_bits_per_code_is_minus_the_mean_log2_probability_of_the_codes(monkeypatch):
    spec = DataSpec("d", (1, 8, 8), 17)
    torch.manual_seed(0)
    model = create_model("two-stage", spec, {"dim": 16, "layers": 1, "heads": 2}).eval()
    x = torch.randint(0, 17, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    length, num_codes = model.prior.length, model.autoencoder.num_codes
    codes = torch.arange(2 * length).reshape(2, length) % num_codes
    # p(s_t = the code given) is 1/2, 1/4 or 1/8 in turn; the rest of the mass is spread evenly
    chosen = torch.tensor([[0.5, 0.25, 0.125][t % 3] for t in range(length)], dtype=torch.float64)
    probs = ((1 - chosen) / (num_codes - 1))[None, :, None].expand(2, length, num_codes).clone()
    probs.scatter_(2, codes[:, :, None], chosen[None, :, None].expand(2, length, 1))
    monkeypatch.setattr(model, "codes", lambda images: codes)
    monkeypatch.setattr(model.prior, "logits", lambda tokens, y=None: probs.log().to(torch.float32))
    bits = [[1, 2, 3][t % 3] for t in range(length)]  # −log₂ of 1/2, 1/4, 1/8
    expected = sum(bits) / length
    figures = model.evaluation_figures(Batch(x))
    assert figures["bits_per_code"].tolist() == pytest.approx([expected, expected], rel=1e-5)
    assert figures["code_nll"].tolist() == pytest.approx([sum(bits) * math.log(2)] * 2, rel=1e-5)
    terms = model(Batch(x), step=0, group="prior").terms
    assert terms["bits_per_code"].tolist() == pytest.approx([expected, expected], rel=1e-5)


# --- FD's Gaussian statistics -----------------------------------------------------------------------
def test_gaussian_statistics_by_hand_and_against_numpy_cov():
    square = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]])
    mu, sigma = gaussian_statistics(square)
    assert mu.tolist() == [1.0, 1.0]
    assert sigma.flatten().tolist() == pytest.approx([4 / 3, 0.0, 0.0, 4 / 3])  # Σ(±1)²/(N − 1), not /N (= 1)
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) @ torch.tensor(
        [[1.0, 0.5, 0.0, 0.2], [0.0, 1.0, 0.3, 0.0], [0.0, 0.0, 2.0, 0.1], [0.0, 0.0, 0.0, 0.5]], dtype=torch.float64)
    mu, sigma = gaussian_statistics(features)
    assert np.allclose(mu.numpy(), features.numpy().mean(0), rtol=1e-12, atol=1e-14)
    assert np.allclose(sigma.numpy(), np.cov(features.numpy(), rowvar=False), rtol=1e-12, atol=1e-14)


def _reference_fd(x: np.ndarray, y: np.ndarray) -> float:
    """pytorch-fid's calculate_frechet_distance, in float64 numpy/scipy."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fd_between_two_finite_sample_sets_matches_a_scipy_reference():
    g = torch.Generator().manual_seed(3)
    mix_x = torch.tensor([[1.0, 0.8, 0.0], [0.0, 0.6, 0.4], [0.0, 0.0, 1.5]], dtype=torch.float64)
    mix_y = torch.tensor([[0.5, 0.0, 0.0], [0.9, 1.2, 0.0], [0.0, -0.7, 0.3]], dtype=torch.float64)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64) @ mix_x  # covariances that do not commute
    y = torch.randn(45, 3, generator=g, dtype=torch.float64) @ mix_y + torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    reference = _reference_fd(x.numpy(), y.numpy())
    assert reference > 0.5
    assert frechet_distance_features(x, y) == pytest.approx(reference, rel=1e-9)
    assert frechet_distance_features(x.float(), y.float()) == pytest.approx(reference, rel=1e-5)  # float32 in


# --- VQGAN's discriminator: the hinge loss (Lim & Ye 2017; Esser et al. 2021) ------------------------------
class _FixedPatchLogits(torch.nn.Module):
    """A discriminator stub: the real images' patch logits on its first call, the fakes' on its second."""

    def __init__(self, real, fake):
        super().__init__()
        self.outputs = [real, fake]

    def forward(self, images):
        return self.outputs.pop(0).to(images.dtype)


def test_vqgan_discriminator_loss_is_the_hinge_with_hand_values():
    """L_D = ReLU(1 − D(x)) + ReLU(1 + D(x̂)) per example, D the mean patch logit: D(x) = (0.3, −2), D(x̂) = (0.5, 1.5)
    give (0.7 + 1.5, 3 + 2.5) = (2.2, 5.5) (the margins' signs swapped: (1.8, 0))."""
    spec = DataSpec("d", (1, 8, 8), 17)
    torch.manual_seed(0)
    model = create_model("vqgan", spec, {}).train()
    real = torch.tensor([[[0.1, 0.5], [0.2, 0.4]], [[-2.0, -2.0], [-1.0, -3.0]]])  # (B, h, w) patch logits
    fake = torch.tensor([[[0.5, 0.5], [0.5, 0.5]], [[1.0, 2.0], [1.5, 1.5]]])
    model.discriminator = _FixedPatchLogits(real, fake)
    x = torch.randint(0, 17, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    out = model(Batch(x), step=0, group="discriminator")
    assert out.terms["hinge"].tolist() == pytest.approx([2.2, 5.5], rel=1e-6)
    assert float(out.loss) == pytest.approx(3.85, rel=1e-6)


def test_coverage_counts_a_sample_on_a_balls_boundary_as_density_does():
    """Closed balls B(Xᵢ, NNDₖ(Xᵢ)) for both density and coverage (Naeem et al. 2020, eq. 3–4; prdc's strict <
    differs only on exact ties). Real 0, 1, 3, 7 with k = 1 have radii 1, 1, 2, 4; the sample 2 lies on the
    boundary of 1's ball and inside 3's: density = 2/(kM) = 2, coverage = 2/4 (strict: 1 and 1/4)."""
    real, fake = torch.tensor([[0.0], [1.0], [3.0], [7.0]]), torch.tensor([[2.0]])
    assert density_coverage(real, fake, k=1) == (2.0, 0.5)
