"""The contract tests of tests/test_models.py in other dtypes, over the whole registry.

float64: exactness tests compare with hand-written values in float64, so every model must build under a
float64 default dtype and also work when moved there (no float32 cast of its inputs, noise or buffers
inside), with float64 losses and records. bf16: ``--mixed-precision bf16`` trains under autocast, so
every model's training step must run there and give finite losses and gradients.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from genmodels.data import DataSpec

from .test_models import CONTINUOUS_MODELS, DISCRETE_MODELS, _check_contract, _random_batches, _randomized


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _check_float64(model, spec, scale_batch=8):
    # (0/1 mask buffers may stay float32: exact in any dtype, and promoted to float64 where used)
    assert all(p.dtype == torch.float64 for p in model.parameters()), "a parameter is not float64"
    batch = _random_batches(spec, n=scale_batch, batch_size=scale_batch)[0]
    _check_contract(model, spec, batch)
    model.train()
    for group in model.optimizer_groups() or {"model": []}:
        assert model(batch, step=0, group=group).loss.dtype == torch.float64, group
    model.eval()
    for record in model.log_likelihoods(batch):
        assert record.values.dtype == torch.float64, record.measure


@pytest.mark.parametrize("name", DISCRETE_MODELS)
def test_every_model_builds_trains_scores_and_samples_in_float64(name):
    spec = DataSpec("b", (1, 2, 5), 2)
    with _default_dtype(torch.float64):
        model = _randomized(name, spec)
        _check_float64(model, spec)


@pytest.mark.parametrize("name", DISCRETE_MODELS)
def test_every_model_moved_to_float64_works_there(name):
    """Built in float32, then ``model.to(torch.float64)``: no input cast inside may pin float32."""
    spec = DataSpec("b", (1, 2, 5), 2)
    model = _randomized(name, spec).to(torch.float64)
    _check_float64(model, spec)


@pytest.mark.parametrize("name", CONTINUOUS_MODELS)
def test_every_continuous_model_works_in_float64(name):
    spec = DataSpec("c", (2,), None)
    with _default_dtype(torch.float64):
        model = _randomized(name, spec, scale=0.1)
        _check_float64(model, spec)


@pytest.mark.parametrize("name", DISCRETE_MODELS)
def test_every_model_takes_a_training_step_under_bf16_autocast(name):
    """The forward of each optimizer group under CPU bf16 autocast (as the trainer runs it), then backward;
    training mode, so the VQ models also update their codebooks and restart dead codes."""
    spec = DataSpec("d", (1, 8, 8), 17, 10)
    model = _randomized(name, spec).train()
    batch = _random_batches(spec, n=8, batch_size=8)[0]
    for group in model.optimizer_groups() or {"model": []}:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(batch, step=0, group=group)
        assert torch.isfinite(out.loss), group
        if out.loss.requires_grad:  # (a counting model has no gradient step)
            model.zero_grad()
            out.loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert grads and all(torch.isfinite(g).all() for g in grads), group


def test_ddpm_variational_bound_runs_in_float64():
    """The bound feeds its denoiser in the network's dtype (``network_dtype``) and its records are float64."""
    spec = DataSpec("b", (1, 2, 5), 2)
    with _default_dtype(torch.float64):
        model = _randomized("ddpm", spec, config={"timesteps": 100})  # (β_T = 20/T must stay < 1)
    batch = _random_batches(spec, n=4, batch_size=4)[0]
    bound = [r for r in model.log_likelihoods(batch, bound=True) if r.measure == "ddpm-elbo"][0]
    assert bound.values.dtype == torch.float64 and torch.isfinite(bound.values).all()
    assert all(term.dtype == torch.float64 for term in bound.terms.values())
