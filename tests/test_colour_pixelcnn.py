"""``pixelcnn`` on colour images: the channels of a pixel ordered R, G, B (van den Oord et al. 2016),
a softmax per sub-pixel or PixelCNN++'s mixture (Salimans et al. 2017, eq. 3); exact and normalized."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from genmodels.autoregressive.audit import dependence, earlier_mask
from genmodels.core import create_model
from genmodels.data import DataSpec
from genmodels.nn.masked import colour_mask
from genmodels.nn.outputs import DiscretizedLogisticMixture

HEADS = [
    {"variant": "gated", "output": "softmax"},
    {"variant": "plain", "output": "softmax"},
    {"variant": "gated", "output": "logistic", "mixtures": 3},
    {"variant": "plain", "output": "logistic", "mixtures": 2},
]
IDS = ["gated-softmax", "plain-softmax", "gated-logistic", "plain-logistic"]


def _perturbed(spec: DataSpec, config: dict, seed: int = 0, scale: float = 0.5):
    torch.manual_seed(seed)
    model = create_model("pixelcnn", spec, config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


@pytest.mark.parametrize("config", HEADS, ids=IDS)
def test_colour_pixelcnn_normalizes_over_all_4096_images_of_3x2x2_with_two_levels(config):
    spec = DataSpec("rgb", (3, 2, 2), 2)
    model = _perturbed(spec, {**config, "channels": 6, "layers": 2, "first_kernel": 3})
    x = torch.tensor(list(itertools.product(range(2), repeat=12))).reshape(-1, 3, 2, 2)
    assert len(x) == 4096
    with torch.no_grad():
        log_p = model.log_prob(x).double()
    assert log_p.logsumexp(0).exp().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("config", HEADS, ids=IDS)
def test_colour_pixelcnn_sees_exactly_the_earlier_pixels_and_the_earlier_channels_of_its_pixel(config):
    """By gradients: sub-pixel (c, r, q) depends on every channel of the pixels before (r, q) in raster
    order and on the channels < c of (r, q), and on nothing else. A 4×4 image lies inside one 7×7 first
    kernel, so even the plain variant has no blind spot here. 24 units (8 per colour group), 4 inputs
    and a mild perturbation keep ReLUs from hiding a dependence by chance (a large one silences every
    ReLU of the plain residual stack: then nothing depends on anything)."""
    spec = DataSpec("rgb", (3, 4, 4), 5)
    model = _perturbed(spec, {**config, "channels": 24, "layers": 3}, scale=0.1)
    x = torch.randint(0, 5, (4, *spec.shape), generator=torch.Generator().manual_seed(1))
    seen = dependence(model, x) > 0  # (48, 48), indices in the (C, H, W) layout
    channel, pixel = torch.arange(48) // 16, torch.arange(48) % 16
    expected = (pixel[None, :] < pixel[:, None]) | ((pixel[None, :] == pixel[:, None]) & (channel[None, :] < channel[:, None]))
    assert torch.equal(seen, expected)
    assert torch.equal(expected, earlier_mask(model.ordering()))


def test_colour_ordering_is_pixel_major_with_red_first():
    model = create_model("pixelcnn", DataSpec("rgb", (3, 2, 2), 4), {"channels": 3, "layers": 1})
    assert model.ordering().tolist() == [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]
    grey = create_model("pixelcnn", DataSpec("g", (1, 2, 2), 4), {"channels": 3, "layers": 1})
    assert grey.ordering().tolist() == [0, 1, 2, 3]


def test_colour_masks_are_those_of_pixel_rnn():
    """Sec. 3.4 of van den Oord et al. 2016a: at the current pixel, mask A lets G read R and B read
    R and G; mask B also lets each colour read itself."""
    rgb = torch.arange(3)
    assert colour_mask(rgb, rgb, "A").tolist() == [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    assert colour_mask(rgb, rgb, "B").tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]


def _logistic_bin(x: int, levels: int, mu: float, s: float) -> float:
    """P(x) of one logistic discretized into ``levels`` bins on [−1, 1], end bins open (eq. 2)."""
    sigma = lambda t: 1.0 / (1.0 + math.exp(-t))  # noqa: E731
    centre, half = 2 * x / (levels - 1) - 1, 1 / (levels - 1)
    upper = 1.0 if x == levels - 1 else sigma((centre + half - mu) / s)
    lower = 0.0 if x == 0 else sigma((centre - half - mu) / s)
    return upper - lower


def test_channel_conditionals_multiply_to_pixelcnn_pp_joint_mixture():
    """Eq. 3 of Salimans et al. 2017, written out by hand for one RGB pixel with 2 components:
    p(r, g, b) = Σ_m π_m P(r | μ_r) P(g | μ_g + α r) P(b | μ_b + β r + γ g), α, β, γ = tanh(raw)."""
    levels, head = 4, DiscretizedLogisticMixture(4, 2)
    logits, mu, log_s, raw = [0.3, -0.2], [[0.1, -0.4], [0.5, 0.0], [-0.3, 0.2]], [[-1.0, -0.5], [-0.8, -1.2], [-0.6, -0.9]], [[0.7, -1.1], [0.4, 0.2], [-0.9, 1.5]]
    params = torch.tensor([logits, *mu, *log_s, *raw], dtype=torch.float64).flatten()  # (10·2,)
    pi = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]
    total = 0.0
    for r, g, b in itertools.product(range(levels), repeat=3):
        values = torch.tensor([r, g, b], dtype=torch.float64) * 2 / (levels - 1) - 1
        conditionals = head.channel_conditionals(params, values)  # (3, 6)
        ours = sum(float(head.log_prob(conditionals[c], torch.tensor(v))) for c, v in enumerate((r, g, b)))
        vr, vg = float(values[0]), float(values[1])
        joint = sum(
            pi[m]
            * _logistic_bin(r, levels, mu[0][m], math.exp(log_s[0][m]))
            * _logistic_bin(g, levels, mu[1][m] + math.tanh(raw[0][m]) * vr, math.exp(log_s[1][m]))
            * _logistic_bin(b, levels, mu[2][m] + math.tanh(raw[1][m]) * vr + math.tanh(raw[2][m]) * vg, math.exp(log_s[2][m]))
            for m in range(2)
        )
        assert ours == pytest.approx(math.log(joint), abs=1e-10)
        total += joint
    assert total == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("output", ["softmax", "logistic"])
def test_colour_pixelcnn_samples_and_conditions_on_labels(output):
    spec = DataSpec("rgb", (3, 3, 3), 8, 4)
    model = _perturbed(spec, {"output": output, "channels": 6, "layers": 2, "conditional": True})
    samples = model.sample(2, y=torch.tensor([0, 3]), generator=torch.Generator().manual_seed(0))
    assert samples.shape == (2, 3, 3, 3) and samples.dtype == torch.int64
    assert 0 <= samples.min() and samples.max() < 8
    x = torch.randint(0, 8, (2, *spec.shape), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(model.log_prob(x, torch.tensor([0, 0])), model.log_prob(x, torch.tensor([1, 1])))


@pytest.mark.parametrize("config", HEADS, ids=IDS)
def test_colour_samples_follow_the_exact_likelihood(config):
    """On the 64 images of 3×1×2 with two levels, the samples' frequencies match exp(log_prob)."""
    spec = DataSpec("rgb", (3, 1, 2), 2)
    model = _perturbed(spec, {**config, "channels": 6, "layers": 2, "first_kernel": 3}, seed=3)
    x = torch.tensor(list(itertools.product(range(2), repeat=6))).reshape(-1, 3, 1, 2)
    with torch.no_grad():
        probs = model.log_prob(x).double().exp()
        draws = model.sample(40_000, generator=torch.Generator().manual_seed(0))
    index = (draws.reshape(len(draws), -1) * (2 ** torch.arange(5, -1, -1))).sum(1)
    frequencies = index.bincount(minlength=64).double() / len(draws)
    assert 0.5 * (frequencies - probs).abs().sum().item() < 0.02


@pytest.mark.parametrize("config", HEADS, ids=IDS)
def test_windowed_sampler_draws_what_the_whole_image_sampler_draws(config):
    """The sampler runs each step on the rows within reach of the current pixel (here 2 or 3 of 7);
    with the same seed it draws the same images as the generic sampler, which runs the whole image
    through the network once per sub-pixel."""
    from genmodels.autoregressive.base import AutoregressiveModel

    spec = DataSpec("rgb", (3, 7, 3), 4, 2)
    model = _perturbed(spec, {**config, "channels": 6, "layers": 1, "first_kernel": 3, "conditional": True}, seed=5)
    assert model.rows_above() < 7 - 1
    y = torch.tensor([0, 1, 1, 0])
    with torch.no_grad():
        windowed = model._sample_ordering(4, y, 0, torch.Generator().manual_seed(7), 1.0)
        whole = AutoregressiveModel._sample_ordering(model, 4, y, 0, torch.Generator().manual_seed(7), 1.0)
    assert torch.equal(windowed, whole)
