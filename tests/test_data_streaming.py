"""Data that streams: compact storage, lazy folders, memory-mapped .npy, image transforms, the pixel
limit, and transforms recorded with a run and replayed by eval and --resume."""

from __future__ import annotations

import gc
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from genmodels.cli import main
from genmodels.data import ImageTransform, LazySplit, load_dataset, load_source
from genmodels.data.transforms import FLIP_SEED, flip_drawn, parse_size
from genmodels.errors import UserError


def _rgb_folder(folder: Path, n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """n random RGB PNGs named 000.png...; returns them as (n, H, W, 3) uint8."""
    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(seed).integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return images


def _rss_bytes() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) * 1024


# --- storage ----------------------------------------------------------------------------------------
def test_a_folder_of_colour_pngs_streams_as_uint8_without_int64_copies(tmp_path):
    _rgb_folder(tmp_path / "warm", 3, 64, 64)
    load_dataset(str(tmp_path / "warm")).train[0]  # imports and Pillow's plugins, before measuring
    n = 300
    _rgb_folder(tmp_path / "images", n, 64, 64)
    int64_bytes = n * 3 * 64 * 64 * 8  # 29.5 MB: what the folder took in memory before

    gc.collect()
    rss_before = _rss_bytes()
    tracemalloc.start()
    dataset = load_dataset(str(tmp_path / "images"))
    for batch in DataLoader(dataset.train, batch_size=32):  # one pass, as an epoch of training takes it
        assert batch["x"].dtype == torch.int64 and batch["x"].shape[1:] == (3, 64, 64)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = _rss_bytes() - rss_before

    assert isinstance(dataset.train, LazySplit) and dataset.train.stored_dtype == torch.uint8
    assert dataset.train.stored(0).dtype == torch.uint8 and dataset.train[0]["x"].dtype == torch.int64
    assert traced_peak < int64_bytes / 8, f"numpy/Python allocations peaked at {traced_peak / 2**20:.1f} MB"
    assert rss_growth < int64_bytes / 2, f"the process grew by {rss_growth / 2**20:.1f} MB"
    del dataset


def test_folder_items_are_the_pixels_in_file_order(tmp_path):
    images = _rgb_folder(tmp_path, 12, 5, 7)
    dataset = load_dataset(str(tmp_path))
    idx = np.random.default_rng(0).permutation(12)
    assert torch.equal(dataset.test[0]["x"], torch.from_numpy(images[idx[0]].transpose(2, 0, 1)).long())
    assert np.array_equal(dataset.train.x.numpy(), images[idx[2:]].transpose(0, 3, 1, 2))


def test_npy_is_memory_mapped_and_read_per_item(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, size=(40, 3, 8, 8), dtype=np.uint8)
    path = tmp_path / "images.npy"
    np.save(path, array)
    dataset = load_dataset(str(path))
    maps = Path("/proc/self/maps").read_text()
    assert str(path.resolve()) in maps  # the file is mapped into the process, not read into it
    assert dataset.train.stored_dtype == torch.uint8 and dataset.spec.levels == 256
    idx = np.random.default_rng(0).permutation(40)
    assert torch.equal(dataset.train[0]["x"], torch.from_numpy(array[idx[8]]).long())
    dataset.train.stored(0).fill_(0)  # copy-on-write: a stray write never reaches the file
    assert np.array_equal(np.load(path), array)


@pytest.mark.parametrize(
    "array, stored",
    [
        (np.arange(40 * 4, dtype=np.int64).reshape(40, 4) % 256, torch.uint8),  # int64 levels 0..255
        (np.arange(40 * 4, dtype=np.int16).reshape(40, 4) * 7, torch.int16),  # K = 1120: uint16's bytes
        (np.arange(40 * 4, dtype=">u2").reshape(40, 4), torch.uint8),  # big-endian, K = 160
        (np.eye(40, 4, dtype=bool), torch.uint8),
    ],
)
def test_npy_integers_kept_in_the_smallest_type_that_holds_their_levels(tmp_path, array, stored):
    path = tmp_path / "data.npy"
    np.save(path, array)
    dataset = load_dataset(str(path))
    expected = torch.uint16 if stored == torch.int16 else stored
    assert dataset.train.stored_dtype == expected
    x = torch.cat([dataset.train.x, dataset.validation.x, dataset.test.x])
    idx = np.random.default_rng(0).permutation(40)
    order = np.concatenate([idx[8:], idx[4:8], idx[:4]])
    assert x.dtype == torch.int64 and np.array_equal(x.numpy(), array.astype(np.int64)[order])


# --- transforms -------------------------------------------------------------------------------------
def test_parse_size():
    assert parse_size("32") == (32, 32) and parse_size("64x48") == (64, 48) and parse_size(" 8 X 4 ") == (8, 4)
    for bad in ("", "x", "32x", "-1", "3.5", "0x4", "4x4x4"):
        with pytest.raises(UserError, match="--resize"):
            parse_size(bad)


