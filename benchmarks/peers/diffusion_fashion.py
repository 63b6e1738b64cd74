"""genmodels' ``edm`` against denoising-diffusion-pytorch (lucidrains) on ``fashion-mnist``, on the peer harness:
interleaved at equal thread-CPU time, at equal parameters **and** at equal FLOPs per training example,
checkpoints chosen on the validation loss, samples at equal NFE (the peer with its own DDIM), FD in
genmodels' Fashion-MNIST feature space against the test split on the same number of samples.

``fashion-mnist``: 1×28×28 images of 256 levels, the PROTOCOL split (55 000 / 5 000 / 10 000). The
training split trains, the first ``--val-examples`` images of the validation split choose the checkpoint,
the test split is only the reference of the sample-quality figures (scored once, after choosing).

The contenders (``harness.run_interleaved``):

* ``peer``: denoising-diffusion-pytorch's ``GaussianDiffusion(Unet(dim=32, channels=1, dim_mults=(1, 2, 2)),
  image_size=28, timesteps=1000)`` with all its other defaults: objective ``pred_v``, the ``sigmoid`` β
  schedule, ``auto_normalize=True`` (it maps [0, 1] → [−1, 1] itself: it is fed x/255). Its training
  loss is its own ``forward``. dim_mults (1, 2, 2) is the dim-32 U-Net whose downsampling factor 4
  divides 28 (1 409 665 parameters); its default (1, 2, 4, 8) has 9.2 M and needs 32×32 inputs.
  ``--peer-dim``/``--peer-dim-mults`` change it.
* genmodels' ``edm`` (σ(t) = t, EDM preconditioning, log-normal training σ, uniform dequantization to
  [−1, 1]), one contender per ``--edm-models`` entry, ``edm`` or ``edm:JSON`` (JSON merged over
  :data:`DEFAULT_EDM_CONFIG`: 28 channels × (1, 2, 3), one residual block per level, attention at 7×7,
  scale-shift embedding, 1 382 305 parameters, −2 % of the peer's, but 0.66× its FLOPs per example).
  The default list adds ``edm:{"channels": 34}``, sized to the peer's FLOPs per training example (the
  rows report both counts). Trained by its own ``model.loss``.

Training, the same for every contender: batch ``--batch-size``, the same sequence of minibatch indices,
Adam (torch's defaults but the learning rate), ``--lr`` under ``--schedule`` over the CPU budget,
gradient norm clipped at ``--grad-clip``, ``--cpu-seconds`` of thread CPU time each, the next step always
to whoever has spent the least (after three untimed warm-up passes each, the first under
``torch.utils.flop_counter``). ``--ema D`` gives BOTH an EMA of the weights (genmodels' ``EMA``, no
warm-up; off by default: over a few hundred steps an average with decay 0.995 still carries the
initialization). Every ``--eval-every`` CPU seconds each contender's own denoising loss on the
validation images, with the noise levels and noise fixed (the same seed at every validation), picks its
checkpoint; the losses of different contenders are different objectives and are never compared.

Sampling, from each contender's chosen checkpoint: ``--samples`` N per setting, images in levels 0..255.
``edm`` at each ``--edm-sampling`` setting (``model.sample_with_info``; default Euler 20 steps = 20 NFE,
the deterministic first-order sampler that DDIM is, and DPM-Solver++(2M) 20 steps = 20 NFE); the peer
with its own DDIM (``GaussianDiffusion.ddim_sample``, η = 0) at each ``--peer-ddim-steps`` (20: the
equal-NFE row), and with its 1 000-step ancestral default only with ``--peer-ancestral`` (~12 CPU-s per
image). Scored by ``genmodels.metrics.sample_quality`` against the test split: FD, KID (± s.e.),
precision, recall; the row ``real (train split)`` gives N training images' figures (the floor at this N).
FD at small N is biased upwards (roughly by a term ∝ 1/N): rows compare only at the same N.

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/venv-ddpm/bin/python benchmarks/peers/diffusion_fashion.py --cpu-seconds 5 --samples 8 --eval-every 2 --val-examples 16   # smoke
    OMP_NUM_THREADS=1 PYTHONPATH=src /work/venv-ddpm/bin/python benchmarks/peers/diffusion_fashion.py --cpu-seconds 90 --eval-every 30 --samples 128 --out DIR   # issue 36, ~40 min under load
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the peer's sampling loop draws a tqdm bar per call

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contenders import parse_model_text  # noqa: E402
from harness import Contender, HarnessSettings, run_interleaved, version, write_results  # noqa: E402

import genmodels  # noqa: E402
from genmodels.core import Batch, create_model  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402
from genmodels.metrics import FeatureReference, quality_figures, sample_quality  # noqa: E402
from genmodels.plotting import save_montage, save_samples  # noqa: E402

QUALITY = ("fd", "kid", "precision", "recall")
DEFAULT_EDM_CONFIG = {"channels": 28, "channel_mults": [1, 2, 3], "num_res_blocks": 1, "attention": True,
                      "embedding": "scale-shift"}
#: equal parameters (the default config) and equal FLOPs per training example (34 channels: 1 534 M
#: against the peer's 1 577 M per example, by torch.utils.flop_counter)
DEFAULT_EDM_MODELS = ["edm", 'edm:{"channels": 34}']
DEFAULT_EDM_SAMPLING = ["solver=euler steps=20", "solver=dpmpp-2m steps=20"]
PEER = "GaussianDiffusion (denoising-diffusion-pytorch)"
#: the seed of the validation loss's noise levels and noise (the same at every validation)
VALIDATION_SEED = 12345


def parse_setting(text: str) -> dict:
    """``"solver=heun steps=10"`` → {"solver": "heun", "steps": 10}."""
    options = {}
    for part in text.split():
        key, _, value = part.partition("=")
        options[key] = int(value) if value.isdigit() else value
    return options


def fixed_noise_loss(loss):
    """(x (B, ...) → per-example loss (B,)) as ``log_likelihoods`` for the harness: minus the loss, under
    the global RNG seeded with :data:`VALIDATION_SEED` (the same noise at every validation) and restored
    afterwards (training's noise does not move)."""

    def log_likelihoods(batch: Batch, draws: int) -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(VALIDATION_SEED + int(batch.seeds[0]))
            return -loss(batch.x)

    return log_likelihoods


def peer_contender(args) -> Contender:
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    unet = Unet(dim=args.peer_dim, channels=1, dim_mults=tuple(args.peer_dim_mults))
    diffusion = GaussianDiffusion(unet, image_size=28, timesteps=1000)
    description = (f"GaussianDiffusion(Unet(dim={args.peer_dim}, channels=1, dim_mults={tuple(args.peer_dim_mults)}), "
                   f"image_size=28, timesteps=1000): objective {diffusion.objective}, sigmoid β schedule, auto_normalize")

    def batch_mean_loss(x: Tensor) -> Tensor:
        # its forward returns the batch mean only; the validation split is one chunk, so its mean is exact
        return diffusion(x.float() / 255.0).expand(len(x))

    return Contender(name=PEER, library=version("denoising-diffusion-pytorch"), module=diffusion,
                     train_nll=lambda x: diffusion(x.float() / 255.0), log_likelihoods=fixed_noise_loss(batch_mean_loss),
                     description=description)


def edm_contender(text: str, spec) -> Contender:
    _, overrides = parse_model_text(text)
    config = {**DEFAULT_EDM_CONFIG, **overrides}
    model = create_model("edm", spec, config)
    c = model.config
    description = (f"edm: U-Net {c.channels} channels × {tuple(c.channel_mults)}, {c.num_res_blocks} res block(s) per level, "
                   f"attention {'at the lowest resolution' if c.attention else 'none'}, {c.embedding} embedding; "
                   f"EDM preconditioning, log-normal σ (P_mean {c.P_mean}, P_std {c.P_std})")
    return Contender(name=text, library=f"genmodels {genmodels.__version__}", module=model,
                     train_nll=lambda x: model.loss(Batch(x)).loss,
                     log_likelihoods=fixed_noise_loss(lambda x: model.loss(Batch(x)).terms["denoising"]),
                     description=description, extra={"config": config})


@torch.no_grad()
def sample_peer(diffusion, n: int, chunk: int, seed: int, ddim_steps: int | None) -> tuple[Tensor, float, str, int]:
    """N samples from the peer (levels 0..255): its own DDIM (``ddim_sample``, η = its default 0) with
    ``ddim_steps`` steps (= NFE), or its default 1 000-step ancestral loop (``ddim_steps=None``).
    Returns (samples, thread CPU seconds, sampler, NFE)."""
    if ddim_steps is None:
        diffusion.sampling_timesteps, diffusion.is_ddim_sampling = diffusion.num_timesteps, False
    else:
        diffusion.sampling_timesteps, diffusion.is_ddim_sampling = ddim_steps, True
    diffusion.eval()
    torch.manual_seed(seed)
    start, parts = time.thread_time(), []
    for done in range(0, n, chunk):
        images = diffusion.sample(batch_size=min(chunk, n - done))  # [0, 1]
        parts.append((images * 255).round().clamp(0, 255).long())
    kind = "ddim" if diffusion.is_ddim_sampling else "ancestral"
    return torch.cat(parts), time.thread_time() - start, f"{kind} steps={diffusion.sampling_timesteps}", diffusion.sampling_timesteps


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-seconds", type=float, default=200.0, help="thread CPU seconds of training per contender")
    parser.add_argument("--samples", type=int, default=128, help="N samples per contender and setting (the same N)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate, the same for all (peak, under cosine)")
    parser.add_argument("--schedule", default="cosine", choices=["constant", "cosine"])
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (the peer Trainer's default)")
    parser.add_argument("--ema", type=float, default=None, help="EMA decay for every contender (default: none)")
    parser.add_argument("--eval-every", type=float, default=40.0, help="CPU seconds of training between validations")
    parser.add_argument("--val-examples", type=int, default=256, help="validation images of the selection loss")
    parser.add_argument("--peer-dim", type=int, default=32)
    parser.add_argument("--peer-dim-mults", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--peer-chunk", type=int, default=64, help="peer samples per sample() call")
    parser.add_argument("--edm-models", nargs="+", default=DEFAULT_EDM_MODELS,
                        help=f"edm or edm:JSON (over {json.dumps(DEFAULT_EDM_CONFIG)}), one contender each")
    parser.add_argument("--edm-sampling", nargs="+", default=DEFAULT_EDM_SAMPLING,
                        help="edm sampling settings, each 'solver=S steps=N'")
    parser.add_argument("--peer-ddim-steps", type=int, nargs="*", default=[20],
                        help="sample the peer with its DDIM at these step counts (= NFE)")
    parser.add_argument("--peer-ancestral", action="store_true", help="also its 1 000-step ancestral sampler (slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.json and the sample grids")
    args = parser.parse_args()
    for text in args.edm_models:
        if parse_model_text(text)[0] != "edm":
            parser.error(f"--edm-models: {text!r} is not 'edm' or 'edm:JSON'")
    return args


def main() -> None:
    args = arguments()
    torch.set_num_threads(1)
    data = load_dataset("fashion-mnist")
    spec = data.spec
    train_x, val_x = data.train.x.long(), data.validation.x.long()[: args.val_examples]
    contenders = []
    torch.manual_seed(args.seed)
    contenders.append(peer_contender(args))
    for text in args.edm_models:
        torch.manual_seed(args.seed)
        contenders.append(edm_contender(text, spec))
    for c in contenders:
        c.ema_decay = args.ema
        print(f"# {c.name}: {sum(p.numel() for p in c.module.parameters()):,} parameters; {c.description}", flush=True)
    settings = HarnessSettings(cpu_seconds=args.cpu_seconds, batch_size=args.batch_size, lr=args.lr,
                               schedule=args.schedule, grad_clip=args.grad_clip, eval_every=args.eval_every, seed=args.seed)
    rows = run_interleaved(contenders, train_x, val_x, None, settings, progress=lambda s: print("#", s, flush=True))
    training = []
    for row in rows:  # each contender's own objective on validation: a loss, not a likelihood
        row["validation_loss"] = row.pop("validation_nll_nats")
        row["history_is"] = "(CPU s, validation loss)"
        for key in ("test_nll_nats", "test_nll_standard_error", "test_values", "test_eval_cpu_s"):
            row.pop(key, None)
        training.append(row)
        print(json.dumps(row), flush=True)

    reference = FeatureReference(data, "test")
    out = Path(args.out) if args.out else None
    results, grids = [], {}

    def score(name: str, library: str, samples: Tensor, sampler: str, nfe: int, cpu_seconds: float) -> None:
        row = {"model": name, "library": library, "sampler": sampler, "nfe": nfe, "samples": len(samples),
               "sampling_cpu_s": round(cpu_seconds, 1),
               **{k: round(v, 4) for k, v in quality_figures(sample_quality(samples, data, reference=reference,
                                                                           metrics=QUALITY, seed=args.seed)).items()}}
        print(json.dumps(row), flush=True)
        if out is not None and name != "real (train split)":
            label = f"{name.split(' (')[0]} {sampler}"  # the peer's name without its library
            filename = re.sub(r"[^A-Za-z0-9=.]+", "-", label).strip("-")  # edm:{"channels": 34} → edm-channels-34
            grids[f"{label} (NFE {nfe})"] = save_samples(samples[:64], spec, out / f"samples-{filename}.png",
                                                        title=f"{label}, NFE {nfe}")
        results.append(row)

    index = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))[: args.samples]
    score("real (train split)", "-", train_x[index], "-", 0, 0.0)
    for c in contenders[1:]:
        for text in args.edm_sampling:
            tick = time.thread_time()
            samples, info = c.module.sample_with_info(args.samples, generator=torch.Generator().manual_seed(args.seed),
                                                      **parse_setting(text))
            score(c.name, c.library, samples, text, info["nfe"], time.thread_time() - tick)
    peer = contenders[0]
    for ddim_steps in [*args.peer_ddim_steps, *([None] if args.peer_ancestral else [])]:
        samples, cpu_seconds, sampler, nfe = sample_peer(peer.module, args.samples, args.peer_chunk, args.seed, ddim_steps)
        score(peer.name, peer.library, samples, sampler, nfe, cpu_seconds)

    print("\n| contender | library | params | FLOPs/ex (M) | CPU s | steps | train ex/CPU-s | best val at (CPU s) | val loss |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for t in training:
        print(f"| {t['model']} | {t['library']} | {t['parameters']:,} | {(t['flops_per_train_example'] or 0) / 1e6:,.0f} | "
              f"{t['cpu_s']:g} | {t['steps']:,} | {t['train_examples_per_cpu_s']:.1f} | {t['best_validation_at_cpu_s']:g} | "
              f"{t['validation_loss']:.4f} |")
    print(f"\n{args.samples} samples per row against the test split (genmodels features; FD at small N is biased "
          "upwards, rows compare only at the same N):\n")
    print("| model | sampler | NFE | FD | KID ± s.e. | precision | recall | sampling CPU s |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['sampler']} | {r['nfe']} | {r['fd']:.2f} | {r['kid']:.4f} ± {r['kid_stderr']:.4f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {r['sampling_cpu_s']:.1f} |")
    if out is not None and grids:
        save_montage(grids, out / "samples.png", title=f"fashion-mnist, {args.cpu_seconds:g} CPU s of training each")
    meta = {"script": "benchmarks/peers/diffusion_fashion.py", "argv": sys.argv[1:],
            "versions": [f"torch {torch.__version__}", f"genmodels {genmodels.__version__}",
                         version("denoising-diffusion-pytorch")]}
    write_results(str(out) if out else None, meta, results, training=training)


if __name__ == "__main__":
    main()
