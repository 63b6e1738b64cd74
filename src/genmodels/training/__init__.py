"""Training: one loop for every model, on Accelerate.

- :mod:`.config`: ``TrainConfig`` (the CLI's training flags are generated from it);
- :mod:`.state`: the typed training state and RNG states;
- :mod:`.optim`: per-group optimizers, schedules, and the isolated step of one group;
- :mod:`.ema`: the EMA of the weights;
- :mod:`.loop`: the ``Trainer`` and its loop;
- :mod:`.report`: the end-of-run grid, curves and results, shared with ``bench``;
- :mod:`.progress`, :mod:`.rundir`: what a person sees, and the run folder's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..checkpoint import list_checkpoints, read_checkpoint
from ..core import create_model
from ..data.base import Dataset
from ..errors import UserError
from .config import RESUMABLE_CHANGES, TrainConfig
from .ema import EMA
from .loop import EpochSampler, Trainer, TrainingDiverged, TrainingInterrupted, kind_none_notice
from .report import TrainResult
from .rundir import resume_checkpoint

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "TrainingDiverged", "TrainingInterrupted", "EMA", "EpochSampler",
           "resumed_config", "RESUMABLE_CHANGES"]


def resumed_config(
    run_dir: str | Path, overrides: dict[str, Any] | TrainConfig | None, *, allow_config_change: bool = False
) -> tuple[TrainConfig, dict[str, Any]]:
    """The training config of a resumed run: the stored one, with ``overrides`` (the settings given
    explicitly, or a whole config) applied. Budget and reporting settings may change freely; a
    change to anything else (EMA, batch size, seed, lr, ...) breaks bit-exactness or comparability
    and is refused unless ``allow_config_change``. Returns the config and the changes made."""
    found = list_checkpoints(Path(run_dir))
    if not found:
        raise UserError(f"--resume: {run_dir} holds no checkpoint to resume from")
    stored = TrainConfig.from_json(read_checkpoint(resume_checkpoint(Path(run_dir))).meta["train_config"])
    if overrides is None:
        config = stored
    elif isinstance(overrides, TrainConfig):
        config = overrides
    else:
        config = TrainConfig.from_json({**stored.to_json(), **overrides})
    changes = config.changes_from(stored)
    breaking = {k: v for k, v in changes.items() if k not in RESUMABLE_CHANGES}
    if stored.lr_schedule == "cosine":
        # A cosine decays over the budget: another budget is another schedule.
        breaking.update({k: v for k, v in changes.items() if k in ("steps", "epochs")})
    if breaking and not allow_config_change:
        described = ", ".join(f"{k} {old!r} → {new!r}" for k, (old, new) in breaking.items())
        raise UserError(
            f"--resume would change {described}, which breaks bit-exactness and comparability with the "
            "checkpoints already written; drop those options (the run's stored settings are used), or pass "
            "--allow-config-change to accept it (recorded in run.json)"
        )
    return config, changes


def train(
    model_name: str,
    dataset: Dataset,
    config: TrainConfig | None,
    run_dir: str | Path,
    *,
    model_config: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    allow_config_change: bool = False,
) -> TrainResult:
    """Build ``model_name`` for ``dataset`` (seeded by ``config.seed``) and train it into ``run_dir``.

    On resume the model is rebuilt from the run's stored config (``model_config`` must agree), and
    the training config is the stored one unless ``config`` changes it (see :func:`resumed_config`);
    ``config`` may then be None.
    """
    from accelerate.utils import set_seed

    extra: dict[str, Any] = {}
    if resume:
        found = list_checkpoints(Path(run_dir))
        if not found:
            raise UserError(f"--resume: {run_dir} holds no checkpoint to resume from")
        meta = read_checkpoint(resume_checkpoint(Path(run_dir))).meta
        if meta["model"] != model_name:
            raise UserError(f"--resume: {run_dir} trained '{meta['model']}', not '{model_name}'")
        if model_config and any(meta["model_config"].get(k) != v for k, v in model_config.items()):
            raise UserError(f"--resume: config differs from the one {run_dir} was trained with: {meta['model_config']}")
        if meta["data"]["spec"] != dataset.spec.to_json() and not allow_config_change:
            raise UserError(
                f"--resume: {run_dir} was trained on {meta['data']['spec']['name']}, not {dataset.spec.name}; "
                "resume on the same data (or pass --allow-config-change)"
            )
        from ..data.registry import transform_change  # the flip changes no spec: compare the transforms

        if (change := transform_change(meta["data"]["source"], dataset.source)) and not allow_config_change:
            raise UserError(f"--resume: {run_dir} was trained {change}; give the same flags (or --allow-config-change)")
        model_config = meta["model_config"]
        config, changes = resumed_config(run_dir, config, allow_config_change=allow_config_change)
        if changes:
            extra["config_changes"] = {k: {"from": old, "to": new} for k, (old, new) in changes.items()}
            extra["allow_config_change"] = allow_config_change
    elif config is None:
        raise UserError("give a TrainConfig (a budget at least) to train a new model")
    set_seed(config.seed)
    model = create_model(model_name, dataset.spec, model_config)
    notice = kind_none_notice(model, config)
    trainer = Trainer(model, dataset, config, run_dir, resume=resume, progress=progress, extra_record=extra)
    if notice and trainer.accelerator.is_local_main_process:
        import sys

        print(notice, file=sys.stderr)
    return trainer.fit()
