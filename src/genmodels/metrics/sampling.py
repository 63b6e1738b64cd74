"""Drawing many samples from a model for a metric: in batches, in eval mode, under a fixed seed on
its own RNG stream, with given labels. (A run's one titled grid is drawn by
:func:`genmodels.training.report.draw_samples`, which parses text options and times the draw.)"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from ..progress import Phase
from .records import SAMPLE_SEED

__all__ = ["draw_samples_in_batches"]


@torch.no_grad()
def draw_samples_in_batches(
    model: Any,
    n: int,
    *,
    batch_size: int = 500,
    seed: int = SAMPLE_SEED,
    labels: Tensor | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    """n samples from a model in batches, under a fixed seed; the model's mode is restored.

    Args:
        model: a :class:`~genmodels.core.GenerativeModel`.
        n: how many samples.
        batch_size: samples per ``model.sample`` call.
        seed: seeds a generator on the model's device, passed to ``sample`` (and the global RNG is
            forked, for models that draw from it).
        labels: for a conditional model, the labels of the n samples (default: none, so the model
            decides; :func:`evaluate_sample_quality` passes labels drawn from the reference split).
        options: the model's sampling options (``--option KEY=VALUE``), e.g. {"temperature": 1.0}.
        progress: show the draw (a bar on a terminal, a line every few seconds otherwise; a long
            draw states its cost after the first batch).

    Returns:
        (samples (n, ...) on the CPU, info of the first batch from ``sample_with_info``, e.g. NFE).
    """
    if n < 1:
        raise UserError(f"the number of samples must be positive, got {n}")
    device = model.device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    chunks, info = [], {}
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
                Phase(f"sampling {getattr(model, 'name', type(model).__name__)}", total=n, unit="samples", enabled=progress,
                      cheaper="fewer samples (--samples / --fd-samples N)") as phase:
            torch.manual_seed(seed)
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                y = labels[start : start + b].to(device) if labels is not None else None
                x, batch_info = model.sample_with_info(b, y=y, generator=generator, **(options or {}))
                info = info or dict(batch_info)
                chunks.append(x.cpu())
                phase.update(b)
    finally:
        model.train(was_training)
    return torch.cat(chunks), info
