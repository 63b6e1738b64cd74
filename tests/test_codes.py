"""Figures that are not likelihoods (``evaluation_figures`` → ``evaluate_figures``), and the tokenizer
view (``genmodels encode`` / ``decode``) with its bad inputs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.checkpoint import save_checkpoint
from genmodels.cli import main
from genmodels.core import Batch, GenerativeModel, LikelihoodKind, ModelConfig, create_model
from genmodels.data import DataSpec
from genmodels.data.base import Split
from genmodels.evaluate import evaluate_figures

DIGITS = DataSpec("d", (1, 8, 8), 17, 10)


class _Figures(GenerativeModel):
    """Reports each example's pixel sum, and a draw from batch.rand (seeded per example)."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.NONE

    def evaluation_figures(self, batch):
        return {"pixel_sum": batch.x.flatten(1).sum(1).double(), "draw": batch.rand(1)[:, 0]}


def test_figures_are_per_example_means_with_standard_errors_whatever_the_batch_size():
    torch.manual_seed(0)
    x = torch.randint(0, 17, (23, 1, 8, 8))
    model = _Figures(ModelConfig(), DIGITS)
    split = Split(x)
    whole = {f.name: f for f in evaluate_figures(model, split, batch_size=23)}
    sums = x.flatten(1).sum(1).double()
    assert whole["pixel_sum"].mean == pytest.approx(float(sums.mean()))
    assert whole["pixel_sum"].stderr == pytest.approx(float(sums.std(unbiased=True)) / math.sqrt(23))
    assert whole["pixel_sum"].examples == 23
    pieces = {f.name: f for f in evaluate_figures(model, split, batch_size=5)}
    assert pieces["draw"].mean == pytest.approx(whole["draw"].mean, abs=1e-12)  # seeded per example
    assert pieces["pixel_sum"].stderr == pytest.approx(whole["pixel_sum"].stderr)


def test_a_model_without_figures_reports_none():
    model = create_model("fvsbn", DIGITS)
    assert evaluate_figures(model, Split(torch.zeros(3, 1, 8, 8, dtype=torch.int64))) == []


def _saved_vqvae(path):
    torch.manual_seed(0)
    model = create_model("vqvae", DIGITS, {"channels": 8, "num_codes": 16})
    meta = {"model": model.name, "model_config": model.config.to_json(), "data": {"source": {}, "spec": DIGITS.to_json()}}
    save_checkpoint(path, model_state=model.state_dict(), meta=meta)
    return model


