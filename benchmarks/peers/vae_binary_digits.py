"""genmodels' ``vae`` against pythae's ``VAE`` on ``binary-digits``, interleaved on the peer harness at equal CPU time.

``binary-digits``: scikit-learn's 8×8 digits thresholded at half the range (x ≥ 8), the PROTOCOL split
(1 257 / 180 / 360). Every contender is a Gaussian-latent VAE, p(z) = N(0, I), q(z|x) = N(μ, diag σ²),
with a factorized Bernoulli decoder over the 64 binary pixels, trained on the negative ELBO:

- ``pythae-vae``: ``pythae.models.VAE`` with ``VAEConfig(input_dim=(1, 8, 8), latent_dim=L,
  reconstruction_loss="bce")`` and pythae's default MLPs (``Encoder_VAE_MLP``: 64 → 512 ReLU → (μ,
  log σ²); ``Decoder_AE_MLP``: L → 512 ReLU → 64 sigmoid). Its loss is pythae's own ``VAE.forward``:
  ``F.binary_cross_entropy(sigmoid output, x)`` summed over pixels + the closed-form KL, batch mean.
- ``pythae-vae-256x256``: the same pythae ``VAE`` class and loss with user-given networks
  (``BaseEncoder``/``BaseDecoder`` subclasses below: 64 → 256 → 256 ReLU, mirrored, sigmoid output).
- ``vae`` / ``vae-256x256``: genmodels' ``vae`` with ``hidden=(512,)`` (the same layer sizes and
  parameter count as pythae's default MLP; GELU instead of ReLU) or ``hidden=(256, 256)`` (the
  configuration of BENCHMARKS.md's ``latent_digits.py`` row), Bernoulli decoder on logits, the ELBO;
  ``vae-relu``: ``hidden=(512,)`` with ``activation="relu"``, pythae's default networks exactly.
  A genmodels name may carry config overrides, ``NAME:JSON`` (e.g. ``'vae-relu:{"dropout": 0.2}'``):
  our model's training choices (dropout, ``marginal_init``, KL warm-up, free bits, β); the sizes
  (``latent_dim``, ``hidden``) stay those of the base name, so the networks keep pythae's shapes. The
  training step passes ``step=`` to ``loss`` (KL warm-up counts optimizer steps), and the
  ``initialize`` hook runs on the training split before training, as genmodels' trainer does.
- Training options, for ANY contender (pythae's too), in the same ``NAME:JSON``: ``"ema": d`` (an EMA of
  the weights with decay d, genmodels' ``--ema``; validation, selection and test use the averaged
  weights) and ``"jitter": a`` (each training batch is re-binarized from the grey levels with noise
  on the threshold, 1[x/16 + u ≥ 7.5/16], u ~ U(−a, a): the train split of genmodels'
  ``binary-digits-jitter``, whose a is 3/16, drawn with its ``JitteredThresholdSplit.binarize``).
  These change the training, not the model, so they can be given to both libraries to separate the
  effect of the option from that of the implementation.

Training (``harness.run_interleaved``, the same for all): Adam, the same learning rate, batch size,
gradient clipping at 10 and sequence of minibatches, ``--cpu-seconds`` of thread CPU time each (equal
CPU time, not equal steps; the steps are reported), interleaved in this process. Every
``--eval-every`` CPU seconds the validation IWAE-``--val-k`` NLL picks the checkpoint; the best state is
scored once on the full test split.

Scoring, all with k = ``--k`` importance samples (5 000 by default):

1. ``shared``: ONE function (:func:`iwae_bernoulli`) computes log (1/k) Σ p(x|z_i) p(z_i)/q(z_i|x) from
   each model's encoder (μ, log σ) and decoder *logits* (for pythae's sigmoid decoder, the logits are
   the input of its final ``nn.Sigmoid``), with the SAME ε for the same test image (per-example seeds,
   ``Batch.randn``), so the per-example differences between models are paired. The same draws give a
   Monte Carlo ELBO (the mean of log w).
2. ``pythae get_nll``: pythae's own ``VAE.get_nll(data, n_samples=k, batch_size=1000)``, called on each
   test image separately (it averages per-image estimates anyway; this gives the per-image values for
   the standard error), under ``torch.no_grad()`` after ``torch.manual_seed(seed)``. For genmodels'
   models it runs on a pythae ``VAE`` whose encoder and decoder wrap ours (μ, log σ² = 2 log σ; sigmoid
   of our logits): pythae's estimator on both.
3. genmodels' own ``log_likelihoods(k=...)`` for genmodels' models (its evaluation noise).

``--skip-get-nll`` skips 2. and 3. (exploration runs: the shared estimator only).

The head-to-head of BENCHMARKS.md (pythae's network exactly on both sides, no option on either; the
options as separate rows given to both), one run per seed S, in the pythae venv (requirements-pythae.txt):

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/venv-pythae/bin/python benchmarks/peers/vae_binary_digits.py --models pythae-vae vae-relu \
        'pythae-vae:{"jitter":0.1875,"ema":0.998}' 'vae-relu:{"jitter":0.1875,"ema":0.998}' --cpu-seconds 60 --seed S --skip-get-nll --out DIR
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import genmodels_contender  # noqa: E402
from harness import Contender, HarnessSettings, paired_differences, print_differences, run_interleaved, version, write_results  # noqa: E402

import genmodels  # noqa: E402
from genmodels.core import Batch  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402
from genmodels.data.base import JitteredThresholdSplit  # noqa: E402

DEFAULT_MODELS = ["pythae-vae", "vae", "pythae-vae-256x256", "vae-256x256"]
#: ``vae-relu``: pythae's default sizes and its ReLU (``activation="relu"``): the architectures then match exactly
MODELS = [*DEFAULT_MODELS, "vae-relu"]
LOG_2PI = math.log(2 * math.pi)
#: importance samples per Batch.randn call of the shared estimator (fixed: the draws then do not
#: depend on the batch size or on the model)
CHUNK = 100
#: override keys that change the training, not the model: allowed for every contender
TRAINING_OPTIONS = {"ema", "jitter"}


@torch.no_grad()
def iwae_bernoulli(encode, logits, batch: Batch, k: int) -> tuple[Tensor, Tensor]:
    """The k-sample importance-weighted estimate of log p(x) and the Monte Carlo ELBO, per example.

    Args:
        encode: x (B, 1, 8, 8) int64 in {0, 1} → (μ, log σ), each (B, L).
        logits: z (N, L) → Bernoulli logits (N, D).
        batch: the data with per-example seeds; ε ~ N(0, I) comes from ``batch.randn`` in chunks of
            :data:`CHUNK` samples, so every model sees the same ε for the same example.
        k: importance samples per example.

    Returns:
        (log (1/k) Σ_i w_i, (1/k) Σ_i log w_i), each (B,) float64, with
        w_i = p(x|z_i) p(z_i) / q(z_i|x), z_i = μ + σ ε_i (Burda et al. 2016, eq. 7).
    """
    x = batch.x.reshape(len(batch.x), -1).to(torch.float32)  # (B, D)
    mu, log_sigma = encode(batch.x)
    b, latent = mu.shape
    log_w = []
    done = 0
    while done < k:
        c = min(CHUNK, k - done)
        eps = batch.randn(c, latent)  # (B, c, L)
        z = mu.unsqueeze(1) + log_sigma.exp().unsqueeze(1) * eps
        log_q = (-0.5 * eps.square() - log_sigma.unsqueeze(1) - 0.5 * LOG_2PI).sum(-1)  # (B, c)
        log_pz = (-0.5 * z.square() - 0.5 * LOG_2PI).sum(-1)
        lg = logits(z.reshape(b * c, latent)).reshape(b, c, -1)
        log_px = -F.binary_cross_entropy_with_logits(lg, x.unsqueeze(1).expand_as(lg), reduction="none").sum(-1)
        log_w.append((log_px + log_pz - log_q).double())
        done += c
    log_w = torch.cat(log_w, dim=1)
    return torch.logsumexp(log_w, dim=1) - math.log(k), log_w.mean(dim=1)


# --- pythae ---------------------------------------------------------------------------------------------
def pythae_classes():
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder

    class MLPEncoder(BaseEncoder):
        """64 → hidden… ReLU → (μ, log σ²), for pythae's VAE."""

        def __init__(self, dims: int, hidden: tuple[int, ...], latent: int):
            BaseEncoder.__init__(self)
            layers, width = [], dims
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            self.body = nn.Sequential(*layers)
            self.embedding = nn.Linear(width, latent)
            self.log_var = nn.Linear(width, latent)

        def forward(self, x):
            h = self.body(x.reshape(len(x), -1))
            return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))

    class MLPDecoder(BaseDecoder):
        """latent → hidden… ReLU → D sigmoid (pythae's convention: the decoder returns probabilities)."""

        def __init__(self, dims: int, hidden: tuple[int, ...], latent: int, shape: tuple[int, ...]):
            BaseDecoder.__init__(self)
            layers, width = [], latent
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU()]
                width = h
            self.net = nn.Sequential(*layers, nn.Linear(width, dims))
            self.shape = shape

        def logits(self, z):
            return self.net(z)

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)).reshape(len(z), *self.shape))

    class WrappedEncoder(BaseEncoder):
        """genmodels' encoder seen by pythae: (μ, log σ²)."""

        def __init__(self, model):
            BaseEncoder.__init__(self)
            self.model = model

        def forward(self, x):
            mu, log_sigma = self.model.encode(x)
            return ModelOutput(embedding=mu, log_covariance=2 * log_sigma)

    class WrappedDecoder(BaseDecoder):
        """genmodels' Bernoulli decoder seen by pythae: probabilities σ(logits)."""

        def __init__(self, model):
            BaseDecoder.__init__(self)
            self.model = model

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.model.decode(z)).reshape(len(z), *self.model.spec.shape))

    return VAE, VAEConfig, MLPEncoder, MLPDecoder, WrappedEncoder, WrappedDecoder


