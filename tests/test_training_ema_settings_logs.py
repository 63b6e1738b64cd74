"""EMA, TrainConfig validation, the progress log's lines and strict JSON, each on its own."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
from torch import nn

from genmodels.checkpoint import strict_json, write_json_atomic
from genmodels.errors import UserError
from genmodels.training import EMA, TrainConfig
from genmodels.training.progress import ProgressLog


def _scalar_model(value: float) -> nn.Module:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(value)
    return model


def test_ema_weights_the_new_value_by_one_minus_decay():
    model = _scalar_model(0.0)
    ema = EMA(model, 0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.state_dict()["weight"].item() == pytest.approx(0.1)  # 0.9·0 + 0.1·1, not 0.9·1
    ema.update(model)
    assert ema.state_dict()["weight"].item() == pytest.approx(0.19)


def test_ema_warmup_ramps_the_decay():
    model = _scalar_model(0.0)
    ema = EMA(model, 0.99, warmup=True)
    assert ema.current_decay() == pytest.approx(2 / 11)  # (1 + t)/(10 + t) at t = 1
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)
    assert ema.state_dict()["weight"].item() == pytest.approx(1 - 2 / 11)
    ema.updates = 10_000
    assert ema.current_decay() == 0.99


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lr": -1}, "^lr must be a positive"),
        ({"lr": math.nan}, "^lr must be a positive"),
        ({"weight_decay": -1}, "^weight_decay must be ≥ 0"),
        ({"grad_clip": -1}, "^grad_clip must be > 0"),
        ({"batch_size": 0}, "^batch_size must be ≥ 1"),
        ({"warmup_steps": -2}, "^warmup_steps must be ≥ 0"),
        ({"lr_schedule": "cosine", "steps": None, "minutes": 1.0}, "needs a steps or epochs"),
        ({"ema_decay": 1.0}, "^ema_decay must be in"),
    ],
)
def test_bad_training_settings_are_refused_by_name(overrides, message):
    with pytest.raises(UserError, match=message):
        TrainConfig(**{"steps": 10, **overrides})


def test_no_clipping_is_spelled_zero_or_none():
    assert TrainConfig(steps=1, grad_clip=0).grad_clip is None
    assert TrainConfig(steps=1, grad_clip=None).grad_clip is None


def test_a_log_file_gets_plain_lines_and_validation_lines():
    stream = io.StringIO()  # not a terminal
    log = ProgressLog(100, 0, "train m", stream=stream, min_seconds=0.0)
    for step in range(1, 4):
        log.update()
        log.log(step, {"loss": 1.0 / step}, 1000.0)
    log.message("step 3: validation ...")
    log.close()
    text = stream.getvalue()
    assert "\r" not in text
    assert text.splitlines() == [
        "train m: step 1/100  loss 1  1000 ex/s",
        "train m: step 2/100  loss 0.5  1000 ex/s",
        "train m: step 3/100  loss 0.3333  1000 ex/s",
        "step 3: validation ...",
    ]


def test_log_lines_are_spaced_in_time_but_the_last_is_always_written():
    stream = io.StringIO()
    log = ProgressLog(None, 0, "t", stream=stream, min_seconds=3600)
    log.log(1, {"loss": 1.0}, 1.0)
    log.log(2, {"loss": 1.0}, 1.0)
    log.log(3, {"loss": 1.0}, 1.0, final=True)
    assert [line.split("  ")[0] for line in stream.getvalue().splitlines()] == ["t: step 1", "t: step 3"]


def test_json_written_by_the_project_is_strict(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"best": math.inf, "nested": [math.nan, 1.5]})

    def refuse(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    assert json.loads((tmp_path / "a.json").read_text(), parse_constant=refuse) == {"best": None, "nested": [None, 1.5]}
    assert strict_json((1.0, -math.inf)) == [1.0, None]
