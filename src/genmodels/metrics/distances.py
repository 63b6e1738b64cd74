"""The distances between two feature sets, each with its paper: the Fréchet distance, the kernel
distance (KID), k-NN precision/recall and density/coverage, and the memorization check."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError

__all__ = [
    "gaussian_statistics", "sqrtm_psd", "frechet_distance", "frechet_distance_features", "polynomial_kernel",
    "mmd2_unbiased", "kernel_inception_style_distance", "pairwise_distances", "knn_radii", "precision_recall",
    "density_coverage", "nearest_distances", "exact_copies", "memorization",
]


# --- Fréchet distance -----------------------------------------------------------------------------
def gaussian_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), in float64 (N ≥ 2)."""
    f = features.to(torch.float64)
    if f.ndim != 2 or len(f) < 2:
        raise UserError(f"need at least 2 feature vectors of shape (N, F), got {tuple(f.shape)}")
    mu = f.mean(0)
    centred = f - mu
    return mu, centred.T @ centred / (len(f) - 1)


def sqrtm_psd(a: Tensor) -> Tensor:
    """The principal square root of a symmetric positive semi-definite matrix, by ``eigh``.

    Eigenvalues below 0 (round-off of a PSD matrix) are clipped to 0.

    >>> sqrtm_psd(torch.tensor([[4.0, 0.0], [0.0, 9.0]], dtype=torch.float64))
    tensor([[2., 0.],
            [0., 3.]], dtype=torch.float64)
    """
    a = 0.5 * (a + a.T)  # symmetrize against round-off
    eigenvalues, eigenvectors = torch.linalg.eigh(a)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet (2-Wasserstein²) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂), in float64.

    d² = ‖μ₁−μ₂‖² + Tr(Σ₁) + Tr(Σ₂) − 2 Tr((Σ₁Σ₂)^½)  (Dowson & Landau 1982; Heusel et al. 2017, eq. 6).

    Σ₁Σ₂ is not symmetric when the covariances do not commute, so its square root is not taken
    directly: with S = Σ₁^½, Σ₁Σ₂ = S (S Σ₂ S) S⁻¹ is similar to the PSD matrix S Σ₂ S, so
    Tr((Σ₁Σ₂)^½) = Σᵢ √λᵢ(S Σ₂ S) (by continuity also for singular Σ₁).

    >>> eye = torch.eye(2, dtype=torch.float64)
    >>> frechet_distance(torch.zeros(2), eye, torch.ones(2), 4 * eye)  # 2 + (1 + 4 − 2·2)·2
    4.0
    """
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    sigma1, sigma2 = sigma1.to(torch.float64), sigma2.to(torch.float64)
    s = sqrtm_psd(sigma1)
    middle = s @ sigma2 @ s
    trace_sqrt = torch.linalg.eigvalsh(0.5 * (middle + middle.T)).clamp(min=0).sqrt().sum()
    d2 = (mu1 - mu2).square().sum() + torch.trace(sigma1) + torch.trace(sigma2) - 2.0 * trace_sqrt
    return float(d2.clamp(min=0))


def frechet_distance_features(x: Tensor, y: Tensor) -> float:
    """FD between Gaussians fitted to two feature sets (N, F) and (M, F)."""
    return frechet_distance(*gaussian_statistics(x), *gaussian_statistics(y))


# --- KID ------------------------------------------------------------------------------------------
def polynomial_kernel(x: Tensor, y: Tensor) -> Tensor:
    """k(x, y) = (xᵀy / d + 1)³, the kernel of KID (Bińkowski et al. 2018, sec. 3); (N, M) Gram matrix."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    """The unbiased estimator of MMD² (Gretton et al. 2012, eq. 3) with :func:`polynomial_kernel`.

    MMD²_u = Σ_{i≠j} k(xᵢ,xⱼ)/(m(m−1)) + Σ_{i≠j} k(yᵢ,yⱼ)/(n(n−1)) − 2 Σᵢⱼ k(xᵢ,yⱼ)/(mn).
    Its expectation is the true MMD², 0 when both sets come from one distribution (it may be < 0).
    """
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise UserError(f"the unbiased MMD² needs at least 2 examples per set, got {m} and {n}")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return (
        (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kernel_inception_style_distance(
    x: Tensor, y: Tensor, *, subsets: int = 10, seed: int = 0
) -> tuple[float, float | None, dict[str, int]]:
    """KID: the mean of unbiased MMD² over ``subsets`` DISJOINT random subsets, and its standard error.

    Both sets are shuffled (seeded) and cut into ``subsets`` equal parts (the remainder is dropped);
    part i of x is compared with part i of y. The parts are disjoint, so the per-part estimates are
    independent and std/√subsets is an honest standard error of their mean. (torch-fidelity draws
    overlapping subsets with replacement and reports their spread, which is not a standard error.)

    Returns:
        (KID, standard error or None if only one subset, {"subsets", "subset_size", "reference_subset_size"}).
    """
    x, y = x.to(torch.float64), y.to(torch.float64)
    subsets = max(1, min(subsets, len(x) // 2, len(y) // 2))
    m, n = len(x) // subsets, len(y) // subsets
    if m < 2 or n < 2:
        raise UserError(f"KID needs at least 2 samples and 2 reference examples, got {len(x)} and {len(y)}")
    generator = torch.Generator().manual_seed(seed)
    px = torch.randperm(len(x), generator=generator)
    py = torch.randperm(len(y), generator=generator)
    values = torch.stack(
        [mmd2_unbiased(x[px[i * m : (i + 1) * m]], y[py[i * n : (i + 1) * n]]) for i in range(subsets)]
    )
    stderr = float(values.std(unbiased=True) / math.sqrt(subsets)) if subsets > 1 else None
    return float(values.mean()), stderr, {"subsets": subsets, "subset_size": m, "reference_subset_size": n}


# --- k-NN precision and recall --------------------------------------------------------------------
def pairwise_distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances (N, M) in float64, from ‖a‖² + ‖b‖² − 2aᵀb (clipped at 0)."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    d2 = a.square().sum(1, keepdim=True) + b.square().sum(1) - 2.0 * a @ b.T
    return d2.clamp(min=0).sqrt()


#: Entries per block of a distance matrix (float64: 8 MB, below malloc's mmap threshold so blocks reuse
#: memory instead of faulting fresh pages), so 10 000 × 55 000 distances fit in memory.
_BLOCK_ENTRIES = 2**20


def _rows_per_block(columns: int) -> int:
    return max(1, _BLOCK_ENTRIES // max(1, columns))


def knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each point of x to its k-th nearest neighbour in x, itself excluded (N,)."""
    if not 1 <= k < len(x):
        raise UserError(f"k = {k} nearest neighbours need more than k points, got {len(x)}")
    out, block = [], _rows_per_block(len(x))
    for start in range(0, len(x), block):
        d = pairwise_distances(x[start : start + block], x)
        # the point itself sits at distance 0: the k-th neighbour is the (k+1)-th smallest distance
        rows = torch.arange(len(d))
        d[rows, rows + start] = -1.0  # make sure "itself" is what is dropped, even among duplicates
        out.append(d.kthvalue(k + 1, dim=1).values)
    return torch.cat(out)


