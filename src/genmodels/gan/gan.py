"""``gan``: a DCGAN-style generative adversarial network (Goodfellow et al. 2014; Radford et al. 2016).

Generator G: z ~ N(0, I_L) → an image on [0, 1] (sigmoid output); discriminator D: image → a
logit. The data are discrete, so real images enter D uniformly dequantized, (x + u)/K (otherwise D
tells real from fake by their discreteness alone), and a sample is the level whose dequantization
cell holds G(z) (``units.quantize``). Losses:

- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): L_D = E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))],
  L_G = −E[D(G(z))];
- ``non-saturating`` (Goodfellow et al. 2014, sec. 3): L_D = softplus(−D(x)) + softplus(D(G(z))),
  L_G = softplus(−D(G(z))) = −log σ(D(G(z))).

Options: spectral normalization of D's layers (Miyato et al. 2018), n_critic discriminator steps per
generator step (the generator group's ``every``). Each loss runs its own generator forward inside
the trainer's ``forward`` (the discriminator's without a graph), so several processes synchronize
exactly the gradients of the group that steps. An EMA of the generator is the trainer's ``--ema DECAY`` (evaluation and
sampling use the averaged weights; averaging D as well is harmless, it is never used for sampling).
Sampling option ``hubness=true`` keeps the hubs among ``candidates`` latents (Liang et al. 2022,
:mod:`genmodels.latent.hubness`). No likelihood: kind ``none``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..accepts import Accepts
from ..core import Batch, GenerativeModel, LikelihoodKind, Loss, ModelConfig, OptimizerGroup, register_model
from ..data.base import DataSpec
from ..errors import UserError
from ..nn.resolution import even_halvings, resolution_levels
from ..units import quantize, uniform_dequantize
from ..latent.hubness import hubness_guided_latents

__all__ = ["GAN", "GANConfig", "conv_upsamplings"]


@dataclass
class GANConfig(ModelConfig):
    """Args:
    latent_dim: L, the dimension of z.
    architecture: ``conv`` (DCGAN: transposed convolutions up, strided convolutions down; images
        whose sides are multiples of 4; from about 4×4, :func:`conv_upsamplings`: two stride-2
        layers up to 28×28, three at 32×32, four at 64×64), ``mlp``, or ``auto`` (conv for images of
        side ≥ 16, else mlp).
    hidden: width (MLP units, or the convolutions' base channels).
    loss: ``hinge`` or ``non-saturating``.
    spectral_norm: spectral normalization of the discriminator's layers.
    n_critic: discriminator steps per generator step.
    conditional: a class-conditional pair (label embedding in G, projection in D; Miyato & Koyama 2018).
    """

    latent_dim: int = 32
    architecture: str = "auto"
    hidden: int = 64
    loss: str = "non-saturating"
    spectral_norm: bool = True
    n_critic: int = 1
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.latent_dim < 1 or self.hidden < 1 or self.n_critic < 1:
            raise ValueError("latent_dim, hidden and n_critic must be ≥ 1")
        if self.architecture not in ("auto", "conv", "mlp"):
            raise ValueError(f"architecture must be auto, conv or mlp, got {self.architecture!r}")
        if self.loss not in ("hinge", "non-saturating"):
            raise ValueError(f"loss must be hinge or non-saturating, got {self.loss!r}")


def _conv_fits(shape: tuple[int, ...]) -> bool:
    return len(shape) == 3 and shape[1] % 4 == 0 and shape[2] % 4 == 0 and min(shape[1:]) >= 8


def conv_upsamplings(height: int, width: int) -> int:
    """The conv pair's stride-2 layers: down to about 4×4 (:func:`~genmodels.nn.resolution.resolution_levels`)
    where both sides halve exactly, and at least two (sides multiples of 4): 28×28 → from 7×7 (two),
    32×32 → 4×4 (three), 64×64 → 4×4 (four), as DCGAN starts from 4×4 (Radford et al. 2016, fig. 1)."""
    return max(2, min(resolution_levels(height, width), even_halvings(height, width)))


def _auto_conv(shape: tuple[int, ...]) -> bool:
    # On 8×8 digits the conv pair collapsed to one mode within 800 steps while the MLP pair with
    # spectral norm reached FD ≈ 140 (benchmarks/vq_digits.py); convolutions from 16×16 up.
    return _conv_fits(shape) and min(shape[1:]) >= 16


@register_model("gan")
class GAN(GenerativeModel):
    """Generator and discriminator trained in turn; see the module docstring."""

    Config = GANConfig
    accepts = Accepts(
        images="DCGAN conv pair from about 4×4 (architecture=conv, auto from side 16)", sizes="sides multiples of 4, ≥ 8; 2 stride-2 layers up to 28×28, 3 at 32×32, 4 at 64×64",
        other="architecture=mlp: any shape, flattened")
    likelihood_kind = LikelihoodKind.NONE

    def __init__(self, config: GANConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.set_conditional(config.conditional)
        arch = config.architecture
        if arch == "auto":
            arch = "conv" if _auto_conv(spec.shape) else "mlp"
        if arch == "conv" and not _conv_fits(spec.shape):
            raise UserError(f"architecture=conv needs images with sides multiples of 4 (≥ 8); got {spec.shape}")
        self.architecture = arch
        sn = nn.utils.parametrizations.spectral_norm if config.spectral_norm else (lambda m: m)
        L, h, D = config.latent_dim, config.hidden, spec.dims
        classes = spec.num_classes if config.conditional else 0
        self.label_embedding = nn.Embedding(classes, L) if classes else None
        if arch == "mlp":
            self.generator = nn.Sequential(nn.Linear(L, 2 * h), nn.ReLU(), nn.Linear(2 * h, 2 * h), nn.ReLU(),
                                           nn.Linear(2 * h, D))
            self.disc_body = nn.Sequential(nn.Flatten(), sn(nn.Linear(D, 2 * h)), nn.LeakyReLU(0.2),
                                           sn(nn.Linear(2 * h, 2 * h)), nn.LeakyReLU(0.2))
            feat = 2 * h
        else:
            c, H, W = spec.shape
            n = conv_upsamplings(H, W)
            # Widths double towards the lowest resolution (DCGAN): G goes h·2^(n−1) → … → h → h,
            # D goes h → 2h → … → h·2^(n−1); with n = 2 the pair of 28×28 Fashion-MNIST, unchanged.
            widths = [h * 2 ** max(n - 1 - i, 0) for i in range(n + 1)]
            self.start = (widths[0], H // 2**n, W // 2**n)
            # Batch normalization in G as in DCGAN (Radford et al. 2016, sec. 3): without it, on
            # Fashion-MNIST's mostly black images the output sigmoid saturated at 0 within 200 steps
            # (all-black samples, FD 677, the discriminator's loss at 0) and G's gradient vanished.
            up: list[nn.Module] = [nn.Linear(L, math.prod(self.start)), nn.Unflatten(1, self.start),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU()]
            for a, b in zip(widths[:-1], widths[1:]):
                up += [nn.ConvTranspose2d(a, b, 4, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
            self.generator = nn.Sequential(*up, nn.Conv2d(h, c, 3, padding=1))
            down: list[nn.Module] = []
            for a, b in zip([c] + widths[::-1][1:-1], widths[::-1][1:]):
                down += [sn(nn.Conv2d(a, b, 4, stride=2, padding=1)), nn.LeakyReLU(0.2)]
            self.disc_body = nn.Sequential(*down, nn.Flatten())
            feat = math.prod(self.start)
        self.disc_head = sn(nn.Linear(feat, 1))
        self.disc_label = sn(nn.Embedding(classes, feat)) if classes else None  # projection (Miyato & Koyama 2018)

    # --- the two networks ---------------------------------------------------------------------------
    def _discriminator_modules(self) -> list[nn.Module]:
        return [m for m in (self.disc_body, self.disc_head, self.disc_label) if m is not None]

    def optimizer_groups(self):
        disc = [p for m in self._discriminator_modules() for p in m.parameters()]
        gen = list(self.generator.parameters()) + (list(self.label_embedding.parameters()) if self.label_embedding else [])
        return {
            "discriminator": OptimizerGroup(disc, betas=(0.5, 0.999)),
            "generator": OptimizerGroup(gen, betas=(0.5, 0.999), every=self.config.n_critic),
        }

    def generate(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """G(z | y): (n, L) → (n, *shape) images on [0, 1]."""
        z = z.to(next(self.generator.parameters()).dtype)  # prior draws are float32; G may be float64
        if self.label_embedding is not None:
            if y is None:
                raise UserError("this GAN is class-conditional: pass labels (y)")
            z = z + self.label_embedding(y)
        return torch.sigmoid(self.generator(z)).reshape(len(z), *self.spec.shape)

    def discriminate(self, images: Tensor, y: Tensor | None = None) -> Tensor:
        """D(x | y): images on [0, 1] (B, *shape) → (B,) logits."""
        h = self.disc_body(2 * images - 1)
        out = self.disc_head(h)[:, 0]
        if self.disc_label is not None and y is not None:
            out = out + (self.disc_label(y) * h).sum(1)
        return out

    def _real(self, batch: Batch) -> Tensor:
        dtype = next(self.disc_head.parameters()).dtype  # float32 dequantized data → the networks' dtype
        return uniform_dequantize(batch.x, self.spec.levels).to(dtype)  # (x + u) / K on [0, 1)

    # --- losses -------------------------------------------------------------------------------------
    def _d_loss(self, real: Tensor, fake: Tensor, y: Tensor | None) -> Loss:
        d_real, d_fake = self.discriminate(real, y), self.discriminate(fake, y)
        if self.config.loss == "hinge":
            per = F.relu(1 - d_real) + F.relu(1 + d_fake)
        else:
            per = F.softplus(-d_real) + F.softplus(d_fake)
        return Loss(per.mean(), {"d_loss": per.detach(), "d_real": d_real.detach(), "d_fake": d_fake.detach()})

    def _g_loss(self, fake: Tensor, y: Tensor | None) -> Loss:
        score = self.discriminate(fake, y)
        per = -score if self.config.loss == "hinge" else F.softplus(-score)
        return Loss(per.mean(), {"g_loss": per.detach()})

    def _generate_for(self, batch: Batch) -> Tensor:
        y = self.labels(batch.y, len(batch))
        z = torch.randn(len(batch), self.config.latent_dim, device=batch.x.device)
        return self.generate(z, y)

    def loss(self, batch: Batch, *, step: int = 0, group: str = "generator") -> Loss:
        y = self.labels(batch.y, len(batch))
        if group == "discriminator":
            with torch.no_grad():  # D's step moves D alone; its fakes need no generator graph
                fake = self._generate_for(batch)
            return self._d_loss(self._real(batch), fake, y)
        fake = self._generate_for(batch)
        return self._g_loss(fake, y)

    # --- sampling -----------------------------------------------------------------------------------
    def latents(
        self, n: int, *, generator: torch.Generator | None = None, hubness: bool = False, candidates: int = 0, k: int = 10
    ) -> Tensor:
        """n latents from N(0, I), or the n hubs among ``candidates`` prior draws (0: 20·n, at least 500)."""
        def prior(m: int) -> Tensor:
            return torch.randn(m, self.config.latent_dim, generator=generator)

        if not hubness:
            return prior(n)
        return hubness_guided_latents(prior, n, candidates=candidates, k=k, generator=generator)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        y: Tensor | None = None,
        generator: torch.Generator | None = None,
        hubness: bool = False,
        candidates: int = 0,
        k: int = 10,
    ) -> Tensor:
        """n images: quantize(G(z)); ``hubness=true`` draws z among the hubs of ``candidates`` latents."""
        y = self.labels(y, n)
        z = self.latents(n, generator=generator, hubness=hubness, candidates=candidates, k=k).to(self.device)
        images = self.generate(z, y)
        return quantize(images, self.spec.levels)

    def sample_with_info(self, n: int, **options: Any) -> tuple[Tensor, dict[str, Any]]:
        info = {"hubness": bool(options.get("hubness", False))}
        return self.sample(n, **options), info
