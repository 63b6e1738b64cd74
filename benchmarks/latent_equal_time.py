"""``iwae`` (k = 5) against ``vae`` at equal training time, on binarized Fashion-MNIST (Burda et al. 2016).

Every model is trained by genmodels' own trainer (``genmodels.training.train``) with the same MLP
encoder/decoder, for the same ``--minutes`` of training time each (evaluation excluded; the trainer's
``TrainConfig.minutes``), one after the other in this process, and the LAST checkpoint is scored
(``--select-by latest``, the default: the trainer's own choice would be the best validation ELBO, its
headline measure, which is not what ``iwae`` optimizes; the validation figures on the first
``--validation-examples`` images every ``--eval-every`` steps are logged in the run folders). That
checkpoint is scored here on the test split with the model's own
``log_likelihoods`` (the same estimator as ``genmodels evaluate``): the ELBO (bound) and the IWAE-k
estimate (Burda et al. 2016, eq. 7), from the same k draws per image. The noise is drawn with
per-example seeds (example i: seed i), so both models are scored on the same ε for the same image
(the Gaussian models have the same latent size) and the paired difference has a small standard error.

k of the full-test estimate: ``--k N``, or ``--k auto``: the script first times k = 1 000 on 100 test
images with the first model and takes the largest multiple of 100 (at most 5 000) whose full-test
pass fits ``--eval-minutes``; the same k is then used for every model. On the first ``--subset`` test
images every model is also scored at k = 1 000 and k = 5 000, to show how far the full-test k is from
k = 5 000.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/latent_equal_time.py \\
        --data binary-fashion-mnist-dynamic --models vae iwae-k5 --minutes 8 --k auto --out /tmp/DIR

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/latent_equal_time.py --data binary-fashion-mnist \\
        --models vae iwae-k5 dvae-gumbel-softmax dvae-straight-through dvae-reinforce dvae-vimco-k5 \\
        --minutes 2 --k 1000 --subset 0 --test-examples 2000 --out /tmp/DIR

Prints one JSON line per model and a Markdown table (nats per image ± standard error).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

import genmodels
from genmodels.checkpoint import load_model
from genmodels.core import Batch
from genmodels.data import load_dataset
from genmodels.training import TrainConfig, train


def models(latent_dim: int, hidden: tuple[int, ...]) -> dict[str, tuple[str, dict]]:
    gauss = {"latent_dim": latent_dim, "hidden": hidden}
    return {
        "vae": ("vae", dict(gauss)),
        "iwae-k5": ("iwae", {**gauss, "k": 5}),
        "dvae-gumbel-softmax": ("discrete-vae", {"hidden": hidden, "estimator": "gumbel-softmax"}),
        "dvae-straight-through": ("discrete-vae", {"hidden": hidden, "estimator": "straight-through"}),
        "dvae-reinforce": ("discrete-vae", {"hidden": hidden, "estimator": "reinforce"}),
        "dvae-vimco-k5": ("discrete-vae", {"hidden": hidden, "estimator": "vimco", "k": 5}),
    }


@torch.no_grad()
def per_example(model, x: torch.Tensor, k: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELBO, IWAE-k) per example, float64, from the model's ``log_likelihoods``; example i's noise
    comes from seed i, whatever the batch size."""
    model.eval()
    elbo, iwae = [], []
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        records = {r.measure: r for r in model.log_likelihoods(Batch(chunk, seeds=torch.arange(start, start + len(chunk))), k=k)}
        elbo.append(records["elbo"].values.double())
        iwae.append(records["iwae"].values.double())
    return torch.cat(elbo), torch.cat(iwae)


