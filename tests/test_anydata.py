"""Any data, one command: ``genmodels features fit`` and ``genmodels bench --data PATH --minutes M``
on a user's own image folder (grey and colour), end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genmodels.cli import main
from genmodels.data import load_dataset
from genmodels.metrics.fitted import (
    _stages, features_available, fit_features, fit_recipe, load_features_file, save_fitted, stored_features_path,
)
from genmodels.recipes.generic import minutes_each, scaled_model_config, width_scale


def _folder(root: Path, name: str, mode: str, n: int = 60, classes: int = 0) -> Path:
    """``n`` 8×8 PNGs with structure (a dark top half), in class subfolders when ``classes``."""
    rng = np.random.default_rng(0)
    folder = root / name
    for i in range(n):
        pixels = (rng.random((8, 8) if mode == "L" else (8, 8, 3)) * 255).astype(np.uint8)
        pixels[:4] //= 4
        target = folder / f"class{i % classes}" if classes else folder
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, mode).save(target / f"{i}.png")
    return folder


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A features store of this test's own (never the user's cache)."""
    path = tmp_path / "store"
    monkeypatch.setenv("GENMODELS_FEATURES_DIR", str(path))
    return path


def test_the_feature_network_follows_the_data_size_as_the_shipped_ones():
    # digits 8×8: 2 stages, Fashion-MNIST 28×28: 3 (as RECIPES in metrics/features.py); at most 4; flat data: none
    assert [_stages(s) for s in [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 512, 512), (1, 2, 2), (64,)]] == [2, 3, 4, 4, 0, 0]
    assert fit_recipe("d", (1, 8, 8), 48).channels == (32, 64)
    assert fit_recipe("d", (1, 8, 8), 48).epochs == 40  # 1 step per epoch: the 40-epoch cap
    assert fit_recipe("d", (1, 28, 28), 55_000).epochs == 7  # 430 steps per epoch: ⌈3000/430⌉


def test_widths_shrink_with_the_data_size_and_the_budget_is_split():
    # √(1024/D): 1 up to 1 024 values, 1/2 at 4 096, never below 1/4
    assert (width_scale(784), width_scale(4096), width_scale(16384), width_scale(10**7)) == (1.0, 0.5, 0.25, 0.25)
    from genmodels.core import model_class
    from genmodels.data.base import DataSpec

    assert scaled_model_config(model_class("ddpm"), DataSpec("d", (1, 8, 8), 256)) is None  # defaults kept
    # ddpm defaults channels 16, hidden 128 → 8 and 64 on 1×64×64 (D = 4 096)
    assert scaled_model_config(model_class("ddpm"), DataSpec("d", (1, 64, 64), 256)) == {"channels": 8, "hidden": 64}
    assert scaled_model_config(model_class("fvsbn"), DataSpec("d", (1, 64, 64), 256)) is None  # no width option
    assert minutes_each(1.0, 4) == 0.25


def test_features_fit_round_trips_through_safetensors_and_json(tmp_path, store):
    data = load_dataset(str(_folder(tmp_path, "grey", "L")))
    state, info = fit_features(data, max_steps=2)
    assert info["objective"] == "autoencoder" and info["outputs"] == 64  # no labels: reconstructs the 8×8 values
    path = save_fitted(state, info, None)
    assert path == stored_features_path(data.spec.name) and path.parent == store
    assert path.read_bytes()[8:9] == b"{"  # a safetensors header, not a pickle
    assert json.loads(path.with_suffix(".json").read_text())["sha256"] == info["sha256"]
    loaded = load_features_file(path, data.spec.name, tuple(data.spec.shape))
    assert loaded.sha256 == info["sha256"] and features_available(data.spec.name)
    x = data.test.x
    from genmodels.metrics.features import FeatureNetwork, FeatureRecipe

    recipe = FeatureRecipe.from_json(info["recipe"])
    original = FeatureNetwork((1, 8, 8), recipe.channels, recipe.features, 64)
    original.load_state_dict(state)
    expected = original.features(x.float() / 255).double()
    assert torch.equal(loaded(x, 256), expected)
    # A network fit to other shapes is refused, naming the fix
    with pytest.raises(Exception, match="features fit"):
        load_features_file(path, "other", (3, 8, 8))


