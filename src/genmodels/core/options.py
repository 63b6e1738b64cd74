"""Options as text: a model's config dataclass (:class:`ModelConfig`, built from JSON or from
``KEY=VALUE`` strings, its docs read from the class docstring), and the keyword options of a
model's ``sample`` and ``log_likelihoods`` parsed by their annotations (one parser for the
sampling, test and validation options of every command)."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UserError, did_you_mean

if TYPE_CHECKING:
    from .model import GenerativeModel

__all__ = [
    "ModelConfig", "type_name", "docstring_args", "parse_option", "keyword_options", "parse_keyword_options",
    "OPTION_METHODS", "model_options", "accepted_options", "sampling_options", "likelihood_options",
]


@dataclass
class ModelConfig:
    """Base of every model's config: a dataclass of its constructor arguments, JSON-serializable."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ModelConfig:
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - valid)
        if unknown:
            raise UserError(
                f"unknown config option(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid options: {', '.join(sorted(valid)) or '(none)'}{did_you_mean(unknown[0], valid)}"
            )
        hints = typing.get_type_hints(cls)
        # JSON has no tuples: a tuple-typed field comes back as a list.
        fixed = {k: tuple(v) if isinstance(v, list) and _is_sequence_hint(hints[k]) else v for k, v in obj.items()}
        return cls.build(**fixed)

    @classmethod
    def build(cls, **values: Any) -> ModelConfig:
        """The config of these values; a value its ``__post_init__`` refuses becomes a UserError."""
        try:
            return cls(**values)
        except (ValueError, TypeError) as error:
            raise UserError(f"{cls.__name__}: {error}") from None

    @classmethod
    def from_strings(cls, options: dict[str, str]) -> ModelConfig:
        """Parse ``key=value`` strings from the command line by the fields' types."""
        return cls.build(**cls.parse_strings(options))

    @classmethod
    def parse_strings(cls, options: dict[str, str]) -> dict[str, Any]:
        """The given ``key=value`` strings parsed by the fields' types (only those keys, no defaults):
        to lay command-line options over typed settings, e.g. a recipe's ``[model_config]``."""
        hints = typing.get_type_hints(cls)
        valid = {f.name for f in dataclasses.fields(cls)}
        parsed: dict[str, Any] = {}
        for key, text in options.items():
            if key not in valid:
                raise UserError(
                    f"unknown config option '{key}' for {cls.__name__}; "
                    f"valid options: {', '.join(sorted(valid)) or '(none)'}{did_you_mean(key, valid)}"
                )
            parsed[key] = parse_option(text, hints[key], key)
        return parsed

    @classmethod
    def describe(cls) -> list[tuple[str, str, str, str]]:
        """(name, type, default, doc) of every option, the docs read from the docstring's Args."""
        hints = typing.get_type_hints(cls)
        docs: dict[str, str] = {}
        for klass in reversed(cls.__mro__):  # a shared base's options (e.g. a mixin's) keep their docs
            docs.update(docstring_args(klass.__doc__ or ""))
        rows = []
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)"
            )
            rows.append((f.name, type_name(hints[f.name]), repr(default), docs.get(f.name, "")))
        return rows


def type_name(hint: Any) -> str:
    """``int | None`` rather than ``typing.Optional[int]``."""
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def docstring_args(doc: str) -> dict[str, str]:
    """The ``Args:`` section of a Google-style docstring: {name: one-line description}."""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    inside, current, indent = False, None, None
    for line in lines:
        stripped = line.strip()
        if stripped.endswith("Args:"):
            inside, current, indent = True, None, None
            continue
        if not inside:
            continue
        if not stripped:
            current = None
            continue
        level = len(line) - len(line.lstrip())
        head, sep, rest = stripped.partition(":")
        if sep and head.replace("_", "").isalnum() and (indent is None or level <= indent):
            indent = level
            current = head
            out[current] = rest.strip()
        elif current is not None:
            out[current] = f"{out[current]} {stripped}".strip()
    return out


