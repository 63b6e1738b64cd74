"""Evaluation: a model's likelihood measures over a split, as records that say what they are.

Every figure is the mean per-example negative log-likelihood of the discrete data in nats, its
bits/dim (via :mod:`genmodels.units`), its kind (exact / bound / estimate) and the samples or network
evaluations behind it. A model with no likelihood (kind ``none``) yields no record, so nothing
pretends to a bits/dim it does not have.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from .core import Batch, GenerativeModel, LikelihoodKind, keyword_options
from .data.base import Split
from .errors import UserError
from .progress import Phase
from .units import bits_per_dim

__all__ = [
    "LikelihoodRecord", "PerExampleLikelihood", "FigureRecord", "evaluate_likelihood", "per_example_likelihoods",
    "record_of", "evaluate_figures", "format_records", "format_figures", "EVAL_SEED", "PER_EXAMPLE_FILE", "save_per_example",
    "mean_and_stderr", "LONG_PASSES",
]

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
    #: whether the figure is known to be biased (a few-step ODE): fit to compare checkpoints of one
    #: run, never with exact or converged figures; ``note`` says why
    biased: bool = False
    note: str | None = None

    @property
    def kind_label(self) -> str:
        """The kind with what stands behind it, e.g. ``exact``, ``bound``, ``estimate (k=64)``,
        ``estimate (NFE=16, biased)``."""
        parts = []
        if self.samples is not None:
            parts.append(f"k={self.samples}")
        if self.evaluations is not None:
            parts.append(f"NFE={self.evaluations:g}")
        if self.biased:
            parts.append("biased")
        return f"{self.kind} ({', '.join(parts)})" if parts else self.kind

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> LikelihoodRecord:
        return cls(**obj)


def _process_group() -> tuple[int, int]:
    """(rank, number of processes) of the torch.distributed group this process is in; (0, 1) alone."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _my_batches(num_batches: int, rank: int, world: int) -> range:
    """A contiguous block of batch indices for process ``rank`` (as Accelerate's
    ``split_between_processes``: the first ``num_batches mod world`` processes take one more)."""
    per, extra = divmod(num_batches, world)
    start = rank * per + min(rank, extra)
    return range(start, start + per + (rank < extra))


def _seeded_batches(
    model: GenerativeModel, data: Split | Iterable[Batch], batch_size: int, device: torch.device,
    seed: int, rank: int, world: int, progress: bool | str, phase: Phase,
) -> Iterator[Batch]:
    """This process's batches of ``data``, checked against the model's spec, on ``device``, each
    example carrying a seed that depends only on (seed, its position in ``data``); ``phase`` counts
    the examples done, and ``progress`` True draws a bar of batches (on any stream)."""
    offset = 0
    if isinstance(data, Split):
        num_batches = math.ceil(len(data) / batch_size)
        mine = _my_batches(num_batches, rank, world)
        offset = mine.start * batch_size
        indices = list(range(offset, min(mine.stop * batch_size, len(data))))
        shard = data if world == 1 else torch.utils.data.Subset(data, indices)
        loader: Iterable[Any] = DataLoader(shard, batch_size=batch_size, shuffle=False)
        phase.total = len(indices)
    else:
        loader = data
    for item in tqdm(loader, desc="evaluate", unit="batch", disable=progress is not True or rank != 0, leave=False):
        batch = Batch.of(item).to(device)
        model.spec.check(batch.x)
        batch.seeds = seed * 1_000_000_007 + offset + torch.arange(len(batch), dtype=torch.int64)
        offset += len(batch)
        yield batch
        phase.update(len(batch))


#: ``progress`` of the evaluation functions for long passes: a bar on a terminal; elsewhere a line
#: every few seconds once a pass lasts that long, and a line of cost first for a pass over a minute
#: (:class:`~genmodels.progress.Phase`). Training and the CLI use it; ``progress=True`` draws a bar
#: of batches on any stream.
LONG_PASSES = "long"


def _phase(model: GenerativeModel, what: str, options: dict[str, Any], progress: bool | str, rank: int,
           desc: str | None, cheaper: str | None) -> Phase:
    """The progress of one evaluation pass under :data:`LONG_PASSES`, shown by the first process only."""
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    label = desc or f"{what} {model.name}"
    return Phase(f"{label} ({shown})" if shown else label, unit="examples", enabled=progress == LONG_PASSES and rank == 0,
                 cheaper=cheaper)


