"""``vqvae``: a convolutional autoencoder with a vector-quantized bottleneck (van den Oord et al. 2017).

x (B, C, H, W) levels → encoder → z_e (B, D, h, w) → nearest codes (B, h, w) → decoder → a proper
distribution p(x | z_q) over the discrete levels (categorical, discretized logistic or Bernoulli, the
latent family's decoders, ``latent.networks``). The encoder halves the resolution ``downsample``
times (auto: while the side is at least 8, at most twice: 8×8 digits → 4×4 codes, 28×28
Fashion-MNIST → 7×7, 32×32 → 8×8, 64×64 → 16×16);
images whose sides are not multiples of 2^downsample are zero-padded and the output cropped.

Training minimizes eq. 3: −log p(x | z_q) + codebook loss + β·commitment loss (see
:mod:`genmodels.vq.quantizer`). It is an autoencoder, with no prior over codes and so no pixel
likelihood: ``likelihood_kind`` is ``none``. Its loss terms report the reconstruction NLL (nats),
the reconstruction MSE and PSNR (of the decoder's mode, on [0, 1]), codebook usage and perplexity.

Sampling: a VQ-VAE's samples come from a prior fitted over its codes, which is ``two-stage``'s
job (train ``genmodels train two-stage --config autoencoder=RUN``). So that a ``vqvae`` run still
draws its end-of-training grid from something fitted, ``sample`` draws each code position
independently from its empirical marginal over the training data (counts kept in a buffer during
training, a moving average over recent batches, and by ``initialize``), never from a uniform prior; these samples are blurry mixtures
and are not a generative model worth measuring. :meth:`reconstruct`, :meth:`encode` and
:meth:`decode` give the tokenizer's view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accepts import Accepts
from ..core import Batch, GenerativeModel, LikelihoodKind, Loss, ModelConfig, register_model
from ..data.base import DataSpec
from ..errors import UserError
from ..latent.networks import decoder_level_log_probs, decoder_log_prob, params_per_dim, resolve_likelihood
from .quantizer import Quantized, VectorQuantizer

__all__ = ["VQVAE", "VQVAEConfig", "auto_downsample", "psnr"]


def auto_downsample(h: int, w: int) -> int:
    """How many stride-2 halvings: while the smaller side is at least 8, at most twice (8 → 4,
    28 → 14 → 7, 32 → 8, 64 → 16): the factor 4 of van den Oord et al. 2017 (32×32 CIFAR-10 → 8×8
    codes), so that larger images keep a code grid a prior can still model token by token."""
    steps = 0
    while min(h, w) >= 8 and steps < 2:
        h, w, steps = (h + 1) // 2, (w + 1) // 2, steps + 1
    return steps


def psnr(mse: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB of images on [0, 1]: 10 log10(1 / MSE)."""
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


@dataclass
class VQVAEConfig(ModelConfig):
    """Args:
    num_codes: K, the codebook's size.
    code_dim: D, the dimension of each code vector.
    channels: width of the convolutional encoder and decoder.
    downsample: stride-2 halvings of the resolution (-1: auto, while the side is at least 8, at
        most twice: 32×32 → 8×8 codes, 64×64 → 16×16).
    beta: β, the commitment weight (eq. 3).
    ema: update the codebook by exponential moving averages (appendix A.1) instead of its loss.
    decay: γ of the EMA codebook updates.
    restart_threshold: restart a code whose moving-average count per batch falls below this (0: off).
    likelihood: decoder distribution: ``categorical``, ``logistic`` (discretized), ``bernoulli``
        (K = 2) or ``auto`` (Bernoulli for binary data, else categorical).
    """

    num_codes: int = 64
    code_dim: int = 16
    channels: int = 64
    downsample: int = -1
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    restart_threshold: float = 1.0
    likelihood: str = "auto"

    def __post_init__(self) -> None:
        if self.num_codes < 2 or self.code_dim < 1 or self.channels < 1:
            raise ValueError("num_codes must be ≥ 2, code_dim and channels ≥ 1")
        if self.downsample < -1:
            raise ValueError(f"downsample must be ≥ 0 or -1 (auto), got {self.downsample}")
        if not self.beta >= 0 or not 0 <= self.decay < 1 or not self.restart_threshold >= 0:
            raise ValueError("beta and restart_threshold must be ≥ 0 and decay in [0, 1)")
        if self.likelihood not in ("auto", "bernoulli", "categorical", "logistic"):
            raise ValueError(f"likelihood must be auto, bernoulli, categorical or logistic, got {self.likelihood!r}")


