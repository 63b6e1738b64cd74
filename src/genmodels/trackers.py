"""Experiment trackers behind ``--log-with``: every tracker Accelerate drives, each with the package
it needs and where it writes. Losses, validation and test figures reach every tracker; pictures
(the sample grid, the loss curves) reach those that take images (TensorBoard)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

__all__ = ["TRACKERS", "TRACKER_PACKAGES", "tracker_setup", "finish_trackers", "flat_hyperparameters", "tracking"]

#: Accelerate's trackers (``accelerate.utils.LoggerType`` less "all"; tests/test_trackers_config.py
#: checks the two agree), and "none".
TRACKERS = ("none", "tensorboard", "mlflow", "wandb", "aim", "comet_ml", "clearml", "dvclive", "trackio", "swanlab")

#: The modules behind each tracker (any one will do), and the pip line that installs it.
TRACKER_PACKAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "pip install 'genmodels[tensorboard]'"),
    "mlflow": (("mlflow",), "pip install 'genmodels[mlflow]'"),
    "wandb": (("wandb",), "pip install wandb"),
    "aim": (("aim",), "pip install aim"),
    "comet_ml": (("comet_ml",), "pip install comet-ml"),
    "clearml": (("clearml",), "pip install clearml"),
    "dvclive": (("dvclive",), "pip install dvclive"),
    "trackio": (("trackio",), "pip install trackio"),
    "swanlab": (("swanlab",), "pip install swanlab"),
}


_SET_HERE: set[str] = set()


def tracker_setup(log_with: str, run_dir: Path) -> tuple[str, dict[str, Any]]:
    """The project name and ``init_kwargs`` for ``Accelerator.init_trackers``.

    TensorBoard writes into ``RUN/tensorboard/``. MLflow, unless told elsewhere (``MLFLOW_TRACKING_URI``
    or ``mlflow.set_tracking_uri``), keeps a local file store in ``RUN/mlruns/`` (not the working
    folder's ``mlruns/``), in an experiment "genmodels" with one MLflow run named after the run folder.
    """
    if log_with == "tensorboard":
        return "tensorboard", {}
    if log_with == "mlflow":
        import mlflow

        # A URI set here for an earlier run of this process is replaced; one set by the user is kept.
        if not mlflow.tracking.is_tracking_uri_set() or mlflow.get_tracking_uri() in _SET_HERE:
            uri = (Path(run_dir).resolve() / "mlruns").as_uri()
            # MLflow ≥ 3.7 asks for an opt-in to its file store, which needs no server or database.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            mlflow.set_tracking_uri(uri)
            _SET_HERE.add(uri)
        return "genmodels", {"mlflow": {"run_name": Path(run_dir).name}}
    return "genmodels", {}


def finish_trackers(accelerator) -> None:
    """Close the run's trackers (an MLflow run ends, TensorBoard's writer flushes), so that a second
    training in the same process starts its own; the process group is left alone (unlike
    ``Accelerator.end_training``)."""
    for tracker in getattr(accelerator, "trackers", []):
        tracker.finish()


def flat_hyperparameters(config) -> dict[str, Any]:
    """A TrainConfig as tracker hyperparameters: numbers, strings and booleans only (TensorBoard's
    rule), option tables flattened to ``sample_options.KEY``."""
    out = {}
    for key, value in config.to_json().items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        elif value is not None:
            out[key] = value
    return out


def tracking(fit):
    """Decorate ``Trainer.fit``: start the ``--log-with`` tracker (project, hyperparameters) before
    it, and finish it after, however it ends."""

    @functools.wraps(fit)
    def tracked(trainer, *args, **kwargs):
        config, accelerator = trainer.config, trainer.accelerator
        if config.log_with != "none":
            project, init_kwargs = tracker_setup(config.log_with, trainer.run_dir)
            accelerator.init_trackers(project, config=flat_hyperparameters(config), init_kwargs=init_kwargs)
        try:
            return fit(trainer, *args, **kwargs)
        finally:
            finish_trackers(accelerator)

    return tracked
