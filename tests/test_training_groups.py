"""Several optimizer groups: isolation, per-group settings, n_critic, schedules, a shared forward,
and bit-exact resume of an adversarial pair."""

from __future__ import annotations

import csv

import pytest
import torch
from torch import nn

from genmodels.checkpoint import list_checkpoints, read_checkpoint
from genmodels.core import GenerativeModel, LikelihoodKind, Loss, ModelConfig, OptimizerGroup, create_model
from genmodels.errors import UserError
from genmodels.training import Trainer, TrainConfig, train
from genmodels.training.optim import lr_factor

from .toy_models import SharedFakeGAN, registered


class Pair(GenerativeModel):
    """Two scalar parameters in two groups; each loss is set by the test."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.NONE
    groups_spec: dict = {}
    losses: dict = {}

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.a = nn.Parameter(torch.tensor([1.0]))
        self.b = nn.Parameter(torch.tensor([1.0]))
        self.c = nn.Parameter(torch.tensor([1.0]))
        self.calls: list[tuple[int, str]] = []

    def optimizer_groups(self):
        return type(self).groups_spec(self)

    def loss(self, batch, *, step=0, group="model"):
        self.calls.append((step, group))
        return Loss(type(self).losses[group](self).sum())

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        return torch.zeros(n, *self.spec.shape, dtype=torch.int64)


def _fit(digits, tmp_path, groups, losses, **config):
    cls = type("PairUnderTest", (Pair,), {"groups_spec": staticmethod(groups), "losses": losses})
    with registered("pair", cls):
        model = create_model("pair", digits.spec)
        settings = dict(steps=1, eval_every=100, batch_size=32, lr=0.1, grad_clip=None, num_samples=4, select_by="latest")
        trainer = Trainer(model, digits, TrainConfig(**{**settings, **config}), tmp_path / "run", progress=False)
        trainer.fit()
    return model, trainer


def test_a_loss_that_reaches_another_group_moves_only_its_own(digits, tmp_path):
    """The first group's loss also touches b (d/db = +10); the second's pulls b up (d/db = −1).
    After one step b moved by its own loss alone: up by Adam's first step, lr·g/|g| = 0.1."""
    model, _ = _fit(
        digits, tmp_path,
        lambda m: {"first": [m.a], "second": [m.b, m.c]},
        {"first": lambda m: m.a**2 + 10 * m.b, "second": lambda m: -m.b + 0 * m.a},
    )
    assert model.a.item() == pytest.approx(0.9, abs=1e-6)  # its own loss: d/da = 2 > 0, down by 0.1
    assert model.b.item() == pytest.approx(1.1, abs=1e-6)  # with the leak (9 = 10 − 1) it would go down


def test_per_group_learning_rates_decay_and_exemptions(digits, tmp_path):
    model, trainer = _fit(
        digits, tmp_path,
        lambda m: {
            "fast": OptimizerGroup([m.a], lr=0.5),
            "slow": OptimizerGroup([m.b, m.c], lr_scale=0.1, weight_decay=0.5, no_decay=[m.c]),
        },
        # b and c get a zero gradient: only decay can move them.
        {"fast": lambda m: m.a, "slow": lambda m: 0 * m.b + 0 * m.c},
        weight_decay=0.0,
    )
    assert trainer.settings["fast"].lr == 0.5 and trainer.settings["slow"].lr == pytest.approx(0.01)
    assert model.a.item() == pytest.approx(0.5, abs=1e-6)
    assert model.b.item() == pytest.approx(1.0 - 0.01 * 0.5, abs=1e-7)  # AdamW: θ ← θ(1 − lr·λ)
    assert model.c.item() == 1.0  # exempt from decay


def test_n_critic_and_a_group_switched_on_after_a_warm_up(digits, tmp_path):
    model, _ = _fit(
        digits, tmp_path,
        lambda m: {
            "critic": OptimizerGroup([m.a]),
            "generator": OptimizerGroup([m.b], every=3),
            "late": OptimizerGroup([m.c], start_step=4),
        },
        {"critic": lambda m: m.a, "generator": lambda m: m.b, "late": lambda m: m.c},
        steps=6,
    )
    by_group = {g: [s for s, name in model.calls if name == g] for g in ("critic", "generator", "late")}
    assert by_group == {"critic": [0, 1, 2, 3, 4, 5], "generator": [0, 3], "late": [4, 5]}
    assert model.b.item() == pytest.approx(0.8, abs=1e-3)  # two steps of ≈ lr


