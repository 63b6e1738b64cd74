"""Vector quantization, vqvae and two-stage: the math against hand computations, and short trainings."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from genmodels.checkpoint import load_model, save_checkpoint
from genmodels.cli import main
from genmodels.core import Batch, create_model
from genmodels.data import DataSpec
from genmodels.errors import UserError
from genmodels.vq import VectorQuantizer, perplexity

DIGITS = DataSpec("d", (1, 8, 8), 17, 10)


def _quantizer(codebook, **kwargs):
    vq = VectorQuantizer(len(codebook), codebook.shape[1], **kwargs)
    vq.codebook.data.copy_(codebook)
    if vq.ema:
        vq.ema_sum.copy_(codebook)
    return vq


# --- the quantizer ---------------------------------------------------------------------------------
def test_straight_through_gradient_is_the_identity_on_the_encoder_output():
    vq = _quantizer(torch.randn(5, 3), ema=False).eval()
    z_e = torch.randn(2, 4, 3, requires_grad=True)
    w = torch.randn(2, 4, 3)
    q = vq(z_e)
    assert torch.allclose(q.z_q, vq.codebook[q.indices], atol=1e-6)  # forward: the nearest codes
    (q.z_q * w).sum().backward()
    assert torch.equal(z_e.grad, w)  # backward: ∂z_q/∂z_e = I


def test_nearest_code_is_the_argmin_of_the_distances():
    codebook = torch.randn(7, 3)
    vq = _quantizer(codebook, ema=False)
    z = torch.randn(50, 3)
    assert torch.equal(vq.nearest(z), torch.cdist(z, codebook).argmin(1))


def test_codebook_and_commitment_losses_match_a_hand_computation():
    """e = [[0,0],[1,1]], z_e = [(0.1,0.2), (0.9,0.7)] → codes 0, 1 and
    ‖z_e − e‖² = 0.01+0.04 + 0.01+0.09 = 0.15 summed over positions (eq. 3)."""
    vq = _quantizer(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), ema=False, beta=0.25, restart_threshold=0).eval()
    z_e = torch.tensor([[[0.1, 0.2], [0.9, 0.7]]], requires_grad=True)
    q = vq(z_e)
    assert q.indices.tolist() == [[0, 1]]
    assert q.codebook_loss.item() == pytest.approx(0.15)
    assert q.commitment_loss.item() == pytest.approx(0.25 * 0.15)
    # The codebook loss moves only the codes (∂/∂e = 2(e − z_e)), the commitment loss only z_e.
    q.codebook_loss.sum().backward(retain_graph=True)
    assert z_e.grad is None
    assert torch.allclose(vq.codebook.grad, 2 * torch.tensor([[-0.1, -0.2], [0.1, 0.3]]))
    q.commitment_loss.sum().backward()
    assert torch.allclose(z_e.grad, 2 * 0.25 * torch.tensor([[[0.1, 0.2], [-0.1, -0.3]]]))


def test_ema_update_matches_the_closed_form():
    """One batch: N ← γN + (1−γ)n, m ← γm + (1−γ)Σz, e = m / N̂ with N̂ Laplace-smoothed (A.1)."""
    e0 = torch.tensor([[0.0, 0.0], [4.0, 4.0]])
    gamma, eps = 0.5, 0.5  # a large ε, so the Laplace smoothing shows
    vq = _quantizer(e0, ema=True, decay=gamma, eps=eps, restart_threshold=0).train()
    z = torch.tensor([[[0.2, 0.0], [0.4, 0.2], [3.0, 5.0]]])  # codes 0, 0, 1
    vq(z)
    n = torch.tensor([2.0, 1.0])
    N = gamma * torch.ones(2) + (1 - gamma) * n
    m = gamma * e0 + (1 - gamma) * torch.stack([z[0, :2].sum(0), z[0, 2]])
    smoothed = (N + eps) / (N.sum() + 2 * eps) * N.sum()
    assert torch.allclose(vq.codebook, m / smoothed[:, None], atol=1e-6)
    assert torch.allclose(vq.ema_count, N) and torch.allclose(vq.ema_sum, m)


def test_ema_moves_codes_to_their_assigned_means_with_no_memory():
    vq = _quantizer(torch.tensor([[0.0, 0.0], [4.0, 4.0]]), ema=True, decay=0.0, eps=1e-8, restart_threshold=0).train()
    z = torch.tensor([[[0.2, 0.0], [0.4, 0.2], [3.0, 5.0], [5.0, 4.0]]])
    vq(z)
    assert torch.allclose(vq.codebook, torch.tensor([[0.3, 0.1], [4.0, 4.5]]), atol=1e-5)


def test_ema_state_lives_in_buffers_that_checkpoints_carry():
    vq = VectorQuantizer(4, 2, ema=True)
    assert {"codebook", "ema_count", "ema_sum", "usage_count"} <= set(vq.state_dict())
    assert not list(vq.parameters())


@pytest.mark.parametrize("ema", [True, False])
def test_dead_codes_are_restarted_at_encoder_outputs(ema):
    """Code 2 sits far from every input: its usage falls below the threshold and it restarts at
    one of the batch's encoder outputs; the codes in use stay where they are."""
    e0 = torch.tensor([[0.0, 0.0], [1.0, 1.0], [100.0, 100.0]])
    vq = _quantizer(e0, ema=ema, decay=0.0, restart_threshold=0.5, usage_decay=0.0).train()
    z = torch.tensor([[[0.0, 0.1], [0.1, 0.0], [1.0, 0.9], [0.9, 1.0]]])
    torch.manual_seed(0)
    vq(z)
    restarted = vq.codebook[2]
    assert any(torch.equal(restarted, row) for row in z[0])
    assert vq.usage_count[2] == 2 * 0.5
    if not ema:  # gradient-learned codes in use do not move in the update
        assert torch.equal(vq.codebook[:2], e0[:2])
    vq.restart_threshold = 0.0  # no restart: a live code stays live
    vq.eval()
    assert (vq(z).indices == 2).any()


