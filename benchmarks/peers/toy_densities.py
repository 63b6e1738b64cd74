"""2-D densities generated from a seed, with an exact log-density and a numerically computed entropy,
for judging defaults on data none of their settings were chosen on (PROTOCOL: "Defaults are judged on
a panel of data none of their settings were chosen on").

``rings``: K concentric rings, ring k chosen with weight w_k, radius r ~ N(R_k, s_k²) truncated to
r > 0, angle θ ~ U[0, 2π). In polar coordinates the density of a point x with |x| = r is

    p(x) = Σ_k w_k φ((r − R_k)/s_k) / (s_k Φ(R_k/s_k)) / (2π r),

and the entropy H = −∫ p log p dx = −∫₀^∞ p_r(r) log(p_r(r) / (2π r)) dr (a 1-D integral on a fine grid;
a Monte-Carlo estimate on 10⁶ samples is printed beside it as a check).

    python benchmarks/peers/toy_densities.py rings --seed 2026 --out /tmp/rings.npy   # + /tmp/rings.npy.json
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["Rings", "rings_from_seed", "load_sidecar"]


@dataclass(frozen=True)
class Rings:
    radii: tuple[float, ...]
    stds: tuple[float, ...]
    weights: tuple[float, ...]

    def sample(self, n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        k = rng.choice(len(self.weights), size=n, p=np.asarray(self.weights))
        r = rng.normal(np.asarray(self.radii)[k], np.asarray(self.stds)[k])
        while (bad := r <= 0).any():  # the truncation to r > 0 (a redraw is exact for a truncated normal)
            r[bad] = rng.normal(np.asarray(self.radii)[k[bad]], np.asarray(self.stds)[k[bad]])
        theta = rng.uniform(0.0, 2 * math.pi, size=n)
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1).astype(np.float32)

    def radial_log_density(self, r: Tensor) -> Tensor:
        """log p_r(r), the density of the radius (a mixture of truncated normals)."""
        terms = []
        for radius, std, weight in zip(self.radii, self.stds, self.weights):
            z = (r - radius) / std
            log_mass = math.log(0.5 * math.erfc(-radius / std / math.sqrt(2)))  # log Φ(R/s)
            terms.append(math.log(weight) - 0.5 * z**2 - math.log(std * math.sqrt(2 * math.pi)) - log_mass)
        return torch.logsumexp(torch.stack(terms), dim=0)

    def log_density(self, x: Tensor) -> Tensor:
        """log p(x) per row (nats), in x's dtype."""
        r = x.double().norm(dim=-1)
        return (self.radial_log_density(r) - torch.log(2 * math.pi * r)).to(x.dtype)

    def entropy(self) -> float:
        """H = −∫₀^∞ p_r(r) log(p_r(r)/(2π r)) dr, by the trapezoidal rule on 2·10⁶ points."""
        r = torch.linspace(1e-9, max(self.radii) + 12 * max(self.stds), 2_000_001, dtype=torch.float64)
        log_pr = self.radial_log_density(r)
        integrand = torch.exp(log_pr) * (log_pr - torch.log(2 * math.pi * r))
        return -torch.trapezoid(integrand, r).item()


def rings_from_seed(seed: int) -> Rings:
    """Three rings whose radii, widths and weights are drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    radii = np.sort(rng.uniform(1.0, 4.0, size=3))
    stds = rng.uniform(0.1, 0.3, size=3)
    weights = rng.dirichlet(np.full(3, 5.0))
    return Rings(tuple(map(float, radii)), tuple(map(float, stds)), tuple(map(float, weights)))


def load_sidecar(path: str | Path) -> tuple[Rings, float] | None:
    """The density and entropy recorded beside a generated ``.npy`` (``PATH.json``), or None."""
    sidecar = Path(str(path) + ".json")
    if not sidecar.exists():
        return None
    meta = json.loads(sidecar.read_text())
    density = rings_from_seed(meta["seed"])
    return density, meta["entropy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("density", choices=["rings"])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--n", type=int, default=200_000, help="examples (the .npy loader keeps N//10 for test and for validation)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    density = rings_from_seed(args.seed)
    x = density.sample(args.n, seed=args.seed + 1)
    np.save(args.out, x)
    entropy = density.entropy()
    check = density.sample(1_000_000, seed=args.seed + 2)
    monte_carlo = -density.log_density(torch.from_numpy(check).double())
    meta = {"density": args.density, "seed": args.seed, "n": args.n, "entropy": entropy,
            "monte_carlo_entropy": monte_carlo.mean().item(),
            "monte_carlo_standard_error": (monte_carlo.std() / math.sqrt(len(monte_carlo))).item(),
            "radii": density.radii, "stds": density.stds, "weights": density.weights}
    Path(args.out + ".json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
