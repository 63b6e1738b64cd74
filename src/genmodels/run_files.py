"""Schemas of the files a run folder holds, checked before anything is built from them or rewritten.

A file of a run folder may be damaged or crafted; what genmodels reads back from it is checked here,
each problem one :class:`~genmodels.errors.UserError` line naming the file, what is wrong and the fix:

- ``checkpoint.json``: the types of its sections, its format version, its training config
  (:class:`~genmodels.training.config.TrainConfig`'s field types), and its trainer state
  (:class:`~genmodels.training.state.TrainState`'s fields, no others);
- the trainer state's tensors against the optimizers, schedules and RNG they are loaded into
  (:func:`check_resumable`): a wrong shape would fail only at the next step, with a traceback;
- ``checkpoints/best.json`` and ``run.json``;
- every name of a checkpoint in these files is ``step-NNNNNNNNN``: never a path, so nothing a run
  file says can make genmodels read or delete outside ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import torch
from torch import Tensor

from .errors import UserError, option
from .safe_files import check_regular_file, load_json_bounded

__all__ = ["CHECKPOINT_NAME", "check_checkpoint_name", "check_dataclass_fields", "check_meta", "check_model_sections",
           "read_best_pointer", "read_run_record", "check_run_files", "check_resumable", "spec_difference",
           "stored_train_config", "check_tracker_installed"]

CHECKPOINT_NAME = re.compile(r"^step-\d{1,18}$")
_DAMAGED = "the file is damaged or was edited; use another checkpoint"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value fits a dataclass field's annotation (ints are accepted for floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if origin in (Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in args)
    if origin is dict or hint is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items()) \
            if args else isinstance(value, dict)
    if origin in (list, tuple) or hint in (list, tuple):
        return isinstance(value, list)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is str:
        return isinstance(value, str)
    return True  # anything else: left to the class's own checks


def _describe_hint(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe_hint(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if hint is type(None):
        return "null"
    return getattr(hint, "__name__", str(hint))


def check_dataclass_fields(obj: Any, cls: type, where: str, fix: str, *, extra_keys: bool) -> None:
    """Refuse a JSON object that cannot become ``cls(**obj)``: not an object, a key that is not a
    field (unless ``extra_keys``), or a value of the wrong type (``lr: "fast"``)."""
    if not isinstance(obj, dict):
        raise UserError(f"{where} is {_type_name(obj)}, expected an object; {fix}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(obj) - fields)
    if unknown and not extra_keys:
        raise UserError(f"{where} has unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown[:5]))}; {fix}")
    for key in sorted(fields & set(obj)):
        if not _fits(obj[key], hints[key]):
            raise UserError(f"{where}: '{key}' is {obj[key]!r:.60}, expected {_describe_hint(hints[key])}; {fix}")


def check_checkpoint_name(name: Any, where: str, fix: str) -> str:
    """A checkpoint named in a run file: ``step-N``, never a path (absolute, ``..``, a separator)."""
    if not isinstance(name, str) or not CHECKPOINT_NAME.match(name):
        raise UserError(f"{where} names checkpoint {name!r:.80}, not a step-N folder of the run's checkpoints/; {fix}")
    return name


# --- checkpoint.json ---------------------------------------------------------------------------------
def check_meta(meta: Any, where: Path, format_version: int) -> None:
    """The sections of checkpoint.json that are present have the right types; the format is this one."""
    if not isinstance(meta, dict):
        raise UserError(f"{where} holds {_type_name(meta)}, not an object; it is not a genmodels checkpoint")
    version = meta.get("format_version")
    if version != format_version or isinstance(version, bool) or not isinstance(version, int):
        what = f"format {version!r} ({_type_name(version)})" if not isinstance(version, int) else f"format {version}"
        raise UserError(f"{where.parent} has checkpoint {what}; this genmodels reads format {format_version} "
                        "(an integer): use a checkpoint written by this version")
    expected = {"model": str, "model_module": str, "model_config": dict, "data": dict, "train_config": dict,
                "trainer_state": dict, "has_ema": bool, "sha256": dict, "step": int, "epoch": int, "validation": list}
    for key, kind in expected.items():
        if key in meta and (not isinstance(meta[key], kind) or (kind is int and isinstance(meta[key], bool))):
            raise UserError(f"{where}: '{key}' is {_type_name(meta[key])}, expected {kind.__name__}; {_DAMAGED}")
    if "data" in meta:
        for key in ("spec", "source"):
            if key in meta["data"] and not isinstance(meta["data"][key], dict):
                raise UserError(f"{where}: 'data.{key}' is {_type_name(meta['data'][key])}, expected dict; {_DAMAGED}")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.get("sha256", {}).items()):
        raise UserError(f"{where}: 'sha256' must map file names to hex digests; {_DAMAGED}")
    if "train_config" in meta:
        from .training.config import TrainConfig

        # Keys of a newer genmodels are ignored (TrainConfig.from_json drops them); types are checked.
        check_dataclass_fields(meta["train_config"], TrainConfig, f"{where}: train_config", _DAMAGED, extra_keys=True)


def check_model_sections(meta: dict[str, Any], where: Path) -> None:
    """What rebuilding the model needs: a model name, its config and the data spec."""
    for key in ("model", "model_config", "data"):
        if key not in meta:
            raise UserError(f"{where} lacks '{key}'; it is not a genmodels checkpoint (or it was damaged): use another checkpoint")
    if "spec" not in meta["data"]:
        raise UserError(f"{where} lacks 'spec' (in 'data'); it is not a genmodels checkpoint (or it was damaged): use another checkpoint")


def check_trainer_skeleton(meta: dict[str, Any], where: Path) -> None:
    """The trainer state of checkpoint.json: its sections, and a ``state`` with exactly the fields of
    TrainState, each of its type, counters ≥ 0, checkpoint names that are names."""
    from .training.state import TrainState

    skeleton = meta.get("trainer_state")
    if skeleton is None:
        return
    fix = "the checkpoint is damaged or was edited; resume from another checkpoint"
    # rng: one process's states (an object), or every process's (a list by rank).
    for key, kinds in (("optimizers", (dict,)), ("schedulers", (dict,)), ("state", (dict,)), ("rng", (dict, list))):
        if key in skeleton and not isinstance(skeleton[key], kinds):
            expected = " or ".join("list" if k is list else k.__name__ for k in kinds)
            raise UserError(f"{where}: 'trainer_state.{key}' is {_type_name(skeleton[key])}, expected {expected}; {fix}")
    state = skeleton.get("state")
    if state is None:
        return
    check_dataclass_fields(state, TrainState, f"{where}: trainer_state.state", fix, extra_keys=False)
    for field in dataclasses.fields(TrainState):
        value = state.get(field.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0 and field.name != "best_nll":
            raise UserError(f"{where}: trainer_state.state '{field.name}' is {value}, expected ≥ 0; {fix}")
    for key in ("best_checkpoint", "good_checkpoint"):
        if state.get(key) is not None:
            check_checkpoint_name(state[key], f"{where}: trainer_state.state '{key}'", fix)


# --- the trainer state's tensors against what they are loaded into -------------------------------------
def _same_layout(saved: Any, fresh: Any, where: str, fix: str) -> None:
    """A saved scheduler or optimizer group against a freshly built one: the same keys, numbers where
    numbers are, lists of the same length."""
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            raise UserError(f"{where} is {_type_name(saved)}, expected an object; {fix}")
        missing, unknown = sorted(set(fresh) - set(saved)), sorted(set(saved) - set(fresh))
        if missing or unknown:
            raise UserError(f"{where} does not match this run's (missing {missing[:4]}, unknown {unknown[:4]}); {fix}")
        for key in fresh:
            _same_layout(saved[key], fresh[key], f"{where}.{key}", fix)
    elif isinstance(fresh, (list, tuple)):
        if not isinstance(saved, list) or len(saved) != len(fresh):
            raise UserError(f"{where} is {saved!r:.60}, expected a list of {len(fresh)}; {fix}")
        for i, (s, f) in enumerate(zip(saved, fresh)):
            _same_layout(s, f, f"{where}[{i}]", fix)
    elif isinstance(fresh, bool):
        if not isinstance(saved, bool):
            raise UserError(f"{where} is {saved!r:.60}, expected true or false; {fix}")
    elif isinstance(fresh, (int, float)):
        if isinstance(saved, bool) or not isinstance(saved, (int, float)) or not math.isfinite(saved):
            raise UserError(f"{where} is {saved!r:.60}, expected a finite number; {fix}")
    elif isinstance(fresh, Tensor):
        if not isinstance(saved, Tensor) or saved.shape != fresh.shape:
            raise UserError(f"{where} is not a tensor of shape {tuple(fresh.shape)}; {fix}")


def _check_optimizer(saved: Any, optimizer: torch.optim.Optimizer, where: str, fix: str) -> None:
    fresh = optimizer.state_dict()
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        raise UserError(f"{where} is not an optimizer state (keys 'state' and 'param_groups'); {fix}")
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise UserError(f"{where} has {len(groups) if isinstance(groups, list) else 'no'} parameter groups, this run "
                        f"{len(fresh['param_groups'])}; {fix}")
    params = {}
    for i, (group, live, own) in enumerate(zip(groups, fresh["param_groups"], optimizer.param_groups)):
        shared = {k: v for k, v in live.items() if k != "params" and isinstance(group, dict) and k in group}
        _same_layout({k: group[k] for k in shared}, shared, f"{where}.param_groups[{i}]", fix)
        ids = group.get("params") if isinstance(group, dict) else None
        if not isinstance(ids, list) or len(ids) != len(own["params"]) or not all(type(p) is int for p in ids):
            raise UserError(f"{where}.param_groups[{i}] does not list this run's {len(own['params'])} parameters; {fix}")
        params.update(zip(ids, own["params"]))
    state = saved["state"]
    if not isinstance(state, dict):
        raise UserError(f"{where}.state is {_type_name(state)}, expected an object; {fix}")
    for pid, entry in state.items():
        if pid not in params or not isinstance(entry, dict):
            raise UserError(f"{where}.state has an entry {pid!r:.40} for no parameter of this run; {fix}")
        for key, value in entry.items():
            if isinstance(value, Tensor):
                if value.dim() > 0 and value.shape != params[pid].shape:
                    raise UserError(f"{where}.state[{pid}].{key} has shape {tuple(value.shape)}, its parameter "
                                    f"{tuple(params[pid].shape)}; {fix}")
                if not (value.is_floating_point() or value.is_complex()) and value.dim() > 0:
                    raise UserError(f"{where}.state[{pid}].{key} holds {value.dtype} values, expected floating point; {fix}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{where}.state[{pid}].{key} is {value!r:.40}, expected a number or a tensor; {fix}")


def _check_rng(saved: Any, where: str, fix: str) -> None:
    """One process's RNG states (torch, and CUDA where stored) of this torch's sizes, or a
    non-empty list of them, one per process of the run that wrote it."""
    if isinstance(saved, list):
        if not saved:
            raise UserError(f"{where} is an empty list of RNG states; {fix}")
        for rank, one in enumerate(saved):
            _check_rng(one, f"{where}[{rank}]", fix)
        return
    if not isinstance(saved, dict) or not isinstance(saved.get("torch"), Tensor):
        raise UserError(f"{where} holds no torch RNG state; {fix}")
    want = torch.get_rng_state()
    got = saved["torch"]
    if got.dtype != torch.uint8 or got.shape != want.shape:
        raise UserError(f"{where}.torch is a {got.dtype} tensor of shape {tuple(got.shape)}, expected uint8 of shape "
                        f"{tuple(want.shape)}; {fix}")
    cuda = saved.get("cuda")
    if cuda is not None:
        if not isinstance(cuda, list) or not all(isinstance(t, Tensor) and t.dtype == torch.uint8 and t.dim() == 1 for t in cuda):
            raise UserError(f"{where}.cuda is not a list of uint8 RNG states; {fix}")
        if torch.cuda.is_available() and cuda:
            size = torch.cuda.get_rng_state().shape
            if any(t.shape != size for t in cuda):
                raise UserError(f"{where}.cuda holds RNG states of another size than this GPU's {tuple(size)}; {fix}")


def check_resumable(trainer_state: dict[str, Any], optimizers: dict[str, Any], schedulers: dict[str, Any],
                    batches_per_epoch: int, where: Path) -> None:
    """A checkpoint's trainer state fits the run being resumed, before any of it is loaded: one
    optimizer and schedule state per group, each with this run's layout and every moment tensor of
    its parameter's shape; an RNG state of this torch's size; a position inside the epoch."""
    fix = "the checkpoint is damaged or was written for another model or settings; resume from another checkpoint"
    for key, live in (("optimizers", optimizers), ("schedulers", schedulers)):
        saved = trainer_state.get(key)
        if not isinstance(saved, dict) or set(saved) != set(live):
            names = sorted(saved) if isinstance(saved, dict) else saved
            raise UserError(f"{where}: trainer_state.{key} are for groups {names!r:.60}, this run has {sorted(live)}; {fix}")
    for group, optimizer in optimizers.items():
        _check_optimizer(trainer_state["optimizers"][group], optimizer, f"{where}: optimizer '{group}'", fix)
    for group, scheduler in schedulers.items():
        _same_layout(trainer_state["schedulers"][group], scheduler.state_dict(), f"{where}: schedule '{group}'", fix)
    _check_rng(trainer_state.get("rng"), f"{where}: trainer_state.rng", fix)
    position = trainer_state["state"].get("batch_in_epoch", 0)
    if position > batches_per_epoch:
        raise UserError(f"{where}: trainer_state.state 'batch_in_epoch' is {position}, but an epoch of this run has "
                        f"{batches_per_epoch} batches; {fix}")


# --- best.json, run.json, metrics.csv ------------------------------------------------------------------
def read_best_pointer(pointer: Path) -> str:
    """The checkpoint name in ``checkpoints/best.json``, checked (an object naming ``step-N``)."""
    fix = "remove it (resuming rewrites it) or pass a checkpoint folder instead"
    record = load_json_bounded(pointer, fix)
    if not isinstance(record, dict) or "checkpoint" not in record:
        raise UserError(f"{pointer} is {_type_name(record)} without a 'checkpoint' name; {fix}")
    if "value" in record and record["value"] is not None and (
            isinstance(record["value"], bool) or not isinstance(record["value"], (int, float))):
        raise UserError(f"{pointer}: 'value' is {record['value']!r:.40}, expected a number or null; {fix}")
    return check_checkpoint_name(record["checkpoint"], str(pointer), fix)


def read_run_record(run_json: Path) -> dict[str, Any]:
    """run.json, checked: an object whose ``resumed`` (if any) is a list of objects."""
    fix = "restore it from a backup, or move it aside (a resumed run then starts a new record)"
    record = load_json_bounded(run_json, fix)
    if not isinstance(record, dict):
        raise UserError(f"{run_json} is {_type_name(record)}, expected an object; {fix}")
    resumed = record.get("resumed", [])
    if not isinstance(resumed, list) or not all(isinstance(r, dict) for r in resumed):
        raise UserError(f"{run_json}: 'resumed' is {resumed!r:.40}, expected a list of objects; {fix}")
    return record


def check_run_files(run_dir: Path) -> None:
    """Before a resumed run rewrites anything: run.json and best.json parse and fit their schema, and
    metrics.csv is a regular file (a FIFO would block the run when it opens it)."""
    run_json, pointer, metrics = run_dir / "run.json", run_dir / "checkpoints" / "best.json", run_dir / "metrics.csv"
    if run_json.exists() or run_json.is_symlink():
        read_run_record(run_json)
    if pointer.exists() or pointer.is_symlink():
        read_best_pointer(pointer)
    if metrics.exists() or metrics.is_symlink():
        check_regular_file(metrics, "move it aside (the resumed run starts a new one)")


def spec_difference(stored: dict[str, Any], current: dict[str, Any]) -> str:
    """What differs between two data specs, for a message ("levels 17 → 5"), not just their names."""
    keys = sorted(set(stored) | set(current))
    changes = [f"{k} {stored.get(k)!r:.40} → {current.get(k)!r:.40}" for k in keys if stored.get(k) != current.get(k)]
    return ", ".join(changes) or "nothing"


def stored_train_config(meta: dict[str, Any], where: Path):
    """The TrainConfig a checkpoint was trained with, checked (types, then TrainConfig's own checks)."""
    from .training.config import TrainConfig

    if not isinstance(meta.get("train_config"), dict):
        raise UserError(f"{where} lacks 'train_config' (the settings to resume with); resume from another checkpoint")
    check_dataclass_fields(meta["train_config"], TrainConfig, f"{where}: train_config", _DAMAGED, extra_keys=True)
    try:
        return TrainConfig.from_json(meta["train_config"])
    except UserError as error:
        raise UserError(f"{where}: train_config is invalid ({error}); {_DAMAGED}") from None


def check_tracker_installed(log_with: str) -> None:
    """Refuse ``--log-with NAME`` before training when NAME's package is not importable (Accelerate
    would only warn, and the run would log nothing)."""
    import importlib.util

    from .trackers import TRACKER_PACKAGES

    if log_with == "none" or log_with not in TRACKER_PACKAGES:
        return
    modules, install = TRACKER_PACKAGES[log_with]
    for module in modules:
        try:
            if importlib.util.find_spec(module) is not None:
                return
        except (ImportError, ValueError):
            continue
    plain = f"pip install {modules[0]}"
    also = f" (or `{plain}`)" if install != plain else ""
    raise UserError(f"{option('log_with', log_with)}: the {modules[0]} package is not installed; install it with "
                    f"`{install}`{also}, or drop {option('log_with')}")
