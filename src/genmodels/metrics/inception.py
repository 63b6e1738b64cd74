"""Optional: the standard Inception-v3 FID, through torchmetrics, for users who have the weights on disk.

genmodels never downloads anything and does not depend on torchmetrics. A user who has installed
``torchmetrics`` and ``torch-fidelity`` (``pip install torchmetrics torch-fidelity``) and holds the
FID Inception weights (``weights-inception-2015-12-05-6726825d.pth``, the file torch-fidelity
downloads) can compute the standard FID with :func:`inception_fid`. Its figures are labelled
"FID (Inception-v3)". Grayscale images are repeated over 3 channels and resized to 299×299 by
torchmetrics, as is usual for MNIST-like data; such FIDs are comparable only with FIDs computed the
same way (number of samples, reference split, resizing).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from ..errors import UserError, option

__all__ = ["INCEPTION_LABEL", "inception_fid", "standard_fid", "format_standard_fid", "check_inception_weights"]

INCEPTION_LABEL = "FID (Inception-v3)"


def _to_unit_rgb(x: Tensor, levels: int | None) -> Tensor:
    """(N, C, H, W) levels 0..K−1 (or floats in [0, 1]) → float RGB in [0, 1]."""
    x = x.float() if x.is_floating_point() else x.float() / (levels - 1)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@torch.no_grad()
def inception_fid(
    samples: Tensor,
    reference: Tensor,
    levels: int | None,
    *,
    weights_path: str | Path,
    batch_size: int = 100,
    device: torch.device | str = "cpu",
) -> float:
    """The standard FID between samples and reference images, with Inception weights from disk.

    Args:
        samples: (N, C, H, W) in the data's own space (int levels 0..levels−1).
        reference: (M, C, H, W) real images in the same space (e.g. the test split's ``x``).
        levels: K, the number of levels of the data (None if floats in [0, 1]).
        weights_path: the FID Inception-v3 weights file on disk (torchmetrics'
            ``feature_extractor_weights_path``).
        batch_size: images per forward pass.
        device: where to run Inception.

    Raises:
        UserError: torchmetrics / torch-fidelity are not installed, or the weights file is missing.
    """
    missing = [m for m in ("torchmetrics", "torch_fidelity") if importlib.util.find_spec(m) is None]
    if missing:
        raise UserError(
            f"the standard FID needs the optional packages {', '.join(missing)}: "
            "pip install torchmetrics torch-fidelity (genmodels does not depend on them); "
            "without them use the FD (genmodels features) of genmodels.metrics.quality"
        )
    path = Path(weights_path)
    if not path.is_file():
        raise UserError(
            f"Inception weights not found at {path}; genmodels never downloads them. Put the FID "
            "Inception-v3 weights (weights-inception-2015-12-05-6726825d.pth) there, or use "
            "the FD (genmodels features) instead"
        )
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(path))
    metric = metric.to(device)
    for images, real in ((reference, True), (samples, False)):
        for start in range(0, len(images), batch_size):
            metric.update(_to_unit_rgb(images[start : start + batch_size], levels).to(device), real=real)
    return float(metric.compute())


def check_inception_weights(weights_path: str | Path) -> Path:
    """``--inception-weights FILE`` checked before any sampling: the file must exist (never downloaded)."""
    path = Path(weights_path).expanduser()
    if not path.is_file():
        raise UserError(f"{option('inception_weights', path)}: no such file; genmodels never downloads Inception weights")
    return path


def standard_fid(samples: Tensor, reference: Tensor, levels: int | None, weights_path: str | Path,
                 split: str, device: torch.device | str = "cpu") -> dict:
    """``--inception-weights FILE``: the standard FID as a JSON-able record, or a note where it is skipped.

    A missing weights file is the user's mistake (a ``UserError``); missing optional packages skip
    the figure with a note naming the install command, so the rest of the evaluation still runs.
    """
    path = check_inception_weights(weights_path)
    record = {"metric": "fid", "label": INCEPTION_LABEL, "samples": len(samples), "reference": split,
              "reference_examples": len(reference), "weights": str(path)}
    missing = [m for m in ("torchmetrics", "torch_fidelity") if importlib.util.find_spec(m) is None]
    if missing:
        return {**record, "skipped": f"needs {', '.join(missing)} (pip install torchmetrics torch-fidelity)"}
    return {**record, "value": inception_fid(samples, reference, levels, weights_path=path, device=device)}


def format_standard_fid(record: dict) -> str:
    """One line for the terminal."""
    if "skipped" in record:
        return f"{record['label']}: skipped, {record['skipped']}"
    return (f"{record['label']}: {record['value']:.4g} ({record['samples']} samples against the "
            f"{record['reference']} split's {record['reference_examples']})")
