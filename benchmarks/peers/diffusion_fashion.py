"""genmodels' ``edm`` against denoising-diffusion-pytorch (lucidrains) on ``fashion-mnist``, in one run, at
equal training time and an equal-size U-Net: training examples/s, and sample quality (FD in genmodels'
feature space) of ours at ~20 NFE against the peer's default 1 000-step ancestral sampling.

``fashion-mnist``: 1×28×28 images of 256 levels, the PROTOCOL split (55 000 / 5 000 / 10 000); only the
training split is used for training and the test split is the reference of the sample-quality figures.

The contenders:

* ``peer``: denoising-diffusion-pytorch's ``GaussianDiffusion(Unet(dim=32, channels=1, dim_mults=(1, 2, 2)),
  image_size=28, timesteps=1000)`` with all its other defaults: objective ``pred_v``, the ``sigmoid`` β
  schedule, ``auto_normalize=True`` (it maps [0, 1] → [−1, 1] itself: it is fed x/255), and, with
  ``sampling_timesteps`` left at its default (= timesteps), ``sample()`` is the 1 000-step ancestral
  ``p_sample_loop`` (x₀ clipped to [−1, 1] at every step). Its training loss is its own ``forward``.
  dim_mults (1, 2, 2) is the one with ~1.41 M parameters (1 409 665; the issue's figure) whose
  downsampling factor 4 divides 28; its default (1, 2, 4, 8) has 9.2 M and needs 32×32 inputs.
  ``--peer-dim-mults`` changes it.
* ``edm``: genmodels' ``edm`` (σ(t) = t, EDM preconditioning, log-normal training σ, uniform dequantization
  to [−1, 1]) with its U-Net at ``--edm-config`` (default: 28 channels, multipliers (1, 2, 3), one residual
  block per level, attention at 7×7, scale-shift embedding: 1 382 305 parameters, −2 % of the peer's),
  trained by its own ``model.loss``, sampled with ``model.sample_with_info(n, generator=..., solver=...,
  steps=...)`` at each ``--edm-sampling`` setting (default Heun 10 steps = 19 NFE, DPM-Solver++(2M)
  20 steps = 20 NFE, Heun 25 steps = 49 NFE).

Training: the same for both: batch ``--batch-size`` (64), the same sequence of minibatch indices (one
generator per contender, the same seed), Adam with the peer ``Trainer``'s defaults (lr 1e-4, betas
(0.9, 0.99), gradient norm clipped at 1), and the same EMA, the one the peer's ``Trainer`` keeps:
``ema_pytorch.EMA(model, beta=0.995, update_every=10)`` (its defaults: update_after_step 100, warm-up
inv_gamma 1, power 2/3), updated inside the timed step; samples are drawn from the EMA weights. No
``Trainer`` is used (it wants an image folder and accelerate); its step is reproduced here. The two take
turns, the next step always to whoever has spent the least thread CPU time, each until it has spent
``--cpu-seconds`` (after three untimed warm-up passes each, the first under ``torch.utils.flop_counter``:
FLOPs per training example are reported beside the parameters; equal parameters are not equal FLOPs).
The peer is sampled with its default 1 000-step ancestral loop and with its own DDIM at each
``--peer-ddim-steps`` (default 20): the comparison with ours at ~20 NFE is the equal-NFE row. No checkpoint selection:
the final EMA weights are sampled.

Sampling: ``--samples`` N from each contender and setting (the peer from ``torch.manual_seed(seed)``, ours
from a ``torch.Generator`` with the seed), images in levels 0..255 (the peer's [0, 1] output × 255, rounded),
scored by ``genmodels.metrics.sample_quality`` against the test split: FD, KID (± s.e.), precision,
recall. A row ``real (train split)`` gives the same figures for N random training images: the FD floor
at this N. FD at small N is biased upwards (roughly by a term ∝ 1/N); rows compare only at the same N.

    OMP_NUM_THREADS=1 PYTHONPATH=src /work/venv-ddpm/bin/python benchmarks/peers/diffusion_fashion.py --cpu-seconds 10 --samples 8 --peer-ddim-steps   # smoke
    OMP_NUM_THREADS=1 PYTHONPATH=src /work/venv-ddpm/bin/python benchmarks/peers/diffusion_fashion.py --cpu-seconds 1200 --samples 128 --peer-ddim-steps 20 --out DIR   # ~70 min
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the peer's sampling loop draws a tqdm bar per call

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Contender, count_parameters, flops_per_example, version, write_results  # noqa: E402

import genmodels  # noqa: E402
from genmodels.core import Batch, create_model  # noqa: E402
from genmodels.data import load_dataset  # noqa: E402
from genmodels.metrics import FeatureReference, quality_figures, sample_quality  # noqa: E402
from genmodels.plotting import save_montage, save_samples  # noqa: E402

QUALITY = ("fd", "kid", "precision", "recall")
DEFAULT_EDM_CONFIG = {"channels": 28, "channel_mults": [1, 2, 3], "num_res_blocks": 1, "attention": True,
                      "embedding": "scale-shift"}
DEFAULT_EDM_SAMPLING = ["solver=heun steps=10", "solver=dpmpp-2m steps=20", "solver=heun steps=25"]


def parse_setting(text: str) -> dict:
    """``"solver=heun steps=10"`` → {"solver": "heun", "steps": 10}."""
    options = {}
    for part in text.split():
        key, _, value = part.partition("=")
        options[key] = int(value) if value.isdigit() else value
    return options


def build_peer(args):
    from denoising_diffusion_pytorch import GaussianDiffusion, Unet

    unet = Unet(dim=args.peer_dim, channels=1, dim_mults=tuple(args.peer_dim_mults))
    diffusion = GaussianDiffusion(unet, image_size=28, timesteps=1000)
    description = (f"GaussianDiffusion(Unet(dim={args.peer_dim}, channels=1, dim_mults={tuple(args.peer_dim_mults)}), "
                   f"image_size=28, timesteps=1000): objective {diffusion.objective}, sigmoid β schedule, "
                   f"auto_normalize, sampling {diffusion.sampling_timesteps}-step "
                   f"{'DDIM' if diffusion.is_ddim_sampling else 'ancestral'}")
    return diffusion, (lambda x: diffusion(x.float() / 255.0)), description


def build_edm(spec, args):
    config = {**DEFAULT_EDM_CONFIG, **json.loads(args.edm_config)}
    model = create_model("edm", spec, config)
    c = model.config
    description = (f"edm: U-Net {c.channels} channels × {tuple(c.channel_mults)}, {c.num_res_blocks} res block(s) per level, "
                   f"attention {'at the lowest resolution' if c.attention else 'none'}, {c.embedding} embedding; "
                   f"EDM preconditioning, log-normal σ (P_mean {c.P_mean}, P_std {c.P_std})")
    return model, (lambda x: model.loss(Batch(x)).loss), description, config


def train_in_turns(contenders: list[dict], train_x: torch.Tensor, args) -> None:
    """Interleave training steps, the next one always to the contender with the least thread CPU time
    spent so far, until every contender has spent ``args.cpu_seconds`` (../../../shared/PROTOCOL.md)."""
    from ema_pytorch import EMA

    for c in contenders:
        c["optimizer"] = torch.optim.Adam(c["module"].parameters(), lr=args.lr, betas=(0.9, 0.99))
        c["ema"] = EMA(c["module"], beta=args.ema_beta, update_every=args.ema_every)
        c["generator"] = torch.Generator().manual_seed(args.seed)
        c.update(train_time=0.0, wall_time=0.0, steps=0, seen=0, losses=[], nonfinite=0)
        c["flops_per_example"] = flops_per_example(
            Contender(c["name"], c["library"], c["module"], c["loss"], lambda batch, draws: None), train_x[: args.batch_size])
        for _ in range(2):  # untimed warm-up passes (the FLOP count was the first), no update
            c["loss"](train_x[: args.batch_size]).backward()
            c["optimizer"].zero_grad(set_to_none=True)
    report_every, next_report = max(args.cpu_seconds / 10, 1.0), 0.0
    while any(c["train_time"] < args.cpu_seconds for c in contenders):
        c = min((c for c in contenders if c["train_time"] < args.cpu_seconds), key=lambda c: c["train_time"])
        tick, wall = time.thread_time(), time.perf_counter()
        index = torch.randint(0, len(train_x), (args.batch_size,), generator=c["generator"])
        c["optimizer"].zero_grad(set_to_none=True)
        loss = c["loss"](train_x[index])
        if torch.isfinite(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(c["module"].parameters(), args.grad_clip)
            c["optimizer"].step()
            c["ema"].update()
        else:
            c["nonfinite"] += 1
        c["train_time"] += time.thread_time() - tick
        c["wall_time"] += time.perf_counter() - wall
        c["steps"] += 1
        c["seen"] += args.batch_size
        c["losses"].append(loss.item())
        slowest = min(c["train_time"] for c in contenders)
        if slowest >= next_report:
            print("#   " + "; ".join(f"{c['name']}: {c['train_time']:.0f} CPU s, {c['steps']} steps, loss(last 50) "
                                       f"{sum(c['losses'][-50:]) / max(len(c['losses'][-50:]), 1):.4f}" for c in contenders), flush=True)
            next_report = slowest + report_every


@torch.no_grad()
def sample_peer(ema_diffusion, n: int, chunk: int, seed: int, ddim_steps: int | None = None) -> tuple[torch.Tensor, float]:
    """N samples from the peer: its default ancestral loop, or (``ddim_steps``) its own DDIM sampler
    with that many steps (``GaussianDiffusion.ddim_sample``, η = its default 0), i.e. at that NFE."""
    if ddim_steps is not None:
        ema_diffusion.sampling_timesteps, ema_diffusion.is_ddim_sampling = ddim_steps, True
    ema_diffusion.eval()
    torch.manual_seed(seed)
    start, parts = time.perf_counter(), []
    for done in range(0, n, chunk):
        images = ema_diffusion.sample(batch_size=min(chunk, n - done))  # [0, 1]
        parts.append((images * 255).round().clamp(0, 255).long())
        print(f"#   peer: {done + len(parts[-1])}/{n} samples, {time.perf_counter() - start:.0f} s", flush=True)
    return torch.cat(parts), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-seconds", type=float, default=1200.0, help="thread CPU seconds of training per contender")
    parser.add_argument("--samples", type=int, default=100, help="N samples per contender and setting (the same N)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam lr (the peer Trainer's default)")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient-norm clip (the peer Trainer's default)")
    parser.add_argument("--ema-beta", type=float, default=0.995, help="EMA decay (the peer Trainer's default)")
    parser.add_argument("--ema-every", type=int, default=10, help="EMA update_every (the peer Trainer's default)")
    parser.add_argument("--peer-dim", type=int, default=32)
    parser.add_argument("--peer-dim-mults", type=int, nargs="+", default=[1, 2, 2])
    parser.add_argument("--peer-chunk", type=int, default=25, help="peer samples per sample() call")
    parser.add_argument("--edm-config", default="{}", help="JSON merged into the edm config "
                        f"(default {json.dumps(DEFAULT_EDM_CONFIG)})")
    parser.add_argument("--edm-sampling", nargs="+", default=DEFAULT_EDM_SAMPLING,
                        help="edm sampling settings, each 'solver=S steps=N'")
    parser.add_argument("--peer-ddim-steps", type=int, nargs="*", default=[20],
                        help="also sample the peer with its DDIM at these step counts (NFE): compare at equal NFE")
    parser.add_argument("--skip-peer-sampling", action="store_true", help="throughput only (no peer samples)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for results.json and the sample grids")
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = load_dataset("fashion-mnist")
    spec, train_x = data.spec, data.train.x.long()
    torch.manual_seed(args.seed)
    peer, peer_loss, peer_description = build_peer(args)
    torch.manual_seed(args.seed)
    edm, edm_loss, edm_description, edm_config = build_edm(spec, args)
    contenders = [
        {"name": "GaussianDiffusion (denoising-diffusion-pytorch)", "library": version("denoising-diffusion-pytorch"),
         "module": peer, "loss": peer_loss, "description": peer_description},
        {"name": "edm", "library": f"genmodels {genmodels.__version__}", "module": edm, "loss": edm_loss,
         "description": edm_description, "config": edm_config},
    ]
    for c in contenders:
        print(f"# {c['name']}: {count_parameters(c['module']):,} parameters; {c['description']}", flush=True)
    started = time.time()
    train_in_turns(contenders, train_x, args)
    train_wall = time.time() - started

    reference = FeatureReference(data, "test")
    out = Path(args.out) if args.out else None
    results, grids = [], {}

    def score(name: str, library: str, samples: torch.Tensor, sampler: str, nfe, seconds: float, **extra) -> dict:
        row = {"model": name, "library": library, "sampler": sampler, "nfe": nfe, "samples": len(samples),
               "sampling_s": round(seconds, 1),
               **{k: round(v, 4) for k, v in quality_figures(sample_quality(samples, data, reference=reference,
                                                                           metrics=QUALITY, seed=args.seed)).items()},
               **extra}
        print(json.dumps(row), flush=True)
        if out is not None:
            label = f"{name.split(' ')[0]} {sampler}".replace("/", "-")
            grids[f"{label} (NFE {nfe})"] = save_samples(samples[:64], spec, out / f"samples-{label.replace(' ', '-')}.png",
                                                        title=f"{label}, NFE {nfe}")
        results.append(row)
        return row

    training = {}
    for c in contenders:
        training[c["name"]] = {
            "library": c["library"], "description": c["description"], "parameters": count_parameters(c["module"]),
            "budget_cpu_s": args.cpu_seconds, "steps": c["steps"], "cpu_s": round(c["train_time"], 1),
            "wall_s": round(c["wall_time"], 1), "flops_per_train_example": c["flops_per_example"],
            "train_examples_per_cpu_s": round(c["seen"] / c["train_time"], 1), "nonfinite_steps": c["nonfinite"],
            "final_loss_last_100": round(sum(c["losses"][-100:]) / len(c["losses"][-100:]), 5),
            **({"config": c["config"]} if "config" in c else {}),
        }
        print(json.dumps({"model": c["name"], **training[c["name"]]}), flush=True)

    peer_c, edm_c = contenders
    index = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(args.seed))[: args.samples]
    score("real (train split)", "-", train_x[index], "-", 0, 0.0)
    edm_ema = edm_c["ema"].ema_model
    for text in args.edm_sampling:
        options = parse_setting(text)
        tick = time.perf_counter()
        samples, info = edm_ema.sample_with_info(args.samples, generator=torch.Generator().manual_seed(args.seed), **options)
        score("edm", edm_c["library"], samples, " ".join(f"{k}={v}" for k, v in options.items()), info["nfe"],
              time.perf_counter() - tick, ema=True)
    if not args.skip_peer_sampling:
        peer_ema = peer_c["ema"].ema_model
        for ddim_steps in [None, *args.peer_ddim_steps]:
            samples, seconds = sample_peer(peer_ema, args.samples, args.peer_chunk, args.seed, ddim_steps)
            kind = "ddim" if peer_ema.is_ddim_sampling else "ancestral"
            score(peer_c["name"], peer_c["library"], samples, f"{kind} steps={peer_ema.sampling_timesteps}",
                  peer_ema.sampling_timesteps, seconds, ema=True)

    # the two targets (issue 19)
    ratio = training["edm"]["train_examples_per_cpu_s"] / training[peer_c["name"]]["train_examples_per_cpu_s"]
    peer_row = next((r for r in results if r["model"] == peer_c["name"] and r["sampler"].startswith("ancestral")), None)
    targets = {"throughput_ratio": round(ratio, 3), "throughput_target_met": ratio >= 1.5}
    if peer_row is not None:
        near20 = [r for r in results if r["model"] == "edm" and 18 <= r["nfe"] <= 21]
        targets["fd_peer_1000"] = peer_row["fd"]
        targets["fd_edm_near_20_nfe"] = {f"{r['sampler']} (NFE {r['nfe']})": r["fd"] for r in near20}
        targets["fd_target_met"] = {k: v <= peer_row["fd"] for k, v in targets["fd_edm_near_20_nfe"].items()}

    print("\n| contender | library | params | FLOPs/ex | CPU s | steps | train ex/CPU-s |\n|---|---|---:|---:|---:|---:|---:|")
    for name, t in training.items():
        print(f"| {name} | {t['library']} | {t['parameters']:,} | {t['flops_per_train_example'] or 0:,.0f} | {t['cpu_s']:g} | "
              f"{t['steps']:,} | {t['train_examples_per_cpu_s']:.1f} |")
    print(f"\n{args.samples} samples per row against the test split (genmodels features; FD at small N is biased "
          "upwards, rows compare only at the same N):\n")
    print("| model | sampler | NFE | FD | KID ± s.e. | precision | recall | sampling s |\n|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['sampler']} | {r['nfe']} | {r['fd']:.2f} | {r['kid']:.3f} ± {r['kid_stderr']:.3f} | "
              f"{r['precision']:.3f} | {r['recall']:.3f} | {r['sampling_s']:.1f} |")
    print("\n" + json.dumps(targets))
    if out is not None and grids:
        save_montage(grids, out / "samples.png", title=f"fashion-mnist, {args.cpu_seconds:g} CPU s of training each")
    meta = {
        "script": "benchmarks/peers/diffusion_fashion.py", "argv": sys.argv[1:], "training_wall_s": round(train_wall, 1),
        "versions": [f"torch {torch.__version__}", f"genmodels {genmodels.__version__}",
                     version("denoising-diffusion-pytorch"), version("ema-pytorch")],
    }
    write_results(str(out) if out else None, meta, results, training=[{"model": k, **v} for k, v in training.items()],
                  targets=[targets])


if __name__ == "__main__":
    main()
