"""The autoregressive family: causality by gradients, receptive fields, normalization of every
configuration, the fast samplers against the generic ancestral sampler, MADE's ensemble, the
discretized logistic mixture, conditioning and generative classification."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from genmodels.autoregressive.audit import (
    causality_violations,
    dependence,
    earlier_mask,
    pixelcnn_receptive_field,
    receptive_field,
)
from genmodels.autoregressive.classify import class_log_posterior, classify
from genmodels.core import Batch, GenerativeModel, LikelihoodKind, ModelConfig, create_model
from genmodels.data import DataSpec
from genmodels.data.base import Split
from genmodels.errors import UserError
from genmodels.nn.outputs import DiscretizedLogisticMixture

AUTOREGRESSIVE = ["made", "nade", "pixelcnn", "transformer", "rnn"]

#: Hand-picked configurations covering every option of every model.
CONFIGS = [
    ("made", {"hidden": (24,), "num_masks": 1, "direct": False}),
    ("made", {"hidden": (16, 16), "num_masks": 3, "order": "random"}),
    ("made", {"hidden": (16, 16), "num_masks": 2, "order": "natural", "input_encoding": "scalar"}),
    ("made", {"hidden": (32,), "num_masks": 2, "conditional": True}),
    ("made", {"hidden": (16, 16), "num_masks": 2, "dropout": 0.3, "l2": 0.1}),
    ("made", {"hidden": (16,), "num_masks": 2, "output": "logistic", "mixtures": 2, "conditional": True}),
    ("nade", {"hidden": 16}),
    ("nade", {"hidden": 16, "input_encoding": "scalar"}),
    ("nade", {"hidden": 16, "conditional": True}),
    ("nade", {"hidden": 16, "direct": True, "dropout": 0.3, "l2": 0.1}),
    ("nade", {"hidden": 16, "direct": True, "input_encoding": "scalar", "conditional": True}),
    ("pixelcnn", {"channels": 8, "layers": 3}),
    ("pixelcnn", {"channels": 8, "layers": 2, "first_kernel": 3, "kernel": 1, "output": "logistic", "mixtures": 2}),
    ("pixelcnn", {"variant": "plain", "channels": 8, "layers": 2}),
    ("pixelcnn", {"variant": "plain", "channels": 8, "layers": 1, "output": "logistic", "conditional": True}),
    ("pixelcnn", {"channels": 8, "layers": 3, "conditional": True, "dropout": 0.1}),
    ("transformer", {"dim": 16, "layers": 1, "heads": 2, "positions": "grid"}),
    ("transformer", {"dim": 16, "layers": 2, "heads": 4, "positions": "learned", "dropout": 0.1}),
    ("transformer", {"dim": 16, "layers": 1, "heads": 1, "positions": "sinusoidal", "conditional": True}),
    ("rnn", {"cell": "lstm", "hidden": 16, "embedding": 8}),
    ("rnn", {"cell": "gru", "hidden": 16, "layers": 2, "embedding": 8, "dropout": 0.1, "conditional": True}),
]


def _random_config(name: str, rng: random.Random) -> dict:
    """A random configuration of model ``name`` (small widths, every option drawn)."""
    cond = rng.random() < 0.5
    if name == "made":
        return {
            "hidden": tuple(rng.choice([8, 16, 24]) for _ in range(rng.randint(1, 3))),
            "num_masks": rng.randint(1, 4),
            "order": rng.choice(["natural", "random"]),
            "input_encoding": rng.choice(["onehot", "scalar"]),
            "mask_seed": rng.randint(0, 100),
            "direct": rng.random() < 0.5,
            "dropout": rng.choice([0.0, 0.5]),
            "output": rng.choice(["softmax", "logistic"]),
            "conditional": cond,
        }
    if name == "nade":
        return {
            "hidden": rng.choice([4, 16]),
            "input_encoding": rng.choice(["onehot", "scalar"]),
            "direct": rng.random() < 0.5,
            "dropout": rng.choice([0.0, 0.5]),
            "conditional": cond,
        }
    if name == "pixelcnn":
        return {
            "variant": rng.choice(["gated", "plain"]),
            "channels": rng.choice([4, 8]),
            "layers": rng.randint(1, 4),
            "first_kernel": rng.choice([3, 5, 7]),
            "kernel": rng.choice([1, 3, 5]),
            "output": rng.choice(["softmax", "logistic"]),
            "mixtures": rng.randint(1, 3),
            "conditional": cond,
        }
    if name == "transformer":
        heads = rng.choice([1, 2, 4])
        return {
            "dim": 4 * heads * rng.choice([1, 2]),
            "layers": rng.randint(1, 3),
            "heads": heads,
            "positions": rng.choice(["grid", "learned", "sinusoidal"]),
            "conditional": cond,
        }
    return {
        "cell": rng.choice(["lstm", "gru"]),
        "hidden": rng.choice([8, 16]),
        "layers": rng.randint(1, 2),
        "embedding": rng.choice([4, 8]),
        "conditional": cond,
    }


RANDOM_CONFIGS = [(name, _random_config(name, random.Random(f"{name}-{i}"))) for name in AUTOREGRESSIVE for i in range(3)]
ALL_CONFIGS = CONFIGS + RANDOM_CONFIGS
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(ALL_CONFIGS)]


def _model(name: str, spec: DataSpec, config: dict, seed: int = 0) -> GenerativeModel:
    """A model with perturbed parameters (so no check passes by a zero or symmetric init), in eval mode."""
    torch.manual_seed(seed)
    model = create_model(name, spec, config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model.eval()


def _labels(model, n, seed=0):
    return torch.randint(model.spec.num_classes, (n,), generator=torch.Generator().manual_seed(seed)) if model.conditional else None


def _all_configurations(spec: DataSpec) -> torch.Tensor:
    points = list(itertools.product(range(spec.levels), repeat=spec.dims))
    return torch.tensor(points, dtype=torch.int64).reshape(-1, *spec.shape)


# --- causality ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "config"), ALL_CONFIGS, ids=IDS)
def test_every_conditional_depends_only_on_earlier_dimensions(name, config):
    """∂θ_i/∂x_j = 0 for every j not before i in each of the model's orderings, and θ_i does depend
    on some earlier x_j (the audit is not vacuous)."""
    spec = DataSpec("d", (1, 3, 4), 5, 3)
    model = _model(name, spec, config)
    x = torch.randint(0, 5, (3, *spec.shape), generator=torch.Generator().manual_seed(1))
    y = _labels(model, 3)
    for ordering in range(model.num_orderings):
        assert causality_violations(model, x, y, ordering=ordering) == []
        dep = dependence(model, x, y, ordering=ordering)
        assert dep[earlier_mask(model.ordering(ordering))].max() > 0


@pytest.mark.parametrize("name", ["nade", "transformer", "rnn"])
def test_dense_models_see_every_earlier_dimension(name):
    """NADE, the Transformer and the RNN have no missing connections: θ_i depends on every x_{<i}."""
    spec = DataSpec("d", (1, 3, 4), 5)
    model = _model(name, spec, {})
    x = torch.randint(0, 5, (2, *spec.shape), generator=torch.Generator().manual_seed(1))
    dep = dependence(model, x) > 0
    assert torch.equal(dep, earlier_mask(model.ordering()))


def test_gated_pixelcnn_has_no_blind_spot():
    """The default gated PixelCNN on 8×8: every pixel's conditional depends on every earlier pixel."""
    spec = DataSpec("d", (1, 8, 8), 17)
    model = _model("pixelcnn", spec, {})
    x = torch.randint(0, 17, (2, *spec.shape), generator=torch.Generator().manual_seed(1))
    dep = dependence(model, x) > 0
    assert torch.equal(dep, earlier_mask(model.ordering()))


