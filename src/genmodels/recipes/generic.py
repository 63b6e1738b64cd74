"""The generic recipe of ``genmodels bench --data PATH --minutes M``: any model on any data, in a budget.

The shipped recipes (``recipes/*.toml``) are tuned per model and data set. For a user's own data the
bench instead applies one rule to every model:

- **widths from the data's size.** Every model's defaults are sized for 8×8 digits and 28×28
  Fashion-MNIST. On larger examples the width options (``channels``, ``hidden``, ``dim``,
  ``disc_channels``) shrink by √(1024 / D) for D = C·H·W values per example above 1 024, rounded to a
  multiple of 8, at least a quarter of the default and at least 8, so that a model's cost per step
  grows about linearly with D rather than with D times the width. Depth already follows the image
  size inside the image models (PixelCNN, Glow, the U-Nets, VQ-VAE's downsampling).
- **the budget split.** ``--minutes M`` is the bench's total training time, split equally over the
  models that accept the data (those whose ``check_data`` refuses it cost nothing); each trains for
  its share, evaluation excluded, and the checkpoint best on validation is measured once on test.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

__all__ = ["WIDTH_OPTIONS", "width_scale", "scaled_model_config", "minutes_each", "budget_plan"]

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


def minutes_each(total_minutes: float, models: int) -> float:
    """Each model's share of the bench's training minutes.

    >>> minutes_each(10, 4)
    2.5
    """
    if total_minutes <= 0:
        from ..errors import UserError, option

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
