"""Encoders, decoders and the decoder distributions of the latent-variable family.

Decoders define a proper distribution over the *discrete* data x ∈ {0..K−1}^D, so every ELBO is a
true bound on the discrete NLL (no mean-squared-error "likelihood"):

- ``bernoulli`` (K = 2): one logit per dimension;
- ``categorical``: K logits per dimension (a 256-way softmax, as in PixelRNN, van den Oord et al. 2016);
- ``logistic``: the discretized logistic (Salimans et al. 2017, PixelCNN++, eq. 2) on the level
  scale 0..K−1, P(x = k) = σ((k + ½ − μ)/s) − σ((k − ½ − μ)/s), with the edge levels taking the
  tails, so the K probabilities sum to 1 exactly.

Networks take x scaled to [0, 1] (and a one-hot label when class-conditional) and are either MLPs
or small convolutional nets; both are built by :func:`make_encoder` / :func:`make_decoder`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.base import DataSpec
from ..nn.resolution import resolution_levels

__all__ = [
    "LIKELIHOODS",
    "ACTIVATIONS",
    "ARCHITECTURES",
    "resolve_likelihood",
    "params_per_dim",
    "decoder_log_prob",
    "decoder_level_log_probs",
    "discretized_logistic_log_probs",
    "discretized_logistic_log_prob_at",
    "make_encoder",
    "conv_channels",
    "make_decoder",
    "mlp",
    "Encoder",
    "Decoder",
]

LIKELIHOODS = ("auto", "bernoulli", "categorical", "logistic")
ARCHITECTURES = ("mlp", "conv")


def resolve_likelihood(name: str, levels: int) -> str:
    """``auto`` → Bernoulli for binary data, categorical otherwise."""
    if name == "auto":
        return "bernoulli" if levels == 2 else "categorical"
    return name


def params_per_dim(likelihood: str, levels: int) -> int:
    """How many decoder outputs each data dimension needs."""
    return {"bernoulli": 1, "categorical": levels, "logistic": 2}[likelihood]


def discretized_logistic_log_prob_at(mu: Tensor, log_s: Tensor, k: Tensor, levels: int) -> Tensor:
    """log P(x = k) of the discretized logistic at the given levels k (broadcast with μ and log s).

    With a = (k − ½ − μ)/s and b = (k + ½ − μ)/s, σ(b) − σ(a) = σ(b)·(1 − σ(a))·(1 − e^{a−b}), so
    log P = log σ(b) + log σ(−a) + log(−expm1(−1/s)) is stable in every regime; level 0 takes
    σ(b) and level K−1 takes 1 − σ(a) (the tails). Evaluating only the observed level costs O(D)
    per image instead of O(D·K): the likelihood of Fashion-MNIST at K = 256 needs no (N, D, 256) tensor.
    """
    k = k.to(mu.dtype)
    inv_s = torch.exp(-log_s)
    a = (k - 0.5 - mu) * inv_s
    b = (k + 0.5 - mu) * inv_s
    middle = F.logsigmoid(b) + F.logsigmoid(-a) + torch.log(-torch.expm1(-inv_s)).clamp_min(-80.0)
    return torch.where(k <= 0, F.logsigmoid(b), torch.where(k >= levels - 1, F.logsigmoid(-a), middle))


def discretized_logistic_log_probs(mu: Tensor, log_s: Tensor, levels: int) -> Tensor:
    """log P(x = k) for every k = 0..K−1 of the discretized logistic, (…) → (…, K)."""
    k = torch.arange(levels, dtype=mu.dtype, device=mu.device)
    return discretized_logistic_log_prob_at(mu.unsqueeze(-1), log_s.unsqueeze(-1), k, levels)


def _logistic_parameters(params: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """The decoder's (N, D·2) outputs → μ on the level scale 0..K−1 and log s, each (N, D)."""
    p = params.reshape(params.shape[0], -1, 2)
    # s ≥ e^{−7} keeps the density finite.
    mu = (levels - 1) * (0.5 + p[..., 0])
    log_s = p[..., 1].clamp_min(-7.0) + math.log(max(levels - 1, 1)) - 2.0
    return mu, log_s