def pythae_default_logits(decoder, z: Tensor) -> Tensor:
    """The logits of pythae's ``Decoder_AE_MLP``: its layers are [Linear+ReLU, Linear+Sigmoid]; the
    input of the final Sigmoid."""
    return decoder.layers[1][0](decoder.layers[0](z))


def pythae_contender(name: str, spec, args) -> Contender:
    VAE, VAEConfig, MLPEncoder, MLPDecoder, _, _ = pythae_classes()
    config = VAEConfig(input_dim=spec.shape, latent_dim=args.latent_dim, reconstruction_loss="bce")
    if split_name(name)[0] == "pythae-vae":
        model = VAE(config)  # Encoder_VAE_MLP + Decoder_AE_MLP
        logits = lambda z: pythae_default_logits(model.decoder, z)  # noqa: E731
        description = ("pythae.models.VAE(VAEConfig(input_dim=(1,8,8), latent_dim=%d, reconstruction_loss='bce')), "
                       "default Encoder_VAE_MLP (64→512 ReLU→μ, log σ²) + Decoder_AE_MLP (L→512 ReLU→64 sigmoid); "
                       "loss: VAE.forward (BCE on probabilities + KL)" % args.latent_dim)
    else:
        hidden = (256, 256)
        model = VAE(config, encoder=MLPEncoder(spec.dims, hidden, args.latent_dim),
                    decoder=MLPDecoder(spec.dims, hidden, args.latent_dim, spec.shape))
        logits = model.decoder.logits
        description = ("pythae.models.VAE(VAEConfig(..., reconstruction_loss='bce')) with user BaseEncoder/BaseDecoder "
                       "MLPs 64→256→256 ReLU (mirrored, sigmoid output); loss: VAE.forward")

    def encode(x):
        out = model.encoder(x.to(torch.float32))
        return out.embedding, 0.5 * out.log_covariance

    return Contender(
        name=name, library=version("pythae"), module=model,
        train_nll=lambda x: model({"data": x.to(torch.float32)}).loss,
        log_likelihoods=lambda batch, k: iwae_bernoulli(encode, logits, batch, k)[0],
        description=description,
        extra={"encode": encode, "logits": logits, "pythae_model": model},
    )


