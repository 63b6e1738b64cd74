"""Bounded, validated reads of the files a run reads back (checkpoint.json, best.json, run.json, ...).

A run folder may be damaged, or crafted by someone else: a file may be a FIFO (reading it blocks
forever), a link to ``/dev/zero`` (reading it never ends), gigabytes long, or JSON nested 100 000
levels deep (the parser raises RecursionError). Every read here checks the file's type with
``os.stat`` before opening it, opens it without blocking, reads at most a size limit, and bounds the
nesting depth; every problem is a :class:`~genmodels.errors.UserError` of one line naming the file,
what is wrong and the fix.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from .errors import UserError

__all__ = ["MAX_JSON_BYTES", "MAX_JSON_DEPTH", "check_regular_file", "read_bytes_bounded", "load_json_bounded",
           "json_depth"]

#: The largest JSON file a run reads back. checkpoint.json is the largest (its optimizer layout
#: grows with the number of parameter tensors, a few hundred bytes each): 64 MiB is far above any
#: model genmodels builds, and far below what would exhaust memory.
MAX_JSON_BYTES = 64 << 20
#: The deepest nesting of a JSON file a run reads back. genmodels writes at most ~8 levels
#: (optimizer state inside trainer state inside checkpoint.json); 64 leaves room for model configs.
MAX_JSON_DEPTH = 64

_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder"}


def _kind_of(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular_file(path: str | Path, fix: str) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed), refused unless it is a regular file.

    Stat never opens the file, so a FIFO or a device is refused without blocking on it."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; {fix}") from None
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror}); {fix}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{path} is {_kind_of(info.st_mode)}, not a regular file; {fix}")
    return info


def read_bytes_bounded(path: str | Path, limit: int, fix: str) -> bytes:
    """The bytes of the regular file ``path``, refused if longer than ``limit``.

    Opened with O_NONBLOCK (a file swapped for a FIFO between the stat and the open does not block)
    and checked again on the open descriptor, then read to at most ``limit + 1`` bytes."""
    check_regular_file(path, fix)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror}); {fix}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{path} is {_kind_of(info.st_mode)}, not a regular file; {fix}")
        if info.st_size > limit:
            raise UserError(f"{path} is {info.st_size} bytes, more than the {limit} a genmodels run file may hold; {fix}")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # the file grew after the stat
            raise UserError(f"{path} is more than {limit} bytes, more than a genmodels run file may hold; {fix}")
        return b"".join(chunks)
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror}); {fix}") from None
    finally:
        os.close(fd)


def json_depth(obj: Any, limit: int) -> int:
    """The nesting depth of a parsed JSON value (a scalar is 0), counted without recursion and
    stopping as soon as it exceeds ``limit``."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            stack.extend((v, depth) for v in (value.values() if isinstance(value, dict) else value))
    return deepest


def load_json_bounded(
    path: str | Path, fix: str, *, limit: int = MAX_JSON_BYTES, depth: int = MAX_JSON_DEPTH, unreadable: str = "is not readable JSON"
) -> Any:
    """Parse the JSON file ``path``: a regular file of at most ``limit`` bytes, UTF-8, nested at
    most ``depth`` levels."""
    data = read_bytes_bounded(path, limit, fix)

    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise UserError(f"{path} is JSON nested deeper than {depth} levels; {fix}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise UserError(f"{path} {unreadable} ({error}); {fix}") from None
    if json_depth(value, depth) > depth:
        raise UserError(f"{path} is JSON nested deeper than {depth} levels; {fix}")
    return value
