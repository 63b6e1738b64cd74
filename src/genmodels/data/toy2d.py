"""Toy 2-D densities: ``checkerboard``, ``eight-gaussians``, ``two-moons``, ``spirals``.

Continuous data: float32 tensors of shape (N, 2), ``levels = None``, unlabelled; 100 000 / 20 000 /
20 000 examples (../shared/PROTOCOL.md), each split drawn from its own fixed seed, so a load gives
the same numbers every time and on every machine. All four live roughly in [-4, 4]^2.

``checkerboard`` and ``eight-gaussians`` have an analytic density, in ``ANALYTIC_DENSITIES``, and so
a known entropy: the lowest expected test NLL any model can reach. ``two-moons`` and ``spirals`` have
none (their generating processes add noise to curves, whose density has no closed form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .base import DataSpec, Dataset, Split
from .registry import register_dataset

__all__ = [
    "ToyDensity",
    "ANALYTIC_DENSITIES",
    "SPLIT_SIZES",
    "checkerboard_log_density",
    "eight_gaussians_log_density",
    "sample_toy",
    "CHECKERBOARD_ENTROPY",
    "EIGHT_GAUSSIANS_ENTROPY",
    "load_checkerboard",
    "load_eight_gaussians",
    "load_two_moons",
    "load_spirals",
]

SPLIT_SIZES = {"train": 100_000, "validation": 20_000, "test": 20_000}
_SPLIT_SEED = {"train": 0, "validation": 1, "test": 2}
# One seed per data set too, so that the four data sets are not built from the same uniform draws.
_DATASET_SEED = {"checkerboard": 101, "eight-gaussians": 102, "two-moons": 103, "spirals": 104}


@dataclass(frozen=True)
class ToyDensity:
    """A toy data set's true density.

    Args:
        log_density: maps points (N, 2) to log p per row, in nats, in the input's dtype.
        entropy: H = -E[log p] in nats, the floor of the expected test NLL.
    """

    log_density: Callable[[Tensor], Tensor]
    entropy: float


# --- checkerboard -------------------------------------------------------------------------------
# A 4x4 board on [-4, 4]^2 of 2x2 squares; column i counts from the left (x) and row j from the
# bottom (y), both 0..3, and the square is black where i + j is even (the lower-left one is black).
# Uniform on the 8 black squares: p = 1 / (8 * 4) = 1/32, so H = ln 32.
CHECKERBOARD_ENTROPY = math.log(32.0)
_SQUARE = 2.0


def checkerboard_log_density(x: Tensor) -> Tensor:
    """log p(x) per row: -ln 32 on the black squares, -inf elsewhere.

    >>> checkerboard_log_density(torch.tensor([[-3.0, -3.0], [-1.0, -3.0]], dtype=torch.float64))
    tensor([-3.4657,    -inf], dtype=torch.float64)
    """
    cell = torch.floor((x + 4.0) / _SQUARE)  # (N, 2) column, row
    on_board = ((cell >= 0) & (cell <= 3)).all(dim=-1)
    black = torch.remainder(cell.sum(dim=-1), 2) == 0
    # Built in x's dtype: a float32 constant cast to float64 would be off by 1e-8.
    inside_value = torch.full(cell.shape[:-1], -CHECKERBOARD_ENTROPY, dtype=x.dtype, device=x.device)
    return inside_value.masked_fill(~(on_board & black), -math.inf)


def _sample_checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    square = rng.integers(0, 8, size=n)  # which black square
    row = square // 2
    col = 2 * (square % 2) + row % 2  # the two columns of each row with col + row even
    # Kept 1e-6 below the square's far edge: a point within float32 rounding of it would otherwise be
    # stored on the edge itself, i.e. in the neighbouring white square where log p = -inf.
    offset = np.minimum(rng.random((n, 2)) * _SQUARE, _SQUARE - 1e-6)
    return np.stack([col, row], axis=1) * _SQUARE - 4.0 + offset


# --- eight Gaussians ----------------------------------------------------------------------------
# Equal mixture of 8 isotropic Gaussians, std 0.5, centres at radius 4 and angles 2 pi k / 8.
_EG_RADIUS, _EG_STD, _EG_K = 4.0, 0.5, 8
# No closed form (the components overlap slightly). Midpoint-rule integral of -p ln p on [-7.5, 7.5]^2
# with spacing 0.05, 0.02, 0.01 and 0.005 (all give 3.5247255411, total mass 1 - 6e-13); PROTOCOL: 3.5247.
EIGHT_GAUSSIANS_ENTROPY = 3.52472554


def _eight_centres(dtype: torch.dtype = torch.float64) -> Tensor:
    angle = 2 * math.pi * torch.arange(_EG_K, dtype=torch.float64) / _EG_K
    return (_EG_RADIUS * torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)).to(dtype)  # (8, 2)


def eight_gaussians_log_density(x: Tensor) -> Tensor:
    """log p(x) per row = logsumexp_k N(x; c_k, 0.5^2 I) - ln 8.

    At a centre the other seven components add nothing visible: log p = -ln(8 * 2 pi 0.5^2).

    >>> round(float(eight_gaussians_log_density(torch.tensor([[4.0, 0.0]]))), 4)
    -2.531
    """
    centres = _eight_centres(x.dtype).to(x.device)
    sq = ((x[:, None, :] - centres[None]) ** 2).sum(dim=-1)  # (N, 8)
    log_norm = math.log(2 * math.pi * _EG_STD**2) + math.log(_EG_K)
    return torch.logsumexp(-sq / (2 * _EG_STD**2), dim=-1) - log_norm


def _sample_eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = _eight_centres().numpy()
    return centres[rng.integers(0, _EG_K, size=n)] + _EG_STD * rng.standard_normal((n, 2))


# --- two moons and spirals (no analytic density) ------------------------------------------------
def _sample_two_moons(rng: np.random.Generator, n: int) -> np.ndarray:
    from sklearn.datasets import make_moons

    # make_moons spans about [-1, 2] x [-0.5, 1] (+ noise); centre it and scale by 2.5 -> about
    # [-3.75, 3.75] x [-1.9, 1.9]. random_state comes from the split's generator, so it is fixed.
    x, _ = make_moons(n_samples=n, noise=0.1, random_state=int(rng.integers(2**31 - 1)))
    return (x - np.array([0.5, 0.25])) * 2.5


_SPIRAL_TURNS = 1.5  # each arm winds 1.5 turns (3 pi)
_SPIRAL_RADIUS = 3.6
_SPIRAL_NOISE = 0.1


def _sample_spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    # sqrt(u) makes the density along an arm proportional to its radius, i.e. roughly even per length.
    theta = np.sqrt(rng.random(n)) * _SPIRAL_TURNS * 2 * math.pi
    radius = _SPIRAL_RADIUS * theta / (_SPIRAL_TURNS * 2 * math.pi)
    arm = rng.integers(0, 2, size=n) * math.pi  # the second arm is the first rotated by 180 degrees
    points = radius[:, None] * np.stack([np.cos(theta + arm), np.sin(theta + arm)], axis=1)
    return points + _SPIRAL_NOISE * rng.standard_normal((n, 2))


_SAMPLERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "checkerboard": _sample_checkerboard,
    "eight-gaussians": _sample_eight_gaussians,
    "two-moons": _sample_two_moons,
    "spirals": _sample_spirals,
}

ANALYTIC_DENSITIES: dict[str, ToyDensity] = {
    "checkerboard": ToyDensity(checkerboard_log_density, CHECKERBOARD_ENTROPY),
    "eight-gaussians": ToyDensity(eight_gaussians_log_density, EIGHT_GAUSSIANS_ENTROPY),
}


def sample_toy(name: str, n: int, seed: int | list[int]) -> Tensor:
    """``n`` points (n, 2) float32 of toy data set ``name`` from ``np.random.default_rng(seed)``."""
    return torch.from_numpy(_SAMPLERS[name](np.random.default_rng(seed), n).astype(np.float32))


def _load(name: str) -> Dataset:
    seeds = {s: [_DATASET_SEED[name], _SPLIT_SEED[s]] for s in SPLIT_SIZES}
    splits = {s: Split(sample_toy(name, n, seeds[s])) for s, n in SPLIT_SIZES.items()}
    return Dataset(DataSpec(name, (2,), None, None), splits["train"], splits["validation"], splits["test"])


@register_dataset("checkerboard", "toy 2D: uniform on the 8 black squares of a 4x4 board on [-4,4]^2; H = ln 32")
def load_checkerboard(data_dir: str | None = None) -> Dataset:
    return _load("checkerboard")


@register_dataset("eight-gaussians", "toy 2D: 8 Gaussians (std 0.5) on a circle of radius 4; H = 3.5247 nats")
def load_eight_gaussians(data_dir: str | None = None) -> Dataset:
    return _load("eight-gaussians")


@register_dataset("two-moons", "toy 2D: scikit-learn's two moons, noise 0.1, scaled to about [-4,4]; no density")
def load_two_moons(data_dir: str | None = None) -> Dataset:
    return _load("two-moons")


@register_dataset("spirals", "toy 2D: two interleaved noisy spirals in about [-4,4]^2; no analytic density")
def load_spirals(data_dir: str | None = None) -> Dataset:
    return _load("spirals")
