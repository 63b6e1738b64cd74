"""The training package module by module (optim, ema, state, config, the loop's small parts, progress,
``Trainer.train_step``), with values where a right and a wrong formula disagree (docs/MUTATION.md,
tools/mutation_training.sh). All run in well under a second: no training loop."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from genmodels.core import GenerativeModel, LikelihoodKind, ModelConfig, OptimizerGroup
from genmodels.data import DataSpec
from genmodels.errors import UserError, command_line
from genmodels.training.config import TrainConfig
from genmodels.training.ema import EMA
from genmodels.training.optim import _settings, build_optimizers, build_schedulers, lr_factor, step_group
from genmodels.training.state import TrainState, rng_state, set_rng_state

# --- optim ------------------------------------------------------------------------------------------


def test_a_group_inherits_the_config_settings_it_does_not_set():
    p = nn.Parameter(torch.zeros(1))
    config = TrainConfig(steps=1, lr=0.1, grad_clip=2.0, weight_decay=0.3)
    s = _settings(OptimizerGroup([p]), config)
    assert (s.lr, s.betas, s.weight_decay, s.grad_clip, s.every, s.start_step) == (0.1, (0.9, 0.999), 0.3, 2.0, 1, 0)


def test_a_group_overrides_every_setting_it_sets_zero_included():
    p = nn.Parameter(torch.zeros(1))
    config = TrainConfig(steps=1, lr=0.1, grad_clip=2.0, weight_decay=0.3)
    group = OptimizerGroup([p], lr_scale=0.5, betas=[0.5, 0.6], weight_decay=0.0, grad_clip=5.0, every=3, start_step=2)
    s = _settings(group, config)
    assert (s.lr, s.betas, s.weight_decay, s.grad_clip, s.every, s.start_step) == (0.05, (0.5, 0.6), 0.0, 5.0, 3, 2)
    assert _settings(OptimizerGroup([p], lr=0.7, lr_scale=0.5, grad_clip=math.inf), config).lr == 0.7
    assert _settings(OptimizerGroup([p], grad_clip=math.inf), config).grad_clip is None  # inf: never clip
    assert _settings(OptimizerGroup([p]), TrainConfig(steps=1, grad_clip=0)).grad_clip is None
    assert [k for k in range(10) if s.due(k)] == [3, 6, 9]  # every 3rd step from step 2 on
    assert [k for k in range(5) if _settings(OptimizerGroup([p], start_step=2), config).due(k)] == [2, 3, 4]


class _Two(GenerativeModel):
    Config = ModelConfig
    likelihood_kind = LikelihoodKind.NONE

    def __init__(self, groups):
        super().__init__(ModelConfig(), DataSpec("t", (2,), 2))
        self.a = nn.Parameter(torch.ones(1))
        self.b = nn.Parameter(torch.ones(1))
        self.groups = groups

    def optimizer_groups(self):
        return self.groups(self)


def test_each_group_gets_an_adamw_with_a_decayed_and_an_exempt_parameter_group():
    model = _Two(lambda m: {"g": OptimizerGroup([m.a, m.b], no_decay=[m.b], betas=(0.5, 0.6))})
    groups, settings, optimizers = build_optimizers(model, TrainConfig(steps=1, lr=0.2, weight_decay=0.3))
    [decayed, exempt] = optimizers["g"].param_groups
    assert decayed["params"] == [model.a] and exempt["params"] == [model.b]
    assert (decayed["weight_decay"], exempt["weight_decay"]) == (0.3, 0.0)
    assert decayed["lr"] == exempt["lr"] == 0.2 and decayed["betas"] == (0.5, 0.6)
    model = _Two(lambda m: {"g": [m.a, m.b]})
    assert len(build_optimizers(model, TrainConfig(steps=1))[2]["g"].param_groups) == 1  # nothing exempt
    with pytest.raises(UserError, match="in groups 'g' and 'h'"):
        build_optimizers(_Two(lambda m: {"g": [m.a], "h": [m.a]}), TrainConfig(steps=1))


def test_lr_factor_at_the_edges_of_warm_up_and_budget():
    assert lr_factor(3, warmup_steps=4, total_steps=100, schedule="cosine") == 0.75
    assert lr_factor(4, warmup_steps=4, total_steps=100, schedule="cosine") == 1.0
    assert lr_factor(150, warmup_steps=0, total_steps=100, schedule="cosine") == pytest.approx(0.0, abs=1e-15)  # stays 0
    assert lr_factor(25, warmup_steps=0, total_steps=100, schedule="cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(5, warmup_steps=0, total_steps=math.inf, schedule="cosine") == 1.0  # a minutes budget
    # a budget no longer than the warm-up: one step to decay over
    assert lr_factor(10, warmup_steps=10, total_steps=10, schedule="cosine") == 1.0
    assert lr_factor(11, warmup_steps=10, total_steps=10, schedule="cosine") == pytest.approx(0.0, abs=1e-15)
    assert lr_factor(11, warmup_steps=10, total_steps=9, schedule="cosine") == pytest.approx(0.0, abs=1e-15)


def test_schedulers_follow_the_config_warm_up_and_budget():
    model = _Two(lambda m: {"g": [m.a], "h": [m.b]})
    config = TrainConfig(steps=10, lr=1.0, warmup_steps=2, lr_schedule="cosine")
    _, _, optimizers = build_optimizers(model, config)
    schedulers = build_schedulers(optimizers, config, 6)
    lrs = []
    for _ in range(7):
        lrs.append(optimizers["h"].param_groups[0]["lr"])
        optimizers["g"].step(), optimizers["h"].step()
        schedulers["g"].step(), schedulers["h"].step()
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.8535534, 0.5, 0.1464466, 0.0], abs=1e-6)


class _Accelerator:
    def backward(self, loss):
        loss.backward()

    def clip_grad_norm_(self, params, max_norm):
        return torch.nn.utils.clip_grad_norm_(params, max_norm)


def test_step_group_starts_from_zero_gradients_clips_and_leaves_none():
    model = _Two(lambda m: {})
    optimizer = torch.optim.SGD([model.a], lr=1.0)
    model.a.grad = torch.full((1,), 1000.0)  # a stale gradient must not be added
    model.b.grad = torch.full((1,), 7.0)
    clip = _settings(OptimizerGroup([model.a]), TrainConfig(steps=1, grad_clip=0.5))
    step_group(_Accelerator(), model, (3 * model.a + model.b).sum(), [model.a], optimizer, clip)
    assert model.a.item() == pytest.approx(0.5)  # gradient 3 clipped to norm 0.5
    assert model.b.item() == 1.0 and model.a.grad is None and model.b.grad is None
    free = _settings(OptimizerGroup([model.a]), TrainConfig(steps=1, grad_clip=None))
    step_group(_Accelerator(), model, (3 * model.a).sum(), [model.a], optimizer, free)
    assert model.a.item() == pytest.approx(-2.5)  # unclipped: down by 3


# --- ema --------------------------------------------------------------------------------------------


def test_ema_copies_integer_buffers_and_counts_its_updates():
    model = nn.BatchNorm1d(1)
    ema = EMA(model, 0.99, warmup=True, updates=5)
    assert ema.current_decay() == pytest.approx(7 / 16)  # t = updates + 1 = 6
    with torch.no_grad():
        model.weight.fill_(3.0)
    model.num_batches_tracked.fill_(4)
    ema.update(model)
    assert ema.updates == 6 and ema.current_decay() == pytest.approx(8 / 17)
    assert ema.state_dict()["num_batches_tracked"].item() == 4  # copied, not averaged
    assert ema.state_dict()["weight"].item() == pytest.approx(7 / 16 * 1.0 + 9 / 16 * 3.0)
    assert EMA(model, 0.3, warmup=True, updates=10**6).current_decay() == 0.3
    other = EMA(nn.BatchNorm1d(1), 0.5)
    other.load_state_dict(ema.state_dict())
    assert all(torch.equal(other.shadow[k], ema.shadow[k]) for k in ema.shadow)


def test_ema_shadow_is_a_copy_not_the_live_weights():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema = EMA(model, 0.5)
    with torch.no_grad():
        model.weight.fill_(4.0)
    assert ema.state_dict()["weight"].item() == 2.0 and ema.current_decay() == 0.5


# --- state ------------------------------------------------------------------------------------------


def test_improves_is_strict_and_the_first_checkpoint_always_improves():
    state = TrainState()
    assert state.improves(5.0) and state.improves(None)
    state.best_checkpoint, state.best_nll = "ckpt-1", 2.0
    assert state.improves(1.9) and not state.improves(2.0) and not state.improves(2.1)
    assert state.improves(None)  # no likelihood: the latest is the best
    state.best_nll = None
    assert state.improves(100.0)
    state.step, state.seconds = 7, 1.5
    assert TrainState.from_json(state.to_json()) == state


def test_rng_state_round_trips():
    saved = rng_state()
    first = torch.rand(3)
    set_rng_state(saved)
    assert torch.equal(torch.rand(3), first)


def test_cuda_rng_states_are_saved_and_restored_where_a_gpu_is(monkeypatch):
    """The GPU path on a CPU machine: torch.cuda's RNG functions replaced by recorders."""
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: ["gpu 0"])
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", restored.append)
    saved = rng_state()
    assert saved["cuda"] == ["gpu 0"]
    set_rng_state(saved)
    assert restored == [["gpu 0"]]
    set_rng_state({"torch": saved["torch"]})  # a checkpoint written without a GPU, resumed on one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    set_rng_state(saved)  # a GPU checkpoint resumed on the CPU
    assert restored == [["gpu 0"]] and "cuda" not in rng_state()


