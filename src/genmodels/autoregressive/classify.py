"""Generative classification with a class-conditional exact model: Bayes' rule on p(x | y).

    log p(y | x) = log p(x | y) + log p(y) − log Σ_y' p(x | y') p(y').

:func:`class_log_posterior` returns that (B, C) table; :func:`classify` runs it over a split and
reports the accuracy, the confusion matrix and the mean negative log-likelihood of the true labels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..core import GenerativeModel
from ..data.base import Split
from ..errors import UserError
from ..progress import Phase

__all__ = ["class_log_posterior", "classify", "Classification"]


@torch.no_grad()
def class_log_posterior(model: GenerativeModel, x: Tensor, log_prior: Tensor | None = None) -> Tensor:
    """log p(y | x) for every class y: (B, C), each row normalized (logsumexp = 0).

    Args:
        model: a class-conditional model with an exact ``log_prob(x, y)``.
        x: (B, *shape) examples in the data's levels.
        log_prior: (C,) log p(y), normalized here; None for a uniform prior.
    """
    num_classes = model.require_label_table()
    if log_prior is None:
        log_prior = torch.full((num_classes,), -math.log(num_classes))
    log_prior = torch.as_tensor(log_prior, dtype=torch.float64)
    if log_prior.shape != (num_classes,):
        raise UserError(f"log_prior must have shape ({num_classes},), got {tuple(log_prior.shape)}")
    log_prior = torch.log_softmax(log_prior, dim=0).to(x.device)
    joint = model.log_prob_per_label(x).double() + log_prior  # log p(x, y): (B, C)
    return joint - torch.logsumexp(joint, dim=1, keepdim=True)


@dataclass
class Classification:
    """Results of :func:`classify`.

    Args:
        accuracy: fraction of examples whose most probable class is the true one.
        confusion: (C, C) int64 counts, rows the true class, columns the predicted one.
        label_nll: mean −log p(y | x) of the true labels, in nats.
        predictions: (N,) the predicted classes.
    """

    accuracy: float
    confusion: Tensor
    label_nll: float
    predictions: Tensor


@torch.no_grad()
def classify(
    model: GenerativeModel, split: Split, *, batch_size: int = 256, log_prior: Tensor | None = None
) -> Classification:
    """Classify every example of a labelled split by Bayes' rule on the model's p(x | y)."""
    num_classes = model.require_label_table()
    if split.y is None:
        raise UserError("classify needs a labelled split to score the predictions against")
    was_training = model.training
    model.eval()
    predictions, nll = [], 0.0
    with Phase(f"classify ({num_classes} classes)", total=len(split), unit="examples", cheaper="--examples N") as phase:
        for start in range(0, len(split), batch_size):
            x = split.x[start : start + batch_size].to(torch.int64).to(model.device)
            y = split.y[start : start + batch_size].to(torch.int64).to(model.device)
            posterior = class_log_posterior(model, x, log_prior)  # (b, C)
            predictions.append(posterior.argmax(dim=1).cpu())
            nll -= posterior.gather(1, y[:, None]).sum().item()
            phase.update(len(x))
    model.train(was_training)
    predicted = torch.cat(predictions)
    truth = split.y.to(torch.int64).cpu()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    confusion.index_put_((truth, predicted), torch.ones_like(truth), accumulate=True)
    return Classification(
        accuracy=(predicted == truth).double().mean().item(),
        confusion=confusion,
        label_nll=nll / len(split),
        predictions=predicted,
    )
