"""Data sets: protocol splits, Fashion-MNIST files, binarization, toy densities, users' files."""

from __future__ import annotations

import gzip
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.data import DynamicBinarizedSplit, load_dataset
from genmodels.data.base import MAX_LEVELS
from genmodels.data.binarized import EVAL_SEEDS, bernoulli_draw, threshold
from genmodels.data.fashion_mnist import DEFAULT_DIR, IDX_FILES, fashion_mnist_available, fashion_mnist_splits
from genmodels.data.files import load_path
from genmodels.data.toy2d import ANALYTIC_DENSITIES, CHECKERBOARD_ENTROPY, EIGHT_GAUSSIANS_ENTROPY
from genmodels.errors import UserError

needs_fashion = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason=f"Fashion-MNIST files absent from {DEFAULT_DIR}: "
    "sudo apt-get update && sudo apt-get install dataset-fashion-mnist",
)


def assert_disjoint_cover(splits: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(splits)
    assert len(joined) == n and len(np.unique(joined)) == n


# --- digits ---------------------------------------------------------------------------------------
def test_digits_protocol_splits():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (1257, 180, 360)
    assert ds.spec.levels == 17 and ds.spec.shape == (1, 8, 8) and ds.spec.num_classes == 10
    assert ds.train.x.dtype == torch.int64 and int(ds.train.x.max()) == 16 and int(ds.train.x.min()) == 0

    # PROTOCOL.md's rule, computed here independently of split_protocol.
    bunch = load_digits()
    idx = np.random.default_rng(0).permutation(1797)
    images = bunch.images.astype(np.int64).reshape(-1, 1, 8, 8)
    for split, rows in [("test", idx[:360]), ("validation", idx[360:540]), ("train", idx[540:])]:
        assert np.array_equal(ds.split(split).x.numpy(), images[rows])
        assert np.array_equal(ds.split(split).y.numpy(), bunch.target[rows])
    assert_disjoint_cover([idx[:360], idx[360:540], idx[540:]], 1797)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UserError) as e:
        load_dataset("nope")
    for name in ("digits", "fashion-mnist", "binary-digits-dynamic", "checkerboard", "spirals"):
        assert name in str(e.value)


def test_unknown_split_name():
    with pytest.raises(UserError, match="valid splits"):
        load_dataset("digits").split("dev")


# --- Fashion-MNIST ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fashion():
    return load_dataset("fashion-mnist")


@needs_fashion
def test_fashion_mnist_splits(fashion):
    ds = fashion
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (55_000, 5_000, 10_000)
    assert ds.spec.shape == (1, 28, 28) and ds.spec.levels == 256 and ds.spec.num_classes == 10
    for split in (ds.train, ds.validation, ds.test):
        assert split.x.dtype == torch.uint8 and split.y.dtype == torch.int64  # stored compactly
        assert split[0]["x"].dtype == torch.int64  # handed out as int64 levels
        assert split.x.shape[1:] == (1, 28, 28)
    assert int(ds.train.x.min()) == 0 and int(ds.train.x.max()) == 255
    assert set(ds.test.y.unique().tolist()) == set(range(10))
    # First 55 000 / last 5 000 of the official training file, test = the official 10 000.
    official = {}
    for key in ("train-images", "test-images", "train-labels"):
        with gzip.open(DEFAULT_DIR / (IDX_FILES[key].stem + ".gz")) as f:
            official[key] = f.read()
    train_images = np.frombuffer(official["train-images"], np.uint8, offset=16).reshape(-1, 1, 28, 28)
    train_labels = np.frombuffer(official["train-labels"], np.uint8, offset=8)
    assert np.array_equal(ds.train.x[:3].numpy(), train_images[:3])
    assert np.array_equal(ds.train.x[-1].numpy(), train_images[54_999])
    assert np.array_equal(ds.validation.x[0].numpy(), train_images[55_000])
    assert np.array_equal(ds.validation.x[-1].numpy(), train_images[-1])
    assert np.array_equal(ds.validation.y.numpy(), train_labels[55_000:])
    test_images = np.frombuffer(official["test-images"], np.uint8, offset=16).reshape(-1, 1, 28, 28)
    assert np.array_equal(ds.test.x[[0, -1]].numpy(), test_images[[0, -1]])
    assert ds.test.y[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]  # upstream's first test labels