# --- config -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"steps": None}, "give a training budget: --steps N, --epochs N or --minutes M"),
        ({"steps": -1}, "--steps must be ≥ 0, got -1"),
        ({"epochs": -0.5}, "--epochs must be ≥ 0, got -0.5"),
        ({"minutes": math.nan}, "--minutes must be ≥ 0, got nan"),
        ({"num_workers": -1}, "--num-workers must be ≥ 0, got -1"),
        ({"eval_every": 0}, "--eval-every must be ≥ 1, got 0"),
        ({"log_every": 0}, "--log-every must be ≥ 1, got 0"),
        ({"eval_batch_size": 0}, "--eval-batch-size must be ≥ 1, got 0"),
        ({"keep_checkpoints": 0}, "--keep-checkpoints must be ≥ 1, got 0"),
        ({"num_samples": 0}, "--num-samples must be ≥ 1, got 0"),
        ({"lr": math.inf}, "--lr must be a positive number, got inf"),
        ({"lr": 0.0}, "--lr must be a positive number, got 0.0"),
        ({"weight_decay": math.inf}, "--weight-decay must be ≥ 0, got inf"),
        ({"weight_decay": math.nan}, "--weight-decay must be ≥ 0, got nan"),
        ({"grad_clip": math.nan}, "--grad-clip must be > 0 (or 0/none for no clipping), got nan"),
        ({"mixed_precision": "fp32"}, "--mixed-precision must be no, fp16 or bf16, got 'fp32'"),
        ({"lr_schedule": "linear"}, "--lr-schedule must be constant or cosine, got 'linear'"),
        ({"lr_schedule": "cosine", "steps": None, "minutes": 1.0},
         "--lr-schedule cosine needs a --steps or --epochs budget to decay over"),
        ({"log_with": "neptune"}, "--log-with must be none or one of Accelerate's trackers (tensorboard, mlflow, wandb, aim, "
                                  "comet_ml, clearml, dvclive, trackio, swanlab), got 'neptune'"),
        ({"ema_decay": 0.0}, "--ema must be in (0, 1), got 0.0"),
    ],
)
def test_each_bad_setting_gets_its_own_whole_message(overrides, message):
    with command_line(), pytest.raises(UserError, match=f"^{re.escape(message)}$"):  # the command line's words
        TrainConfig(**{"steps": 10, **overrides})
    with pytest.raises(UserError) as refused:  # Python's: the same message, naming arguments, not flags
        TrainConfig(**{"steps": 10, **overrides})
    assert "--" not in str(refused.value) and next(iter(overrides)) in str(refused.value)


