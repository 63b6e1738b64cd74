"""Latent-variable formulas pinned to their definitions with hand-written expressions.

The ELBO and IWAE records of Burda et al. 2016 (eq. 7–8) when the k draws are evaluated in several
chunks whose last one is short (k = 207 with chunks of 100), compared with a hand average over all k;
Gumbel-softmax at τ ≠ 1 (Jang et al. 2017, eq. 1); the moving-average baseline of REINFORCE at a
decay where decay and 1 − decay differ.
"""

from __future__ import annotations

import math

import pytest
import torch

from genmodels.core import Batch, create_model
from genmodels.data import DataSpec
from genmodels.estimators import (
    MovingAverageBaseline, gumbel_softmax, log_mean_exp, perturb_and_softmax, straight_through_gumbel, vimco_surrogate,
)
from genmodels.latent import base


# --- the ELBO and IWAE records over k = 207 draws in chunks of 100, 100 and 7 ---------------------------
@pytest.mark.parametrize("name", ["vae", "iwae"])
def test_elbo_and_iwae_records_over_chunks_are_the_hand_averages_over_all_k(name, monkeypatch):
    """ELBO = (1/k) Σ_i log p(x | z_i) − KL(q ‖ p);  IWAE = log (1/k) Σ_i p(x, z_i)/q(z_i | x)  (Burda et al.
    2016, eq. 7–8), with k = 207 = 100 + 100 + 7 draws, and the decoder run on 7 rows at a time."""
    assert base.SAMPLE_CHUNK == 100
    k, latent = 207, 2
    spec = DataSpec("b", (1, 2, 5), 2)
    torch.manual_seed(0)
    model = create_model(name, spec, {"latent_dim": latent}).double().eval()
    x = torch.tensor([[0, 1, 1, 0, 1, 0, 0, 1, 1, 1], [1, 1, 0, 0, 0, 1, 0, 1, 0, 0]]).reshape(2, 1, 2, 5)
    g = torch.Generator().manual_seed(1)
    z_all = torch.randn(2, k, latent, generator=g, dtype=torch.float64)
    log_q_all = torch.randn(2, k, generator=g, dtype=torch.float64) - 3.0  # any values: the record is a
    log_pz_all = torch.randn(2, k, generator=g, dtype=torch.float64) - 2.0  # function of them
    handed = []

    def draw_posterior(q, batch, count):  # the table's next `count` draws, in order
        start = sum(handed)
        handed.append(count)
        return (z_all[:, start : start + count], log_q_all[:, start : start + count], log_pz_all[:, start : start + count])

    monkeypatch.setattr(model, "draw_posterior", draw_posterior)
    monkeypatch.setattr(base, "EVAL_FLOATS", 7 * spec.dims * model.per_dim)  # 7 decoder rows per call
    elbo, iwae = model.log_likelihoods(Batch(x), k=k)
    assert handed == [100, 100, 7]
    with torch.no_grad():
        kl = model.kl(model.encode(x))
        # log p(x | z_i) of all 207 draws at once, each example against its own draws
        log_px = torch.stack([model.log_px_given_z(z_all[b], x[b].expand(k, 1, 2, 5)) for b in range(2)])  # (2, k)
    for b in range(2):
        hand_reconstruction = sum(float(v) for v in log_px[b]) / k
        log_w = [float(log_px[b, i] + log_pz_all[b, i] - log_q_all[b, i]) for i in range(k)]
        top = max(log_w)
        hand_iwae = top + math.log(sum(math.exp(w - top) for w in log_w) / k)
        assert float(elbo.terms["reconstruction"][b]) == pytest.approx(hand_reconstruction, rel=1e-10)
        assert float(elbo.values[b]) == pytest.approx(hand_reconstruction - float(kl[b]), rel=1e-10)
        assert float(iwae.values[b]) == pytest.approx(hand_iwae, rel=1e-10)
    assert elbo.samples == iwae.samples == k


