"""The ad-hoc sweep on ``binary-digits`` behind BENCHMARKS.md's ablation of the binary-digits recipes:
MADE by default, any class-conditional autoregressive model with ``--model``.

A plain loop (``fitting.fit``), not the trainer: AdamW (lr 5·10⁻³, no weight decay; the model's own L2 term is in its
loss), a cosine decay over ``--steps``, batches of 128 drawn *with replacement* from the 1 257
training images, validation every 250 steps, and the test NLL at the best validation step. The
training images are binarized on the fly from the 17 grey levels x:

- ``static``: binary-digits' own train split (x ≥ 8);
- ``pixel``: per-pixel threshold noise, 1[x + u ≥ 7.5] with u ~ U(−j, j) grey levels (the
  ``binary-digits-jitter`` data set draws the same, 1[x/16 + u ≥ 7.5/16]; before the fix of
  2026-11-24 it used a cut of 8/16, which made grey level 8, a static 1, a coin flip);
- ``example``: one threshold per image, 8 + an integer uniform on [−j, j].

With ``--conditional`` the model is of p(x | y) and is scored by the exact mixture
log Σ_y p(y) p(x | y), p(y) the training split's label frequencies, smoothed by ``--prior-pseudocount``
(the library's ``--option marginal=true`` uses the uniform p(y) = 1/10 instead). ``--clusters C``
splits each label into C k-means clusters of its training images (grey levels) and conditions on the
10·C cluster indices instead, scored by the same mixture over all of them. ``--ema D`` evaluates an
exponential moving average of the weights (decay D). Validation and test are always binary-digits'
thresholded splits.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/binary_digits_sweep.py --mode pixel --jitter 3 \\
        --steps 8000 --dropout 0.3 --conditional --config '{"num_masks": 1}'
    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/binary_digits_sweep.py --model pixelcnn --mode pixel \\
        --jitter 3 --steps 3000 --dropout 0.3 --conditional --config '{"channels": 48}' --lr 3e-3 --ema 0.998 \\
        --prior-pseudocount 0.5

Prints the validation NLL every 250 steps and a last line with the best validation and its test NLL
(nats); ``--save FILE`` keeps the per-example test log-likelihoods at that step (for ensembles).
"""

from __future__ import annotations

import argparse
import json

import torch

from genmodels.core import Batch, create_model
from genmodels.data import load_dataset
from genmodels.data.base import DataSpec

from fitting import fit

#: MADE's sweep settings; any other model starts from its defaults with ``--dropout``
MADE_DEFAULTS = dict(hidden=1024, num_masks=8, order="random", input_encoding="scalar", direct=True, l2=0.001)


def kmeans_clusters(grey: torch.Tensor, labels: torch.Tensor, per_label: int) -> torch.Tensor:
    """Cluster index label·C + c of each training image, c its k-means cluster (C per label)."""
    from sklearn.cluster import KMeans

    clusters = torch.zeros_like(labels)
    for label in range(10):
        where = (labels == label).nonzero().squeeze(1)
        fit = KMeans(per_label, n_init=10, random_state=0).fit(grey[where].reshape(len(where), -1).numpy())
        clusters[where] = torch.from_numpy(fit.labels_).long() + label * per_label
    return clusters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="made", help="a class-conditional autoregressive model")
    parser.add_argument("--mode", choices=("static", "pixel", "example"), default="static")
    parser.add_argument("--jitter", type=float, default=0.0, help="j, in grey levels (of 16)")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--hidden", type=int, default=1024, help="made's width")
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--ema", type=float, default=0.0, help="evaluate an EMA of the weights with this decay")
    parser.add_argument("--clusters", type=int, default=0, help="k-means clusters per label (with --conditional)")
    parser.add_argument("--prior-pseudocount", type=float, default=0.0, help="added to each label's count in p(y)")
    parser.add_argument("--dropout", type=float, default=0.6)
    parser.add_argument("--conditional", action="store_true", help="p(x | y), scored by the label mixture")
    parser.add_argument("--config", default="{}", help="more made options, JSON (e.g. num_masks)")
    parser.add_argument("--seed", type=int, default=0, help="initialization and the batch/noise draws")
    parser.add_argument("--save", help="write the test log-likelihoods at the best step here (torch.save)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    torch.manual_seed(args.seed)
    digits, binary = load_dataset("digits"), load_dataset("binary-digits")
    grey = digits.train.x.float()  # levels 0..16
    if args.clusters > 1 and not args.conditional:
        parser.error("--clusters needs --conditional")
    labels, classes = binary.train.y, 10
    if args.clusters > 1:
        labels, classes = kmeans_clusters(grey, binary.train.y, args.clusters), 10 * args.clusters
    config = dict(MADE_DEFAULTS, hidden=args.hidden) if args.model == "made" else {}
    config.update(dropout=args.dropout, **({"conditional": True} if args.conditional else {}))
    config.update(json.loads(args.config))
    model = create_model(args.model, DataSpec(binary.spec.name, binary.spec.shape, 2, classes), config)
    generator = torch.Generator().manual_seed(args.seed)
    prior = (torch.bincount(labels, minlength=classes).float() + args.prior_pseudocount) / (
        len(labels) + args.prior_pseudocount * classes)

    @torch.no_grad()
    def log_likelihoods(scored, x: torch.Tensor) -> torch.Tensor:
        scored.eval()
        if args.conditional:
            per_label = torch.stack([scored.log_prob(x, torch.full((len(x),), c)) for c in range(classes)], 1)
            values = torch.logsumexp(per_label + prior.log(), 1)
        else:
            values = scored.log_prob(x)
        scored.train()
        return values

    def next_batch(step: int) -> Batch:
        index = torch.randint(0, len(grey), (128,), generator=generator)
        if args.mode == "static":
            x = binary.train.x[index]
        elif args.mode == "pixel":
            noise = (torch.rand(grey[index].shape, generator=generator) * 2 - 1) * args.jitter
            x = ((grey[index] + noise) >= 7.5).long()
        else:
            j = int(args.jitter)
            threshold = 8 + torch.randint(-j, j + 1, (len(index),) + (1,) * (grey.dim() - 1), generator=generator)
            x = (grey[index] >= threshold).long()
        return Batch(x=x, y=labels[index] if args.conditional else None)

    best = (float("inf"), float("nan"), 0)

    def validate(step: int, scored) -> None:
        nonlocal best
        validation = -log_likelihoods(scored, binary.validation.x).mean().item()
        if validation < best[0]:
            test = log_likelihoods(scored, binary.test.x)
            best = (validation, -test.mean().item(), step)
            if args.save:
                torch.save(test, args.save)
        print(step, f"val {validation:.3f}", flush=True)

    fit(model, next_batch, steps=args.steps, lr=args.lr, cosine=True, ema_decay=args.ema, check=validate, check_every=250)
    print(f"{args.model} {args.mode} jitter {args.jitter} dropout {args.dropout} conditional {args.conditional} "
          f"clusters {args.clusters} ema {args.ema} {args.config}: best val {best[0]:.3f} test {best[1]:.3f} at {best[2]}",
          flush=True)


if __name__ == "__main__":
    main()
