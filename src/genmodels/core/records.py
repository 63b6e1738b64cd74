"""The records every model speaks in: what a likelihood figure is (:class:`LikelihoodKind`), one
per-example log-likelihood (:class:`LogLikelihood`), a training loss with its named terms
(:class:`Loss`), and a batch with its per-example random streams (:class:`Batch`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import torch
from torch import Tensor

__all__ = ["LikelihoodKind", "LogLikelihood", "Loss", "Batch"]


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
    the global RNG, each process of a data-parallel run its own stream (which resume restores;
    see :mod:`genmodels.training.state`); in evaluation the evaluator sets ``seeds``, one per
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
