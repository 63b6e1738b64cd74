"""Mixtures of trained models: p(x) = Σ_k w_k p_k(x), an ensemble in probability space.

Averaging *probabilities* (not log-probabilities) keeps a proper distribution: a convex combination of
normalized distributions over the same discrete space is normalized, so a mixture of exact
likelihoods is an exact likelihood, and sampling is ancestral (draw the member k ~ w, then x ~ p_k).
Members of different families err in different places, so the mixture can beat its best member
(never, on the split that fits the weights, do worse than it).

The weights maximize the mixture's log-likelihood of a held-out split (validation; the test split
chooses nothing) by EM (Dempster, Laird & Rubin 1977): with responsibilities
r_ik = w_k p_k(x_i) / Σ_j w_j p_j(x_i), the update w_k ← mean_i r_ik never lowers the objective, which
is concave in w, so it climbs to the maximum.

Kinds: exact members give an exact mixture. A member's lower bound L_k ≤ log p_k keeps the mixture a
lower bound, log Σ_k w_k e^{L_k} ≤ log p(x), by monotonicity; any estimate makes it an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .core import GenerativeModel, LikelihoodKind, likelihood_options
from .data.base import Split
from .errors import UserError
from .evaluate import LikelihoodRecord, PerExampleLikelihood, mean_and_stderr, per_example_likelihoods, record_of

__all__ = ["fit_mixture_weights", "mixture_log_likelihood", "mixture_kind", "Member", "MixtureOfModels"]


def mixture_log_likelihood(log_likelihoods: Tensor, weights: Tensor) -> Tensor:
    """log Σ_k w_k p_k(x_i) for each row i of the members' log-likelihoods (N × K), stably."""
    if log_likelihoods.dim() != 2 or log_likelihoods.shape[1] != len(weights):
        raise ValueError(f"need N × K log-likelihoods for K = {len(weights)} weights, got {tuple(log_likelihoods.shape)}")
    with torch.no_grad():
        log_weights = torch.log(weights.to(log_likelihoods.dtype))  # a zero weight drops its member: log 0 = −inf
    return torch.logsumexp(log_likelihoods + log_weights, dim=1)


def fit_mixture_weights(log_likelihoods: Tensor, iterations: int = 10_000, tolerance: float = 1e-12) -> Tensor:
    """The maximum-likelihood mixture weights of K fixed members on N examples (N × K log-likelihoods),
    by EM from uniform weights; stops when the mean log-likelihood gains less than ``tolerance``."""
    if log_likelihoods.dim() != 2 or log_likelihoods.shape[0] < 1 or log_likelihoods.shape[1] < 1:
        raise ValueError(f"need N × K log-likelihoods with N, K ≥ 1, got {tuple(log_likelihoods.shape)}")
    values = log_likelihoods.to(torch.float64)
    weights = torch.full((values.shape[1],), 1.0 / values.shape[1], dtype=torch.float64)
    previous = -math.inf
    for _ in range(iterations):
        joint = values + torch.log(weights)
        total = torch.logsumexp(joint, dim=1, keepdim=True)
        current = float(total.mean())
        if current - previous < tolerance:
            break
        previous = current
        weights = torch.exp(joint - total).mean(dim=0)  # the mean responsibility of each member
    return weights


def mixture_kind(kinds: list[str]) -> str:
    """The kind of a mixture of members of these kinds (module docstring)."""
    if "estimate" in kinds:
        return "estimate"
    return "bound" if "bound" in kinds else "exact"


@dataclass
class Member:
    """One trained model of a mixture, with the likelihood options that score it and a name."""

    model: GenerativeModel
    name: str
    options: dict[str, Any]


