"""Bias and variance of each gradient estimator on problems small enough to sum exactly over z.

Problem A, E_{z~Cat(softmax θ)}[f(z)] with C = 8 classes, f(z) = (⟨z, v⟩ − t)², v_c = c/(C−1), t = 0.45
(a smooth f of the one-hot or relaxed z): exact gradient by summing over the 8 classes.
Estimators: REINFORCE without baseline, REINFORCE with the leave-one-out baseline of n samples
(unbiased; Kool et al. 2019), Gumbel-softmax and straight-through Gumbel across temperatures τ.

Problem B, the k-sample bound E_{z_1..k~q_θ}[log (1/k) Σ p̃(z_i)/q_θ(z_i)] with C = 4: exact gradient by
enumerating all 4^k tuples. Estimators: the score function with the bound itself as signal (no
baseline) and VIMCO's per-sample baselines.

Bias = ‖mean − exact‖ / ‖exact‖ over N independent estimates; variance = trace of the covariance of
one estimate (an n-sample average), also relative to ‖exact‖². Bias is printed with its Monte Carlo
standard error, so a bias below ~2 s.e. is indistinguishable from zero.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/estimator_variance.py --out /tmp/estimators
"""

from __future__ import annotations

import argparse
import itertools
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from genmodels.estimators import (
    gumbel_max,
    gumbel_noise,
    gumbel_softmax,
    log_mean_exp,
    score_function_surrogate,
    straight_through_gumbel,
    vimco_surrogate,
)

C = 8
THETA = torch.tensor([0.5, -0.3, 1.2, 0.0, -1.0, 0.7, 0.2, -0.6], dtype=torch.float64)
V = torch.arange(C, dtype=torch.float64) / (C - 1)
T = 0.45


def f(z: torch.Tensor) -> torch.Tensor:
    return ((z * V).sum(-1) - T) ** 2


def exact_a() -> torch.Tensor:
    t = THETA.clone().requires_grad_()
    (torch.softmax(t, 0) * f(torch.eye(C, dtype=torch.float64))).sum().backward()
    return t.grad


def estimates_a(method: str, n: int, reps: int, tau: float, seed: int) -> torch.Tensor:
    """(reps, C): each row one estimate, the average over n samples."""
    g = torch.Generator().manual_seed(seed)
    thetas = THETA.repeat(reps, 1).requires_grad_()
    log_q = F.log_softmax(thetas, -1).unsqueeze(1).expand(reps, n, C)  # (reps, n, C)
    noise = gumbel_noise(torch.rand(reps, n, C, generator=g, dtype=torch.float64))
    if method.startswith("reinforce"):
        z = gumbel_max(log_q.detach(), noise)  # (reps, n)
        fz = f(F.one_hot(z, C).double())
        log_qz = log_q.gather(-1, z.unsqueeze(-1)).squeeze(-1)
        baseline = 0.0 if method == "reinforce" else (fz.sum(1, keepdim=True) - fz) / (n - 1)
        surrogate = score_function_surrogate(fz, log_qz, baseline)
    elif method == "gumbel-softmax":
        surrogate = f(gumbel_softmax(log_q, noise, tau))
    else:
        surrogate = f(straight_through_gumbel(log_q, noise, tau))
    surrogate.mean(1).sum().backward()
    return thetas.grad


CB = 4
THETA_B = torch.tensor([0.3, -0.5, 0.9, -0.1], dtype=torch.float64)
LOG_P_B = torch.tensor([-1.0, -0.2, -2.5, -0.7], dtype=torch.float64)


def exact_b(k: int) -> torch.Tensor:
    t = THETA_B.clone().requires_grad_()
    log_q = F.log_softmax(t, 0)
    tuples = torch.tensor(list(itertools.product(range(CB), repeat=k)))
    (log_q[tuples].sum(1).exp() * log_mean_exp(LOG_P_B[tuples] - log_q[tuples], 1)).sum().backward()
    return t.grad


