"""Sample-quality records: which metrics exist, what each is called, the record that says what
stands behind a figure, and the two ways to print them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["METRICS", "DEFAULT_METRICS", "LABELS", "SAMPLE_SEED", "SampleQualityRecord", "format_sample_quality", "quality_figures"]


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