@dataclass
class PerExampleLikelihood:
    """One measure's per-example log-likelihoods (nats, float64, on the CPU) in the split's order:
    what :func:`evaluate_likelihood` summarizes, and what a mixture of models combines."""

    measure: str
    kind: str
    values: torch.Tensor
    samples: int | None = None
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    #: network evaluations per example, or None when the model does not count them
    evaluations: torch.Tensor | None = None


@torch.no_grad()
def per_example_likelihoods(
    model: GenerativeModel,
    data: Split | Iterable[Batch],
    *,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool | str = False,
    seed: int = EVAL_SEED,
    options: dict[str, Any] | None = None,
    desc: str | None = None,
    cheaper: str | None = None,
) -> list[PerExampleLikelihood]:
    """Every likelihood measure of ``model`` over ``data``, per example, headline first; [] for kind
    ``none``. The arguments are :func:`evaluate_likelihood`'s, and so are the guarantees: every
    random draw depends only on (seed, the example's position), and several processes sharing a
    :class:`Split` each compute a block and gather the whole split, in order, to every process.
    ``progress`` shows the pass (:class:`~genmodels.progress.Phase`: a bar on a terminal, plain lines
    otherwise, a cost line first when it is long), named ``desc``; ``cheaper`` is the option the cost
    line offers."""
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
    rank, world = _process_group() if isinstance(data, Split) else (0, 1)
    was_training = model.training
    model.eval()
    # Per measure, per example: the value, its terms and the network evaluations (float64, CPU).
    found: dict[str, dict[str, Any]] = {}
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), _phase(model, "evaluate", options, progress, rank, desc, cheaper) as phase:
        torch.manual_seed(seed)
        for batch in _seeded_batches(model, data, batch_size, device, seed, rank, world, progress, phase):
            for ll in model.log_likelihoods(batch, **options):
                values = ll.values.detach().to("cpu", torch.float64)
                if not torch.isfinite(values).all():
                    raise FloatingPointError(f"{ll.measure} is not finite for some examples")
                acc = found.setdefault(
                    ll.measure,
                    {"kind": ll.kind.value, "samples": ll.samples, "values": [], "terms": {}, "evaluations": None},
                )
                acc["values"].append(values)
                if ll.evaluations is not None:
                    acc["evaluations"] = (acc["evaluations"] or []) + [torch.full((len(values),), float(ll.evaluations), dtype=torch.float64)]
                for name, term in ll.terms.items():
                    acc["terms"].setdefault(name, []).append(term.detach().to("cpu", torch.float64))
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        parts = gather_object([found])  # one dict per process, in rank order = the split's order
        found = {}
        for part in parts:
            for measure, acc in part.items():
                into = found.setdefault(measure, {**acc, "values": [], "terms": {}, "evaluations": None})
                into["values"] += acc["values"]
                if acc["evaluations"] is not None:
                    into["evaluations"] = (into["evaluations"] or []) + acc["evaluations"]
                for name, pieces in acc["terms"].items():
                    into["terms"].setdefault(name, []).extend(pieces)
    return [
        PerExampleLikelihood(
            measure=measure,
            kind=acc["kind"],
            values=torch.cat(acc["values"]),
            samples=acc["samples"],
            terms={name: torch.cat(pieces) for name, pieces in acc["terms"].items()},
            evaluations=None if acc["evaluations"] is None else torch.cat(acc["evaluations"]),
        )
        for measure, acc in found.items()
    ]


#: a run's per-example test log-likelihoods (nats, float64), one tensor per measure
PER_EXAMPLE_FILE = "test_log_likelihoods.safetensors"


def save_per_example(per_example: list[PerExampleLikelihood], path: Path) -> Path:
    """One float64 tensor (N,) of log-likelihoods per measure, written atomically (safetensors)."""
    from safetensors.torch import save_file

    partial = path.with_name(path.name + ".partial")
    save_file({found.measure: found.values.contiguous() for found in per_example}, str(partial))
    partial.replace(path)
    return path


def evaluate_likelihood(
    model: GenerativeModel,
    data: Split | Iterable[Batch],
    *,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool | str = False,
    seed: int = EVAL_SEED,
    options: dict[str, Any] | None = None,
    desc: str | None = None,
    cheaper: str | None = None,
) -> list[LikelihoodRecord]:
    """Every likelihood measure of ``model`` over ``data``, headline first; [] for kind ``none``.

    ``options`` are keyword options of the model's ``log_likelihoods`` (IWAE's k, dequantization
    draws); every record keeps them. Every random draw a model makes through ``batch.rand``/
    ``batch.randn`` depends only on (seed, the example's position in ``data``), per-example values
    are kept in float64 and summed once, in the split's order, so the same checkpoint gives the same
    figures at any evaluation batch size (up to a model's own float32 batch effects).

    Several processes (torchrun / accelerate launch; torch.distributed initialized) share a
    :class:`Split`: each takes a contiguous block of its batches (the same batches one process
    would make, with the same per-example seeds), and the per-example values are gathered to
    every process, so the records are identical to one process's. Every process must call this.
    """
    options = dict(options or {})
    per_example = per_example_likelihoods(
        model, data, batch_size=batch_size, device=device, progress=progress, seed=seed, options=options,
        desc=desc, cheaper=cheaper,
    )
    return [record_of(found, model.spec, options, bias=model.estimate_bias(found.measure, options)) for found in per_example]