def test_fashion_mnist_missing_dir(tmp_path):
    assert not fashion_mnist_available(str(tmp_path))
    with pytest.raises(UserError) as e:
        load_dataset("fashion-mnist", data_dir=str(tmp_path))
    message = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in message and str(tmp_path) in message
    assert "--data-dir" in message and "\n" not in message


def _idx_bytes(shape: tuple[int, ...], payload: bytes) -> bytes:
    header = bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + payload


def _folder_with(tmp_path: Path, stem: str, content: bytes, gz: bool) -> Path:
    """A folder of the four files where ``stem`` holds ``content`` and the others are empty (labels
    are read first, so a broken label file is reported before the empty image files are read)."""
    folder = tmp_path / "fmnist"
    folder.mkdir()
    for f in IDX_FILES.values():
        data = content if f.stem == stem else b""
        if gz:
            (folder / (f.stem + ".gz")).write_bytes(gzip.compress(data, compresslevel=1))
        else:
            (folder / f.stem).write_bytes(data)
    return folder


@pytest.mark.parametrize(
    "content, gz, problem",
    [
        (b"this is not gzip at all", True, "corrupt"),
        (_idx_bytes((60_000,), bytes(1000)), False, "truncated"),
        (bytes([0, 0, 8, 3]) + bytes(100), False, "magic"),
        (_idx_bytes((50_000,), bytes(50_000)), True, "shape"),
        (_idx_bytes((60_000,), bytes(60_000)), False, "SHA-256"),  # right size, wrong contents
    ],
)
def test_fashion_mnist_corrupt_file(tmp_path, content, gz, problem):
    folder = _folder_with(tmp_path, "train-labels-idx1-ubyte", content, gz)
    assert fashion_mnist_available(str(folder))
    with pytest.raises(UserError, match=problem) as e:
        load_dataset("fashion-mnist", data_dir=str(folder))
    assert "train-labels-idx1-ubyte" in str(e.value)


