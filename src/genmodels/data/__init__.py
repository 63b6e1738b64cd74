"""Data sets: each knows its shape, its number of levels K and its protocol splits.

Importing this package registers every built-in data set.
"""

from .base import DataSpec, Dataset, DynamicBinarizedSplit, JitteredThresholdSplit, LazySplit, Split
from .registry import dataset_descriptions, dataset_names, load_dataset, load_source, register_dataset
from .transforms import ImageTransform
from . import digits  # noqa: F401  (registers)
from . import fashion_mnist  # noqa: F401  (registers)
from . import binarized  # noqa: F401  (registers)
from . import toy2d  # noqa: F401  (registers)

__all__ = [
    "DataSpec",
    "Dataset",
    "Split",
    "LazySplit",
    "ImageTransform",
    "DynamicBinarizedSplit",
    "JitteredThresholdSplit",
    "load_dataset",
    "load_source",
    "register_dataset",
    "dataset_names",
    "dataset_descriptions",
]