def split_name(name: str) -> tuple[str, dict]:
    """``vae-relu:{"dropout": 0.2}`` → (``vae-relu``, {"dropout": 0.2}): a contender with overrides
    (genmodels config keys, or the :data:`TRAINING_OPTIONS`; the sizes stay those of its base name)."""
    base, _, text = name.partition(":")
    return base, (json.loads(text) if text else {})


def model_options(name: str) -> dict:
    """The overrides of ``name`` that configure genmodels' model (not the training options)."""
    return {k: v for k, v in split_name(name)[1].items() if k not in TRAINING_OPTIONS}


def model_name(text: str) -> str:
    """argparse type of ``--models``: a known name, with optional ``:JSON`` overrides (model keys for
    genmodels' contenders only; the training options for all)."""
    try:
        base, overrides = split_name(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: the part after ':' is not JSON ({error})") from None
    if base not in MODELS or (model_options(text) and base.startswith("pythae")):
        raise argparse.ArgumentTypeError(f"{text!r}: give one of {', '.join(MODELS)}; any may add "
                                         f":JSON with {sorted(TRAINING_OPTIONS)}, genmodels ones also config keys")
    if {"latent_dim", "hidden"} & set(overrides):
        raise argparse.ArgumentTypeError("the sizes (latent_dim, hidden) are fixed by the base name: "
                                         "the comparison is at equal sizes")
    ema, jitter = overrides.get("ema"), overrides.get("jitter")
    if ema is not None and not 0.0 < ema < 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: ema must lie in (0, 1)")
    if jitter is not None and not 0.0 <= jitter <= 0.5:
        raise argparse.ArgumentTypeError(f"{text!r}: jitter must lie in [0, 0.5]")
    return text


def jittered_batches(levels_x: Tensor, levels: int, amplitude: float, seed: int):
    """``train_batch`` for the common loop: the indexed training images re-binarized with a fresh
    threshold-noise draw at every step (``JitteredThresholdSplit.binarize``)."""
    split = JitteredThresholdSplit(levels_x, levels, amplitude=amplitude)
    generator = torch.Generator().manual_seed(1_000_003 + seed)

    def train_batch(index: Tensor) -> Tensor:
        intensity = split.x[index].to(torch.float32) / (levels - 1)
        return split.binarize(intensity, generator)

    return train_batch


def vae_contender(name: str, spec, args) -> Contender:
    base, _ = split_name(name)
    hidden = (256, 256) if base == "vae-256x256" else (512,)
    config = {"latent_dim": args.latent_dim, "hidden": hidden, "activation": "relu" if base == "vae-relu" else "gelu",
              **model_options(name)}
    calls = [0]

    def loss(model, x: Tensor) -> Tensor:
        # the training step reaches loss(step=...) (KL warm-up counts steps): harness.run_interleaved
        # makes 3 untimed warm-up calls (the first under the FLOP counter), then one per optimizer step
        step = max(calls[0] - 3, 0)
        calls[0] += 1
        return model.loss(Batch(x), step=step).loss

    # genmodels' trainer's data-dependent init hook (a no-op unless the config asks for one, e.g.
    # marginal_init) runs on the training split in stored order, inside genmodels_contender
    contender = genmodels_contender("vae", spec, args.train_x, config, init_batch=args.batch_size, loss=loss,
                                    description=f"genmodels vae {config}: MLP, Bernoulli decoder on logits; "
                                                "loss: the ELBO (with the config's training options)")
    model = contender.module
    contender.name = name
    contender.log_likelihoods = lambda batch, k: iwae_bernoulli(model.encode, model.decode, batch, k)[0]
    contender.extra = {"encode": model.encode, "logits": model.decode, "genmodels_model": model}
    return contender


def wrapped_for_pythae(model, spec, latent_dim: int):
    VAE, VAEConfig, _, _, WrappedEncoder, WrappedDecoder = pythae_classes()
    config = VAEConfig(input_dim=spec.shape, latent_dim=latent_dim, reconstruction_loss="bce")
    return VAE(config, encoder=WrappedEncoder(model), decoder=WrappedDecoder(model))


@torch.no_grad()
def pythae_get_nll(pythae_model, test_x: Tensor, k: int, seed: int) -> Tensor:
    """pythae's ``get_nll`` per test image: log p estimates (float64, (N,)). pythae returns the mean
    log-likelihood (a positive NLL is its negative)."""
    pythae_model.eval()
    torch.manual_seed(seed)
    x = test_x.to(torch.float32)
    return torch.tensor([float(pythae_model.get_nll(x[i : i + 1], n_samples=k, batch_size=min(k, 1000)))
                         for i in range(len(x))], dtype=torch.float64)


def mean_se(values: Tensor) -> tuple[float, float]:
    return values.mean().item(), values.std().item() / math.sqrt(len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, type=model_name,
                        help=f"{', '.join(MODELS)}; genmodels ones optionally NAME:JSON (config overrides, e.g. "
                             "'vae-relu:{\"dropout\": 0.2}')")
    parser.add_argument("--cpu-seconds", type=float, default=120.0, help="thread CPU seconds of training per model")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=float, default=5.0, help="CPU seconds of training between validations")
    parser.add_argument("--val-k", type=int, default=64)
    parser.add_argument("--k", type=int, default=5000, help="importance samples of every test estimate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-get-nll", action="store_true",
                        help="skip pythae's get_nll on every model (exploration runs: the shared estimator only)")
    parser.add_argument("--out", default=None, help="folder for results.json (printed either way)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset("binary-digits")
    spec = data.spec
    train_x, val_x, test_x = data.train.x.long(), data.validation.x.long(), data.test.x.long()
    args.train_x = train_x
    jitter_source = load_dataset("binary-digits-jitter").train  # the grey levels of the same train images
    assert torch.equal((jitter_source.x.long() >= 8).long(), train_x), "the jitter's levels are binary-digits' train"
    print(f"binary-digits: train {len(train_x)}, validation {len(val_x)}, test {len(test_x)}, shape {spec.shape}",
          flush=True)
    contenders, extras = [], []
    for name in args.models:
        torch.manual_seed(args.seed)
        contender = (pythae_contender if name.startswith("pythae") else vae_contender)(name, spec, args)
        extras.append(contender.extra)
        contender.extra = {}
        training = split_name(name)[1]
        contender.ema_decay = training.get("ema")
        if training.get("jitter"):
            contender.train_batch = jittered_batches(jitter_source.x, jitter_source.levels, training["jitter"], args.seed)
            contender.augmentation = f"jitter {training['jitter']}"
        contenders.append(contender)
    settings = HarnessSettings(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, lr=args.lr,
                               eval_every=args.eval_every, val_draws=args.val_k, test_draws=args.k, seed=args.seed)
    results = run_interleaved(contenders, train_x, val_x, test_x, settings, progress=lambda s: print("#", s, flush=True))
    for name, contender, extra, row in zip(args.models, contenders, extras, results):
        row["jitter"] = split_name(name)[1].get("jitter", 0.0)
        # the shared estimator's Monte Carlo ELBO from the same draws (test_values are its IWAE-k)
        module = contender.module
        module.eval()
        seeds = torch.arange(len(test_x))
        iwae, elbo = iwae_bernoulli(extra["encode"], extra["logits"], Batch(test_x, seeds=seeds), args.k)
        assert torch.allclose(iwae, row["test_values"]), "the shared estimator must repeat itself exactly"
        m, s = mean_se(elbo)
        row["shared_elbo_nll"], row["shared_elbo_se"] = -m, s
        row["shared_iwae_nll"], row["shared_iwae_se"] = row["test_nll_nats"], row["test_nll_standard_error"]
        # pythae's own estimator
        if not args.skip_get_nll:
            tick = time.perf_counter()
            target = extra.get("pythae_model") or wrapped_for_pythae(extra["genmodels_model"], spec, args.latent_dim)
            values = pythae_get_nll(target, test_x, args.k, args.seed)
            m, s = mean_se(values)
            row["pythae_get_nll"], row["pythae_get_nll_se"] = -m, s
            row["pythae_get_nll_s"] = round(time.perf_counter() - tick, 1)
            row["pythae_values"] = values
        # genmodels' own estimator (our models only)
        if "genmodels_model" in extra and not args.skip_get_nll:
            from genmodels.evaluate import evaluate_likelihood

            records = {r.measure: r for r in evaluate_likelihood(extra["genmodels_model"], data.test, options={"k": args.k})}
            row["genmodels_iwae_nll"], row["genmodels_iwae_se"] = records["iwae"].nll_nats, records["iwae"].stderr_nats
            row["genmodels_elbo_nll"] = records["elbo"].nll_nats
        module.train()
        printable = {k: v for k, v in row.items() if k not in ("history", "test_values", "pythae_values")}
        print(json.dumps(printable), flush=True)

    names = [r["model"] for r in results]
    # matched sizes only: vae and vae-relu ↔ pythae-vae (512), vae-256x256 ↔ pythae-vae-256x256
    partner = {"vae": "pythae-vae", "vae-relu": "pythae-vae", "vae-256x256": "pythae-vae-256x256"}
    # every genmodels row against every pythae row of its size, whatever their training options
    pairs = [(a, b) for a in names for b in names
             if split_name(a)[0] in partner and split_name(b)[0] == partner[split_name(a)[0]]]
    differences = paired_differences(results, pairs)
    meta = {"script": "benchmarks/peers/vae_binary_digits.py", "argv": sys.argv[1:],
            "versions": [f"genmodels {genmodels.__version__} ({genmodels.__file__})", version("pythae")]}
    print(f"\nTest NLL (nats per image, ± standard error over the {len(test_x)} test images), k = {args.k}:")
    print("| model | library | params | CPU s | steps | train ex/CPU-s | best val at (CPU s) | val IWAE-%d | "
          "ELBO (shared) | IWAE (shared) | pythae get_nll | genmodels IWAE |" % args.val_k)
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        ours = f"{r['genmodels_iwae_nll']:.2f} ± {r['genmodels_iwae_se']:.2f}" if "genmodels_iwae_nll" in r else "—"
        pythae_nll = f"{r['pythae_get_nll']:.2f} ± {r['pythae_get_nll_se']:.2f}" if "pythae_get_nll" in r else "—"
        print(f"| {r['model']} | {r['library']} | {r['parameters']:,} | {r['cpu_s']:.0f} | {r['steps']:,} | "
              f"{r['train_examples_per_cpu_s']:,.0f} | {r['best_validation_at_cpu_s']:g} | {r['validation_nll_nats']:.2f} | "
              f"{r['shared_elbo_nll']:.2f} ± {r['shared_elbo_se']:.2f} | {r['shared_iwae_nll']:.2f} ± {r['shared_iwae_se']:.2f} | "
              f"{pythae_nll} | {ours} |")
    print_differences(differences, "Paired test differences, nats (a − b; negative: a is better), shared IWAE estimator, ± s.e.:",
                      digits=3)
    pythae_diffs = [] if args.skip_get_nll else paired_differences(results, pairs, key="pythae_values")
    print_differences(pythae_diffs, "", digits=3, prefix="(pythae get_nll) ")
    write_results(args.out, meta, results, paired_differences_shared_iwae_nats=differences,
                  paired_differences_pythae_get_nll_nats=pythae_diffs)


if __name__ == "__main__":
    main()
