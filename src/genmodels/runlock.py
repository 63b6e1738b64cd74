"""An exclusive lock per run folder: one writer at a time.

Two ``genmodels train … --out X`` started together would both find X empty and write into it (rows of
two runs in one metrics.csv, checkpoints of one beside best.json of the other). The first process to
check or prepare a run folder therefore takes ``X/.genmodels-lock``:

- ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the lock file, held open for the run's life: the kernel
  releases it when the process ends in any way (even SIGKILL), so a dead process never holds it;
- the file records the holder (pid, host, process start, time), which names the holder to a second
  writer ("… is in use by pid 123 on host h since …") and, when the lock is taken over from a process
  that ended without releasing it, goes into a one-line note. On a file system without ``flock``,
  that record alone decides: a holder on this host whose process is gone is stale and taken over.

Readers (``eval``, ``sample``, ``load_model`` of a run folder) take no lock: a run being trained
stays readable. :func:`read_while_written` sees the writer (a shared ``flock`` it cannot get), says
so in one line, and reads again where the checkpoints changed under it (the best one pruned between
reading best.json and its files); a read that keeps failing names the writer.

Only the main process (``RANK`` 0) of a multi-process run takes the lock. In one process the lock is
re-entrant (the resume checks, the trainer and the run files all ask for it) and it is released
explicitly (:func:`release_run_lock`, e.g. when :func:`genmodels.training.train` returns or raises), at
interpreter exit, or on SIGTERM outside the training loop (turned into ``SystemExit`` so that the
release runs). A released lock's file is removed, and so is the run folder if taking the lock
created it and it is still empty.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import inspect
import json
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError, option

try:
    import fcntl
except ImportError:  # Windows: the holder record alone decides
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_NAME", "hold_run_lock", "release_run_lock", "releases_run_lock", "run_lock_held", "is_main_rank",
           "run_writer", "read_while_written"]

LOCK_NAME = ".genmodels-lock"


@dataclass
class _Held:
    fd: int
    lock_path: Path
    created: list[Path]  # the folders taking the lock created, deepest first


_held: dict[str, _Held] = {}
_guard = threading.Lock()
_previous_sigterm: Any = None


def is_main_rank() -> bool:
    """Whether this is the main process of a (possibly) multi-process run."""
    return int(os.environ.get("RANK", "0")) == 0


def _process_start(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot (Linux), so that a reused pid is not taken
    for the holder; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        return None


def _holder_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _process_start(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv[:6])[:300]}


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 4096)
        record = json.loads(data.decode("utf-8")) if data.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "another process"
    return f"pid {record.get('pid')} on host {record.get('host')} since {record.get('since')}"


def _alive(record: dict[str, Any]) -> bool | None:
    """Whether the recorded holder still runs: True/False on this host, None on another (unknown)."""
    if record.get("host") != socket.gethostname() or not isinstance(record.get("pid"), int):
        return None
    pid = record["pid"]
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    start = record.get("start")
    return start is None or _process_start(pid) in (None, start)


def _try_flock(fd: int, shared: bool = False) -> bool | None:
    """Take the flock (exclusive, or ``shared``): True taken, False held by another, None not supported here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            return None
        raise


def _refuse(run_dir: Path, record: dict[str, Any] | None) -> UserError:
    return UserError(
        f"{run_dir} is in use by {_describe(record)} (another genmodels run writes into it); wait for it to "
        f"finish or stop it, or {option('run_dir', 'another folder')} (if no such process runs, remove {run_dir / LOCK_NAME})"
    )


def _acquire(run_dir: Path) -> _Held:
    created = [p for p in (run_dir, *run_dir.parents) if not p.exists()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UserError(f"{option('run_dir', run_dir)} is a file, not a folder; choose a new folder for the run") from None
    lock_path = run_dir / LOCK_NAME
    for _ in range(20):  # a holder unlinking its lock file between our open and flock: try again
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            taken = _try_flock(fd)
            record = _read_record(fd)
            if taken is False:
                raise _refuse(run_dir, record)
            if taken is None and record and record.get("pid") != os.getpid() and _alive(record) is not False:
                raise _refuse(run_dir, record)  # no flock here: a holder not known to be gone keeps it
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock_path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            if record and record.get("pid") != os.getpid():
                print(f"genmodels: {run_dir} was locked by {_describe(record)}, which ended without releasing it; "
                      "took the lock over", file=sys.stderr)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(_holder_record()) + "\n").encode(), 0)
            return _Held(fd, lock_path, created)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            _remove_empty(created)
            raise
    raise UserError(f"{run_dir}: could not take {LOCK_NAME} (it keeps being replaced); {option('run_dir', 'another folder')}")


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders taking the lock created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _key(run_dir: str | Path) -> str:
    return os.path.realpath(run_dir)


