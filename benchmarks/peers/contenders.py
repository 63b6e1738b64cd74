"""Contenders shared by the peer scripts: genmodels' models and the peers' densities, wrapped once.

* :func:`genmodels_contender`: any genmodels model by name and config (the one wrapper for all scripts);
* :class:`Standardized`: a peer's density on continuous data behind the same fixed standardization
  genmodels' flows apply (``standardize=True``), its log-Jacobian included;
* :class:`DequantizedPeer`: a peer's density on y ∈ [0,1)^D (after the same preprocessing as
  genmodels' flows) turned into genmodels' uniform-dequantization bound (``genmodels.units``).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import torch
from torch import Tensor, nn

import genmodels
from genmodels import units
from genmodels.core import Batch, create_model
from harness import Contender

__all__ = ["genmodels_contender", "describe_genmodels", "parse_model_text", "Standardized", "DequantizedPeer",
           "peer_contender"]


def parse_model_text(text: str) -> tuple[str, dict]:
    """``name`` or ``name:JSON`` → (name, config overrides)."""
    name, _, config_text = text.partition(":")
    return name, (json.loads(config_text) if config_text else {})


def describe_genmodels(name: str, c, image: bool = True) -> str:
    """A one-line architecture of a genmodels flow's config, for the tables (``image``: the data are
    images, so ``realnvp`` is the multi-scale convolutional one; else its MLP couplings)."""
    if name == "nsf":
        arch = (f"{c.transforms} × [{'LU linear + ' if c.linear else ''}RQ-spline coupling ({'odd/even' if c.partition == 'parity' else 'random'} halves), "
                f"{c.bins} bins on [−{c.bound}, {c.bound}], MLP {list(c.hidden)}]")
    elif name == "maf":
        arch = f"{c.transforms} × [{'actnorm + ' if c.actnorm else ''}affine MADE {list(c.hidden)}], order reversed between layers"
    elif name == "realnvp" and image:
        arch = f"multi-scale conv couplings: {c.scales or 'auto (by image size)'} scales, {c.hidden} channels, {c.blocks} residual block(s)"
    elif name == "realnvp":
        arch = f"{c.couplings} affine couplings (odd/even masks), MLP [{c.hidden}]×{c.hidden_layers}, clamp {c.clamp}"
    else:
        arch = f"{name} {c.to_json()}"
    if getattr(c, "dropout", 0):
        arch += f", dropout {c.dropout}"
    return arch


def genmodels_contender(text: str, spec, train_x: Tensor, config: dict | None = None, *, init_batch: int = 4096,
                        description: str | None = None, loss: Callable[[object, Tensor], Tensor] | None = None) -> Contender:
    """A genmodels model as a contender.

    Args:
        text: ``name`` or ``name:JSON`` (the JSON over ``config``); the row's name is ``text``.
        spec: the data's DataSpec.
        train_x: the training split, for the model's data-dependent initialization (standardization,
            actnorm), in chunks of ``init_batch``.
        config: the model's config before the overrides in ``text``.
        description: the architecture for the report (default :func:`describe_genmodels`).
        loss: (model, x) → the training loss (default ``model.loss(Batch(x)).loss``).
    """
    name, overrides = parse_model_text(text)
    config = {**(config or {}), **overrides}
    model = create_model(name, spec, config)
    model.initialize(Batch(chunk) for chunk in train_x.split(init_batch))
    train_nll = (lambda x: loss(model, x)) if loss is not None else (lambda x: model.loss(Batch(x)).loss)
    return Contender(
        name=text, library=f"genmodels {genmodels.__version__}", module=model, train_nll=train_nll,
        log_likelihoods=lambda batch, draws: model.log_likelihoods(batch, draws=draws)[0].values,
        description=description or describe_genmodels(name, model.config, image=len(spec.shape) > 1),
        extra={"config": {**model.config.to_json()}},
    )


class Standardized(nn.Module):
    """log p(x) = log q((x − μ)/σ) − Σ log σ, with (μ, σ) fixed from the training split."""

    def __init__(self, flow_module: nn.Module, log_prob: Callable[[Tensor], Tensor], train_x: Tensor):
        super().__init__()
        self.inner = flow_module
        self._log_prob = log_prob
        x = train_x.double()
        self.register_buffer("loc", x.mean(0).float())
        self.register_buffer("scale", x.std(0, unbiased=False).float())

    def log_prob(self, x: Tensor) -> Tensor:
        h = (x - self.loc) / self.scale
        return self._log_prob(h) - torch.log(self.scale).sum()


class DequantizedPeer(nn.Module):
    """A peer's density on h = t(y), turned into genmodels' uniform-dequantization bound of discrete x.

    Args:
        density: the peer's module (its parameters are trained).
        log_prob: h → log p(h) (B,); h is flattened to (B, D) when ``flatten``, else image-shaped.
        spec: the data's DataSpec (levels K, shape, dims).
        preprocess: "none" (h = y), "logit" (h = logit(α + (1 − 2α)y)) or "scale" (h = 2y − 1): the
            same maps, through the same ``units`` functions, as genmodels' FlowModel.
        alpha: α of the logit.
    """

    def __init__(self, density: nn.Module, log_prob: Callable[[Tensor], Tensor], spec, preprocess: str = "logit",
                 alpha: float = 0.05, flatten: bool = True):
        super().__init__()
        if preprocess not in ("none", "logit", "scale"):
            raise ValueError(f"preprocess must be 'none', 'logit' or 'scale', got {preprocess!r}")
        self.density, self._log_prob, self.spec = density, log_prob, spec
        self.preprocess, self.alpha, self.flatten = preprocess, alpha, flatten

    def log_density(self, y: Tensor) -> Tensor:
        if self.flatten:
            y = y.flatten(1)
        if self.preprocess == "logit":
            h, log_jacobian = units.logit_transform(y, self.alpha)
        elif self.preprocess == "scale":
            h, log_jacobian = units.scale_to_symmetric(y)
        else:
            h, log_jacobian = y, y.new_zeros(len(y))
        return self._log_prob(h) + log_jacobian

    def bound(self, x: Tensor, u: Tensor) -> Tensor:
        y = units.dequantize_with_noise(x, u, self.spec.levels)
        return units.discrete_bound_from_density(self.log_density(y), self.spec.dims, self.spec.levels)

    def train_nll(self, x: Tensor) -> Tensor:
        u = torch.rand(x.shape, dtype=torch.float32)
        return -self.bound(x, u).mean()

    def log_likelihoods(self, batch: Batch, draws: int) -> Tensor:
        # the same calls, in the same order, as genmodels' FlowModel (one batch.rand per draw)
        total = sum(self.bound(batch.x, batch.rand(*self.spec.shape)) for _ in range(draws))
        return total / draws


def peer_contender(name: str, library: str, module: nn.Module, description: str, extra: dict | None = None) -> Contender:
    """A peer module with ``train_nll``/``log_likelihoods`` (a :class:`DequantizedPeer`) or ``log_prob``
    (a :class:`Standardized` density on continuous data) as a contender."""
    if isinstance(module, DequantizedPeer):
        train_nll, log_likelihoods = module.train_nll, module.log_likelihoods
    else:
        train_nll = lambda x: -module.log_prob(x).mean()  # noqa: E731
        log_likelihoods = lambda batch, draws: module.log_prob(batch.x)  # noqa: E731
    return Contender(name=name, library=library, module=module, train_nll=train_nll,
                     log_likelihoods=log_likelihoods, description=description, extra=extra or {})
