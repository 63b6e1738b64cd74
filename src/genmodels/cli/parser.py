"""The ``genmodels`` command line: the parser (one function per command), and the flags generated
from config dataclasses (each field a flag, with its type, default and docstring)."""

from __future__ import annotations

import argparse
import dataclasses
import textwrap
import typing
from typing import Any

from .. import __version__
from ..errors import UserError

__all__ = ["build_parser", "add_config_flags", "BENCH_DEFAULTS", "OneLineParser"]


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its refusals in one line (no usage dump): the problem, a "did you mean" for a
    mistyped flag, and where the help is; exit status 2 as argparse's."""

    def error(self, message: str) -> typing.NoReturn:
        prog = self._command_parser().prog
        self.exit(2, f"{prog}: error: {message}{self._suggestion(message)} (see `{prog} --help`)\n")

    def _command_parser(self) -> argparse.ArgumentParser:
        """The sub-command's parser named on the command line (this one when none is)."""
        commands = getattr(self, "commands", {})
        for arg in getattr(self, "argv", []):
            if arg in commands:
                return commands[arg]
        return self

    def _suggestion(self, message: str) -> str:
        """A "did you mean" for a mistyped flag (of the sub-command) or choice."""
        import re

        from ..errors import did_you_mean

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            return did_you_mean(choice.group(1), re.findall(r"'([^']*)'", choice.group(2)))
        if not message.startswith("unrecognized arguments: "):
            return ""
        flags = [o for o in self._command_parser()._option_string_actions if o.startswith("--")]
        first = message.split(": ", 1)[1].split()[0].split("=", 1)[0]
        return did_you_mean(first, flags) if first.startswith("-") else ""


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


#: Settings whose command-line default differs for ``bench`` (a fixed, comparable budget).
BENCH_DEFAULTS = {"steps": 1000, "lr": 3e-3, "eval_every": 250}


def _flag_type(hint: Any, name: str):
    """An argparse ``type`` reading a value by the field's annotation (None from 'none')."""
    from ..core import parse_option

    def parse(text: str) -> Any:
        try:
            return parse_option(text, hint, name)
        except UserError as error:  # argparse names the flag already
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"option '{name}': ")) from None

    parse.__name__ = name  # argparse names the type in its error message
    return parse


def add_config_flags(parser: argparse.ArgumentParser, config_class: type, *, defaults: dict[str, Any] | None = None) -> None:
    """One flag per field of a config dataclass, with its type, default and the docstring's doc.

    The flags' defaults are left out of the parsed namespace (argparse.SUPPRESS), so the caller
    knows which settings were given explicitly (a resumed run keeps its stored ones otherwise).
    """
    from ..core import docstring_args, type_name

    defaults = defaults or {}
    docs = docstring_args(config_class.__doc__ or "")
    hints = typing.get_type_hints(config_class)
    budget = parser.add_argument_group("budget (training stops at the first reached)")
    settings = parser.add_argument_group("training settings")
    for f in dataclasses.fields(config_class):
        hint = hints[f.name]
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        default = defaults.get(f.name, f.default if f.default is not dataclasses.MISSING else None)
        doc = docs.get(f.name, "").replace("%", "%%")
        group = budget if f.name in ("steps", "epochs", "minutes") else settings
        common = {"dest": f.name, "default": argparse.SUPPRESS}
        origin = typing.get_origin(hint)
        if origin is dict:
            group.add_argument(flag, action="append", type=_key_value, metavar="KEY=VALUE",
                               help=f"{doc} (repeatable)", **common)
        elif hint is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=f"{doc} (default: {default})", **common)
        elif origin is typing.Literal:
            choices = typing.get_args(hint)
            group.add_argument(flag, choices=choices, help=f"{doc} (default: {default})", **common)
        else:
            group.add_argument(flag, type=_flag_type(hint, flag), metavar=f.metadata.get("metavar", type_name(hint).upper().replace(" ", "")),
                               help=f"{doc} (default: {default})", **common)