def nll(values: torch.Tensor) -> tuple[float, float]:
    """Mean NLL (nats) and its standard error over examples."""
    return -values.mean().item(), values.std().item() / math.sqrt(len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="binary-fashion-mnist-dynamic")
    parser.add_argument("--models", nargs="+", default=["vae", "iwae-k5"])
    parser.add_argument("--minutes", type=float, default=8.0, help="training time per model")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=2000, help="steps between validations")
    parser.add_argument("--validation-examples", type=int, default=1000)
    parser.add_argument("--k", default="auto", help="importance samples of the full-test estimate, or auto")
    parser.add_argument("--eval-minutes", type=float, default=10.0, help="the full-test pass's budget for --k auto")
    parser.add_argument("--subset", type=int, default=500, help="test images also scored at k = 1000 and 5000 (0: none)")
    parser.add_argument("--test-examples", type=int, default=None,
                        help="score only the test split's first N images (default: all; say so when used)")
    parser.add_argument("--eval-batch-size", type=int, default=100)
    parser.add_argument("--select-by", choices=["latest", "auto"], default="latest",
                        help="latest: score the last checkpoint (no selection); auto: the trainer's best "
                             "validation headline NLL, which is the ELBO (it would favour vae over iwae)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for the runs and results.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    table = models(args.latent_dim, tuple(args.hidden))
    unknown = [m for m in args.models if m not in table]
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(table)}")

    dataset = load_dataset(args.data)
    test_x = dataset.test.x.long()[: args.test_examples]
    k = None if args.k == "auto" else int(args.k)
    results, values = [], {}
    for label in args.models:
        name, config = table[label]
        run_dir = Path(args.out, f"{args.data}-{label}")
        started = time.time()
        result = train(
            name, dataset,
            TrainConfig(minutes=args.minutes, batch_size=args.batch_size, lr=args.lr, eval_every=args.eval_every,
                        validation_examples=args.validation_examples, seed=args.seed, eval_options={"k": "1"},
                        num_samples=16, select_by=args.select_by),
            run_dir, model_config=config, progress=False,
        )
        train_wall = time.time() - started
        model, _ = load_model(result.best_checkpoint)
        torch.set_num_threads(1)
        row = {"data": args.data, "model": label, "name": name, "config": config, "steps": result.steps,
               "best_step": result.best_step, "train_s": round(result.train_seconds, 1),
               "train_wall_s": round(train_wall, 1), "examples_per_s": round(result.examples_per_second, 1),
               "parameters": result.num_parameters}
        if k is None:
            tick = time.perf_counter()
            per_example(model, test_x[:100], 1000, args.eval_batch_size)
            seconds_per_image_sample = (time.perf_counter() - tick) / (100 * 1000)
            fits = args.eval_minutes * 60 / (seconds_per_image_sample * len(test_x))
            k = int(max(100, min(5000, fits // 100 * 100)))
            row["timing"] = {"seconds_per_image_at_k1000": round(seconds_per_image_sample * 1000, 4), "chosen_k": k}
            print(f"timing: {seconds_per_image_sample * 1000:.4f} s per test image at k = 1000 → k = {k} "
                  f"fits {args.eval_minutes:g} min on {len(test_x)} images", flush=True)
        tick = time.perf_counter()
        elbo, iwae = per_example(model, test_x, k, args.eval_batch_size)
        row.update(k=k, test_eval_s=round(time.perf_counter() - tick, 1), test_images=len(test_x))
        row["elbo_nll"], row["elbo_se"] = nll(elbo)
        row["iwae_nll"], row["iwae_se"] = nll(iwae)
        values[label] = {"elbo": elbo, "iwae": iwae}
        if args.subset:
            n = min(args.subset, len(test_x))
            subset = {f"k={k}": nll(iwae[:n])}
            for ks in (1000, 5000):
                if ks != k:
                    tick = time.perf_counter()
                    subset[f"k={ks}"] = nll(per_example(model, test_x[:n], ks, args.eval_batch_size)[1])
                    subset[f"k={ks}_s"] = round(time.perf_counter() - tick, 1)
            row["subset"] = {"images": n, **subset}
        print(json.dumps(row), flush=True)
        results.append(row)

    differences = []
    labels = [r["model"] for r in results]
    for a in labels:
        for b in labels:
            if a < b and table[a][0] != "discrete-vae" and table[b][0] != "discrete-vae":
                d = -(values[a]["iwae"] - values[b]["iwae"])  # NLL_a − NLL_b, paired on the same images and ε
                differences.append({"a": a, "b": b, "iwae_nll_difference": d.mean().item(),
                                    "standard_error": d.std().item() / math.sqrt(len(d))})
    print(f"\n{args.data}: {args.minutes:g} min of training each, test NLL (nats per image ± s.e., "
          f"{len(test_x)} images)")
    print(f"| model | steps (best) | train ex/s | test ELBO NLL (bound) | test IWAE-{k} NLL (estimate) | eval s |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['model']} | {r['steps']:,} ({r['best_step']:,}) | {r['examples_per_s']:,.0f} | "
              f"{r['elbo_nll']:.2f} ± {r['elbo_se']:.2f} | {r['iwae_nll']:.2f} ± {r['iwae_se']:.2f} | {r['test_eval_s']:.0f} |")
    for r in results:
        if "subset" in r:
            s = r["subset"]
            print(f"  {r['model']}, first {s['images']} test images: " + ", ".join(
                f"IWAE {key} {v[0]:.3f} ± {v[1]:.3f}" for key, v in s.items() if key.startswith("k=") and not key.endswith("_s")))
    for d in differences:
        print(f"  paired IWAE-{k} NLL {d['a']} − {d['b']}: {d['iwae_nll_difference']:+.3f} ± {d['standard_error']:.3f}")
    meta = {"script": "benchmarks/latent_equal_time.py", "argv": sys.argv[1:], "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "cpu_count": os.cpu_count(),
            "machine": platform.platform(), "torch": torch.__version__, "genmodels": genmodels.__version__}
    Path(args.out, "results.json").write_text(json.dumps({"meta": meta, "results": results,
                                                          "paired_differences": differences}, indent=1))


if __name__ == "__main__":
    main()
