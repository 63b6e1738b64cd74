"""``two-stage``: a causal Transformer prior over a trained VQ autoencoder's code grid.

Stage 1 (``vqvae`` or ``vqgan``) compresses an image into an h×w grid of codes s ∈ {0..K−1}^{hw};
stage 2 fits p_θ(s | y) = Π_t p_θ(s_t | s_<t, y) with the autoregressive family's
:class:`~genmodels.nn.transformer.CausalTransformer` (row-major order, grid position embeddings,
optional class embedding) on the codes of the training images (van den Oord et al. 2017 sec. 3.3
with a PixelCNN; Esser et al. 2021 sec. 3.2 with a Transformer). Sampling draws codes from this
fitted prior (with a temperature), then decodes them.

Likelihoods: the prior's NLL of the codes is *exact*, but it is a likelihood of codes, not of
pixels: −log p(x) ≠ −log p(s(x)), and the decoder gives no exact p(x). So the pixel likelihood kind
is ``none`` and the evaluator gets no record. The code NLL (nats per image and bits per code) and
the autoencoder's reconstruction MSE are loss terms (logged in training) and are returned by
:meth:`TwoStage.evaluation_figures` for any split (reported by evaluation as ``test_figures``).

The first stage: ``autoencoder`` names its checkpoint (a run folder or a checkpoint folder), loaded
with :func:`genmodels.checkpoint.load_model`, frozen, and held as a submodule, so its weights are in
this model's state dict; its model name and config are copied into this config
(``autoencoder_model``, ``autoencoder_config``). Reloading a two-stage checkpoint therefore needs no
first-stage file: when the path no longer exists, the autoencoder is rebuilt from the stored config
and the state dict fills its weights. With ``autoencoder`` empty, the first stage (a ``vqvae`` of
``autoencoder_config``) is trained *jointly*, as its own optimizer group, while the prior fits the
current codes (detached): one run, no frozen stage; the quick default the contract tests use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..accepts import Accepts
from ..core import Batch, GenerativeModel, LikelihoodKind, Loss, ModelConfig, create_model, register_model
from ..data.base import DataSpec
from ..errors import UserError
from ..nn.transformer import CausalTransformer
from .vqvae import VQVAE, psnr

__all__ = ["TwoStage", "TwoStageConfig"]


@dataclass
class TwoStageConfig(ModelConfig):
    """Args:
    autoencoder: the trained first stage's checkpoint or run folder (a ``vqvae`` or ``vqgan``);
        empty: train a ``vqvae`` of ``autoencoder_config`` jointly with the prior.
    autoencoder_model: the first stage's model name (filled in from its checkpoint).
    autoencoder_config: the first stage's config (filled in from its checkpoint; with an empty
        ``autoencoder``, the config of the jointly trained ``vqvae``).
    dim: the Transformer's width.
    layers: Transformer blocks.
    heads: attention heads.
    dropout: dropout in the Transformer.
    conditional: a class-conditional prior p(s | y) (needs labelled data).
    """

    autoencoder: str = ""
    autoencoder_model: str = "vqvae"
    autoencoder_config: dict[str, Any] = field(default_factory=dict)
    dim: int = 64
    layers: int = 2
    heads: int = 4
    dropout: float = 0.0
    conditional: bool = False

    def __post_init__(self) -> None:
        if self.dim < 1 or self.layers < 1 or self.heads < 1 or self.dim % self.heads:
            raise ValueError(f"dim, layers, heads must be ≥ 1 and heads must divide dim, got {self.dim}, {self.heads}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.autoencoder_model not in ("vqvae", "vqgan"):
            raise ValueError(f"autoencoder_model must be vqvae or vqgan, got {self.autoencoder_model!r}")


@register_model("two-stage")
class TwoStage(GenerativeModel):
    """A VQ autoencoder (frozen, or trained jointly) and a Transformer prior over its codes."""

    Config = TwoStageConfig
    accepts = Accepts(
        images="a vqvae/vqgan autoencoder and a Transformer prior over its codes", sizes="any (the autoencoder's: codes at H/4×W/4 from 32×32 up)")
    likelihood_kind = LikelihoodKind.NONE

    def __init__(self, config: TwoStageConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.set_conditional(config.conditional)
        self.frozen = bool(config.autoencoder)
        self.autoencoder = self._first_stage(config, spec)
        if self.frozen:
            self.autoencoder.requires_grad_(False).eval()
        h, w = self.autoencoder.grid
        self.prior = CausalTransformer(
            self.autoencoder.num_codes, h * w, dim=config.dim, layers=config.layers, heads=config.heads,
            dropout=config.dropout, positions="grid", grid=(h, w),
            num_classes=spec.num_classes if config.conditional else None,
        )

    @staticmethod
    def _first_stage(config: TwoStageConfig, spec: DataSpec) -> VQVAE:
        if not config.autoencoder:
            model = create_model(config.autoencoder_model, spec, config.autoencoder_config or None)
            config.autoencoder_config = model.config.to_json()
            return model  # type: ignore[return-value]
        if Path(config.autoencoder).exists():
            from ..checkpoint import load_model

            model, ckpt = load_model(config.autoencoder)
            if not isinstance(model, VQVAE):
                raise UserError(f"autoencoder={config.autoencoder} holds a '{model.name}', not a vqvae or vqgan")
            if tuple(model.spec.shape) != tuple(spec.shape) or model.spec.levels != spec.levels:
                raise UserError(
                    f"the autoencoder was trained on '{model.spec.name}' {model.spec.shape} with {model.spec.levels} "
                    f"levels; this data '{spec.name}' is {spec.shape} with {spec.levels} levels"
                )
            config.autoencoder_model = model.name
            config.autoencoder_config = model.config.to_json()
            return model
        if not config.autoencoder_config:
            raise UserError(
                f"autoencoder={config.autoencoder} does not exist; name a trained vqvae or vqgan run "
                "(genmodels train vqvae ...) or its checkpoint folder"
            )
        # A two-stage checkpoint reloaded without its first stage's file: the architecture comes from
        # the stored config and the weights from this model's own state dict.
        return create_model(config.autoencoder_model, spec, config.autoencoder_config)  # type: ignore[return-value]

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:
            self.autoencoder.eval()  # a frozen first stage never updates its codebook or counts
        return self

    def optimizer_groups(self):
        prior = [p for p in self.prior.parameters()]
        if self.frozen:
            return {"prior": prior}
        return {"autoencoder": [p for p in self.autoencoder.parameters() if p.requires_grad], "prior": prior}

    # --- the tokenizer view (genmodels encode / decode) -------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        """(B, C, H, W) levels → (B, h, w) codes of the first stage."""
        return self.autoencoder.encode(x)

    def decode(self, codes: Tensor) -> Tensor:
        """(B, h, w) codes → (B, C, H, W) images, by the first stage's decoder."""
        return self.autoencoder.decode(codes)

    # --- the prior ----------------------------------------------------------------------------------
    def codes(self, x: Tensor) -> Tensor:
        """(B, C, H, W) images → (B, h·w) codes, row-major."""
        return self.autoencoder.encode(x).reshape(len(x), -1)

    def code_log_prob(self, codes: Tensor, y: Tensor | None = None) -> Tensor:
        """Exact log p_θ(s | y) of code sequences (B, T) in nats → (B,)."""
        logits = self.prior.logits(codes, y if self.conditional else None)  # (B, T, K)
        return -F.cross_entropy(logits.transpose(1, 2), codes, reduction="none").sum(1)

    @torch.no_grad()
    def evaluation_figures(self, batch: Batch) -> dict[str, Tensor]:
        """Per-example figures for a batch: the prior's exact code NLL in nats per image and bits
        per code, and the first stage's reconstruction MSE and PSNR (images on [0, 1])."""
        codes = self.codes(batch.x)
        nll = -self.code_log_prob(codes, self.labels(batch.y, len(batch)))
        mse = self.autoencoder.reconstruction_mse(batch.x, self.autoencoder.decode(codes.reshape(len(codes), *self.autoencoder.grid)))
        return {"code_nll": nll, "bits_per_code": nll / (codes.shape[1] * math.log(2)), "mse": mse, "psnr": psnr(mse)}

    def loss(self, batch: Batch, *, step: int = 0, group: str = "prior") -> Loss:
        if group == "autoencoder":
            return self.autoencoder.loss(batch, step=step)
        codes = self.codes(batch.x)  # no gradient reaches the first stage
        nll = -self.code_log_prob(codes, self.labels(batch.y, len(batch)))
        terms = {"code_nll": nll.detach(), "bits_per_code": nll.detach() / (codes.shape[1] * math.log(2))}
        if self.frozen:
            with torch.no_grad():
                grid = codes.reshape(len(codes), *self.autoencoder.grid)
                terms["mse"] = self.autoencoder.reconstruction_mse(batch.x, self.autoencoder.decode(grid))
        return Loss(nll.mean(), terms)

    # --- sampling -----------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_codes(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """(n, h, w) codes drawn from the fitted prior, s_t ~ softmax(logits_t / temperature)."""
        self.check_temperature(temperature)
        y = self.labels(y, n)
        cache = self.prior.new_cache()
        previous, out = None, []
        for t in range(self.prior.length):
            logits = self.prior.step(previous, t, cache, y, n=n) / temperature  # (n, K)
            probs = torch.softmax(logits.float(), -1).cpu()
            previous = torch.multinomial(probs, 1, generator=generator)[:, 0].to(self.device)
            out.append(previous)
        return torch.stack(out, 1).reshape(n, *self.autoencoder.grid)

    @torch.no_grad()
    def sample(
        self, n: int, *, y: Tensor | None = None, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> Tensor:
        """Codes from the prior (at ``temperature``), decoded by the first stage."""
        return self.autoencoder.decode(self.sample_codes(n, y=y, generator=generator, temperature=temperature))

    def sample_with_info(self, n: int, **options: Any) -> tuple[Tensor, dict[str, Any]]:
        return self.sample(n, **options), {"nfe": self.prior.length}
