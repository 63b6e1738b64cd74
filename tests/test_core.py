"""The model interface and its records: kinds are explicit and a bound never passes for exact."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from genmodels.core import (
    GenerativeModel,
    LikelihoodKind,
    LogLikelihood,
    ModelConfig,
    create_model,
    model_class,
    register_model,
)
from genmodels.data import DataSpec
from genmodels.errors import UserError
from genmodels.evaluate import evaluate_likelihood, format_records

from .toy_models import NoisyBound, TwoPlayer, registered


def test_log_prob_is_reserved_for_exact_models():
    class BoundWithLogProb(NoisyBound):
        def log_prob(self, x, y=None):
            return torch.zeros(len(x))

    with pytest.raises(TypeError, match="log_prob"):
        register_model("bad-bound")(BoundWithLogProb)

    class ExactWithoutLogProb(GenerativeModel):
        likelihood_kind = LikelihoodKind.EXACT

    with pytest.raises(TypeError, match="log_prob"):
        register_model("bad-exact")(ExactWithoutLogProb)


def test_likelihood_records_must_say_what_they_are():
    values = torch.zeros(3)
    with pytest.raises(ValueError):
        LogLikelihood(values, LikelihoodKind.EXACT, "log_prob", samples=4)  # exact needs no samples
    with pytest.raises(ValueError):
        LogLikelihood(values, LikelihoodKind.ESTIMATE, "iwae")  # an estimate states its k or NFE
    with pytest.raises(ValueError):
        LogLikelihood(values, LikelihoodKind.NONE, "nothing")
    with pytest.raises(ValueError):
        LogLikelihood(torch.zeros(3, 2), LikelihoodKind.BOUND, "elbo")  # per example
    record = LogLikelihood(values, "estimate", "iwae", samples=64)
    assert record.kind is LikelihoodKind.ESTIMATE


def test_a_bound_is_never_reported_as_exact(digits):
    with registered("noisy-bound", NoisyBound):
        model = create_model("noisy-bound", digits.spec)
        records = evaluate_likelihood(model, digits.validation, batch_size=50)  # 180 = 50+50+50+30
    assert [(r.measure, r.kind) for r in records] == [("noisy_bound", "bound"), ("ode", "estimate")]
    assert "exact" not in format_records(records)
    assert "bound (k=2)" in format_records(records)
    # Network evaluations are averaged per example over batches of different cost: every batch here
    # has an even size, so each took 20.
    assert records[1].evaluations == 20 and records[1].kind_label == "estimate (NFE=20)"
    with registered("noisy-bound", NoisyBound):
        records = evaluate_likelihood(create_model("noisy-bound", digits.spec), digits.validation, batch_size=61)
    assert records[1].evaluations == pytest.approx((61 * 10 + 61 * 10 + 58 * 20) / 180)  # 61, 61, 58
    with registered("noisy-bound", NoisyBound):
        records = evaluate_likelihood(create_model("noisy-bound", digits.spec), digits.validation, batch_size=45)
    assert records[1].evaluations == 10  # four odd batches of 45


def test_a_model_without_likelihood_yields_no_figure(digits):
    with registered("two-player", TwoPlayer):
        model = create_model("two-player", digits.spec)
        assert evaluate_likelihood(model, digits.validation) == []
        assert format_records([]) == "no likelihood (kind: none)"


def test_evaluation_is_repeatable_for_stochastic_bounds(digits):
    with registered("noisy-bound", NoisyBound):
        model = create_model("noisy-bound", digits.spec)
        first = evaluate_likelihood(model, digits.test, batch_size=100)
        torch.randn(10)  # the global RNG moves on; evaluation does not depend on it
        second = evaluate_likelihood(model, digits.test, batch_size=100)
    assert first == second


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown model 'pixelcn'.*fvsbn.*independent"):
        model_class("pixelcn")


def test_config_from_strings_parses_by_type_and_rejects_unknown_options():
    @dataclasses.dataclass
    class Config(ModelConfig):
        width: int = 3
        rate: float = 0.5
        flag: bool = False
        rank: int | None = None
        name: str = "a"

    parsed = Config.from_strings({"width": "7", "rate": "1e-3", "flag": "true", "rank": "none", "name": "b"})
    assert parsed == Config(7, 1e-3, True, None, "b")
    assert Config.from_strings({"rank": "4"}).rank == 4
    with pytest.raises(UserError, match="valid options: flag, name, rank, rate, width"):
        Config.from_strings({"depth": "2"})
    with pytest.raises(UserError, match="cannot read 'seven'"):
        Config.from_strings({"width": "seven"})
    with pytest.raises(UserError, match="unknown config option"):
        Config.from_json({"depth": 2})


def test_tuple_options_parse_from_commas_and_survive_json():
    import json

    @dataclasses.dataclass
    class Config(ModelConfig):
        channels: tuple[int, ...] = (8, 16)
        rates: tuple[float, ...] | None = None

    parsed = Config.from_strings({"channels": "32,64,128", "rates": "0.5, 1e-3"})
    assert parsed.channels == (32, 64, 128) and parsed.rates == (0.5, 1e-3)
    assert Config.from_json(json.loads(json.dumps(parsed.to_json()))) == parsed
    with pytest.raises(UserError, match="cannot read 'x'"):
        Config.from_strings({"channels": "1,x"})


def test_models_refuse_data_they_cannot_model():
    with pytest.raises(UserError, match="needs discrete data"):
        create_model("fvsbn", DataSpec("checkerboard", (2,), None))


def test_evaluation_rejects_data_that_does_not_fit_the_model(digits):
    from genmodels.core import Batch

    model = create_model("independent", digits.spec)
    bad = {
        "shape": torch.zeros(4, 64, dtype=torch.int64),
        "levels": torch.full((4, 1, 8, 8), 17),
        "negative": torch.full((4, 1, 8, 8), -1),
        "float": torch.zeros(4, 1, 8, 8),
    }
    messages = {"shape": r"expected \(B, 1, 8, 8\)", "levels": "outside", "negative": "outside", "float": "integer levels"}
    for name, x in bad.items():
        with pytest.raises(UserError, match=messages[name]):
            evaluate_likelihood(model, [Batch(x)])
    continuous = DataSpec("toy", (2,), None)
    with pytest.raises(UserError, match="NaN"):
        continuous.check(torch.tensor([[0.0, float("nan")]]))


def test_labels_are_range_checked_on_the_cpu_and_never_read_back_from_a_device():
    from genmodels.core import create_model

    model = create_model("nade", DataSpec("labelled", (1, 2, 2), 3, num_classes=4), {"conditional": True, "hidden": 4})
    for bad, shown in ((torch.tensor([0, 4]), "0..4"), (torch.tensor([-1, 2]), "-1..2"), (7, "7..7")):
        with pytest.raises(UserError, match=rf"^labels must be in 0\.\.3, got {shown}$"):
            model.labels(bad, 2)
    assert model.labels(torch.tensor([3, 0]), 2).tolist() == [3, 0]
    # Labels on a device are a training batch's: checking them would read them back to the host every
    # step. The meta device stands in for an accelerator (reading a value back from it fails).
    model.to("meta")
    on_device = model.labels(torch.tensor([1, 2], device="meta"), 2)
    assert on_device.device.type == "meta" and on_device.shape == (2,)


@pytest.mark.parametrize("name", ["gan", "two-stage", "ddpm", "vae", "nade", "made", "pixelcnn", "transformer", "rnn"])
def test_a_conditional_model_refuses_data_without_classes(name):
    from genmodels.core import create_model
    from genmodels.data import DataSpec

    expected = r"^conditional=true needs labelled data; 'plain' has no classes \(set conditional=false or use a labelled data set\)$"
    with pytest.raises(UserError, match=expected):
        create_model(name, DataSpec("plain", (1, 8, 8), 17), {"conditional": True})
    assert create_model(name, DataSpec("labelled", (1, 8, 8), 17, num_classes=10), {"conditional": True}).conditional
