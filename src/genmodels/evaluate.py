"""Evaluation: a model's likelihood measures over a split, as records that say what they are.

Every figure is the mean per-example negative log-likelihood of the discrete data in nats, its
bits/dim (via :mod:`genmodels.units`), its kind (exact / bound / estimate) and the samples or network
evaluations behind it. A model with no likelihood (kind ``none``) yields no record, so nothing
pretends to a bits/dim it does not have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .core import Batch, GenerativeModel, LikelihoodKind, keyword_options
from .data.base import Split
from .errors import UserError
from .units import bits_per_dim

__all__ = ["LikelihoodRecord", "evaluate_likelihood", "format_records", "EVAL_SEED"]

#: Stochastic bounds and estimates are computed under this seed, so evaluation is repeatable.
EVAL_SEED = 1234


@dataclass
class LikelihoodRecord:
    """One likelihood figure over a split: mean NLL (nats/example), bits/dim, kind and provenance."""

    measure: str
    kind: str
    nll_nats: float
    bits_per_dim: float | None
    stderr_nats: float
    examples: int
    dims: int
    samples: int | None = None
    #: network evaluations per example: the mean over batches (an adaptive ODE solver varies)
    evaluations: float | None = None
    terms_nats: dict[str, float] = field(default_factory=dict)
    #: the options ``log_likelihoods`` was called with (``--option KEY=VALUE``), e.g. {"k": 5000}
    options: dict[str, Any] = field(default_factory=dict)
    #: whether the figure is of the discrete data (nats/example and bits/dim) or a density of
    #: continuous data (nats/example of the density; bits/dim does not apply)
    discrete: bool = True

    @property
    def kind_label(self) -> str:
        """The kind with what stands behind it, e.g. ``exact``, ``bound``, ``estimate (k=64)``."""
        parts = []
        if self.samples is not None:
            parts.append(f"k={self.samples}")
        if self.evaluations is not None:
            parts.append(f"NFE={self.evaluations:g}")
        return f"{self.kind} ({', '.join(parts)})" if parts else self.kind

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LikelihoodRecord:
        return cls(**obj)


@torch.no_grad()
def evaluate_likelihood(
    model: GenerativeModel,
    data: Split | Iterable[Batch],
    *,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool = False,
    seed: int = EVAL_SEED,
    options: dict[str, Any] | None = None,
) -> list[LikelihoodRecord]:
    """Every likelihood measure of ``model`` over ``data``, headline first; [] for kind ``none``.

    ``options`` are keyword options of the model's ``log_likelihoods`` (IWAE's k, dequantization
    draws); every record keeps them. Sums run in float64 in a fixed order, and every random draw a
    model makes through ``batch.rand``/``batch.randn`` depends only on (seed, the example's position
    in ``data``), so the same checkpoint gives the same figures at any evaluation batch size.
    """
    if model.likelihood_kind is LikelihoodKind.NONE:
        return []
    options = dict(options or {})
    accepted = keyword_options(model.log_likelihoods)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UserError(
            f"model '{model.name}' has no likelihood option {', '.join(unknown)}; "
            f"its likelihood options: {', '.join(accepted) or '(none)'}"
        )
    device = torch.device(device) if device is not None else model.device
    loader = DataLoader(data, batch_size=batch_size, shuffle=False) if isinstance(data, Split) else data
    was_training = model.training
    model.eval()
    sums: dict[str, dict[str, Any]] = {}
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        offset = 0
        for item in tqdm(loader, desc="evaluate", unit="batch", disable=not progress, leave=False):
            batch = Batch.of(item).to(device)
            model.spec.check(batch.x)
            batch.seeds = seed * 1_000_000_007 + offset + torch.arange(len(batch), dtype=torch.int64)
            offset += len(batch)
            for ll in model.log_likelihoods(batch, **options):
                values = ll.values.detach().to("cpu", torch.float64)
                if not torch.isfinite(values).all():
                    raise FloatingPointError(f"{ll.measure} is not finite for some examples")
                acc = sums.setdefault(
                    ll.measure,
                    {"ll": ll, "n": 0, "sum": 0.0, "sum_sq": 0.0, "terms": {}, "evaluations": 0.0},
                )
                acc["n"] += len(values)
                if ll.evaluations is not None:
                    acc["evaluations"] += ll.evaluations * len(values)
                acc["sum"] += float(values.sum())
                acc["sum_sq"] += float((values**2).sum())
                for name, term in ll.terms.items():
                    acc["terms"][name] = acc["terms"].get(name, 0.0) + float(term.detach().double().sum())
    model.train(was_training)
    dims = model.spec.dims
    records = []
    for measure, acc in sums.items():
        n, ll = acc["n"], acc["ll"]
        mean = acc["sum"] / n
        variance = max(acc["sum_sq"] / n - mean**2, 0.0)
        records.append(
            LikelihoodRecord(
                measure=measure,
                kind=ll.kind.value,
                nll_nats=-mean,
                bits_per_dim=float(bits_per_dim(-mean, dims)) if model.spec.is_discrete else None,
                stderr_nats=math.sqrt(variance / max(n - 1, 1)),
                examples=n,
                dims=dims,
                samples=ll.samples,
                evaluations=None if ll.evaluations is None else acc["evaluations"] / n,
                terms_nats={name: total / n for name, total in acc["terms"].items()},
                options=options,
                discrete=model.spec.is_discrete,
            )
        )
    return records


def format_records(records: list[LikelihoodRecord]) -> str:
    """A few lines for the terminal: measure, kind, NLL in nats and bits/dim (discrete data)."""
    if not records:
        return "no likelihood (kind: none)"
    lines = []
    for r in records:
        unit = f"   {r.bits_per_dim:.6g} bits/dim" if r.bits_per_dim is not None else "   (density of continuous data)"
        options = f"   options {json.dumps(r.options)}" if r.options else ""
        lines.append(
            f"{r.measure:<10} {r.kind_label:<18} NLL {r.nll_nats:.6g} nats ± {r.stderr_nats:.2g}"
            f"{unit}   ({r.examples} examples){options}"
        )
    return "\n".join(lines)
