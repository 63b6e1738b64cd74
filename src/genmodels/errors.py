"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["UserError", "unknown_name", "did_you_mean", "note_python_names", "PythonArguments"]


class UserError(Exception):
    """A mistake in the user's input (a name, a path, a file, a value), with how to fix it."""


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the valid names closest to a mistyped one (difflib), else "".

    >>> did_you_mean("pixelcn", ["pixelcnn", "fvsbn", "made"])
    "; did you mean 'pixelcnn'?"
    """
    import difflib

    valid = list(valid)
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    if not close and len(name) >= 3:  # a part of a longer name: "mnist" for "fashion-mnist"
        close += sorted((v for v in valid if name.lower() in v.lower() and v not in close), key=len)[: 3 - len(close)]
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def unknown_name(what: str, name: str, valid: Iterable[str], extra: str = "") -> UserError:
    """The error for a name that is not in a registry, listing the valid ones.

    >>> str(unknown_name("model", "pixlecnn", ["fvsbn", "independent"]))
    "unknown model 'pixlecnn'; valid models: fvsbn, independent"
    >>> str(unknown_name("model", "pixelcn", ["fvsbn", "pixelcnn"]))
    "unknown model 'pixelcn'; valid models: fvsbn, pixelcnn; did you mean 'pixelcnn'?"
    """
    valid = sorted(valid)
    return UserError(f"unknown {what} '{name}'; valid {what}s: {', '.join(valid)}{extra}{did_you_mean(name, valid)}")


class PythonArguments(Exception):
    """The Python arguments behind the flags a UserError names: shown above it in a traceback."""


def note_python_names(error: UserError, names: dict[str, str]) -> UserError:
    """Name the Python argument of each command-line flag that ``error``'s message names (``names``:
    flag → argument, e.g. ``{"--lr": "TrainConfig.lr"}``): ``error.python_names``, and a
    :class:`PythonArguments` cause that a Python traceback shows above the error. The command line
    prints the message alone, so it stays one line (and the message itself stays as it was).

    >>> error = note_python_names(UserError("--lr must be a positive number, got 0.0"), {"--lr": "TrainConfig.lr"})
    >>> error.python_names
    'in Python: --lr is TrainConfig.lr'
    """
    import re

    found = [flag for flag in dict.fromkeys(re.findall(r"--[a-z][a-z0-9-]*", str(error))) if flag in names]
    if found and getattr(error, "python_names", None) is None:
        error.python_names = "in Python: " + ", ".join(f"{flag} is {names[flag]}" for flag in found)
        if error.__cause__ is None:
            error.__cause__ = PythonArguments(error.python_names)
    return error
