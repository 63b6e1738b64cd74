"""The generic recipe of ``genmodels bench --data PATH --minutes M``: any model on any data, in a budget.

The shipped recipes (``recipes/*.toml``) are tuned per model and data set. For a user's own data the
bench instead applies one rule to every model:

- **widths from the data's size.** Every model's defaults are sized for 8×8 digits and 28×28
  Fashion-MNIST. On larger examples the width options (``channels``, ``hidden``, ``dim``,
  ``disc_channels``) shrink by √(1024 / D) for D = C·H·W values per example above 1 024, rounded to a
  multiple of 8, at least a quarter of the default and at least 8, so that a model's cost per step
  grows about linearly with D rather than with D times the width. Depth already follows the image
  size inside the image models (PixelCNN, Glow, the U-Nets, VQ-VAE's downsampling).
- **a parameter budget.** Some models' parameters grow with D² or D·K (MADE's K logits per value and
  its D × D·K direct connections, fvsbn's D²K weights, a VAE's categorical decoder): at 28×28 and
  K = 256 MADE's defaults hold 209 M parameters. Each model's generic config stays within
  :data:`PARAMETER_BUDGET` (4 M): where the widths above leave it over, the cheaper settings the model
  has are taken in turn (:data:`CHEAPER_SETTINGS`: a discretized logistic output, 15 parameters per
  value instead of K (Salimans et al. 2017); no direct connections; a lower rank), then its widths
  halve (at least 8). A model still over the budget is skipped by the bench with the reason, unless
  ``--models`` names it, which trains its smallest generic setting.
- **the budget split.** ``--minutes M`` is the bench's total training time, split equally over the
  models that accept the data (those whose ``check_data`` refuses it cost nothing); each trains for
  its share, evaluation excluded, and the checkpoint best on validation is measured once on test.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..errors import UserError, option

__all__ = ["WIDTH_OPTIONS", "width_scale", "scaled_model_config", "PARAMETER_BUDGET", "CHEAPER_SETTINGS",
           "OverBudget", "parameter_count", "bench_model_config", "minutes_each", "budget_plan"]

#: Model options that set a layer's width (not its depth, number of codes or latent size).
WIDTH_OPTIONS = ("channels", "hidden", "dim", "disc_channels")
#: Values per example up to which the models' default widths are kept (32×32 grey, or about 18×18 colour).
DEFAULT_WIDTH_DIMS = 1024


def width_scale(dims: int) -> float:
    """The factor on the default widths for D values per example: min(1, √(1024 / D)), at least 1/4.

    >>> width_scale(64), width_scale(4096), width_scale(3 * 256 * 256)
    (1.0, 0.5, 0.25)
    """
    return max(0.25, min(1.0, math.sqrt(DEFAULT_WIDTH_DIMS / dims)))


def scaled_model_config(cls: Any, spec: Any) -> dict[str, Any] | None:
    """A model's width options scaled to the data (see the module doc), or None where the defaults stay.

    Args:
        cls: the model class (its ``Config`` dataclass holds the defaults).
        spec: the data's ``DataSpec``.
    """
    scale = width_scale(math.prod(spec.shape))
    if scale >= 1.0:
        return None
    scaled = {}
    for f in dataclasses.fields(cls.Config):
        if f.name in WIDTH_OPTIONS and type(f.default) is int and f.default > 8:
            scaled[f.name] = max(8, int(round(f.default * scale / 8)) * 8)
    return scaled or None


#: The most parameters a model's generic config may hold (the bench's defaults for a user's data).
PARAMETER_BUDGET = 4_000_000
#: Settings that make a model cheaper without changing what it is, taken in turn (each on top of the
#: ones before) while the model is over the budget; a model uses the keys its config has.
CHEAPER_SETTINGS: tuple[dict[str, Any], ...] = (
    {"output": "logistic", "likelihood": "logistic"},  # 3·mixtures parameters per value, not K
    {"direct": False},  # MADE's masked D × D·K direct connections
    {"rank": 8}, {"rank": 4}, {"rank": 2}, {"rank": 1},  # fvsbn's factored W_i = U_i V_i
)


class OverBudget(Exception):
    """A model over :data:`PARAMETER_BUDGET` at its smallest generic setting; ``config`` is that setting."""

    def __init__(self, reason: str, config: dict[str, Any]):
        super().__init__(reason)
        self.config = config


def parameter_count(name: str, spec: Any, config: dict[str, Any] | None) -> int:
    """The parameters of model ``name`` built for ``spec`` with ``config``, counted without allocating
    them (on PyTorch's meta device; a model that cannot be built there is built for real)."""
    import warnings

    import torch

    from ..core import create_model, model_class

    model_class(name)  # its module imported first: module-level constants need real tensors
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "copying from a non-meta parameter": nothing is copied
            model = create_model(name, spec, config)
    except (RuntimeError, NotImplementedError):  # e.g. a constructor that reads a tensor's value
        with torch.no_grad():
            model = create_model(name, spec, config)
    return sum(p.numel() for p in model.parameters())


def bench_model_config(name: str, cls: Any, spec: Any, budget: int | None = None) -> dict[str, Any] | None:
    """Model ``name``'s generic config for data of ``spec``: the widths of :func:`scaled_model_config`,
    then the cheaper settings and halved widths until it holds at most ``budget`` parameters. None
    where the defaults stay. Raises :class:`OverBudget` where even the smallest setting is over.
    ``budget``: default :data:`PARAMETER_BUDGET`.
    """
    budget = PARAMETER_BUDGET if budget is None else budget
    config = scaled_model_config(cls, spec) or {}
    count = parameter_count(name, spec, config or None)
    if count <= budget:
        return config or None
    fields = {f.name: f.default for f in dataclasses.fields(cls.Config)}
    for setting in CHEAPER_SETTINGS:
        cheaper = {**config, **{k: v for k, v in setting.items() if k in fields}}
        if cheaper == config:
            continue
        try:
            cheaper_count = parameter_count(name, spec, cheaper)
        except (ValueError, UserError):  # a setting this data cannot have (e.g. a logistic output for K = 1)
            continue
        if cheaper_count < count:
            config, count = cheaper, cheaper_count
            if count <= budget:
                return config
    while (halved := _halved_widths(config, fields)) != config:
        config, count = halved, parameter_count(name, spec, halved)
        if count <= budget:
            return config
    raise OverBudget(f"{count / 1e6:.1f} M parameters at its smallest generic setting, over the bench's "
                     f"{budget / 1e6:g} M budget; name it in --models to train it anyway", config)


def _halved_widths(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``config`` with every width option (an int, or a tuple of ints) halved, to no less than 8."""
    halved = dict(config)
    for name in WIDTH_OPTIONS:
        value = config.get(name, defaults.get(name))
        if type(value) is int and value > 8:
            halved[name] = max(8, value // 2)
        elif isinstance(value, tuple) and value and all(type(v) is int for v in value) and max(value) > 8:
            halved[name] = tuple(max(8, v // 2) for v in value)
    return halved


def minutes_each(total_minutes: float, models: int) -> float:
    """Each model's share of the bench's training minutes.

    >>> minutes_each(10, 4)
    2.5
    """
    if total_minutes <= 0:
        raise UserError(f"{option('minutes')} must be > 0 (the bench's total training time), got {total_minutes}")
    return total_minutes / max(1, models)


def budget_plan(total_minutes: float, accepted: list[str], refused: dict[str, str]) -> str:
    """The line printed before a budgeted bench starts: the total, each model's share, the ETA."""
    import time

    share = minutes_each(total_minutes, len(accepted))
    finish = time.strftime("%H:%M", time.localtime(time.time() + total_minutes * 60))
    line = (f"bench budget: {total_minutes:g} min of training in all, {share:.3g} min each for "
            f"{len(accepted)} model(s) ({', '.join(accepted) or 'none'}); training ends around {finish}, "
            "evaluation and sampling add to it")
    if refused:
        line += f"; {len(refused)} refuse the data ({', '.join(sorted(refused))})"
    return line
