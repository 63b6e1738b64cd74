"""The ``genmodels`` command: list, train, eval, sample, bench, and the tools around them.

One job per module: :mod:`.parser` (the arguments), :mod:`.main` (the entry point and its exit
statuses), :mod:`.launcher` (several processes), and one module per group of commands:
:mod:`.commands_train`, :mod:`.commands_evaluate`, :mod:`.commands_tools`.
"""

from __future__ import annotations

from .main import main
from .parser import build_parser

__all__ = ["main", "build_parser"]