def test_encode_reads_arrays_and_images_alike_and_decode_inverts_to_the_models_reconstruction(tmp_path):
    model = _saved_vqvae(tmp_path / "ckpt")
    x = torch.randint(0, 17, (5, 1, 8, 8))
    np.save(tmp_path / "x.npy", x.numpy())
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i, image in enumerate(x.numpy()):  # 17 levels written as 8-bit PNGs, as sample grids are
        Image.fromarray(np.round(image[0] * 255 / 16).astype(np.uint8)).save(folder / f"{i}.png")
    assert main(["encode", str(tmp_path / "ckpt"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "a.npy")]) == 0
    assert main(["encode", str(tmp_path / "ckpt"), str(folder), "--out", str(tmp_path / "b.npy")]) == 0
    codes = np.load(tmp_path / "a.npy")
    assert codes.shape == (5, 4, 4) and codes.dtype == np.int64
    assert np.array_equal(codes, np.load(tmp_path / "b.npy"))
    assert np.array_equal(codes, model.encode(x).numpy())
    out = tmp_path / "decoded.npy"
    assert main(["decode", str(tmp_path / "ckpt"), str(tmp_path / "a.npy"), "--out", str(tmp_path / "d.png"), "--npy", str(out)]) == 0
    assert np.array_equal(np.load(out), model.reconstruct(x).numpy())
    assert (tmp_path / "d.png").stat().st_size > 0


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.full((2, 4, 4), 16), "codes must lie in 0..15"),
        (np.zeros((2, 3, 3), dtype=np.int64), "code grids must have shape"),
        (np.zeros((2, 4, 4), dtype=np.float32), "code grids are integers"),
        (np.zeros((2, 1, 4, 4), dtype=np.int64), "code grids are \\(N, h, w\\)"),
    ],
)
def test_decode_refuses_bad_codes_with_a_clear_message(tmp_path, capsys, codes, message):
    _saved_vqvae(tmp_path / "ckpt")
    np.save(tmp_path / "codes.npy", codes)
    assert main(["decode", str(tmp_path / "ckpt"), str(tmp_path / "codes.npy"), "--out", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genmodels: error:") and "Traceback" not in err
    assert re.search(message, err)


def test_encode_refuses_wrong_inputs_and_models_without_codes(tmp_path, capsys):
    _saved_vqvae(tmp_path / "ckpt")
    np.save(tmp_path / "wide.npy", np.zeros((2, 1, 8, 9), dtype=np.int64))
    np.save(tmp_path / "high.npy", np.full((2, 1, 8, 8), 17))
    np.save(tmp_path / "float.npy", np.zeros((2, 1, 8, 8), dtype=np.float32))
    cases = {
        "wide.npy": "the model's data are \\(1, 8, 8\\)",
        "high.npy": "outside 'd''s levels 0..16",
        "float.npy": "encode wants integer levels",
        "missing.npy": "no such file",
    }
    for name, message in cases.items():
        assert main(["encode", str(tmp_path / "ckpt"), str(tmp_path / name), "--out", str(tmp_path / "c.npy")]) == 2
        err = capsys.readouterr().err
        assert re.search(message, err), (name, err)
    fvsbn = create_model("fvsbn", DIGITS)
    meta = {"model": "fvsbn", "model_config": fvsbn.config.to_json(), "data": {"source": {}, "spec": DIGITS.to_json()}}
    save_checkpoint(tmp_path / "fvsbn", model_state=fvsbn.state_dict(), meta=meta)
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), dtype=np.int64))
    assert main(["encode", str(tmp_path / "fvsbn"), str(tmp_path / "x.npy"), "--out", str(tmp_path / "c.npy")]) == 2
    assert "has no discrete code grid" in capsys.readouterr().err
    assert not (tmp_path / "c.npy").exists()


def test_encode_and_decode_never_replace_a_file_without_overwrite(tmp_path, capsys):
    _saved_vqvae(tmp_path / "ckpt")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 8, 8), dtype=np.int64))
    kept = tmp_path / "codes.npy"
    kept.write_bytes(b"precious")
    assert main(["encode", str(tmp_path / "ckpt"), str(tmp_path / "x.npy"), "--out", str(kept)]) == 2
    assert kept.read_bytes() == b"precious" and "--overwrite" in capsys.readouterr().err
    assert main(["encode", str(tmp_path / "ckpt"), str(tmp_path / "x.npy"), "--out", str(kept), "--overwrite"]) == 0
    assert np.load(kept).shape == (2, 4, 4)


def test_an_autoencoder_chooses_its_checkpoint_by_validation_reconstruction_error(digits, tmp_path):
    """vqvae names ``mse`` as its selection figure: the best checkpoint is the lowest validation MSE
    (not the FD of its marginal samples), best.json says so, and the test figures are that checkpoint's."""
    import csv
    import json

    from genmodels.training import TrainConfig, train

    # lr 0.3 overshoots: validation MSE 0.55, 0.23, 0.28 at steps 0, 3, 6, so the best is not the latest.
    config = TrainConfig(steps=6, eval_every=3, batch_size=32, lr=0.3, num_samples=4)
    result = train("vqvae", digits, config, tmp_path / "run", model_config={"channels": 8, "num_codes": 16}, progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv")))
    mse = {int(r["step"]): float(r["value"]) for r in rows if r["split"] == "validation" and r["metric"] == "mse"}
    assert sorted(mse) == [0, 3, 6]
    assert not any(r["metric"] == "fd_genmodels_features" for r in rows)
    best_step = min(mse, key=mse.get)
    assert best_step == 3
    assert result.best_checkpoint.name == f"step-{best_step:09d}"
    best = json.loads((tmp_path / "run" / "checkpoints" / "best.json").read_text())
    assert best["selected_by"] == "validation mse (lower is better)" and best["value"] == pytest.approx(mse[best_step])
    assert {f.name for f in result.test_figures} == {"reconstruction_nll", "mse", "psnr"}