def test_fashion_mnist_incomplete_folder(tmp_path):
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(UserError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("fashion-mnist", data_dir=str(tmp_path))


@needs_fashion
def test_fashion_mnist_uncompressed_and_nested(tmp_path):
    # --data-dir may hold the files uncompressed, also in a fashion-mnist/ subfolder.
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for key in ("train-labels", "test-labels"):
        with gzip.open(DEFAULT_DIR / (IDX_FILES[key].stem + ".gz")) as f:
            (folder / IDX_FILES[key].stem).write_bytes(f.read())
    for key in ("train-images", "test-images"):  # gzipped images, linked rather than copied (30 MB)
        (folder / (IDX_FILES[key].stem + ".gz")).symlink_to(DEFAULT_DIR / (IDX_FILES[key].stem + ".gz"))
    splits = fashion_mnist_splits(str(tmp_path))
    assert splits["validation"][1].shape == (5_000,) and splits["test"][0].shape == (10_000, 1, 28, 28)


# --- binarized --------------------------------------------------------------------------------------
def test_binary_digits_static():
    original, binary = load_dataset("digits"), load_dataset("binary-digits")
    assert binary.spec.name == "binary-digits" and binary.spec.levels == 2
    assert binary.spec.shape == (1, 8, 8) and binary.spec.num_classes == 10
    for split in ("train", "validation", "test"):
        x, xb = original.split(split).x, binary.split(split).x
        assert xb.dtype == torch.int64 and set(xb.unique().tolist()) <= {0, 1}
        assert torch.equal(xb, (x >= 8).long())  # x / 16 >= 0.5
        assert torch.equal(binary.split(split).y, original.split(split).y)
    assert threshold(np.array([0, 127, 128, 255]), 256).tolist() == [0, 0, 1, 1]


def test_binary_digits_dynamic():
    original, ds = load_dataset("digits"), load_dataset("binary-digits-dynamic")
    assert ds.spec.name == "binary-digits-dynamic" and ds.spec.levels == 2
    train = ds.train
    assert isinstance(train, DynamicBinarizedSplit) and len(train) == 1257

    def draw(epoch: int) -> torch.Tensor:
        train.set_epoch(epoch)
        return torch.stack([train[i]["x"] for i in range(200)])

    first, again, other = draw(0), draw(0), draw(1)
    assert torch.equal(first, again)  # same (epoch, index), same bits
    assert not torch.equal(first, other)  # a new epoch, a new draw
    assert set(first.unique().tolist()) <= {0, 1} and first.dtype == torch.int64
    # Pixels at 0 are always off, pixels at 16 always on.
    x = original.train.x[:200]
    assert (first[x == 0] == 0).all() and (first[x == 16] == 1).all()
    assert torch.equal(train[3]["y"], original.train.y[3])

    # Validation and test: one fixed draw, the same on every load and every epoch.
    again_ds = load_dataset("binary-digits-dynamic")
    for split in ("validation", "test"):
        xb = ds.split(split).x
        assert type(ds.split(split)) is not DynamicBinarizedSplit
        assert torch.equal(xb, again_ds.split(split).x)
        ds.split(split).set_epoch(5)
        assert torch.equal(ds.split(split)[0]["x"], xb[0])
        assert set(xb.unique().tolist()) <= {0, 1}
        xo = original.split(split).x
        assert (xb[xo == 0] == 0).all() and (xb[xo == 16] == 1).all()
    # The draw is Bernoulli(x/16): its mean matches the mean intensity.
    p = original.test.x.double() / 16
    assert abs(ds.test.x.double().mean() - p.mean()) < 4 * math.sqrt((p * (1 - p)).sum()) / p.numel()


def test_binary_digits_jitter_flips_only_stroke_edges_at_the_stated_rate():
    """Train: 1[x/16 + u ≥ 7.5/16], u ~ U(−3/16, 3/16), redrawn per epoch; evaluation splits are
    binary-digits' exactly. Each grey level's frequency of 1s matches P(u ≥ 7.5/16 − x/16): the
    noise is centred on the static cut between levels 7 and 8, so every level's likelier bit is its
    static bit (a cut at 1/2 would make level 8, a static 1, a coin flip)."""
    from genmodels.data import JitteredThresholdSplit

    original, static, ds = load_dataset("digits"), load_dataset("binary-digits"), load_dataset("binary-digits-jitter")
    assert ds.spec == dataclasses.replace(static.spec, name="binary-digits-jitter")
    for split in ("validation", "test"):
        assert torch.equal(ds.split(split).x, static.split(split).x)
    train = ds.train
    assert isinstance(train, JitteredThresholdSplit) and len(train) == 1257

    def draw(epoch: int) -> torch.Tensor:
        train.set_epoch(epoch)
        return torch.stack([train[i]["x"] for i in range(len(train))])

    first, other = draw(0), draw(1)
    assert torch.equal(first, draw(0)) and not torch.equal(first, other)
    x = original.train.x
    for level in range(17):
        # P(x/16 + u ≥ 7.5/16) with u uniform on (−a, a): clip((x/16 − 7.5/16 + a) / 2a, 0, 1).
        expected = min(max((level / 16 - 7.5 / 16 + 3 / 16) / (6 / 16), 0.0), 1.0)
        observed = torch.cat([first[x == level], other[x == level]]).double()
        if expected in (0.0, 1.0):
            assert (observed == expected).all(), level  # far from the threshold: never flipped
        else:
            se = math.sqrt(expected * (1 - expected) / len(observed))
            assert abs(observed.mean().item() - expected) < 5 * se, (level, observed.mean().item(), expected)
            assert (observed.mean().item() > 0.5) == (level >= 8), level  # the static bit is the likelier one
    assert torch.equal(train[3]["y"], original.train.y[3])
    with pytest.raises(ValueError, match="amplitude"):
        JitteredThresholdSplit(x[:2], 17, amplitude=0.7)


@needs_fashion
def test_binary_fashion_mnist():
    ds = load_dataset("binary-fashion-mnist")
    assert ds.spec.name == "binary-fashion-mnist" and ds.spec.levels == 2 and ds.spec.shape == (1, 28, 28)
    x = fashion_mnist_splits()["validation"][0]
    assert np.array_equal(ds.validation.x.numpy(), (x >= 128).astype(np.int64))
    assert (len(ds.train), len(ds.test)) == (55_000, 10_000)


@needs_fashion
def test_binary_fashion_mnist_dynamic():
    ds = load_dataset("binary-fashion-mnist-dynamic")
    assert ds.spec.levels == 2 and isinstance(ds.train, DynamicBinarizedSplit) and len(ds.train) == 55_000
    assert set(ds.test.x.unique().tolist()) == {0, 1}
    # The evaluation draw is the documented fixed one (digits checks it is equal across loads).
    expected = bernoulli_draw(fashion_mnist_splits()["validation"][0], 256, EVAL_SEEDS["validation"])
    assert np.array_equal(ds.validation.x.numpy(), expected)


# --- toy 2D -----------------------------------------------------------------------------------------
TOY = ["checkerboard", "eight-gaussians", "two-moons", "spirals"]


@pytest.fixture(scope="module")
def toy():
    return {name: load_dataset(name) for name in TOY}


@pytest.mark.parametrize("name", TOY)
def test_toy_sizes_and_determinism(toy, name):
    ds = toy[name]
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (100_000, 20_000, 20_000)
    assert ds.spec.shape == (2,) and ds.spec.levels is None and ds.spec.num_classes is None
    assert ds.train.x.dtype == torch.float32 and ds.train.x.shape == (100_000, 2) and ds.train.y is None
    assert ds.train.x.abs().max() < 8  # roughly [-4, 4]^2
    assert not torch.equal(ds.train.x[:1000], ds.validation.x[:1000])
    again = load_dataset(name)
    for split in ("train", "validation", "test"):
        assert torch.equal(ds.split(split).x, again.split(split).x)


def _grid(half_width: float, h: float) -> torch.Tensor:
    g = torch.arange(-half_width + h / 2, half_width, h, dtype=torch.float64)  # cell midpoints
    return torch.cartesian_prod(g, g)  # (M, 2)


@pytest.mark.parametrize("name, half_width, h", [("checkerboard", 4.5, 0.05), ("eight-gaussians", 7.5, 0.02)])
def test_toy_density_normalized_and_entropy(name, half_width, h):
    density = ANALYTIC_DENSITIES[name]
    points = _grid(half_width, h)
    log_p = density.log_density(points)
    assert log_p.dtype == torch.float64
    p = log_p.exp()
    assert abs(float(p.sum() * h * h) - 1) < 1e-6
    entropy = float(-(p * torch.where(p > 0, log_p, 0.0)).sum() * h * h)
    assert abs(entropy - density.entropy) < 1e-3


def test_stated_entropies():
    assert CHECKERBOARD_ENTROPY == pytest.approx(math.log(32)) == pytest.approx(3.4657, abs=1e-4)
    assert EIGHT_GAUSSIANS_ENTROPY == pytest.approx(3.5247, abs=1e-4)  # PROTOCOL.md


@pytest.mark.parametrize("name", ["checkerboard", "eight-gaussians"])
def test_toy_entropy_monte_carlo(toy, name):
    density = ANALYTIC_DENSITIES[name]
    log_p = density.log_density(toy[name].test.x.double())
    assert torch.isfinite(log_p).all()  # every sample where the density is positive
    standard_error = float(log_p.std()) / math.sqrt(len(log_p))
    assert abs(float(-log_p.mean()) - density.entropy) <= 4 * standard_error + 1e-9


def test_checkerboard_samples_on_black_squares(toy):
    x = toy["checkerboard"].train.x
    assert torch.isfinite(ANALYTIC_DENSITIES["checkerboard"].log_density(x)).all()
    cell = torch.floor((x.double() + 4) / 2).long()  # (column, row), both 0..3
    assert cell.min() >= 0 and cell.max() <= 3 and ((cell.sum(1) % 2) == 0).all()
    counts = torch.bincount(cell[:, 0] * 4 + cell[:, 1], minlength=16)
    assert (counts[counts > 0] > 11_000).all() and int((counts > 0).sum()) == 8  # 12 500 expected each


def test_eight_gaussians_log_density_float32_and_value():
    x = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    log_p = ANALYTIC_DENSITIES["eight-gaussians"].log_density(x)
    assert log_p.dtype == torch.float32
    assert float(log_p[0]) == pytest.approx(-math.log(8 * 2 * math.pi * 0.25), abs=1e-5)
    assert float(log_p[1]) < -20


# --- users' files: folders of images ----------------------------------------------------------------
def _save(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path) if mode else Image.fromarray(array).save(path)


def test_image_folder_grayscale_unlabelled(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(12, 5, 7), dtype=np.uint8)  # H=5, W=7
    for i, image in enumerate(images):
        _save(tmp_path / f"img{i:02d}.png", image)
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset(str(tmp_path))
    assert ds.spec.shape == (1, 5, 7) and ds.spec.levels == 256 and ds.spec.num_classes is None
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (10, 1, 1)
    assert ds.train.y is None and ds.train.x.dtype == torch.int64
    idx = np.random.default_rng(0).permutation(12)
    assert np.array_equal(ds.test.x.numpy()[:, 0], images[idx[:1]])  # files in sorted order
    assert np.array_equal(ds.train.x.numpy()[:, 0], images[idx[2:]])


def test_image_folder_rgb_with_classes(tmp_path):
    rng = np.random.default_rng(2)
    images = {}
    for cls in ("zebra", "cat", "dog"):
        for i in range(4):
            image = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
            images[(cls, i)] = image
            _save(tmp_path / cls / f"{i}.png", image)
    ds = load_path(tmp_path)
    assert ds.spec.shape == (3, 6, 4) and ds.spec.num_classes == 3 and ds.spec.name == str(tmp_path.resolve())
    x = torch.cat([ds.train.x, ds.validation.x, ds.test.x])
    y = torch.cat([ds.train.y, ds.validation.y, ds.test.y])
    assert sorted(y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    # Labels follow the sorted folder names: cat = 0, dog = 1, zebra = 2.
    expected = np.stack([images[(c, i)].transpose(2, 0, 1) for c in ("cat", "dog", "zebra") for i in range(4)])
    idx = np.random.default_rng(0).permutation(12)
    order = np.concatenate([idx[2:], idx[1:2], idx[:1]])
    assert np.array_equal(x.numpy(), expected[order]) and np.array_equal(y.numpy(), order // 4)


def test_image_folder_palette_converted_to_rgb(tmp_path):
    for i in range(3):
        Image.new("RGB", (4, 4), (i * 50, 10, 200)).convert("P").save(tmp_path / f"{i}.gif")
    ds = load_path(tmp_path)
    assert ds.spec.shape == (3, 4, 4)


def test_image_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no images"):
        load_path(empty)

    mixed = tmp_path / "mixed"
    _save(mixed / "a.png", np.zeros((4, 4), np.uint8))
    _save(mixed / "b.png", np.zeros((5, 4), np.uint8))
    with pytest.raises(UserError, match=r"differ in size.*a\.png is 4x4.*b\.png is 4x5"):
        load_path(mixed)

    corrupt = tmp_path / "corrupt"
    _save(corrupt / "a.png", np.zeros((4, 4), np.uint8))
    (corrupt / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(UserError, match=r"b\.png.*cannot read"):
        load_path(corrupt)

    truncated = tmp_path / "truncated"
    _save(truncated / "a.png", np.arange(400, dtype=np.uint8).reshape(20, 20))
    data = (truncated / "a.png").read_bytes()
    (truncated / "b.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"b\.png"):
        load_path(truncated)

    rgba = tmp_path / "rgba"
    _save(rgba / "a.png", np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(UserError, match=r"mode RGBA.*convert\('RGB'\)"):
        load_path(rgba)

    modes = tmp_path / "modes"
    _save(modes / "a.png", np.zeros((4, 4), np.uint8))
    _save(modes / "b.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UserError, match="differ in mode"):
        load_path(modes)

    few = tmp_path / "few"
    _save(few / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(UserError, match="at least 3"):
        load_path(few)


@pytest.mark.parametrize(
    "image, suffix, problem",
    [
        (lambda: Image.fromarray(np.zeros((4, 4), np.uint16)), "png", r"mode I;16 .*>> 8"),
        (lambda: Image.fromarray(np.zeros((4, 4), np.float32)), "tif", r"mode F .*np\.clip.*\* 255"),
        (lambda: Image.new("CMYK", (4, 4)), "jpg", r"mode CMYK .*convert\('RGB'\)"),
        (lambda: Image.new("LA", (4, 4)), "png", r"mode LA .*alpha"),
    ],
)
def test_image_modes_refused_with_a_conversion_that_fits(tmp_path, image, suffix, problem):
    for i in range(3):
        image().save(tmp_path / f"{i}.{suffix}")
    with pytest.raises(UserError, match=problem):
        load_path(tmp_path)


# --- users' files: .npy -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "array, levels, shape",
    [
        (np.arange(20 * 3, dtype=np.uint8).reshape(20, 3), 256, (3,)),
        (np.arange(20 * 6, dtype=np.int32).reshape(20, 2, 3) % 7, 7, (1, 2, 3)),
        (np.eye(20, 4, dtype=bool), 2, (4,)),
        (np.zeros((20, 2, 3, 3), dtype=np.int16) + 3, 4, (2, 3, 3)),
        (np.linspace(-1, 1, 40).reshape(20, 2), None, (2,)),
    ],
)
def test_npy(tmp_path, array, levels, shape):
    path = tmp_path / "data.npy"
    np.save(path, array)
    ds = load_dataset(str(path))
    assert ds.spec.levels == levels and ds.spec.shape == shape and ds.spec.num_classes is None
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (16, 2, 2)
    x = torch.cat([ds.train.x, ds.validation.x, ds.test.x])
    assert x.dtype == (torch.float32 if levels is None else torch.int64)
    idx = np.random.default_rng(0).permutation(20)
    expected = array.reshape(20, *shape)[np.concatenate([idx[4:], idx[2:4], idx[:2]])]
    assert np.array_equal(x.numpy(), expected.astype(x.numpy().dtype))


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN"),
        (np.array([[0, 1], [-3, 2], [1, 1]]), "negative"),
        (np.array([[1, "a"], [2, "b"], [3, "c"]], dtype=object), "objects"),
        (np.array(["a", "b", "c"]), "dtype"),
        (np.zeros((3, 2, 2, 2, 2)), "shape"),
        (np.zeros((3, 28, 28, 3), np.uint8), "channels-last"),
        (np.array([[1e300], [1.0], [2.0]]), "float32's range"),
    ],
)
def test_npy_errors(tmp_path, array, problem):
    path = tmp_path / "bad.npy"
    np.save(path, array, allow_pickle=True)
    with pytest.raises(UserError, match=problem) as e:
        load_path(path)
    assert "bad.npy" in str(e.value)


def test_npy_not_an_array(tmp_path):
    path = tmp_path / "x.npy"
    path.write_bytes(b"hello")
    with pytest.raises(UserError, match=r"x\.npy: not a valid \.npy file"):
        load_path(path)


@pytest.mark.parametrize(
    "content, problem",
    [
        # Random bytes were once reported as "holds Python objects" (np.load tried to unpickle them).
        (np.random.default_rng(0).bytes(1000), r"not a valid \.npy file \(it does not start with numpy's magic.*np\.save"),
        (b"", r"not a valid \.npy file \(it does not start with numpy's magic"),
        (b"\x93NUMPY\x01\x00" + bytes(50), r"not a valid \.npy file"),
    ],
)
def test_npy_invalid_bytes(tmp_path, content, problem):
    path = tmp_path / "bad.npy"
    path.write_bytes(content)
    with pytest.raises(UserError, match=problem) as e:
        load_path(path)
    assert "bad.npy" in str(e.value) and "objects" not in str(e.value)


def test_npy_truncated_and_npz_in_disguise(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.zeros((100, 5)))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UserError, match=r"cut\.npy: not a valid \.npy file"):
        load_path(path)
    npz = tmp_path / "zipped.npy"
    with open(npz, "wb") as handle:
        np.savez(handle, a=np.zeros(3))
    with pytest.raises(UserError, match=r"zipped\.npy: is an \.npz archive.*np\.save"):
        load_path(npz)


@pytest.mark.parametrize(
    "array, problem",
    [
        (np.zeros((0, 3)), "no data"),
        (np.zeros((0, 3), np.int64), "no data"),
        (np.zeros((0, 3), np.uint8), "no data"),
        (np.zeros((0, 3), bool), "no data"),
        (np.zeros((5, 0)), "no data"),
        (np.zeros((5, 2), complex), "unsupported dtype complex128"),
        (np.zeros(5, dtype=[("a", "i4"), ("b", "f4")]), "unsupported dtype"),
        (np.zeros(5, dtype="datetime64[s]"), "unsupported dtype"),
        (np.array([[0.0], [np.inf], [1.0]]), r"1 value is NaN or infinite \(the first in example 1"),
        (np.array([[0], [1], [2], [2]], np.int8) - 1, "negative"),
    ],
)
def test_npy_more_errors(tmp_path, array, problem):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    with pytest.raises(UserError, match=problem) as e:
        load_path(path)
    assert "bad.npy" in str(e.value)


@pytest.mark.parametrize("biggest", [2**40, MAX_LEVELS, 70_000])
def test_npy_refuses_more_than_max_levels(tmp_path, biggest):
    """K = max + 1 beyond 65 536 is refused before anything of size K is allocated."""
    path = tmp_path / "counts.npy"
    np.save(path, np.array([[0], [1], [biggest]], dtype=np.int64))
    with pytest.raises(UserError, match=rf"K = {biggest + 1} .*more than the 65536.*rescale") as e:
        load_path(path)
    assert "counts.npy" in str(e.value)


def test_npy_sixteen_bit_values_are_the_largest_accepted(tmp_path):
    assert MAX_LEVELS == 2**16
    path = tmp_path / "deep.npy"
    np.save(path, np.array([[0], [1], [65_535]], dtype=np.uint16))
    assert load_path(path).spec.levels == MAX_LEVELS


def test_npy_header_declaring_more_than_the_file_holds(tmp_path):
    """A damaged header declaring 10**13 values was a MemoryError (numpy tried to allocate 73 TiB)."""
    from numpy.lib import format as npy_format

    path = tmp_path / "liar.npy"
    with open(path, "wb") as handle:
        npy_format.write_array_header_1_0(handle, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 10)})
        handle.write(bytes(800))
    with pytest.raises(UserError, match=r"liar\.npy: not a valid \.npy file \(truncated: .*shape \(1000000000000, 10\)"):
        load_path(path)


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_every_format_version_is_read(tmp_path, version):
    from numpy.lib import format as npy_format

    path = tmp_path / "v.npy"
    with open(path, "wb") as handle:
        npy_format.write_array(handle, np.arange(30).reshape(10, 3) % 4, version=version)
    assert load_path(path).spec.levels == 4


def test_data_too_large_for_memory(tmp_path, monkeypatch):
    path = tmp_path / "large.npy"
    np.save(path, np.zeros((5, 2)))

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 3.2 TiB")

    monkeypatch.setattr(np, "load", no_memory)
    with pytest.raises(UserError, match=r"large\.npy: too large to hold in memory.*smaller subset"):
        load_path(path)


# --- users' files: .csv -----------------------------------------------------------------------------
def test_csv_with_header_integers(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,c\n" + "".join(f"{i % 4},{i % 3},{i % 5}\n" for i in range(30)) + "\n")
    ds = load_dataset(str(path))
    assert ds.spec.levels == 5 and ds.spec.shape == (3,)
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (24, 3, 3)
    idx = np.random.default_rng(0).permutation(30)
    assert ds.test.x.tolist() == [[i % 4, i % 3, i % 5] for i in idx[:3]]


def test_csv_without_header_floats(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("".join(f"{i * 0.5},{-i}\n" for i in range(10)))
    ds = load_path(path)
    assert ds.spec.levels is None and ds.spec.shape == (2,) and ds.train.x.dtype == torch.float32
    assert (len(ds.train), len(ds.validation), len(ds.test)) == (8, 1, 1)


@pytest.mark.parametrize(
    "text, problem",
    [
        ("a,b\n1,2\n3,x\n4,5\n", r"row 3, column 2 \('b'\): 'x' is not a number"),
        ("1,2\n3,\n4,5\n", r"row 2, column 2: an empty cell is not a number"),
        ("1;2\n3;4\n5;6\n", "comma-separated"),
        ("1,2\n3,4,5\n6,7\n", "row 2 has 3 cells"),
        ("1,2\n-3,4\n5,6\n", "negative"),
        ("1.5,2\nnan,4\n5,6\n", "NaN"),
        ("a,b\n", "no data"),
        ("", "no data"),
        ("x,y,label\n1,2,cat\n3,4,dog\n5,6,cat\n", r"column 3 \('label'\) holds text .*drop the column"),
        ("x,y\n1,a\n3,4\n5,6\n", r"row 2, column 2 \('y'\): 'a' is not a number"),  # mixed: one bad cell
        ("0\n1\n1099511627776\n", r"K = 1099511627777 .*more than the 65536"),
        ("0\n1\n1e20\n", r"more than the 65536"),
        ("0\n1e400\n2\n", r"1 value is NaN or infinite \(the first in example 1"),
        ('"' + "1" * 200_000 + '",2\n3,4\n5,6\n', r"not a readable \.csv table \(line 1"),
    ],
)
def test_csv_errors(tmp_path, text, problem):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=problem) as e:
        load_path(path)
    assert "bad.csv" in str(e.value)


def test_csv_that_is_not_text(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(UserError, match=r"bad\.csv: cannot read as UTF-8 text"):
        load_path(path)


# --- users' files: paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["npy", "csv", "folder"])
def test_relative_path_reloads_from_its_source_elsewhere(tmp_path, monkeypatch, kind):
    """``--data good.npy`` then ``genmodels eval`` from another folder: the source reloads an equal spec."""
    work = tmp_path / "work"
    if kind == "npy":
        name = "good.npy"
        work.mkdir()
        np.save(work / name, np.arange(20 * 3).reshape(20, 3) % 5)
    elif kind == "csv":
        name = "good.csv"
        work.mkdir()
        (work / name).write_text("".join(f"{i % 3},{i % 4}\n" for i in range(10)))
    else:
        name = "images"
        for i in range(4):
            _save(work / name / f"{i}.png", np.full((3, 2), i, np.uint8))
    monkeypatch.chdir(work)
    trained = load_dataset(name)
    assert trained.spec.name == str((work / name).resolve()) == trained.source["name"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    reloaded = load_dataset(trained.source["name"], trained.source["data_dir"])
    assert reloaded.spec == trained.spec
    assert torch.equal(reloaded.test.x, trained.test.x)


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_name_never_reads_the_working_folder(tmp_path, monkeypatch, name):
    _save(tmp_path / "a.png", np.zeros((4, 4), np.uint8))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"unknown data set .*valid data sets: .*digits.*or give a path"):
        load_dataset(name)


def test_a_path_the_system_refuses(tmp_path):
    with pytest.raises(UserError, match=r"not a usable path \(File name too long\)"):
        load_dataset(str(tmp_path / ("x" * 5000 + ".npy")))
    with pytest.raises(UserError, match=r"not a usable path"):
        load_path(tmp_path / ("y" * 5000))


def test_missing_and_unsupported_paths(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_dataset(str(tmp_path / "missing.npy"))
    with pytest.raises(UserError, match="no such file"):
        load_path(tmp_path / "missing_folder")
    other = tmp_path / "data.json"
    other.write_text("{}")
    with pytest.raises(UserError, match=r"unsupported file type '\.json'.*\.npy.*\.csv") as e:
        load_dataset(str(other))
    assert "png" in str(e.value)
