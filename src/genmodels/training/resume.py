"""Checkpoints of the training state, and resuming from them.

- :func:`plan_resume`: everything a resumed run needs, worked out once (the checkpoint, the
  model's config, the training config with its allowed changes, what run.json records);
- :func:`save_training_state` / :func:`load_training_state`: model, optimizers, schedules, EMA,
  state and RNG into a checkpoint and back (a resume and the non-finite guard's roll-back share it);
- :func:`repoint_best`, :func:`write_best_pointer`, :func:`prune_checkpoints`: best.json and the
  checkpoints kept.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import (
    BEST_POINTER, EMA_FILE, MODEL_FILE, check_state, list_checkpoints, read_checkpoint, read_json, remove_checkpoint,
    save_checkpoint, write_json_atomic,
)
from ..data.base import Dataset
from ..errors import UserError, option
from ..run_files import check_model_sections, check_resumable, spec_difference, stored_train_config
from .config import RESUMABLE_CHANGES, TrainConfig
from .rundir import check_run_dir, remove_leftovers, stored_run
from .state import TrainState, rng_state

__all__ = [
    "ResumePlan", "plan_resume", "resumed_config", "save_training_state", "load_training_state", "write_checkpoint", "repoint_best",
    "write_best_pointer", "prune_checkpoints",
]


@dataclass(frozen=True)
class ResumePlan:
    """A resumed run, worked out once: the intact checkpoint it continues from, the model's stored
    config, the training config (stored, with the allowed changes), and what run.json records."""

    checkpoint: Path | None  # None: no checkpoint yet, the run starts from the beginning
    model_config: dict[str, Any] | None
    config: TrainConfig
    record: dict[str, Any] = field(default_factory=dict)


def plan_resume(
    run_dir: str | Path,
    model_name: str,
    dataset: Dataset,
    overrides: dict[str, Any] | TrainConfig | None,
    *,
    model_config: dict[str, Any] | None = None,
    allow_config_change: bool = False,
) -> ResumePlan:
    """The :class:`ResumePlan` of ``run_dir``: refuses another model, another model config or
    other data (unless ``allow_config_change``), and the training changes :func:`resumed_config` refuses."""
    checkpoint = check_run_dir(Path(run_dir), resume=True)
    if checkpoint is None:
        return _restart_plan(Path(run_dir), model_name, dataset, overrides, model_config, allow_config_change)
    meta = read_checkpoint(checkpoint).meta
    check_model_sections(meta, checkpoint / "checkpoint.json")
    if meta["model"] != model_name:
        raise UserError(f"{option('resume', True)}: {run_dir} trained '{meta['model']}', not '{model_name}'")
    # Compared as stored (JSON): a tuple field, e.g. channel_mults (1, 2), is stored as [1, 2].
    if model_config and any(meta["model_config"].get(k) != json.loads(json.dumps(v)) for k, v in model_config.items()):
        raise UserError(f"{option('resume', True)}: config differs from the one {run_dir} was trained with: {meta['model_config']}")
    if meta["data"]["spec"] != dataset.spec.to_json() and not allow_config_change:
        raise UserError(
            f"{option('resume', True)}: {run_dir} was trained on other data ({spec_difference(meta['data']['spec'], dataset.spec.to_json())}); "
            f"resume on the same data (or pass {option('allow_config_change', True)})"
        )
    from ..data.registry import transform_change  # the flip changes no spec: compare the transforms

    if (change := transform_change(meta["data"]["source"], dataset.source)) and not allow_config_change:
        raise UserError(f"--resume: {run_dir} was trained {change}; give the same settings (or {option('allow_config_change', True)})")
    stored = stored_train_config(meta, checkpoint / "checkpoint.json")
    config, changes = _apply_changes(stored, overrides, allow_config_change)
    record: dict[str, Any] = {}
    if changes:
        record["config_changes"] = {k: {"from": old, "to": new} for k, (old, new) in changes.items()}
        record["allow_config_change"] = allow_config_change
    return ResumePlan(checkpoint, meta["model_config"], config, record)


def _restart_plan(
    run_dir: Path, model_name: str, dataset: Dataset, overrides: dict[str, Any] | TrainConfig | None,
    model_config: dict[str, Any] | None, allow_config_change: bool,
) -> ResumePlan:
    """``--resume`` on a run stopped before its first checkpoint: nothing was trained, so the run
    starts from the beginning, with run.json's settings (if it was written) under the ones given, so
    that ``train … --resume`` is the one command of a preemptible job."""
    stored = stored_run(run_dir)
    config: TrainConfig | None = overrides if isinstance(overrides, TrainConfig) else None
    if stored is not None:
        if stored["model"] != model_name:
            raise UserError(f"{option('resume', True)}: {run_dir} trains '{stored['model']}', not '{model_name}'")
        if stored["data"]["spec"] != dataset.spec.to_json() and not allow_config_change:
            raise UserError(
                f"{option('resume', True)}: {run_dir} was started on other data ({spec_difference(stored['data']['spec'], dataset.spec.to_json())}); "
                f"resume on the same data (or pass {option('allow_config_change', True)})"
            )
        if config is None and isinstance(stored.get("train_config"), dict):
            config = TrainConfig.from_json({**stored_train_config(stored, run_dir / "run.json").to_json(), **(overrides or {})})
        if model_config is None and isinstance(stored.get("model_config"), dict):
            model_config = stored["model_config"]
    if config is None:
        if not overrides:
            raise UserError(f"{option('resume', True)}: {run_dir} holds no checkpoint and no run.json to restart from; give the model "
                            f"and its budget ({option('steps', 'N')} …)")
        config = TrainConfig.from_json(dict(overrides))
    if int(os.environ.get("RANK", "0")) == 0:
        # Everything checked: the leftovers of the stopped start go, and its metrics rows (it is redone).
        remove_leftovers(run_dir)
        (run_dir / "metrics.csv").unlink(missing_ok=True)
        print(f"genmodels: {run_dir} holds no checkpoint yet (it stopped before its first); starting the run from "
              "the beginning", file=sys.stderr)
    return ResumePlan(None, model_config, config, {"restarted": "no checkpoint yet: started from the beginning"})


def resumed_config(
    run_dir: str | Path, overrides: dict[str, Any] | TrainConfig | None, *, allow_config_change: bool = False
) -> tuple[TrainConfig, dict[str, Any]]:
    """The training config of a resumed run: the stored one, with ``overrides`` (the settings given
    explicitly, or a whole config) applied. Budget and reporting settings may change freely; a
    change to anything else (EMA, batch size, seed, lr, ...) breaks bit-exactness or comparability
    and is refused unless ``allow_config_change``. Returns the config and the changes made."""
    checkpoint = check_run_dir(Path(run_dir), resume=True)
    if checkpoint is None:
        raise UserError(f"{option('resume', True)}: {run_dir} holds no checkpoint yet, hence no stored training settings to resume with")
    stored = stored_train_config(read_checkpoint(checkpoint).meta, checkpoint / "checkpoint.json")
    return _apply_changes(stored, overrides, allow_config_change)


def _apply_changes(
    stored: TrainConfig, overrides: dict[str, Any] | TrainConfig | None, allow_config_change: bool
) -> tuple[TrainConfig, dict[str, Any]]:
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
            f"{option('resume', True)} would change {described}, which breaks bit-exactness and comparability with the "
            "checkpoints already written; drop those options (the run's stored settings are used), or pass "
            f"{option('allow_config_change', True)} to accept it (recorded in run.json)"
        )
    return config, changes


def save_training_state(
    folder: Path, *, model, meta: dict[str, Any], ema, optimizers: dict, schedulers: dict, state: TrainState,
    rng: dict[str, Any] | list[dict[str, Any]] | None = None,
) -> None:
    """Write a checkpoint that a resume (or a roll-back) continues from bit-exactly.

    ``rng``: every process's RNG states (:func:`~.state.gathered_rng_states`); None stores this
    process's alone (a run of one process)."""
    save_checkpoint(
        folder,
        model_state=model.state_dict(),
        meta=meta,
        ema_state=None if ema is None else ema.state_dict(),
        trainer_state={
            "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
            "state": state.to_json(),
            "rng": rng_state() if rng is None else rng,
        },
    )