def record_of(
    found: PerExampleLikelihood, spec, options: dict[str, Any] | None = None, *, bias: str | None = None
) -> LikelihoodRecord:
    """The summary record (mean NLL, its standard error, bits/dim, mean terms) of per-example values;
    ``bias`` (the model's :meth:`~genmodels.core.GenerativeModel.estimate_bias`) marks it biased."""
    values = found.values
    n = len(values)
    mean, stderr = mean_and_stderr(values)
    evaluations = None if found.evaluations is None else float(found.evaluations.sum()) / n
    return LikelihoodRecord(
        measure=found.measure,
        kind=found.kind,
        nll_nats=-mean,
        bits_per_dim=float(bits_per_dim(-mean, spec.dims)) if spec.is_discrete else None,
        stderr_nats=stderr,
        examples=n,
        dims=spec.dims,
        samples=found.samples,
        evaluations=evaluations,
        terms_nats={name: float(term.sum()) / n for name, term in found.terms.items()},
        options=dict(options or {}),
        discrete=spec.is_discrete,
        biased=bias is not None,
        note=bias,
    )


@dataclass
class FigureRecord:
    """A per-example figure that is not a likelihood, averaged over a split (see
    :meth:`GenerativeModel.evaluation_figures`): e.g. ``mse``, ``psnr``, ``bits_per_code``."""

    name: str
    mean: float
    stderr: float
    examples: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FigureRecord:
        return cls(**obj)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """The mean of per-example values and its standard error, s/√n (s with n − 1)."""
    n = len(values)
    mean = float(values.sum()) / n
    variance = max(float((values**2).sum()) / n - mean**2, 0.0)
    return mean, math.sqrt(variance / max(n - 1, 1))


@torch.no_grad()
def evaluate_figures(
    model: GenerativeModel,
    data: Split | Iterable[Batch],
    *,
    batch_size: int = 500,
    device: torch.device | str | None = None,
    progress: bool | str = False,
    seed: int = EVAL_SEED,
    desc: str | None = None,
) -> list[FigureRecord]:
    """The model's :meth:`~GenerativeModel.evaluation_figures` averaged over ``data``, with standard
    errors; [] for a model that reports none. Batching, seeds and several processes as in
    :func:`evaluate_likelihood`, so the figures do not depend on the batch size or the processes."""
    if type(model).evaluation_figures is GenerativeModel.evaluation_figures:
        return []
    device = torch.device(device) if device is not None else model.device
    rank, world = _process_group() if isinstance(data, Split) else (0, 1)
    was_training = model.training
    model.eval()
    found: dict[str, list[torch.Tensor]] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            _phase(model, "figures", {}, progress, rank, desc, None) as phase:
        torch.manual_seed(seed)
        for batch in _seeded_batches(model, data, batch_size, device, seed, rank, world, progress, phase):
            for name, values in model.evaluation_figures(batch).items():
                if values.shape != (len(batch),):
                    raise ValueError(f"{model.name}.evaluation_figures()['{name}'] has shape {tuple(values.shape)}, not ({len(batch)},)")
                found.setdefault(name, []).append(values.detach().to("cpu", torch.float64))
    model.train(was_training)
    if world > 1:
        from accelerate.utils import gather_object

        parts = gather_object([found])  # in rank order = the split's order
        found = {}
        for part in parts:
            for name, pieces in part.items():
                found.setdefault(name, []).extend(pieces)
    records = []
    for name, pieces in found.items():
        values = torch.cat(pieces)
        mean, stderr = mean_and_stderr(values)
        records.append(FigureRecord(name, mean, stderr, len(values)))
    return records


def format_figures(figures: list[FigureRecord]) -> str:
    """One line per figure: name, mean ± standard error, examples."""
    return "\n".join(f"{f.name:<18} {f.mean:.6g} ± {f.stderr:.2g}   ({f.examples} examples)" for f in figures)


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