def decoder_level_log_probs(params: Tensor, likelihood: str, levels: int) -> Tensor:
    """The decoder's log P(x_d = k) for every dimension and level, (N, D·P) → (N, D, K)."""
    n = params.shape[0]
    if likelihood == "bernoulli":
        logit = params.reshape(n, -1, 1)
        return torch.cat([F.logsigmoid(-logit), F.logsigmoid(logit)], dim=-1)
    if likelihood == "categorical":
        return F.log_softmax(params.reshape(n, -1, levels), dim=-1)
    return discretized_logistic_log_probs(*_logistic_parameters(params, levels), levels)


def decoder_log_prob(params: Tensor, x: Tensor, likelihood: str, levels: int) -> Tensor:
    """log p(x | z) summed over dimensions, (N, D·P), (N, D) int64 → (N,)."""
    x = x.reshape(len(x), -1)
    if likelihood == "bernoulli":
        logit = params.reshape(len(x), -1)
        return -F.binary_cross_entropy_with_logits(logit, x.to(logit.dtype), reduction="none").sum(dim=1)
    if likelihood == "logistic":
        return discretized_logistic_log_prob_at(*_logistic_parameters(params, levels), x, levels).sum(dim=1)
    log_p = decoder_level_log_probs(params, likelihood, levels)  # (N, D, K)
    return log_p.gather(2, x.unsqueeze(2)).squeeze(2).sum(dim=1)