def estimates_b(method: str, k: int, reps: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    thetas = THETA_B.repeat(reps, 1).requires_grad_()
    log_q = F.log_softmax(thetas, -1)
    u = torch.rand(reps, k, CB, generator=g, dtype=torch.float64)
    z = gumbel_max(log_q.detach().unsqueeze(1).expand(reps, k, CB), gumbel_noise(u))
    log_qz = log_q.gather(1, z)
    log_w = LOG_P_B[z] - log_qz
    if method == "vimco":
        surrogate = vimco_surrogate(log_w, log_qz)
    else:  # the score function with the whole bound as every sample's signal (no baseline)
        bound = log_mean_exp(log_w, -1)
        surrogate = bound + (bound.detach().unsqueeze(-1) * (log_qz - log_qz.detach())).sum(-1)
    surrogate.sum().backward()
    return thetas.grad


def summarize(est: torch.Tensor, exact: torch.Tensor) -> tuple[float, float, float]:
    norm = float(exact.norm())
    mean = est.mean(0)
    bias = float((mean - exact).norm()) / norm
    bias_se = float((est.var(0).sum() / len(est)).sqrt()) / norm
    variance = float(est.var(0).sum()) / norm**2
    return bias, bias_se, variance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=None, help="folder for the plot (estimators.png)")
    args = parser.parse_args()
    exact = exact_a()
    taus = [0.1, 0.3, 0.5, 1.0, 2.0]
    rows = []
    print(f"Problem A: E[f(z)], z ~ Cat(softmax θ), C = {C}; {args.reps} estimates each; relative to ‖∇‖ = {float(exact.norm()):.4f}")
    print("| estimator | τ | n | bias (± s.e.) | variance |")
    print("|---|---|---|---|---|")
    for n in (1, 4, 16):
        for method in ("reinforce", "reinforce-loo"):
            if method == "reinforce-loo" and n < 2:
                continue
            b, se, v = summarize(estimates_a(method, n, args.reps, 1.0, seed=n), exact)
            rows.append((method, None, n, b, v))
            print(f"| {method} | – | {n} | {b:.4f} ± {se:.4f} | {v:.4f} |")
        for method in ("gumbel-softmax", "straight-through"):
            for tau in taus:
                b, se, v = summarize(estimates_a(method, n, args.reps, tau, seed=n), exact)
                rows.append((method, tau, n, b, v))
                print(f"| {method} | {tau} | {n} | {b:.4f} ± {se:.4f} | {v:.4f} |")
    print()
    print(f"Problem B: the k-sample bound, C = {CB}; {args.reps} estimates each")
    print("| estimator | k | bias (± s.e.) | variance |")
    print("|---|---|---|---|")
    for k in (2, 3, 4):
        ex = exact_b(k)
        for method in ("score-function", "vimco"):
            b, se, v = summarize(estimates_b(method, k, args.reps, seed=10 + k), ex)
            print(f"| {method} | {k} | {b:.4f} ± {se:.4f} | {v:.4f} |")
    if args.out is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        args.out.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for method, style in (("gumbel-softmax", "o-"), ("straight-through", "s--")):
            pts = [(t, b, v) for m, t, n, b, v in rows if m == method and n == 1]
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], style, label=method)
            axes[1].plot([p[0] for p in pts], [p[2] for p in pts], style, label=method)
        for method, color in (("reinforce", "k"), ("reinforce-loo", "gray")):
            for m, t, n, b, v in rows:
                if m == method and n == (1 if method == "reinforce" else 4):
                    axes[1].axhline(v, color=color, ls=":", label=f"{method} (n={n})")
        axes[0].set(xscale="log", xlabel="τ", ylabel="relative bias", title="bias (n = 1)")
        axes[1].set(xscale="log", yscale="log", xlabel="τ", ylabel="relative variance", title="variance of one estimate")
        for ax in axes:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.out / "estimators.png", dpi=120)
        print(f"\nplot: {args.out / 'estimators.png'}")


if __name__ == "__main__":
    main()
