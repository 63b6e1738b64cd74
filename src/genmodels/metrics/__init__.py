"""Sample-quality metrics in the feature space of genmodels' own feature networks.

- :mod:`.features`: one small CNN classifier per image data set, trained by a fixed recipe, weights
  shipped in ``weights/`` (``python -m genmodels.metrics retrain DATASET --out PATH``).
- :mod:`.quality`: FD (genmodels features), KID with its standard error, k-NN precision and
  recall, a memorization check; records that say how many samples and which reference split.
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
    draw_samples,
    evaluate_sample_quality,
    format_sample_quality,
    frechet_distance,
    quality_figures,
    sample_quality,
    sample_quality_available,
)

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
    "draw_samples",
    "evaluate_sample_quality",
    "format_sample_quality",
    "frechet_distance",
    "quality_figures",
    "sample_quality",
    "sample_quality_available",
]