#: the MLPs' nonlinearities (``relu`` is pythae's and most VAE papers'; ``gelu`` the default here)
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def mlp(sizes: list[int], activation: str = "gelu", dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of these sizes with ``activation`` between them (none after the last), and
    dropout of rate ``dropout`` after each hidden activation (Srivastava et al. 2014; active in
    training mode only). The dropout shares its slot with the activation (``Sequential(act,
    Dropout)``), so the parameter names are those of the same MLP without dropout: a state dict moves
    freely between the two (and older checkpoints load)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            act = ACTIVATIONS[activation]()
            layers.append(nn.Sequential(act, nn.Dropout(dropout)) if dropout > 0 else act)
    return nn.Sequential(*layers)


def _downsampled_sizes(h: int, w: int, levels: int) -> list[tuple[int, int]]:
    """Spatial sizes after each stride-2 convolution (halving while the image is at least 4 wide)."""
    sizes = [(h, w)]
    for _ in range(levels):
        h0, w0 = sizes[-1]
        if min(h0, w0) < 4:
            break
        sizes.append(((h0 + 1) // 2, (w0 + 1) // 2))
    return sizes


def conv_channels(spec: DataSpec, channels: tuple[int, ...] | None) -> tuple[int, ...]:
    """The convolutional layers' channels: the given ones, or 32·2^i for each resolution of
    :func:`~genmodels.nn.resolution.resolution_levels` ((32, 64) up to 28×28, (32, 64, 128) at 32×32)."""
    if channels is not None:
        return tuple(channels)
    return tuple(32 * 2**i for i in range(resolution_levels(*spec.shape[1:])))


class _ConvEncoder(nn.Module):
    """3×3 convolutions, stride 2 while the image is at least 4 wide, then a linear head."""

    def __init__(self, spec: DataSpec, channels: tuple[int, ...], extra: int, out: int, hidden: int):
        super().__init__()
        c, h, w = spec.shape
        sizes = _downsampled_sizes(h, w, len(channels))
        layers: list[nn.Module] = []
        in_ch = c
        for i, ch in enumerate(channels):
            stride = 2 if i + 1 < len(sizes) else 1
            layers += [nn.Conv2d(in_ch, ch, 3, stride=stride, padding=1), nn.GELU()]
            in_ch = ch
        self.body = nn.Sequential(*layers)
        with torch.no_grad():
            flat = self.body(torch.zeros(1, c, h, w)).numel()
        self.head = mlp([flat + extra, hidden, out])

    def forward(self, x: Tensor, extra: Tensor | None) -> Tensor:
        h = self.body(x).flatten(1)
        return self.head(h if extra is None else torch.cat([h, extra], dim=1))


class _ConvDecoder(nn.Module):
    """A linear map to a small feature map, then nearest upsampling + 3×3 convolutions back to
    (C, H, W), and a 1×1 convolution to P outputs per dimension."""

    def __init__(self, spec: DataSpec, channels: tuple[int, ...], in_features: int, per_dim: int, hidden: int):
        super().__init__()
        c, h, w = spec.shape
        sizes = _downsampled_sizes(h, w, len(channels))  # [(H, W), ..., smallest]
        self.sizes = sizes
        ch = list(reversed(channels))
        self.start = (ch[0], *sizes[-1])
        self.fc = mlp([in_features, hidden, math.prod(self.start)])
        blocks = []
        for i in range(len(ch)):
            out_ch = ch[i + 1] if i + 1 < len(ch) else ch[-1]
            blocks.append(nn.Conv2d(ch[i], out_ch, 3, padding=1))
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(ch[-1], c * per_dim, 1)
        self.per_dim = per_dim
        self.channels_in = c

    def forward(self, z: Tensor) -> Tensor:
        h = F.gelu(self.fc(z)).reshape(len(z), *self.start)
        targets = list(reversed(self.sizes[:-1]))  # sizes to upsample to, smallest first
        for i, block in enumerate(self.blocks):
            if i < len(targets):
                h = F.interpolate(h, size=targets[i], mode="nearest")
            h = F.gelu(block(h))
        out = self.out(h)  # (N, C·P, H, W)
        n, _, hh, ww = out.shape
        # (N, C, P, H, W) → (N, C, H, W, P) → (N, D·P), dimension-major as the likelihoods expect.
        return out.reshape(n, self.channels_in, self.per_dim, hh, ww).permute(0, 1, 3, 4, 2).reshape(n, -1)


class Encoder(nn.Module):
    """x (B, *shape) levels [+ one-hot y] → ``out`` features (Gaussian μ, log σ or categorical logits).

    ``dropout``: on the MLP's hidden units; ``input_dropout``: on the scaled input x (the label is
    kept), a denoising-style regularizer of q(z | x) only. Both act in training mode only."""

    def __init__(self, spec: DataSpec, architecture: str, hidden: tuple[int, ...], channels: tuple[int, ...] | None,
                 out: int, num_classes: int = 0, activation: str = "gelu", dropout: float = 0.0,
                 input_dropout: float = 0.0):
        super().__init__()
        self.levels = spec.levels
        self.num_classes = num_classes
        self.architecture = architecture
        self.input_dropout = nn.Dropout(input_dropout)  # no parameters: the state dict is unchanged
        if architecture == "conv":
            self.net: nn.Module = _ConvEncoder(spec, conv_channels(spec, channels), num_classes, out, hidden[0] if hidden else 256)
        else:
            self.net = mlp([spec.dims + num_classes, *hidden, out], activation, dropout)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        dtype = next(self.net.parameters()).dtype  # the networks' dtype (float32, or float64 for exactness tests)
        inputs = self.input_dropout(x.to(dtype) / (self.levels - 1))  # levels → [0, 1]
        extra = F.one_hot(y, self.num_classes).to(inputs.dtype) if self.num_classes else None
        if self.architecture == "conv":
            return self.net(inputs, extra)
        flat = inputs.reshape(len(x), -1)
        return self.net(flat if extra is None else torch.cat([flat, extra], dim=1))


class Decoder(nn.Module):
    """z (N, L) [+ one-hot y] → (N, D·P) parameters of the decoder distribution p(x | z)."""

    def __init__(self, spec: DataSpec, architecture: str, hidden: tuple[int, ...], channels: tuple[int, ...] | None,
                 latent_features: int, per_dim: int, num_classes: int = 0, activation: str = "gelu",
                 dropout: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        inputs = latent_features + num_classes
        if architecture == "conv":
            self.net: nn.Module = _ConvDecoder(spec, conv_channels(spec, channels), inputs, per_dim, hidden[0] if hidden else 256)
        else:
            self.net = mlp([inputs, *reversed(hidden), spec.dims * per_dim], activation, dropout)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            z = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        return self.net(z)


def make_encoder(spec: DataSpec, architecture: str, hidden: tuple[int, ...], channels: tuple[int, ...] | None,
                 out: int, num_classes: int = 0, activation: str = "gelu", dropout: float = 0.0,
                 input_dropout: float = 0.0) -> Encoder:
    return Encoder(spec, architecture, hidden, channels, out, num_classes, activation, dropout, input_dropout)


def make_decoder(spec: DataSpec, architecture: str, hidden: tuple[int, ...], channels: tuple[int, ...] | None,
                 latent_features: int, per_dim: int, num_classes: int = 0, activation: str = "gelu",
                 dropout: float = 0.0) -> Decoder:
    return Decoder(spec, architecture, hidden, channels, latent_features, per_dim, num_classes, activation, dropout)