def test_the_smallest_valid_settings_are_accepted():
    config = TrainConfig(steps=0, batch_size=1, eval_every=1, log_every=1, eval_batch_size=1, keep_checkpoints=1,
                         num_samples=1, warmup_steps=0, num_workers=0, weight_decay=0.0, grad_clip=1e-9,
                         ema_decay=0.5, lr_schedule="cosine", mixed_precision="bf16", log_with="tensorboard")
    assert config.grad_clip == 1e-9 and config.ema_decay == 0.5
    assert TrainConfig(epochs=0.0).epochs == 0.0 and TrainConfig(minutes=0.5).minutes == 0.5
    assert TrainConfig(epochs=2, lr_schedule="cosine").lr_schedule == "cosine"
    assert TrainConfig(steps=1, mixed_precision="fp16").mixed_precision == "fp16"


def test_options_become_strings_and_json_ignores_unknown_keys():
    config = TrainConfig(steps=3, sample_options={"k": 5}, eval_options={1: 2.5})
    assert config.sample_options == {"k": "5"} and config.eval_options == {"1": "2.5"}
    assert TrainConfig.from_json({**config.to_json(), "retired_setting": 1}) == config
    other = TrainConfig(steps=4, sample_options={"k": 5}, eval_options={1: 2.5}, lr=0.5)
    assert other.changes_from(config) == {"steps": (3, 4), "lr": (1e-3, 0.5)}
    assert config.changes_from(config) == {}