class MixtureOfModels:
    """p(x) = Σ_k w_k p_k(x) over trained models of the same discrete data (same shape and levels).

    ``fit`` chooses the weights on a split; ``evaluate`` scores a split (``member_likelihoods`` gives
    the members' per-example values); ``sample`` draws ancestrally. The models keep their own likelihood options (e.g. ``marginal=true`` for a
    class-conditional member, which makes it a model of x alone)."""

    def __init__(self, members: list[Member], weights: Tensor | None = None):
        if len(members) < 1:
            raise UserError("a mixture needs at least one model")
        first = members[0].model.spec
        if not first.is_discrete:
            raise UserError(f"a mixture of likelihoods needs discrete data; {members[0].name} models continuous '{first.name}'")
        for member in members[1:]:
            spec = member.model.spec
            if (spec.shape, spec.levels) != (first.shape, first.levels):
                raise UserError(
                    f"{member.name} models data of shape {spec.shape} with {spec.levels} levels, {members[0].name} "
                    f"shape {first.shape} with {first.levels}: a mixture needs models of the same data"
                )
        for member in members:
            if member.model.likelihood_kind is LikelihoodKind.NONE:
                raise UserError(f"{member.name} ({member.model.name}) has no likelihood to mix; leave it out")
            # KEY=VALUE text (the CLI, a run's validation options) is parsed by the option's annotation;
            # per_example_likelihoods refuses any other unknown option when the member is scored
            text = {k: v for k, v in member.options.items() if isinstance(v, str)}
            parsed = likelihood_options(member.model, text)
            member.options = {**member.options, **parsed}
        self.members = members
        self.weights = (torch.full((len(members),), 1.0 / len(members), dtype=torch.float64)
                        if weights is None else torch.as_tensor(weights, dtype=torch.float64))
        if self.weights.shape != (len(members),) or (self.weights < 0).any() or abs(float(self.weights.sum()) - 1) > 1e-6:
            raise UserError(f"a mixture of {len(members)} models needs {len(members)} non-negative weights that sum "
                            f"to 1, got {self.weights.tolist()}")

    @property
    def spec(self):
        return self.members[0].model.spec

    def member_likelihoods(self, split: Split, *, batch_size: int = 500, progress: bool = False) -> list[PerExampleLikelihood]:
        """Each member's headline measure, per example, on ``split``."""
        found = []
        for member in self.members:
            per_example = per_example_likelihoods(member.model, split, batch_size=batch_size, progress=progress,
                                                  options=member.options, desc=f"mixture member {member.name}")
            found.append(per_example[0])
        return found

    def fit(self, split: Split, *, batch_size: int = 500, progress: bool = False) -> Tensor:
        """Set the weights to the maximum-likelihood ones on ``split`` (the validation split)."""
        found = self.member_likelihoods(split, batch_size=batch_size, progress=progress)
        self.weights = fit_mixture_weights(torch.stack([f.values for f in found], dim=1))
        return self.weights

    def evaluate(self, split: Split, *, batch_size: int = 500, progress: bool = False) -> tuple[LikelihoodRecord, list[LikelihoodRecord]]:
        """(the mixture's record, each member's record) on ``split``."""
        record, members, _ = self.evaluate_paired(split, batch_size=batch_size, progress=progress)
        return record, members

    def evaluate_paired(self, split: Split, *, batch_size: int = 500,
                        progress: bool = False) -> tuple[LikelihoodRecord, list[LikelihoodRecord], list[tuple[float, float]]]:
        """:meth:`evaluate`, and for each member the mixture's gain over it, paired example by example:
        (mean of log p_mix(x) − log p_k(x), its standard error sd/√n) in nats. Both are scored on the same
        examples, so this error is far below the records' own and says whether the mixture beats a
        member beyond the noise of the test sample."""
        found = self.member_likelihoods(split, batch_size=batch_size, progress=progress)
        values = mixture_log_likelihood(torch.stack([f.values for f in found], dim=1), self.weights)
        kind = mixture_kind([f.kind for f in found])
        mixture = PerExampleLikelihood(measure="mixture", kind=kind, values=values)
        members = [record_of(f, self.spec, m.options) for f, m in zip(found, self.members)]
        gains = []
        for f in found:
            gain, stderr = mean_and_stderr(values - f.values)
            gains.append((gain, stderr if len(values) > 1 else float("nan")))
        return record_of(mixture, self.spec), members, gains

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n ancestral draws: member counts ~ Multinomial(n, w), each member's draws, in random order."""
        if n < 1:
            raise ValueError(f"the number of samples must be ≥ 1, got {n}")
        chosen = torch.multinomial(self.weights.float(), n, replacement=True, generator=generator)
        samples = None
        for k, member in enumerate(self.members):
            where = chosen == k
            if where.any():
                part = member.model.sample(int(where.sum()), generator=generator).cpu()
                if samples is None:
                    samples = torch.empty((n, *part.shape[1:]), dtype=part.dtype)
                samples[where] = part
        return samples
