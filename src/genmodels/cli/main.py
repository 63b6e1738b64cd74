"""``genmodels``: the entry point. User mistakes (an unknown name, a missing file, a bad value)
print one line and exit with status 2; no traceback."""

from __future__ import annotations

import sys

from ..errors import UserError, command_line
from .commands_features import cmd_features
from .commands_evaluate import cmd_classify, cmd_compare, cmd_eval, cmd_mixture, cmd_sample
from .commands_tools import cmd_audit, cmd_decode, cmd_encode, cmd_list, cmd_plot_density, cmd_report
from .commands_train import cmd_bench, cmd_train
from .parser import build_parser

__all__ = ["main", "COMMANDS"]


COMMANDS = {"compare": cmd_compare, "encode": cmd_encode, "decode": cmd_decode, "classify": cmd_classify, "mixture": cmd_mixture, "audit": cmd_audit, "plot-density": cmd_plot_density, "list": cmd_list, "train": cmd_train, "eval": cmd_eval, "sample": cmd_sample, "bench": cmd_bench, "features": cmd_features, "report": cmd_report}


def _pre_import(argv: list[str]) -> None:
    """Import ``--import MODULE`` modules before the parser is built, so that their models are known
    to ``train MODEL --help`` and to checkpoints that name them."""
    from ..core import import_model_module

    for i, arg in enumerate(argv):
        if arg == "--import" and i + 1 < len(argv):
            import_model_module(argv[i + 1])
        elif arg.startswith("--import="):
            import_model_module(arg.split("=", 1)[1])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    with command_line():  # errors name flags (--lr), not Python arguments (lr)
        return _run(argv)


def _run(argv: list[str]) -> int:
    try:
        _pre_import(argv)
        args = build_parser(argv).parse_args(argv)
        COMMANDS[args.command](args)
    except UserError as error:
        print(f"genmodels: error: {error}", file=sys.stderr)
        return 2
    except Exception as error:
        from ..training.signals import TrainingInterrupted

        if not isinstance(error, TrainingInterrupted):  # a signal stopped training after a checkpoint
            raise
        print(f"genmodels: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("genmodels: interrupted; checkpoints already written are intact", file=sys.stderr)
        return 130
    return 0
