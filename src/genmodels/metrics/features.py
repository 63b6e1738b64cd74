"""The project's own feature networks: one small CNN classifier per image data set.

Sample-quality metrics (:mod:`genmodels.metrics.quality`) compare samples and real images in
the feature space of a classifier. The standard choice, Inception-v3 (Heusel et al. 2017), needs
weights that cannot be downloaded here and was trained on ImageNet photographs, far from 8×8 digits.
genmodels therefore trains its own classifier per data set with a fixed recipe and ships the weights
inside the package (``metrics/weights/<name>.safetensors`` with a ``.json`` holding the recipe, the
accuracies and a SHA-256 of the weights). Figures computed with them are labelled
"FD (genmodels features)", never "FID": they are comparable only with other figures computed with
the same network (same name and hash).

The feature vector is the penultimate layer (after its ReLU), as Inception's pool3 layer is for FID.

Reproducibility: :func:`train_feature_network` trains on one CPU thread with
``torch.use_deterministic_algorithms(True)``, a fixed seed for the initialization and for the order
of the examples, and a closed-form learning-rate schedule. On the same torch version and the same
CPU kind (``torch.backends.cpu.get_cpu_capability()``) it reproduces the shipped weights bit for bit:
``python -m genmodels.metrics retrain digits --out /tmp/digits.safetensors`` prints the hash
and whether it equals the shipped one. The JSON records the torch version and CPU capability the
shipped weights were made with; other builds may round differently (BLAS kernels differ) and give
another, equally good network.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import UserError
from ..progress import Phase

__all__ = [
    "FeatureRecipe",
    "FeatureNetwork",
    "FeatureExtractor",
    "RECIPES",
    "feature_network_name",
    "train_feature_network",
    "fit_network",
    "save_feature_network",
    "load_feature_network",
    "weights_sha256",
    "shipped_info",
    "main",
]


@dataclass(frozen=True)
class FeatureRecipe:
    """Everything that determines a feature network: data, architecture, optimization, seed.

    Args:
        dataset: the registered data set it is trained on (its train split; labels are the targets).
        channels: output channels of the conv stages; each stage is conv3×3 → ReLU → max-pool 2×2.
        features: width of the penultimate layer, the feature vector's dimension.
        epochs: passes over the train split.
        batch_size: examples per step; the last partial batch of an epoch is kept.
        lr: peak learning rate of Adam (Kingma & Ba 2015); cosine decay to 0 over all steps.
        weight_decay: decoupled weight decay (AdamW, Loshchilov & Hutter 2019).
        seed: seeds the initialization and the order of the examples.
    """

    dataset: str
    channels: tuple[int, ...]
    features: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    seed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FeatureRecipe:
        return cls(**{**obj, "channels": tuple(obj["channels"])})


#: The shipped recipes. Changing one changes the network: bump the version in its name.
RECIPES: dict[str, FeatureRecipe] = {
    "digits": FeatureRecipe("digits", channels=(32, 64), features=128, epochs=40, batch_size=64, lr=2e-3,
                            weight_decay=1e-4),
    "fashion-mnist": FeatureRecipe("fashion-mnist", channels=(32, 64, 64), features=128, epochs=5, batch_size=128,
                                   lr=2e-3, weight_decay=1e-4),
}

#: Data-set shape and levels per feature network (the binarized variants reuse their parent's).
_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 17),
    "fashion-mnist": ((1, 28, 28), 256),
}

VERSION = 1


def feature_network_name(dataset: str) -> str:
    """The feature network a data set's samples are measured with, e.g. ``genmodels-digits-cnn-v1``.

    Binarized variants (``binary-digits``, ``binary-fashion-mnist-dynamic``, …) use their parent's
    network: images are scaled to [0, 1] by their own number of levels first.

    >>> feature_network_name("binary-digits-dynamic")
    'genmodels-digits-cnn-v1'
    """
    return f"genmodels-{_base_dataset(dataset)}-cnn-v{VERSION}"


def _base_dataset(dataset: str) -> str:
    base = dataset.removeprefix("binary-").removesuffix("-dynamic")
    if base not in RECIPES:
        raise UserError(
            f"no feature network for data set '{dataset}'; sample-quality metrics exist for "
            f"{', '.join(sorted(RECIPES))} and their binarized variants"
        )
    return base


class FeatureNetwork(nn.Module):
    """A small CNN classifier; :meth:`features` is its penultimate layer.

    Input: float images in [0, 1] of shape (B, C, H, W) (use :class:`FeatureExtractor` for levels).
    Each stage: conv 3×3 (padding 1) → ReLU → max-pool 2×2; then flatten → linear → ReLU
    (the features) → linear (the class logits, or an autoencoder's reconstruction logits:
    :mod:`.fitted`). With no stages (``channels=()``) the example is flattened first (any shape).
    """

    def __init__(self, image_shape: tuple[int, ...], channels: tuple[int, ...], features: int,
                 num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        flat = math.prod(image_shape)  # no conv stages: an MLP over the flattened example (tabular data)
        if channels:
            c, h, w = image_shape
            for out in channels:
                layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
                c, h, w = out, h // 2, w // 2
            flat = c * h * w
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(flat, features), nn.ReLU())
        self.head = nn.Linear(features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] → (B, features), the penultimate activations."""
        return self.body(2.0 * x - 1.0)  # centre the input at 0

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def weights_sha256(state: dict[str, Tensor]) -> str:
    """SHA-256 of a state dict: names, dtypes, shapes and raw bytes, in sorted name order.

    Independent of the file format, so a retrained network can be compared with the shipped one.
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


@dataclass
class FeatureExtractor:
    """A trained feature network with its provenance; call it on data in the data's own space.

    Attributes:
        name: e.g. ``genmodels-digits-cnn-v1``.
        sha256: :func:`weights_sha256` of its weights; records carry it so figures from different
            weights are never compared by accident.
        network: the CNN (eval mode).
        info: the recipe and measured accuracies (the shipped JSON).
    """

    name: str
    sha256: str
    network: FeatureNetwork
    image_shape: tuple[int, int, int]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dims(self) -> int:
        return self.network.head.in_features

    @torch.no_grad()
    def __call__(self, x: Tensor, levels: int, *, batch_size: int = 1000) -> Tensor:
        """Features (N, F) in float64 of images ``x`` (N, C, H, W): int levels 0..levels−1, or floats in [0, 1].

        Integer data are scaled by their own number of levels, so binarized images (K = 2) and
        grayscale ones (K = 17 or 256) land in the same [0, 1] range.
        """
        if tuple(x.shape[1:]) != self.image_shape:
            raise UserError(
                f"images of shape {tuple(x.shape[1:])} do not fit feature network {self.name}, "
                f"which expects {self.image_shape}"
            )
        if x.is_floating_point():
            scaled_all = x
        else:
            if levels is None or levels < 2:
                raise UserError(f"integer images need their number of levels (>= 2), got {levels}")
            scaled_all = None
        self.network.eval()
        device = next(self.network.parameters()).device
        out = []
        with Phase(f"features ({self.name})", total=len(x), unit="images") as phase:
            for start in range(0, len(x), batch_size):
                chunk = x[start : start + batch_size].to(device)
                scaled = chunk.float() if scaled_all is not None else chunk.float() / (levels - 1)
                out.append(self.network.features(scaled).double().cpu())
                phase.update(len(chunk))
        return torch.cat(out) if out else torch.zeros(0, self.dims, dtype=torch.float64)


# --- training -------------------------------------------------------------------------------------
def _split_tensors(dataset: Any, split: str) -> tuple[Tensor, Tensor]:
    s = dataset.split(split)
    return s.x, s.y


def _accuracy(network: FeatureNetwork, x: Tensor, y: Tensor, levels: int, batch_size: int = 1000) -> float:
    network.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = network(x[start : start + batch_size].float() / (levels - 1))
            correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    return correct / len(x)


def fit_network(
    recipe: FeatureRecipe,
    x_train: Tensor,
    levels: int,
    loss_of: Callable[[FeatureNetwork, Tensor, Tensor], Tensor],
    *,
    image_shape: tuple[int, ...],
    outputs: int,
    max_steps: int | None = None,
    progress: bool = False,
    measure: Callable[[FeatureNetwork], dict[str, Any]] | None = None,
) -> tuple[FeatureNetwork, int, float, dict[str, Any]]:
    """Train a :class:`FeatureNetwork` by a recipe, deterministically on one CPU thread.

    Runs with ``torch.use_deterministic_algorithms(True)`` (the global settings are restored
    afterwards). Parameters are initialized under the recipe's seed; each epoch's order is a
    permutation drawn from a generator seeded with it; AdamW with a cosine decay of the learning
    rate to 0 over all steps (Loshchilov & Hutter 2017); no augmentation, no dropout.

    Args:
        recipe: architecture, optimization and seed.
        x_train: (N, *shape) int levels 0..levels−1.
        levels: K, to scale the examples to [0, 1].
        loss_of: ``loss_of(network, x, rows)`` → the scalar loss of a batch ``x`` (in [0, 1]) whose
            rows of ``x_train`` are ``rows`` (a classifier's cross-entropy, an autoencoder's loss).
        image_shape: the shape of one example.
        outputs: width of the last layer (classes, or the reconstruction's dimensions).
        max_steps: stop after this many steps (the schedule still spans the full run); for tests.
        progress: one line per epoch to stderr.
        measure: called on the trained network inside the deterministic settings (accuracies).

    Returns:
        (network, steps taken, training seconds, what ``measure`` returned).
    """
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    started = time.perf_counter()
    try:
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(recipe.seed)
            network = FeatureNetwork(image_shape, recipe.channels, recipe.features, outputs)
        order_rng = torch.Generator().manual_seed(recipe.seed)
        optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        n = len(x_train)
        steps_per_epoch = math.ceil(n / recipe.batch_size)
        total = recipe.epochs * steps_per_epoch
        step = 0
        for epoch in range(recipe.epochs):
            network.train()
            order = torch.randperm(n, generator=order_rng)
            for start in range(0, n, recipe.batch_size):
                if max_steps is not None and step >= max_steps:
                    break
                idx = order[start : start + recipe.batch_size]
                for group in optimizer.param_groups:  # cosine decay to 0 (Loshchilov & Hutter 2017)
                    group["lr"] = recipe.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
                x = x_train[idx].float() / (levels - 1)
                loss = loss_of(network, x, idx)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
            if progress:
                print(f"epoch {epoch + 1}/{recipe.epochs}: last loss {loss.item():.4f} "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
        seconds = time.perf_counter() - started
        measured = measure(network) if measure is not None else {}
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return network, step, seconds, measured


def train_feature_network(
    dataset_name: str,
    seed: int = 0,
    *,
    epochs: int | None = None,
    max_steps: int | None = None,
    data_dir: str | None = None,
    progress: bool = False,
    evaluate: bool = True,
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Train a data set's feature network by its recipe; deterministic on CPU.

    Runs on one thread with ``torch.use_deterministic_algorithms(True)`` (the global settings are
    restored afterwards). Parameters are initialized under ``seed``; each epoch's order of the train
    split is a permutation drawn from a generator seeded with ``seed``; AdamW with a cosine decay of
    the learning rate to 0 over all steps; cross-entropy loss; no augmentation, no dropout.

    Args:
        dataset_name: ``digits`` or ``fashion-mnist``.
        seed: the recipe's seed (the shipped networks use 0).
        epochs: override the recipe's number of epochs (e.g. a short run for a determinism test).
        max_steps: stop after this many steps (the schedule still spans the full run); for tests.
        data_dir: where the data set's files are, if not the default place.
        progress: print one line per epoch to stderr.
        evaluate: measure validation and test accuracy (skip for quick determinism checks).

    Returns:
        (state dict, info): the weights, and a JSON-able dict with the recipe, the weights' SHA-256,
        train/, training seconds, the torch version and CPU capability.
    """
    from ..data import load_dataset

    if dataset_name not in RECIPES:
        raise UserError(f"no feature-network recipe for '{dataset_name}'; recipes: {', '.join(sorted(RECIPES))}")
    recipe = RECIPES[dataset_name]
    recipe = FeatureRecipe(**{**asdict(recipe), "seed": seed, **({"epochs": epochs} if epochs else {})})
    data = load_dataset(dataset_name, data_dir)
    image_shape, levels = _SHAPES[dataset_name]
    x_train, y_train = _split_tensors(data, "train")

    network, step, seconds, accuracies = fit_network(
        recipe, x_train, levels,
        lambda net, x, idx: nn.functional.cross_entropy(net(x), y_train[idx]),
        image_shape=image_shape, outputs=10, max_steps=max_steps, progress=progress,
        measure=(lambda net: {split: _accuracy(net, *_split_tensors(data, split), levels)
                              for split in ("validation", "test")}) if evaluate else None,
    )
    state = {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}
    info = {
        "name": feature_network_name(dataset_name),
        "recipe": recipe.to_json(),
        "sha256": weights_sha256(state),
        "parameters": sum(v.numel() for v in state.values()),
        "accuracy": accuracies,
        "steps": step,
        "train_seconds_1_thread": round(seconds, 1),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    return state, info


# --- shipped weights ------------------------------------------------------------------------------
def _weights_dir() -> Path:
    return Path(str(resources.files("genmodels.metrics") / "weights"))


def shipped_info(dataset_name: str) -> dict[str, Any]:
    """The JSON shipped beside a data set's weights: recipe, accuracies, SHA-256, torch version."""
    base = _base_dataset(dataset_name)
    path = _weights_dir() / f"{base}.json"
    if not path.exists():
        raise UserError(
            f"the feature network for '{base}' is not shipped in this installation ({path} is missing); "
            f"retrain it: python -m genmodels.metrics retrain {base} --out {base}.safetensors"
        )
    return json.loads(path.read_text())


def save_feature_network(state: dict[str, Tensor], info: dict[str, Any], path: str | Path) -> None:
    """Write ``path`` (safetensors, the hash in its metadata) and ``path`` with suffix ``.json`` (info)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"name": info["name"], "sha256": info["sha256"]})
    path.with_suffix(".json").write_text(json.dumps(info, indent=2) + "\n")


def load_feature_network(dataset_name: str, path: str | Path | None = None,
                         device: torch.device | str = "cpu") -> FeatureExtractor:
    """The feature network for a data set (or its binarized variants), from the shipped weights.

    Args:
        dataset_name: ``digits``, ``fashion-mnist`` or a binarized variant of either.
        path: a safetensors file to read instead of the shipped one (e.g. a retrained network);
            its ``.json`` must sit beside it.
        device: where to put the network.

    Raises:
        UserError: no network for that data set, or the weights do not match their recorded hash.
    """
    base = _base_dataset(dataset_name)
    file = Path(path) if path is not None else _weights_dir() / f"{base}.safetensors"
    info_file = file.with_suffix(".json")
    if not file.exists() or not info_file.exists():
        raise UserError(
            f"feature-network weights not found at {file} (and its .json); "
            f"retrain them: python -m genmodels.metrics retrain {base} --out {file}"
        )
    info = json.loads(info_file.read_text())
    image_shape, _ = _SHAPES[base]
    return read_extractor(file, info, image_shape, 10, device)


def read_extractor(file: Path, info: dict[str, Any], image_shape: tuple[int, ...], outputs: int,
                   device: torch.device | str = "cpu") -> FeatureExtractor:
    """A frozen :class:`FeatureExtractor` from a safetensors file and its JSON ``info`` (recipe, hash).

    Raises:
        UserError: the weights do not hash to the SHA-256 the JSON records.
    """
    state = load_file(str(file))
    digest = weights_sha256(state)
    if digest != info["sha256"]:
        raise UserError(f"{file} is corrupt: its weights hash to {digest}, the JSON records {info['sha256']}")
    recipe = FeatureRecipe.from_json(info["recipe"])
    network = FeatureNetwork(image_shape, recipe.channels, recipe.features, outputs)
    network.load_state_dict(state)
    network.to(device).eval()
    for p in network.parameters():
        p.requires_grad_(False)
    return FeatureExtractor(info["name"], digest, network, image_shape, info)


# --- command line ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m genmodels.metrics retrain DATASET --out PATH [--seed S]``.

    Retrains by the shipped recipe, writes PATH (+ .json), prints the accuracies and the hash, and
    exits 0 if the hash equals the shipped one, 1 if it differs (another torch build or CPU kind, or
    another seed), so ``retrain digits && echo reproduced`` checks the shipped weights.
    """
    parser = argparse.ArgumentParser(prog="python -m genmodels.metrics")
    sub = parser.add_subparsers(dest="command", required=True)
    retrain = sub.add_parser("retrain", help="retrain a feature network by its recipe, bit for bit")
    retrain.add_argument("dataset", choices=sorted(RECIPES))
    retrain.add_argument("--out", required=True, help="safetensors file to write (a .json goes beside it)")
    retrain.add_argument("--seed", type=int, default=0)
    retrain.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        state, info = train_feature_network(args.dataset, args.seed, data_dir=args.data_dir, progress=True)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:  # read before writing: --out may be the shipped file itself
        shipped: str | None = shipped_info(args.dataset)["sha256"]
    except UserError:
        shipped = None
    save_feature_network(state, info, args.out)
    print(json.dumps({k: info[k] for k in ("name", "sha256", "accuracy", "train_seconds_1_thread")}, indent=2))
    if shipped is None:
        print("no shipped weights to compare with")
        return 1
    same = shipped == info["sha256"]
    print("identical to the shipped weights" if same else f"differs from the shipped weights ({shipped})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