# --- loop: the small parts ----------------------------------------------------------------------------

from genmodels.core import Loss  # noqa: E402
from genmodels.evaluate import LikelihoodRecord  # noqa: E402
from genmodels.training import loop, rundir, selection  # noqa: E402


def test_the_epoch_order_is_a_function_of_seed_and_epoch_alone():
    """A resumed run rebuilds the order from (seed, epoch): the formula is part of the checkpoint format."""
    sampler = loop.EpochSampler(10, seed=5)
    assert len(sampler) == 10
    expected = [torch.randperm(10, generator=torch.Generator().manual_seed(5 * 1_000_003 + e)).tolist() for e in (0, 2)]
    assert list(sampler) == expected[0]
    sampler.set_epoch(2)
    assert list(sampler) == expected[1] and sorted(sampler) == list(range(10))


def test_the_loss_window_averages_each_quantity_per_step_and_resets(monkeypatch):
    clock = iter([100.0, 102.0, 103.0])
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    window = loop.LossWindow()  # started at 100
    window.add("g/", Loss(torch.tensor(1.0), {"a": torch.tensor([1.0, 3.0])}))
    window.add("g/", Loss(torch.tensor(3.0), {"a": torch.tensor([5.0, 7.0])}))
    window.add("d/", Loss(torch.tensor(-4.0)))
    window.examples = 64
    values, rate = window.flush(7)  # at 102, restarted at 103
    assert values == {"g/loss": 2.0, "g/a": 4.0, "d/loss": -4.0} and rate == 32.0
    assert (window.sums, window.counts, window.examples, window.started) == ({}, {}, 0, 103.0)


def test_the_examples_per_second_of_a_window_shorter_than_a_second(monkeypatch):
    clock = iter([10.0, 10.25, 10.25, 10.25, 10.25])
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    window = loop.LossWindow()  # started at 10
    window.add("", Loss(torch.tensor(1.0)))
    window.examples = 64
    assert window.flush(1)[1] == 256.0  # 64 examples in 0.25 s, not 64 per second at least
    window.examples = 5  # restarted at 10.25; no time has passed: the rate is huge, never a division by 0
    assert window.flush(2)[1] == 5 / 1e-9


def test_an_empty_window_and_a_diverged_loss():
    window = loop.LossWindow()
    window.examples = 3
    assert window.flush(1)[0] == {} and window.examples == 0
    window.add("", Loss(torch.tensor(1.0), {"ratio": torch.tensor([math.nan])}))
    assert math.isnan(window.flush(2)[0]["ratio"])  # a term may be NaN; only a loss stops training
    window.add("g/", Loss(torch.tensor(math.inf)))
    with pytest.raises(loop.TrainingDiverged, match=re.escape("the g/loss became inf by step 3; lower lr or set grad_clip (the checkpoints written before are intact)")):
        window.flush(3)


def test_the_loss_window_averages_across_processes_only_when_there_are_several():
    class Several:
        num_processes = 2

        def reduce(self, tensor, reduction):
            assert reduction == "mean"
            return tensor * 0 + 42.0

    class One(Several):
        num_processes = 1

        def reduce(self, tensor, reduction):
            raise AssertionError("one process: nothing to reduce")

    for accelerator, expected in ((Several(), 42.0), (One(), 1.0)):
        window = loop.LossWindow()
        window.add("", Loss(torch.tensor(1.0)))
        assert window.flush(1, accelerator)[0] == {"loss": expected}