def _balls_containing(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """For each point: how many of the closed balls B(centre j, radii[j]) contain it? (N,) int64."""
    out, block = [], _rows_per_block(len(centres))
    for start in range(0, len(points), block):
        d = pairwise_distances(points[start : start + block], centres)
        out.append((d <= radii).sum(dim=1))
    return torch.cat(out)


def _inside_manifold(points: Tensor, centres: Tensor, radii: Tensor) -> Tensor:
    """For each point: is it within radii[j] of some centre j (closed balls)? (N,) bool."""
    return _balls_containing(points, centres, radii) > 0


def precision_recall(real: Tensor, fake: Tensor, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019, eq. 1–2) with k-NN manifolds.

    The manifold of a set is the union of closed balls around its points, each with the radius to
    its k-th nearest neighbour in the set. Precision = fraction of ``fake`` inside real's manifold;
    recall = fraction of ``real`` inside fake's manifold. The paper uses equal set sizes (the radii
    shrink as a set grows); :func:`sample_quality` subsamples the reference to the sample count.

    >>> real = torch.tensor([[0.0], [1.0], [2.0]]); fake = torch.tensor([[0.5], [10.0]])
    >>> precision_recall(real, fake, k=1)  # radii real: 1,1,1 → 0.5 inside; fake radii 9.5,9.5 → all real inside
    (0.5, 1.0)
    """
    precision = _inside_manifold(fake, real, knn_radii(real, k)).double().mean()
    recall = _inside_manifold(real, fake, knn_radii(fake, k)).double().mean()
    return float(precision), float(recall)


def density_coverage(real: Tensor, fake: Tensor, *, k: int = 5) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020, eq. 3–4), with balls around the REAL points only.

    density = (1/(kM)) Σⱼ Σᵢ 1[Yⱼ ∈ B(Xᵢ, NNDₖ(Xᵢ))]; coverage = (1/N) Σᵢ 1[∃ j: Yⱼ ∈ B(Xᵢ, NNDₖ(Xᵢ))],
    for N real points Xᵢ and M samples Yⱼ. A real outlier's large ball no longer makes every
    sample near it count fully: density is ≈ 1 when samples follow the data, below 1 for samples
    in sparse regions; coverage falls when modes are dropped.

    >>> real = torch.tensor([[0.0], [1.0], [3.0], [7.0]]); fake = torch.tensor([[1.5], [5.0], [12.0], [-2.0]])
    >>> density_coverage(real, fake, k=1)  # balls [-1,1] [0,2] [1,5] [3,11]: counts 2,2,0,0; 3 balls hit
    (1.0, 0.75)
    """
    radii = knn_radii(real, k)
    density = _balls_containing(fake, real, radii).sum().double() / (k * len(fake))
    nearest_fake, _ = nearest_distances(real, fake)
    coverage = (nearest_fake <= radii).double().mean()
    return float(density), float(coverage)


