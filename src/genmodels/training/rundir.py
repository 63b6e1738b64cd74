"""The run folder: run.json (what was trained, how, and every invocation), metrics.csv (one row per
logged figure), checkpoints/ and the end-of-run artifacts. Only the main process writes."""

from __future__ import annotations

import contextlib
import csv
import errno
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..checkpoint import list_checkpoints, remove_checkpoint, verify_checkpoint, write_json_atomic
from ..errors import UserError, option
from ..run_files import check_run_files, read_run_record
from ..runlock import LOCK_NAME, hold_run_lock, release_run_lock, run_lock_held

__all__ = ["METRIC_COLUMNS", "RunDir", "check_run_dir", "check_restartable", "stored_run", "resume_checkpoint",
           "remove_leftovers", "likelihood_rows", "run_description"]

METRIC_COLUMNS = ["step", "epoch", "examples", "seconds", "split", "metric", "value"]


def check_run_dir(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (or None); refuses to train into anything already written.

    Takes the run folder's lock first (:mod:`genmodels.runlock`; released here if the folder is
    refused), and on resume checks run.json, best.json and metrics.csv before anything is rewritten.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{option('run_dir', run_dir)} is a file, not a folder; choose a new folder for the run")
    took = hold_run_lock(run_dir)
    try:
        return _checked_run_dir(run_dir, resume)
    except BaseException:
        if took:
            release_run_lock(run_dir)
        raise


def _checked_run_dir(run_dir: Path, resume: bool) -> Path | None:
    existing = list_checkpoints(run_dir)
    if not resume and run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        what = "checkpoints" if existing else "files"
        raise UserError(
            f"{run_dir} already holds {what}; pass {option('resume', True)} to continue that run, "
            f"or {option('run_dir', 'a new folder')} (nothing is overwritten)"
        )
    if resume and not existing:
        check_restartable(run_dir)
        return None  # nothing trained yet: the run starts from the beginning (resume.plan_resume)
    if resume:
        check_run_files(run_dir)
    return resume_checkpoint(run_dir) if resume else None


#: What a run writes before its first checkpoint (besides checkpoints/ with unfinished temporary folders).
_EARLY_RUN_FILES = {LOCK_NAME, "run.json", "metrics.csv", "metrics.csv.tmp", "checkpoints"}


def check_restartable(run_dir: Path) -> None:
    """A folder that ``--resume`` may start from the beginning: absent, empty, or what a genmodels run
    killed before its first checkpoint leaves (run.json checked); never a folder of other files."""
    if not run_dir.is_dir():
        return
    check_run_files(run_dir)  # a FIFO or a crafted run.json is refused before anything is rewritten
    run_json = run_dir / "run.json"
    if run_json.exists() or run_json.is_symlink():
        record = read_run_record(run_json)
        if not isinstance(record.get("model"), str):
            raise UserError(f"{option('resume', True)}: {run_json} names no model; it is not a genmodels run: {option('run_dir', 'another folder')}")
        return
    others = sorted(p.name for p in run_dir.iterdir() if p.name not in _EARLY_RUN_FILES and not p.name.startswith(".run.json.tmp-"))
    if others:
        raise UserError(f"{option('resume', True)}: {run_dir} holds no checkpoint and no run.json but other files ({', '.join(others[:3])}); "
                        f"it is not a genmodels run: {option('run_dir', 'another folder')} (nothing is overwritten)")


def stored_run(run_dir: Path) -> dict[str, Any] | None:
    """What a run folder says it trains (run.json, else its newest checkpoint's checkpoint.json):
    ``model``, ``model_config``, ``data`` (``source``, ``spec``), ``train_config``, ``model_module``;
    None for a folder that holds neither. Read-only; every file checked before use."""
    from ..checkpoint import read_checkpoint
    from ..run_files import check_model_sections

    run_json = run_dir / "run.json"
    if run_json.exists() or run_json.is_symlink():
        record, where = read_run_record(run_json), run_json
    else:
        existing = list_checkpoints(run_dir)
        if not existing:
            return None
        where = existing[-1] / "checkpoint.json"
        record = read_checkpoint(existing[-1]).meta
    check_model_sections(record, where)
    source = record["data"].get("source") if isinstance(record["data"], dict) else None
    if not (isinstance(record["model"], str) and isinstance(source, dict) and isinstance(source.get("name"), str)
            and isinstance(source.get("data_dir", None), (str, type(None)))):
        raise UserError(f"{where}: 'model' or 'data.source' is damaged; name the model and --data on the command line")
    return record


def resume_checkpoint(run_dir: Path) -> Path:
    """The newest checkpoint of a run whose every file is intact (SHA-256 as written, readable).

    A damaged newer one is reported and moved aside to ``checkpoints/damaged-step-*`` (nothing
    written is deleted; a resumed run will write that step again), and what a killed process left
    unfinished is removed: temporary folders of checkpoints it was writing or deleting, and
    temporary files of JSON it was replacing. Only the first process (RANK 0) changes the folder;
    every process picks the same checkpoint.
    """
    run_dir = Path(run_dir)
    main = int(os.environ.get("RANK", "0")) == 0
    # What it changes, it changes holding the run folder's lock (kept if the caller holds it).
    with run_lock_held(run_dir) if main else contextlib.nullcontext():
        return _intact_checkpoint(run_dir, main)