class _Residual(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv2d(ch, ch, 3, padding=1), nn.ReLU(), nn.Conv2d(ch, ch, 1))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.net(h)


class VQVAE(GenerativeModel):
    """Vector-quantized autoencoder; see the module docstring."""

    Config = VQVAEConfig
    accepts = Accepts(
        images="convolutional autoencoder with a vector-quantized bottleneck",
        sizes="any (padded to the code grid); codes at H/2×W/2 for 8×8, H/4×W/4 from 16×16 (32×32 → 8×8, 64×64 → 16×16)",
    )
    likelihood_kind = LikelihoodKind.NONE
    selection_figure = "mse"  # an autoencoder is chosen by its reconstructions, not its marginal samples

    def __init__(self, config: VQVAEConfig, spec: DataSpec):
        super().__init__(config, spec)
        if len(spec.shape) != 3:
            raise UserError(f"{type(self).__name__} needs image data (C, H, W); '{spec.name}' has shape {spec.shape}")
        c, h, w = spec.shape
        self.likelihood = resolve_likelihood(config.likelihood, spec.levels)
        if self.likelihood == "bernoulli" and spec.levels != 2:
            raise UserError("likelihood=bernoulli needs binary data; use categorical or logistic")
        self.per_dim = params_per_dim(self.likelihood, spec.levels)
        self.factor = 2 ** (auto_downsample(h, w) if config.downsample < 0 else config.downsample)
        self.padded = (math.ceil(h / self.factor) * self.factor, math.ceil(w / self.factor) * self.factor)
        self.grid = (self.padded[0] // self.factor, self.padded[1] // self.factor)  # (h, w) of the codes
        ch, steps = config.channels, int(math.log2(self.factor))
        enc: list[nn.Module] = [nn.Conv2d(c, ch, 3, padding=1)]
        for _ in range(steps):
            enc += [nn.ReLU(), nn.Conv2d(ch, ch, 4, stride=2, padding=1)]
        enc += [_Residual(ch), nn.ReLU(), nn.Conv2d(ch, config.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(config.code_dim, ch, 3, padding=1), _Residual(ch)]
        for _ in range(steps):
            dec += [nn.ReLU(), nn.ConvTranspose2d(ch, ch, 4, stride=2, padding=1)]
        dec += [nn.ReLU()]
        self.decoder = nn.Sequential(*dec)
        self.decoder_out = nn.Conv2d(ch, c * self.per_dim, 3, padding=1)  # the decoder's last layer
        self.quantizer = VectorQuantizer(
            config.num_codes, config.code_dim, beta=config.beta, ema=config.ema, decay=config.decay,
            restart_threshold=config.restart_threshold,
        )
        # Empirical counts of each code at each position: the marginals `sample` draws from.
        self.register_buffer("code_counts", torch.zeros(self.grid[0] * self.grid[1], config.num_codes))

    # --- the autoencoder ----------------------------------------------------------------------------
    @property
    def num_codes(self) -> int:
        return self.config.num_codes

    def _inputs(self, x: Tensor) -> Tensor:
        inputs = x.to(self.code_counts.dtype) / (self.spec.levels - 1) * 2 - 1  # levels → [−1, 1]
        h, w = self.spec.shape[1:]
        return F.pad(inputs, (0, self.padded[1] - w, 0, self.padded[0] - h))

    def encode_continuous(self, x: Tensor) -> Tensor:
        """z_e: (B, C, H, W) levels → (B, h·w, D) encoder outputs, row-major over the code grid."""
        z = self.encoder(self._inputs(x))  # (B, D, h, w)
        return z.flatten(2).transpose(1, 2)

    def quantize(self, x: Tensor) -> Quantized:
        return self.quantizer(self.encode_continuous(x))

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) levels → (B, h, w) int64 code grid."""
        return self.quantizer.nearest(self.encode_continuous(x)).reshape(len(x), *self.grid)

    def decoder_params(self, z_q: Tensor) -> Tensor:
        """(B, h·w, D) quantized vectors → (B, D_x·P) parameters of p(x | z_q), dimension-major."""
        b = len(z_q)
        h = self.decoder(z_q.transpose(1, 2).reshape(b, -1, *self.grid))
        out = self.decoder_out(h)[:, :, : self.spec.shape[1], : self.spec.shape[2]]  # crop the padding
        c = self.spec.shape[0]
        # (B, C·P, H, W) → (B, C, H, W, P) → (B, D·P)
        return out.reshape(b, c, self.per_dim, *self.spec.shape[1:]).permute(0, 1, 3, 4, 2).reshape(b, -1)

    def mode(self, params: Tensor) -> Tensor:
        """The most probable level of every pixel under p(x | z_q): (B, D·P) → (B, C, H, W) int64."""
        levels = decoder_level_log_probs(params, self.likelihood, self.spec.levels).argmax(-1)
        return levels.reshape(len(params), *self.spec.shape)

    @torch.no_grad()
    def decode(self, codes: Tensor) -> Tensor:
        """(B, h, w) int64 codes → (B, C, H, W) images (the decoder's mode)."""
        if codes.shape[1:] != self.grid:
            raise UserError(f"code grids must have shape {self.grid}, got {tuple(codes.shape[1:])}")
        if codes.min() < 0 or codes.max() >= self.num_codes:
            raise UserError(f"codes must lie in 0..{self.num_codes - 1}")
        return self.mode(self.decoder_params(self.quantizer.lookup(codes.reshape(len(codes), -1))))

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """decode(encode(x)): the reconstruction whose error the ``mse`` term reports."""
        return self.decode(self.encode(x))

    def reconstruction_mse(self, x: Tensor, reconstruction: Tensor) -> Tensor:
        """(B,) mean squared error per pixel on the [0, 1] scale."""
        scale = self.spec.levels - 1
        return ((x.to(reconstruction.dtype) - reconstruction) / scale).pow(2).flatten(1).mean(1)

    @torch.no_grad()
    def evaluation_figures(self, batch: Batch) -> dict[str, Tensor]:
        """Per example: the reconstruction NLL −log p(x | z_q) in nats, and the MSE and PSNR of
        decode(encode(x)) on [0, 1] (the figures ``genmodels encode``/``decode`` reproduce)."""
        q = self.quantize(batch.x)
        params = self.decoder_params(q.z_q)
        mse = self.reconstruction_mse(batch.x, self.mode(params))
        nll = -decoder_log_prob(params, batch.x, self.likelihood, self.spec.levels)
        return {"reconstruction_nll": nll, "mse": mse, "psnr": psnr(mse)}

    # --- training -----------------------------------------------------------------------------------
    def autoencoder_loss(self, batch: Batch) -> tuple[Loss, Tensor]:
        """Eq. 3 per example, with its terms, and the decoder's parameters."""
        q = self.quantize(batch.x)
        params = self.decoder_params(q.z_q)
        nll = -decoder_log_prob(params, batch.x, self.likelihood, self.spec.levels)  # (B,) nats
        if self.training:
            with torch.no_grad():
                self._count(q.indices)
        total = nll + q.codebook_loss + q.commitment_loss
        with torch.no_grad():
            mse = self.reconstruction_mse(batch.x, self.mode(params))
        terms = {"reconstruction_nll": nll.detach(), "mse": mse, "psnr": psnr(mse), **q.terms()}
        return Loss(total.mean(), terms), params

    def loss(self, batch: Batch, *, step: int = 0, group: str = "model") -> Loss:
        return self.autoencoder_loss(batch)[0]

    def _count(self, indices: Tensor, decay: float = 0.99) -> None:
        # A moving average over recent batches, so the marginals follow the codes as they change.
        self.code_counts.mul_(decay).add_(F.one_hot(indices.reshape(len(indices), -1), self.num_codes).sum(0).float())

    @torch.no_grad()
    def initialize(self, batches) -> None:
        for batch in batches:
            self._count(self.encode(Batch.of(batch).x).reshape(len(batch), -1))

    # --- sampling -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None) -> Tensor:
        """n images decoded from codes drawn independently per position from their empirical
        marginals (see the module docstring: train ``two-stage`` for a real prior)."""
        counts = self.code_counts
        if (counts.sum(1) == 0).any():
            raise UserError(
                f"{self.name} has seen no data, so it has no code statistics to sample from; train it, "
                "then train 'two-stage' with autoencoder=RUN for a prior over its codes"
            )
        probs = counts / counts.sum(1, keepdim=True)  # (h·w, K)
        codes = torch.multinomial(probs.cpu(), n, replacement=True, generator=generator).T  # (n, h·w)
        return self.decode(codes.to(self.device).reshape(n, *self.grid))


register_model("vqvae")(VQVAE)