def hold_run_lock(run_dir: str | Path) -> bool:
    """Take the run folder's lock for this process, unless it holds it already (or is not the
    main process). Returns whether this call took it. Raises UserError naming the holder."""
    if not is_main_rank():
        return False
    run_dir = Path(run_dir)
    with _guard:
        if _key(run_dir) in _held:
            return False
        held = _acquire(run_dir)
        _held[_key(run_dir)] = held
        _install_sigterm_release()
    return True


def release_run_lock(run_dir: str | Path) -> None:
    """Release this process's lock of ``run_dir`` (if held): remove the lock file, and the folder if
    taking the lock created it and nothing was written since."""
    with _guard:
        held = _held.pop(_key(run_dir), None)
        if held is None:
            return
        with contextlib.suppress(OSError):
            held.lock_path.unlink()  # while still holding the flock: a waiter then sees another inode
        with contextlib.suppress(OSError):
            os.close(held.fd)
        _remove_empty(held.created)
        if not _held:
            _restore_sigterm()


@contextlib.contextmanager
def run_lock_held(run_dir: str | Path):
    """Hold the lock inside the ``with`` block; release it at the end if this block took it."""
    took = hold_run_lock(run_dir)
    try:
        yield
    finally:
        if took:
            release_run_lock(run_dir)


def releases_run_lock(function):
    """Decorate what ends a run (``train(…, run_dir, …)``, or a method of an object with a
    ``run_dir`` attribute such as ``Trainer.fit``): the run folder's lock, taken by anything it
    calls or before it, is released when it returns or raises."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs).arguments
        run_dir = bound["run_dir"] if "run_dir" in bound else bound["self"].run_dir
        try:
            return function(*args, **kwargs)
        finally:
            release_run_lock(run_dir)

    return wrapper


def run_writer(path: str | Path) -> dict[str, Any] | None:
    """The record of another process writing the run that ``path`` (a run folder, or a checkpoint
    folder in one) belongs to, or None: no lock file, the lock free (a shared flock is granted and
    given back at once), or this process the holder. ``{}`` where the holder wrote no record."""
    if not is_main_rank():
        return None  # a process of a multi-process run reads its own run, whose main process holds the lock
    path = Path(path)
    for run_dir in (path, path.parent.parent):
        lock_path = run_dir / LOCK_NAME
        if not lock_path.is_file():
            continue
        if _key(run_dir) in _held:
            return None
        try:
            fd = os.open(lock_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            record = _read_record(fd)
            shared = _try_flock(fd, shared=True)
            if shared is not None:
                # taken: nobody holds it exclusively (a lock file left by a killed process)
                return None if shared else (record or {})
            alive = record is not None and record.get("pid") != os.getpid() and _alive(record) is not False
            return record if alive else None  # no flock here: the record decides
        finally:
            os.close(fd)  # also gives back a shared flock
    return None


#: Reads of a run being written, before giving up (each a fresh look at best.json), and the pause between.
READ_ATTEMPTS, READ_PAUSE_SECONDS = 5, 0.5


def read_while_written(path: str | Path, read):
    """``read()`` of a run folder (or a checkpoint in one) that a ``train`` may be writing: as is
    where nobody writes it; else with a one-line note naming the writer, and again (up to
    :data:`READ_ATTEMPTS` times) where the files changed under the read, so that the result is one
    consistent checkpoint. Raises a one-line UserError naming the writer if every read failed."""
    writer = run_writer(path)
    if writer is None:
        return read()
    print(f"genmodels: {path} is being written by {_describe(writer)} (a genmodels run); reading its latest "
          "best checkpoint", file=sys.stderr)
    for attempt in range(READ_ATTEMPTS):
        try:
            return read()
        except (UserError, OSError) as error:  # e.g. the best checkpoint pruned between best.json and its files
            failure = error
            time.sleep(READ_PAUSE_SECONDS)
    raise UserError(f"{path} is being written by {_describe(writer)} and its checkpoints changed during each of "
                    f"{READ_ATTEMPTS} reads ({failure}); wait for the run to finish, or name a checkpoint folder")


@atexit.register
def _release_all() -> None:
    for key in list(_held):
        release_run_lock(key)


def _sigterm(signum, frame):  # pragma: no cover - exercised through a subprocess
    raise SystemExit(128 + signum)


def _install_sigterm_release() -> None:
    """SIGTERM's default ends the process without running ``finally`` blocks: while a lock is held
    (outside the training loop, which handles SIGTERM itself), it raises SystemExit instead."""
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread() or _previous_sigterm is not None:
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        _previous_sigterm = signal.SIG_DFL
        signal.signal(signal.SIGTERM, _sigterm)


def _restore_sigterm() -> None:
    global _previous_sigterm
    if _previous_sigterm is None or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is _sigterm:
        signal.signal(signal.SIGTERM, _previous_sigterm)
    _previous_sigterm = None