def test_gradient_clipping_is_applied_per_group(digits, tmp_path):
    """With SGD-like magnitudes hidden by Adam, clipping shows in the optimizer's second moment:
    a gradient of 100 clipped to norm 1 stores v = (1 − β2)·1², not (1 − β2)·100²."""
    _, trainer = _fit(digits, tmp_path, lambda m: {"model": [m.a, m.b, m.c]},
                      {"model": lambda m: 100 * m.a + 0 * m.b + 0 * m.c}, grad_clip=1.0)
    state = trainer.optimizers["model"].state_dict()["state"][0]
    assert state["exp_avg_sq"].item() == pytest.approx(0.001 * 1.0, rel=1e-4)


def test_a_shared_generator_forward_and_bit_exact_resume_of_an_adversarial_pair(digits, tmp_path):
    """20 + 20 steps equal 40: parameters, both optimizers' states and their schedules (a run
    stopped at 20 and resumed; a cosine schedule would need the same budget, see below)."""
    config = dict(eval_every=13, batch_size=64, lr=0.01, num_samples=4, warmup_steps=30, fd_samples=64)
    with registered("shared-fake-gan", SharedFakeGAN):
        train("shared-fake-gan", digits, TrainConfig(steps=40, **config), tmp_path / "straight", progress=False)
        train("shared-fake-gan", digits, TrainConfig(steps=20, **config), tmp_path / "split", progress=False)
        train("shared-fake-gan", digits, TrainConfig(steps=40, **config), tmp_path / "split", resume=True, progress=False)
    a = read_checkpoint(list_checkpoints(tmp_path / "straight")[-1], with_trainer_state=True)
    b = read_checkpoint(list_checkpoints(tmp_path / "split")[-1], with_trainer_state=True)
    assert a.model_state.keys() == b.model_state.keys()
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    for group in ("discriminator", "generator"):
        sa, sb = a.trainer_state["optimizers"][group]["state"], b.trainer_state["optimizers"][group]["state"]
        assert sa.keys() == sb.keys() and len(sa) > 0
        for index in sa:
            assert all(torch.equal(sa[index][k], sb[index][k]) for k in sa[index]), (group, index)
        assert a.trainer_state["schedulers"][group] == b.trainer_state["schedulers"][group]
    # The warm-up went on across the resume: the logged lr follows the schedule.
    rows = list(csv.DictReader(open(tmp_path / "split" / "metrics.csv")))
    lrs = {int(r["step"]): float(r["value"]) for r in rows if r["metric"] == "lr"}
    assert lrs[20] == pytest.approx(0.01 * 20 / 30) and lrs[30] == pytest.approx(0.01)
    assert {"discriminator/hinge", "generator/fake_score"} <= {r["metric"] for r in rows}


def test_the_shared_forward_runs_once_per_step(digits, tmp_path):
    with registered("shared-fake-gan", SharedFakeGAN):
        model = create_model("shared-fake-gan", digits.spec)
        Trainer(model, digits, TrainConfig(steps=4, eval_every=10, batch_size=32, num_samples=4, select_by="latest"), tmp_path / "r",
                progress=False).fit()
    assert model.generator_forwards == 4


def test_a_parameter_in_two_groups_is_refused(digits, tmp_path):
    with pytest.raises(UserError, match="in groups 'first' and 'second'"):
        _fit(digits, tmp_path, lambda m: {"first": [m.a], "second": [m.a, m.b]}, {})


def test_lr_factor_warms_up_then_decays_to_zero():
    assert lr_factor(0, warmup_steps=10, total_steps=100, schedule="cosine") == 0.0
    assert lr_factor(5, warmup_steps=10, total_steps=100, schedule="constant") == 0.5
    assert lr_factor(55, warmup_steps=10, total_steps=100, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(100, warmup_steps=10, total_steps=100, schedule="cosine") == pytest.approx(0.0)
    assert lr_factor(1000, warmup_steps=10, total_steps=100, schedule="constant") == 1.0


def test_a_cosine_schedule_is_tied_to_its_budget_on_resume(digits, tmp_path):
    config = dict(eval_every=10, batch_size=64, num_samples=4, lr_schedule="cosine")
    train("fvsbn", digits, TrainConfig(steps=10, **config), tmp_path / "run", progress=False)
    with pytest.raises(UserError, match="steps 10 → 20"):
        train("fvsbn", digits, TrainConfig(steps=20, **config), tmp_path / "run", resume=True, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    lrs = {int(r["step"]): float(r["value"]) for r in rows if r["metric"] == "lr"}
    assert lrs[10] == pytest.approx(0.0, abs=1e-12)  # decayed to zero at the end of its budget
