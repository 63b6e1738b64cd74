"""Checkpoints: safetensors for tensors, JSON for everything else; nothing is ever unpickled.

A checkpoint is a folder written under a temporary name and renamed into place, so a crash leaves
either a complete checkpoint or none, and an existing checkpoint is never overwritten:

    step-000001000/
      checkpoint.json            model name, config, data spec and source, step, metrics, optimizer layout,
                                 and the SHA-256 of each safetensors file ("sha256"), verified on read
      model.safetensors          the model's state_dict
      ema.safetensors            the EMA weights (if training kept them)
      trainer_state.safetensors  optimizer tensors and RNG states (to resume bit-exactly)

A run folder holds ``checkpoints/step-*`` and ``checkpoints/best.json`` (a pointer to the checkpoint
that was best on the validation split).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from .errors import UserError, option
from .run_files import check_meta, check_model_sections, check_trainer_skeleton, read_best_pointer
from .runlock import read_while_written
from .safe_files import check_regular_file, load_json_bounded

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "save_checkpoint",
    "read_checkpoint",
    "resolve_checkpoint",
    "load_model",
    "check_state",
    "list_checkpoints",
    "write_json_atomic",
    "read_json",
    "strict_json",
    "flatten_tensors",
    "unflatten_tensors",
    "checkpoint_name",
    "verify_checkpoint",
    "file_sha256",
    "remove_checkpoint",
]

FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
STATE_FILE = "trainer_state.safetensors"
BEST_POINTER = "best.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class Checkpoint:
    """A checkpoint read from disk."""

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, Tensor]
    ema_state: dict[str, Tensor] | None
    trainer_state: dict[str, Any] | None


def checkpoint_name(step: int) -> str:
    return f"step-{step:09d}"


# --- nested state (optimizer state_dicts, RNG states) ↔ JSON + flat tensors -----------------------
def flatten_tensors(obj: Any, prefix: str = "t") -> tuple[Any, dict[str, Tensor]]:
    """Split a nested structure into a JSON-able skeleton and a flat {key: tensor} dict.

    Tensors become ``{"__tensor__": key}``; dicts whose keys are not all strings (an optimizer's
    ``state`` is keyed by parameter index) become ``{"__items__": [[key, value], ...]}``.

    >>> skeleton, tensors = flatten_tensors({"state": {0: {"step": torch.tensor(3.0)}}, "lr": 0.1})
    >>> unflatten_tensors(skeleton, tensors)["state"][0]["step"].item()
    3.0
    """
    tensors: dict[str, Tensor] = {}

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, Tensor):
            tensors[key] = value.detach().cpu().contiguous().clone()
            return {"__tensor__": key}
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                return {k: walk(v, f"{key}.{k}") for k, v in value.items()}
            return {"__items__": [[k, walk(v, f"{key}.{k}")] for k, v in value.items()]}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{key}.{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} at {key} in a checkpoint")

    return walk(obj, prefix), tensors


def unflatten_tensors(skeleton: Any, tensors: dict[str, Tensor]) -> Any:
    """The inverse of :func:`flatten_tensors`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {"__tensor__"}:
            return tensors[skeleton["__tensor__"]]
        if set(skeleton) == {"__items__"}:
            return {k: unflatten_tensors(v, tensors) for k, v in skeleton["__items__"]}
        return {k: unflatten_tensors(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_tensors(v, tensors) for v in skeleton]
    return skeleton


# --- writing -------------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float (NaN, ±inf) replaced by None: JSON has no such numbers,
    and Python's ``Infinity`` is not JSON that other tools can read."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def read_json(path: Path) -> Any:
    """Read a JSON file the project wrote (a regular file, bounded in size and nesting: see
    :mod:`genmodels.safe_files`); a clear error if it is corrupt."""
    return load_json_bounded(path, "it may be corrupt")


def _out_of_space(error: BaseException) -> bool:
    """Whether a write failed for lack of space (safetensors reports it as text, not an errno)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return isinstance(error, SafetensorError) and ("No space left" in str(error) or "code: 28" in str(error))


def _no_space(folder: Path, needed: int) -> UserError:
    try:
        free = f", {shutil.disk_usage(folder).free / 1e6:.1f} MB free"
    except OSError:
        free = ""
    return UserError(
        f"no space left on the device of {folder}: writing needs about {needed / 1e6:.1f} MB{free}; "
        f"free some space (earlier checkpoints are intact) and continue with {option('resume', True)}"
    )


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint folder of a run. A symlink is unlinked, never followed (what it points to
    is not the run's); a folder is first renamed to a temporary name, so that a process killed while
    deleting leaves no half checkpoint under a checkpoint's name."""
    path = Path(path)
    if path.is_symlink():
        path.unlink()
        return
    doomed = path.with_name(f".tmp-{path.name}-deleting")
    path.rename(doomed)
    shutil.rmtree(doomed)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write strict JSON (no NaN/Infinity) to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    text = json.dumps(strict_json(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    try:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if _out_of_space(error):
            raise _no_space(path.parent, len(text.encode())) from None
        raise
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _state_for_safetensors(state: dict[str, Tensor]) -> dict[str, Tensor]:
    # Clones break storage sharing (tied weights), which safetensors refuses to save.
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}


def save_checkpoint(
    directory: Path,
    *,
    model_state: dict[str, Tensor],
    meta: dict[str, Any],
    ema_state: dict[str, Tensor] | None = None,
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically; refuses to replace one that exists."""
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"checkpoint {directory} exists; checkpoints are never overwritten")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".tmp-{directory.name}-{os.getpid()}")
    tmp.mkdir()
    try:
        _write_checkpoint_files(tmp, model_state, meta, ema_state, trainer_state)
    except (OSError, SafetensorError) as error:
        # Disk full (or any other failed write): the partial folder goes, the earlier checkpoints stay.
        shutil.rmtree(tmp, ignore_errors=True)
        if _out_of_space(error):
            tensors = [model_state, ema_state or {}, flatten_tensors(trainer_state)[1] if trainer_state else {}]
            needed = sum(t.numel() * t.element_size() for state in tensors for t in state.values()) + (1 << 16)
            raise _no_space(directory.parent, needed) from None
        raise
    os.rename(tmp, directory)
    _fsync_dir(directory.parent)
    return directory


def _write_checkpoint_files(tmp: Path, model_state, meta, ema_state, trainer_state) -> None:
    files = [tmp / MODEL_FILE]
    save_file(_state_for_safetensors(model_state), tmp / MODEL_FILE, metadata={"format": "pt"})
    meta = {**meta, "format_version": FORMAT_VERSION, "has_ema": ema_state is not None}
    if ema_state is not None:
        save_file(_state_for_safetensors(ema_state), tmp / EMA_FILE, metadata={"format": "pt"})
        files.append(tmp / EMA_FILE)
    if trainer_state is not None:
        skeleton, tensors = flatten_tensors(trainer_state)
        save_file(tensors, tmp / STATE_FILE, metadata={"format": "pt"})
        files.append(tmp / STATE_FILE)
        meta["trainer_state"] = skeleton
    meta["sha256"] = {file.name: file_sha256(file) for file in files}
    with open(tmp / META_FILE, "w") as handle:
        json.dump(strict_json(meta), handle, indent=2, allow_nan=False)
        handle.write("\n")
    files.append(tmp / META_FILE)
    for file in files:
        _fsync_file(file)
    _fsync_dir(tmp)


# --- reading -------------------------------------------------------------------------------------
def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    digest = hashlib.sha256()
    check_regular_file(path, "use another checkpoint")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checksum_problem(path: Path, meta: dict[str, Any], name: str) -> str | None:
    """Why ``name`` in checkpoint ``path`` does not match the SHA-256 recorded at writing (None: it
    matches, or the checkpoint predates checksums)."""
    recorded = meta.get("sha256")
    if not isinstance(recorded, dict) or name not in recorded:
        return None
    try:
        actual = file_sha256(path / name)
    except OSError as error:
        return f"{path / name} cannot be read ({error})"
    if actual != recorded[name]:
        return (f"{path / name} does not match the SHA-256 recorded in {META_FILE} when it was written "
                "(the file was damaged or changed)")
    return None


def verify_checkpoint(path: str | Path) -> None:
    """Check every file of a checkpoint folder: readable JSON and safetensors, SHA-256 as recorded,
    a trainer state that matches its tensors. Raises UserError naming the first problem."""
    ckpt = read_checkpoint(path, with_trainer_state=True)
    for name in (MODEL_FILE, EMA_FILE):
        problem = _checksum_problem(ckpt.path, ckpt.meta, name)
        if problem:
            raise UserError(f"{problem}; use another checkpoint")


def _load_tensors(path: Path) -> dict[str, Tensor]:
    check_regular_file(path, "use another checkpoint")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise UserError(f"{path} is corrupt or truncated ({error}); use another checkpoint") from None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def resolve_checkpoint(path: str | Path, *, prefer: str = "best") -> Path:
    """A checkpoint folder from a checkpoint folder or a run folder (its best, else its latest)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no checkpoint at {path}: the path does not exist")
    if os.path.lexists(path / META_FILE):  # any kind of file: reading it says what is wrong with it
        return path
    pointer = path / "checkpoints" / BEST_POINTER
    if prefer == "best" and os.path.lexists(pointer):
        candidate = path / "checkpoints" / read_best_pointer(pointer)
        if (candidate / META_FILE).is_file():
            return candidate
    found = list_checkpoints(path)
    if found:
        return found[-1]
    raise UserError(f"{path} holds no checkpoint (expected {META_FILE} or checkpoints/step-*/)")


def read_checkpoint(path: str | Path, *, with_trainer_state: bool = False) -> Checkpoint:
    """Read a checkpoint (or a run folder's best one) from safetensors and JSON only; of a run that
    another process is training, one consistent checkpoint (:func:`~genmodels.runlock.read_while_written`)."""
    return read_while_written(path, lambda: _read_checkpoint(path, with_trainer_state))


def _read_checkpoint(path: str | Path, with_trainer_state: bool) -> Checkpoint:
    path = resolve_checkpoint(path)
    meta = load_json_bounded(path / META_FILE, "use another checkpoint", unreadable="is corrupt: not readable JSON")
    check_meta(meta, path / META_FILE, FORMAT_VERSION)
    if with_trainer_state:
        check_trainer_skeleton(meta, path / META_FILE)
    model_state = _load_tensors(path / MODEL_FILE)
    ema_state = _load_tensors(path / EMA_FILE) if meta.get("has_ema") else None
    trainer_state = None
    if with_trainer_state and "trainer_state" in meta:
        # Resuming from damaged state would continue a run silently wrong: the checksum is enforced.
        for name in (MODEL_FILE, EMA_FILE, STATE_FILE):
            problem = _checksum_problem(path, meta, name)
            if problem:
                raise UserError(f"{problem}; resume from another checkpoint")
        try:
            trainer_state = unflatten_tensors(meta["trainer_state"], _load_tensors(path / STATE_FILE))
        except (KeyError, TypeError, ValueError) as error:
            raise UserError(
                f"{path}: the trainer state in {META_FILE} does not match {STATE_FILE} ({error!r}); "
                "the checkpoint is damaged, resume from another checkpoint"
            ) from None
    return Checkpoint(path, meta, model_state, ema_state, trainer_state)


def load_model(path: str | Path, *, use_ema: bool = True, device: str | torch.device = "cpu"):
    """Rebuild a trained model from a checkpoint (or run folder): returns (model, checkpoint).

    The EMA weights are used when the checkpoint has them and ``use_ema`` is true.

    Raises:
        UserError: one line naming the file and the problem when checkpoint.json is damaged (wrong
            types, an invalid data spec), the weights do not fit the model it describes (names,
            shapes, dtype kinds, NaN/inf values; see ``check_state``), or the weights file is not
            the one written (its SHA-256 differs from the one recorded in checkpoint.json).
    """
    from .core import create_model, is_registered

    ckpt = read_checkpoint(path)
    check_model_sections(ckpt.meta, ckpt.path / META_FILE)
    name = ckpt.meta.get("model")
    module = ckpt.meta.get("model_module")
    if isinstance(name, str) and isinstance(module, str) and not is_registered(name):
        # A checkpoint is data: it never makes genmodels import code on its own (docs/ARCHITECTURE.md).
        raise UserError(
            f"{ckpt.path} holds model '{name}', defined in module '{module}', which is not imported; "
            f"if you trust that module, pass --import {module} (CLI) or import it before load_model (Python)"
        )
    try:
        spec = _spec_from_meta(ckpt.meta)
        model = create_model(ckpt.meta["model"], spec, ckpt.meta["model_config"])
    except KeyError as error:
        raise UserError(f"{ckpt.path / META_FILE} lacks {error}; it is not a genmodels checkpoint") from None
    except UserError as error:
        raise UserError(f"{ckpt.path / META_FILE}: {error}") from None
    ema = use_ema and ckpt.ema_state is not None
    state = ckpt.ema_state if ema else ckpt.model_state
    check_state(model, state, ckpt.path / (EMA_FILE if ema else MODEL_FILE), ckpt.meta["model"])
    problem = _checksum_problem(ckpt.path, ckpt.meta, EMA_FILE if ema else MODEL_FILE)
    if problem:
        # The weights fit the model and are finite, but are not the bytes that were written: they
        # would evaluate and sample silently wrong, so they are refused.
        raise UserError(
            f"{problem}; the weights are not the ones trained: use another checkpoint of the run "
            "(checkpoints/step-*), or copy the file again from where it was written"
        )
    model.load_state_dict(state, strict=True)
    model.to(device).eval()
    return model, ckpt


# --- validation of what a checkpoint holds (a file may be damaged, crafted or another model's) -------
def _spec_from_meta(meta: dict[str, Any]):
    """The data spec a checkpoint's model was built for, checked (DataSpec.from_json validates it).

    Checkpoints written before a user's file was named by its resolved path recorded the path as
    given (``--data good.npy`` → spec name "good.npy") beside a resolved source name
    ("/home/me/good.npy"), so ``genmodels eval`` found "other" data. Such a relative spec name is
    replaced by the source's absolute one when both name the same file name.
    """
    from .data.base import DataSpec

    try:
        spec = DataSpec.from_json(meta["data"]["spec"])
    except UserError as error:
        raise UserError(f"{error}; the file is damaged, use another checkpoint") from None
    source = meta["data"].get("source")
    recorded = source.get("name") if isinstance(source, dict) else None
    if (
        isinstance(recorded, str)
        and PurePath(recorded).is_absolute()
        and not PurePath(spec.name).is_absolute()
        and PurePath(recorded).name == PurePath(spec.name).name
    ):
        spec = dataclasses.replace(spec, name=recorded)
    return spec


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "boolean"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating-point"
    return "integer"


def check_state(model: torch.nn.Module, state: dict[str, Tensor], where: Path, model_name: str) -> None:
    """Refuse weights that do not fit ``model``, each with one line naming the tensor and the fix.

    ``load_model`` calls it; a trainer resuming from a checkpoint should call it on the model and EMA
    states before ``load_state_dict``. ``where`` is the file the state came from (for the message).

    Checked against the freshly built model's own ``state_dict``: the same names; the same shape
    (``load_state_dict`` would raise a RuntimeError traceback); the same kind of dtype (an int64
    tensor where a float parameter is expected would be cast silently; float32 vs float64 is a
    precision, not a kind, and is cast); and finite values wherever the fresh model's tensor is
    finite (NaN or inf weights evaluate to NaN; a buffer that is non-finite by design, such as an
    attention mask of -inf, is left alone).
    """
    expected = model.state_dict()
    fix = "the file was damaged or written for another model; use another checkpoint"
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise UserError(
            f"{where} does not match model '{model_name}' "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]}); use another checkpoint"
        )
    for name, want in expected.items():
        got = state[name]
        if torch.nn.parameter.is_lazy(want):
            continue  # a lazy module's parameter takes its shape from the checkpoint
        if tuple(got.shape) != tuple(want.shape):
            raise UserError(
                f"{where}: tensor '{name}' has shape {tuple(got.shape)}, model '{model_name}' expects "
                f"{tuple(want.shape)}; {fix}"
            )
        if _kind(got.dtype) != _kind(want.dtype):
            raise UserError(
                f"{where}: tensor '{name}' holds {_kind(got.dtype)} values ({got.dtype}), model '{model_name}' "
                f"expects {_kind(want.dtype)} ({want.dtype}); {fix}"
            )
        if (got.is_floating_point() or got.is_complex()) and not torch.isfinite(got).all():
            if torch.isfinite(want).all():
                bad = int((~torch.isfinite(got)).sum())
                raise UserError(
                    f"{where}: tensor '{name}' holds {bad} NaN or infinite value{'s' if bad > 1 else ''}; "
                    "the weights diverged or were damaged, use another (earlier) checkpoint"
                )