def _is_sequence_hint(hint: Any) -> bool:
    return any(typing.get_origin(h) in (tuple, list) for h in [hint, *typing.get_args(hint)])


def parse_option(text: str, hint: Any, key: str) -> Any:
    """Read one command-line value by its annotated type (a config field's, or a keyword of
    ``sample``): int, float, bool, str, None, or a tuple of those written with commas
    (``channels=64,128``)."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    if typing.get_origin(hint) in (tuple, list):
        options = [hint]
    if text.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    for option in options:
        if typing.get_origin(option) in (tuple, list):
            element = typing.get_args(option)[0] if typing.get_args(option) else str
            return tuple(parse_option(part.strip(), element, key) for part in text.split(",") if part.strip())
        try:
            if option is bool:
                if text.lower() in ("true", "1", "yes"):
                    return True
                if text.lower() in ("false", "0", "no"):
                    return False
                continue
            if option in (int, float, str):
                return option(text)
        except ValueError:
            continue
    raise UserError(f"option '{key}': cannot read '{text}' as {type_name(hint)}")


def keyword_options(method: Callable[..., Any], exclude: Iterable[str] = ()) -> dict[str, tuple[Any, Any]]:
    """{name: (type hint, default)} of a method's keyword-only arguments: the options a user can set
    by name (``--option KEY=VALUE``) for ``sample`` or ``log_likelihoods``."""
    hints = typing.get_type_hints(method)
    return {
        name: (hints.get(name, str), p.default)
        for name, p in inspect.signature(method).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in exclude
    }


def parse_keyword_options(
    method: Callable[..., Any], options: dict[str, str], *, what: str, model: str, exclude: Iterable[str] = ()
) -> dict[str, Any]:
    """Check ``KEY=VALUE`` strings against ``method``'s keyword-only options and parse each value
    by its annotation (as config options are parsed; an unannotated keyword gets the text)."""
    accepted = keyword_options(method, exclude)
    for key in options:
        if key not in accepted:
            raise UserError(
                f"model '{model}' has no {what} option '{key}'; its {what} options: {', '.join(accepted) or '(none)'}"
                f"{did_you_mean(key, accepted)}"
            )
    return {key: parse_option(value, accepted[key][0], key) for key, value in options.items()}


#: The options a user sets by name, per kind: the model's method that takes them as keyword-only
#: arguments, and its keyword arguments that are not options.
OPTION_METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sampling": ("sample", ("y", "generator")),
    "likelihood": ("log_likelihoods", ()),  # the test, validation and eval options
}


def model_options(model: GenerativeModel | type[GenerativeModel], options: dict[str, str], what: str) -> dict[str, Any]:
    """``KEY=VALUE`` strings → ``model``'s (an instance or a registered class) ``what`` options
    ("sampling" or "likelihood"), each parsed by its annotation; an unknown key is a UserError
    listing the model's options. The one parser of every command's and config's options."""
    method, exclude = OPTION_METHODS[what]
    return parse_keyword_options(getattr(model, method), options, what=what, model=model.name, exclude=exclude)


def accepted_options(model: GenerativeModel | type[GenerativeModel], options: dict[str, str], what: str) -> dict[str, str]:
    """The part of ``options`` (text) that ``model`` takes as ``what`` options: one option list given
    to a bench of several models reaches each model that has the option."""
    method, exclude = OPTION_METHODS[what]
    accepted = keyword_options(getattr(model, method), exclude)
    return {key: value for key, value in options.items() if key in accepted}


def sampling_options(model: GenerativeModel | type[GenerativeModel], options: dict[str, str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → the model's ``sample`` keyword options (:func:`model_options`)."""
    return model_options(model, options, "sampling")


def likelihood_options(model: GenerativeModel | type[GenerativeModel], options: dict[str, str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → the model's ``log_likelihoods`` keyword options, test and validation (:func:`model_options`)."""
    return model_options(model, options, "likelihood")