def test_plain_pixelcnn_has_the_blind_spot_that_the_gated_one_closes():
    """Stacked type-B masks grow the receptive field up-left and straight up but never to the right
    within a row: pixel (4, 0) of the plain PixelCNN (first kernel 7: row 3 seen up to column 3, each
    type-B layer adds one column to the right per row further up) sees exactly
    {(r, c): r < 4, c ≤ 6 − r}, however many layers; the wedge (3, 4..7), (2, 5..7), (1, 6..7), (0, 7)
    is its blind spot. The gated PixelCNN sees every earlier pixel."""
    spec = DataSpec("d", (1, 8, 8), 17)
    x = torch.randint(0, 17, (2, *spec.shape), generator=torch.Generator().manual_seed(1))
    index = 4 * 8 + 0
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    analytic = (rows < 4) & (cols <= 6 - rows)
    for layers in (4, 8):
        plain = receptive_field(_model("pixelcnn", spec, {"variant": "plain", "layers": layers}), x, index)[0]
        assert torch.equal(plain, analytic)
    gated = receptive_field(_model("pixelcnn", spec, {"variant": "gated", "layers": 6}), x, index)[0]
    assert torch.equal(gated, rows < 4)  # every earlier pixel: rows 0..3 whole, nothing of row 4 left of column 0