# --- memorization ---------------------------------------------------------------------------------
def nearest_distances(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """For each row of a: the distance to its nearest row of b, and that row's index."""
    a, b = a.to(torch.float64), b.to(torch.float64)
    b2 = b.square().sum(1)  # once, not per block
    values, indices, block = [], [], _rows_per_block(len(b))
    for start in range(0, len(a), block):
        rows = a[start : start + block]
        d2 = torch.addmm(b2, rows, b.T, alpha=-2.0) + rows.square().sum(1, keepdim=True)
        v, i = d2.min(dim=1)  # the square root is monotone: take it after the minimum
        values.append(v.clamp(min=0).sqrt())
        indices.append(i)
    return torch.cat(values), torch.cat(indices)


def exact_copies(samples: Tensor, train: Tensor) -> Tensor:
    """(N,) bool: is each sample identical, value for value, to some training example?"""
    seen = {bytes(row.numpy().tobytes()) for row in train.reshape(len(train), -1).to(torch.int64)}
    return torch.tensor([bytes(row.numpy().tobytes()) in seen for row in samples.reshape(len(samples), -1).to(torch.int64)],
                        dtype=torch.bool)


def memorization(
    sample_features: Tensor,
    train_features: Tensor,
    test_features: Tensor | None,
    *,
    quantile: float = 0.01,
    max_listed: int = 100,
    test_distances: Tensor | None = None,
) -> tuple[float, dict[str, Any]]:
    """The memorization check: samples much closer to a training example than held-out data is.

    d(s) = distance from a sample to its nearest training example (in feature space); the baseline
    is the same distance for each test example. A sample is flagged when d(s) is below the
    ``quantile`` of the test distances: a model that generalizes like the test split flags about
    ``quantile`` of its samples; one that copies training examples flags many more.

    ``test_distances`` (the test examples' nearest-train distances) may be given instead of
    ``test_features``, to reuse them across calls.

    Returns:
        (flagged fraction, details: threshold, medians, their ratio, flagged indices (up to
        ``max_listed``) and the nearest training index of each).
    """
    if not 0.0 < quantile < 1.0:
        raise UserError(f"the memorization quantile must lie in (0, 1), got {quantile}")
    d_samples, nearest = nearest_distances(sample_features, train_features)
    d_test = test_distances if test_distances is not None else nearest_distances(test_features, train_features)[0]
    threshold = float(torch.quantile(d_test, quantile))
    flagged = d_samples < threshold
    indices = flagged.nonzero().flatten()[:max_listed]
    median_samples, median_test = float(d_samples.median()), float(d_test.median())
    details = {
        "threshold": threshold,
        "median_sample_distance": median_samples,
        "median_test_distance": median_test,
        "median_ratio": median_samples / median_test if median_test > 0 else None,
        "flagged": int(flagged.sum()),
        "flagged_indices": indices.tolist(),
        "nearest_train_indices": nearest[indices].tolist(),
    }
    return float(flagged.double().mean()), details
