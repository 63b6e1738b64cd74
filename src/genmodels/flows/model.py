"""What every flow model shares: the likelihood on continuous and on discrete data, sampling, and
the latent map. A model file (``nice``, ``realnvp``, ``glow``, ``nsf``, ``maf``) only builds its
transform (and its base density).

On continuous data (``spec.levels is None``: the toy 2-D sets, float tables) the flow's density is
the model, exact by the change of variables (Dinh et al. 2017, eq. 3):

    log p(x) = log p_Z(f(h)) + log|det ∂f/∂h| − Σ_d log σ_d,   h = (x − μ) / σ,

where (μ, σ) is a fixed standardization fitted by ``initialize`` on the training split.

On discrete data x ∈ {0..K−1}^D the flow is a density on y = (x + u)/K ∈ [0,1)^D after a
preprocessing h = t(y) (logit or scaling, ``units``), and the likelihood is the dequantization bound
(Theis et al. 2016; Flow++ eq. 3-4)

    log P(x) ≥ E_u[ log p_Z(f(t(y))) + log|det ∂f/∂h| + log|det ∂t/∂y| − log q(u|x) ] − D ln K,

with q = U[0,1)^D (log q = 0) or a learned conditional flow (``dequantization="variational"``).
Every term is reported (``LogLikelihood.terms``) and they sum to the value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .. import units
from ..core import Batch, GenerativeModel, LikelihoodKind, LogLikelihood, Loss, ModelConfig
from ..data.base import DataSpec
from ..errors import UserError
from .dequantization import VariationalDequantizer
from .distributions import BaseDensity, NormalizingFlow, StandardNormal
from .transforms import ActNorm, Transform

__all__ = ["FlowConfig", "FlowModel"]

@dataclass
class FlowConfig(ModelConfig):
    """The options every flow model shares (each model's config documents only its own; the
    help reads the Args of every class in the config's MRO).

    Args:
        dequantization: on discrete data, "uniform" (u ~ U[0,1)^D) or "variational" (a conditional flow
            q(u|x), Flow++); the reported kind is a bound either way, with its number of draws.
        preprocess: on discrete data, the map of y ∈ [0,1)^D before the flow: "logit" (RealNVP's
            logit(α + (1 − 2α) y)), "scale" (2y − 1) or "none"; its log-Jacobian is part of the likelihood.
        alpha: α of the logit preprocessing.
        standardize: on continuous data, standardize each dimension with the training split's mean and
            standard deviation (a fixed affine map whose log-Jacobian is part of the exact likelihood).
        dequantizer_hidden: hidden widths of the variational dequantizer's coupling networks.
        dequantizer_layers: the number of affine couplings of the variational dequantizer.
        dropout: dropout probability on the hidden activations of the flow's coupling/autoregressive
            networks, in training mode only (a regularizer: every dropout mask is still an invertible
            flow; evaluation and sampling, in eval mode, use the whole network). 0: none.
    """

    dequantization: str = "uniform"
    preprocess: str = "logit"
    alpha: float = 0.05
    standardize: bool = True
    dequantizer_hidden: tuple[int, ...] = (64,)
    dequantizer_layers: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dequantization not in ("uniform", "variational"):
            raise ValueError(f"dequantization must be 'uniform' or 'variational', got '{self.dequantization}'")
        if self.preprocess not in ("logit", "scale", "none"):
            raise ValueError(f"preprocess must be 'logit', 'scale' or 'none', got '{self.preprocess}'")
        if not 0 <= self.alpha < 0.5:
            raise ValueError(f"alpha must be in [0, 0.5), got {self.alpha}")
        if self.dequantizer_layers < 1 or any(h < 1 for h in self.dequantizer_hidden):
            raise ValueError("dequantizer_layers and every dequantizer_hidden width must be ≥ 1")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")



class FlowModel(GenerativeModel):
    """A normalizing flow: exact on continuous data, a dequantization bound on discrete data.

    Subclasses implement :meth:`build_transform` (data → latent, ending in flat latents (B, D)) and
    may override :meth:`build_base`. Besides the interface, ``encode(x)`` and ``decode(z)`` give the
    flow's map and its inverse (``forward`` is the trainer's: it returns the loss).
    """

    Config: ClassVar[type[ModelConfig]] = FlowConfig
    likelihood_kind = LikelihoodKind.BOUND  # on discrete data; exact on continuous data (kind_for)
    handles_continuous = True
    #: whether the transform takes images (C, H, W) as they are; otherwise flattened vectors (D,)
    image_transform: ClassVar[bool] = False

    @classmethod
    def kind_for(cls, spec: DataSpec) -> LikelihoodKind:
        return LikelihoodKind.EXACT if spec.levels is None else LikelihoodKind.BOUND

    def __init__(self, config: FlowConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.event_shape: tuple[int, ...] = tuple(spec.shape) if (self.image_transform and spec.is_image) else (spec.dims,)
        self.flow = NormalizingFlow(self.build_transform(self.event_shape), self.build_base(spec.dims))
        if not spec.is_discrete:
            # h = (x − loc) / scale, fitted by initialize (identity until then).
            self.register_buffer("loc", torch.zeros(spec.shape))
            self.register_buffer("scale", torch.ones(spec.shape))
        self.dequantizer = (
            VariationalDequantizer(spec.dims, spec.levels, config.dequantizer_hidden, config.dequantizer_layers)
            if spec.is_discrete and config.dequantization == "variational"
            else None
        )

    # --- to be provided by each model ---------------------------------------------------------------
    def build_transform(self, event_shape: tuple[int, ...]) -> Transform:
        raise NotImplementedError

    def build_base(self, features: int) -> BaseDensity:
        return StandardNormal(features)

    # --- helpers ------------------------------------------------------------------------------------
    @property
    def _dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.float32

    def _event(self, h: Tensor) -> Tensor:
        return h.reshape(len(h), *self.event_shape)

    def _preprocess(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """h = t(y) and log|det ∂t/∂y| per example."""
        if self.config.preprocess == "logit":
            return units.logit_transform(y, self.config.alpha)
        if self.config.preprocess == "scale":
            return units.scale_to_symmetric(y)
        return y, y.new_zeros(len(y))

    def _postprocess(self, h: Tensor) -> Tensor:
        """t⁻¹: the flow's input space → y ∈ [0, 1]."""
        if self.config.preprocess == "logit":
            return units.inverse_logit_transform(h, self.config.alpha)
        if self.config.preprocess == "scale":
            return (h + 1.0) / 2.0
        return h

    def _continuous_terms(self, x: Tensor) -> dict[str, Tensor]:
        h = (x.to(self._dtype) - self.loc) / self.scale
        log_pz, log_det = self.flow.log_prob_terms(self._event(h))
        standardize = -torch.log(self.scale).sum().expand(len(x))
        return {"log_pz": log_pz, "log_det": log_det, "standardize": standardize}

    def _discrete_terms(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """One draw of the dequantization bound (B,), and its named terms (they sum to the bound)."""
        x, spec, dtype = batch.x, self.spec, self._dtype
        terms: dict[str, Tensor] = {}
        if self.dequantizer is None:
            u = batch.rand(*spec.shape, dtype=dtype)
            log_q = None
        else:
            eps = batch.randn(spec.dims, dtype=dtype)
            u, log_q = self.dequantizer(eps, x)
            u = u.reshape(x.shape)
        y = units.dequantize_with_noise(x, u, spec.levels)
        h, preprocess = self._preprocess(y)
        log_pz, log_det = self.flow.log_prob_terms(self._event(h))
        log_density_y = log_pz + log_det + preprocess
        if log_q is None:
            value = units.discrete_bound_from_density(log_density_y, spec.dims, spec.levels)
        else:
            value = units.variational_dequantization_bound(log_density_y, log_q, spec.dims, spec.levels)
            terms["neg_log_q"] = -log_q
        jacobian = units.dequantization_log_jacobian(spec.dims, spec.levels)
        terms.update(log_pz=log_pz, log_det=log_det, preprocess=preprocess, dequantization=torch.full_like(value, jacobian))
        return value, terms

    # --- the interface ------------------------------------------------------------------------------
    def log_prob(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The exact log-density (nats) of continuous data x (B, *shape). Refused on discrete data,
        where the flow gives a bound (use ``log_likelihoods``)."""
        return sum(self._continuous_terms(x).values())

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        if not self.spec.is_discrete:
            nll = -self.log_prob(batch.x)
        else:
            nll = -self._discrete_terms(batch)[0]  # one dequantization draw per example
        return Loss(nll.mean(), {"nll": nll})

    def log_likelihoods(self, batch: Batch, *, draws: int = 1) -> list[LogLikelihood]:
        """Exact log p(x) on continuous data; on discrete data the dequantization bound averaged over
        ``draws`` draws of u per example (more draws: a less noisy estimate of the same bound)."""
        if not self.spec.is_discrete:
            terms = self._continuous_terms(batch.x)
            return [LogLikelihood(sum(terms.values()), LikelihoodKind.EXACT, "log_prob", terms=terms)]
        if draws < 1:
            raise UserError(f"draws must be ≥ 1, got {draws}")
        total_value: Tensor | float = 0.0
        total: dict[str, Tensor] = {}
        for _ in range(draws):
            value, terms = self._discrete_terms(batch)
            total_value = total_value + value
            for key, term in terms.items():
                total[key] = total[key] + term if key in total else term
        value = total_value / draws
        terms = {key: term / draws for key, term in total.items()}
        measure = f"{self.config.dequantization}_dequantization"
        return [LogLikelihood(value, LikelihoodKind.BOUND, measure, samples=draws, terms=terms)]

    @torch.no_grad()
    def sample(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """n draws x = f⁻¹(z), z ~ p_Z at ``temperature`` T (z scaled by T; Glow sec. 5.2): int64 levels
        on discrete data (the cell that contains y), floats on continuous data."""
        self.check_temperature(temperature)
        z = self.flow.base.sample(n, generator=generator, temperature=temperature).to(self.device, self._dtype)
        return self.decode(z)

    def encode(self, x: Tensor, *, noise: Tensor | None = None) -> Tensor:
        """The latent z = f(h) (B, D) of data x. On discrete data h = t((x + u)/K) with u = ``noise``
        (default 1/2, the cell's centre)."""
        if not self.spec.is_discrete:
            h = (x.to(self._dtype) - self.loc) / self.scale
        else:
            u = torch.full(x.shape, 0.5, dtype=self._dtype, device=x.device) if noise is None else noise
            h, _ = self._preprocess(units.dequantize_with_noise(x, u, self.spec.levels))
        return self.flow.transform(self._event(h)).flatten(1)

    def decode(self, z: Tensor) -> Tensor:
        """Data x = f⁻¹(z) for latents z (B, D): levels on discrete data, floats on continuous data."""
        h = self.flow.transform.inverse(z).reshape(len(z), *self.spec.shape)
        if not self.spec.is_discrete:
            return h * self.scale + self.loc
        return units.quantize(self._postprocess(h), self.spec.levels)

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        """Standardization on continuous data (the whole split), then actnorm's data-dependent
        initialization on the first batch (Glow sec. 3.1)."""
        first: Batch | None = None
        count, total, squares = 0, 0.0, 0.0
        for item in batches:
            batch = Batch.of(item)
            if first is None:
                first = batch
            if self.spec.is_discrete or not self.config.standardize:
                break
            x = batch.x.to(torch.float64).to(self.loc.device)
            count += len(x)
            total = total + x.sum(dim=0)
            squares = squares + (x**2).sum(dim=0)
        if first is None:
            return
        if count > 1:
            mean = total / count
            std = (squares / count - mean**2).clamp_min(0).sqrt()
            self.loc.copy_(mean)
            self.scale.copy_(std.clamp_min(1e-6))
        actnorms = [m for m in self.flow.modules() if isinstance(m, ActNorm)]
        if not actnorms:
            return
        x = first.x.to(self.device)
        if self.spec.is_discrete:
            u = torch.rand(x.shape, dtype=self._dtype, device=x.device)
            h, _ = self._preprocess(units.dequantize_with_noise(x, u, self.spec.levels))
        else:
            h = (x.to(self._dtype) - self.loc) / self.scale
        for m in actnorms:
            m.request_init()
        self.flow.transform.call_and_ladj(self._event(h))