def load_training_state(
    path: Path, *, model, ema, optimizers: dict, schedulers: dict, batches_per_epoch: int
) -> tuple[TrainState, dict[str, Any]]:
    """Load model, EMA, optimizers and schedules from the checkpoint at ``path`` (checksums and
    tensor shapes verified); return its training state and RNG states for the caller to use or not
    (a resume takes both; a roll-back keeps its own step count, data order and RNG). The RNG states
    are one process's (a dict) or every process's (a list by rank): :func:`~.state.restore_noise_stream`."""
    ckpt = read_checkpoint(path, with_trainer_state=True)
    trainer_state = ckpt.trainer_state or {}
    if "state" not in trainer_state:
        raise UserError(f"{path} was written by an older genmodels and cannot be resumed; start a new run")
    check_resumable(trainer_state, optimizers, schedulers, batches_per_epoch, ckpt.path)
    check_state(model, ckpt.model_state, ckpt.path / MODEL_FILE, model.name)
    model.load_state_dict(ckpt.model_state)
    state = TrainState.from_json(trainer_state["state"])
    if ema is not None:
        if ckpt.ema_state is None:
            raise UserError(f"{path} has no EMA weights but {option('ema_decay')} was given")
        check_state(model, ckpt.ema_state, ckpt.path / EMA_FILE, model.name)
        ema.load_state_dict(ckpt.ema_state)
        ema.updates = state.ema_updates
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(trainer_state["optimizers"][name])
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(trainer_state["schedulers"][name])
    return state, trainer_state["rng"]


