"""The one interface every generative model implements, the likelihood records, and the registry.

A model is an ``nn.Module`` built from ``(config, spec)``: a JSON-serializable config dataclass (its
constructor arguments) and the data's :class:`~genmodels.data.DataSpec` (shape, levels K). It offers

- ``loss(batch)`` → :class:`Loss`: the training objective and its named per-example terms;
- ``log_likelihoods(batch)`` → a list of :class:`LogLikelihood`, headline first: per-example log
  P(x) of the *discrete* data in nats, each saying what it is (``exact``, ``bound``, ``estimate``)
  and the samples / network evaluations behind it. ``log_prob(x)`` exists only on models whose
  likelihood is exact (the registry enforces it);
- ``sample(n)`` → n examples in the data's own space (levels 0..K−1 for discrete data).

Optional hooks, all with defaults, cover the families on ../shared/ROADMAP.md without special cases
in the trainer: ``initialize(batches)`` (data-dependent init, closed-form fits), ``optimizer_groups()``
(several optimizers stepped in turn, e.g. generator and discriminator) and the ``step`` passed to
``loss`` (terms switched on after a warm-up).
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .data.base import DataSpec
from .errors import UserError, unknown_name

__all__ = [
    "LikelihoodKind",
    "LogLikelihood",
    "Loss",
    "Batch",
    "ModelConfig",
    "GenerativeModel",
    "register_model",
    "model_names",
    "model_class",
    "create_model",
    "parse_option",
    "BUILTIN_MODEL_MODULES",
]


class LikelihoodKind(str, Enum):
    """What a likelihood figure is. ``none``: the model has no pixel likelihood (a GAN, a VQ-VAE)."""

    EXACT = "exact"
    BOUND = "bound"
    ESTIMATE = "estimate"
    NONE = "none"


@dataclass
class LogLikelihood:
    """Per-example log-likelihood of the discrete data, in nats, and what it is.

    Args:
        values: (B,) log P(x) (or its bound / estimate) in nats.
        kind: exact, bound or estimate.
        measure: a name that says what was computed, e.g. ``log_prob``, ``elbo``, ``iwae``.
        samples: Monte Carlo samples per example behind it (IWAE's k, dequantization draws), if any.
        evaluations: network evaluations per example (NFE of an ODE solve), if they matter.
        terms: named per-example pieces in nats (e.g. reconstruction, kl) that sum to ``values``.
    """

    values: Tensor
    kind: LikelihoodKind
    measure: str
    samples: int | None = None
    evaluations: int | None = None
    terms: dict[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = LikelihoodKind(self.kind)
        if self.kind is LikelihoodKind.NONE:
            raise ValueError("a model without a likelihood returns no LogLikelihood at all")
        if self.values.dim() != 1:
            raise ValueError(f"values must be per example, shape (B,), got {tuple(self.values.shape)}")
        if self.kind is LikelihoodKind.EXACT and self.samples is not None:
            raise ValueError("an exact likelihood involves no Monte Carlo samples")
        if self.kind is LikelihoodKind.ESTIMATE and self.samples is None and self.evaluations is None:
            raise ValueError("an estimate must state the samples or network evaluations behind it")


@dataclass
class Loss:
    """A training objective: ``loss`` is the scalar to minimize, ``terms`` its named per-example parts."""

    loss: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Batch:
    """A batch of examples ``x`` (B, *shape) and, for labelled data, their labels ``y`` (B,)."""

    x: Tensor
    y: Tensor | None = None

    @classmethod
    def of(cls, item: dict[str, Tensor] | Batch | Tensor) -> Batch:
        """A batch from a data loader's dict, a tensor of examples, or a batch."""
        if isinstance(item, Batch):
            return item
        if isinstance(item, Tensor):
            return cls(item)
        return cls(item["x"], item.get("y"))

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.x.to(device), None if self.y is None else self.y.to(device))

    def __len__(self) -> int:
        return len(self.x)


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
                f"valid options: {', '.join(sorted(valid)) or '(none)'}"
            )
        hints = typing.get_type_hints(cls)
        # JSON has no tuples: a tuple-typed field comes back as a list.
        fixed = {k: tuple(v) if isinstance(v, list) and _is_sequence_hint(hints[k]) else v for k, v in obj.items()}
        return cls(**fixed)

    @classmethod
    def from_strings(cls, options: dict[str, str]) -> ModelConfig:
        """Parse ``key=value`` strings from the command line by the fields' types."""
        hints = typing.get_type_hints(cls)
        valid = {f.name for f in dataclasses.fields(cls)}
        parsed: dict[str, Any] = {}
        for key, text in options.items():
            if key not in valid:
                raise UserError(
                    f"unknown config option '{key}' for {cls.__name__}; "
                    f"valid options: {', '.join(sorted(valid)) or '(none)'}"
                )
            parsed[key] = parse_option(text, hints[key], key)
        return cls(**parsed)


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
    raise UserError(f"option '{key}': cannot read '{text}' as {hint}")


