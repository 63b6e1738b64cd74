"""Mixtures of trained models: the EM weights, exactness (normalization), kinds, sampling, the CLI."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from genmodels.cli import main
from genmodels.core import create_model
from genmodels.data.base import DataSpec, Split
from genmodels.errors import UserError
from genmodels.mixture import Member, MixtureOfModels, fit_mixture_weights, mixture_kind, mixture_log_likelihood

SPEC = DataSpec("binary-10", (10,), 2)
ALL_CONFIGURATIONS = torch.tensor(list(itertools.product([0, 1], repeat=10)), dtype=torch.int64)


def _member(name: str, seed: int, **config) -> Member:
    torch.manual_seed(seed)
    model = create_model(name, SPEC, config)
    with torch.no_grad():  # move far from the initialization, so that the members differ
        for parameter in model.parameters():
            parameter.normal_(0.0, 1.0)
    return Member(model.eval(), f"{name} {seed}", {})


def test_em_recovers_the_weights_that_generated_the_data():
    """x ~ 0.3·p_1 + 0.7·p_2 on four symbols; EM on the members' log-likelihoods finds (0.3, 0.7)."""
    p = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.05, 0.15, 0.3, 0.5]], dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    member = torch.multinomial(torch.tensor([0.3, 0.7]), 40_000, replacement=True, generator=generator)
    x = torch.stack([torch.multinomial(p[k], 1, generator=generator) for k in member.tolist()]).squeeze(1)
    log_likelihoods = torch.log(p[:, x]).T  # N × K
    weights = fit_mixture_weights(log_likelihoods)
    assert weights.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert weights.tolist() == pytest.approx([0.3, 0.7], abs=0.015)
    # the maximum: no other weights on the simplex score these data higher
    best = mixture_log_likelihood(log_likelihoods, weights).mean()
    for w in (0.2, 0.25, 0.35, 0.4, 0.5):
        assert mixture_log_likelihood(log_likelihoods, torch.tensor([w, 1 - w])).mean() <= best + 1e-12


def test_em_weights_are_never_worse_than_the_best_member_or_equal_weights():
    generator = torch.Generator().manual_seed(1)
    log_likelihoods = -torch.rand(500, 3, generator=generator, dtype=torch.float64) * 5
    fitted = mixture_log_likelihood(log_likelihoods, fit_mixture_weights(log_likelihoods)).mean()
    assert fitted >= log_likelihoods.mean(0).max() - 1e-9
    assert fitted >= mixture_log_likelihood(log_likelihoods, torch.full((3,), 1 / 3, dtype=torch.float64)).mean() - 1e-12
    # one member better on every example: all the weight goes to it
    dominated = torch.stack([log_likelihoods[:, 0], log_likelihoods[:, 0] - 2.0], 1)
    assert fit_mixture_weights(dominated)[0].item() == pytest.approx(1.0, abs=1e-6)


def test_a_mixture_of_exact_models_normalizes_over_all_1024_binary_configurations():
    mixture = MixtureOfModels([_member("fvsbn", 0), _member("made", 1, hidden=16)], weights=torch.tensor([0.25, 0.75]))
    found = mixture.member_likelihoods(Split(ALL_CONFIGURATIONS))
    members = torch.stack([f.values for f in found], 1)
    assert torch.logsumexp(members, 0).exp().tolist() == pytest.approx([1.0, 1.0], abs=1e-6)  # each member normalizes
    mixed = mixture_log_likelihood(members, mixture.weights)
    assert torch.logsumexp(mixed, 0).exp().item() == pytest.approx(1.0, abs=1e-6)
    # p = 0.25 p_1 + 0.75 p_2 pointwise, not a mean of log-probabilities
    expected = 0.25 * members[:, 0].exp() + 0.75 * members[:, 1].exp()
    assert torch.allclose(mixed.exp(), expected, rtol=1e-9)
    record, member_records = mixture.evaluate(Split(ALL_CONFIGURATIONS))
    assert record.kind == "exact" and record.nll_nats == pytest.approx(-mixed.mean().item())
    assert [r.nll_nats for r in member_records] == pytest.approx((-members.mean(0)).tolist())
    # the mixture's gain over each member, paired example by example: NLL_k − NLL_mix ± sd(ℓ_mix − ℓ_k)/√n
    _, _, gains = mixture.evaluate_paired(Split(ALL_CONFIGURATIONS))
    for k, (gain, stderr) in enumerate(gains):
        difference = mixed - members[:, k]
        assert gain == pytest.approx(member_records[k].nll_nats - record.nll_nats, abs=1e-9)
        assert stderr == pytest.approx(difference.std().item() / math.sqrt(len(difference)), rel=1e-9)


