"""Normalizing flows: exactness of every transform and of every model's likelihood."""

from __future__ import annotations

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from genmodels import units
from genmodels.core import Batch, LikelihoodKind, create_model
from genmodels.data import DataSpec
from genmodels.errors import UserError
from genmodels.flows.distributions import BaseDensity
from genmodels.flows.model import FlowConfig, FlowModel
from genmodels.flows.transforms import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    ComposedTransform,
    DiagonalScaling,
    InvertibleLinearLU,
    MaskedAutoregressive,
    MultiScale,
    Permutation,
    Reverse,
    SplineCoupling,
    Squeeze,
    channel_mask,
    checkerboard_mask,
    parity_mask,
)
from genmodels.nn.flow_nets import MLP, ConvNet, MaskedMLP

from .flow_checks import assert_log_det_matches_autograd

FLOW_MODELS = ["nice", "realnvp", "glow", "nsf", "maf"]
TOY = DataSpec("toy", (2,), None)
SMALL = {"nsf": {"transforms": 3, "hidden": (32, 32)}, "maf": {"transforms": 3}, "nice": {"hidden": (32, 32)}}


def _perturb(module: torch.nn.Module, scale: float = 0.3, seed: int = 0) -> None:
    """Move every parameter off its (often identity) initialization."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


# --- transforms -----------------------------------------------------------------------------------
TRANSFORMS = {
    "additive": (lambda: AdditiveCoupling(parity_mask(4, 0), MLP(4, 4, (16,))), (4,)),
    "affine": (lambda: AffineCoupling(parity_mask(4, 1), MLP(4, 8, (16,))), (4,)),
    "spline": (lambda: SplineCoupling(parity_mask(4, 0), MLP(4, 4 * 11, (16,)), bins=4, bound=2.0), (4,)),
    "affine-checkerboard": (lambda: AffineCoupling(checkerboard_mask((1, 4, 4), 0), ConvNet(1, 2, 8, blocks=1)), (1, 4, 4)),
    "affine-channel": (lambda: AffineCoupling(channel_mask((2, 2, 2), 1), ConvNet(2, 4, 8)), (2, 2, 2)),
    "diagonal-scaling": (lambda: DiagonalScaling((4,)), (4,)),
    "actnorm-vector": (lambda: ActNorm(4), (4,)),
    "actnorm-image": (lambda: ActNorm(2), (2, 2, 2)),
    "lu-linear": (lambda: InvertibleLinearLU(4), (4,)),
    "lu-1x1-conv": (lambda: InvertibleLinearLU(3), (3, 2, 2)),
    "squeeze": (lambda: Squeeze(), (2, 2, 2)),
    "permutation": (lambda: Permutation(torch.tensor([2, 0, 3, 1])), (4,)),
    "reverse": (lambda: Reverse(), (4,)),
    "maf": (lambda: MaskedAutoregressive(MaskedMLP(4, 2, (16, 16))), (4,)),
    "multiscale": (
        lambda: MultiScale(
            ComposedTransform(Squeeze(), AffineCoupling(channel_mask((4, 2, 2), 0), ConvNet(4, 8, 8))),
            (4, 2, 2),
            MultiScale(ComposedTransform(ActNorm(2), InvertibleLinearLU(2)), (2, 2, 2)),
        ),
        (1, 4, 4),
    ),
    "composed": (
        lambda: ComposedTransform(ActNorm(4), InvertibleLinearLU(4), AffineCoupling(parity_mask(4, 0), MLP(4, 8, (8,))), Reverse()),
        (4,),
    ),
}


def _built(name, dtype=torch.float32):
    factory, shape = TRANSFORMS[name]
    torch.manual_seed(1)
    t = factory()
    _perturb(t)
    return t.to(dtype).eval(), shape


@pytest.mark.parametrize("name", TRANSFORMS)
def test_inverse_undoes_the_transform_in_float32(name):
    t, shape = _built(name)
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(2)) * 2  # some points beyond the spline's bound
    with torch.no_grad():
        y, ladj = t.call_and_ladj(x)
        back = t.inverse(y)
    assert ladj.shape == (16,)
    assert torch.allclose(back, x, atol=1e-4), (back - x).abs().max()


@pytest.mark.parametrize("name", TRANSFORMS)
def test_log_det_matches_the_autograd_jacobian_in_float64(name):
    t, shape = _built(name, torch.float64)
    assert_log_det_matches_autograd(t, shape)


def test_spline_is_monotonic_continuous_and_identity_outside_its_bound():
    t, _ = _built("spline", torch.float64)
    x = torch.zeros(2001, 4, dtype=torch.float64)
    x[:, 1] = torch.linspace(-3, 3, 2001, dtype=torch.float64)  # parity 0: dimension 1 is transformed
    with torch.no_grad():
        y = t(x)[:, 1]
    assert (y.diff() > 0).all()
    assert y.diff().max() < 0.05  # no jump
    outside = x[:, 1].abs() > 2.0
    assert torch.equal(y[outside], x[outside, 1])


def test_additive_couplings_have_log_det_exactly_zero():
    t, shape = _built("additive")
    _, ladj = t.call_and_ladj(torch.randn(32, *shape))
    assert torch.equal(ladj, torch.zeros(32))
    nice = create_model("nice", TOY)
    _perturb(nice)
    couplings = [m for m in nice.flow.transform.transforms if isinstance(m, AdditiveCoupling)]
    assert len(couplings) == 4
    for c in couplings:
        assert torch.equal(c.call_and_ladj(torch.randn(5, 2))[1], torch.zeros(5))


def test_coupling_leaves_its_conditioning_half_unchanged_and_made_is_autoregressive():
    t, shape = _built("affine")
    x = torch.randn(8, *shape)
    y, _ = t.call_and_ladj(x)
    kept = parity_mask(4, 1).bool()
    assert torch.equal(y[:, kept], x[:, kept]) and not torch.allclose(y[:, ~kept], x[:, ~kept])
    # MADE: output (i, p) depends only on inputs j < i, by gradients.
    torch.manual_seed(0)
    made = MaskedMLP(5, 2, (7, 9)).double()
    _perturb(made)
    J = sum(  # over several points, so that no dependence hides behind a ReLU that is off at one
        jacobian(lambda v: made(v.reshape(1, 5)).reshape(5, 2), torch.randn(5, dtype=torch.float64)).abs()
        for _ in range(20)
    )  # (5, 2, 5)
    dependence = J.sum(dim=1) > 0  # [i, j]
    assert torch.equal(dependence, torch.ones(5, 5).tril(-1).bool())
    # The MAF layer's Jacobian is lower triangular.
    t, _ = _built("maf", torch.float64)
    J = jacobian(lambda v: t(v.reshape(1, 4)).reshape(-1), torch.randn(4, dtype=torch.float64))
    assert torch.equal(torch.triu(J, 1), torch.zeros(4, 4))
    assert (torch.tril(J, -1).abs() > 0).any()


def test_actnorm_data_dependent_init_gives_zero_mean_unit_variance():
    x = torch.randn(64, 3, 4, 4) * torch.tensor([0.5, 2.0, 7.0])[None, :, None, None] + torch.tensor([1.0, -3.0, 10.0])[None, :, None, None]
    a = ActNorm(3)
    a.request_init()
    y, ladj = a.call_and_ladj(x)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.var(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert bool(a.initialized)
    y2, _ = a.call_and_ladj(x + 1)  # initialized once only
    assert torch.allclose(y2, a.call_and_ladj(x + 1)[0])
    assert not torch.allclose(y2.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-2)


def test_model_initialize_sets_actnorm_on_the_first_batch():
    torch.manual_seed(0)
    x = torch.randn(512, 2) * torch.tensor([3.0, 0.2]) + torch.tensor([5.0, -1.0])
    model = create_model("glow", TOY)
    batches = [Batch(x[:128]), Batch(x[128:] * 10)]  # the second batch must not move actnorm
    model.initialize(batches)
    # The standardization reads the whole split.
    assert torch.allclose(model.loc, torch.cat([x[:128], x[128:] * 10]).mean(0), atol=1e-4)
    first = model.flow.transform.transforms[0]
    assert isinstance(first, ActNorm)
    with torch.no_grad():
        y, _ = first.call_and_ladj((x[:128] - model.loc) / model.scale)
    assert torch.allclose(y.mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(y.var(0, unbiased=False), torch.ones(2), atol=1e-3)


# --- models ---------------------------------------------------------------------------------------
def _grid_mass(model, half_width=7.0, step=0.035):
    """∫ p(x) dx over R² by the midpoint rule in t, x = 2 sinh(t) per axis (|x| ≤ 1 100 for |t| ≤ 7):
    fine near the origin (spacing 0.07) and reaching far into the tails."""
    n = int(2 * half_width / step)
    t = -half_width + step * (torch.arange(n, dtype=torch.float64) + 0.5)
    x, dx_dt = 2 * torch.sinh(t), 2 * torch.cosh(t)
    gx, gy = torch.meshgrid(x, x, indexing="xy")
    points = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    weights = (dx_dt[None, :] * dx_dt[:, None]).reshape(-1) * step * step
    with torch.no_grad():
        log_p = torch.cat([model.log_prob(chunk) for chunk in points.split(40_000)])
    return (log_p.exp() * weights).sum().item()


@pytest.mark.parametrize("name", FLOW_MODELS)
def test_density_on_2d_data_is_exact_and_integrates_to_one(name):
    torch.manual_seed(0)
    model = create_model(name, TOY, SMALL.get(name))
    model.initialize([Batch(torch.randn(256, 2) * 0.8)])
    # Perturbed enough that log p varies by nats over the data, not so much that the grid cannot resolve it.
    _perturb(model, 0.1)
    model = model.double().eval()
    assert model.likelihood_kind is LikelihoodKind.EXACT
    assert _grid_mass(model) == pytest.approx(1.0, abs=0.01)
    x = torch.randn(6, 2, dtype=torch.float64)
    (record,) = model.log_likelihoods(Batch(x))
    assert record.kind is LikelihoodKind.EXACT and record.samples is None
    assert torch.allclose(sum(record.terms.values()), record.values, atol=1e-10)
    assert torch.allclose(record.values, model.log_prob(x))
    with torch.no_grad():
        assert torch.allclose(model.decode(model.encode(x)), x, atol=1e-8)
    samples = model.sample(7, generator=torch.Generator().manual_seed(0), temperature=0.5)
    assert samples.shape == (7, 2) and samples.is_floating_point()


@pytest.mark.parametrize("name", FLOW_MODELS)
@pytest.mark.parametrize("dequantization", ["uniform", "variational"])
def test_discrete_data_gives_a_bound_with_its_draws_and_refuses_log_prob(name, dequantization):
    spec = DataSpec("d", (1, 4, 4), 5)
    torch.manual_seed(0)
    model = create_model(name, spec, {"dequantization": dequantization})
    x = torch.randint(0, 5, (6, 1, 4, 4))
    model.initialize([Batch(x)])
    _perturb(model, 0.1)
    assert model.likelihood_kind is LikelihoodKind.BOUND
    with pytest.raises(TypeError, match="not exact"):
        model.log_prob(x)
    (record,) = model.log_likelihoods(Batch(x), draws=3)
    assert record.kind is LikelihoodKind.BOUND and record.samples == 3
    assert record.measure == f"{dequantization}_dequantization"
    assert ("neg_log_q" in record.terms) == (dequantization == "variational")
    assert torch.allclose(sum(record.terms.values()), record.values, atol=1e-3)
    assert torch.allclose(record.terms["dequantization"], torch.full((6,), -16 * math.log(5)))
    samples = model.sample(4, temperature=0.7, generator=torch.Generator().manual_seed(0))
    assert samples.dtype == torch.int64 and samples.shape == (4, 1, 4, 4)
    assert samples.min() >= 0 and samples.max() <= 4
    with torch.no_grad():
        assert torch.equal(model.decode(model.encode(x)), x)  # the cell's centre maps back to its level
    with pytest.raises(UserError):
        model.log_likelihoods(Batch(x), draws=0)


def test_evaluation_does_not_depend_on_the_batch_size():
    spec = DataSpec("d", (1, 4, 4), 5)
    model = create_model("realnvp", spec, {"dequantization": "variational"}).eval()
    _perturb(model, 0.1)
    x = torch.randint(0, 5, (8, 1, 4, 4))
    seeds = torch.arange(100, 108)
    with torch.no_grad():
        whole = model.log_likelihoods(Batch(x, seeds=seeds), draws=2)[0].values
        parts = torch.cat([model.log_likelihoods(Batch(x[i : i + 3], seeds=seeds[i : i + 3]), draws=2)[0].values for i in range(0, 8, 3)])
    assert torch.allclose(whole, parts, atol=1e-5)


class _UniformBase(BaseDensity):
    """U[0,1)^D: log-density 0 inside."""

    def log_prob(self, z):
        inside = ((z >= 0) & (z < 1)).all(dim=1)
        return torch.where(inside, 0.0, -math.inf).to(z.dtype)


class _UniformFlow(FlowModel):
    def build_transform(self, event_shape):
        return ComposedTransform()

    def build_base(self, features):
        return _UniformBase(features)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_a_uniform_density_scores_exactly_log2_levels_bits_per_dim(levels):
    spec = DataSpec("u", (1, 3, 4), levels)
    model = _UniformFlow(FlowConfig(preprocess="none"), spec)
    x = torch.randint(0, levels, (10, 1, 3, 4))
    (record,) = model.log_likelihoods(Batch(x), draws=2)
    bpd = units.bits_per_dim(-record.values.double(), spec.dims)
    assert torch.allclose(bpd, torch.full((10,), math.log2(levels), dtype=torch.float64), atol=1e-6)
    assert units.dequantize_with_noise(x, torch.full(x.shape, 0.999), levels).lt(1).all()


@pytest.mark.parametrize("dequantization", ["variational", "uniform"])
def test_dequantization_bound_is_below_the_exact_discrete_likelihood(dequantization):
    """P(x) = ∫_{[0,1)²} p((x+u)/K) K⁻² du by integration on a grid; the Monte Carlo bound is below it."""
    K = 3
    spec = DataSpec("k3", (2,), K)
    torch.manual_seed(0)
    model = create_model("realnvp", spec, {"dequantization": dequantization, "preprocess": "scale", "couplings": 2})
    _perturb(model, 0.5)
    model = model.double().eval()
    levels = torch.tensor([[i, j] for i in range(K) for j in range(K)])
    step = 1 / 200
    u = step * (torch.arange(200, dtype=torch.float64) + 0.5)
    gu = torch.stack(torch.meshgrid(u, u, indexing="xy"), dim=-1).reshape(-1, 2)  # (40000, 2)
    draws = 4000
    with torch.no_grad():
        exact, uniform, bounds, errors = [], [], [], []
        for x in levels:
            y = (x + gu) / K
            h, pre = units.scale_to_symmetric(y)
            log_p_y = model.flow.log_prob(h) + pre
            exact.append(torch.logsumexp(log_p_y, 0) + math.log(step * step) - 2 * math.log(K))
            uniform.append(log_p_y.mean() - 2 * math.log(K))  # E_u[log p(y)] − D ln K by integration
            values = model.log_likelihoods(Batch(x.expand(draws, 2)))[0].values
            bounds.append(values.mean())
            errors.append(values.std() / math.sqrt(draws))
    exact, uniform, bounds, errors = map(torch.stack, (exact, uniform, bounds, errors))
    assert torch.logsumexp(exact, 0).exp() <= 1 + 1e-3  # the 9 probabilities sum to at most 1
    assert (bounds <= exact + 4 * errors + 1e-3).all(), (bounds, exact, errors)
    assert (exact - bounds).mean() > 0.01  # a real gap: q is not p's conditional
    if dequantization == "uniform":  # the Monte Carlo bound estimates the integral above
        assert ((bounds - uniform).abs() <= 4 * errors + 1e-3).all(), (bounds, uniform, errors)


def test_config_errors_name_the_fix():
    with pytest.raises(UserError, match="coupling must be"):
        create_model("glow", TOY, {"coupling": "cubic"})
    with pytest.raises(UserError, match="prior must be"):
        create_model("nice", TOY, {"prior": "cauchy"})
    with pytest.raises(UserError, match="dequantization must be"):
        create_model("maf", TOY, {"dequantization": "gaussian"})
    with pytest.raises(UserError, match="temperature"):
        create_model("nsf", TOY).sample(2, temperature=0.0)
    with pytest.raises(UserError, match="dropout must be"):
        create_model("nsf", TOY, {"dropout": 1.0})


@pytest.mark.parametrize("name", FLOW_MODELS)
def test_dropout_acts_in_training_mode_only(name):
    """With ``dropout``, train mode gives a different density at every call (a random conditioner),
    eval mode a deterministic one equal to the network without dropout (same weights)."""
    spec = DataSpec("d", (1, 4, 4), 5)
    torch.manual_seed(0)
    config = {**SMALL.get(name, {}), "dropout": 0.5}
    model = create_model(name, spec, config)
    x = torch.randint(0, 5, (6, 1, 4, 4))
    model.initialize([Batch(x)])
    _perturb(model, 0.1)
    reference = create_model(name, spec, {**config, "dropout": 0.0})
    reference.load_state_dict(model.state_dict())  # dropout has no parameters: the same weights
    seeds = torch.arange(6)

    def bound(m):
        with torch.no_grad():
            return m.log_likelihoods(Batch(x, seeds=seeds))[0].values

    model.train()
    assert not torch.allclose(bound(model), bound(model), atol=1e-4)  # same noise u, other dropout masks
    model.eval()
    reference.eval()
    first = bound(model)
    assert torch.equal(first, bound(model))
    assert torch.allclose(first, bound(reference), atol=1e-5)
    with torch.no_grad():  # every dropout mask is an invertible flow: eval mode round-trips
        z = model.encode(x)
        assert torch.equal(model.decode(z), x)


def test_image_flows_handle_odd_sides_and_one_channel():
    for name in ("realnvp", "glow"):
        for shape in [(1, 2, 5), (1, 3, 3), (3, 4, 4)]:
            spec = DataSpec("img", shape, 4)
            model = create_model(name, spec)
            _perturb(model, 0.1)
            x = torch.randint(0, 4, (3, *shape))
            with torch.no_grad():
                assert torch.equal(model.decode(model.encode(x)), x)
                assert torch.isfinite(model.log_likelihoods(Batch(x))[0].values).all()


def test_a_short_training_run_lowers_the_test_nll_on_eight_gaussians():
    from genmodels.data import load_dataset
    from genmodels.data.toy2d import EIGHT_GAUSSIANS_ENTROPY

    data = load_dataset("eight-gaussians")
    torch.manual_seed(0)
    model = create_model("nsf", data.spec, {"transforms": 4, "hidden": (32, 32)})
    train, test = data.train.x[:20_000], data.test.x[:4000]
    model.initialize(Batch(chunk) for chunk in train.split(256))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)

    def test_nll():
        with torch.no_grad():
            return -model.log_prob(test).mean().item()

    before = test_nll()  # ≈ 4.95: the standardized data under N(0, I)
    for _ in range(60):
        batch = Batch(train[torch.randint(0, len(train), (256,))])
        optimizer.zero_grad()
        model.loss(batch).loss.backward()
        optimizer.step()
    after = test_nll()
    assert after < before - 0.7, (before, after)
    assert after > EIGHT_GAUSSIANS_ENTROPY - 0.05  # never below the true entropy (up to test-set noise)


def test_plot_density_writes_a_png(tmp_path):
    from genmodels.data import load_dataset
    from genmodels.plot_density import plot_density

    data = load_dataset("eight-gaussians")
    model = create_model("nsf", data.spec, {"transforms": 2, "hidden": (16,)})
    model.initialize([Batch(data.train.x[:1000])])
    out = plot_density(model, data, tmp_path / "density.png", points=500, resolution=40)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(UserError, match="2-D"):
        plot_density(model, type(data)(DataSpec("d", (1, 8, 8), 17), data.train, data.validation, data.test), tmp_path / "x.png")


def test_a_spline_with_zero_parameters_is_the_identity():
    from genmodels.flows.spline import rational_quadratic_spline

    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    y, ladj = rational_quadratic_spline(x, torch.zeros(101, 3 * 8 - 1, dtype=torch.float64), bound=5.0)
    assert torch.allclose(y, x, atol=1e-12) and torch.allclose(ladj, torch.zeros_like(ladj), atol=1e-12)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("bins", [1, 2, 5, 32])
def test_the_fast_spline_matches_the_reference_spline_and_its_gradients(bins, inverse):
    from genmodels.flows.spline import rational_quadratic_spline, rational_quadratic_spline_reference

    g = torch.Generator().manual_seed(bins)
    x = (torch.randn(300, 3, generator=g, dtype=torch.float64) * 2.5).requires_grad_()  # some beyond the bound
    params = (torch.randn(300, 3, 3 * bins - 1, generator=g, dtype=torch.float64) * 2).requires_grad_()
    y, ladj = rational_quadratic_spline(x, params, bound=3.0, inverse=inverse)
    y_ref, ladj_ref = rational_quadratic_spline_reference(x, params, bound=3.0, inverse=inverse)
    assert torch.allclose(y, y_ref, atol=1e-10) and torch.allclose(ladj, ladj_ref, atol=1e-9)
    w = torch.randn(2, 300, 3, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((w[0] * y + w[1] * ladj).sum(), (x, params))
    grads_ref = torch.autograd.grad((w[0] * y_ref + w[1] * ladj_ref).sum(), (x, params))
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-8)


def test_the_variational_dequantizer_density_integrates_to_one_and_matches_its_samples():
    from genmodels.flows.dequantization import VariationalDequantizer

    torch.manual_seed(0)
    q = VariationalDequantizer(2, 4, (16,), 2).double()
    _perturb(q, 0.2)  # more, and q piles mass within float rounding of the cell's faces
    x = torch.tensor([[1, 3]])

    def log_q(u):  # log q(u | x) evaluated from u through the inverse map
        v = torch.log(u) - torch.log1p(-u)
        eps = q.transform.inverse(v, q.context(x.expand(len(u), 2), u.dtype))
        _, ladj = q.transform.call_and_ladj(eps, q.context(x.expand(len(u), 2), u.dtype))
        log_normal = -0.5 * (eps**2).sum(1) - math.log(2 * math.pi)
        return log_normal - ladj - (torch.log(u) + torch.log1p(-u)).sum(1)  # − log σ'(v)

    step = 1 / 400
    g = step * (torch.arange(400, dtype=torch.float64) + 0.5)
    grid = torch.stack(torch.meshgrid(g, g, indexing="xy"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        assert (log_q(grid).exp().sum() * step * step).item() == pytest.approx(1.0, abs=2e-3)
        eps = torch.randn(50, 2, dtype=torch.float64)
        u, reported = q(eps, x.expand(50, 2))
        assert ((u > 0) & (u < 1)).all()
        assert torch.allclose(reported, log_q(u), atol=1e-6)


def test_plot_density_from_the_command_line(tmp_path, capsys):
    from genmodels.cli import main

    run = tmp_path / "run"
    assert main(["train", "nsf", "--data", "eight-gaussians", "--steps", "5", "--eval-every", "5", "--batch-size", "256",
                 "--out", str(run), "--no-progress"]) == 0
    assert main(["plot-density", str(run), "--out", str(tmp_path / "d.png"), "--points", "200", "--resolution", "40"]) == 0
    assert (tmp_path / "d.png").is_file()
    assert main(["train", "fvsbn", "--steps", "2", "--eval-every", "2", "--out", str(tmp_path / "f"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["plot-density", str(tmp_path / "f"), "--out", str(tmp_path / "e.png")]) == 2
    err = capsys.readouterr().err
    assert "genmodels: error:" in err and ("2-D" in err or "continuous" in err)


def test_realnvp_networks_on_maps_larger_than_8x8_run_channels_last_as_the_same_function():
    import copy

    torch.manual_seed(0)
    model = create_model("realnvp", DataSpec("images", (1, 12, 12), 17), {"hidden": 8}).eval()
    nets = [m for m in model.modules() if isinstance(m, ConvNet)]
    large = [net for net in nets if net.channels_last]
    assert len(large) == 3 and len(nets) == 10  # the 12×12 scale's three; the 6×6 couplings keep NCHW
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)  # the last layers start at zero
    for net in large:
        assert net.first[0].weight.is_contiguous(memory_format=torch.channels_last)
        nchw = copy.deepcopy(net).to(memory_format=torch.contiguous_format)
        nchw.channels_last = False
        x = torch.randn(4, 1, 12, 12, generator=g, requires_grad=True)
        (y, grad), (y_ref, grad_ref) = ((out, torch.autograd.grad(out.square().sum(), x)[0]) for out in (net(x), nchw(x)))
        torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(grad, grad_ref, atol=1e-4, rtol=1e-4)
    x = torch.randint(0, 17, (4, 1, 12, 12), generator=g)
    with torch.no_grad():
        assert torch.equal(model.decode(model.encode(x)), x)


def test_nsf_random_halves_are_fixed_complementary_pairs_that_split_same_parity_columns():
    from genmodels.core import create_model
    from genmodels.data.base import DataSpec
    from genmodels.flows.transforms import random_half_mask

    first = random_half_mask(30, pair=0)
    assert first.sum() == 15 and torch.equal(first, random_half_mask(30, pair=0))  # the same at every build
    assert not torch.equal(first, random_half_mask(30, pair=1))
    model = create_model("nsf", DataSpec(name="table", shape=(30,), levels=None, num_classes=None))
    masks = [m.mask.flatten() for m in model.modules() if type(m).__name__ == "SplineCoupling"]
    assert len(masks) == 4
    assert torch.equal(masks[0], first) and torch.equal(masks[1], 1 - first)  # a pair covers every column
    assert torch.equal(masks[2], random_half_mask(30, pair=1)) and torch.equal(masks[3], 1 - masks[2])
    # odd/even halves keep all even columns on one side in every coupling; random ones split them
    assert all(len(set(m[0::2].tolist())) == 2 for m in masks)
    parity = create_model("nsf", DataSpec(name="table", shape=(30,), levels=None, num_classes=None), {"partition": "parity"})
    assert all(len(set(m.mask.flatten()[0::2].tolist())) == 1 for m in parity.modules() if type(m).__name__ == "SplineCoupling")