def test_transform_json_round_trip_and_refusal():
    t = ImageTransform((32, 24), center_crop=True, hflip=True)
    assert ImageTransform.from_json(json.loads(json.dumps(t.to_json()))) == t
    assert ImageTransform.from_json(None) is None
    for bad in ({"size": [0, 4], "center_crop": False, "hflip": False}, {"size": None, "hflip": 1, "center_crop": False},
                [32, 32], {"size": [4, 4.5], "center_crop": False, "hflip": False}):
        with pytest.raises(UserError, match="image transform"):
            ImageTransform.from_json(bad)


def test_resize_is_pillows_bilinear_filter():
    # Shrinking 4 -> 2 (scale 2): the triangle filter is 2 input pixels wide either side, so output 1
    # (centre 3.0 in input coordinates) weighs inputs 1, 2, 3 (centres 1.5, 2.5, 3.5) by 1 - d/2 =
    # 0.25, 0.75, 0.75: (0.75 * 70) / 1.75 = 30. Output 0 sees only zeros.
    row = torch.tensor([[[0, 0, 0, 70]]], dtype=torch.uint8)
    assert ImageTransform((1, 2)).apply_pixels(row).tolist() == [[[0, 30]]]
    # Growing 2 -> 4: output centres 0.25, 0.75, 1.25, 1.75 interpolate between input centres 0.5
    # and 1.5, clamped at the edges: 0, 25, 75, 100.
    row = torch.tensor([[[0, 100]]], dtype=torch.int64)  # not uint8: through float32, rounded
    assert ImageTransform((1, 4)).apply_pixels(row).tolist() == [[[0, 25, 75, 100]]]


def test_center_crop_keeps_the_outputs_aspect_ratio():
    x = torch.arange(2 * 4 * 6, dtype=torch.uint8).reshape(2, 4, 6)  # (C, H=4, W=6)
    assert torch.equal(ImageTransform(center_crop=True).apply_pixels(x), x[:, :, 1:5])  # the centred square
    assert ImageTransform((2, 1), center_crop=True).apply_pixels(x).shape == (2, 2, 1)  # crop 4x2, then resize
    tall = ImageTransform((4, 2), center_crop=True)  # ratio 2:1 of a 4x6 image: the centred 4x2
    assert torch.equal(tall.apply_pixels(x), x[:, :, 2:4])


def test_resized_digits_stay_within_their_levels(digits):
    resized = digits.transformed(ImageTransform((5, 5)))
    assert resized.spec.shape == (1, 5, 5) and resized.spec.name == "digits (resize 5x5)"
    x = resized.test.x
    assert x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) <= 16
    resized.spec.check(x)  # convex weights: no level outside 0..16
    assert resized.train.x.shape == (1257, 1, 5, 5) and len(digits.train.x) == 1257  # the original untouched


def test_transforms_refused_on_vectors():
    with pytest.raises(UserError, match=r"--hflip transform images \(C, H, W\); 'checkerboard'"):
        load_dataset("checkerboard", transform=ImageTransform(hflip=True))


def test_hflip_on_the_training_split_only_drawn_from_epoch_and_index(digits):
    flipped = digits.transformed(ImageTransform(hflip=True))
    assert flipped.spec == digits.spec  # the flip augments; it defines no other data
    for split in ("validation", "test"):
        assert all(torch.equal(flipped.split(split)[i]["x"], digits.split(split)[i]["x"]) for i in range(50))
    for epoch in (0, 1):
        flipped.train.set_epoch(epoch)
        draws = [flip_drawn(FLIP_SEED, epoch, i) for i in range(200)]
        for i, drawn in enumerate(draws):
            original = digits.train[i]["x"]
            assert torch.equal(flipped.train[i]["x"], original.flip(-1) if drawn else original)
        assert 70 < sum(draws) < 130  # about half
    assert [flip_drawn(FLIP_SEED, 0, i) for i in range(200)] != [flip_drawn(FLIP_SEED, 1, i) for i in range(200)]


def test_flips_agree_across_loader_workers(digits):
    flipped = digits.transformed(ImageTransform(hflip=True)).train.head(64)
    flipped.set_epoch(3)
    alone = next(iter(DataLoader(flipped, batch_size=64)))["x"]
    workers = torch.cat([b["x"] for b in DataLoader(flipped, batch_size=16, num_workers=2)])
    assert torch.equal(alone, workers)


def test_dynamic_binarization_after_a_resize(tmp_path):
    dataset = load_dataset("binary-digits-dynamic", transform=ImageTransform((4, 4), hflip=True))
    item = dataset.train[0]["x"]
    assert item.shape == (1, 4, 4) and set(item.unique().tolist()) <= {0, 1}


