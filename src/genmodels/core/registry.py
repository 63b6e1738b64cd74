"""The model registry: ``@register_model(name)`` (which checks the contract), the built-in model
modules, models of installed packages (entry points), and building a model by name."""

from __future__ import annotations

import functools
import importlib
from typing import Any

from ..data.base import DataSpec
from ..errors import UserError, unknown_name
from .model import GenerativeModel
from .options import ModelConfig
from .records import LikelihoodKind

__all__ = [
    "register_model", "model_names", "model_class", "model_module", "is_registered", "create_model",
    "import_model_module", "BUILTIN_MODEL_MODULES", "ENTRY_POINT_GROUP",
]


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
