"""Small models that exercise the trainer's general paths: a stochastic bound (RNG in the loss),
two optimizers stepped in turn with no likelihood (kind ``none``), and a loss that diverges.

They are registered only inside the tests that use them (``registered``), so the registry-wide
tests never see them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genmodels import core
from genmodels.core import Batch, GenerativeModel, LikelihoodKind, LogLikelihood, Loss, ModelConfig, OptimizerGroup


@contextlib.contextmanager
def registered(name: str, cls: type[GenerativeModel]):
    core.register_model(name)(cls)
    try:
        yield cls
    finally:
        core._MODELS.pop(name, None)


@dataclass
class NoisyConfig(ModelConfig):
    noise: float = 0.1
    diverge_at: int = -1  # the step at which the loss becomes NaN (-1: never)
    # the second measure ("ode") is ode_sign · log p − 1: with −1 it gets worse as training improves
    # log p, so the two records disagree on the best checkpoint (tests of --select-measure)
    ode_sign: float = 1.0


class NoisyBound(GenerativeModel):
    """Per-dimension categoricals whose logits are perturbed by Gaussian noise in the loss.

    Its 'likelihood' is a Monte Carlo average over noise (a bound by Jensen), so evaluation draws
    random numbers too: it tests that training, resume and evaluation handle RNG state.
    """

    Config = NoisyConfig
    likelihood_kind = LikelihoodKind.BOUND

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.logits = nn.Parameter(torch.zeros(spec.dims, spec.levels))

    def _log_p(self, x, noise=None):
        if noise is None:
            noise = torch.randn(len(x), *self.logits.shape)
        noisy = self.logits + self.config.noise * noise  # (B, D, K)
        log_p = F.log_softmax(noisy, dim=1)
        flat = x.reshape(len(x), -1)
        return log_p.gather(2, flat.unsqueeze(2)).squeeze(2).sum(1)

    def loss(self, batch, *, step=0, group="model"):
        nll = -self._log_p(batch.x)
        loss = nll.mean()
        if step == self.config.diverge_at:
            loss = loss * float("nan")
        return Loss(loss, {"nll": nll})

    def log_likelihoods(self, batch, *, draws: int = 2):
        # Evaluation noise through batch.randn: each example's draws depend on it alone.
        values = torch.stack([self._log_p(batch.x, batch.randn(*self.logits.shape)) for _ in range(draws)]).mean(0)
        # A second measure whose cost varies by batch, like an adaptive ODE solver's.
        evaluations = 10 if len(batch) % 2 else 20
        return [
            LogLikelihood(values, LikelihoodKind.BOUND, "noisy_bound", samples=draws, terms={"log_p": values}),
            LogLikelihood(self.config.ode_sign * values - 1.0, LikelihoodKind.ESTIMATE, "ode", evaluations=evaluations),
        ]

    def sample_with_info(self, n, **options):
        return self.sample(n, **options), {"nfe": 7}

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None, temperature: float = 1.0):
        self.last_temperature = temperature
        probs = F.softmax(self.logits / temperature, dim=1)
        return torch.multinomial(probs, n, replacement=True, generator=generator).T.reshape(n, *self.spec.shape)


class TwoPlayer(GenerativeModel):
    """A minimal adversarial pair: a generator of per-pixel logits and a linear critic.

    No likelihood (kind ``none``); two optimizer groups stepped in turn.
    """

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.NONE

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.generator_logits = nn.Parameter(torch.zeros(spec.dims))
        self.critic = nn.Linear(spec.dims, 1)
        self.calls: list[str] = []

    def optimizer_groups(self):
        return {"critic": list(self.critic.parameters()), "generator": [self.generator_logits]}

    def _fake(self, n):
        return torch.sigmoid(self.generator_logits).expand(n, -1)

    def loss(self, batch, *, step=0, group="model"):
        self.calls.append(group)
        real = batch.x.reshape(len(batch), -1).float() / (self.spec.levels - 1)
        if group == "critic":
            score = self.critic(real).squeeze(1) - self.critic(self._fake(len(batch)).detach()).squeeze(1)
            return Loss(-score.mean(), {"critic_gap": score})
        fake_score = self.critic(self._fake(len(batch))).squeeze(1)
        return Loss(-fake_score.mean(), {"fake_score": fake_score})

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        probs = torch.sigmoid(self.generator_logits).expand(n, -1)
        bits = torch.bernoulli(probs, generator=generator).to(torch.int64)
        return (bits * (self.spec.levels - 1)).reshape(n, *self.spec.shape)


class GaussianDensity(GenerativeModel):
    """A diagonal Gaussian density for continuous data: exercises the continuous-data path
    (float batches, density log-likelihoods, scatter plots)."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.EXACT
    handles_continuous = True
    handles_discrete = False

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.mean = nn.Parameter(torch.zeros(spec.dims))
        self.log_std = nn.Parameter(torch.zeros(spec.dims))

    def _normal(self):
        return torch.distributions.Normal(self.mean, self.log_std.exp())

    def log_prob(self, x, y=None):
        return self._normal().log_prob(x.reshape(len(x), -1)).sum(1)

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        noise = torch.randn(n, self.spec.dims, generator=generator, device=self.mean.device)
        return (self.mean + self.log_std.exp() * noise).reshape(n, *self.spec.shape)


