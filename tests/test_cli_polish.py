"""Mistakes answered well: a "did you mean" for every name, one line for a bad value (no usage dump),
a missing path called missing, a listing that fits 80 columns, and a Python API that can be quiet
and whose errors name its own arguments."""

from __future__ import annotations

import pytest

from genmodels.cli import main
from genmodels.errors import UserError, did_you_mean


def _one_line(argv, capsys) -> str:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's refusals
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "usage:" not in err, err
    return err


@pytest.mark.parametrize("argv, suggestion", [
    (["train", "pixelcn", "--steps", "1"], "did you mean 'pixelcnn'?"),
    (["train", "fvsbn", "--data", "digts", "--steps", "1"], "did you mean 'digits'"),
    (["train", "fvsbn", "--data", "mnist", "--steps", "1"], "did you mean 'fashion-mnist'"),
    (["train", "fvsbn", "--steps", "1", "--set", "rnak=2"], "did you mean 'rank'?"),
    (["train", "fvsbn", "--steps", "1", "--sample-option", "temprature=0.5"], "did you mean 'temperature'?"),
    (["train", "--recipe", "digits-fvsbm"], "did you mean 'digits-fvsbn'"),
    (["bench", "--suite", "quik"], "did you mean 'quick'?"),
    (["trian", "fvsbn"], "did you mean 'train'?"),
    (["train", "fvsbn", "--steps", "1", "--eval-evry", "5"], "did you mean '--eval-every'"),
    (["train", "fvsbn", "--steps", "1", "--select-by", "likelyhood"], "did you mean 'likelihood'?"),
])
def test_a_mistyped_name_gets_a_suggestion(argv, suggestion, tmp_path, capsys):
    assert suggestion in _one_line([*argv, "--out", str(tmp_path / "run")] if argv[0] == "train" else argv, capsys)


def test_did_you_mean_is_empty_for_nothing_close():
    assert did_you_mean("zzzz", ["fvsbn", "made"]) == ""
    assert did_you_mean("vea", ["vae", "ve", "fvsbn"]) == "; did you mean 've' or 'vae'?"


def test_a_bad_value_is_one_line_naming_the_flag_and_the_help(tmp_path, capsys):
    err = _one_line(["train", "fvsbn", "--lr", "fast", "--out", str(tmp_path / "run")], capsys)
    assert err == "genmodels train: error: argument --lr: cannot read 'fast' as float (see `genmodels train --help`)\n"
    err = _one_line(["eval"], capsys)
    assert err == "genmodels eval: error: the following arguments are required: checkpoint (see `genmodels eval --help`)\n"


@pytest.mark.parametrize("path", ["my_images/", "data/faces", "faces.npy", "~/nowhere-genmodels", "./pics"])
def test_a_missing_data_path_says_it_does_not_exist(path, tmp_path, capsys):
    err = _one_line(["train", "fvsbn", "--data", path, "--steps", "1", "--out", str(tmp_path / "run")], capsys)
    assert ": no such file or folder; give a folder of images" in err and "unknown data set" not in err


def test_list_fits_80_columns_without_markup_or_broken_names(monkeypatch, capsys):
    from genmodels.recipes import recipe_names

    monkeypatch.setenv("COLUMNS", "80")
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80 and "`" not in out
    words = {word.strip(",") for line in lines for word in line.split()}
    assert set(recipe_names()) <= words  # each recipe name whole on one line
    assert "  pixelcnn         exact:" in out and "exact/bound:" in out


def test_test_examples_help_points_to_no_file_users_lack(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "PROTOCOL" not in out and "../shared" not in out


def test_the_python_api_can_be_quiet_and_its_errors_name_python_arguments(digits, tmp_path, capfd):
    from genmodels.training import TrainConfig, train

    capfd.readouterr()
    result = train("fvsbn", digits, TrainConfig(steps=3, eval_every=3, num_samples=4), tmp_path / "run", quiet=True)
    assert result.steps == 3
    assert capfd.readouterr() == ("", "")
    with pytest.raises(UserError) as refused:
        TrainConfig(steps=1, lr=0.0)
    assert str(refused.value) == "--lr must be a positive number, got 0.0"  # the command line's one line
    assert refused.value.python_names == "in Python: --lr is TrainConfig.lr"
    with pytest.raises(UserError) as refused:
        train("fvsbn", digits, TrainConfig(steps=3, eval_every=3, grad_accumulation=100), tmp_path / "other", quiet=True)
    assert "--grad-accumulation 100" in str(refused.value)
    assert "--grad-accumulation is TrainConfig.grad_accumulation" in refused.value.python_names
    assert capfd.readouterr() == ("", "")