def test_a_resize_accepts_a_folder_of_mixed_sizes(tmp_path):
    for i, (h, w) in enumerate([(6, 8), (10, 10), (7, 5), (9, 12)]):
        Image.fromarray(np.full((h, w, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    with pytest.raises(UserError, match=r"differ in size.*or pass --resize"):
        load_dataset(str(tmp_path))
    dataset = load_dataset(str(tmp_path), transform=ImageTransform((4, 4), center_crop=True))
    x = torch.cat([dataset.train.x, dataset.validation.x, dataset.test.x])
    assert x.shape == (4, 3, 4, 4) and sorted(x[:, 0, 0, 0].tolist()) == [0, 40, 80, 120]  # constants stay


# --- bad data bounded -------------------------------------------------------------------------------
def test_images_above_the_pixel_limit_refused_from_their_header(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    Image.new("L", (3000, 2000)).save(big / "a.png")
    data = (big / "a.png").read_bytes()
    (big / "a.png").write_bytes(data[: len(data) // 2])  # no decodable pixels: only the header is read
    for i in range(2):
        Image.new("L", (4, 4)).save(big / f"b{i}.png")
    with pytest.raises(UserError, match=r"a\.png: 3000x2000 = 6,000,000 pixels, more than the limit of 1,000,000; .*max_pixels=N"):
        load_dataset(str(big), max_pixels=1_000_000)
    with pytest.raises(UserError, match=r"a\.png: cannot read"):  # under the limit, the damage is found
        load_dataset(str(big), max_pixels=6_000_000)
    with pytest.raises(UserError, match="--resize 5000x5000 asks for 25,000,000 pixels"):
        load_dataset("digits", transform=ImageTransform((5000, 5000)))


def test_pillows_own_bomb_limit_reads_as_the_pixel_limit(tmp_path, monkeypatch):
    for i in range(3):
        Image.new("L", (40, 40)).save(tmp_path / f"{i}.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses beyond 2x this when opening
    with pytest.raises(UserError, match=r"0\.png: declares more than 200 pixels"):
        load_dataset(str(tmp_path))


def test_cli_max_pixels_is_one_line_with_status_2(tmp_path, capsys):
    _rgb_folder(tmp_path / "images", 4, 8, 8)
    code = main(["train", "independent", "--data", str(tmp_path / "images"), "--max-pixels", "10",
                 "--steps", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "8x8 = 64 pixels, more than the limit of 10" in err and len(err.splitlines()) == 1
    assert "raise the limit with --max-pixels N" in err


# --- recorded with the run, replayed ----------------------------------------------------------------
def test_transforms_recorded_in_the_run_and_replayed_by_eval_and_resume(tmp_path, capsys):
    images = _rgb_folder(tmp_path / "images", 30, 12, 16)  # H = 12, W = 16
    run = tmp_path / "run"
    flags = ["--data", str(tmp_path / "images"), "--resize", "4", "--center-crop"]
    common = ["--batch-size", "8", "--eval-every", "2", "--out", str(run), "--no-progress"]
    assert main(["train", "fvsbn", *flags, "--hflip", "--steps", "2", *common]) == 0
    recorded = json.loads((run / "run.json").read_text())["data"]
    assert recorded["source"]["transform"] == {"size": [4, 4], "center_crop": True, "hflip": True}
    name = str((tmp_path / "images").resolve())
    assert recorded["spec"] == {"name": f"{name} (resize 4x4, center-crop)", "shape": [3, 4, 4], "levels": 256,
                                "num_classes": None}

    # What the run's data are, reloaded as eval does: each image's centred 12x12, resized by Pillow.
    expected = np.stack([
        np.asarray(Image.fromarray(image).crop((2, 0, 14, 12)).resize((4, 4), Image.BILINEAR)).transpose(2, 0, 1)
        for image in images
    ])
    replayed = load_source(recorded["source"])
    idx = np.random.default_rng(0).permutation(30)
    assert np.array_equal(replayed.test.x.numpy(), expected[idx[:3]])
    assert np.array_equal(replayed.train.x.numpy(), expected[idx[6:]])
    replayed.train.set_epoch(1)
    for i in range(len(replayed.train)):  # training items are flipped as the draws say; test items never
        flip = flip_drawn(FLIP_SEED, 1, i)
        assert np.array_equal(replayed.train[i]["x"].numpy(), expected[idx[6 + i]][..., ::-1] if flip else expected[idx[6 + i]])
    assert all(np.array_equal(replayed.test[i]["x"].numpy(), expected[idx[i]]) for i in range(3))

    capsys.readouterr()
    assert main(["eval", str(run), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"] == recorded["spec"]["name"] and report["examples"] == 3

    # --resume with another transform is refused (the flip changes no spec, so it is compared itself);
    # with the same flags the run continues.
    assert main(["train", "fvsbn", *flags, "--steps", "4", "--resume", *common]) == 2
    assert "trained with --resize 4x4 --center-crop --hflip, not --resize 4x4 --center-crop" in capsys.readouterr().err
    assert main(["train", "fvsbn", *flags, "--hflip", "--steps", "4", "--resume", *common]) == 0
    assert json.loads((run / "results.json").read_text())["steps"] == 4