def test_no_restart_in_evaluation_mode():
    e0 = torch.tensor([[0.0, 0.0], [100.0, 100.0]])
    vq = _quantizer(e0, ema=False, restart_threshold=0.5).eval()
    vq(torch.zeros(1, 3, 2))
    assert torch.equal(vq.codebook.detach(), e0)


def test_perplexity_of_a_uniform_assignment_is_k_and_of_one_code_is_one():
    assert perplexity(torch.arange(8).repeat(3), 8).item() == pytest.approx(8.0)
    assert perplexity(torch.full((10,), 3), 8).item() == pytest.approx(1.0)
    p = torch.tensor([0.5, 0.25, 0.25])
    assert perplexity(torch.tensor([0, 0, 1, 2]), 3).item() == pytest.approx(math.exp(-(p * p.log()).sum()))


def test_usage_and_perplexity_are_logged_as_loss_terms():
    model = create_model("vqvae", DIGITS)
    out = model.loss(Batch(torch.randint(0, 17, (4, 1, 8, 8))))
    assert {"perplexity", "code_usage", "codebook", "commitment", "reconstruction_nll", "mse", "psnr"} <= set(out.terms)


# --- vqvae ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("shape", "grid"), [((1, 8, 8), (4, 4)), ((1, 28, 28), (7, 7)), ((1, 2, 5), (2, 5))])
def test_code_grid_sizes(shape, grid):
    model = create_model("vqvae", DataSpec("s", shape, 4), {"channels": 8})
    assert model.grid == grid
    x = torch.randint(0, 4, (2, *shape))
    assert model.encode(x).shape == (2, *grid)
    assert model.reconstruct(x).shape == x.shape


