"""Sample-quality metrics in the feature space of the project's own networks.

Every figure is a :class:`SampleQualityRecord` that says what it is: the metric, an honest label
("FD (genmodels features)", never "FID": the features are :mod:`genmodels.metrics.features`'s CNN,
not Inception-v3), the number of samples, the reference split and its size, and the feature
network's name and SHA-256. Figures are comparable only between records with the same feature hash
and similar sample counts (FD and k-NN precision/recall are biased by the number of samples).

Metrics:

- ``fd``: Fréchet distance between Gaussians fitted to the two feature sets (Heusel et al. 2017,
  eq. 6; Dowson & Landau 1982): ‖μ₁−μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½).
- ``kid``: kernel distance (Bińkowski et al. 2018): unbiased MMD² with the cubic polynomial kernel
  k(x, y) = (xᵀy/d + 1)³, averaged over disjoint random subsets, with the standard error of that mean.
- ``precision`` / ``recall``: improved precision and recall (Kynkäänniemi et al. 2019): the fraction
  of samples inside the real data's k-NN manifold, and of real data inside the samples'.
- ``density`` / ``coverage`` (Naeem et al. 2020): robust to outliers of the real set, which can
  give pure noise a high k-NN precision: density counts how many real balls hold each sample
  (≈ 1 for samples distributed like the data), coverage is the fraction of real balls that hold a sample.
- ``memorization``: how close samples lie to their nearest training example, against the same
  distance for the held-out test split; flags samples closer than a low quantile of the test's.

The entry point is :func:`sample_quality`; :func:`evaluate_sample_quality` draws the samples from a
model first, and :class:`FrechetValidation` is the cheap FD-on-validation monitor for training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from .features import FeatureExtractor, _base_dataset, load_feature_network

__all__ = [
    "METRICS",
    "DEFAULT_METRICS",
    "LABELS",
    "SampleQualityRecord",
    "FeatureReference",
    "sample_quality",
    "sample_quality_available",
    "evaluate_sample_quality",
    "draw_samples",
    "FrechetValidation",
    "gaussian_statistics",
    "sqrtm_psd",
    "frechet_distance",
    "frechet_distance_features",
    "polynomial_kernel",
    "mmd2_unbiased",
    "kernel_inception_style_distance",
    "pairwise_distances",
    "knn_radii",
    "precision_recall",
    "density_coverage",
    "nearest_distances",
    "memorization",
    "format_sample_quality",
    "quality_figures",
]

METRICS = ("fd", "kid", "precision", "recall", "density", "coverage", "memorization")
DEFAULT_METRICS = METRICS

#: What each metric is called in every record, table and plot.
LABELS = {
    "fd": "FD (genmodels features)",
    "kid": "KID (genmodels features)",
    "precision": "precision (k-NN, genmodels features)",
    "recall": "recall (k-NN, genmodels features)",
    "density": "density (k-NN, genmodels features)",
    "coverage": "coverage (k-NN, genmodels features)",
    "memorization": "memorized fraction (nearest-train distance, genmodels features)",
}

#: Samples for evaluation are drawn under this seed (the same as the likelihood evaluator's).
SAMPLE_SEED = 1234


@dataclass
class SampleQualityRecord:
    """One sample-quality figure and what stands behind it (JSON-able with :meth:`to_json`).

    Attributes:
        metric: ``fd``, ``kid``, ``precision``, ``recall`` or ``memorization``.
        label: the honest name, e.g. "FD (genmodels features)"; print this, never "FID".
        value: the figure (FD, KID: lower is better; precision, recall: higher; memorization: the
            fraction of samples flagged, about ``quantile`` for a model that does not copy).
        stderr: its standard error where one is computed (KID), else None.
        samples: the number of samples measured.
        reference: the split compared against (``test``, ``validation``, ``train``).
        reference_examples: how many reference examples were used.
        dataset: the data set's name.
        features: the feature network's name, e.g. ``genmodels-digits-cnn-v1``.
        features_sha256: its weights' SHA-256.
        options: the settings (k, subsets, seed, quantile, sampling options).
        details: further numbers (e.g. the memorization check's distances and flagged samples).
    """

    metric: str
    label: str
    value: float
    stderr: float | None
    samples: int
    reference: str
    reference_examples: int
    dataset: str
    features: str
    features_sha256: str
    options: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SampleQualityRecord:
        return cls(**obj)

    @property
    def higher_is_better(self) -> bool:
        return self.metric in ("precision", "recall", "density", "coverage")


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


def _exact_copies(samples: Tensor, train: Tensor) -> Tensor:
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


# --- reference features and the entry point -------------------------------------------------------
def _dataset(dataset: Any, data_dir: str | None = None):
    from ..data import Dataset, load_dataset

    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)


def sample_quality_available(dataset_name: str) -> bool:
    """Whether a feature network exists for this data set (digits, fashion-mnist, their binarized variants)."""
    try:
        _base_dataset(dataset_name)
        return True
    except UserError:
        return False


class FeatureReference:
    """One split's features (and, lazily, the train split's for memorization), computed once.

    Build it once and reuse it (e.g. every validation round during training):
    ``FeatureReference(load_dataset("digits"), "validation")``.

    Args:
        dataset: a loaded :class:`~genmodels.data.Dataset` or a registered name.
        split: the reference split (``test`` for reported figures, ``validation`` to choose checkpoints).
        extractor: the feature network; by default the shipped one for the data set.
        device: where to run the feature network.
        data_dir: passed to ``load_dataset`` when ``dataset`` is a name.
    """

    def __init__(self, dataset: Any, split: str = "test", *, extractor: FeatureExtractor | None = None,
                 device: torch.device | str = "cpu", data_dir: str | None = None):
        self.dataset = _dataset(dataset, data_dir)
        self.spec = self.dataset.spec
        self.split = split
        self.extractor = extractor or load_feature_network(self.spec.name, device=device)
        self.x = self.dataset.split(split).x
        self.features = self.extractor(self.x, self.spec.levels)
        self.mu, self.sigma = gaussian_statistics(self.features)
        self._train_features: Tensor | None = None
        self._test_distances: Tensor | None = None

    @property
    def train_features(self) -> Tensor:
        if self._train_features is None:
            self._train_features = (
                self.features if self.split == "train" else self.extractor(self.dataset.train.x, self.spec.levels)
            )
        return self._train_features

    @property
    def test_train_distances(self) -> Tensor:
        """Each test example's distance to its nearest training example (the memorization baseline)."""
        if self._test_distances is None:
            test = self.features if self.split == "test" else self.extractor(self.dataset.test.x, self.spec.levels)
            self._test_distances = nearest_distances(test, self.train_features)[0]
        return self._test_distances

    def features_of(self, samples: Tensor) -> Tensor:
        """Features of samples in the data's own space (checked against the data set's spec)."""
        self.spec.check(samples)
        return self.extractor(samples.cpu(), self.spec.levels)