# --- normalization ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "config"), ALL_CONFIGS, ids=IDS)
def test_every_configuration_normalizes(name, config):
    """Σ_x p(x | y) = 1 over all 5³ = 125 images of a 1×3 image with 5 levels, for every class y."""
    spec = DataSpec("d", (1, 1, 3), 5, 2)
    model = _model(name, spec, config, seed=2)
    x = _all_configurations(spec)
    for label in [0, 1] if model.conditional else [None]:
        y = None if label is None else torch.full((len(x),), label)
        with torch.no_grad():
            total = torch.logsumexp(model.log_prob(x, y).double(), dim=0).exp().item()
        assert total == pytest.approx(1.0, abs=1e-5)


# --- sampling -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "config"), [c for c in CONFIGS if c[0] in ("nade", "transformer", "rnn")])
def test_fast_sampler_equals_the_generic_ancestral_sampler(name, config):
    """NADE's incremental a_i, the RNN's carried state and the Transformer's key/value cache draw the
    same samples, at a fixed seed, as a full network pass per dimension (whose conditionals are the
    ones log_prob uses)."""
    spec = DataSpec("d", (1, 3, 3), 4, 3)
    model = _model(name, spec, config)
    y = _labels(model, 2000)  # many draws, so that a slightly wrong conditional changes some of them
    fast = model.sample(2000, y=y, generator=torch.Generator().manual_seed(7))
    generic = model._sample_ordering(2000, y, 0, torch.Generator().manual_seed(7), 1.0)
    assert torch.equal(fast, generic)
    assert fast.float().std() > 0  # not a degenerate all-equal draw