# --- Gumbel-softmax at τ ≠ 1: Jang et al. 2017, eq. 1 ------------------------------------------------
def _hand_softmax(values):
    top = max(values)
    e = [math.exp(v - top) for v in values]
    return [v / sum(e) for v in e]


@pytest.mark.parametrize("tau", [0.5, 2.0])
def test_gumbel_softmax_at_tau_is_softmax_of_log_pi_plus_g_over_tau(tau):
    """y_i = exp((log π_i + g_i)/τ) / Σ_j exp((log π_j + g_j)/τ) with fixed g (eq. 1)."""
    pi, g = [0.1, 0.3, 0.6], [0.5, -0.2, 1.0]
    expected = _hand_softmax([(math.log(p) + gi) / tau for p, gi in zip(pi, g)])
    if tau == 0.5:  # by hand: exponents 2(log π + g) = (−3.605, −2.808, 0.978)
        assert expected == pytest.approx([0.0100, 0.0222, 0.9678], abs=1e-3)
    logits = torch.tensor([math.log(p) for p in pi], dtype=torch.float64)
    noise = torch.tensor(g, dtype=torch.float64)
    assert gumbel_softmax(logits, noise, tau).tolist() == pytest.approx(expected, rel=1e-12)
    # perturb-and-softmax with Gumbel noise from u: g = −log(−log u) is the same relaxation
    u = torch.exp(-torch.exp(-noise))
    assert perturb_and_softmax(logits, u, tau).tolist() == pytest.approx(expected, rel=1e-9)


def test_straight_through_gumbel_passes_the_gradient_of_the_relaxed_sample_at_tau():
    """Forward one-hot, backward ∂y/∂logits of y = softmax((logits + g)/τ): (1/τ)(diag y − y yᵀ) (sec. 2.2)."""
    tau = 0.5
    logits = torch.tensor([math.log(0.1), math.log(0.3), math.log(0.6)], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([0.5, -0.2, 1.0], dtype=torch.float64)
    hard = straight_through_gumbel(logits, g, tau)
    assert hard.tolist() == [0.0, 0.0, 1.0]
    weights = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    (hard * weights).sum().backward()
    y = _hand_softmax([(math.log(p) + gi) / tau for p, gi in zip([0.1, 0.3, 0.6], g.tolist())])
    w = weights.tolist()
    expected = [(1 / tau) * y[i] * (w[i] - sum(yj * wj for yj, wj in zip(y, w))) for i in range(3)]
    assert logits.grad.tolist() == pytest.approx(expected, rel=1e-10)


# --- the moving-average baseline: b ← decay·b + (1 − decay)·mean(f) -----------------------------------
def test_moving_average_baseline_at_decay_0_9_is_the_hand_recursion():
    baseline = MovingAverageBaseline(decay=0.9)
    baseline.update(torch.tensor([2.0]))
    assert float(baseline()) == pytest.approx(2.0)  # the first mean starts it
    baseline.update(torch.tensor([4.0]))
    assert float(baseline()) == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)  # 2.2 (swapped weights: 3.8)
    baseline.update(torch.tensor([1.0, 3.0]))  # mean 2
    assert float(baseline()) == pytest.approx(0.9 * 2.2 + 0.1 * 2.0)  # 2.18


# --- the k-sample bound's value: log (1/k) Σ w_i (Burda et al. 2016, eq. 8; VIMCO's L̂, eq. 10) ----------
def test_log_mean_exp_and_the_vimco_surrogates_value_are_the_k_sample_bound():
    log_w = torch.tensor([[math.log(1.0), math.log(3.0), math.log(8.0)]], dtype=torch.float64)
    assert float(log_mean_exp(log_w)) == pytest.approx(math.log(4.0), rel=1e-12)  # (1 + 3 + 8)/3 = 4
    log_q = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    assert float(vimco_surrogate(log_w, log_q).detach()) == pytest.approx(math.log(4.0), rel=1e-12)
