"""Feature networks fit to a user's own data (``genmodels features fit --data PATH``).

The shipped networks (:mod:`.features`) exist for digits and Fashion-MNIST only. For any other data,
``genmodels features fit`` trains the same small architecture on that data's train split:

- **with labels** (images in class subfolders): a classifier, as for the shipped networks; its
  penultimate layer is the feature vector (as Inception's pool3 is for FID).
- **without labels**: an autoencoder whose bottleneck is the feature vector: the same encoder, then
  one linear layer that predicts every value of the example (logits of the values scaled to [0, 1],
  binary cross-entropy per value). It is the simplest embedding that needs neither labels nor any
  assumption about the data (rotation prediction assumes upright, square images; contrastive
  learning needs augmentations chosen per domain). Its features keep what reconstructs the images,
  not what separates classes, so its FD is a coarser figure than a classifier's; the records say
  which objective made the space.

The conv stages follow the data's size (a 2×2 max-pool each, until the map is about 4 pixels on its
shorter side, at most 4 stages); flat data (a .npy or .csv of vectors) get an MLP (no stages).
Training is the shipped networks' deterministic loop (:func:`.features.fit_network`).

Where it is stored: in the features store, ``$GENMODELS_FEATURES_DIR`` or else
``$XDG_CACHE_HOME/genmodels/features`` (``~/.cache/genmodels/features``), one
``<data name>-<hash of the data's spec name>.safetensors`` + ``.json`` per data set. The user's data
folder is never written to. ``eval --samples``, ``bench`` and the FD monitor of training find it there
by the data's name (its resolved path, with any ``--resize``/``--center-crop`` in it); ``--features
FILE`` names another file (e.g. one written with ``features fit --out``). The JSON records the data's
spec and split sizes; a network whose spec no longer matches the data is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import UserError
from .features import (
    FeatureExtractor, FeatureNetwork, FeatureRecipe, _accuracy, fit_network, read_extractor, save_feature_network, weights_sha256,
)

__all__ = [
    "features_store",
    "stored_features_path",
    "fit_recipe",
    "fit_features",
    "load_features_file",
    "find_fitted_features",
    "FIT_COMMAND",
    "feature_extractor_for",
    "features_available",
    "missing_features_message",
    "save_fitted",
]

#: The command that makes a feature network for a user's data (named by every refusal).
FIT_COMMAND = "genmodels features fit --data PATH"
VERSION = 1


def features_store() -> Path:
    """Where fitted feature networks live: ``$GENMODELS_FEATURES_DIR``, else the user's cache."""
    if os.environ.get("GENMODELS_FEATURES_DIR"):
        return Path(os.environ["GENMODELS_FEATURES_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "genmodels" / "features"


def stored_features_path(data_name: str) -> Path:
    """The store's file for a data set's spec name (a resolved path, with any transform in it).

    >>> stored_features_path("/data/cats (resize 32x32)").name[:19]
    'cats__resize_32x32-'
    """
    readable = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(data_name.split(" (")[0]).name)
    suffix = data_name[len(data_name.split(" (")[0]):]
    readable += "".join(ch if ch.isalnum() else "_" for ch in suffix)
    digest = hashlib.sha256(data_name.encode()).hexdigest()[:16]
    return features_store() / f"{readable.strip('_')[:60] or 'data'}-{digest}.safetensors"


def _stages(shape: tuple[int, ...]) -> int:
    """Conv stages for an example shape: until the shorter side is 2 or 3 pixels, 1 to 4; 0 for flat data.

    As the shipped networks: 2 stages for 8×8 digits, 3 for 28×28 Fashion-MNIST.

    >>> _stages((1, 8, 8)), _stages((1, 28, 28)), _stages((3, 32, 32)), _stages((3, 256, 256)), _stages((64,))
    (2, 3, 4, 4, 0)
    """
    if len(shape) != 3 or min(shape[1:]) < 4:
        return 0
    return max(1, min(4, int(math.log2(min(shape[1:]) / 2))))


def fit_recipe(data_name: str, shape: tuple[int, ...], n_train: int, *, epochs: int | None = None,
               seed: int = 0) -> FeatureRecipe:
    """The recipe for a user's data: stages by size, 128 features, about 3 000 steps (2 to 40 epochs)."""
    stages = _stages(shape)
    batch_size = 64 if n_train < 20_000 else 128
    steps_per_epoch = math.ceil(n_train / batch_size)
    chosen = epochs or max(2, min(40, math.ceil(3000 / steps_per_epoch)))
    return FeatureRecipe(data_name, channels=(32, 64, 64, 64)[:stages], features=128, epochs=chosen,
                         batch_size=batch_size, lr=2e-3, weight_decay=1e-4, seed=seed)


def fit_features(dataset: Any, *, epochs: int | None = None, max_steps: int | None = None, seed: int = 0,
                 progress: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Train a feature network on a loaded data set's train split (see the module doc).

    Args:
        dataset: a loaded :class:`~genmodels.data.Dataset` with discrete values (levels).
        epochs: override the recipe's epochs.
        max_steps: stop after this many steps; for tests.
        seed: seeds the initialization and the order of the examples.
        progress: one line per epoch to stderr.

    Returns:
        (state dict, info): the weights, and the JSON beside them (objective, recipe, the data's
        spec and split sizes, validation and test accuracy or reconstruction error, SHA-256).
    """
    spec = dataset.spec
    if spec.levels is None:
        raise UserError(
            f"'{spec.name}' holds continuous values; features fit takes discrete data (images, or "
            "integer levels); sample quality of continuous data is not measured"
        )
    train = dataset.split("train")
    # Read in the stored dtype (uint8 for images), not as one int64 tensor: 8 times less memory
    x_train, y_train = torch.stack([train.stored(i) for i in range(len(train))]), train.y
    labelled = y_train is not None and (spec.num_classes or 0) >= 2
    recipe = fit_recipe(spec.name, tuple(spec.shape), len(x_train), epochs=epochs, seed=seed)
    dims = math.prod(spec.shape)
    levels = spec.levels

    def autoencoder_loss(network: FeatureNetwork, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        # Binary cross-entropy of each value scaled to [0, 1] (a Bernoulli decoder's mean, as for
        # [0, 1] images in Kingma & Welling 2014, appendix C.1), averaged over values and examples.
        return nn.functional.binary_cross_entropy_with_logits(network(x), x.flatten(1))

    def measure(network: FeatureNetwork) -> dict[str, Any]:
        figures = {}
        for name in ("validation", "test"):
            split = dataset.split(name)
            if labelled:
                figures[f"{name}_accuracy"] = _accuracy(network, split.x, split.y, levels)
            else:
                with torch.no_grad():
                    x = split.x.float() / (levels - 1)
                    figures[f"{name}_reconstruction_bce"] = float(autoencoder_loss(network, x, None))
        return figures

    if labelled:
        loss_of = lambda network, x, rows: nn.functional.cross_entropy(network(x), y_train[rows])  # noqa: E731
    else:
        loss_of = autoencoder_loss
    network, steps, seconds, figures = fit_network(
        recipe, x_train, levels, loss_of, image_shape=tuple(spec.shape),
        outputs=spec.num_classes if labelled else dims, max_steps=max_steps, progress=progress, measure=measure,
    )
    state = {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}
    digest = weights_sha256(state)
    objective = "classifier" if labelled else "autoencoder"
    info = {
        "name": f"genmodels-fit-{objective}-{Path(spec.name.split(' (')[0]).name}-v{VERSION}-{digest[:8]}",
        "objective": objective,
        "recipe": recipe.to_json(),
        "outputs": spec.num_classes if labelled else dims,
        "data": {**spec.to_json(), "source": getattr(dataset, "source", None),
                 "splits": {n: len(dataset.split(n)) for n in ("train", "validation", "test")}},
        "sha256": digest,
        "parameters": sum(v.numel() for v in state.values()),
        "figures": figures,
        "steps": steps,
        "train_seconds_1_thread": round(seconds, 1),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    return state, info


def check_out(path: str | Path | None) -> None:
    """``features fit --out FILE`` checked before training: a .safetensors name."""
    if path is not None and Path(path).suffix != ".safetensors":
        raise UserError(f"--out {path}: name a .safetensors file (its .json goes beside it)")


def save_fitted(state: dict[str, torch.Tensor], info: dict[str, Any], path: str | Path) -> Path:
    """Write ``path`` (safetensors) and its ``.json``; the store's file for the data if ``path`` is None."""
    path = Path(path) if path is not None else stored_features_path(info["data"]["name"])
    check_out(path)
    save_feature_network(state, info, path)
    return path


def load_features_file(path: str | Path, data_name: str | None = None, shape: tuple[int, ...] | None = None,
                       device: torch.device | str = "cpu") -> FeatureExtractor:
    """A feature network from a safetensors file with its ``.json`` (fitted, or a shipped network's copy).

    Args:
        path: the .safetensors file.
        data_name: the data set it is used on (a shipped-format file needs digits/fashion-mnist).
        shape: the example shape it must take (checked).
        device: where to put it.

    Raises:
        UserError: a missing or corrupt file, or one made for examples of another shape.
    """
    from .features import load_feature_network

    file = Path(path).expanduser()
    info_file = file.with_suffix(".json")
    if not file.is_file() or not info_file.is_file():
        raise UserError(f"feature network {file} (and its .json beside it) not found; make one: {FIT_COMMAND} --out {file}")
    info = json.loads(info_file.read_text())
    if "objective" not in info:  # a shipped network's format (python -m genmodels.metrics retrain)
        return load_feature_network(data_name or info.get("recipe", {}).get("dataset", ""), file, device)
    fitted_shape = tuple(info["data"]["shape"])
    if shape is not None and tuple(shape) != fitted_shape:
        raise UserError(f"feature network {file} was fit to examples of shape {fitted_shape}, not {tuple(shape)}; "
                        f"fit one to this data: {FIT_COMMAND}")
    return read_extractor(file, info, fitted_shape, info["outputs"], device)


def find_fitted_features(data_name: str, shape: tuple[int, ...] | None = None,
                         device: torch.device | str = "cpu") -> FeatureExtractor | None:
    """The network fit to this data in the features store, or None where none was fit."""
    path = stored_features_path(data_name)
    if not path.is_file():
        return None
    return load_features_file(path, data_name, shape, device)


def main_fit(dataset: Any, out: str | None, *, epochs: int | None, seed: int, progress: bool) -> Path:
    """``genmodels features fit``: fit, save (store or ``out``), print one summary line; the file written."""
    check_out(out)
    state, info = fit_features(dataset, epochs=epochs, seed=seed, progress=progress)
    path = save_fitted(state, info, out)
    shown = ", ".join(f"{k} {v:.4g}" for k, v in info["figures"].items())
    print(f"{info['name']}: {info['objective']} fit to {dataset.spec.name} ({info['steps']} steps, "
          f"{info['train_seconds_1_thread']} s; {shown}) → {path}", file=sys.stdout)
    return path


def missing_features_message(data_name: str) -> str:
    """The refusal where no feature network exists for a data set: it names the command that makes one."""
    path = data_name.split(" (")[0]
    return (f"no feature network for data set '{data_name}': fit one to this data with `genmodels features fit --data {path}` "
            "(then used automatically) or pass --features FILE; networks ship only for digits and fashion-mnist")


def feature_extractor_for(data_name: str, shape: tuple[int, ...] | None = None, *, path: str | Path | None = None,
                          device: torch.device | str = "cpu") -> FeatureExtractor:
    """The feature network a data set's samples are measured with.

    In order: ``path`` if given (``--features FILE``); the shipped network (digits, fashion-mnist and
    their binarized forms); the one fit to this data in the features store.

    Raises:
        UserError: none of those exists; the message names ``genmodels features fit``.
    """
    from .features import _base_dataset, load_feature_network

    if path is not None:
        return load_features_file(path, data_name, shape, device)
    try:
        _base_dataset(data_name)
    except UserError:
        found = find_fitted_features(data_name, shape, device)
        if found is None:
            raise UserError(missing_features_message(data_name)) from None
        return found
    return load_feature_network(data_name, device=device)


def features_available(data_name: str) -> bool:
    """Whether :func:`feature_extractor_for` finds a network for this data set without a path."""
    from .features import _base_dataset

    try:
        _base_dataset(data_name)
        return True
    except UserError:
        return stored_features_path(data_name).is_file()
