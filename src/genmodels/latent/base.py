"""What every latent-variable model of this family shares: the config of its networks, the chunked
importance-weighted evaluation, and latent-then-data sampling.

A model here is p(x, z) = p(z) p_θ(x | z) (optionally given a label y) with an amortized posterior
q_φ(z | x). Its records (Burda et al. 2016, "Importance weighted autoencoders", eq. 7–8):

- ``elbo`` (kind ``bound``): E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)), with terms ``reconstruction``
  (E_q log p(x|z), a k-sample average) and ``neg_kl`` (−KL in closed form), which sum to the value;
- ``iwae`` (kind ``estimate``, ``samples=k``): log (1/k) Σ_i p(x, z_i) / q(z_i | x), z_i ~ q. It is a
  lower bound in expectation that rises with k and tends to log p(x) (Burda et al. 2016, thm. 1).

Evaluation draws all its noise with ``batch.randn``/``batch.rand`` in chunks of a fixed number of
samples (:data:`SAMPLE_CHUNK`, whatever the batch size, so figures do not change with it), and runs
the decoder on at most :data:`EVAL_FLOATS` outputs at a time (the memory bound), combining chunks by
logsumexp.

Latent sampling goes through one public hook, :meth:`LatentVariableModel.sample_latents`: ``sample``
is ``sample_from_latents(sample_latents(n))``. A method (not a ``latents=`` keyword of ``sample``)
because sampling options reach the CLI by their annotation (``--option KEY=VALUE``) and a tensor
cannot be typed there; a latent-selection scheme (hubness-guided selection draws many candidates
from ``sample_latents`` and keeps some) wraps or overrides this one method and every model of the
family gets it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..accepts import Accepts
from ..core import Batch, GenerativeModel, LikelihoodKind, LogLikelihood, ModelConfig
from ..data.base import DataSpec
from ..baselines.independent import smoothed_log_marginals
from ..errors import UserError
from .networks import ACTIVATIONS, ARCHITECTURES, LIKELIHOODS, decoder_level_log_probs, decoder_log_prob, params_per_dim, resolve_likelihood

__all__ = ["LatentConfig", "LatentVariableModel", "DROPOUT_ON", "SAMPLE_CHUNK", "EVAL_FLOATS", "DEFAULT_EVAL_K"]

#: importance samples drawn per call of batch.randn / batch.rand in evaluation (fixed, so the
#: draws do not depend on the evaluation batch size)
SAMPLE_CHUNK = 100
#: the most decoder outputs (rows × D × P) computed at once in evaluation (the memory bound)
EVAL_FLOATS = 2**25
#: where the hidden-unit dropout acts (LatentConfig.dropout_on)
DROPOUT_ON = ("both", "decoder", "encoder")
#: the default k of the IWAE estimate (test figures); validation during training uses k = 64
DEFAULT_EVAL_K = 1000


@dataclass
class LatentConfig(ModelConfig):
    """Args:
    architecture: ``mlp`` or ``conv`` (convolutional encoder and decoder; image data only).
    hidden: hidden widths of the MLP encoder (the decoder mirrors them); for ``conv``, the first is
        the width of the linear layers between features and latents.
    channels: channels of the convolutional layers (``conv`` only), one stride-2 layer each while
        the image is at least 4 wide. None (default): 32·2^i, one layer per resolution of
        :func:`~genmodels.nn.resolution.resolution_levels` ((32, 64) up to 28×28, (32, 64, 128) at
        32×32, (32, 64, 128, 256) at 64×64, each down to about 4×4).
    likelihood: the decoder's distribution over the discrete data: ``bernoulli`` (K = 2),
        ``categorical`` (K logits per dimension), ``logistic`` (discretized logistic), or ``auto``
        (Bernoulli for binary data, else categorical).
    conditional: model p(x | y): encoder and decoder see the one-hot label (the prior p(z) does not).
    activation: the MLPs' nonlinearity: ``gelu``, ``relu`` (pythae's and most VAE papers') or ``tanh``.
    dropout: dropout rate on the hidden units of the encoder and decoder MLPs (training only; 0: off).
        A regularizer for small data sets; the records are always computed in eval mode, without it.
    dropout_on: which MLPs get ``dropout``: ``both``, ``decoder`` (p(x | z) only) or ``encoder``.
    input_dropout: dropout rate on the encoder's input pixels (training only; 0: off): q(z | x) learns
        from corrupted x while p(x | z) is still scored on the clean x.
    marginal_init: start the MLP decoder's output biases at the training split's smoothed marginals
        (add-½, the ``independent`` model's fit: logits log π_d1 − log π_d0 for Bernoulli, log π_dk
        for categorical), as ``made``/``fvsbn`` do; the weights keep their random init.
    """

    architecture: str = "mlp"
    hidden: tuple[int, ...] = (128,)
    channels: tuple[int, ...] | None = None
    likelihood: str = "auto"
    conditional: bool = False
    activation: str = "gelu"
    dropout: float = 0.0
    dropout_on: str = "both"
    input_dropout: float = 0.0
    marginal_init: bool = False

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (0 switches it off), got {getattr(self, name)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}, got '{self.activation}'")
        if self.channels is not None:
            self.channels = tuple(self.channels)
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, got '{self.architecture}'")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got '{self.likelihood}'")
        if any(h < 1 for h in self.hidden) or any(c < 1 for c in self.channels or ()):
            raise ValueError("hidden widths and channels must be ≥ 1")
        if self.dropout_on not in DROPOUT_ON:
            raise ValueError(f"dropout_on must be one of {', '.join(DROPOUT_ON)}, got '{self.dropout_on}'")
        if self.architecture == "conv" and self.dropout > 0:
            raise ValueError("dropout acts on the MLP's hidden units: use architecture=mlp, or dropout=0 "
                             "(input_dropout works with both)")
        if self.architecture == "conv" and self.marginal_init:
            raise ValueError("marginal_init sets the MLP decoder's output biases: use architecture=mlp")
        if self.architecture == "conv" and self.channels == ():
            raise ValueError("architecture=conv needs at least one entry in channels")


class LatentVariableModel(GenerativeModel):
    """Base of ``vae``, ``iwae`` and ``discrete-vae``: subclasses define the posterior, the prior,
    the analytic KL and how latents are drawn; this class evaluates and samples."""

    likelihood_kind = LikelihoodKind.BOUND
    #: IWAE's k for validation during training on data of up to this many dimensions (28×28)
    validation_k_dims: ClassVar[int] = 784
    validation_k: ClassVar[int] = 64

    @property
    def validation_options(self) -> dict[str, Any]:
        """IWAE's k for validation: 64 up to 784 dimensions (digits, Fashion-MNIST), then halved as
        the dimension doubles (each of the k samples decodes all D dimensions), down to 8: 32 on
        32×32 grayscale, 16 on 32×32 colour. The test figure keeps its own k (``--eval-option k=``)."""
        halvings = max(0, math.ceil(math.log2(self.spec.dims / self.validation_k_dims)))
        return {"k": max(8, self.validation_k >> halvings)}
    accepts = Accepts(
        images="architecture=conv: stride-2 convolutions to about 4×4, one per resolution",
        sizes="any; (32, 64) channels up to 28×28, (32, 64, 128) at 32×32, (32, 64, 128, 256) at 64×64",
        other="architecture=mlp (the default): any shape, flattened",
    )

    def __init__(self, config: LatentConfig, spec: DataSpec):
        super().__init__(config, spec)
        if config.architecture == "conv" and not spec.is_image:
            raise UserError(f"architecture=conv needs image data (C, H, W); '{spec.name}' has shape {spec.shape}")
        self.set_conditional(config.conditional)
        self.num_classes = spec.num_classes if config.conditional else 0
        self.decoder_likelihood = resolve_likelihood(config.likelihood, spec.levels)
        if self.decoder_likelihood == "bernoulli" and spec.levels != 2:
            raise UserError(f"likelihood=bernoulli needs binary data (K = 2); '{spec.name}' has K = {spec.levels}")
        self.per_dim = params_per_dim(self.decoder_likelihood, spec.levels)
        if config.marginal_init and self.decoder_likelihood == "logistic":
            raise UserError("marginal_init needs a bernoulli or categorical decoder (likelihood=logistic has "
                            "no per-level biases): drop marginal_init or change likelihood")

    @property
    def encoder_dropout(self) -> float:
        """The encoder MLP's hidden dropout rate (``dropout`` unless ``dropout_on="decoder"``)."""
        return self.config.dropout if self.config.dropout_on in ("both", "encoder") else 0.0

    @property
    def decoder_dropout(self) -> float:
        """The decoder MLP's hidden dropout rate (``dropout`` unless ``dropout_on="encoder"``)."""
        return self.config.dropout if self.config.dropout_on in ("both", "decoder") else 0.0

    @torch.no_grad()
    def initialize(self, batches: Iterable[Batch]) -> None:
        """With ``marginal_init``: the decoder's output biases := the smoothed training marginals, so
        p(x | z) starts at the ``independent`` model's fit when the last layer's weights are small."""
        if not self.config.marginal_init:
            return
        output = self.decoder.net[-1]  # type: ignore[attr-defined]  # the MLP's last Linear
        log_pi = smoothed_log_marginals(batches, self.spec, 0.5, output.bias.device)  # (D, K)
        if self.decoder_likelihood == "bernoulli":
            output.bias.copy_(log_pi[:, 1] - log_pi[:, 0])  # logit of π_d1
        else:
            output.bias.copy_(log_pi.reshape(-1))  # dimension-major (D·K), as decoder_level_log_probs reads it

    # --- what subclasses define ----------------------------------------------------------------------
    def encode(self, x: Tensor, y: Tensor | None = None) -> Tensor | tuple[Tensor, ...]:
        """The posterior q(z | x)'s parameters."""
        raise NotImplementedError

    def decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """The decoder's parameters (N, D·P) of p(x | z) for latents z (N, latent features)."""
        return self.decoder(z, y)  # type: ignore[attr-defined]

    def kl(self, q: Tensor | tuple[Tensor, ...]) -> Tensor:
        """KL(q(z|x) ‖ p(z)) in closed form, (B,)."""
        raise NotImplementedError

    def draw_posterior(self, q, batch: Batch, count: int) -> tuple[Tensor, Tensor, Tensor]:
        """``count`` latents per example from q with noise from ``batch``: (z (B, count, F),
        log q(z|x) (B, count), log p(z) (B, count))."""
        raise NotImplementedError

    def sample_latents(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None,
                       **options) -> Tensor:
        """n latents from the prior (N, F), ready for :meth:`decode` (the hook for latent selection)."""
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------------------
    def log_px_given_z(self, z: Tensor, x: Tensor, y: Tensor | None = None) -> Tensor:
        """log p(x | z), (N, F), (N, *shape) → (N,)."""
        return decoder_log_prob(self.decode(z, y), x, self.decoder_likelihood, self.spec.levels)

    def _chunked_log_px(self, z: Tensor, x_flat: Tensor, y: Tensor | None, count: int) -> Tensor:
        """log p(x_b | z_{b,i}) for z (B, count, F), decoder outputs bounded by EVAL_FLOATS."""
        b = z.shape[0]
        rows = max(1, EVAL_FLOATS // (self.spec.dims * self.per_dim))
        flat = z.reshape(b * count, -1)
        out = []
        for start in range(0, b * count, rows):
            index = torch.arange(start, min(start + rows, b * count), device=z.device) // count
            out.append(self.log_px_given_z(flat[start : start + rows], x_flat[index], None if y is None else y[index]))
        return torch.cat(out).reshape(b, count)

    @torch.no_grad()
    def log_likelihoods(self, batch: Batch, *, k: int = DEFAULT_EVAL_K) -> list[LogLikelihood]:
        """The ELBO (bound, terms ``reconstruction`` + ``neg_kl``) and the k-sample importance-weighted
        estimate log (1/k) Σ p(x, z_i)/q(z_i|x) (estimate, ``samples=k``), from the same k draws.

        Args:
            k: importance samples per example (default 1000; validation during training uses 64).
        """
        if k < 1:
            raise UserError(f"k must be ≥ 1, got {k}")
        x = batch.x.to(self.device)
        y = self.labels(batch.y, len(x))
        q = self.encode(x, y)
        kl = self.kl(q)
        x_flat = x.reshape(len(x), -1)
        log_w_chunks, reconstruction = [], torch.zeros(len(x), dtype=kl.dtype, device=x.device)
        done = 0
        while done < k:
            count = min(SAMPLE_CHUNK, k - done)
            z, log_q, log_pz = self.draw_posterior(q, batch, count)  # (B, c, F), (B, c), (B, c)
            log_px = self._chunked_log_px(z, x_flat, y, count)  # (B, c)
            log_w_chunks.append(torch.logsumexp(log_px + log_pz - log_q, dim=1))
            reconstruction += log_px.sum(dim=1)
            done += count
        iwae = torch.logsumexp(torch.stack(log_w_chunks, dim=1), dim=1) - math.log(k)
        reconstruction = reconstruction / k
        return [
            LogLikelihood(reconstruction - kl, LikelihoodKind.BOUND, "elbo", samples=k,
                          terms={"reconstruction": reconstruction, "neg_kl": -kl}),
            LogLikelihood(iwae, LikelihoodKind.ESTIMATE, "iwae", samples=k),
        ]

    @torch.no_grad()
    def sample_from_latents(self, z: Tensor, *, y: Tensor | None = None,
                            generator: torch.Generator | None = None) -> Tensor:
        """Decode latents z (N, F) and draw x ~ p(x | z): int64 levels of shape (N, *shape)."""
        y = self.labels(y, len(z))
        z = z.to(self.device, next(self.parameters()).dtype)  # prior draws are float32; the networks may be float64
        log_p = decoder_level_log_probs(self.decode(z, y), self.decoder_likelihood, self.spec.levels)
        probs = log_p.exp().reshape(-1, self.spec.levels)  # (N·D, K)
        where = generator.device if generator is not None else probs.device
        x = torch.multinomial(probs.to(where), 1, generator=generator).squeeze(1)
        return x.to(self.device).reshape(len(z), *self.spec.shape)

    @staticmethod
    def _noise(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device, uniform: bool = False) -> Tensor:
        where = generator.device if generator is not None else device
        fn = torch.rand if uniform else torch.randn
        return fn(shape, generator=generator, device=where).to(device)
