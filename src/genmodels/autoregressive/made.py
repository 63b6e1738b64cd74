"""``made``: the masked autoencoder for distribution estimation (Germain et al. 2015).

An MLP whose weights are masked (eqs. 12–13) so that output unit i only sees inputs before i in an
ordering σ. With ``num_masks`` > 1 the network is trained order-agnostically (one ordering and
connectivity drawn per training step, sec. 4 "connectivity-agnostic training"), and at test time it is
the ensemble of its M orderings (sec. 4, "at test time"):

    p(x) = (1/M) Σ_m p_m(x),   log p(x) = logsumexp_m log p_m(x) − log M,

the log of the mean of the probabilities, not the mean of the log-probabilities. A uniform mixture of
exact models is itself an exact model, so the figure is ``exact``; sampling first draws m uniformly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accepts import FLATTENED
from ..baselines.independent import smoothed_log_marginals
from ..core import Batch, Loss, register_model
from ..data.base import DataSpec
from ..errors import UserError
from ..nn.masked import MaskedLinear, made_degrees, made_masks
from ..nn.outputs import DiscretizedLogisticMixture
from .base import AutoregressiveModel, HybridConfig, l2_penalty

__all__ = ["MADE", "MADEConfig", "ONE_HOT_MAX_LEVELS", "scaled_values"]

#: ``input_encoding="auto"`` feeds one-hot codes up to this many levels, the scaled value above it.
ONE_HOT_MAX_LEVELS = 32


def scaled_values(features: Tensor, encoding: str, levels: int) -> Tensor:
    """Each dimension's value scaled to [−1, 1], (B, D), from (B, D, F) features (linear in one-hot codes)."""
    if encoding == "onehot":
        return features @ torch.linspace(-1.0, 1.0, levels, dtype=features.dtype, device=features.device)
    return features[..., 0]


@dataclass
class MADEConfig(HybridConfig):
    """Args:
    hidden: widths of the hidden layers, e.g. 512,512 (one int: one layer).
    num_masks: M, the orderings/connectivities trained in turn and averaged at test time.
    order: "natural" (raster order for every mask; only the connectivity varies) or "random"
        (mask 0 in raster order, the others a random permutation each).
    input_encoding: "onehot" (K inputs per dimension), "scalar" (the value scaled to [−1, 1]) or
        "auto" (one-hot up to 32 levels).
    mask_seed: seed of the orderings and hidden degrees (stored with the weights).
    direct: add masked direct connections from the inputs (each dimension's value scaled to
        [−1, 1]) to the outputs, a linear autoregressive term (fvsbn's) beside the MLP.
    marginal_init: start the output biases at the training marginals (the ``independent`` fit),
        with softmax outputs.
    output: "softmax" (K logits per dimension) or "logistic" (a discretized logistic mixture,
        Salimans et al. 2017: 3·mixtures parameters per dimension instead of K, so that a K = 256 image
        does not need a D·K-wide output layer: 209 M weights for Fashion-MNIST at 1 024 hidden units).
    mixtures: logistic components per dimension (output="logistic").
    l2: λ of a Gaussian prior on the weights (not the biases): the training loss adds (λ/2)·‖W‖²
        to the mean NLL, as fvsbn's ``l2``. The reported likelihoods are the NLL alone.
    dropout: probability of zeroing each hidden unit during training (inverted dropout, off in
        evaluation and sampling, so the likelihood stays exact).
    conditional: model p(x | y) with a label embedding (needs labelled data).
    """

    hidden: tuple[int, ...] = (256, 256)
    num_masks: int = 4
    order: str = "random"
    input_encoding: str = "auto"
    mask_seed: int = 0
    direct: bool = True
    marginal_init: bool = True
    l2: float = 0.0
    dropout: float = 0.0
    output: str = "softmax"
    mixtures: int = 5
    conditional: bool = False

    def __post_init__(self) -> None:
        self.hidden = (self.hidden,) if isinstance(self.hidden, int) else tuple(self.hidden)
        if self.output not in ("softmax", "logistic"):
            raise ValueError(f"output must be 'softmax' or 'logistic', got {self.output!r}")
        if self.mixtures < 1:
            raise ValueError(f"mixtures must be ≥ 1, got {self.mixtures}")
        if not self.l2 >= 0:
            raise ValueError(f"l2 must be ≥ 0, got {self.l2}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must list at least one width ≥ 1, got {self.hidden}")
        if self.num_masks < 1:
            raise ValueError(f"num_masks must be ≥ 1, got {self.num_masks}")
        if self.order not in ("natural", "random"):
            raise ValueError(f"order must be 'natural' or 'random', got {self.order!r}")
        if self.input_encoding not in ("auto", "onehot", "scalar"):
            raise ValueError(f"input_encoding must be 'auto', 'onehot' or 'scalar', got {self.input_encoding!r}")