def test_metrics_rows_hyperparameters_and_the_kind_none_notice():
    records = [LikelihoodRecord("elbo", "bound", 3.0, 0.5, 0.1, 4, 2), LikelihoodRecord("ode", "estimate", 2.0, None, 0.1, 4, 2)]
    assert rundir.likelihood_rows(records, "validation") == [
        ("validation", "elbo_nll", 3.0), ("validation", "elbo_bpd", 0.5), ("validation", "ode_nll", 2.0)]
    flat = loop._flat_hyperparameters(TrainConfig(steps=3, sample_options={"k": 5}))
    assert flat["sample_options.k"] == "5" and flat["steps"] == 3 and "epochs" not in flat and "sample_options" not in flat

    class Nothing(_Two):
        name = "gan"

    nothing = Nothing(lambda m: {})
    latest = "gan has no likelihood: the latest checkpoint is kept as the best"
    assert selection.kind_none_notice(nothing, TrainConfig(steps=3)) == latest  # no feature network for its data
    assert selection.kind_none_notice(nothing, TrainConfig(steps=3, select_by="figure")) == latest
    nothing.selection_figure = "mse"
    assert selection.kind_none_notice(nothing, TrainConfig(steps=3)).endswith("the lowest validation mse")
    assert selection.kind_none_notice(nothing, TrainConfig(steps=3, select_by="latest")) == latest
    assert selection.kind_none_notice(Table(), TrainConfig(steps=3)) is None


class Table(GenerativeModel):
    Config = ModelConfig
    likelihood_kind = LikelihoodKind.BOUND

    def __init__(self):
        super().__init__(ModelConfig(), DataSpec("t", (2,), 2))


# --- progress -----------------------------------------------------------------------------------------

import io  # noqa: E402

from genmodels.training import progress  # noqa: E402
from genmodels.training.progress import ProgressLog  # noqa: E402


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_show_three_figures_and_an_unknown_total(monkeypatch):
    monkeypatch.setattr(progress.time, "monotonic", lambda: 50.0)  # no time passes
    stream = io.StringIO()
    log = ProgressLog(math.inf, 0, "t", stream=stream, min_seconds=0.0)
    assert not log.is_bar and log.total is None
    log.log(3, {"a": 1.23456, "b": 2.0, "c": 3.0, "d": 4.0}, 1234.4)
    log.log(4, {"a": 1.0}, 1.0)  # 0 s since the last line is not less than min_seconds = 0
    assert stream.getvalue().splitlines() == ["t: step 3  a 1.235  b 2  c 3  1234 ex/s", "t: step 4  a 1  1 ex/s"]
    assert ProgressLog(12.0, 0, "t", stream=stream).total == 12


def test_other_processes_report_nothing_and_a_terminal_gets_a_bar():
    quiet = _Terminal()
    log = ProgressLog(10, 0, "t", stream=quiet, enabled=False)
    log.log(1, {"loss": 1.0}, 1.0, final=True)
    log.message("validation")
    assert not log.is_bar and quiet.getvalue() == ""
    assert not ProgressLog(10, 0, "t", stream=_Terminal(), bar=False).is_bar  # --no-progress
    terminal = _Terminal()
    log = ProgressLog(10, 2, "t", stream=terminal, min_seconds=0.0)
    assert log.is_bar
    log.update(3)
    assert log._bar.n == 5
    log.log(5, {"loss": 0.5}, 10.0, final=True)  # into the bar's postfix, not a line of its own
    assert "t: step" not in terminal.getvalue() and log._bar.postfix == "loss=0.5, ex/s=10"
    log.message("step 5: validation")
    log.close()
    assert "step 5: validation\n" in terminal.getvalue()


def test_the_bar_counts_steps_of_the_budget_on_its_own_stream_and_redraws_only_when_due(capsys):
    terminal = _Terminal()
    log = ProgressLog(10, 2, "train m", stream=terminal, min_seconds=0.0)
    bar = log._bar
    assert (bar.total, bar.desc, bar.unit) == (10, "train m", "step")
    assert callable(bar.dynamic_ncols)  # follows the terminal's width (tqdm keeps its measuring function)
    log.update()  # one step by default
    assert bar.n == 3
    bar.refresh()
    drawn = terminal.getvalue()
    log.log(3, {"loss": 0.25}, 10.0)
    assert terminal.getvalue() == drawn  # the postfix waits for the bar's next due redraw (no refresh)
    log.close()
    assert "3/10" in terminal.getvalue() and "step" in terminal.getvalue()
    assert capsys.readouterr() == ("", "")  # nothing went to the process's own stdout/stderr


class _Flushed(io.StringIO):
    def __init__(self):
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self):
        self.flushed_at.append(len(self.getvalue()))
        super().flush()