def explicit_settings(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The config settings given on the command line (dict-typed ones from their KEY=VALUE lists)."""
    out = {}
    for f in dataclasses.fields(config_class):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            out[f.name] = dict(value) if isinstance(value, list) else value
    return out


def _model_help(model: str | None) -> str:
    """The options of one model for ``genmodels train MODEL --help``: name, type, default, doc."""
    from ..core import OPTION_METHODS, keyword_options, model_class

    if not model:
        return "Run `genmodels train MODEL --help` to see that model's options (set them with --set KEY=VALUE)."
    try:
        cls = model_class(model)
    except UserError as error:
        return str(error)
    lines = [f"options of model '{model}' (--set KEY=VALUE):"]
    rows = cls.Config.describe()
    for name, kind, default, doc in rows:
        lines.append(f"  {name} ({kind}, default {default})")
        if doc:
            lines.extend(textwrap.wrap(doc, 88, initial_indent="      ", subsequent_indent="      "))
    if not rows:
        lines.append("  (none)")
    for what, (method, exclude) in OPTION_METHODS.items():
        options = keyword_options(getattr(cls, method), exclude)
        if options:
            shown = ", ".join(f"{k} (default {v[1]!r})" for k, v in options.items())
            flag = "--sample-option" if what == "sampling" else "--eval-option"
            lines.append(f"{what} options ({flag} KEY=VALUE): {shown}")
    return "\n".join(lines)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The ``genmodels`` parser: one sub-parser per command (``train MODEL --help`` shows MODEL's options)."""
    parser = OneLineParser(
        prog="genmodels",
        description="Train, evaluate and sample deep generative models with honest likelihoods.",
    )
    parser.argv = list(argv or [])
    parser.add_argument("--version", action="version", version=f"genmodels {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imports = OneLineParser(add_help=False)
    imports.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                         help="import a module that registers models (repeatable); only modules you trust")
    sub.add_parser("list", help="list the models and data sets", parents=[imports])
    _add_train(sub, imports, list(argv or []))
    _add_eval(sub, imports)
    _add_sample(sub, imports)
    _add_classify(sub, imports)
    _add_mixture(sub, imports)
    _add_audit(sub, imports)
    _add_plot_density(sub, imports)
    _add_encode(sub, imports)
    _add_decode(sub, imports)
    _add_compare(sub, imports)
    _add_bench(sub, imports)
    _add_features(sub, imports)
    p = sub.add_parser("report", help="rebuild results.html and results.md of a run or bench folder", parents=[imports])
    p.add_argument("folder", help="a run or bench folder (or its results.json)")
    p.add_argument("--out", help="the page to write (default: results.html beside results.json)")
    parser.commands = dict(sub.choices)
    return parser


def _add_train(sub, imports, argv: list[str]) -> None:
    """The ``train`` command's arguments."""
    from ..data.flags import add_data_flags
    from ..training.config import TrainConfig

    model = argv[1] if len(argv) > 1 and argv[0] == "train" and not argv[1].startswith("-") else None
    p = sub.add_parser("train", help="train a model on a data set", parents=[imports],
                       epilog=_model_help(model), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", help="a model name (see `genmodels list`); not needed with --recipe")
    p.add_argument("--recipe", help="run a shipped recipe (model, data, budget, options; see `genmodels list`), or a "
                                    "FILE.toml of your own (as --config); flags given here override its settings, and "
                                    "its expected figures are checked")
    p.add_argument("--config", metavar="FILE", help="a TOML config file at any path, of the recipes' schema (model, data, "
                                                    "[model_config], [train], [sample_options], [eval_options]); flags given "
                                                    "here override it. --print-config writes one")
    p.add_argument("--print-config", action="store_true",
                   help="print the whole resolved config (model, data, every setting) as TOML and exit, training nothing")
    p.add_argument("--data", help="a data set name, or a path to images / .npy / .csv (default: digits)")
    p.add_argument("--data-dir", help="folder holding the data set's files (e.g. Fashion-MNIST's IDX files)")
    add_data_flags(p)  # --resize, --center-crop, --hflip, --max-pixels
    add_config_flags(p, TrainConfig)
    p.add_argument("--out", help="run folder (default: runs/MODEL-DATA-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint, with its stored settings")
    p.add_argument("--allow-config-change", action="store_true",
                   help="on --resume, accept settings that break bit-exactness (recorded in run.json)")
    p.add_argument("--set", dest="options", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a model config option (repeatable), e.g. --set rank=8; see `genmodels train MODEL --help`")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log and validation lines stay)")
    p.add_argument("--num-processes", type=_processes, default=1, metavar="N",
                   help="data-parallel training in N processes on this machine (one per GPU, else CPU "
                        "processes); --batch-size is per process. Several machines: see README (torchrun)")
    p.set_defaults(argv=list(argv))


def _add_eval(sub, imports) -> None:
    """The ``eval`` command's arguments."""
    p = sub.add_parser("eval", help="evaluate a checkpoint's likelihood on a split", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--batch-size", type=int, help="default: the run's evaluation batch size (figures do not depend on it)")
    p.add_argument("--examples", type=int, metavar="N",
                   help="only the split's first N examples (a cheaper, noisier figure for slow estimates; "
                        "the report says so). Default: the whole split")
    p.add_argument("--option", dest="options", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a likelihood option of the model (repeatable), e.g. --option k=5000")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if EMA weights exist")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the records as JSON")
    p.add_argument("--out", metavar="DIR",
                   help="also write eval.json and each example's log-likelihoods (safetensors) into DIR, a new "
                        "folder: `genmodels compare` then pairs two evaluations example by example")
    p.add_argument("--samples", type=int, metavar="N",
                   help="also draw N samples and measure their quality against the split: FD, KID, precision/"
                        "recall, density/coverage and memorization in genmodels' own feature space")
    add_feature_flags(p)
    p.add_argument("--sample-option", dest="sample_options", action="append", type=_key_value, default=[],
                   metavar="KEY=VALUE", help="a sampling option for --samples (repeatable)")


def _add_sample(sub, imports) -> None:
    """The ``sample`` command's arguments."""
    p = sub.add_parser("sample", help="draw samples from a checkpoint into a PNG grid", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("-n", "--num", type=int, default=64, help="how many samples")
    p.add_argument("--out", default="samples.png", help="PNG to write")
    p.add_argument("--npy", help="also save the samples as a .npy array here")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", type=int, help="draw from p(x | y=LABEL) (class-conditional models)")
    p.add_argument("--data-dir", help="where the training data's files are, if not where training found them (a table's "
                                      "samples are drawn over its validation examples)")
    p.add_argument("--option", dest="options", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="a sampling option of the model (repeatable), e.g. --option temperature=0.8")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")


def _add_classify(sub, imports) -> None:
    """The ``classify`` command's arguments."""
    p = sub.add_parser("classify", help="classify a labelled split by Bayes' rule on a class-conditional model",
                       parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--examples", type=int, metavar="N", help="only the split's first N examples (default: all)")
    p.add_argument("--out", help="also draw the confusion matrix into this PNG")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _add_mixture(sub, imports) -> None:
    """The ``mixture`` command's arguments."""
    p = sub.add_parser("mixture", parents=[imports],
                       help="the exact mixture Σ_k w_k p_k(x) of trained models, weights fitted on validation")
    p.add_argument("checkpoints", nargs="+", metavar="RUN",
                   help="checkpoint or run folders of models of the same data (shape and levels)")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"], help="the split to report")
    p.add_argument("--examples", type=int, metavar="N", help="only the reported split's first N examples (default: all)")
    p.add_argument("--uniform", action="store_true", help="equal weights instead of fitting them on validation")
    p.add_argument("--option", dest="options", action="append", type=_key_value, default=[], metavar="RUN:KEY=VALUE",
                   help="a likelihood option of one member (RUN as given, or its 1-based position), repeatable; "
                        "by default each member is scored with its run's validation options (e.g. marginal=true)")
    p.add_argument("--samples", type=int, metavar="N", help="also draw N samples from the mixture into --out")
    p.add_argument("--out", default="mixture-samples.png", help="PNG for --samples")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _add_audit(sub, imports) -> None:
    """The ``audit`` command's arguments."""
    p = sub.add_parser("audit", help="an autoregressive image model's receptive field of one pixel, by gradients",
                       parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--pixel", default=None, metavar="ROW,COL", help="the audited pixel (default: the centre)")
    p.add_argument("--ordering", type=int, default=0, help="which of the model's orderings (MADE's masks)")
    p.add_argument("--out", help="also draw the receptive field into this PNG")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _add_plot_density(sub, imports) -> None:
    """The ``plot-density`` command's arguments."""
    p = sub.add_parser("plot-density", help="draw a 2-D model's density beside the data and its samples", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("--out", default="density.png", help="PNG to write")
    p.add_argument("--split", default="test", choices=["train", "validation", "test"], help="the data drawn beside it")
    p.add_argument("--points", type=int, default=5000, help="data points and samples drawn")
    p.add_argument("--resolution", type=int, default=200, help="grid cells per axis")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them")
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")


def _add_encode(sub, imports) -> None:
    """The ``encode`` command's arguments."""
    p = sub.add_parser("encode", help="images → code grids (.npy) with a vqvae, vqgan or two-stage model", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("inputs", nargs="*", help=".npy arrays in the data's levels, images, or folders of images")
    p.add_argument("--split", choices=["train", "validation", "test"], help="encode this split of the run's data instead")
    p.add_argument("--out", default="codes.npy", help=".npy file to write: int64 (N, h, w) code grids")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--data-dir", help="where the data set's files are, if not where training found them (--split)")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")


def _add_decode(sub, imports) -> None:
    """The ``decode`` command's arguments."""
    p = sub.add_parser("decode", help="code grids (.npy) → images, with the model that made them", parents=[imports])
    p.add_argument("checkpoint", help="a checkpoint folder, or a run folder (its best checkpoint)")
    p.add_argument("codes", help="a .npy of int (N, h, w) code grids, e.g. from genmodels encode")
    p.add_argument("--out", default="decoded.png", help="PNG grid to write")
    p.add_argument("--npy", help="also save the images, in the data's levels, as a .npy here")
    p.add_argument("--overwrite", action="store_true", help="replace --npy if it exists")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--no-ema", action="store_true")
    p.add_argument("--cpu", action="store_true")


def _add_compare(sub, imports) -> None:
    """The ``compare`` command's arguments."""
    p = sub.add_parser("compare", help="the differences between two results.json (runs or benches), flagged beyond their errors",
                       parents=[imports])
    p.add_argument("results", nargs="+", metavar="RESULTS",
                   help="two results: A (the baseline) and B, each a results.json or eval.json, or a run, bench or "
                        "eval folder holding one; with --vs, the runs of side A (seeds)")
    p.add_argument("--vs", nargs="+", metavar="RESULTS",
                   help="compare across runs: the positional results are side A's runs (e.g. its seeds), these side "
                        "B's; each figure's means are compared by the spread between runs (two or more per side)")
    p.add_argument("--across-models", action="store_true",
                   help="match the figures of two different models on the same data (one model per data set on each "
                        "side): e.g. made against pixelcnn, paired on the same test examples")
    p.add_argument("--sigmas", type=float, default=2.0,
                   help="flag a change larger than this many combined standard errors (default 2)")


def _add_bench(sub, imports) -> None:
    """The ``bench`` command's arguments."""
    from ..training.config import TrainConfig

    p = sub.add_parser("bench", help="train and evaluate several models on data sets; write one table", parents=[imports])
    p.add_argument("--suite", help="run a suite of shipped recipes (quick, fashion), each with its own budget and "
                                   "expected figures; training flags given here override every recipe's")
    p.add_argument("--models", default="all", help="comma-separated model names, or 'all' (with --suite: a subset of its recipes)")
    p.add_argument("--data", default="digits", help="comma-separated data set names (not with --suite)")
    p.add_argument("--quality-samples", type=int, metavar="N",
                   help="samples drawn per model for FD/KID/precision/recall (genmodels features) on data with a "
                        "feature network; 0 for none (default: the suite's, or 0 without --suite)")
    p.add_argument("--data-dir", help="folder holding the data sets' files")
    add_feature_flags(p)
    add_config_flags(p, TrainConfig, defaults=BENCH_DEFAULTS)
    p.add_argument("--out", help="bench folder (default: runs/bench-TIME)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log and validation lines stay)")


def _add_features(sub, imports) -> None:
    """The ``features`` command: ``features fit --data PATH``."""
    from ..data.flags import add_data_flags

    p = sub.add_parser("features", help="fit a feature network to your data, for sample quality", parents=[imports])
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fit = actions.add_parser("fit", help="train the feature network on --data: a classifier where the data have "
                                         "labels, an autoencoder's bottleneck where not; eval --samples and bench "
                                         "then use it")
    fit.add_argument("--data", required=True, help="a path to images / .npy / .csv (or a data set name)")
    fit.add_argument("--data-dir", help="folder holding a named data set's files")
    add_data_flags(fit)  # the same --resize/--center-crop as the runs it will measure
    fit.add_argument("--out", help="a .safetensors file to write (a .json goes beside it); default: the features "
                                   "store ($GENMODELS_FEATURES_DIR or ~/.cache/genmodels/features), found there "
                                   "automatically")
    fit.add_argument("--epochs", type=int, help="passes over the train split (default: about 3 000 steps, 2 to 40)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--no-progress", action="store_true", help="no line per epoch")


def add_feature_flags(p: argparse.ArgumentParser) -> None:
    """``--features FILE`` and ``--inception-weights FILE`` of ``eval`` and ``bench``."""
    p.add_argument("--features", metavar="FILE", help="the feature network for sample quality (a .safetensors "
                   "from `genmodels features fit --out`); default: the shipped one or the one fit to this data")
    p.add_argument("--inception-weights", metavar="FILE", help="also the standard FID (Inception-v3) with these "
                   "weights from disk, through torchmetrics if installed (never downloaded)")


def train_config_from(args: argparse.Namespace, defaults: dict[str, Any] | None = None):
    from ..training.config import TrainConfig

    return TrainConfig.from_json({**(defaults or {}), **explicit_settings(args, TrainConfig)})


def _processes(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a number of processes ≥ 1, got '{text}'")
    return n
