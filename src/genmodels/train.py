"""``genmodels.train``: the training API under its short name; the code lives in :mod:`genmodels.training`."""

from __future__ import annotations

from .training import EMA, EpochSampler, TrainConfig, Trainer, TrainingDiverged, TrainResult, resumed_config, train

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "TrainingDiverged", "EMA", "EpochSampler", "resumed_config"]
