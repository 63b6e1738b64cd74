"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["UserError", "unknown_name"]


class UserError(Exception):
    """A mistake in the user's input (a name, a path, a file, a value), with how to fix it."""


def unknown_name(what: str, name: str, valid: Iterable[str], extra: str = "") -> UserError:
    """The error for a name that is not in a registry, listing the valid ones.

    >>> str(unknown_name("model", "pixlecnn", ["fvsbn", "independent"]))
    "unknown model 'pixlecnn'; valid models: fvsbn, independent"
    """
    listed = ", ".join(sorted(valid))
    return UserError(f"unknown {what} '{name}'; valid {what}s: {listed}{extra}")