def write_checkpoint(
    run_dir: Path, name: str, state: TrainState, *, meta: dict[str, Any], model, ema, optimizers: dict, schedulers: dict,
    keep: int, best_by: str | None, rng: dict[str, Any] | list[dict[str, Any]] | None = None,
) -> None:
    """Write checkpoint ``name`` (unless it exists), point best.json at it when the state says it is
    the best (``best_by``: what chose it; None leaves the pointer alone), and prune the old ones."""
    folder = run_dir / "checkpoints" / name
    if not folder.exists():
        save_training_state(folder, model=model, meta=meta, ema=ema, optimizers=optimizers, schedulers=schedulers, state=state,
                            rng=rng)
    if best_by is not None and state.best_checkpoint == name:
        write_best_pointer(run_dir, name, best_by, state.best_nll)
    prune_checkpoints(run_dir, keep, state)


def write_best_pointer(run_dir: Path, checkpoint: str, selected_by: str, value: float | None) -> None:
    write_json_atomic(run_dir / "checkpoints" / BEST_POINTER, {"checkpoint": checkpoint, "selected_by": selected_by, "value": value})


def repoint_best(run_dir: Path, state: TrainState) -> None:
    """A process killed between writing a checkpoint and moving best.json to it leaves the
    pointer behind the resumed state: point it where the state says."""
    pointer = run_dir / "checkpoints" / BEST_POINTER
    best = state.best_checkpoint
    try:
        current = read_json(pointer) if pointer.is_file() else {}
    except UserError:
        current = {}
    if best is None or not isinstance(current, dict) or current.get("checkpoint") == best:
        return
    selected_by = current.get("selected_by", "latest" if state.best_nll is None else "validation NLL (nats)")
    write_best_pointer(run_dir, best, selected_by, state.best_nll)


def prune_checkpoints(run_dir: Path, keep: int, state: TrainState) -> None:
    """Keep the best checkpoint, the last good one and the latest ``keep``; older intermediate ones
    go (:func:`~genmodels.checkpoint.remove_checkpoint`: renamed first, so that a process killed
    while deleting leaves no half checkpoint)."""
    for old in list_checkpoints(run_dir)[:-keep]:
        if old.name not in (state.best_checkpoint, state.good_checkpoint):
            remove_checkpoint(old)  # a symlink is unlinked, never followed
