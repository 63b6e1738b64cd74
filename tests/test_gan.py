"""gan: the hubness selection (Liang et al. 2022), gradient isolation of its two groups, losses, training."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from genmodels.core import Batch, create_model
from genmodels.data import DataSpec
from genmodels.errors import UserError
from genmodels.gan import k_occurrence, select_hubs

DIGITS = DataSpec("d", (1, 8, 8), 17, 10)


def test_k_occurrence_matches_a_brute_force_count():
    z = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    k = 3
    counts = torch.zeros(30, dtype=torch.int64)
    for j in range(30):
        d = [(float((z[i] - z[j]).norm()), i) for i in range(30) if i != j]
        for _, i in sorted(d)[:k]:
            counts[i] += 1
    assert torch.equal(k_occurrence(z, k), counts)
    assert k_occurrence(z, k).sum() == 30 * k


def test_hub_selection_prefers_high_occurrence_latents():
    """A ring of 5 unit points around a centre (neighbours on the ring are 1.18 apart, the centre 1
    away), plus two isolated points far on the axis: the centre is in every other point's 2-NN list, so it has the highest N_k and is kept first; the isolated points (N_k = 0)
    are never kept while anything else is left."""
    ring = torch.stack([torch.tensor([math.cos(a), math.sin(a), 0.0]) for a in torch.arange(5) * (2 * math.pi / 5)])
    centre = torch.zeros(1, 3)
    far = torch.tensor([[0.0, 0.0, 100.0], [0.0, 0.0, -100.0]])  # on the axis: the centre is their nearest
    z = torch.cat([ring, centre, far])
    counts = k_occurrence(z, 2)
    assert counts[5] == 7 and (counts[:5] <= 5).all() and (counts[6:] == 0).all()
    kept = select_hubs(z, 1, 2, torch.Generator().manual_seed(0))
    assert torch.equal(kept[0], centre[0])
    kept = select_hubs(z, 6, 2, torch.Generator().manual_seed(0))
    assert not any((kept == row).all(1).any() for row in far)


def test_hubness_sampling_keeps_latents_of_high_occurrence_and_small_norm():
    """Among Gaussian candidates the hubs lie near the mode (Radovanović et al. 2010): the kept
    latents have a higher k-occurrence than the candidates on average and a smaller norm."""
    model = create_model("gan", DIGITS, {"latent_dim": 16})
    g = torch.Generator().manual_seed(0)
    candidates = torch.randn(800, 16, generator=torch.Generator().manual_seed(0))
    kept = model.latents(40, generator=g, hubness=True, candidates=800, k=10)
    assert all((candidates == row).all(1).any() for row in kept)  # drawn from the same candidates
    counts = k_occurrence(candidates, 10)
    index = [int((candidates == row).all(1).nonzero()[0]) for row in kept]
    assert counts[index].float().mean() > 2 * counts.float().mean()
    assert kept.norm(dim=1).mean() < candidates.norm(dim=1).mean()
    samples = model.sample(5, generator=torch.Generator().manual_seed(1), hubness=True, candidates=100, k=5)
    assert samples.shape == (5, 1, 8, 8) and samples.dtype == torch.int64
    with pytest.raises(UserError, match="candidates"):
        model.sample(5, hubness=True, candidates=5)


@pytest.mark.parametrize("first", ["discriminator", "generator"])
def test_each_groups_step_leaves_the_other_groups_parameters_unchanged(first):
    from accelerate import Accelerator

    from genmodels.training import TrainConfig
    from genmodels.training.optim import build_optimizers, step_group

    torch.manual_seed(0)
    model = create_model("gan", DIGITS).train()
    groups, settings, optimizers = build_optimizers(model, TrainConfig(steps=1))
    batch = Batch(torch.randint(0, 17, (16, 1, 8, 8)))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mine = {id(p) for p in groups[first].params}
    step_group(Accelerator(cpu=True), model, model(batch, step=0, group=first).loss, groups[first].params,
               optimizers[first], settings[first])
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    ours = {n for n, p in model.named_parameters() if id(p) in mine}
    assert moved and moved <= ours  # (a hinge loss may leave a bias with an exactly zero gradient)
    assert len(moved) >= len(ours) - 1


@pytest.mark.parametrize("loss", ["hinge", "non-saturating"])
def test_losses_match_their_formulas(loss):
    torch.manual_seed(0)
    model = create_model("gan", DIGITS, {"loss": loss}).eval()  # no power iteration between calls
    real, fake = torch.rand(6, 1, 8, 8), torch.rand(6, 1, 8, 8)
    d_real, d_fake = model.discriminate(real), model.discriminate(fake)
    out = model._d_loss(real, fake, None).loss
    g = model._g_loss(fake, None).loss
    if loss == "hinge":
        assert out.item() == pytest.approx((torch.relu(1 - d_real) + torch.relu(1 + d_fake)).mean().item(), rel=1e-6)
        assert g.item() == pytest.approx(-d_fake.mean().item(), rel=1e-6)
    else:
        expected = -(torch.sigmoid(d_real).log() + (1 - torch.sigmoid(d_fake)).log()).mean()
        assert out.item() == pytest.approx(expected.item(), rel=1e-5)
        assert g.item() == pytest.approx(-torch.sigmoid(d_fake).log().mean().item(), rel=1e-5)


def test_options_spectral_norm_n_critic_and_mlp():
    model = create_model("gan", DIGITS, {"spectral_norm": True, "n_critic": 3})
    assert model.optimizer_groups()["generator"].every == 3
    assert any("parametrizations" in n for n, _ in model.named_parameters())
    assert create_model("gan", DataSpec("b", (1, 2, 5), 2)).architecture == "mlp"
    assert create_model("gan", DataSpec("f", (1, 28, 28), 256)).architecture == "conv"
    assert create_model("gan", DIGITS, {"architecture": "conv"}).architecture == "conv"
    with pytest.raises(UserError, match="multiples of 4"):
        create_model("gan", DataSpec("b", (1, 2, 5), 2), {"architecture": "conv"})


def test_gan_trains_on_digits_with_an_ema_generator(digits, tmp_path):
    from genmodels.checkpoint import load_model
    from genmodels.training import TrainConfig, train

    result = train("gan", digits, TrainConfig(steps=30, batch_size=64, lr=2e-4, eval_every=1000, log_every=5,
                                              num_samples=4, ema_decay=0.9), tmp_path / "gan", progress=False)
    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    assert {"discriminator/d_loss", "generator/g_loss"} <= {r["metric"] for r in rows}
    assert all(math.isfinite(float(r["value"])) for r in rows if r["metric"].endswith("_loss"))
    model, ckpt = load_model(result.run_dir)
    assert ckpt.meta["has_ema"]
    assert model.sample(3, generator=torch.Generator().manual_seed(0), hubness=True).shape == (3, 1, 8, 8)