def test_a_model_mixed_with_itself_is_the_model():
    member = _member("fvsbn", 3)
    mixture = MixtureOfModels([member, Member(member.model, "again", {})])
    record, (alone, _) = mixture.evaluate(Split(ALL_CONFIGURATIONS[:100]))
    assert record.nll_nats == pytest.approx(alone.nll_nats, abs=1e-9)


def test_the_kind_of_a_mixture_is_its_weakest_members():
    assert mixture_kind(["exact", "exact"]) == "exact"
    assert mixture_kind(["exact", "bound"]) == "bound"
    assert mixture_kind(["bound", "estimate", "exact"]) == "estimate"


def test_samples_come_from_the_members_in_proportion_to_the_weights():
    """Two members with disjoint supports (all zeros, all ones): the share of each is its weight."""
    zeros, ones = (Member(create_model("independent", SPEC, {}), name, {}) for name in ("zeros", "ones"))
    zeros.model.logits[:, 0] = 30.0  # p(x_d = 0) = 1 − e⁻³⁰
    ones.model.logits[:, 1] = 30.0
    mixture = MixtureOfModels([zeros, ones], weights=torch.tensor([0.2, 0.8]))
    samples = mixture.sample(4000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (4000, 10)
    per_sample = samples.float().mean(1)
    assert set(per_sample.unique().tolist()) == {0.0, 1.0}  # every sample is one member's whole draw
    share = per_sample.mean().item()
    assert abs(share - 0.8) < 4 * math.sqrt(0.8 * 0.2 / 4000)
    assert not torch.equal(per_sample[:2000].sort().values, per_sample[:2000])  # shuffled, not grouped by member


def test_models_of_different_data_are_refused():
    other = create_model("fvsbn", DataSpec("other", (10,), 3), {})
    with pytest.raises(UserError, match="same data"):
        MixtureOfModels([_member("fvsbn", 0), Member(other, "three levels", {})])
    with pytest.raises(UserError, match="non-negative weights that sum to 1"):
        MixtureOfModels([_member("fvsbn", 0), _member("fvsbn", 1)], weights=torch.tensor([0.5, 0.6]))
    with pytest.raises(UserError, match="needs 2 non-negative weights"):
        MixtureOfModels([_member("fvsbn", 0), _member("fvsbn", 1)], weights=torch.tensor([1.0]))
    with pytest.raises(UserError, match="no likelihood option"):
        MixtureOfModels([Member(_member("fvsbn", 0).model, "fvsbn", {"k": "5"})])


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixture")
    for name, extra in (("fvsbn", ["--set", "rank=4"]), ("made", ["--set", "hidden=32"])):
        assert main(["train", name, "--data", "binary-digits", "--steps", "30", "--eval-every", "30", "--lr", "1e-2",
                     "--out", str(root / name), "--no-progress", *extra]) == 0
    return root


def test_the_mixture_command_fits_on_validation_and_beats_its_members_there(two_runs, capsys, tmp_path):
    runs = [str(two_runs / "fvsbn"), str(two_runs / "made")]
    assert main(["mixture", *runs, "--split", "validation", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    weights = [m["weight"] for m in report["members"]]
    assert sum(weights) == pytest.approx(1.0) and report["weights_fitted_on"] == "validation"
    members = [m["record"]["nll_nats"] for m in report["members"]]
    assert report["mixture"]["kind"] == "exact" and report["mixture"]["nll_nats"] <= min(members) + 1e-9
    # the members' figures are genmodels eval's
    assert main(["eval", runs[1], "--split", "validation", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"][0]["nll_nats"] == pytest.approx(members[1], abs=1e-9)
    png = tmp_path / "mix.png"
    assert main(["mixture", *runs, "--uniform", "--examples", "50", "--samples", "8", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "first 50 of 360 examples" in out and "equal weights" in out and "| 0.500 |" in out and png.is_file()


def test_the_mixture_command_refuses_mismatched_runs_and_stray_options(two_runs, tmp_path, capsys):
    grey = tmp_path / "grey"
    assert main(["train", "fvsbn", "--data", "digits", "--steps", "2", "--eval-every", "2", "--out", str(grey),
                 "--no-progress"]) == 0
    capsys.readouterr()
    for argv, message in (
        ([str(two_runs / "fvsbn"), str(grey)], "same data"),
        ([str(two_runs / "fvsbn"), "--option", "k=5"], "RUN:KEY=VALUE"),
        ([str(two_runs / "fvsbn"), "--option", "elsewhere:k=5"], "not one of the mixture's runs"),
        ([str(two_runs / "fvsbn"), "--option", "1:k=5"], "no likelihood option"),
    ):
        assert main(["mixture", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
