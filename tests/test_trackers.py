"""`--log-with tensorboard`: losses, validation figures and pictures reach TensorBoard (an optional
extra: the test runs where tensorboard is installed)."""

from __future__ import annotations

import pytest

from genmodels.training import TrainConfig, train


def test_tensorboard_receives_losses_figures_and_pictures(digits, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[tensorboard]'")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(steps=20, eval_every=10, log_every=5, batch_size=64, num_samples=4, log_with="tensorboard")
    train("fvsbn", digits, config, tmp_path / "run", progress=False)
    logs = list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))
    assert logs, "no event file written"
    events = EventAccumulator(str(logs[0].parent), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "validation/log_prob_nll", "validation/log_prob_bpd", "test/log_prob_nll"} <= set(scalars)
    assert [e.step for e in events.Scalars("train/loss")] == [5, 10, 15, 20]
    assert {"samples", "loss_curves"} <= set(events.Tags()["images"])
