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
(several optimizers with their own settings, e.g. generator and discriminator), ``training_step``
(what one training step computes, e.g. one generator forward shared by two losses), the ``step``
passed to ``loss`` (terms switched on after a warm-up), ``kind_for(spec)`` (a likelihood kind that
depends on the data: a flow is exact on continuous data and a bound on dequantized discrete data),
and keyword options of ``log_likelihoods`` and ``sample`` chosen at evaluation and sampling time.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
import typing
from collections.abc import Callable, Iterable, Iterator
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
    "OptimizerGroup",
    "GenerativeModel",
    "register_model",
    "model_names",
    "model_class",
    "create_model",
    "parse_option",
    "keyword_options",
    "parse_keyword_options",
    "sampling_options",
    "likelihood_options",
    "import_model_module",
    "model_module",
    "BUILTIN_MODEL_MODULES",
    "ENTRY_POINT_GROUP",
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
    """A batch of examples ``x`` (B, *shape) and, for labelled data, their labels ``y`` (B,).

    Models draw the noise of a stochastic bound or estimate (dequantization, importance samples,
    Hutchinson probes, diffusion times) with :meth:`rand` and :meth:`randn`. In training these use
    the global RNG (which resume restores); in evaluation the evaluator sets ``seeds``, one per
    example, and row i of every draw depends only on example i's seed and the draw's position in
    the call sequence, so a figure does not change with the evaluation batch size.
    """

    x: Tensor
    y: Tensor | None = None
    #: per-example seeds set by the evaluator (B,) int64; None in training
    seeds: Tensor | None = None
    _draws: int = field(default=0, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, item: dict[str, Tensor] | Batch | Tensor) -> Batch:
        """A batch from a data loader's dict, a tensor of examples, or a batch."""
        if isinstance(item, Batch):
            return item
        if isinstance(item, Tensor):
            return cls(item)
        return cls(item["x"], item.get("y"))

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.x.to(device), None if self.y is None else self.y.to(device), self.seeds)

    def __len__(self) -> int:
        return len(self.x)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, *shape) draws from U[0, 1), per example (see the class docstring)."""
        return self._draw(torch.rand, shape, dtype)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """(B, *shape) draws from N(0, 1), per example (see the class docstring)."""
        return self._draw(torch.randn, shape, dtype)

    def _draw(self, fn: Callable[..., Tensor], shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        if self.seeds is None:
            return fn((len(self), *shape), device=self.x.device, dtype=dtype)
        self._draws += 1
        generator = torch.Generator()
        rows = []
        for seed in self.seeds.tolist():
            # An explicit formula (not hash()) so that every process and Python version agrees.
            generator.manual_seed((int(seed) * 1_000_003 + self._draws) % (2**63 - 1))
            rows.append(fn(shape, generator=generator, dtype=dtype))
        return torch.stack(rows).to(self.x.device)


@dataclass
class OptimizerGroup:
    """One optimizer: its parameters and its settings. ``None`` takes the TrainConfig's value.

    The trainer builds an AdamW per group (models never own optimizers) and, each training step,
    steps the groups that are due, in the order ``optimizer_groups`` lists them.

    Args:
        params: the parameters this optimizer steps.
        no_decay: those of ``params`` exempt from weight decay (biases, norms, embeddings).
        lr: this group's learning rate; None: ``lr_scale`` × the TrainConfig's lr.
        lr_scale: a factor of the TrainConfig's lr (used when ``lr`` is None).
        betas: AdamW's betas (a GAN's (0.5, 0.999), a Transformer's (0.9, 0.95)).
        weight_decay: AdamW's decoupled weight decay.
        grad_clip: clip this group's gradient norm to this; ``math.inf``: never clip.
        every: step this group on training steps k with k % every == 0 (a generator stepped once
            per ``every`` discriminator steps: WGAN's n_critic).
        start_step: do not step this group before this training step (an adversary switched on
            after a warm-up).
    """

    params: list[nn.Parameter]
    no_decay: list[nn.Parameter] = field(default_factory=list)
    lr: float | None = None
    lr_scale: float = 1.0
    betas: tuple[float, float] | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    every: int = 1
    start_step: int = 0

    def __post_init__(self) -> None:
        self.params = list(self.params)
        self.no_decay = list(self.no_decay)
        ids = {id(p) for p in self.params}
        if any(id(p) not in ids for p in self.no_decay):
            raise ValueError("no_decay must list parameters of the same group")
        if self.every < 1 or self.start_step < 0:
            raise ValueError(f"every must be ≥ 1 and start_step ≥ 0, got {self.every}, {self.start_step}")
        for name in ("lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be ≥ 0, got {value}")
        if not self.lr_scale > 0:
            raise ValueError(f"lr_scale must be > 0, got {self.lr_scale}")

    def due(self, step: int) -> bool:
        """Whether this group steps at training step ``step`` (0-based)."""
        return step >= self.start_step and step % self.every == 0


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
                    f"valid options: {', '.join(sorted(valid)) or '(none)'}"
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
    raise UserError(f"option '{key}': cannot read '{text}' as {hint}")


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
            )
    return {key: parse_option(value, accepted[key][0], key) for key, value in options.items()}


def sampling_options(model: GenerativeModel, options: dict[str, str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → the model's ``sample`` keyword options, parsed by their annotations."""
    return parse_keyword_options(model.sample, options, what="sampling", model=model.name, exclude=("y", "generator"))


def likelihood_options(model: GenerativeModel, options: dict[str, str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings → the model's ``log_likelihoods`` keyword options (test and validation)."""
    return parse_keyword_options(model.log_likelihoods, options, what="likelihood", model=model.name)


class GenerativeModel(nn.Module):
    """Base class of every model. Subclasses set ``Config`` and ``likelihood_kind`` and implement
    ``sample``; exact models implement ``log_prob(x, y=None)`` (and get the mean NLL as their loss),
    the others implement ``loss`` and override ``log_likelihoods``.

    ``likelihood_kind`` on the class is the kind on any data; a model whose kind depends on the
    data (a flow: exact on continuous data, a bound on dequantized discrete data) overrides
    :meth:`kind_for`, and each instance's ``likelihood_kind`` is the kind on its own data. A class
    may define ``log_prob`` only if it is exact on some data, and ``log_prob`` refuses to run on an
    instance that is not exact, so a bound can never pass for an exact likelihood.
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    likelihood_kind: LikelihoodKind  # the class's kind; each instance's kind on its data (kind_for)
    #: whether the model can be fitted to continuous data (``spec.levels is None``)
    handles_continuous: ClassVar[bool] = False
    #: whether the model can be fitted to discrete data
    handles_discrete: ClassVar[bool] = True
    #: whether the model is class-conditional, p(x | y): it reads ``batch.y`` and ``sample(y=...)``.
    #: A model may set it per instance from its config with :meth:`set_conditional`, which refuses
    #: data without labels (UserError).
    conditional: bool = False
    #: options of ``log_likelihoods`` used for the validation split during training, where a
    #: cheaper measure will do (e.g. {"k": 64} for an IWAE estimate whose test figure uses 5 000)
    validation_options: ClassVar[dict[str, Any]] = {}
    #: for a model without a likelihood: the name of one of its ``evaluation_figures`` (lower is
    #: better) that chooses its best checkpoint on validation, e.g. an autoencoder's ``mse``
    selection_figure: ClassVar[str | None] = None

    def __init__(self, config: ModelConfig, spec: DataSpec):
        super().__init__()
        self.config = config
        self.spec = spec
        self.likelihood_kind = type(self).kind_for(spec)

    def set_conditional(self, conditional: bool) -> None:
        """Model p(x | y) when ``conditional``; data without classes get a UserError naming the problem."""
        if conditional and not self.spec.num_classes:
            raise UserError(
                f"conditional=true needs labelled data; '{self.spec.name}' has no classes "
                "(set conditional=false or use a labelled data set)"
            )
        self.conditional = conditional

    @classmethod
    def kind_for(cls, spec: DataSpec) -> LikelihoodKind:
        """The kind of this model's likelihood on data of ``spec`` (by default the class's kind)."""
        return LikelihoodKind(cls.likelihood_kind)

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
        """The training objective for optimizer ``group`` at training ``step``.

        Exact models minimize the mean negative log-likelihood by default.
        """
        if self.likelihood_kind is LikelihoodKind.EXACT and callable(getattr(self, "log_prob", None)):
            nll = -self.log_prob(batch.x, batch.y)  # type: ignore[attr-defined]
            return Loss(nll.mean(), {"nll": nll})
        raise NotImplementedError(f"{type(self).__name__} must implement loss")

    def optimizer_groups(self) -> dict[str, list[nn.Parameter] | OptimizerGroup]:
        """Each optimizer's parameters (or an :class:`OptimizerGroup` with its own settings), in the
        order they step every training step.

        One group by default; a GAN returns {"discriminator": ..., "generator": ...}. A model whose
        parameters are all fitted in closed form by :meth:`initialize` has no group.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return {"model": params} if params else {}

    def training_step(
        self, batch: Batch, step: int, groups: list[str], forward: Callable[..., Loss]
    ) -> Iterator[tuple[str, Loss]]:
        """What one training step computes: yield ``(group, loss)`` for each group due, in order.

        After each yield the trainer zeroes every gradient, backpropagates that loss, clips and steps
        that group's optimizer alone (with its own settings and mixed-precision scaling), then
        resumes this generator, so the next loss sees the updated parameters and may reuse tensors
        computed before (one generator forward shared by the discriminator's loss, on its detached
        output, and the generator's loss). ``forward(batch, step=, group=)`` is the model's own
        forward as the trainer wraps it: with several processes, gradients are synchronized only
        for losses computed inside it. The default computes each group's loss with it.
        """
        for group in groups:
            yield group, forward(batch, step=step, group=group)

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        """Data-dependent initialization before training (not on resume).

        ``batches`` is the whole training split in its stored order (no shuffling), in batches of
        the TrainConfig's ``batch_size``, on the training device: actnorm reads the first, a
        closed-form model fits itself to all of them.
        """

    # --- likelihood -------------------------------------------------------------------------------
    def log_likelihoods(self, batch: Batch, *, marginal: bool = False) -> list[LogLikelihood]:
        """Every likelihood measure this model offers for ``batch``, the headline one first.

        Models add keyword-only options after ``batch`` (IWAE's ``k``, the number of dequantization
        draws, an ODE solver's tolerance); ``genmodels eval --option KEY=VALUE`` reaches them by name
        and the records keep them. Random draws come from ``batch.rand``/``batch.randn``.

        Args:
            batch: the examples (and labels).
            marginal: for a class-conditional exact model, head the list with the exact
                log p(x) = log Σ_y p(y) p(x | y), p(y) uniform over the classes (measure
                ``log_prob_marginal``, one pass per class): the figure an unconditional model is
                compared with. log p(x | y) of the given labels (``log_prob``) follows it.
        """
        if self.likelihood_kind is LikelihoodKind.EXACT:
            given = LogLikelihood(self.log_prob(batch.x, batch.y), LikelihoodKind.EXACT, "log_prob")  # type: ignore[attr-defined]
            if not marginal:
                return [given]
            # log Σ_y p(y) p(x|y) with p(y) = 1/C, a finite mixture: still exact and normalized.
            per_label = self.log_prob_per_label(batch.x)
            values = torch.logsumexp(per_label, dim=1) - math.log(per_label.shape[1])
            return [LogLikelihood(values.to(given.values.dtype), LikelihoodKind.EXACT, "log_prob_marginal"), given]
        if self.likelihood_kind is LikelihoodKind.NONE:
            return []
        raise NotImplementedError(f"{type(self).__name__} must override log_likelihoods")

    def require_label_table(self) -> int:
        """The number of classes C, where this model gives the exact log p(x | y) for every label
        (a class-conditional exact model); else a UserError naming the fix. Generative
        classification and ``marginal=true`` both need it."""
        if not self.conditional or not self.spec.num_classes:
            raise UserError(
                f"log p(x | y) for every label (generative classification, marginal=true) needs a class-conditional "
                f"model; '{self.name or type(self).__name__}' is unconditional (train it with conditional=true on "
                "labelled data)"
            )
        if self.likelihood_kind is not LikelihoodKind.EXACT:
            raise UserError("log p(x | y) for every label needs an exact likelihood; this model has a bound or an estimate")
        return self.spec.num_classes

    def log_prob_per_label(self, x: Tensor) -> Tensor:
        """log p(x | y = c) for every class c, (B, C), of a class-conditional exact model: the
        table behind generative classification (Bayes' rule) and the label-marginal likelihood."""
        return torch.stack(
            [
                self.log_prob(x, torch.full((len(x),), c, dtype=torch.int64, device=x.device))  # type: ignore[attr-defined]
                for c in range(self.require_label_table())
            ],
            dim=1,
        )

    def evaluation_figures(self, batch: Batch) -> dict[str, Tensor]:
        """Per-example figures that are not likelihoods, each (B,): e.g. an autoencoder's
        reconstruction MSE and PSNR, or a prior's exact NLL over its codes (``two-stage``, whose pixel
        likelihood kind is ``none``). Evaluation averages them over a split and reports them beside
        the likelihood records, with their standard errors (results.json ``test_figures``,
        ``genmodels eval``). Random draws come from ``batch.rand``/``batch.randn``. Default: none.
        """
        return {}

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


def resolve_groups(model: GenerativeModel) -> dict[str, OptimizerGroup]:
    """The model's optimizer groups, each as an :class:`OptimizerGroup` (a bare list gets defaults)."""
    groups = {
        name: group if isinstance(group, OptimizerGroup) else OptimizerGroup(list(group))
        for name, group in model.optimizer_groups().items()
    }
    seen: dict[int, str] = {}
    for name, group in groups.items():
        for p in group.params:
            if id(p) in seen:
                raise ValueError(f"{type(model).__name__}: a parameter is in groups '{seen[id(p)]}' and '{name}'")
            seen[id(p)] = name
    return groups


# --- registry -------------------------------------------------------------------------------------
#: Modules that register the built-in models. A new model is one file and one line here.
BUILTIN_MODEL_MODULES: tuple[str, ...] = (
    "genmodels.baselines.independent",
    "genmodels.autoregressive.fvsbn",
    "genmodels.flows.nice",
    "genmodels.flows.realnvp",
    "genmodels.flows.glow",
    "genmodels.flows.nsf",
    "genmodels.flows.maf",
    "genmodels.latent.vae",
    "genmodels.latent.iwae",
    "genmodels.latent.discrete_vae",
    "genmodels.vq.vqvae",
    "genmodels.vq.vqgan",
    "genmodels.vq.two_stage",
    "genmodels.gan.gan",
    "genmodels.autoregressive.made",
    "genmodels.autoregressive.nade",
    "genmodels.autoregressive.pixelcnn",
    "genmodels.autoregressive.transformer",
    "genmodels.autoregressive.rnn",
    "genmodels.diffusion.ddpm",
    "genmodels.diffusion.edm",
    "genmodels.diffusion.ve",
    "genmodels.diffusion.rectified_flow",
)
#: The entry-point group through which installed packages add models (see docs/ARCHITECTURE.md).
ENTRY_POINT_GROUP = "genmodels.models"

_MODELS: dict[str, type[GenerativeModel]] = {}
_loaded = False
_PROBE_SPECS = (DataSpec("probe-discrete", (1, 2, 2), 2, 2), DataSpec("probe-continuous", (2,), None, 2))


def _guard_log_prob(cls: type[GenerativeModel]) -> None:
    """Make ``log_prob`` refuse instances whose kind on their data is not exact."""
    original = cls.log_prob  # type: ignore[attr-defined]
    if getattr(original, "_exact_only", False):
        return

    @functools.wraps(original)
    def log_prob(self, x, y=None, *args, **kwargs):
        if self.likelihood_kind is not LikelihoodKind.EXACT:
            raise TypeError(
                f"{type(self).__name__} on '{self.spec.name}' is not exact ({self.likelihood_kind.value}); "
                "use log_likelihoods(), whose records say what they are"
            )
        return original(self, x, y, *args, **kwargs)

    log_prob._exact_only = True  # type: ignore[attr-defined]
    cls.log_prob = log_prob  # type: ignore[attr-defined]


def register_model(name: str):
    """Class decorator: register a :class:`GenerativeModel` under ``name`` and check its contract."""

    def wrap(cls: type[GenerativeModel]) -> type[GenerativeModel]:
        if name in _MODELS and _MODELS[name] is not cls:
            first = _MODELS[name]
            raise ValueError(
                f"model '{name}' is registered twice: by {first.__module__}.{first.__qualname__} "
                f"and by {cls.__module__}.{cls.__qualname__}"
            )
        if not (isinstance(cls.Config, type) and issubclass(cls.Config, ModelConfig)):
            raise TypeError(f"{cls.__name__}.Config must be a ModelConfig dataclass")
        probes = [s for s in _PROBE_SPECS if (cls.handles_discrete if s.is_discrete else cls.handles_continuous)]
        kinds = {LikelihoodKind(cls.kind_for(s)) for s in probes}
        has_log_prob = callable(getattr(cls, "log_prob", None))
        # log_prob is reserved for exact likelihoods: a bound must never pass for one.
        if has_log_prob != (LikelihoodKind.EXACT in kinds):
            raise TypeError(f"{cls.__name__}: define log_prob exactly when the model is exact on some data")
        if has_log_prob:
            _guard_log_prob(cls)
        cls.name = name
        _MODELS[name] = cls
        return cls

    return wrap


def import_model_module(module: str) -> None:
    """Import a module that registers models (``--import MODULE``); a clear error if it fails."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise UserError(
            f"cannot import model module '{module}' ({error}); install it or put its folder on PYTHONPATH"
        ) from None


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODEL_MODULES:
        importlib.import_module(module)
    from importlib.metadata import entry_points

    # Installed packages are trusted as any installed code is; each entry point names a module.
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as error:  # one broken plugin must not take the built-in models down
            import warnings

            warnings.warn(f"genmodels: plugin '{entry.name}' ({entry.value}) failed to load: {error}", stacklevel=2)


def model_names() -> list[str]:
    """Every registered model's name (the CLI and the Python API share this list)."""
    _load_builtins()
    return sorted(_MODELS)


def model_class(name: str) -> type[GenerativeModel]:
    _load_builtins()
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS)
    return _MODELS[name]


def model_module(name: str) -> str:
    """The module that defines model ``name`` (recorded in checkpoints)."""
    return model_class(name).__module__


def is_registered(name: str) -> bool:
    _load_builtins()
    return name in _MODELS


def create_model(name: str, spec: DataSpec, config: ModelConfig | dict[str, Any] | None = None) -> GenerativeModel:
    """Build model ``name`` for data of ``spec``; ``config`` is a Config, a JSON dict or None (defaults)."""
    cls = model_class(name)
    cls.check_data(spec)
    if config is None:
        config = cls.Config.build()
    elif isinstance(config, dict):
        config = cls.Config.from_json(config)
    return cls(config, spec)
