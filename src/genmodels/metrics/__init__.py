"""Sample-quality metrics in the feature space of genmodels' own feature networks.

- :mod:`.features`: one small CNN classifier per image data set, trained by a fixed recipe, weights
  shipped in ``weights/`` (``python -m genmodels.metrics retrain DATASET --out PATH``).
- :mod:`.quality`: the entry points (:func:`sample_quality`, :func:`evaluate_sample_quality`, the
  FD monitor of training) over reference features computed once;
- :mod:`.distances`: FD, KID with its standard error, k-NN precision/recall and density/coverage,
  a memorization check, each with its paper;
- :mod:`.records`: records that say what a figure is, how many samples and which reference split;
- :mod:`.sampling`: many samples from a model, in batches under a fixed seed.
- :mod:`.inception`: the standard Inception FID, only where the user has torchmetrics and the weights.
"""

from .features import FeatureExtractor, feature_network_name, load_feature_network, train_feature_network
from .quality import (
    DEFAULT_METRICS,
    LABELS,
    METRICS,
    FeatureReference,
    FrechetValidation,
    SampleQualityRecord,
    evaluate_sample_quality,
    format_sample_quality,
    frechet_distance,
    quality_figures,
    sample_quality,
    sample_quality_available,
)
from .sampling import draw_samples_in_batches

#: The former name of :func:`draw_samples_in_batches`, kept while benchmarks/ still import it.
draw_samples = draw_samples_in_batches

__all__ = [
    "FeatureExtractor",
    "feature_network_name",
    "load_feature_network",
    "train_feature_network",
    "DEFAULT_METRICS",
    "LABELS",
    "METRICS",
    "FeatureReference",
    "FrechetValidation",
    "SampleQualityRecord",
    "draw_samples_in_batches",
    "evaluate_sample_quality",
    "format_sample_quality",
    "frechet_distance",
    "quality_figures",
    "sample_quality",
    "sample_quality_available",
]
