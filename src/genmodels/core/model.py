"""The one interface every generative model implements (:class:`GenerativeModel`), and its
optimizer groups (:class:`OptimizerGroup`, :func:`resolve_groups`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..data.base import DataSpec
from ..errors import UserError
from .options import ModelConfig
from .records import Batch, LikelihoodKind, LogLikelihood, Loss

__all__ = ["GenerativeModel", "OptimizerGroup", "resolve_groups"]


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

    def labels(
        self, y: Tensor | None, n: int, generator: torch.Generator | None = None, *, draw: bool = False
    ) -> Tensor | None:
        """The class labels of ``n`` examples for a class-conditional model: (n,) int64 class indices
        on the model's device; None for an unconditional model (``y`` is then ignored).

        One label (a scalar or a single-element tensor) is used for all ``n``. A missing ``y`` is a
        UserError, unless ``draw`` (sampling): then labels are drawn uniformly over the classes
        (with ``generator``, on its device). Given labels outside 0..num_classes−1 are refused when
        they are on the CPU, as they are when a user passes them and whenever the model runs on
        the CPU; labels already on an accelerator are not read back (that would stall the device
        every training batch): there they come from a data set's split, whose labels are
        0..num_classes−1 by construction.
        """
        if not self.conditional:
            return None
        classes = self.spec.num_classes
        if y is None:
            if not draw:
                raise UserError(f"model '{self.name}' is class-conditional: give labels y (genmodels sample --label)")
            where = generator.device if generator is not None else self.device
            y = torch.randint(0, classes, (n,), generator=generator, device=where)
        else:
            y = torch.as_tensor(y)
            if y.device.type == "cpu" and y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
                raise UserError(f"labels must be in 0..{classes - 1}, got {int(y.min())}..{int(y.max())}")
        y = y.to(self.device, torch.int64)
        if y.numel() == 1:
            y = y.reshape(1).expand(n)
        if y.shape != (n,):
            raise UserError(f"labels must have shape ({n},) or be one label, got {tuple(y.shape)}")
        return y

    @staticmethod
    def check_temperature(temperature: float) -> None:
        """Refuse a sampling temperature that is not > 0 (it divides logits or scales the noise)."""
        if not temperature > 0:
            raise UserError(f"temperature must be > 0, got {temperature}")

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

    def estimate_bias(self, measure: str, options: dict[str, Any]) -> str | None:
        """Why the record ``measure`` under these ``log_likelihoods`` options is known to be biased
        (e.g. a few-step ODE, far from converged), or None. Records then carry ``biased: true`` and
        this note, and every report labels them, so they are never read as exact or converged figures."""
        return None

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
