"""``vqgan``: the ``vqvae`` autoencoder trained with perceptual and adversarial losses (Esser et al.
2021, "Taming Transformers for High-Resolution Image Synthesis", sec. 3.1).

The autoencoder's loss (eq. 4–5) is

    L = L_rec + L_perceptual + L_VQ + λ · L_GAN,

- L_rec: the decoder's NLL of the discrete pixels (the ``vqvae`` decoder distribution);
- L_perceptual: (1/F)‖φ(x) − φ(x̂)‖² on the F the penultimate features φ of **the project's own feature
  network** (``genmodels.metrics.load_feature_network``, a small CNN classifier trained on the same
  data set and shipped with the package), since LPIPS/VGG weights cannot be downloaded here. x̂ is
  the decoder's mean image E[x | z_q] on [0, 1], which is differentiable. It is used when the images
  have the shape of a data set with a feature network (8×8 digits, 28×28 Fashion-MNIST) and is
  skipped otherwise;
- L_GAN: a patch discriminator D (a small PatchGAN, Isola et al. 2017) with the hinge loss:
  L_D = E[max(0, 1 − D(x))] + E[max(0, 1 + D(x̂))], and −E[D(x̂)] for the autoencoder;
- λ, the adaptive weight (eq. 7): λ = ∇_{G_L}[L_rec] / (∇_{G_L}[L_GAN] + δ), the ratio of the
  gradient norms at the decoder's last layer G_L (``decoder_out.weight``), computed with
  ``torch.autograd.grad`` in the training step, clamped to [0, 10⁴] and detached, times
  ``disc_weight``.

The adversarial terms are switched on after ``disc_start`` steps: the discriminator's optimizer
group has ``start_step = disc_start`` and the autoencoder's loss checks the step. Likelihood kind
``none``, sampling as ``vqvae`` (fit ``two-stage`` on it for a prior over its codes).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Batch, Loss, OptimizerGroup, register_model
from ..data.base import DataSpec
from ..latent.networks import decoder_level_log_probs
from .vqvae import VQVAE, VQVAEConfig

__all__ = ["VQGAN", "VQGANConfig", "adaptive_weight", "PatchDiscriminator"]

_FEATURE_SHAPES = {(1, 8, 8): "digits", (1, 28, 28): "fashion-mnist"}


def adaptive_weight(rec: Tensor, gan: Tensor, last: Tensor, delta: float = 1e-4) -> Tensor:
    """λ = ‖∇_{G_L} L_rec‖ / (‖∇_{G_L} L_GAN‖ + δ) (Esser et al. 2021, eq. 7), clamped to [0, 10⁴], detached."""
    g_rec = torch.autograd.grad(rec, last, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan, last, retain_graph=True)[0]
    return (g_rec.norm() / (g_gan.norm() + delta)).clamp(0.0, 1e4).detach()


class PatchDiscriminator(nn.Module):
    """A PatchGAN: images in [−1, 1] (B, C, H, W) → (B, h, w) real/fake logits of overlapping patches."""

    def __init__(self, channels: int, ch: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, ch, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(ch, 2 * ch, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * ch, 1, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0]


@dataclass
class VQGANConfig(VQVAEConfig):
    """Args:
    perceptual_weight: weight of the perceptual loss (0: off).
    disc_channels: width of the patch discriminator.
    disc_weight: a factor on the adaptive weight λ.
    disc_start: training steps before the adversarial terms switch on (the warm-up).
    disc_lr_scale: the discriminator's learning rate as a factor of --lr.
    """

    perceptual_weight: float = 1.0
    disc_channels: int = 32
    disc_weight: float = 0.8
    disc_start: int = 500
    disc_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.perceptual_weight >= 0 or not self.disc_weight >= 0 or self.disc_start < 0:
            raise ValueError("perceptual_weight, disc_weight and disc_start must be ≥ 0")
        if self.disc_channels < 1 or not self.disc_lr_scale > 0:
            raise ValueError("disc_channels must be ≥ 1 and disc_lr_scale > 0")


class VQGAN(VQVAE):
    """VQ autoencoder + perceptual loss + hinge patch discriminator with the adaptive weight."""

    Config = VQGANConfig

    def __init__(self, config: VQGANConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.discriminator = PatchDiscriminator(spec.shape[0], config.disc_channels)
        self._features: list[nn.Module] = []  # not a submodule: the shipped network is not in checkpoints
        name = _FEATURE_SHAPES.get(tuple(spec.shape))
        if config.perceptual_weight > 0 and name is not None:
            from ..metrics import load_feature_network

            self._features.append(load_feature_network(name).network)
        self._fake: tuple[int, Tensor] | None = None

    def optimizer_groups(self):
        disc = list(self.discriminator.parameters())
        ae = [p for n, p in self.named_parameters() if not n.startswith("discriminator.")]
        return {
            "autoencoder": OptimizerGroup(ae, betas=(0.5, 0.9)),
            "discriminator": OptimizerGroup(disc, betas=(0.5, 0.9), lr_scale=self.config.disc_lr_scale,
                                            start_step=self.config.disc_start),
        }

    def mean_image(self, params: Tensor) -> Tensor:
        """E[x | z_q] / (K − 1) ∈ [0, 1], differentiable in the decoder's parameters: (B, D·P) → (B, C, H, W)."""
        probs = decoder_level_log_probs(params, self.likelihood, self.spec.levels).exp()  # (B, D, K)
        levels = torch.arange(self.spec.levels, dtype=probs.dtype, device=probs.device)
        return (probs @ levels / (self.spec.levels - 1)).reshape(len(params), *self.spec.shape)

    def perceptual(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """(B,) (1/F)‖φ(x) − φ(x̂)‖² on the feature network's F penultimate features (images on [0, 1]);
        averaged over features as LPIPS averages over its channels and positions."""
        network = self._features[0].to(x_hat.device)
        return (network.features(x) - network.features(x_hat)).pow(2).mean(1)

    def loss(self, batch: Batch, *, step: int = 0, group: str = "autoencoder") -> Loss:
        if group == "discriminator":
            return self._discriminator_loss(batch)
        base, params = self.autoencoder_loss(batch)
        terms = dict(base.terms)
        x_hat = self.mean_image(params)
        self._fake = (id(batch.x), x_hat.detach())
        # L_rec + L_VQ (the vqvae loss); only L_rec reaches the decoder's last layer.
        rec_loss = base.loss
        if self._features:
            p = self.perceptual(batch.x.to(x_hat.dtype) / (self.spec.levels - 1), x_hat) * self.config.perceptual_weight
            terms["perceptual"] = p.detach()
            rec_loss = rec_loss + p.mean()
        total = rec_loss
        if step >= self.config.disc_start:
            g = -self.discriminator(2 * x_hat - 1).flatten(1).mean(1)  # (B,) −D(x̂), the hinge generator loss
            terms["adversarial"] = g.detach()
            if self.training and torch.is_grad_enabled():
                lam = adaptive_weight(rec_loss, g.mean(), self.decoder_out.weight)
            else:
                lam = torch.ones((), device=g.device)
            lam = lam * self.config.disc_weight
            terms["adaptive_weight"] = lam.expand(len(g))
            total = total + lam * g.mean()
        return Loss(total, terms)

    def _discriminator_loss(self, batch: Batch) -> Loss:
        if self._fake is not None and self._fake[0] == id(batch.x):
            fake = self._fake[1]  # the autoencoder's forward of this step, shared
        else:
            with torch.no_grad():
                z_q = self.quantizer.lookup(self.quantizer.nearest(self.encode_continuous(batch.x)))
                fake = self.mean_image(self.decoder_params(z_q))
        real = batch.x.to(fake.dtype) / (self.spec.levels - 1)
        d_real = self.discriminator(2 * real - 1).flatten(1).mean(1)
        d_fake = self.discriminator(2 * fake - 1).flatten(1).mean(1)
        hinge = F.relu(1 - d_real) + F.relu(1 + d_fake)  # Esser et al. 2021 / Lim & Ye 2017
        return Loss(hinge.mean(), {"hinge": hinge.detach(), "d_real": d_real.detach(), "d_fake": d_fake.detach()})

    def training_step(self, batch, step, groups, forward):
        # One autoencoder forward per step, its detached mean image shared with the discriminator.
        self._fake = None
        for group in groups:
            yield group, forward(batch, step=step, group=group)
        self._fake = None


register_model("vqgan")(VQGAN)