class GenerativeModel(nn.Module):
    """Base class of every model. Subclasses set ``Config`` and ``likelihood_kind`` and implement
    ``loss`` and ``sample``; exact models implement ``log_prob(x, y=None)``, the others override
    ``log_likelihoods``.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    likelihood_kind: ClassVar[LikelihoodKind]
    #: whether the model can be fitted to continuous data (``spec.levels is None``)
    handles_continuous: ClassVar[bool] = False
    #: whether the model can be fitted to discrete data
    handles_discrete: ClassVar[bool] = True
    #: whether the model is class-conditional, p(x | y): it reads ``batch.y`` and ``sample(y=...)``
    conditional: ClassVar[bool] = False

    def __init__(self, config: ModelConfig, spec: DataSpec):
        super().__init__()
        self.config = config
        self.spec = spec

    @classmethod
    def check_data(cls, spec: DataSpec) -> None:
        """Raise a UserError if this model cannot model data of this spec."""
        if spec.is_discrete and not cls.handles_discrete:
            raise UserError(f"model '{cls.name}' models continuous data; '{spec.name}' is discrete")
        if not spec.is_discrete and not cls.handles_continuous:
            raise UserError(
                f"model '{cls.name}' needs discrete data (levels 0..K-1); '{spec.name}' is continuous"
            )

    # --- training ---------------------------------------------------------------------------------
    def forward(self, batch: Batch, step: int = 0, group: str = "model") -> Loss:
        # The trainer calls the module itself (not .loss) so that wrappers such as DDP see a forward.
        return self.loss(batch, step=step, group=group)

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        """The training objective for optimizer ``group`` at training ``step``."""
        raise NotImplementedError

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters of each optimizer, stepped in this order every training step.

        One group by default; a GAN returns {"discriminator": ..., "generator": ...}. A model whose
        parameters are all fitted in closed form by :meth:`initialize` has no group.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return {"model": params} if params else {}

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        """Data-dependent initialization before training, given the training set in batches.

        Actnorm reads the first batch; a closed-form model fits itself to all of them.
        """

    # --- likelihood -------------------------------------------------------------------------------
    def log_likelihoods(self, batch: Batch) -> list[LogLikelihood]:
        """Every likelihood measure this model offers for ``batch``, the headline one first."""
        if self.likelihood_kind is LikelihoodKind.EXACT:
            return [LogLikelihood(self.log_prob(batch.x, batch.y), LikelihoodKind.EXACT, "log_prob")]
        if self.likelihood_kind is LikelihoodKind.NONE:
            return []
        raise NotImplementedError(f"{type(self).__name__} must override log_likelihoods")

    # --- sampling ---------------------------------------------------------------------------------
    def sample(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n examples in the data's own space: int64 levels 0..K−1 (or floats for continuous data).

        Models add their own keyword-only sampling choices after these (a temperature, a solver and
        its number of steps); ``genmodels sample --option KEY=VALUE`` reaches them by name.
        """
        raise NotImplementedError

    def sample_with_info(self, n: int, **options: Any) -> tuple[Tensor, dict[str, Any]]:
        """``sample`` plus what stands behind the draw, for reports: e.g. {"nfe": 35, "solver": "heun"}.

        Models whose cost depends on sampling-time choices (diffusion's solver and steps) override
        this; the default reports nothing beyond the samples.
        """
        return self.sample(n, **options), {}

    # --- helpers ----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


# --- registry -------------------------------------------------------------------------------------
#: Modules that register the built-in models. A new model is one file and one line here.
BUILTIN_MODEL_MODULES: tuple[str, ...] = (
    "genmodels.baselines.independent",
    "genmodels.autoregressive.fvsbn",
)

_MODELS: dict[str, type[GenerativeModel]] = {}
_loaded = False


def register_model(name: str):
    """Class decorator: register a :class:`GenerativeModel` under ``name`` and check its contract."""

    def wrap(cls: type[GenerativeModel]) -> type[GenerativeModel]:
        if name in _MODELS and _MODELS[name] is not cls:
            raise ValueError(f"model '{name}' is registered twice")
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, ModelConfig)):
            raise TypeError(f"{cls.__name__}.Config must be a ModelConfig dataclass")
        kind = LikelihoodKind(cls.likelihood_kind)
        has_log_prob = callable(getattr(cls, "log_prob", None))
        # log_prob is reserved for exact likelihoods: a bound must never pass for one.
        if has_log_prob != (kind is LikelihoodKind.EXACT):
            raise TypeError(f"{cls.__name__}: define log_prob exactly when likelihood_kind is 'exact'")
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in BUILTIN_MODEL_MODULES:
            importlib.import_module(module)
        _loaded = True


def model_names() -> list[str]:
    """Every registered model's name (the CLI and the Python API share this list)."""
    _load_builtins()
    return sorted(_MODELS)


def model_class(name: str) -> type[GenerativeModel]:
    _load_builtins()
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return _MODELS[name]


def create_model(name: str, spec: DataSpec, config: ModelConfig | dict[str, Any] | None = None) -> GenerativeModel:
    """Build model ``name`` for data of ``spec``; ``config`` is a Config, a JSON dict or None (defaults)."""
    cls = model_class(name)
    cls.check_data(spec)
    if config is None:
        config = cls.Config()
    elif isinstance(config, dict):
        config = cls.Config.from_json(config)
    return cls(config, spec)
