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
This module holds those and the reference features; the distances themselves are in
:mod:`.distances`, the records in :mod:`.records`, the drawing of samples in :mod:`.sampling`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import UserError
from .distances import (
    density_coverage, exact_copies, frechet_distance, gaussian_statistics, kernel_inception_style_distance,
    memorization, nearest_distances, precision_recall,
)
from .features import FeatureExtractor
from .fitted import feature_extractor_for, features_available
from .records import DEFAULT_METRICS, LABELS, METRICS, SAMPLE_SEED, SampleQualityRecord, format_sample_quality, quality_figures
from .sampling import draw_samples_in_batches

__all__ = [
    "FeatureReference",
    "sample_quality",
    "sample_quality_available",
    "evaluate_sample_quality",
    "FrechetValidation",
    # the records, re-exported: what sample_quality returns
    "METRICS",
    "DEFAULT_METRICS",
    "LABELS",
    "SAMPLE_SEED",
    "SampleQualityRecord",
    "format_sample_quality",
    "quality_figures",
]


# --- reference features and the entry point -------------------------------------------------------
def _dataset(dataset: Any, data_dir: str | None = None):
    from ..data import Dataset, load_dataset

    return dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir)


def sample_quality_available(dataset_name: str) -> bool:
    """Whether a feature network exists for this data set: shipped (digits, fashion-mnist, their
    binarized variants) or fit to it (``genmodels features fit``, :mod:`.fitted`)."""
    return features_available(dataset_name)


class FeatureReference:
    """One split's features (and, lazily, the train split's for memorization), computed once.

    Build it once and reuse it (e.g. every validation round during training):
    ``FeatureReference(load_dataset("digits"), "validation")``.

    Args:
        dataset: a loaded :class:`~genmodels.data.Dataset` or a registered name.
        split: the reference split (``test`` for reported figures, ``validation`` to choose checkpoints).
        extractor: the feature network; by default the shipped one for the data set, or the one fit
            to it (:func:`.fitted.feature_extractor_for`).
        device: where to run the feature network.
        data_dir: passed to ``load_dataset`` when ``dataset`` is a name.
    """

    def __init__(self, dataset: Any, split: str = "test", *, extractor: FeatureExtractor | None = None,
                 device: torch.device | str = "cpu", data_dir: str | None = None):
        self.dataset = _dataset(dataset, data_dir)
        self.spec = self.dataset.spec
        self.split = split
        self.extractor = extractor or feature_extractor_for(self.spec.name, tuple(self.spec.shape), device=device)
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
            copies = exact_copies(samples.cpu(), ref.dataset.train.x)
            details["exact_copies"] = int(copies.sum())
            details["exact_copy_indices"] = copies.nonzero().flatten()[:100].tolist()
            out.append(SampleQualityRecord(
                "memorization", LABELS["memorization"], value, None, n, "train", len(ref.train_features),
                ref.spec.name, ref.extractor.name, ref.extractor.sha256,
                {**(options or {}), "quantile": memorization_quantile, "baseline": "test"}, details,
            ))
    return out


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
        progress: show the sampling (a bar on a terminal, plain lines otherwise).
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
    x, info = draw_samples_in_batches(model, samples, batch_size=batch_size, seed=seed, labels=labels,
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
                 device: torch.device | str = "cpu", progress: bool = True):
        self.reference = FeatureReference(dataset, split, device=device)
        self.samples = samples
        self.batch_size = batch_size
        self.seed = seed
        self.sampling_options = sampling_options
        self.progress = progress

    def __call__(self, model: Any) -> SampleQualityRecord:
        records, _ = evaluate_sample_quality(
            model, self.reference.dataset, samples=self.samples, reference=self.reference, metrics=("fd",),
            batch_size=self.batch_size, seed=self.seed, sampling_options=self.sampling_options, progress=self.progress,
        )
        return records[0]
