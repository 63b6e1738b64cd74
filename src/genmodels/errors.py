"""Errors a user can fix. The CLI prints them as one line and exits with status 2.

A message names the options to change through :func:`option`, and is rendered for the front-end it
is read in: ``--lr 0.001`` on the command line (inside :func:`command_line`, which the CLI's entry
point enters), ``lr=0.001`` in Python (everywhere else). One mapping, :func:`flag_of`, turns an
option's Python name into its flag; the message is written once.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator

__all__ = ["UserError", "unknown_name", "did_you_mean", "option", "flag_of", "register_flags", "command_line"]

# An option mention inside a message: OPEN name [VALUE_SEP value] CLOSE (Unicode private-use
# characters, which no user text holds); rendered away by UserError.__str__.
_OPEN, _VALUE_SEP, _CLOSE = "\ue000", "\ue001", "\ue002"
_MENTION = re.compile(f"{_OPEN}([^{_VALUE_SEP}{_CLOSE}]*)(?:{_VALUE_SEP}([^{_CLOSE}]*))?{_CLOSE}")
_NO_VALUE = object()
#: Python name → flag, where the flag is not ``--`` + the name with ``-`` for ``_`` (see register_flags).
_FLAGS: dict[str, str] = {}
_on_command_line = False


def option(name: str, value: object = _NO_VALUE) -> str:
    """Name the option ``name`` (its Python name, e.g. ``"test_examples"``) in a UserError's message,
    with a value or a placeholder if given: ``--test-examples N`` on the command line,
    ``test_examples=N`` in Python. ``True`` is a switch: ``--resume`` / ``resume=True``.

    >>> str(UserError(f"{option('lr')} must be a positive number, got 0.0"))
    'lr must be a positive number, got 0.0'
    >>> with command_line():
    ...     str(UserError(f"give a budget: {option('steps', 'N')} or {option('minutes', 'M')}"))
    'give a budget: --steps N or --minutes M'
    """
    return f"{_OPEN}{name}{'' if value is _NO_VALUE else _VALUE_SEP + str(value)}{_CLOSE}"


def register_flags(flags: dict[str, str]) -> None:
    """Record the flags whose spelling is not the Python name's (``{"ema_decay": "--ema"}``); the
    module that defines the options calls it, from the same table its parser is built from."""
    _FLAGS.update(flags)


def flag_of(name: str) -> str:
    """The command-line flag of the option whose Python name is ``name``.

    >>> flag_of("test_examples")
    '--test-examples'
    """
    return _FLAGS.get(name) or "--" + name.replace("_", "-")


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Render UserErrors for the command line (flags) while inside; the CLI's entry point enters it."""
    global _on_command_line
    before, _on_command_line = _on_command_line, True
    try:
        yield
    finally:
        _on_command_line = before


def _rendered(message: str) -> str:
    def mention(match: re.Match[str]) -> str:
        name, value = match.group(1), match.group(2)
        if _on_command_line:
            flag = flag_of(name)
            return flag if value is None or value == "True" else f"{flag} {value}"
        return name if value is None else f"{name}={value}"

    return _MENTION.sub(mention, message)


class UserError(Exception):
    """A mistake in the user's input (a name, a path, a file, a value), with how to fix it. Options
    named with :func:`option` read as flags on the command line and as Python arguments elsewhere."""

    def __str__(self) -> str:
        return _rendered(super().__str__())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


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