def test_transformer_step_with_cache_matches_the_full_pass():
    spec = DataSpec("d", (1, 4, 4), 6, 3)
    model = _model("transformer", spec, {"dim": 32, "layers": 3, "heads": 4, "conditional": True})
    x = torch.randint(0, 6, (5, *spec.shape), generator=torch.Generator().manual_seed(0)).reshape(5, -1)
    y = torch.tensor([0, 1, 2, 0, 1])
    full = model.net.logits(x, y)  # (5, 16, 6)
    cache = model.net.new_cache()
    steps = torch.stack([model.net.step(x[:, t - 1] if t else None, t, cache, y, 5) for t in range(16)], dim=1)
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-5)
    a = model.sample(50, y=y[:1].expand(50), generator=torch.Generator().manual_seed(3))
    b = model.sample(50, y=y[:1].expand(50), generator=torch.Generator().manual_seed(3), use_cache=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_conditional_samples_follow_the_conditional_likelihood(name):
    """For each class y, the empirical distribution of samples drawn given y matches p(x | y)."""
    spec = DataSpec("tiny", (3,), levels=3, num_classes=2)
    config = dict(next(c for n, c in CONFIGS if n == name and c.get("conditional")))
    model = _model(name, spec, config, seed=3)
    x = _all_configurations(spec)
    for label in (0, 1):
        with torch.no_grad():
            probs = model.log_prob(x, torch.full((27,), label)).double().exp()
            draws = model.sample(20_000, y=torch.tensor(label), generator=torch.Generator().manual_seed(label))
        index = (draws[:, 0] * 9 + draws[:, 1] * 3 + draws[:, 2]).bincount(minlength=27).double() / len(draws)
        assert 0.5 * (index - probs).abs().sum().item() < 0.03


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_temperature_sharpens_and_must_be_positive(name):
    spec = DataSpec("d", (1, 2, 3), 4)
    model = _model(name, spec, {})
    with pytest.raises(UserError, match="temperature"):
        model.sample(2, temperature=0.0)
    cold = model.sample(200, generator=torch.Generator().manual_seed(0), temperature=0.05)
    hot = model.sample(200, generator=torch.Generator().manual_seed(0), temperature=1.0)
    with torch.no_grad():
        assert model.log_prob(cold).mean() > model.log_prob(hot).mean()


# --- MADE's ensemble --------------------------------------------------------------------------------
def test_made_ensemble_is_the_log_of_the_mean_probability():
    spec = DataSpec("d", (1, 2, 3), 3)
    model = _model("made", spec, {"hidden": (16,), "num_masks": 3})
    x = torch.randint(0, 3, (10, *spec.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        per_mask = torch.stack([model.log_prob_under(x, None, m) for m in range(3)]).double()
        ensemble = model.log_prob(x).double()
    expected = per_mask.exp().mean(dim=0).log()
    torch.testing.assert_close(ensemble, expected, atol=1e-5, rtol=1e-6)
    assert (ensemble > per_mask.mean(dim=0) + 1e-6).all()  # strictly above the mean of the logs (Jensen)
    assert model.log_likelihoods(Batch(x))[0].kind is LikelihoodKind.EXACT
    # The orderings differ (mask 0 is raster order, the others random permutations).
    assert torch.equal(model.ordering(0), torch.arange(6))
    assert not torch.equal(model.ordering(1), model.ordering(2))


def test_made_trains_on_one_ordering_at_a_time():
    spec = DataSpec("d", (1, 2, 3), 3)
    model = _model("made", spec, {"hidden": (16,), "num_masks": 3}).train()
    x = torch.randint(0, 3, (10, *spec.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        candidates = [-model.log_prob_under(x, None, m).mean() for m in range(3)]
        for seed in range(5):
            torch.manual_seed(seed)
            loss = model.loss(Batch(x)).loss
            assert min(abs(loss - c).item() for c in candidates) < 1e-6


# --- the discretized logistic mixture ---------------------------------------------------------------
@pytest.mark.parametrize("levels", [2, 17, 256])
def test_discretized_logistic_mixture_sums_to_one_and_matches_the_cdf(levels):
    head = DiscretizedLogisticMixture(levels, 3)
    params = torch.randn(50, 9, dtype=torch.float64) * 3
    params[:10, 6:] = -7.0  # very sharp components
    params[10:20, 6:] = 4.0  # very broad ones
    log_p = head.level_log_probs(params)  # (50, K)
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(50, dtype=torch.float64), atol=1e-10, rtol=0)
    # Against the CDF differences written out directly, in float64.
    logit_pi, mu, log_s = params.unflatten(-1, (3, 3)).unbind(-2)
    pi, s = torch.softmax(logit_pi, -1), log_s.clamp(min=-7).exp()
    inner = torch.linspace(-1, 1, levels, dtype=torch.float64)[:-1] + 1 / (levels - 1)  # upper bin edges
    edges = torch.cat([torch.tensor([-math.inf], dtype=torch.float64), inner, torch.tensor([math.inf], dtype=torch.float64)])
    cdf = torch.sigmoid((edges[None, :, None] - mu[:, None, :]) / s[:, None, :])  # (50, K+1, 3)
    direct = ((cdf[:, 1:] - cdf[:, :-1]) * pi[:, None, :]).sum(-1)
    torch.testing.assert_close(log_p.exp(), direct, atol=1e-9, rtol=1e-6)
    x = torch.randint(0, levels, (50,))
    torch.testing.assert_close(head.log_prob(params, x), log_p.gather(1, x[:, None]).squeeze(1))


# --- conditioning and bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_conditional_models_need_labels_and_use_them(name):
    with pytest.raises(UserError, match="labelled data"):
        create_model(name, DataSpec("d", (1, 2, 3), 4), {"conditional": True})
    spec = DataSpec("d", (1, 2, 3), 4, 3)
    model = _model(name, spec, {"conditional": True})
    x = torch.randint(0, 4, (4, *spec.shape), generator=torch.Generator().manual_seed(0))
    with pytest.raises(UserError, match="labels"):
        model.log_prob(x)
    with pytest.raises(UserError, match="labels must be in"):
        model.log_prob(x, torch.tensor([0, 1, 2, 3]))
    with torch.no_grad():
        assert not torch.allclose(model.log_prob(x, torch.zeros(4, dtype=torch.int64)), model.log_prob(x, torch.ones(4, dtype=torch.int64)))
    assert model.sample(3).shape == (3, *spec.shape)  # labels drawn uniformly when none are given


def test_pixelcnn_refuses_shapes_that_are_not_images_and_bad_configs():
    with pytest.raises(UserError, match=r"images \(C, H, W\)"):
        create_model("pixelcnn", DataSpec("table", (4, 4), 4))
    with pytest.raises(UserError, match="colour groups"):
        create_model("pixelcnn", DataSpec("rgb", (3, 4, 4), 4), {"channels": 2})
    with pytest.raises(UserError, match="first_kernel"):
        create_model("pixelcnn", DataSpec("d", (1, 4, 4), 4), {"first_kernel": 4})
    with pytest.raises(UserError, match="variant"):
        create_model("pixelcnn", DataSpec("d", (1, 4, 4), 4), {"variant": "fancy"})
    with pytest.raises(UserError, match="heads"):
        create_model("transformer", DataSpec("d", (1, 4, 4), 4), {"dim": 10, "heads": 4})
    with pytest.raises(UserError, match="cell"):
        create_model("rnn", DataSpec("d", (1, 4, 4), 4), {"cell": "elman"})
    with pytest.raises(UserError, match="num_masks"):
        create_model("made", DataSpec("d", (1, 4, 4), 4), {"num_masks": 0})


@pytest.mark.parametrize("name", ["made", "nade", "transformer", "rnn"])
def test_sequence_models_handle_several_channels(name):
    """Models over the flattened example order channels too (outermost), and stay normalized."""
    spec = DataSpec("rgb", (2, 1, 2), 3)
    model = _model(name, spec, {})
    with torch.no_grad():
        total = model.log_prob(_all_configurations(spec)).double().logsumexp(0).exp().item()
    assert total == pytest.approx(1.0, abs=1e-5)


# --- generative classification ---------------------------------------------------------------------------
class _TableModel(GenerativeModel):
    """p(x | y) given as a table over the 8 binary vectors of length 3 (not registered)."""

    likelihood_kind = LikelihoodKind.EXACT
    conditional = True

    def __init__(self, table: torch.Tensor):
        super().__init__(ModelConfig(), DataSpec("t", (3,), 2, table.shape[0]))
        self.table = table  # (C, 8), rows sum to 1

    def log_prob(self, x, y=None):
        index = x[:, 0] * 4 + x[:, 1] * 2 + x[:, 2]
        return self.table[y, index].log()


def test_class_log_posterior_is_bayes_rule_by_brute_force():
    g = torch.Generator().manual_seed(0)
    table = torch.rand(3, 8, generator=g, dtype=torch.float64) ** 3
    table /= table.sum(1, keepdim=True)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    model = _TableModel(table)
    x = _all_configurations(model.spec)
    posterior = class_log_posterior(model, x, prior.log()).exp()
    for i in range(8):
        joint = [table[c, i] * prior[c] for c in range(3)]
        for c in range(3):
            assert posterior[i, c].item() == pytest.approx((joint[c] / sum(joint)).item(), rel=1e-12)
    uniform = class_log_posterior(model, x).exp()
    torch.testing.assert_close(uniform, table.T / table.T.sum(1, keepdim=True))
    # Unnormalized priors are normalized; a wrong shape is refused.
    torch.testing.assert_close(class_log_posterior(model, x, prior.log() + 5.0).exp(), posterior)
    with pytest.raises(UserError, match="log_prior"):
        class_log_posterior(model, x, torch.zeros(2))


def test_classify_reports_accuracy_confusion_and_label_nll():
    table = torch.tensor([[0.7, 0.1, 0.1, 0.1, 0, 0, 0, 0], [0, 0, 0, 0, 0.1, 0.1, 0.1, 0.7]], dtype=torch.float64) + 1e-3
    table /= table.sum(1, keepdim=True)
    model = _TableModel(table)
    x = torch.tensor([[0, 0, 0], [1, 1, 1], [0, 0, 1], [1, 1, 1]])
    y = torch.tensor([0, 1, 1, 0])  # the last two are mislabelled for the model
    result = classify(model, Split(x, y), batch_size=3)
    assert result.accuracy == 0.5
    assert result.confusion.tolist() == [[1, 1], [1, 1]]
    posterior = class_log_posterior(model, x)
    assert result.label_nll == pytest.approx(-posterior[torch.arange(4), y].mean().item())
    with pytest.raises(UserError, match="class-conditional"):
        classify(create_model("nade", DataSpec("d", (3,), 2, 2)), Split(x, y))


def test_generative_classification_with_a_conditional_model_matches_the_joint_table():
    """With a real conditional MADE: the posterior is the normalized column of the joint p(x, y)."""
    spec = DataSpec("d", (1, 2, 2), 2, 3)
    model = _model("made", spec, {"hidden": (16,), "num_masks": 2, "conditional": True})
    x = _all_configurations(spec)
    with torch.no_grad():
        joint = torch.stack([model.log_prob(x, torch.full((16,), c)) for c in range(3)], 1).double().exp() / 3
    torch.testing.assert_close(class_log_posterior(model, x).exp(), joint / joint.sum(1, keepdim=True), atol=1e-6, rtol=1e-5)


def test_label_marginal_likelihood_is_the_uniform_mixture_of_the_label_tables():
    """marginal=true heads the records with log Σ_y p(x|y)/C: on a table model, exactly the mixture
    (not the mean of log p(x|y), not the sum without 1/C); log p(x|y) of the given labels follows."""
    table = torch.tensor([[0.7, 0.1, 0.1, 0.1, 0, 0, 0, 0], [0.05, 0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.4]], dtype=torch.float64)
    model = _TableModel(table + 1e-9)
    x = _all_configurations(model.spec)
    y = torch.zeros(8, dtype=torch.int64)
    marginal, given = model.log_likelihoods(Batch(x, y), marginal=True)
    assert (marginal.measure, given.measure) == ("log_prob_marginal", "log_prob")
    assert marginal.kind is LikelihoodKind.EXACT
    torch.testing.assert_close(marginal.values.exp(), (table + 1e-9).mean(0), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(given.values, (table[0] + 1e-9).log())
    assert [r.measure for r in model.log_likelihoods(Batch(x, y))] == ["log_prob"]  # off by default


@pytest.mark.parametrize("name", ["nade", "made", "pixelcnn", "transformer", "rnn"])
def test_label_marginal_of_a_conditional_model_normalizes_and_needs_one(name):
    spec = DataSpec("d", (1, 2, 3), 2, 3)
    model = _model(name, spec, {"conditional": True})
    x = _all_configurations(spec)
    with torch.no_grad():
        marginal = model.log_likelihoods(Batch(x, torch.zeros(len(x), dtype=torch.int64)), marginal=True)[0]
    assert marginal.values.double().logsumexp(0).exp().item() == pytest.approx(1.0, abs=1e-5)
    unconditional = _model(name, spec, {})
    with pytest.raises(UserError, match="class-conditional"):
        unconditional.log_likelihoods(Batch(x), marginal=True)


@pytest.mark.parametrize(
    ("variant", "layers", "first_kernel", "kernel"),
    [("plain", 1, 3, 3), ("plain", 3, 5, 3), ("plain", 2, 3, 5), ("gated", 1, 3, 3), ("gated", 3, 3, 3), ("gated", 2, 5, 3), ("gated", 3, 3, 1)],
)
def test_audited_receptive_field_equals_the_analytic_one(variant, layers, first_kernel, kernel):
    """The gradient audit of a PixelCNN finds exactly the receptive field composed from its kernels'
    footprints, pixel by pixel, on a 7×9 image where the fields are still partial."""
    spec = DataSpec("d", (1, 7, 9), 5)
    model = _model("pixelcnn", spec, {"variant": variant, "layers": layers, "first_kernel": first_kernel, "kernel": kernel, "channels": 8})
    x = torch.randint(0, 5, (2, *spec.shape), generator=torch.Generator().manual_seed(1))
    dep = dependence(model, x) > 0  # (63, 63)
    for index in range(spec.dims):
        analytic = pixelcnn_receptive_field(variant, layers, first_kernel, kernel, 7, 9, divmod(index, 9))
        assert torch.equal(dep[index].reshape(7, 9), analytic), (index, dep[index].reshape(7, 9).int(), analytic.int())


@pytest.mark.parametrize("name", ["made", "nade"])
def test_marginal_init_starts_at_the_independent_fit(name):
    """With the output weights at zero, a model initialized on data is exactly ``independent``."""
    spec = DataSpec("d", (1, 2, 3), 4)
    x = torch.randint(0, 4, (40, *spec.shape), generator=torch.Generator().manual_seed(0))
    batches = [Batch(x[:25]), Batch(x[25:])]
    model = create_model(name, spec)
    model.initialize(batches)
    with torch.no_grad():
        (model.output.weight if name == "made" else model.V).zero_()
    reference = create_model("independent", spec)
    reference.initialize(batches)
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), reference.log_prob(x))


@pytest.mark.parametrize("name", AUTOREGRESSIVE)
def test_every_config_option_is_documented_for_the_cli(name):
    """``genmodels train MODEL --help`` reads each option's help from the Config's ``Args:``."""
    from genmodels.core import model_class

    rows = model_class(name).Config.describe()
    assert rows and all(doc for _, _, _, doc in rows), [row for row in rows if not row[3]]


# --- NADE's and MADE's regularizers -----------------------------------------------------------------
@pytest.mark.parametrize("name", ["made", "nade"])
def test_dropout_acts_in_training_only_so_the_likelihood_stays_exact(name):
    """In evaluation a model with dropout is the same function as one without (same weights): its
    log_prob is deterministic and normalizes; in training two passes differ."""
    spec = DataSpec("d", (1, 2, 3), 3)
    config = {"hidden": (16,) if name == "made" else 16, "dropout": 0.5, **({"num_masks": 1} if name == "made" else {})}
    model = _model(name, spec, config)
    plain = create_model(name, spec, {**config, "dropout": 0.0})
    plain.load_state_dict(model.state_dict())
    plain.eval()
    x = torch.randint(0, 3, (20, *spec.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.log_prob(x), plain.log_prob(x))
        model.train()
        torch.manual_seed(0)
        first = model.log_prob(x)
        assert not torch.allclose(first, model.log_prob(x))
        assert not torch.allclose(first, plain.log_prob(x))


@pytest.mark.parametrize(("name", "config"), [
    ("made", {"hidden": (8, 8), "num_masks": 1, "direct": True, "conditional": True, "l2": 0.3}),
    ("nade", {"hidden": 8, "direct": True, "conditional": True, "l2": 0.3}),
])
def test_l2_prior_adds_half_lambda_times_the_squared_weights_not_the_biases(name, config):
    """loss = mean NLL + (λ/2)·Σ‖W‖² over every weight (not the biases); the per-example term stays
    the NLL, and evaluation reports the NLL alone."""
    spec = DataSpec("d", (1, 2, 3), 3, 2)
    model = _model(name, spec, config).train()
    x = torch.randint(0, 3, (10, *spec.shape), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 2, (10,), generator=torch.Generator().manual_seed(1))
    biases = {"c", "b"} if name == "nade" else {n for n, _ in model.named_parameters() if n.endswith("bias")}
    weights = [p for n, p in model.named_parameters() if n not in biases]
    assert len(weights) == (4 if name == "nade" else 5)  # W, V, A, the label embedding / two layers, output, direct, label
    with torch.no_grad():
        out = model.loss(Batch(x, y))
        nll = -model.log_prob(x, y)
    torch.testing.assert_close(out.terms["nll"], nll)
    penalty = 0.5 * 0.3 * sum((w.double() ** 2).sum() for w in weights)
    assert out.loss.item() == pytest.approx(nll.mean().item() + penalty.item(), rel=1e-5)
    assert model.log_likelihoods(Batch(x, y))[0].values.tolist() == pytest.approx((-nll).tolist())


def test_nade_with_direct_connections_contains_fvsbn():
    """With V = 0, NADE's direct term is fvsbn's softmax regression: A = W_fvsbn / 2 (x̄ = 2·x̃_fvsbn)."""
    spec = DataSpec("d", (1, 2, 3), 4)
    fvsbn = _model("fvsbn", spec, {})
    nade = create_model("nade", spec, {"hidden": 8, "direct": True}).eval()
    with torch.no_grad():
        nade.V.zero_()
        nade.b.copy_(fvsbn.bias)
        nade.A.copy_(fvsbn.weight / 2)
        nade.A.add_(torch.randn_like(nade.A) * torch.ones(6, 6).triu().unsqueeze(1))  # the masked part: unused
    x = _all_configurations(spec)[::7]
    with torch.no_grad():
        torch.testing.assert_close(nade.log_prob(x), fvsbn.log_prob(x))


def test_made_takes_one_int_as_one_hidden_layer():
    """A recipe's ``hidden = 512`` (TOML has no tuples, and the CLI reads "512") is one layer of 512."""
    spec = DataSpec("d", (1, 2, 3), 3)
    assert create_model("made", spec, {"hidden": 8}).config.hidden == (8,)
    assert create_model("made", spec, {"hidden": [8, 4]}).config.hidden == (8, 4)


@pytest.mark.parametrize("name", ["nade", "made", "pixelcnn", "transformer", "rnn"])
def test_hybrid_label_term_is_the_bayes_posterior_cross_entropy_in_training_only(name):
    """label_weight λ adds λ·(−log p(y | x)) with p(y | x) the model's own Bayes posterior (uniform
    prior), on the first label_examples examples; evaluation losses and log p(x | y) are untouched."""
    spec = DataSpec("d", (1, 2, 3), 3, 4)
    torch.manual_seed(0)
    x, y = torch.randint(3, (6, 1, 2, 3)), torch.tensor([0, 1, 2, 3, 1, 2])
    plain = _model(name, spec, {"conditional": True})
    hybrid = _model(name, spec, {"conditional": True, "label_weight": 2.5, "label_examples": 4})
    hybrid.load_state_dict(plain.state_dict())
    plain.train(), hybrid.train()
    out, base = hybrid.loss(Batch(x, y)), plain.loss(Batch(x, y))
    with torch.no_grad():
        expected = -class_log_posterior(plain, x[:4])[torch.arange(4), y[:4]]
    torch.testing.assert_close(out.terms["label_nll"].double(), expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.loss, base.loss + 2.5 * expected.mean().float(), rtol=1e-4, atol=1e-5)
    hybrid.eval()
    assert "label_nll" not in hybrid.loss(Batch(x, y)).terms
    torch.testing.assert_close(hybrid.log_prob(x, y), plain.eval().log_prob(x, y))
    with pytest.raises(UserError, match="class-conditional"):
        _model(name, spec, {"label_weight": 1.0})


def test_hybrid_objective_trains_a_better_classifier_from_the_same_budget():
    """Two classes whose images differ in one weak cue (pixel 0 agrees with the label 80 % of the time,
    the other pixels are noise): from the same start and 20 steps, λ = 5 brings the Bayes classifier's
    label NLL nearer the optimum (0.500 nats, 80 %) than the plain likelihood does (0.536 against 0.581;
    a sign error in the label term would push it away)."""
    gen = torch.Generator().manual_seed(0)
    n, d = 400, 12
    y = torch.randint(2, (n,), generator=gen)
    x = (torch.rand(n, d, generator=gen) < 0.5).long()
    cue = torch.rand(n, generator=gen) < 0.8
    x[:, 0] = torch.where(cue, y, 1 - y)
    spec = DataSpec("d", (d,), 2, 2)

    def fit(weight: float):
        torch.manual_seed(1)
        model = create_model("nade", spec, {"conditional": True, "hidden": 8, "label_weight": weight})
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(20):
            opt.zero_grad()
            model.loss(Batch(x, y)).loss.backward()
            opt.step()
        return classify(model.eval(), Split(x, y))

    plain, hybrid = fit(0.0), fit(5.0)
    assert hybrid.label_nll < plain.label_nll - 0.03 and hybrid.accuracy >= plain.accuracy, (plain, hybrid)


def test_masked_linear_reuses_its_masked_weight_without_autograd_and_never_a_stale_one():
    from genmodels.nn.masked import MaskedLinear

    torch.manual_seed(0)
    layer = MaskedLinear(4, 3)
    mask = (torch.rand(3, 4) > 0.5).float()
    x = torch.randn(2, 4)

    def by_hand(m):
        return x @ (layer.weight * m).T + layer.bias

    with torch.no_grad():
        assert torch.equal(layer(x, mask), by_hand(mask))
        assert layer.masked_weight(mask) is layer.masked_weight(mask)  # reused, not recomputed
        layer.weight.add_(1.0)  # an optimizer step writes the weight in place
        assert torch.equal(layer(x, mask), by_hand(mask))
        mask[0, 0] = 1 - mask[0, 0]  # a mask changed in place
        assert torch.equal(layer(x, mask), by_hand(mask))
        other = 1 - mask  # another ordering's mask
        assert torch.equal(layer(x, other), by_hand(other))
        layer.load_state_dict({"weight": torch.zeros(3, 4), "bias": torch.zeros(3)})
        assert torch.equal(layer(x, other), torch.zeros(2, 3))
    # With autograd the product is recorded afresh, so the gradient reaches the weight.
    layer(x, mask).sum().backward()
    assert torch.equal(layer.weight.grad, mask * x.sum(0))