def _intact_checkpoint(run_dir: Path, main: bool) -> Path:
    if main:
        remove_leftovers(run_dir)
    damaged: list[tuple[Path, UserError]] = []
    for candidate in reversed(list_checkpoints(run_dir)):
        try:
            verify_checkpoint(candidate)
        except UserError as error:
            damaged.append((candidate, error))
            continue
        if main:  # only once an intact one is found: a refused resume leaves the folder as it was
            for bad, error in damaged:
                aside = bad.with_name(f"damaged-{bad.name}")
                if aside.exists() or aside.is_symlink():
                    remove_checkpoint(aside)  # an older damaged copy of the same step
                bad.rename(aside)
                print(f"genmodels: {bad.name} is damaged ({error}); moved it to {aside.name} and resume "
                      "from the previous intact checkpoint", file=sys.stderr)
        return candidate
    newest = f" ({damaged[0][1]})" if damaged else ""
    raise UserError(f"{option('resume', True)}: no intact checkpoint in {run_dir}{newest}, nor in the rest of {run_dir / 'checkpoints'}; "
                    "start a new run")


def remove_leftovers(run_dir: Path) -> None:
    """Remove the temporary folders and files a killed process left in a run folder."""
    for leftover in (run_dir / "checkpoints").glob(".tmp-step-*"):
        if leftover.is_symlink():
            leftover.unlink()  # never followed: what it points to is not the run's
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    for folder in (run_dir, run_dir / "checkpoints"):
        for leftover in folder.glob(".*.tmp-*"):  # write_json_atomic's
            leftover.unlink(missing_ok=True)
    (run_dir / "metrics.csv.tmp").unlink(missing_ok=True)


def _complete(row: dict[str, Any]) -> bool:
    """Whether a metrics.csv row is whole (a killed process may leave a partial last line)."""
    if None in row or any(row.get(c) in (None, "") for c in METRIC_COLUMNS):
        return False
    try:
        int(row["step"]), float(row["value"])
    except ValueError:
        return False
    return True


class RunDir:
    """Writes a run's metrics.csv and run.json (main process only)."""

    def __init__(self, path: Path, *, is_main: bool):
        self.path = path
        self.is_main = is_main
        self.metrics = path / "metrics.csv"
        self.run_json = path / "run.json"

    def prepare(self, description: dict[str, Any], invocation: dict[str, Any], resumed_at: int | None) -> None:
        """Create the folder and files; on resume, drop metrics rows logged after the checkpoint
        (the resumed run logs them again) and append the invocation to run.json."""
        if not self.is_main:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        # run.json is read and checked before metrics.csv is rewritten: a damaged one changes nothing.
        previous = read_run_record(self.run_json) if resumed_at is not None and self.run_json.exists() else None
        if resumed_at is not None and self.metrics.exists():
            try:
                with open(self.metrics, newline="") as handle:
                    kept = [row for row in csv.DictReader(handle)
                            if _complete(row) and int(row["step"]) <= resumed_at and row["split"] != "test"]
            except (csv.Error, UnicodeDecodeError) as error:
                raise UserError(f"{self.metrics} is not a readable CSV table ({error}); move it aside "
                                "(the resumed run starts a new one)") from None
            tmp = self.metrics.with_suffix(".csv.tmp")
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=METRIC_COLUMNS)
                writer.writeheader()
                writer.writerows(kept)
            tmp.replace(self.metrics)
        elif not self.metrics.exists():
            with open(self.metrics, "w", newline="") as handle:
                csv.writer(handle).writerow(METRIC_COLUMNS)
        if previous is not None:
            record = previous
            record.setdefault("resumed", []).append({**invocation, "from_step": resumed_at})
        else:
            record = {**description, **invocation}
        write_json_atomic(self.run_json, record)

    def write_metrics(self, rows: list[tuple[str, str, float]], where: dict[str, Any]) -> None:
        if not self.is_main or not rows:
            return
        try:
            with open(self.metrics, "a", newline="") as handle:
                writer = csv.writer(handle)
                for split, metric, value in rows:
                    writer.writerow([where["step"], where["epoch"], where["examples"], f"{where['seconds']:.3f}",
                                     split, metric, repr(float(value))])
        except OSError as error:
            if error.errno not in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise
            # A partial last row is dropped when the run is resumed (see _complete).
            raise UserError(f"no space left on the device of {self.path} to append to metrics.csv; free some "
                            f"space (the checkpoints written are intact) and continue with {option('resume', True)}") from None


def run_description(model, dataset, config) -> dict[str, Any]:
    """What is trained on what, and how (run.json and every checkpoint's meta): enough to rebuild
    the model and reload the data."""
    return {
        "model": model.name,
        "model_module": type(model).__module__,
        "model_config": model.config.to_json(),
        "likelihood_kind": model.likelihood_kind.value,
        "data": {"source": dataset.source, "spec": dataset.spec.to_json()},
        "train_config": config.to_json(),
    }


def likelihood_rows(records, split: str) -> list[tuple[str, str, float]]:
    """The metrics.csv rows of a split's likelihood records: ``MEASURE_nll``, where it applies
    ``MEASURE_bpd``, and ``MEASURE_biased`` = 1 for a record known to be biased (a few-step ODE), so
    that a plot never draws it as a converged figure without saying so."""
    rows = []
    for r in records:
        rows.append((split, f"{r.measure}_nll", r.nll_nats))
        if r.bits_per_dim is not None:
            rows.append((split, f"{r.measure}_bpd", r.bits_per_dim))
        if getattr(r, "biased", False):
            rows.append((split, f"{r.measure}_biased", 1.0))
    return rows


def invocation_record(config_json: dict[str, Any], device: str, processes: int, **extra: Any) -> dict[str, Any]:
    return {
        "command": sys.argv,
        "train_config": config_json,
        "versions": {"genmodels": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "device": device,
        "processes": processes,
        **extra,
    }