def sample_quality(
    samples: Tensor,
    dataset: Any,
    *,
    reference: str | FeatureReference = "test",
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int = 3,
    density_k: int = 5,
    kid_subsets: int = 10,
    memorization_quantile: float = 0.01,
    seed: int = 0,
    extractor: FeatureExtractor | None = None,
    device: torch.device | str = "cpu",
    data_dir: str | None = None,
    options: dict[str, Any] | None = None,
) -> list[SampleQualityRecord]:
    """Sample-quality records of ``samples`` against a reference split, in genmodels feature space.

    Args:
        samples: (N, C, H, W) in the data's own space: int64 levels 0..K−1, as ``model.sample`` returns.
        dataset: a loaded Dataset or its registered name (digits, fashion-mnist, binarized variants).
        reference: the split to compare against, or a prebuilt :class:`FeatureReference` (reused).
        metrics: any of ``fd``, ``kid``, ``precision``, ``recall``, ``density``, ``coverage``, ``memorization``.
        k: neighbours for precision/recall (Kynkäänniemi et al. use k = 3).
        density_k: neighbours for density/coverage (Naeem et al. use k = 5).
        kid_subsets: disjoint subsets for KID and its standard error.
        memorization_quantile: the test-distance quantile below which a sample is flagged.
        seed: seeds KID's subsets and the reference subsample of precision/recall.
        extractor: a feature network other than the shipped one.
        device: where to run the feature network.
        data_dir: passed to ``load_dataset`` when ``dataset`` is a name.
        options: extra settings to record in every record (e.g. the sampling options).

    Returns:
        One record per metric, in the order asked for.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown sample-quality metric(s) {', '.join(unknown)}; valid: {', '.join(METRICS)}")
    ref = reference if isinstance(reference, FeatureReference) else FeatureReference(
        dataset, reference, extractor=extractor, device=device, data_dir=data_dir
    )
    if len(samples) < 2:
        raise UserError(f"sample-quality metrics need at least 2 samples, got {len(samples)}")
    f = ref.features_of(samples)
    n, n_ref = len(f), len(ref.features)

    def record(metric: str, value: float, stderr: float | None, used_ref: int, opts: dict[str, Any],
               details: dict[str, Any] | None = None) -> SampleQualityRecord:
        return SampleQualityRecord(
            metric, LABELS[metric], value, stderr, n, ref.split, used_ref, ref.spec.name,
            ref.extractor.name, ref.extractor.sha256, {**(options or {}), **opts}, details or {},
        )

    out: list[SampleQualityRecord] = []
    pr: tuple[float, float, int] | None = None
    dc: tuple[float, float, int] | None = None

    def reference_rows() -> Tensor:
        # Equal set sizes, as in both papers: subsample the reference to the sample count.
        m = min(n, n_ref)
        return torch.randperm(n_ref, generator=torch.Generator().manual_seed(seed))[:m]
    for metric in metrics:
        if metric == "fd":
            mu, sigma = gaussian_statistics(f)
            out.append(record("fd", frechet_distance(mu, sigma, ref.mu, ref.sigma), None, n_ref, {}))
        elif metric == "kid":
            value, stderr, info = kernel_inception_style_distance(f, ref.features, subsets=kid_subsets, seed=seed)
            out.append(record("kid", value, stderr, n_ref, {"seed": seed, **info}))
        elif metric in ("precision", "recall"):
            if pr is None:
                rows = reference_rows()
                pr = (*precision_recall(ref.features[rows], f, k=k), len(rows))
            value = pr[0] if metric == "precision" else pr[1]
            out.append(record(metric, value, None, pr[2], {"k": k, "seed": seed}))
        elif metric in ("density", "coverage"):
            if dc is None:
                rows = reference_rows()
                dc = (*density_coverage(ref.features[rows], f, k=density_k), len(rows))
            value = dc[0] if metric == "density" else dc[1]
            out.append(record(metric, value, None, dc[2], {"k": density_k, "seed": seed}))
        else:  # memorization
            value, details = memorization(f, ref.train_features, None, quantile=memorization_quantile,
                                          test_distances=ref.test_train_distances)
            copies = _exact_copies(samples.cpu(), ref.dataset.train.x)
            details["exact_copies"] = int(copies.sum())
            details["exact_copy_indices"] = copies.nonzero().flatten()[:100].tolist()
            out.append(SampleQualityRecord(
                "memorization", LABELS["memorization"], value, None, n, "train", len(ref.train_features),
                ref.spec.name, ref.extractor.name, ref.extractor.sha256,
                {**(options or {}), "quantile": memorization_quantile, "baseline": "test"}, details,
            ))
    return out


# --- drawing samples from a model -----------------------------------------------------------------
@torch.no_grad()
def draw_samples(
    model: Any,
    n: int,
    *,
    batch_size: int = 500,
    seed: int = SAMPLE_SEED,
    labels: Tensor | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    """n samples from a model in batches, under a fixed seed; the model's mode is restored.

    Args:
        model: a :class:`~genmodels.core.GenerativeModel`.
        n: how many samples.
        batch_size: samples per ``model.sample`` call.
        seed: seeds a generator on the model's device, passed to ``sample`` (and the global RNG is
            forked, for models that draw from it).
        labels: for a conditional model, the labels of the n samples (default: none, so the model
            decides; :func:`evaluate_sample_quality` passes labels drawn from the reference split).
        options: the model's sampling options (``--option KEY=VALUE``), e.g. {"temperature": 1.0}.
        progress: show a progress bar.

    Returns:
        (samples (n, ...) on the CPU, info of the first batch from ``sample_with_info``, e.g. NFE).
    """
    from tqdm.auto import tqdm

    if n < 1:
        raise UserError(f"the number of samples must be positive, got {n}")
    device = model.device
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    chunks, info = [], {}
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in tqdm(range(0, n, batch_size), disable=not progress, desc="sampling", leave=False):
                b = min(batch_size, n - start)
                y = labels[start : start + b].to(device) if labels is not None else None
                x, batch_info = model.sample_with_info(b, y=y, generator=generator, **(options or {}))
                info = info or dict(batch_info)
                chunks.append(x.cpu())
    finally:
        model.train(was_training)
    return torch.cat(chunks), info


def evaluate_sample_quality(
    model: Any,
    dataset: Any,
    *,
    samples: int,
    reference: str | FeatureReference = "test",
    metrics: Sequence[str] = DEFAULT_METRICS,
    batch_size: int = 500,
    seed: int = SAMPLE_SEED,
    sampling_options: dict[str, Any] | None = None,
    progress: bool = False,
    **metric_options: Any,
) -> tuple[list[SampleQualityRecord], Tensor]:
    """Draw ``samples`` from a model and measure them against a reference split (``genmodels eval --samples N``).

    A conditional model gets labels drawn (seeded, with replacement) from the reference split's
    labels, so its class mix matches the reference's.

    Args:
        model: the trained model (in the device it lives on).
        dataset: the loaded Dataset (or name) the model was trained on.
        samples: N, how many samples to draw.
        reference: the split to compare against (``test`` for reports), or a prebuilt FeatureReference.
        metrics: which metrics (default: all five).
        batch_size: samples per ``model.sample`` call.
        seed: the sampling seed.
        sampling_options: the model's sampling options, recorded in every record.
        progress: show a progress bar while sampling.
        **metric_options: passed to :func:`sample_quality` (k, kid_subsets, memorization_quantile, device…).

    Returns:
        (records, the samples drawn) — keep the samples to save a grid.
    """
    ref = reference if isinstance(reference, FeatureReference) else FeatureReference(
        dataset, reference, device=metric_options.pop("device", "cpu"), data_dir=metric_options.pop("data_dir", None)
    )
    labels = None
    y_ref = ref.dataset.split(ref.split).y
    if getattr(model, "conditional", False) and y_ref is not None:
        rows = torch.randint(len(y_ref), (samples,), generator=torch.Generator().manual_seed(seed))
        labels = y_ref[rows]
    x, info = draw_samples(model, samples, batch_size=batch_size, seed=seed, labels=labels,
                           options=sampling_options, progress=progress)
    recorded = {"sampling_seed": seed, "sampling_options": dict(sampling_options or {})}
    if info:
        recorded["sampling_info"] = {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool))}
    metric_options.pop("device", None)
    metric_options.pop("data_dir", None)
    records = sample_quality(x, ref.dataset, reference=ref, metrics=metrics, options=recorded, **metric_options)
    return records, x


class FrechetValidation:
    """FD (genmodels features) on the validation split, for choosing checkpoints during training.

    The validation features are computed once at construction; each call draws ``samples`` samples
    under the SAME seed (common random numbers, so checkpoints differ by their weights, not by the
    draw) and returns one ``fd`` record. Lower is better. Meant for models with no likelihood
    (GAN, two-stage), but works for any model of an image data set with a feature network.

    >>> # monitor = FrechetValidation(dataset); record = monitor(model); record.value
    """

    def __init__(self, dataset: Any, *, split: str = "validation", samples: int = 1000, batch_size: int = 500,
                 seed: int = SAMPLE_SEED, sampling_options: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu"):
        self.reference = FeatureReference(dataset, split, device=device)
        self.samples = samples
        self.batch_size = batch_size
        self.seed = seed
        self.sampling_options = sampling_options

    def __call__(self, model: Any) -> SampleQualityRecord:
        records, _ = evaluate_sample_quality(
            model, self.reference.dataset, samples=self.samples, reference=self.reference, metrics=("fd",),
            batch_size=self.batch_size, seed=self.seed, sampling_options=self.sampling_options,
        )
        return records[0]


def format_sample_quality(records: Sequence[SampleQualityRecord]) -> str:
    """A plain-text table of records, one per line, with their labels and counts."""
    lines = []
    for r in records:
        err = f" ± {r.stderr:.3g}" if r.stderr is not None else ""
        lines.append(f"{r.label:<66} {r.value:10.4g}{err}  (n={r.samples} vs {r.reference} n={r.reference_examples},"
                     f" {r.features} {r.features_sha256[:12]})")
    return "\n".join(lines)


def quality_figures(records: Sequence[SampleQualityRecord]) -> dict[str, float]:
    """``{metric: value}`` of records, with ``{metric}_stderr`` beside each figure that has one (KID).

    The flat form benchmark scripts write to JSON and tables; the records keep the provenance.
    """
    figures: dict[str, float] = {}
    for r in records:
        figures[r.metric] = r.value
        if r.stderr is not None:
            figures[f"{r.metric}_stderr"] = r.stderr
    return figures