def test_encode_then_decode_reproduces_the_reported_reconstruction_error():
    torch.manual_seed(0)
    model = create_model("vqvae", DIGITS)
    x = torch.randint(0, 17, (6, 1, 8, 8))
    model.initialize([Batch(x)])
    model.eval()
    reported = model.loss(Batch(x)).terms["mse"]
    assert torch.allclose(reported, model.reconstruction_mse(x, model.decode(model.encode(x))))
    assert torch.allclose(model.loss(Batch(x)).terms["psnr"], -10 * torch.log10(reported))


def test_decoder_is_a_normalized_distribution_over_levels():
    from genmodels.latent.networks import decoder_level_log_probs

    model = create_model("vqvae", DIGITS, {"likelihood": "logistic"})
    params = model.decoder_params(model.quantizer.lookup(torch.randint(0, 64, (3, 16))))
    log_p = decoder_level_log_probs(params, model.likelihood, 17)
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(3, 64), atol=1e-5)


def test_vqvae_without_code_statistics_refuses_to_sample():
    model = create_model("vqvae", DIGITS)
    with pytest.raises(UserError, match="two-stage"):
        model.sample(2)


def test_decode_refuses_codes_out_of_range():
    model = create_model("vqvae", DIGITS)
    with pytest.raises(UserError, match="codes must lie"):
        model.decode(torch.full((1, 4, 4), 64))


# --- two-stage -----------------------------------------------------------------------------------
def _save(model, path, spec=DIGITS):
    meta = {"model": model.name, "model_config": model.config.to_json(), "data": {"source": {}, "spec": spec.to_json()}}
    save_checkpoint(path, model_state=model.state_dict(), meta=meta)
    return path


