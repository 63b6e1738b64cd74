"""Mistakes answered well: a "did you mean" for every name, one line for a bad value (no usage dump),
a missing path called missing, a listing that fits 80 columns, and a Python API that can be quiet
and whose errors name its own arguments (``lr``) where the command line names flags (``--lr``)."""

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


def test_the_python_api_can_be_quiet(digits, tmp_path, capfd):
    from genmodels.training import TrainConfig, train

    capfd.readouterr()
    result = train("fvsbn", digits, TrainConfig(steps=3, eval_every=3, num_samples=4), tmp_path / "run", quiet=True)
    assert result.steps == 3
    assert capfd.readouterr() == ("", "")
    with pytest.raises(UserError, match=r"^a step takes .*grad_accumulation=100 .*lower batch_size or grad_accumulation$"):
        train("fvsbn", digits, TrainConfig(steps=3, eval_every=3, grad_accumulation=100), tmp_path / "other", quiet=True)
    assert capfd.readouterr() == ("", "")


def _used_folder(tmp_path):
    used = tmp_path / "used"
    used.mkdir(exist_ok=True)
    (used / "notes.txt").write_text("mine")
    return used


# One mistake each, as Python reads it (the arguments) and as the command line does (the flags).
_BOTH_FRONT_ENDS = [
    ({"lr": 0.0}, ["--lr", "0"], "lr must be a positive number, got 0.0", "--lr must be a positive number, got 0.0"),
    ({"ema_decay": 2.0}, ["--ema", "2"], "ema_decay must be in (0, 1), got 2.0", "--ema must be in (0, 1), got 2.0"),
    ({"lr_schedule": "cosine", "steps": None, "minutes": 1.0}, ["--lr-schedule", "cosine", "--minutes", "1"],
     "lr_schedule=cosine needs a steps or epochs budget to decay over",
     "--lr-schedule cosine needs a --steps or --epochs budget to decay over"),
    ({"steps": None}, [], "give a training budget: steps=N, epochs=N or minutes=M",
     "give a training budget: --steps N, --epochs N or --minutes M"),
    ({"select_by": "fd", "select_measure": "iwae"}, ["--select-by", "fd", "--select-measure", "iwae"],
     "select_measure chooses among likelihood records; it cannot go with select_by=fd",
     "--select-measure chooses among likelihood records; it cannot go with --select-by fd"),
    ("used", ["used"], "already holds files; pass resume=True to continue that run, or run_dir=a new folder",
     "already holds files; pass --resume to continue that run, or --out a new folder"),
]


@pytest.mark.parametrize("python, argv, in_python, on_command_line", _BOTH_FRONT_ENDS)
def test_an_error_names_python_arguments_in_python_and_flags_on_the_command_line(
        python, argv, in_python, on_command_line, digits, tmp_path, capsys):
    from genmodels.training import TrainConfig, train

    out = str(tmp_path / "run")
    if python == "used":
        out, argv = str(_used_folder(tmp_path)), []
        with pytest.raises(UserError) as refused:
            train("fvsbn", digits, TrainConfig(steps=1), out, quiet=True)
    else:
        with pytest.raises(UserError) as refused:
            TrainConfig(**{"steps": 1, **python})
    assert in_python in str(refused.value) and "--" not in str(refused.value)
    budget = [] if isinstance(python, dict) and "steps" in python else ["--steps", "1"]
    line = _one_line(["train", "fvsbn", *budget, *argv, "--out", out], capsys)
    assert line.startswith("genmodels: error: ") and on_command_line in line, line


def test_one_mapping_gives_every_training_flag_from_its_python_name():
    """The flags the parser makes from TrainConfig are the ones an error names (flag_of), and the
    mapping is a rendering only: the same message, two front-ends."""
    import argparse

    from genmodels.cli import build_parser
    from genmodels.errors import command_line, flag_of, option
    from genmodels.training import TrainConfig

    train_parser = next(a for a in build_parser(["train"])._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    fields = {f.name for f in __import__("dataclasses").fields(TrainConfig)}
    flags = {a.dest: a.option_strings[0] for a in train_parser._actions if a.dest in fields}
    assert len(flags) == len(fields) and all(flag_of(name) == flag for name, flag in flags.items())
    assert (flag_of("ema_decay"), flag_of("run_dir"), flag_of("model_config")) == ("--ema", "--out", "--set")
    error = UserError(f"{option('run_dir', '/x')} is a file; pass {option('resume', True)} or lower {option('lr')}")
    assert str(error) == "run_dir=/x is a file; pass resume=True or lower lr"
    assert repr(error) == "UserError('run_dir=/x is a file; pass resume=True or lower lr')"
    with command_line():
        assert str(error) == "--out /x is a file; pass --resume or lower --lr"
    assert str(error) == "run_dir=/x is a file; pass resume=True or lower lr"  # the front-end is restored
