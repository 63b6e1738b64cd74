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

The package, one job per module: :mod:`.records` (the records models speak in), :mod:`.options`
(configs and keyword options as text), :mod:`.model` (the interface) and :mod:`.registry`.
Everything is re-exported here, so ``genmodels.core.GenerativeModel`` etc. are the public names.
"""

from __future__ import annotations

from .model import GenerativeModel, OptimizerGroup, resolve_groups
from .options import (
    OPTION_METHODS, ModelConfig, accepted_options, docstring_args, keyword_options, likelihood_options, model_options,
    parse_keyword_options, parse_option, sampling_options, type_name,
)
from .records import Batch, LikelihoodKind, LogLikelihood, Loss
from .registry import (  # noqa: F401 (_MODELS, _PROBE_SPECS: the registry itself, for tests and `genmodels list`)
    _MODELS, _PROBE_SPECS, BUILTIN_MODEL_MODULES, ENTRY_POINT_GROUP, create_model, import_model_module, is_registered,
    model_class, model_module, model_names, register_model,
)

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
    "model_options",
    "accepted_options",
    "OPTION_METHODS",
    "import_model_module",
    "model_module",
    "BUILTIN_MODEL_MODULES",
    "ENTRY_POINT_GROUP",
    "resolve_groups",
    "type_name",
    "docstring_args",
    "is_registered",
]