def test_two_stage_samples_only_from_its_fitted_prior(tmp_path):
    """The decoded samples are decode(codes) for codes whose frequencies at position 0 follow the
    prior's softmax, and a prior peaked on one code gives that code everywhere."""
    torch.manual_seed(0)
    ae = _save(create_model("vqvae", DIGITS, {"num_codes": 5}), tmp_path / "ae")
    model = create_model("two-stage", DIGITS, {"autoencoder": str(ae)}).eval()
    with torch.no_grad():
        model.prior.head.bias.copy_(torch.tensor([2.0, 0.0, -1.0, 1.0, 0.5]))
    codes = model.sample_codes(4000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(codes[:, 0, 0], minlength=5).float() / 4000
    assert (freq - torch.softmax(model.prior.head.bias, 0)).abs().max() < 0.03
    with torch.no_grad():
        model.prior.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 50.0, 0.0]))
    codes = model.sample_codes(3, generator=torch.Generator().manual_seed(1))
    assert (codes == 3).all()
    samples = model.sample(3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(samples, model.autoencoder.decode(codes))


def test_two_stage_code_likelihood_normalizes_over_every_code_grid():
    """Σ_s p(s) = 1 over all 2^(1·2·... ) grids of a tiny code space (exact, not a pixel likelihood)."""
    import itertools

    spec = DataSpec("b", (1, 2, 3), 2)
    model = create_model("two-stage", spec, {"autoencoder_config": {"num_codes": 3, "channels": 4}}).eval()
    with torch.no_grad():
        for p in model.prior.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    grids = torch.tensor(list(itertools.product(range(3), repeat=6)))
    total = torch.logsumexp(model.code_log_prob(grids).double(), 0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)
    assert model.log_likelihoods(Batch(torch.zeros(2, 1, 2, 3, dtype=torch.int64))) == []


def test_two_stage_checkpoint_is_self_contained(tmp_path):
    """Its state dict holds the autoencoder; reloaded after the first stage's file is gone, it
    rebuilds the autoencoder from its stored config and samples the same images."""
    import shutil

    torch.manual_seed(0)
    vqvae = create_model("vqvae", DIGITS, {"num_codes": 8, "channels": 16})
    vqvae.initialize([Batch(torch.randint(0, 17, (8, 1, 8, 8)))])
    ae = _save(vqvae, tmp_path / "ae")
    model = create_model("two-stage", DIGITS, {"autoencoder": str(ae), "dim": 16, "heads": 2}).eval()
    assert model.config.autoencoder_config["num_codes"] == 8 and model.config.autoencoder_model == "vqvae"
    assert any(k.startswith("autoencoder.") for k in model.state_dict())
    assert all(not p.requires_grad for p in model.autoencoder.parameters())
    assert set(model.optimizer_groups()) == {"prior"}
    two = _save(model, tmp_path / "two")
    shutil.rmtree(ae)
    loaded, _ = load_model(two)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(model.sample(4, generator=g()), loaded.sample(4, generator=g()))


def test_two_stage_refuses_a_missing_first_stage_and_mismatched_data(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        create_model("two-stage", DIGITS, {"autoencoder": str(tmp_path / "nothing")})
    ae = _save(create_model("vqvae", DataSpec("b", (1, 8, 8), 2)), tmp_path / "ae", DataSpec("b", (1, 8, 8), 2))
    with pytest.raises(UserError, match="levels"):
        create_model("two-stage", DIGITS, {"autoencoder": str(ae)})


def test_the_frozen_first_stage_does_not_change_in_training(tmp_path):
    torch.manual_seed(0)
    ae = _save(create_model("vqvae", DIGITS, {"channels": 8}), tmp_path / "ae")
    model = create_model("two-stage", DIGITS, {"autoencoder": str(ae), "dim": 16, "heads": 2}).train()
    before = {k: v.clone() for k, v in model.autoencoder.state_dict().items()}
    out = model.loss(Batch(torch.randint(0, 17, (8, 1, 8, 8))), group="prior")
    out.loss.backward()
    assert {"code_nll", "bits_per_code", "mse"} <= set(out.terms)
    assert not model.autoencoder.training
    for k, v in model.autoencoder.state_dict().items():
        assert torch.equal(v, before[k]), k


# --- short trainings -----------------------------------------------------------------------------
def _first_last(metrics_csv, column):
    import csv

    rows = [r for r in csv.DictReader(open(metrics_csv)) if r.get("split") == "train" and r.get("metric") == column]
    return float(rows[0]["value"]), float(rows[-1]["value"])


def test_vqvae_then_two_stage_on_digits(digits, tmp_path):
    from genmodels.training import TrainConfig, train

    config = dict(batch_size=64, lr=3e-3, eval_every=1000, log_every=5, num_samples=4)
    first = train("vqvae", digits, TrainConfig(steps=120, **config), tmp_path / "vqvae",
                  model_config={"channels": 32, "num_codes": 32}, progress=False)
    start, end = _first_last(first.run_dir / "metrics.csv", "loss")
    assert end < 0.7 * start
    _, usage = _first_last(first.run_dir / "metrics.csv", "code_usage")
    assert usage > 0.7  # dead codes restarted after their grace period (69 steps)
    second = train("two-stage", digits, TrainConfig(steps=40, **config), tmp_path / "prior",
                   model_config={"autoencoder": str(first.run_dir), "dim": 32}, progress=False)
    start, end = _first_last(second.run_dir / "metrics.csv", "code_nll")
    assert end < start
    model, _ = load_model(second.run_dir)
    figures = model.evaluation_figures(Batch(digits.test[:50]["x"]))
    assert figures["bits_per_code"].mean() < math.log2(32)  # better than a uniform prior over codes
    reported = {f["name"]: f for f in json.loads((second.run_dir / "results.json").read_text())["test_figures"]}
    assert reported["bits_per_code"]["examples"] == len(digits.test)
    assert "| two-stage | bits_per_code |" in (second.run_dir / "results.md").read_text()

    # The tokenizer view from the command line: encode the test split, decode the codes, and the
    # reconstruction error equals the one the run reported (results.json) for its best checkpoint.
    codes, images = tmp_path / "codes.npy", tmp_path / "images.npy"
    assert main(["encode", str(first.run_dir), "--split", "test", "--out", str(codes)]) == 0
    assert main(["decode", str(first.run_dir), str(codes), "--out", str(tmp_path / "d.png"), "--npy", str(images)]) == 0
    x = digits.test.x.numpy().astype(np.float64)
    mse = (((np.load(images) - x) / 16) ** 2).mean()
    reported = {f["name"]: f for f in json.loads((first.run_dir / "results.json").read_text())["test_figures"]}
    assert mse == pytest.approx(reported["mse"]["mean"], rel=1e-9)
    # The two-stage run encodes with its first stage, and its codes are the ones it models.
    again = tmp_path / "again.npy"
    assert main(["encode", str(second.run_dir), "--split", "test", "--out", str(again)]) == 0
    assert np.array_equal(np.load(again), np.load(codes))
    assert main(["encode", str(second.run_dir), "--split", "test", "--out", str(again)]) == 2  # never overwrites


# --- vqgan ---------------------------------------------------------------------------------------
def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    from genmodels.vq.vqgan import adaptive_weight

    w = torch.randn(3, 4, requires_grad=True)
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    lam = adaptive_weight((a * w).sum(), (b * w).sum() ** 1, w, delta=1e-4)
    assert lam.item() == pytest.approx((a.norm() / (b.norm() + 1e-4)).item(), rel=1e-6)
    assert not lam.requires_grad


def test_vqgan_switches_the_adversary_on_after_the_warm_up():
    torch.manual_seed(0)
    # No EMA and no restarts: a training-mode forward then leaves the codebook as it is.
    model = create_model("vqgan", DIGITS, {"disc_start": 10, "channels": 16, "ema": False, "restart_threshold": 0.0}).train()
    groups = model.optimizer_groups()
    assert groups["discriminator"].start_step == 10 and not groups["discriminator"].due(9)
    batch = Batch(torch.randint(0, 17, (8, 1, 8, 8)))
    early = model.loss(batch, step=9)
    assert "adversarial" not in early.terms and "perceptual" in early.terms
    late = model.loss(batch, step=10)
    assert {"adversarial", "adaptive_weight"} <= set(late.terms)
    # The adaptive weight is the gradient-norm ratio of eq. 7 at decoder_out.weight, times disc_weight.
    base, params = model.autoencoder_loss(batch)
    x_hat = model.mean_image(params)
    rec = base.loss + model.perceptual(batch.x.float() / 16, x_hat).mean()
    gan = -model.discriminator(2 * x_hat - 1).mean()
    g_rec = torch.autograd.grad(rec, model.decoder_out.weight, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, model.decoder_out.weight)[0]
    expected = 0.8 * g_rec.norm() / (g_gan.norm() + 1e-4)
    assert late.terms["adaptive_weight"][0].item() == pytest.approx(expected.item(), rel=1e-3)


def test_perceptual_loss_uses_the_shipped_feature_network_outside_the_checkpoint():
    model = create_model("vqgan", DIGITS)
    assert not any("feature" in k for k in model.state_dict())
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(model.perceptual(x, x), torch.zeros(3))
    assert (model.perceptual(x, x.flip(2)) > 0).all()


def test_vqgan_trains_both_groups_after_the_warm_up(digits, tmp_path):
    from genmodels.training import TrainConfig, train

    result = train("vqgan", digits, TrainConfig(steps=24, batch_size=32, eval_every=1000, log_every=4, num_samples=4),
                   tmp_path / "vqgan", model_config={"channels": 16, "disc_start": 12, "disc_channels": 8},
                   progress=False)
    import csv

    rows = list(csv.DictReader(open(result.run_dir / "metrics.csv")))
    hinge = [float(r["value"]) for r in rows if r["metric"] == "discriminator/hinge"]
    assert hinge and all(math.isfinite(h) for h in hinge)
    assert min(int(r["step"]) for r in rows if r["metric"] == "autoencoder/adversarial") > 12