@register_model("made")
class MADE(AutoregressiveModel):
    """A masked MLP over the flattened example; an order-agnostic ensemble of ``num_masks`` orderings."""

    Config = MADEConfig
    accepts = FLATTENED

    def __init__(self, config: MADEConfig, spec: DataSpec):
        if config.output == "logistic" and spec.levels < 2:
            raise UserError("output='logistic' needs at least 2 levels")
        head = DiscretizedLogisticMixture(spec.levels, config.mixtures) if config.output == "logistic" else None
        super().__init__(config, spec, head)
        dims, levels = spec.dims, spec.levels
        encoding = config.input_encoding
        if encoding == "auto":
            encoding = "onehot" if levels <= ONE_HOT_MAX_LEVELS else "scalar"
        self.encoding = encoding
        self.features = levels if encoding == "onehot" else 1
        out = self.head.num_params
        sizes = [dims * self.features, *config.hidden]
        self.layers = nn.ModuleList(MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.output = MaskedLinear(sizes[-1], dims * out)
        # Label embedding into the first hidden layer: the label is "x_0", seen by every unit.
        self.label = nn.Embedding(self.num_classes, config.hidden[0]) if self.conditional else None

        # Direct connections (Germain et al. 2015, sec. 4: "direct input-output connections"),
        # zero at the start so training begins from the MLP (and the marginals).
        self.direct = MaskedLinear(dims, dims * out, bias=False) if config.direct else None
        if self.direct is not None:
            nn.init.zeros_(self.direct.weight)
        generator = torch.Generator().manual_seed(config.mask_seed)
        orders, masks, direct_masks = [], [[] for _ in range(len(config.hidden) + 1)], []
        for m in range(config.num_masks):
            order = torch.arange(dims)
            if config.order == "random" and m > 0:
                order = torch.randperm(dims, generator=generator)
            orders.append(order)
            degrees = made_degrees(dims, config.hidden, order, generator)
            for layer, mask in enumerate(made_masks(degrees, self.features, out)):
                masks[layer].append(mask)
            # Output unit of dimension i sees input j iff j comes strictly before i.
            direct_masks.append((degrees[0].repeat_interleave(out)[:, None] > degrees[0][None, :]).float())
        self.register_buffer("orders", torch.stack(orders))  # (M, D)
        if self.direct is not None:
            self.register_buffer("direct_mask", torch.stack(direct_masks))  # (M, D·P, D)
        for layer, stacked in enumerate(masks):
            self.register_buffer(f"mask{layer}", torch.stack(stacked))  # (M, out, in)

    @property
    def num_orderings(self) -> int:
        return self.config.num_masks

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        if self.config.marginal_init and self.config.output == "softmax":
            # Output unit (i, k) gets log π_ik: every ordering starts at the `independent` fit.
            self.output.bias.copy_(smoothed_log_marginals(batches, self.spec, 0.5, self.output.bias.device).reshape(-1))

    def ordering(self, index: int = 0) -> Tensor:
        return self.orders[index]

    def input_features(self, x: Tensor) -> Tensor:
        flat = x.reshape(len(x), -1)  # (B, D)
        if self.encoding == "onehot":
            return F.one_hot(flat, self.spec.levels).to(self.output.weight.dtype)  # (B, D, K)
        return (2.0 * flat.to(self.output.weight.dtype) / (self.spec.levels - 1) - 1.0).unsqueeze(-1)  # (B, D, 1)

    def params_from_features(self, features: Tensor, y: Tensor | None = None, ordering: int = 0) -> Tensor:
        h = features.reshape(len(features), -1)  # (B, D·F), dimension-major
        for index, layer in enumerate(self.layers):
            h = layer(h, getattr(self, f"mask{index}")[ordering])
            if index == 0 and self.label is not None and y is not None:
                h = h + self.label(y)
            h = F.dropout(F.relu(h), self.config.dropout, self.training)
        out = self.output(h, getattr(self, f"mask{len(self.layers)}")[ordering])
        if self.direct is not None:
            values = scaled_values(features, self.encoding, self.spec.levels)  # (B, D) in [−1, 1]
            out = out + self.direct(values, self.direct_mask[ordering])
        return out.reshape(len(features), self.spec.dims, -1)  # (B, D, P)

    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The ensemble: log (1/M) Σ_m p_m(x | y), exact."""
        per_mask = torch.stack([self.log_prob_under(x, y, m) for m in range(self.num_orderings)])  # (M, B)
        return torch.logsumexp(per_mask, dim=0) - math.log(self.num_orderings)

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        """Order-agnostic training: the NLL under one ordering drawn per step (the global RNG);
        outside training, the ensemble's NLL."""
        if self.training and self.num_orderings > 1:
            m = int(torch.randint(self.num_orderings, ()))
            nll = -self.log_prob_under(batch.x, batch.y, m)
        else:
            nll = -self.log_prob(batch.x, batch.y)
        return self.add_label_term(Loss(nll.mean() + l2_penalty(self.config.l2, self.weights()), {"nll": nll}), batch)

    def weights(self) -> list[Tensor]:
        """The weights under the ``l2`` prior: every layer's and the label embedding's, not the biases."""
        modules = [*self.layers, self.output, self.direct, self.label]
        return [m.weight for m in modules if m is not None]

    @torch.no_grad()
    def sample(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Draw a mask m uniformly for each sample, then sample ancestrally in m's ordering;
        ``temperature`` divides each conditional's log-probabilities."""
        self.check_temperature(temperature)
        y = self.labels(y, n, generator, draw=True)
        which = torch.randint(self.num_orderings, (n,), generator=generator).to(self.device)
        x = torch.zeros(n, *self.spec.shape, dtype=torch.int64, device=self.device)
        for m in range(self.num_orderings):
            rows = (which == m).nonzero().squeeze(1)
            if len(rows):
                x[rows] = self._sample_ordering(len(rows), None if y is None else y[rows], m, generator, temperature)
        return x