def test_each_plain_line_is_flushed_at_once_and_lines_are_ten_seconds_apart_by_default(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    stream = _Flushed()
    log = ProgressLog(None, 0, "t", stream=stream)  # the default min_seconds
    log.log(1, {"loss": 1.0}, 1.0)
    assert stream.flushed_at and stream.flushed_at[-1] == len(stream.getvalue())  # a log file sees it now
    now[0] += 9.5
    log.log(2, {"loss": 1.0}, 1.0)  # too soon
    now[0] += 0.5
    log.log(3, {"loss": 1.0}, 1.0)  # exactly 10 s after the first line
    assert [line.split("  ")[0] for line in stream.getvalue().splitlines()] == ["t: step 1", "t: step 3"]


# --- Trainer.train_step: the order of the groups a model's training_step yields ----------------------

import warnings  # noqa: E402

from genmodels.core import Batch  # noqa: E402
from genmodels.data.base import Dataset, Split  # noqa: E402
from genmodels.training.loop import Trainer  # noqa: E402


class Scripted(GenerativeModel):
    """Groups d and g; each micro-batch's training_step yields the groups of ``script`` in turn."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.NONE

    def __init__(self, script, groups=None):
        super().__init__(ModelConfig(), DataSpec("t", (2,), 2))
        self.d = nn.Parameter(torch.tensor([1.0]))
        self.g = nn.Parameter(torch.tensor([1.0]))
        self.script, self.streams = script, 0
        self.groups_spec = groups or {}

    def optimizer_groups(self):
        return {"d": OptimizerGroup([self.d], **self.groups_spec.get("d", {})),
                "g": OptimizerGroup([self.g], **self.groups_spec.get("g", {}))}

    def loss(self, batch, *, step=0, group="model"):
        weight = self.d if group == "d" else self.g
        return Loss((weight * batch.x.float().sum(1)).mean(), {"w": weight.detach().expand(len(batch))})

    def training_step(self, batch, step, groups, forward):
        script = self.script[self.streams % len(self.script)]
        self.streams += 1
        for group in script:
            yield group, forward(batch, step=step, group=group)

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        return torch.zeros(n, 2, dtype=torch.int64)


def _stepper(tmp_path, script, groups=None, accumulation=1):
    x = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1]])
    data = Dataset(DataSpec("t", (2,), 2), Split(x), Split(x), Split(x))
    model = Scripted(script, groups)
    config = TrainConfig(steps=1, batch_size=2, grad_accumulation=accumulation, lr=0.1, grad_clip=None)
    trainer = Trainer(model, data, config, tmp_path / "run", progress=False)
    _, forward, _ = trainer._prepare()
    micro = [Batch(x[:2]), Batch(x[2:])][:accumulation]
    return trainer, forward, micro


@pytest.mark.parametrize(
    "script, why",
    [
        ([["d", "x"]], "yielded group 'x' at step 0; due once each, in order: ['d', 'g']"),  # not a group
        ([["d", "d"]], "yielded group 'd' at step 0"),  # twice
        ([["d", "g"], ["d", "d"]], "yielded group 'd' at step 0"),  # the second micro-batch goes elsewhere
        ([["d", "g"], ["d"]], "Scripted.training_step yielded fewer groups for another micro-batch"),
    ],
)
def test_a_training_step_that_yields_the_wrong_groups_is_stopped(tmp_path, script, why):
    trainer, forward, micro = _stepper(tmp_path, script, accumulation=len(script))
    with pytest.raises(RuntimeError, match=("^Scripted.training_step " if "fewer" not in why else "^") + re.escape(why)):
        trainer.train_step(forward, micro)


def test_each_group_steps_once_per_step_with_its_micro_batches_averaged(tmp_path):
    trainer, forward, micro = _stepper(tmp_path, [["d", "g"]], accumulation=2)
    trainer.train_step(forward, micro)
    assert sorted(trainer.window.sums) == ["d/loss", "d/w", "g/loss", "g/w"]
    assert trainer.window.counts == {"d/loss": 2, "d/w": 2, "g/loss": 2, "g/w": 2}
    assert trainer.window.sums["d/loss"].item() == pytest.approx(1.5 + 1.5)  # x sums 1, 2 | 1, 2; weight 1
    # Adam's first step moves each weight by lr against the sign of its (averaged) gradient.
    assert (trainer.model.d.item(), trainer.model.g.item()) == (pytest.approx(0.9), pytest.approx(0.9))


def test_a_group_not_due_yet_raises_no_scheduler_warning(tmp_path):
    trainer, forward, micro = _stepper(tmp_path, [["d"]], groups={"g": {"start_step": 1}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "Detected call of `lr_scheduler.step()` before ..."
        trainer.train_step(forward, micro)
    assert trainer.model.g.item() == 1.0 and trainer.model.d.item() == pytest.approx(0.9)
    assert [s.last_epoch for s in trainer.schedulers.values()] == [1, 1]  # both schedules count the step


def test_only_the_not_due_warning_of_a_scheduler_is_silenced(tmp_path):
    """The filter around the schedulers' step hides torch's "Detected call of `lr_scheduler.step()`
    before `optimizer.step()`" (a group not due), and nothing else a scheduler has to say."""
    trainer, forward, micro = _stepper(tmp_path, [["d"]], groups={"g": {"start_step": 1}})
    scheduler = next(iter(trainer.schedulers.values()))
    step = scheduler.step

    def step_and_warn():
        step()
        warnings.warn("another scheduler warning", UserWarning)

    scheduler.step = step_and_warn
    with pytest.warns(UserWarning, match="^another scheduler warning$"):
        trainer.train_step(forward, micro)


class Recorded(Scripted):
    """Scripted, recording the step and the due groups each training_step is given; group "d"'s
    loss is NaN at the steps in ``nan_at``."""

    def __init__(self, script, groups=None, nan_at=()):
        super().__init__(script, groups)
        self.given, self.nan_at = [], nan_at

    def training_step(self, batch, step, groups, forward):
        self.given.append((step, list(groups)))
        return super().training_step(batch, step, groups, forward)

    def loss(self, batch, *, step=0, group="model"):
        out = super().loss(batch, step=step, group=group)
        return Loss(out.loss * math.nan, out.terms) if group == "d" and step in self.nan_at else out


def _recorded_stepper(tmp_path, nan_at=(), **config):
    x = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 1]])
    data = Dataset(DataSpec("t", (2,), 2), Split(x), Split(x), Split(x))
    model = Recorded([["d", "g"]], nan_at=nan_at)
    config = TrainConfig(**{"steps": 1, "batch_size": 2, "lr": 0.1, "grad_clip": None, **config})
    trainer = Trainer(model, data, config, tmp_path / "run", progress=False)
    _, forward, _ = trainer._prepare()
    return trainer, forward, Batch(x[:2])