class SharedFakeGAN(GenerativeModel):
    """A GAN-like pair whose training step makes one generator forward and shares it: the
    discriminator's loss on the detached fakes, then the generator's loss on the same fakes through
    the updated discriminator (``training_step``). The generator steps every second step with its
    own lr and betas; noise comes from the global RNG, so resume must restore it."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.NONE

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.generator = nn.Linear(4, spec.dims)
        self.discriminator = nn.Sequential(nn.Linear(spec.dims, 8), nn.Tanh(), nn.Linear(8, 1))
        self.generator_forwards = 0

    def optimizer_groups(self):
        return {
            "discriminator": OptimizerGroup(list(self.discriminator.parameters()), betas=(0.5, 0.999)),
            "generator": OptimizerGroup(list(self.generator.parameters()), lr_scale=0.5, betas=(0.5, 0.999), every=2),
        }

    def _fake(self, n):
        self.generator_forwards += 1
        return torch.sigmoid(self.generator(torch.randn(n, 4, device=self.device)))

    def training_step(self, batch, step, groups, forward):
        real = batch.x.reshape(len(batch), -1).float() / (self.spec.levels - 1)
        fake = self._fake(len(batch))
        if "discriminator" in groups:
            d_real, d_fake = self.discriminator(real).squeeze(1), self.discriminator(fake.detach()).squeeze(1)
            hinge = F.relu(1 - d_real) + F.relu(1 + d_fake)
            yield "discriminator", Loss(hinge.mean(), {"hinge": hinge})
        if "generator" in groups:
            score = self.discriminator(fake).squeeze(1)
            yield "generator", Loss(-score.mean(), {"fake_score": score})

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        z = torch.randn(n, 4, generator=generator, device=self.device)
        levels = torch.round(torch.sigmoid(self.generator(z)) * (self.spec.levels - 1)).to(torch.int64)
        return levels.reshape(n, *self.spec.shape)


class DequantizedGaussian(GenerativeModel):
    """A flow-like model: a diagonal Gaussian density, exact on continuous data and, on discrete data
    dequantized into [0, 1), a bound (units.discrete_bound_from_density) with its draws."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.EXACT
    handles_continuous = True

    @classmethod
    def kind_for(cls, spec):
        return LikelihoodKind.EXACT if not spec.is_discrete else LikelihoodKind.BOUND

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.mean = nn.Parameter(torch.full((spec.dims,), 0.5 if spec.is_discrete else 0.0))
        self.log_std = nn.Parameter(torch.zeros(spec.dims))

    def _density(self, y):
        return torch.distributions.Normal(self.mean, self.log_std.exp()).log_prob(y.reshape(len(y), -1)).sum(1)

    def log_prob(self, x, y=None):
        return self._density(x)

    def _bound(self, batch, noise):
        from genmodels.units import discrete_bound_from_density

        y = (batch.x.reshape(len(batch), -1).float() + noise) / self.spec.levels
        return discrete_bound_from_density(self._density(y), self.spec.dims, self.spec.levels)

    def loss(self, batch, *, step=0, group="model"):
        if not self.spec.is_discrete:
            return super().loss(batch, step=step, group=group)
        nll = -self._bound(batch, torch.rand(len(batch), self.spec.dims))
        return Loss(nll.mean(), {"nll": nll})

    def log_likelihoods(self, batch, *, draws: int = 1):
        if not self.spec.is_discrete:
            return super().log_likelihoods(batch)
        values = torch.stack([self._bound(batch, batch.rand(self.spec.dims)) for _ in range(draws)]).mean(0)
        return [LogLikelihood(values, LikelihoodKind.BOUND, "dequantized", samples=draws)]

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        noise = torch.randn(n, self.spec.dims, generator=generator, device=self.mean.device)
        values = self.mean + self.log_std.exp() * noise
        if self.spec.is_discrete:
            from genmodels.units import quantize

            values = quantize(values.clamp(0, 1), self.spec.levels)
        return values.reshape(n, *self.spec.shape)
