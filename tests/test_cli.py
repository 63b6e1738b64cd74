"""The command line: the whole path train → eval → sample, and one-line errors with status 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genmodels.cli import main


def _bpd(text: str) -> str:
    return re.search(r"([0-9.]+) bits/dim", text).group(1)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    code = main(["train", "fvsbn", "--data", "digits", "--steps", "40", "--eval-every", "20", "--lr", "3e-3",
                 "--out", str(run), "--no-progress", "--set", "rank=4"])
    assert code == 0
    return run


def test_eval_reproduces_the_figure_printed_after_training(trained_run, capsys, tmp_path):
    results = json.loads((trained_run / "results.json").read_text())
    printed_at_training = f"{results['test'][0]['bits_per_dim']:.6g}"
    assert main(["eval", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert _bpd(out) == printed_at_training
    assert "exact" in out
    assert main(["eval", str(trained_run), "--json", "--split", "validation"]) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    assert records[0]["kind"] == "exact" and records[0]["examples"] == 180


def test_eval_examples_measures_the_first_n_and_says_so(trained_run, capsys):
    assert main(["eval", str(trained_run), "--json", "--examples", "7"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["records"][0]["examples"] == 7 and (report["examples"], report["split_size"]) == (7, 360)
    assert main(["eval", str(trained_run), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)["records"][0]
    assert whole["examples"] == 360 and whole["nll_nats"] != report["records"][0]["nll_nats"]
    assert main(["eval", str(trained_run), "--examples", "7"]) == 0
    assert "first 7 of 360 examples" in capsys.readouterr().out
    assert main(["eval", str(trained_run), "--examples", "0"]) == 2
    assert "--examples must be ≥ 1" in capsys.readouterr().err


def test_train_prints_the_test_figure_and_where_files_are(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "independent", "--steps", "1", "--out", str(run), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "exact" in out and "bits/dim" in out and str(run / "samples.png") in out
    assert main(["eval", str(run)]) == 0
    assert _bpd(capsys.readouterr().out) == _bpd(out)


def test_sample_writes_a_png_grid_and_an_array(trained_run, tmp_path, capsys):
    png, npy = tmp_path / "grid.png", tmp_path / "samples.npy"
    assert main(["sample", str(trained_run), "-n", "16", "--out", str(png), "--npy", str(npy)]) == 0
    assert "samples/s" in capsys.readouterr().out
    assert Image.open(png).size[0] > 4 * 8
    samples = np.load(npy)
    assert samples.shape == (16, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 16


def test_resume_continues_a_run(trained_run, tmp_path, capsys):
    run = tmp_path / "copy"
    import shutil

    shutil.copytree(trained_run, run)
    assert main(["train", "fvsbn", "--steps", "60", "--eval-every", "20", "--lr", "3e-3", "--out", str(run),
                 "--resume", "--no-progress", "--set", "rank=4"]) == 0
    assert json.loads((run / "results.json").read_text())["steps"] == 60


def test_list_names_models_and_data_sets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("independent", "fvsbn", "digits", "fashion-mnist", "binary-digits", "checkerboard", "two-moons"):
        assert name in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "pixelcnnn", "--steps", "1"], "unknown model 'pixelcnnn'; valid models: "),
        (["train", "fvsbn", "--data", "mnist", "--steps", "1"], "unknown data set 'mnist'"),
        (["train", "fvsbn", "--data", "checkerboard", "--steps", "1"], "needs discrete data"),
        (["train", "fvsbn"], "give a training budget"),
        (["train", "fvsbn", "--steps", "1", "--set", "depth=3"], "unknown config option 'depth'"),
        (["train", "fvsbn", "--data", "fashion-mnist", "--data-dir", "/nonexistent", "--steps", "1"],
         "apt-get install dataset-fashion-mnist"),
        (["eval", "/nonexistent/run"], "does not exist"),
        (["sample", "/nonexistent/run"], "does not exist"),
        (["bench", "--models", "fvsbn,nope"], "unknown model 'nope'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(argv, message, capsys, tmp_path):
    argv = argv + (["--out", str(tmp_path / "x")] if argv[0] in ("train", "bench") else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_checkpoint_exits_2(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "broken"
    shutil.copytree(trained_run, run)
    for file in run.rglob("model.safetensors"):
        file.write_bytes(b"not safetensors")
    assert main(["eval", str(run)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_installed_command_exits_2_without_traceback():
    """The real entry point, in a subprocess with no stdin (as CI runs it)."""
    env = {**os.environ, "CI": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "genmodels.cli", "train", "nope", "--steps", "1"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=120,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("genmodels: error: unknown model 'nope'; valid models: ") and "fvsbn" in line
    argparse_error = subprocess.run(
        [sys.executable, "-m", "genmodels.cli", "train"], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
    )
    assert argparse_error.returncode == 2 and "Traceback" not in argparse_error.stderr


def test_bench_writes_one_table_for_its_models(tmp_path, capsys):
    out = tmp_path / "bench"
    assert main(["bench", "--models", "fvsbn,independent", "--steps", "30", "--eval-every", "15", "--out", str(out),
                 "--no-progress", "--test-examples", "100"]) == 0
    table = (out / "results.md").read_text()
    assert "| digits | fvsbn | log_prob | exact; first 100 of 360 test examples |" in table
    assert "| digits | independent | log_prob | exact; first 100 of 360 test examples |" in table
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["model"] for r in rows} == {"fvsbn", "independent"}
    assert {(r["test_examples"], r["test"][0]["examples"]) for r in rows} == {(100, 100)}
    for name in ("samples-digits-fvsbn.png", "samples-digits-independent.png", "loss_curves-digits.png"):
        assert (out / name).is_file()
    # Nothing written is overwritten: a second bench into the same folder is refused.
    assert main(["bench", "--models", "fvsbn", "--steps", "1", "--out", str(out), "--no-progress"]) == 2


def test_sampling_options_and_labels_are_checked(trained_run, tmp_path, capsys):
    png = str(tmp_path / "g.png")
    assert main(["sample", str(trained_run), "-n", "4", "--out", png, "--option", "steps=5"]) == 2
    assert "no sampling option 'steps'; its sampling options: temperature" in capsys.readouterr().err
    assert main(["sample", str(trained_run), "-n", "4", "--out", png, "--option", "temperature=0"]) == 2
    assert "temperature must be > 0" in capsys.readouterr().err
    assert main(["sample", str(trained_run), "-n", "4", "--out", png, "--option", "temperature=0.7"]) == 0
    assert main(["sample", str(trained_run), "-n", "4", "--out", png, "--label", "3"]) == 2
    assert "not class-conditional" in capsys.readouterr().err
    assert main(["sample", str(trained_run), "-n", "0", "--out", png]) == 2
    assert main(["sample", str(trained_run), "-n", "4", "--out", str(tmp_path / "g.jpg")]) == 2


def test_a_sampling_option_reaches_the_model_parsed(digits, tmp_path, monkeypatch, capsys):
    from genmodels import checkpoint
    from genmodels.training import TrainConfig, train

    from .toy_models import NoisyBound, registered

    seen = {}
    original = checkpoint.load_model

    def spy(*args, **kwargs):
        model, ckpt = original(*args, **kwargs)
        seen["model"] = model
        return model, ckpt

    monkeypatch.setattr(checkpoint, "load_model", spy)
    with registered("noisy-bound", NoisyBound):
        train("noisy-bound", digits, TrainConfig(steps=2, eval_every=2), tmp_path / "run", progress=False)
        png = str(tmp_path / "g.png")
        assert main(["sample", str(tmp_path / "run"), "-n", "4", "--out", png, "--option", "temperature=0.5"]) == 0
    assert seen["model"].last_temperature == 0.5


def test_sample_reports_what_the_model_says_about_its_draw(digits, tmp_path, capsys):
    from genmodels.training import TrainConfig, train

    from .toy_models import NoisyBound, registered

    with registered("noisy-bound", NoisyBound):
        train("noisy-bound", digits, TrainConfig(steps=2, eval_every=2), tmp_path / "run", progress=False)
        assert main(["sample", str(tmp_path / "run"), "-n", "4", "--out", str(tmp_path / "g.png")]) == 0
    assert "nfe 7" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lr", "-1"], "--lr must be a positive number, got -1.0"),
        (["--lr", "nan"], "--lr must be a positive number, got nan"),
        (["--weight-decay", "-1"], "--weight-decay must be ≥ 0"),
        (["--grad-clip", "-1"], "--grad-clip must be > 0 (or 0/none for no clipping), got -1.0"),
        (["--set", "rank=-3"], "FVSBNConfig: rank must be ≥ 0"),
        (["--batch-size", "0"], "--batch-size must be ≥ 1"),
    ],
)
def test_bad_training_values_get_one_line_and_exit_2(args, message, tmp_path, capsys):
    assert main(["train", "fvsbn", "--steps", "1", "--out", str(tmp_path / "r"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "r").exists()  # nothing was started


def test_bad_model_option_of_a_closed_form_model(tmp_path, capsys):
    assert main(["train", "independent", "--steps", "1", "--set", "pseudocount=0", "--out", str(tmp_path / "r")]) == 2
    assert "IndependentConfig: pseudocount must be > 0" in capsys.readouterr().err


def test_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("mine")
    assert main(["train", "fvsbn", "--steps", "1", "--out", str(target)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert target.read_text() == "mine"


def _one_error_line(capsys, pattern):
    import re

    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bad_user_files_get_one_line_and_exit_2(tmp_path, capsys):
    import numpy as np

    np.save(tmp_path / "big.npy", np.array([[0, 2**40], [1, 2]], dtype=np.int64))
    (tmp_path / "rand.npy").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "labels.csv").write_text("x,y,label\n1,2,cat\n3,4,dog\n")
    cases = [
        ("big.npy", r"K = 1099511627777 .*rescale"),
        ("rand.npy", r"not a valid \.npy file"),
        ("labels.csv", r"column 3 \('label'\) holds text"),
        ("", r"unknown data set"),
    ]
    for data, pattern in cases:
        path = str(tmp_path / data) if data else ""
        assert main(["train", "fvsbn", "--data", path, "--steps", "1", "--out", str(tmp_path / "r")]) == 2
        _one_error_line(capsys, pattern)


def test_damaged_checkpoints_get_one_line_and_exit_2(trained_run, tmp_path, capsys):
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from genmodels.checkpoint import list_checkpoints

    cases = [
        (lambda s: s["out_proj"].view(-1).__setitem__(0, float("nan")), r"tensor 'out_proj' holds 1 NaN"),
        (lambda s: s.__setitem__("out_proj", torch.zeros(3, 3)), r"has shape \(3, 3\), model 'fvsbn' expects"),
        (lambda s: s.__setitem__("bias", s["bias"].to(torch.int64)), r"holds integer values"),
    ]
    source = list_checkpoints(trained_run)[-1]
    for i, (damage, pattern) in enumerate(cases):
        ckpt = tmp_path / f"ckpt{i}"
        shutil.copytree(source, ckpt)
        state = load_file(ckpt / "model.safetensors")
        damage(state)
        save_file({k: v.contiguous() for k, v in state.items()}, ckpt / "model.safetensors")
        assert main(["eval", str(ckpt), "--no-ema"]) == 2
        _one_error_line(capsys, pattern)
        assert main(["sample", str(ckpt), "--no-ema", "-n", "2", "--out", str(tmp_path / "s.png")]) == 2
        _one_error_line(capsys, pattern)


def test_a_run_on_a_relative_path_is_evaluated_from_another_folder(tmp_path, monkeypatch, capsys):
    import numpy as np

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    np.save(data_dir / "good.npy", np.random.default_rng(0).integers(0, 4, size=(60, 2, 3)))
    monkeypatch.chdir(data_dir)
    assert main(["train", "fvsbn", "--data", "good.npy", "--steps", "2", "--eval-every", "2", "--out", "run",
                 "--no-progress"]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(data_dir / "run")]) == 0
    assert "log_prob" in capsys.readouterr().out


def test_eval_adds_sample_quality_on_request(trained_run, capsys):
    assert main(["eval", str(trained_run), "--samples", "60", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    labels = {r["label"] for r in report["sample_quality"]}
    assert any(label.startswith("FD (genmodels features)") for label in labels), labels
    assert not any(label.startswith("FID") for label in labels)
    assert all(r["samples"] == 60 for r in report["sample_quality"])
    assert main(["eval", str(trained_run), "--samples", "1"]) == 2
    assert "--samples must be ≥ 2" in capsys.readouterr().err


def test_classify_a_split_with_a_class_conditional_model(trained_run, tmp_path, capsys):
    run = tmp_path / "cond"
    assert main(["train", "nade", "--set", "conditional=true", "--set", "hidden=16", "--steps", "30", "--eval-every", "30",
                 "--lr", "1e-2", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["classify", str(run), "--out", str(tmp_path / "confusion.png"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert sum(map(sum, result["confusion"])) == 360
    assert result["accuracy"] > 0.3  # ten classes: chance is 0.1
    assert (tmp_path / "confusion.png").is_file()
    assert main(["classify", str(run), "--json", "--examples", "40"]) == 0
    head = json.loads(capsys.readouterr().out)
    assert sum(map(sum, head["confusion"])) == 40 and (head["examples"], head["split_size"]) == (40, 360)
    assert main(["classify", str(trained_run)]) == 2  # fvsbn is not class-conditional
    err = capsys.readouterr().err
    assert "genmodels: error:" in err and "Traceback" not in err


@pytest.mark.parametrize("variant, blind", [("plain", True), ("gated", False)])
def test_audit_draws_the_receptive_field_with_the_plain_pixelcnns_blind_spot_and_none_for_the_gated(
        variant, blind, trained_run, tmp_path, capsys):
    """`genmodels audit RUN --pixel R,C`: the audited field equals the layer stack's analytic field, the
    plain PixelCNN (type-A then type-B masks, van den Oord et al. 2016) misses earlier pixels to the
    upper right inside its field (the blind spot) and the gated one does not; no model reads a later pixel."""
    run = tmp_path / variant
    assert main(["train", "pixelcnn", "--set", f"variant={variant}", "--set", "channels=4", "--set", "layers=3", "--set", "first_kernel=3",
                 "--steps", "2", "--eval-every", "2", "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["audit", str(run), "--pixel", "6,2", "--out", str(tmp_path / "rf.png"), "--json"]) == 0
    audit = json.loads(capsys.readouterr().out)
    assert audit["matches_analytic"] is True and audit["causality_violations"] == 0
    assert audit["field_pixels"] == audit["analytic_field_pixels"] > 0
    assert (audit["blind_spot_pixels"] > 0) == blind
    assert (tmp_path / "rf.png").stat().st_size > 0
    made = tmp_path / "made"
    assert main(["train", "made", "--set", "hidden=16", "--steps", "2", "--eval-every", "2", "--out", str(made),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["audit", str(made), "--pixel", "2,3", "--json"]) == 0  # masked MLP: earlier pixels only, no analytic field
    dense = json.loads(capsys.readouterr().out)
    assert 0 < dense["field_pixels"] <= dense["earlier_pixels"] == 2 * 8 + 3 and dense["analytic_field_pixels"] is None
    assert dense["causality_violations"] == 0
    for bad in (["--pixel", "9,0"], ["--pixel", "3"], ["--out", "rf.jpg"]):
        assert main(["audit", str(run), *bad]) == 2
        assert "genmodels: error:" in capsys.readouterr().err


def test_sample_on_a_table_draws_the_data_beside_the_samples(tmp_path, monkeypatch, capsys):
    """As the end-of-run picture does: per-dimension histograms of the samples over the validation
    split's examples; without the training data any more, the samples alone with a note."""
    from genmodels import plotting
    from genmodels.data import load_dataset

    rng = np.random.default_rng(0)
    table = tmp_path / "table.csv"
    table.write_text("a,b,c\n" + "".join(f"{x},{y},{z}\n" for x, y, z in rng.integers(0, 4, (200, 3))))
    run = tmp_path / "run"
    assert main(["train", "independent", "--data", str(table), "--steps", "1", "--out", str(run), "--no-progress"]) == 0
    drawn = {}
    monkeypatch.setattr(plotting, "save_tabular_samples",
                        lambda flat, spec, path, **kw: drawn.update(shape=flat.shape, **kw) or path)
    assert main(["sample", str(run), "-n", "10", "--out", str(tmp_path / "s.png")]) == 0
    validation = load_dataset(str(table)).validation.x
    assert drawn["shape"] == (10, 3) and drawn["reference"] is not None
    assert np.array_equal(np.asarray(drawn["reference"]), validation[:2000].numpy())
    table.unlink()
    capsys.readouterr()
    assert main(["sample", str(run), "-n", "10", "--out", str(tmp_path / "s.png")]) == 0
    assert drawn["reference"] is None and "note: drawing the samples without the data beside them" in capsys.readouterr().err

