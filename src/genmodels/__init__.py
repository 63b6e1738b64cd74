"""genmodels: deep generative models behind one interface, with honest likelihoods.

The names below are imported on first use, so ``genmodels --help`` starts without loading torch.
Training is ``genmodels.training.train``.

>>> import genmodels
>>> "fvsbn" in genmodels.model_names()
True
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "GenerativeModel": "core",
    "LikelihoodKind": "core",
    "LogLikelihood": "core",
    "Loss": "core",
    "Batch": "core",
    "ModelConfig": "core",
    "register_model": "core",
    "create_model": "core",
    "model_names": "core",
    "DataSpec": "data",
    "load_dataset": "data",
    "dataset_names": "data",
    "TrainConfig": "training",
    "evaluate_likelihood": "evaluate",
    "load_model": "checkpoint",
    "UserError": "errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'genmodels' has no attribute '{name}'")