def test_flat_data_get_an_mlp_and_continuous_data_are_refused(tmp_path, store):
    levels = np.random.default_rng(0).integers(0, 4, (50, 12)).astype(np.uint8)
    np.save(tmp_path / "flat.npy", levels)
    data = load_dataset(str(tmp_path / "flat.npy"))
    state, info = fit_features(data, max_steps=1)
    assert info["recipe"]["channels"] == [] and state["body.1.weight"].shape == (128, 12)  # Flatten, Linear
    loaded = load_features_file(save_fitted(state, info, None), data.spec.name, (12,))
    assert loaded(data.test.x, 4).shape == (5, 128)
    np.save(tmp_path / "real.npy", np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
    with pytest.raises(Exception, match="continuous values; features fit takes discrete data"):
        fit_features(load_dataset(str(tmp_path / "real.npy")))


def test_labelled_folders_get_a_classifier(tmp_path, store):
    data = load_dataset(str(_folder(tmp_path, "labelled", "L", classes=3)))
    state, info = fit_features(data, max_steps=1)
    assert info["objective"] == "classifier" and info["outputs"] == 3
    assert state["head.weight"].shape == (3, 128)  # one logit per class folder, on the 128 features
    assert set(info["figures"]) == {"validation_accuracy", "test_accuracy"}


def test_eval_samples_refuses_naming_the_fix_then_measures_after_features_fit(tmp_path, store, capsys):
    folder = _folder(tmp_path, "grey", "L")
    run = tmp_path / "run"
    assert main(["train", "independent", "--data", str(folder), "--steps", "1", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--samples", "10"]) == 2
    assert f"genmodels features fit --data {folder.resolve()}" in capsys.readouterr().err
    assert main(["features", "fit", "--data", str(folder), "--epochs", "1", "--no-progress"]) == 0
    assert "autoencoder fit to" in capsys.readouterr().out
    assert main(["eval", str(run), "--samples", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    names = {q["features"] for q in report["sample_quality"]}
    assert len(names) == 1 and names.pop().startswith("genmodels-fit-autoencoder-grey-")
    stored = report["sample_quality"][0]["features_sha256"]
    # --features FILE: a network written elsewhere (here another seed) replaces the stored one
    other = tmp_path / "elsewhere" / "features.safetensors"
    assert main(["features", "fit", "--data", str(folder), "--epochs", "1", "--seed", "1", "--out", str(other),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["eval", str(run), "--samples", "10", "--features", str(other), "--json"]) == 0
    hashes = {q["features_sha256"] for q in json.loads(capsys.readouterr().out)["sample_quality"]}
    assert hashes == {json.loads(other.with_suffix(".json").read_text())["sha256"]} and stored not in hashes
    # Inception: a missing weights file is the user's mistake; a missing library skips with a note
    assert main(["eval", str(run), "--samples", "4", "--inception-weights", str(tmp_path / "none.pth")]) == 2
    assert "never downloads" in capsys.readouterr().err
    weights = tmp_path / "inception.pth"
    weights.write_bytes(b"not read when torchmetrics is missing")
    import importlib.util

    if importlib.util.find_spec("torchmetrics") is None:  # (the CI's environment has no torchmetrics)
        assert main(["eval", str(run), "--samples", "10", "--inception-weights", str(weights)]) == 0
        assert "FID (Inception-v3): skipped, needs torchmetrics" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_bench_on_a_user_folder_ranks_the_models_in_one_leaderboard(tmp_path, store, capsys, mode):
    folder = _folder(tmp_path, "pictures", mode)
    before = sorted(p.name for p in folder.iterdir())
    assert main(["features", "fit", "--data", str(folder), "--epochs", "1", "--no-progress"]) == 0
    out = tmp_path / "bench"
    assert main(["bench", "--data", str(folder), "--models", "independent,fvsbn,gan", "--minutes", "0.02",
                 "--eval-every", "5", "--num-samples", "4", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "0.02 min of training in all, 0.00667 min each for 3 model(s)" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["minutes_total"] == 0.02 and results["minutes_each"] == pytest.approx(0.02 / 3)
    rows = {r["model"]: r for r in results["rows"]}
    assert rows["fvsbn"]["train_config"]["minutes"] == pytest.approx(0.02 / 3)
    assert rows["fvsbn"]["train_config"]["steps"] is None  # the budget is time, not the default 1 000 steps
    assert {q["samples"] for q in rows["gan"]["sample_quality"]} == {200}
    assert rows["gan"]["sample_quality"][0]["features"].startswith("genmodels-fit-autoencoder-pictures-")
    table = (out / "results.md").read_text()
    leaderboard = table.split("## Details")[0]
    assert leaderboard.count("| data | model | kind |") == 1 and "| FD (genmodels features) | KID |" in leaderboard
    assert f"| {folder} | gan | none | — | — |" in leaderboard
    assert "the feature space `genmodels-fit-autoencoder-pictures-" in leaderboard
    assert leaderboard in printed  # the terminal shows the one leaderboard
    assert (out / "pictures" / "fvsbn" / "results.json").is_file() and (out / "montage-pictures.png").is_file()
    assert sorted(p.name for p in folder.iterdir()) == before  # the user's folder is never written to


def test_a_bench_on_data_without_a_feature_network_says_how_to_get_one(tmp_path, store, capsys):
    from genmodels.bench import default_quality_samples

    folder = _folder(tmp_path, "plain", "L", n=6)
    assert default_quality_samples([str(folder)], None) == 0
    assert f"`genmodels features fit --data {folder}` first" in capsys.readouterr().out
    assert default_quality_samples([str(folder)], "some.safetensors") == 200  # --features given
    assert default_quality_samples(["digits"], None) == 0  # registered data: as before, none unless asked


def test_the_generic_config_stays_within_the_parameter_budget():
    """MADE and fvsbn grow with D·K and D²K; the generic recipe takes their cheaper settings (a
    logistic output, a lower rank) until the parameters fit, and says when nothing fits."""
    from genmodels.core import model_class
    from genmodels.data.base import DataSpec
    from genmodels.recipes.generic import OverBudget, bench_model_config, parameter_count

    spec = DataSpec("d", (1, 8, 8), 256)  # D = 64, K = 256
    made, fvsbn = model_class("made"), model_class("fvsbn")
    # MADE's defaults: 64→256→256→64·256 softmax logits, plus 64 × 64·256 direct weights
    assert parameter_count("made", spec, None) == (64 * 256 + 256) + (256 * 256 + 256) + (256 * 16384 + 16384) + 64 * 16384
    assert bench_model_config("made", made, spec) == {"output": "logistic"}  # 5.3 M > 4 M: 15 outputs per value
    assert bench_model_config("made", made, DataSpec("d", (1, 8, 8), 17)) is None  # within budget: the defaults
    # fvsbn with rank r: V (D, r, D) + U (D, K, r) + biases (D, K) = 20 480 r + 16 384
    assert parameter_count("fvsbn", spec, {"rank": 8}) == 20480 * 8 + 16384
    assert bench_model_config("fvsbn", fvsbn, spec, budget=300_000) == {"rank": 8}
    assert bench_model_config("fvsbn", fvsbn, spec, budget=60_000) == {"rank": 2}  # 57 344
    with pytest.raises(OverBudget, match=r"^0\.0 M parameters at its smallest generic setting, over the bench's 0\.02 M budget; "
                                         r"name it in --models to train it anyway$") as over:
        bench_model_config("fvsbn", fvsbn, spec, budget=20_000)  # rank 1: 36 864
    assert over.value.config == {"rank": 1}
    # widths halve where no cheaper setting is left: nsf's hidden (64, 64) → (32, 32) → …
    nsf = bench_model_config("nsf", model_class("nsf"), spec, budget=200_000)
    assert nsf["hidden"] in {(32, 32), (16, 16), (8, 8)} and parameter_count("nsf", spec, nsf) <= 200_000


def test_the_bench_skips_a_model_over_the_budget_unless_models_names_it(tmp_path, monkeypatch):
    from genmodels.bench import run_bench
    from genmodels.recipes import generic
    from genmodels.training import TrainConfig

    monkeypatch.setattr(generic, "PARAMETER_BUDGET", 20_000)  # fvsbn's rank 1 on 8×8×256 is 36 864
    folder = _folder(tmp_path, "grey", "L", n=30)
    config = TrainConfig(steps=2, eval_every=2, num_samples=4)
    run_bench(["independent", "fvsbn"], [str(folder)], config, tmp_path / "all", progress=False)
    rows = {r["model"]: r for r in json.loads((tmp_path / "all" / "results.json").read_text())["rows"]}
    assert rows["fvsbn"]["skipped"].endswith("over the bench's 0.02 M budget; name it in --models to train it anyway")
    assert "skipped" not in rows["independent"]
    run_bench(["fvsbn"], [str(folder)], config, tmp_path / "named", progress=False, forced=["fvsbn"])
    row = json.loads((tmp_path / "named" / "results.json").read_text())["rows"][0]
    assert "skipped" not in row and row["model_config"]["rank"] == 1  # its smallest generic setting
