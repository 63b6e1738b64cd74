"""Every image model of the registry on colour 3×32×32 data, and the depth schedule from the data's shape.

The models are those whose class states an image architecture (``Accepts.images``) or states nothing
(a new model is tried rather than skipped); tiny widths come from ``TINY`` so the whole file runs in
seconds, and a model missing from it runs at its defaults.
"""

from __future__ import annotations

import pytest
import torch

from genmodels.accepts import Accepts, accepts_of
from genmodels.core import GenerativeModel, LikelihoodKind, create_model, keyword_options, model_class, model_names, resolve_groups
from genmodels.data import DataSpec
from genmodels.nn.resolution import resolution_levels

from .test_models import _random_batches

IMAGE_MODELS = [m for m in model_names() if accepts_of(model_class(m)) is None or accepts_of(model_class(m)).images]
COLOUR = DataSpec("colour-32", (3, 32, 32), 256)

_UNET = {"channels": 8, "attention": False, "embedding": "scale-shift"}
_VQ = {"channels": 8, "num_codes": 8, "code_dim": 4}
#: tiny widths per model (the depth is left to the data's shape, which is what this file tests)
TINY: dict[str, dict] = {
    "pixelcnn": {"channels": 3, "layers": 1, "first_kernel": 3},
    "ddpm": _UNET, "edm": _UNET, "ve": _UNET, "rectified-flow": _UNET,
    "glow": {"hidden": 8, "steps": 1},
    "realnvp": {"hidden": 8},
    "vae": {"architecture": "conv", "hidden": (16,), "latent_dim": 4, "likelihood": "logistic"},
    "iwae": {"architecture": "conv", "hidden": (16,), "latent_dim": 4, "likelihood": "logistic"},
    "discrete-vae": {"architecture": "conv", "hidden": (16,), "variables": 4, "classes": 3, "likelihood": "logistic"},
    "vqvae": _VQ,
    "vqgan": {**_VQ, "disc_channels": 4, "disc_start": 0},
    "two-stage": {"autoencoder_config": _VQ, "dim": 8, "heads": 1, "layers": 1},
    "gan": {"hidden": 4, "latent_dim": 4},
}


def test_every_image_model_states_what_it_accepts():
    for name in model_names():
        accepts = accepts_of(model_class(name))
        assert isinstance(accepts, Accepts), f"{name} states no Accepts"
        assert accepts.describe() != "(not stated)"


def _train_a_few_steps(model: GenerativeModel, batches, steps: int = 2) -> None:
    """AdamW on each optimizer group, the model's own training step (as the trainer drives it)."""
    groups = resolve_groups(model)
    optimizers = {name: torch.optim.AdamW(group.params, lr=1e-3) for name, group in groups.items()}
    model.train()
    for step in range(steps):
        batch = batches[step % len(batches)]
        due = [name for name, group in groups.items() if group.due(step)]
        for name, loss in model.training_step(batch, step, due, model.forward):
            model.zero_grad()
            loss.loss.backward()
            assert torch.isfinite(loss.loss), (name, loss.loss)
            optimizers[name].step()


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_model_trains_evaluates_and_samples_colour_32x32(name):
    torch.manual_seed(0)
    model = create_model(name, COLOUR, TINY.get(name))
    batches = _random_batches(COLOUR, n=8, batch_size=4)
    model.initialize(batches)
    _train_a_few_steps(model, batches)
    model.eval()
    with torch.no_grad():
        records = model.log_likelihoods(batches[0], **model.validation_options)
        figures = model.evaluation_figures(batches[0])
    if model.likelihood_kind is LikelihoodKind.NONE:
        assert records == []  # an autoencoder or a GAN: judged by its figures (if any) and samples
    else:
        assert records[0].kind is model.likelihood_kind
        assert records[0].values.shape == (4,) and torch.isfinite(records[0].values).all()
        assert (records[0].values <= 1e-6).all()  # a probability of discrete data is at most 1
    for values in figures.values():
        assert values.shape == (4,) and torch.isfinite(values).all()
    fast = {"steps": 2} if "steps" in keyword_options(model.sample) else {}  # diffusion: two solver steps
    with torch.no_grad():
        samples = model.sample(1, generator=torch.Generator().manual_seed(0), **fast)
    assert samples.shape == (1, 3, 32, 32) and samples.dtype == torch.int64
    assert 0 <= samples.min() and samples.max() <= 255


@pytest.mark.parametrize(("side", "levels"), [(8, 2), (16, 2), (28, 2), (32, 3), (48, 3), (64, 4)])
def test_resolution_levels_halve_to_about_4x4_and_keep_two_levels_on_small_images(side, levels):
    assert resolution_levels(side, side) == levels
    assert side / 2 ** (levels - 1) >= 4 or levels == 2


@pytest.mark.parametrize(
    ("shape", "mults", "glow_levels", "vae_channels", "gan_start", "codes"),
    [
        ((1, 8, 8), (1, 2), 2, (32, 64), (2, 2), (4, 4)),
        ((1, 28, 28), (1, 2), 2, (32, 64), (7, 7), (7, 7)),
        ((3, 32, 32), (1, 2, 2), 3, (32, 64, 128), (4, 4), (8, 8)),
        ((3, 64, 64), (1, 2, 2, 2), 4, (32, 64, 128, 256), (4, 4), (16, 16)),
    ],
    ids=["digits", "fashion", "32", "64"],
)
def test_documented_defaults_for_each_size(shape, mults, glow_levels, vae_channels, gan_start, codes):
    """The table of ``genmodels.nn.resolution`` (and docs/IMAGES.md), read off built models."""
    from genmodels.diffusion.model import unet_channel_mults
    from genmodels.latent.networks import conv_channels

    spec = DataSpec("s", shape, 256)
    edm = create_model("edm", spec, {"channels": 8, "attention": False, "embedding": "scale-shift"})
    assert unet_channel_mults(edm.config, spec) == mults
    assert len([m for m in edm.net.down if isinstance(m, torch.nn.Conv2d)]) == len(mults) - 1  # stride-2 layers
    glow = create_model("glow", spec, {"hidden": 4, "steps": 1})
    depth, level = 0, glow.flow.transform
    while level is not None:
        depth, level = depth + 1, getattr(level, "inner", None)
    assert depth == glow_levels
    assert conv_channels(spec, None) == vae_channels
    gan = create_model("gan", spec, {"architecture": "conv", "hidden": 4, "latent_dim": 2})
    assert gan.start[1:] == gan_start
    assert create_model("vqvae", spec, {"channels": 4}).grid == codes
