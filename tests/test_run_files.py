"""Every crafted or damaged file of a run folder is refused in one line (exit 2, no traceback) before
anything is rewritten: the run folder's files are byte-identical afterwards. FIFOs and links to
/dev/zero are refused without blocking; JSON is bounded in size and depth; names in run files never
leave the run folder; pruning never follows a symlink; a full disk is one line naming the folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from genmodels.checkpoint import file_sha256, list_checkpoints, read_json, remove_checkpoint, save_checkpoint
from genmodels.cli import main
from genmodels.errors import UserError
from genmodels.safe_files import MAX_JSON_BYTES, load_json_bounded
from genmodels.training import TrainConfig, train

RESUME = ["train", "fvsbn", "--data", "digits", "--steps", "6", "--resume", "--out"]


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory, digits):
    """A tiny fvsbn run on digits: checkpoints at steps 2 and 4 (and 0 if it is the best)."""
    run = tmp_path_factory.mktemp("pristine") / "run"
    train("fvsbn", digits, TrainConfig(steps=4, eval_every=2, batch_size=64, num_samples=4, log_every=2), run,
          progress=False)
    return run


def snapshot(root: Path) -> dict[str, object]:
    """Every entry under ``root`` without following links or opening special files: a regular
    file's bytes, a link's target, anything else its file type."""
    found: dict[str, object] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            info = os.lstat(path)
            key = str(path.relative_to(root))
            if stat.S_ISREG(info.st_mode):
                found[key] = path.read_bytes()
            elif stat.S_ISLNK(info.st_mode):
                found[key] = ("link", os.readlink(path))
            else:
                found[key] = ("kind", stat.S_IFMT(info.st_mode))
    return found


# --- crafting helpers: each changes every checkpoint of the run (so that no intact one is left) -------
def _each_checkpoint(change):
    def craft(run: Path) -> None:
        for folder in list_checkpoints(run):
            change(folder)
    return craft


def _meta(change):
    def edit(folder: Path) -> None:
        meta = json.loads((folder / "checkpoint.json").read_text())
        change(meta)
        (folder / "checkpoint.json").write_text(json.dumps(meta))
    return _each_checkpoint(edit)


def _state(change):
    """Edit trainer_state.safetensors and record its new SHA-256, as a deliberate forger would."""
    def edit(folder: Path) -> None:
        tensors = load_file(folder / "trainer_state.safetensors")
        change(tensors)
        save_file(tensors, folder / "trainer_state.safetensors")
        meta = json.loads((folder / "checkpoint.json").read_text())
        meta["sha256"]["trainer_state.safetensors"] = file_sha256(folder / "trainer_state.safetensors")
        (folder / "checkpoint.json").write_text(json.dumps(meta))
    return _each_checkpoint(edit)


def _first_moment(tensors):
    key = next(k for k in tensors if k.endswith("exp_avg"))
    tensors[key] = torch.zeros(3, 3)


def _write(relative: str, text: str):
    def craft(run: Path) -> None:
        (run / relative).write_text(text)
    return craft


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def _nest_state(meta):
    meta["trainer_state"]["state"]["batch_in_epoch"] = 10**12


DEEP = _deep(100_000)

#: name → (crafting, command after "genmodels" with {run}, what the one line says)
CRAFTED = {
    "optimizer tensor of the wrong shape": (_state(_first_moment), RESUME, r"exp_avg has shape \(3, 3\)"),
    "rng state of the wrong size": (_state(lambda t: t.update({"t.rng.torch": torch.zeros(7, dtype=torch.uint8)})),
                                    RESUME, r"trainer_state\.rng\.torch is a torch\.uint8 tensor of shape \(7,\)"),
    "trainer_state with an extra key": (_meta(lambda m: m["trainer_state"]["state"].update(speed=3)), RESUME,
                                        r"trainer_state\.state has unknown key 'speed'"),
    "trainer_state with a wrong-typed key": (_meta(lambda m: m["trainer_state"]["state"].update(step="3")), RESUME,
                                             r"trainer_state\.state: 'step' is '3', expected int"),
    "trainer_state naming a path": (_meta(lambda m: m["trainer_state"]["state"].update(good_checkpoint="../../etc")),
                                    RESUME, r"names checkpoint '\.\./\.\./etc', not a step-N folder"),
    "batch_in_epoch 1e12 (float)": (_meta(lambda m: m["trainer_state"]["state"].update(batch_in_epoch=1e12)), RESUME,
                                    r"'batch_in_epoch' is 1000000000000\.0, expected int"),
    "batch_in_epoch 10**12": (_meta(_nest_state), RESUME,
                              r"'batch_in_epoch' is 1000000000000, but an epoch of this run has \d+ batches"),
    "train_config lr 'fast'": (_meta(lambda m: m["train_config"].update(lr="fast")), RESUME,
                               r"train_config: 'lr' is 'fast', expected float"),
    "train_config lr -1": (_meta(lambda m: m["train_config"].update(lr=-1)), RESUME, r"train_config is invalid \(--lr"),
    "no model section": (_meta(lambda m: m.pop("model")), RESUME, r"lacks 'model'"),
    "no data section": (_meta(lambda m: m.pop("data")), RESUME, r"lacks 'data'"),
    "format version a string": (_meta(lambda m: m.update(format_version="1")), RESUME,
                                r"checkpoint format '1' \(str\); this genmodels reads format 1 \(an integer\)"),
    "checkpoint.json 100 000 deep": (_each_checkpoint(lambda f: (f / "checkpoint.json").write_text(DEEP)), RESUME,
                                     r"checkpoint\.json is JSON nested deeper than 64 levels"),
    "run.json a list": (_write("run.json", "[1, 2]"), RESUME, r"run\.json is list, expected an object"),
    "run.json resumed 'oops'": (_write("run.json", json.dumps({"resumed": "oops"})), RESUME,
                                r"run\.json: 'resumed' is 'oops', expected a list of objects"),
    "run.json 100 000 deep": (_write("run.json", DEEP), RESUME, r"run\.json is JSON nested deeper"),
    "best.json of the wrong type (resume)": (_write("checkpoints/best.json", '{"checkpoint": 5}'), RESUME,
                                             r"best\.json names checkpoint 5, not a step-N folder"),
    "best.json of the wrong type (eval)": (_write("checkpoints/best.json", '{"checkpoint": 5}'), ["eval", "--examples", "2"],
                                           r"best\.json names checkpoint 5"),
    "best.json of the wrong type (sample)": (_write("checkpoints/best.json", '{"checkpoint": 5}'), ["sample", "-n", "2"],
                                             r"best\.json names checkpoint 5"),
    "best.json a list (eval)": (_write("checkpoints/best.json", "[]"), ["eval", "--examples", "2"],
                                r"best\.json is list without a 'checkpoint' name"),
    "best.json an absolute path (eval)": (_write("checkpoints/best.json", '{"checkpoint": "/tmp"}'),
                                          ["eval", "--examples", "2"], r"names checkpoint '/tmp', not a step-N folder"),
    "best.json ../.. (sample)": (_write("checkpoints/best.json", '{"checkpoint": "../../x"}'), ["sample", "-n", "2"],
                                 r"names checkpoint '\.\./\.\./x'"),
    "checkpoint.json too long (eval)": (
        _each_checkpoint(lambda f: os.truncate(f / "checkpoint.json", MAX_JSON_BYTES + 1)), ["eval", "--examples", "2"],
        rf"checkpoint\.json is {MAX_JSON_BYTES + 1} bytes, more than the {MAX_JSON_BYTES}"),
}


def _command(argv: list[str], run: Path, tmp_path: Path) -> list[str]:
    if argv[0] == "train":
        return [*argv, str(run)]
    if argv[0] == "sample":
        return [*argv, "--out", str(tmp_path / "s.png"), str(run)]
    return [*argv, str(run)]


def _refused_in_one_line(argv: list[str], capsys, pattern: str) -> None:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("genmodels: error: "), err
    import re

    assert re.search(pattern, err), err


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_run_file_is_refused_in_one_line_and_nothing_is_rewritten(pristine_run, tmp_path, capsys, name):
    craft, argv, pattern = CRAFTED[name]
    run = tmp_path / "run"
    shutil.copytree(pristine_run, run)
    craft(run)
    before = snapshot(run)
    _refused_in_one_line(_command(argv, run, tmp_path), capsys, pattern)
    assert snapshot(run) == before
    assert not (tmp_path / "s.png").exists()


def _refused_without_blocking(argv: list[str], capsys) -> str:
    """Run the CLI in a thread: a read that blocks (a FIFO) or never ends (/dev/zero) leaves the
    thread alive after the join, and the test fails instead of hanging."""
    capsys.readouterr()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(code=main(argv)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the command blocked on a special file"
    assert outcome["code"] == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("special", ["fifo", "dev-zero"])
@pytest.mark.parametrize("where", ["checkpoint.json", "best.json", "model.safetensors"])
def test_a_fifo_or_a_link_to_dev_zero_is_refused_without_blocking(pristine_run, tmp_path, capsys, special, where):
    run = tmp_path / "run"
    shutil.copytree(pristine_run, run)
    best = json.loads((run / "checkpoints" / "best.json").read_text())["checkpoint"]
    target = run / "checkpoints" / ("best.json" if where == "best.json" else f"{best}/{where}")
    target.unlink()
    if special == "fifo":
        os.mkfifo(target)
    else:
        target.symlink_to("/dev/zero")
    kind = "a FIFO (named pipe)" if special == "fifo" else "a character device"
    before = snapshot(run)
    err = _refused_without_blocking(["eval", "--examples", "2", str(run)], capsys)
    assert f"{target} is {kind}, not a regular file" in err
    assert snapshot(run) == before


@pytest.mark.parametrize("special", ["fifo", "dev-zero"])
def test_a_resume_from_checkpoints_whose_json_is_special_is_refused_without_blocking(pristine_run, tmp_path, capsys, special):
    run = tmp_path / "run"
    shutil.copytree(pristine_run, run)
    for folder in list_checkpoints(run):
        (folder / "checkpoint.json").unlink()
        if special == "fifo":
            os.mkfifo(folder / "checkpoint.json")
        else:
            (folder / "checkpoint.json").symlink_to("/dev/zero")
    before = snapshot(run)
    err = _refused_without_blocking([*RESUME, str(run)], capsys)
    assert "--resume: no intact checkpoint in" in err and "not a regular file" in err
    assert snapshot(run) == before


def test_a_metrics_csv_fifo_stops_a_resume_before_anything_is_written(pristine_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(pristine_run, run)
    (run / "metrics.csv").unlink()
    os.mkfifo(run / "metrics.csv")
    before = snapshot(run)
    err = _refused_without_blocking([*RESUME, str(run)], capsys)
    assert "metrics.csv is a FIFO (named pipe), not a regular file" in err
    assert snapshot(run) == before


def test_json_is_bounded_in_depth_and_size(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(_deep(64))
    assert load_json_bounded(path, "fix") == json.loads(_deep(64))  # 64 levels: accepted
    path.write_text(_deep(65))
    with pytest.raises(UserError, match=r"x\.json is JSON nested deeper than 64 levels; fix$"):
        load_json_bounded(path, "fix")
    path.write_text(_deep(1_000_000))  # the parser's own recursion limit: still one line
    with pytest.raises(UserError, match="nested deeper"):
        read_json(path)
    path.write_text('{"a": 1}')
    with pytest.raises(UserError, match=r"x\.json is 8 bytes, more than the 4 a genmodels run file may hold; fix$"):
        load_json_bounded(path, "fix", limit=4)
    assert load_json_bounded(path, "fix") == {"a": 1}


def test_pruning_unlinks_a_symlinked_checkpoint_and_never_follows_it(digits, tmp_path):
    """A checkpoint folder that is a link to a folder elsewhere: pruning removes the link only."""
    run = tmp_path / "run"
    config = TrainConfig(steps=2, eval_every=1, batch_size=64, num_samples=4, keep_checkpoints=1, select_by="latest")
    train("fvsbn", digits, config, run, progress=False)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(list_checkpoints(run)[-1], elsewhere / "step-000000001")
    (elsewhere / "keep.txt").write_text("not the run's")
    link = run / "checkpoints" / "step-000000001"
    link.symlink_to(elsewhere / "step-000000001", target_is_directory=True)
    remove_checkpoint(link)
    assert not os.path.lexists(link) and (elsewhere / "step-000000001" / "checkpoint.json").is_file()
    link.symlink_to(elsewhere / "step-000000001", target_is_directory=True)  # now pruned by a resumed run
    train("fvsbn", digits, TrainConfig(steps=4, eval_every=1, batch_size=64, num_samples=4, keep_checkpoints=1,
                                       select_by="latest"), run, resume=True, progress=False)
    assert not os.path.lexists(link) and (elsewhere / "step-000000001" / "checkpoint.json").is_file()
    assert (elsewhere / "keep.txt").read_text() == "not the run's"


# --- disk full -------------------------------------------------------------------------------------
def _full_disk_after(writes: int):
    """A safetensors writer that fails with ENOSPC after ``writes`` files, as a full disk would."""
    import genmodels.checkpoint as checkpoint

    real, done = checkpoint.save_file, []

    def save_file_or_fail(tensors, path, metadata=None):
        if len(done) >= writes:
            with open(path, "wb") as handle:
                handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        done.append(path)
        return real(tensors, path, metadata=metadata)

    return save_file_or_fail


@pytest.mark.parametrize("writes", [0, 1])
def test_a_full_disk_is_one_line_removes_the_partial_folder_and_keeps_earlier_checkpoints(digits, tmp_path, capsys,
                                                                                          monkeypatch, writes):
    import genmodels.checkpoint as checkpoint

    run = tmp_path / "run"
    assert main(["train", "fvsbn", "--data", "digits", "--steps", "2", "--eval-every", "2", "--batch-size", "64",
                 "--num-samples", "4", "--out", str(run)]) == 0
    before = {p.name: snapshot(p) for p in list_checkpoints(run)}
    monkeypatch.setattr(checkpoint, "save_file", _full_disk_after(writes))
    capsys.readouterr()
    assert main([*RESUME[:5], "4", "--resume", "--out", str(run)]) == 2
    err = capsys.readouterr().err  # the training log's lines, then the error's one line
    assert "Traceback" not in err and err.count("genmodels: error: ") == 1, err
    err = err.strip().splitlines()[-1]
    assert f"no space left on the device of {run / 'checkpoints'}: writing needs about" in err
    assert "continue with --resume" in err
    assert not list((run / "checkpoints").glob(".tmp-*"))
    assert {p.name: snapshot(p) for p in list_checkpoints(run)} == before


def test_a_safetensors_error_for_a_full_disk_is_recognised(tmp_path, monkeypatch):
    import genmodels.checkpoint as checkpoint
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(UserError, match=r"^no space left on the device of .*: writing needs about 0\.1 MB"):
        save_checkpoint(tmp_path / "checkpoints" / "step-000000001", model_state={"w": torch.zeros(3)}, meta={})
    assert list((tmp_path / "checkpoints").iterdir()) == []


def test_a_full_disk_while_replacing_json_leaves_the_old_file(tmp_path, monkeypatch):
    from genmodels.checkpoint import write_json_atomic

    path = tmp_path / "best.json"
    write_json_atomic(path, {"checkpoint": "step-000000001"})
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "w" in mode:
            handle.close()
            raise OSError(errno.ENOSPC, "No space left on device")
        return handle

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(UserError, match="no space left on the device of"):
        write_json_atomic(path, {"checkpoint": "step-000000002"})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"checkpoint": "step-000000001"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.json"]


# --- trackers --------------------------------------------------------------------------------------
def test_a_tracker_that_is_not_installed_is_refused_with_the_pip_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("tensorboard", "tensorboardX") else real(name, *a))
    run = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", "fvsbn", "--data", "digits", "--steps", "2", "--log-with", "tensorboard", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err == ("genmodels: error: --log-with tensorboard: the tensorboard package is not installed; install it with "
                   "`pip install 'genmodels[tensorboard]'` (or `pip install tensorboard`), or drop --log-with\n")
    assert not run.exists()


def test_a_resume_on_other_data_names_what_differs(digits, tmp_path):
    import dataclasses

    from genmodels.data.base import Dataset

    run = tmp_path / "run"
    train("fvsbn", digits, TrainConfig(steps=1, eval_every=1, batch_size=64, num_samples=4), run, progress=False)
    other = Dataset(dataclasses.replace(digits.spec, levels=16), digits.train, digits.validation, digits.test,
                    source=digits.source)
    with pytest.raises(UserError, match=r"was trained on other data \(levels 17 → 16\)"):
        train("fvsbn", other, None, run, resume=True, progress=False)


def test_a_full_disk_while_appending_metrics_is_one_line(tmp_path, monkeypatch):
    from genmodels.training.rundir import RunDir

    run = RunDir(tmp_path, is_main=True)
    run.prepare({"model": "m"}, {"command": ["first"]}, None)
    real_open = open

    def full_open(file, mode="r", *args, **kwargs):
        if "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full_open)
    where = {"step": 1, "epoch": 0, "examples": 8, "seconds": 0.5}
    with pytest.raises(UserError, match=r"^no space left on the device of .* to append to metrics\.csv; .* resume=True$"):
        run.write_metrics([("train", "loss", 1.0)], where)