def test_train_step_takes_one_batch_and_gives_the_model_the_step_and_the_due_groups(tmp_path):
    trainer, forward, batch = _recorded_stepper(tmp_path)
    trainer.state.step = 3
    assert trainer.train_step(forward, batch) == []  # one Batch, not a list of micro-batches
    assert trainer.model.given == [(3, ["d", "g"])]
    assert (trainer.model.d.item(), trainer.model.g.item()) == (pytest.approx(0.9), pytest.approx(0.9))
    # two groups: each group's losses are logged under its name
    assert sorted(trainer.window.sums) == ["d/loss", "d/w", "g/loss", "g/w"]


def test_a_group_with_a_nan_loss_is_returned_and_the_ema_waits_for_a_step_without_one(tmp_path):
    trainer, forward, batch = _recorded_stepper(tmp_path, nan_at=(0,), ema_decay=0.5)
    assert trainer.train_step(forward, batch) == ["d"]
    assert trainer.ema.updates == 0 and trainer.model.d.item() == 1.0  # g stepped, the EMA did not
    trainer.state.step = 1
    assert trainer.train_step(forward, batch) == []
    assert trainer.ema.updates == 1
    assert trainer.ema.shadow["d"].item() == pytest.approx(0.5 * 1.0 + 0.5 * 0.9)  # the model's new d


def test_one_group_logs_its_losses_without_a_prefix(tmp_path):
    class One(Recorded):
        def optimizer_groups(self):
            return {"model": OptimizerGroup([self.d, self.g])}

    x = torch.tensor([[1, 0], [1, 1]])
    trainer = Trainer(One([["model"]]), Dataset(DataSpec("t", (2,), 2), Split(x), Split(x), Split(x)),
                      TrainConfig(steps=1, batch_size=2, lr=0.1, grad_clip=None), tmp_path / "run", progress=False)
    _, forward, _ = trainer._prepare()
    trainer.train_step(forward, [Batch(x)])
    assert sorted(trainer.window.sums) == ["loss", "w"]
