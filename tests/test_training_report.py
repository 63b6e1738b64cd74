"""The run folder (training/rundir.py) and the end-of-run report (training/report.py), part by part,
with values where a right and a wrong version disagree: each test kills mutants that survived the
training tests (docs/MUTATION.md). No training loop; all run in about a second."""

from __future__ import annotations

import csv
import json
import os
import pathlib
import sys

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genmodels import __version__
from genmodels.checkpoint import MODEL_FILE, checkpoint_name, save_checkpoint
from genmodels.core import GenerativeModel, LikelihoodKind, ModelConfig
from genmodels.data import DataSpec
from genmodels.errors import UserError
from genmodels.evaluate import LikelihoodRecord
from genmodels.training import report, rundir
from genmodels.training.rundir import METRIC_COLUMNS, RunDir, check_run_dir, invocation_record, resume_checkpoint

# --- rundir: where a run may go, and which checkpoint a resume takes ------------------------------


def _checkpoint(run_dir, step):
    return save_checkpoint(run_dir / "checkpoints" / checkpoint_name(step), model_state={"w": torch.full((3,), float(step))},
                           meta={"step": step})


def _at(run_dir, step):
    return run_dir / "checkpoints" / checkpoint_name(step)


def _damage(folder):
    data = bytearray((folder / MODEL_FILE).read_bytes())
    data[-1] ^= 0xFF  # the last byte of the tensor data: still a readable file, the wrong SHA-256
    (folder / MODEL_FILE).write_bytes(bytes(data))


def test_a_new_run_needs_a_new_or_empty_folder(tmp_path):
    assert check_run_dir(tmp_path / "new", resume=False) is None
    (tmp_path / "empty").mkdir()
    assert check_run_dir(tmp_path / "empty", resume=False) is None
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match=r"^run_dir=.*file is a file, not a folder; choose a new folder for the run$"):
        check_run_dir(tmp_path / "file", resume=False)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"used already holds files; pass resume=True to continue that run, or run_dir=a new "
                                        r"folder \(nothing is overwritten\)$"):
        check_run_dir(tmp_path / "used", resume=False)
    _checkpoint(tmp_path / "used", 3)
    with pytest.raises(UserError, match=r"used already holds checkpoints; pass resume=True"):
        check_run_dir(tmp_path / "used", resume=False)
    assert check_run_dir(tmp_path / "used", resume=True) == _at(tmp_path / "used", 3)
    # Nothing trained yet: --resume starts the run from the beginning (tests/test_restart.py).
    assert check_run_dir(tmp_path / "empty", resume=True) is None
    assert check_run_dir(tmp_path / "new", resume=True) is None


def test_resume_takes_the_newest_intact_checkpoint_and_moves_damaged_ones_aside(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RANK", raising=False)
    for step in (1, 2, 3):
        _checkpoint(tmp_path, step)
    leftover = tmp_path / "checkpoints" / ".tmp-step-4-123"
    leftover.mkdir()
    (leftover / "half.bin").write_text("x")
    other = tmp_path / "checkpoints" / "keep.tmp-step-5"  # not a temporary checkpoint folder
    other.mkdir()
    stuck = tmp_path / "checkpoints" / ".tmp-step-6-9"  # cannot be removed as a folder: left, no error
    stuck.write_text("x")
    assert resume_checkpoint(tmp_path) == _at(tmp_path, 3)
    assert not leftover.exists() and other.exists()
    _damage(_at(tmp_path, 3))
    older_copy = tmp_path / "checkpoints" / f"damaged-{checkpoint_name(3)}"
    older_copy.mkdir()
    (older_copy / "old.txt").write_text("an older damaged copy of step 3")
    assert resume_checkpoint(str(tmp_path)) == _at(tmp_path, 2)  # a str path too
    assert not (_at(tmp_path, 3)).exists()
    assert sorted(p.name for p in older_copy.iterdir()) == sorted(p.name for p in (_at(tmp_path, 2)).iterdir())
    err = capsys.readouterr().err
    assert err.startswith(f"genmodels: {checkpoint_name(3)} is damaged (") and err.endswith(
        f"); moved it to damaged-{checkpoint_name(3)} and resume from the previous intact checkpoint\n")
    assert "does not match the SHA-256" in err and err.count("\n") == 1
    for step in (1, 2):
        _damage(_at(tmp_path, step))
    with pytest.raises(UserError, match=r"^resume=True: no intact checkpoint in .*checkpoints; start a new run$"):
        resume_checkpoint(tmp_path)


def test_only_the_first_process_changes_the_folder_but_every_process_picks_the_same(tmp_path, monkeypatch, capsys):
    for step in (1, 2):
        _checkpoint(tmp_path, step)
    _damage(_at(tmp_path, 2))
    leftover = tmp_path / "checkpoints" / ".tmp-step-3-7"
    leftover.mkdir()
    monkeypatch.setenv("RANK", "1")
    assert resume_checkpoint(tmp_path) == _at(tmp_path, 1)
    assert leftover.exists() and (_at(tmp_path, 2)).exists() and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert resume_checkpoint(tmp_path) == _at(tmp_path, 1)
    assert not leftover.exists() and (tmp_path / "checkpoints" / f"damaged-{checkpoint_name(2)}").exists()


# --- rundir: run.json and metrics.csv ---------------------------------------------------------------

WHERE = {"step": 4, "epoch": 1, "examples": 64, "seconds": 2.71828}


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_a_new_run_writes_its_description_and_metrics_rows(tmp_path):
    run = RunDir(tmp_path / "a" / "run", is_main=True)
    assert (run.metrics, run.run_json) == (tmp_path / "a" / "run" / "metrics.csv", tmp_path / "a" / "run" / "run.json")
    run.prepare({"model": "m"}, {"command": ["x"]}, None)
    assert json.loads(run.run_json.read_text()) == {"model": "m", "command": ["x"]}
    run.write_metrics([("train", "loss", 0.1), ("validation", "nll", torch.tensor(2.5))], WHERE)
    run.write_metrics([], WHERE)
    assert _rows(run.metrics) == [METRIC_COLUMNS, ["4", "1", "64", "2.718", "train", "loss", "0.1"],
                                  ["4", "1", "64", "2.718", "validation", "nll", "2.5"]]
    run.prepare({"model": "m"}, {"command": ["y"]}, None)  # a fresh start keeps the rows already there
    assert len(_rows(run.metrics)) == 3
    assert METRIC_COLUMNS == ["step", "epoch", "examples", "seconds", "split", "metric", "value"]


def test_a_resumed_run_drops_later_rows_and_test_rows_and_appends_its_invocation(tmp_path):
    run = RunDir(tmp_path, is_main=True)
    run.prepare({"model": "m"}, {"command": ["first"]}, None)
    for step, split in ((2, "train"), (3, "validation"), (3, "test"), (4, "train")):
        run.write_metrics([(split, "x", float(step))], {**WHERE, "step": step})
    run.prepare({"model": "changed"}, {"command": ["second"]}, 3)
    assert [(r[0], r[4]) for r in _rows(run.metrics)] == [("step", "split"), ("2", "train"), ("3", "validation")]
    assert not list(tmp_path.glob("*.tmp"))
    record = json.loads(run.run_json.read_text())
    assert record == {"model": "m", "command": ["first"], "resumed": [{"command": ["second"], "from_step": 3}]}
    run.prepare({}, {"command": ["third"]}, 2)
    assert [r["from_step"] for r in json.loads(run.run_json.read_text())["resumed"]] == [3, 2]


def test_a_resumed_run_without_its_files_starts_them(tmp_path):
    run = RunDir(tmp_path / "r", is_main=True)
    run.prepare({"model": "m"}, {"command": ["c"]}, 5)
    assert _rows(run.metrics) == [METRIC_COLUMNS]
    assert json.loads(run.run_json.read_text()) == {"model": "m", "command": ["c"]}


def test_other_processes_write_nothing(tmp_path):
    run = RunDir(tmp_path / "r", is_main=False)
    run.prepare({"model": "m"}, {}, None)
    run.write_metrics([("train", "loss", 1.0)], WHERE)
    assert not (tmp_path / "r").exists()


def test_metrics_csv_is_always_opened_with_newline_empty_as_the_csv_module_requires(tmp_path, monkeypatch):
    """The csv module's rule (its docs: open with newline=''): on Linux a missing one changes no byte,
    on Windows it writes every row as \\r\\r\\n; so the opens themselves are checked."""
    opened = []

    def spy(file, mode="r", **kwargs):
        opened.append((os.path.basename(file), mode, kwargs.get("newline", "(not given)")))
        return open(file, mode, **kwargs)

    monkeypatch.setattr(rundir, "open", spy, raising=False)
    run = RunDir(tmp_path, is_main=True)
    run.prepare({"model": "m"}, {"command": ["first"]}, None)
    run.write_metrics([("train", "loss", 1.0)], WHERE)
    run.prepare({"model": "m"}, {"command": ["second"]}, 4)
    assert opened == [("metrics.csv", "w", ""), ("metrics.csv", "a", ""), ("metrics.csv", "r", ""),
                      ("metrics.csv.tmp", "w", "")]


def test_a_resume_killed_while_it_rewrites_metrics_csv_leaves_nothing_remove_leftovers_misses(tmp_path, monkeypatch):
    run = RunDir(tmp_path, is_main=True)
    run.prepare({"model": "m"}, {"command": ["first"]}, None)
    run.write_metrics([("train", "loss", 1.0)], WHERE)

    def killed(self, target):
        raise KeyboardInterrupt  # the process dies before the rewritten file takes metrics.csv's place

    with monkeypatch.context() as patch:
        patch.setattr(pathlib.Path, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            run.prepare({"model": "m"}, {"command": ["second"]}, 4)
    rundir.remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.csv", "run.json"]


def test_remove_leftovers_removes_what_a_killed_process_leaves_and_nothing_else(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / ".tmp-step-4-77").mkdir(parents=True)  # save_checkpoint's temporary folder
    (checkpoints / ".tmp-step-4-77" / "model.safetensors").write_text("half")
    leftovers = [tmp_path / ".run.json.tmp-123", checkpoints / ".best.json.tmp-9", tmp_path / "metrics.csv.tmp"]
    kept = [tmp_path / "run.json", tmp_path / "metrics.csv", checkpoints / "best.json", checkpoints / "notes.tmp-1",
            tmp_path / ".hidden"]
    for path in leftovers + kept:
        path.write_text("x")
    rundir.remove_leftovers(tmp_path)
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["best.json", "notes.tmp-1"]


def test_a_resume_drops_partial_metrics_rows_a_killed_process_left(tmp_path):
    run = RunDir(tmp_path, is_main=True)
    good = "2,1,64,1.000,train,loss,0.5"
    rows = [good, "3,1,64,1.000,train,loss,0.5,7", "3,1,64,1.000,train,loss,", "3,1,64,1.000,train,loss,0.x",
            "3,1,64,1.000,train,lo", "x,1,64,1.000,train,loss,0.5", "4,,64,1.000,train,loss,0.5"]
    run.metrics.write_text("\r\n".join([",".join(METRIC_COLUMNS)] + rows) + "\r\n")
    run.prepare({"model": "m"}, {"command": ["again"]}, 5)
    assert _rows(run.metrics) == [METRIC_COLUMNS, good.split(",")]


def test_the_invocation_record(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["genmodels", "train", "m"])
    record = invocation_record({"steps": 3}, "cpu", 2, seed=5)
    assert record == {
        "command": ["genmodels", "train", "m"], "train_config": {"steps": 3},
        "versions": {"genmodels": __version__, "torch": torch.__version__, "python": rundir.platform.python_version()},
        "device": "cpu", "processes": 2, "seed": 5,
    }


# --- report: samples, titles, curves, the Markdown table ------------------------------------------


class Drawn(GenerativeModel):
    Config = ModelConfig
    likelihood_kind = LikelihoodKind.NONE

    def __init__(self):
        super().__init__(ModelConfig(), DataSpec("t", (4,), 2))
        self.w = nn.Parameter(torch.zeros(1))
        self.calls = []

    def sample(self, n, *, y=None, generator=None, temperature: float = 1.0, steps: int = 2):
        self.calls.append({"y": y, "temperature": temperature, "steps": steps})
        return torch.rand(n, 4, generator=generator)

    def sample_with_info(self, n, **options):
        return self.sample(n, **options), {"nfe": 3 * options.get("steps", 2)}


def test_draw_samples_parses_the_options_seeds_the_draw_and_reports_it():
    model = Drawn()
    samples, info = report.draw_samples(model, 2, seed=7, options={"temperature": "0.5", "steps": "4"}, y="label")
    assert torch.equal(samples, torch.rand(2, 4, generator=torch.Generator().manual_seed(7)))
    assert model.calls == [{"y": "label", "temperature": 0.5, "steps": 4}]
    assert info["options"] == {"temperature": "0.5", "steps": "4"} and info["nfe"] == 12
    assert list(info) == ["options", "nfe", "seconds"] and 0 <= info["seconds"] < 60
    samples, info = report.draw_samples(model, 1, seed=8)
    assert info["options"] == {} and model.calls[-1] == {"y": None, "temperature": 1.0, "steps": 2}
    assert report.sampling_options(model, {"steps": "9"}) == {"steps": 9}
    with pytest.raises(UserError, match=r"no sampling option 'generator'; its sampling options: temperature, steps"):
        report.sampling_options(model, {"generator": "1"})


def test_a_sample_title_says_what_the_grid_shows():
    info = {"options": {"solver": "heun", "steps": "10"}, "nfe": 19, "seconds": 1.5}
    assert report.sample_title("ddpm", "digits", 300, info) == "ddpm on digits · step 300 · solver=heun, steps=10 · nfe 19"
    assert report.sample_title("m", "d", None, {"seconds": 0.1}) == "m on d"
    assert report.sample_title("m", "d", 0, {"options": {}, "nfe": 1, "temperature": 0.5}) == "m on d · step 0 · nfe 1, temperature 0.5"


def test_a_training_curve_is_there_only_with_training_rows(tmp_path):
    run = RunDir(tmp_path, is_main=True)
    run.prepare({}, {}, None)
    run.write_metrics([("validation", "nll", 1.0), ("test", "nll", 1.0)], WHERE)
    assert not report.has_training_curve(run.metrics)
    run.write_metrics([("train", "loss", 1.0)], WHERE)
    assert report.has_training_curve(run.metrics)


def _result(model, data, test, **extra):
    return {"model": model, "data": data, "test": test, "num_parameters": 12345, "steps": 300, "best_step": 200,
            "examples_per_second": 1234.56, **extra}


def test_the_results_table_is_what_a_paper_needs():
    exact = LikelihoodRecord("nll", "exact", 40.12345, 0.98765, 0.123, 100, 64).to_json()
    iwae = LikelihoodRecord("iwae", "estimate", 41.5, None, 0.5, 100, 64, samples=64, options={"k": 64, "trace": "hutchinson"},
                            discrete=False).to_json()
    config = {"steps": 300, "epochs": None, "minutes": None, "batch_size": 64, "lr": 0.001, "seed": 0, "ema": 0.999}
    rows = [
        _result("fvsbn", "digits", [exact], train_config=config, sampling={"options": {"t": "1"}, "nfe": 64, "seconds": 9.0}),
        _result("vae", "digits", [iwae], train_config={**config, "seed": 1}, sampling={}),
        _result("gan", "digits", [], train_config=config, sampling={"seconds": 1.0}),
        {"model": "pixelcnn", "data": "moons", "skipped": "needs images"},
    ]
    assert report.results_markdown(rows) == "\n".join([
        "Training: batch_size 64, lr 0.001, seed 0, steps 300.",
        "Training: batch_size 64, lr 0.001, seed 1, steps 300.",
        "Test split; the checkpoint best on validation. NLL in nats per example ± standard error: of the discrete "
        "data where bits/dim is given, of the density on continuous data otherwise.",
        "",
        "| data | model | measure | kind | test NLL (nats) | bits/dim | params | steps (best) | train ex/s | sampling |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
        "| digits | fvsbn | nll | exact | 40.123 ± 0.12 | 0.9877 | 12,345 | 300 (200) | 1235 | t=1 · nfe 64 |",
        "| digits | vae | iwae | estimate (k=64) trace=hutchinson | 41.500 ± 0.50 | — | 12,345 | 300 (200) | 1235 | defaults |",
        "| digits | gan | — | none | — | — | 12,345 | 300 (200) | 1235 | defaults |",
        "| moons | pixelcnn | — | — | skipped: needs images | | | | | |",
    ]) + "\n"
    assert report.results_markdown([_result("m", "d", [exact])]).startswith("Test split;")  # bench rows: no config


def test_the_results_table_describes_sampling_as_the_grid_title_does():
    """Options that are off (hubness=false, a reported hubness False) are left out; each setting once."""
    exact = LikelihoodRecord("nll", "exact", 40.0, 0.9, 0.1, 100, 64).to_json()
    sampling = {"options": {"hubness": "false", "temperature": "0.8"}, "hubness": False, "temperature": 0.8, "nfe": 10,
                "seconds": 2.0}
    line = report.results_markdown([_result("vae", "digits", [exact], sampling=sampling)]).splitlines()[-1]
    assert line.endswith("| 1235 | temperature=0.8 · nfe 10 |") and "hubness" not in line
    assert report.sample_title("vae", "digits", 200, sampling) == "vae on digits · step 200 · temperature=0.8 · nfe 10"


# --- report: the end of a run, from the best checkpoint on disk -------------------------------------

from genmodels.checkpoint import load_model  # noqa: E402
from genmodels.core import create_model  # noqa: E402
from genmodels.data.base import Dataset, Split  # noqa: E402
from genmodels.evaluate import evaluate_likelihood  # noqa: E402
from genmodels.training.config import TrainConfig  # noqa: E402
from genmodels.training.loop import Trainer  # noqa: E402


def _tiny():
    x = (torch.rand(28, 1, 2, 2, generator=torch.Generator().manual_seed(0)) < 0.3).long()
    return Dataset(DataSpec("tiny", (1, 2, 2), 2), Split(x[:16]), Split(x[16:22]), Split(x[22:]))


def _run(name, tmp_path, monkeypatch):
    drawn = {}
    save = report.save_samples

    def spy(samples, spec, path, title=None):
        drawn.update(samples=samples, title=title)
        return save(samples, spec, path, title=title)

    monkeypatch.setattr(report, "save_samples", spy)
    load = report.load_model

    def load_spy(path, **kwargs):
        drawn["load"] = kwargs
        return load(path, **kwargs)

    monkeypatch.setattr(report, "load_model", load_spy)
    data = _tiny()
    config = TrainConfig(steps=4, eval_every=2, log_every=2, batch_size=8, lr=0.05, num_samples=3, seed=11)
    trainer = Trainer(create_model(name, data.spec), data, config, tmp_path / name, progress=False)
    return trainer, trainer.fit(), data, config, drawn


def test_the_end_of_a_run_reports_the_best_checkpoint_reloaded_from_disk(tmp_path, monkeypatch):
    trainer, result, data, config, drawn = _run("fvsbn", tmp_path, monkeypatch)
    run, state = tmp_path / "fvsbn", trainer.state
    best_step = int(result.best_checkpoint.name.split("-")[1])
    model, ckpt = load_model(result.best_checkpoint)
    test = evaluate_likelihood(model, data.test, batch_size=config.eval_batch_size)
    results = json.loads((run / "results.json").read_text())
    assert (state.step, state.examples) == (4, 32) and state.seconds > 0
    assert results == {
        "model": "fvsbn", "data": "tiny", "likelihood_kind": "exact", "best_checkpoint": str(result.best_checkpoint),
        "best_step": best_step, "steps": 4, "examples_seen": 32, "train_seconds": state.seconds,
        "examples_per_second": 32 / state.seconds, "num_parameters": model.num_parameters(),
        "sampling": {"options": {}, "seconds": results["sampling"]["seconds"]},
        "validation": ckpt.meta["validation"], "test": [r.to_json() for r in test],
        "test_figures": [], "skipped_steps": 0, "rollbacks": 0,
        "test_examples": len(data.test), "test_split_size": len(data.test),
        "test_per_example": "test_log_likelihoods.safetensors",
    }
    # the per-example values behind the test figure, in the split's order (what compare pairs)
    per_example = load_file(str(run / results["test_per_example"]))
    assert list(per_example) == ["log_prob"] and per_example["log_prob"].dtype == torch.float64
    with torch.no_grad():
        direct = model.log_prob(data.test.x.long()).double()
    assert torch.allclose(per_example["log_prob"], direct, rtol=0, atol=1e-4)
    assert -per_example["log_prob"].mean().item() == pytest.approx(test[0].nll_nats, rel=1e-12)
    assert result == report.TrainResult(
        run_dir=run, best_checkpoint=result.best_checkpoint, test=test,
        validation=[LikelihoodRecord.from_json(r) for r in ckpt.meta["validation"]], test_figures=[], steps=4,
        best_step=best_step,
        train_seconds=state.seconds, examples_per_second=32 / state.seconds, num_parameters=model.num_parameters(),
        sampling=results["sampling"],
        files={"samples": run / "samples.png", "loss_curves": run / "loss_curves.png", "metrics": run / "metrics.csv",
               "per_example": run / "test_log_likelihoods.safetensors", "results": run / "results.json",
               "table": run / "results.md"},
    )
    assert all(path.is_file() for path in result.files.values())
    test_rows = [r for r in csv.DictReader(open(run / "metrics.csv")) if r["split"] == "test"]
    assert [(r["step"], r["metric"], float(r["value"])) for r in test_rows] == [
        ("4", "log_prob_nll", test[0].nll_nats), ("4", "log_prob_bpd", test[0].bits_per_dim)]
    assert (run / "results.md").read_text() == report.results_markdown([{**results, "train_config": config.to_json()}])
    expected, _ = report.draw_samples(model, 3, seed=11)
    assert torch.equal(drawn["samples"], expected)
    assert drawn["title"] == report.sample_title("fvsbn", "tiny", best_step, results["sampling"])
    assert drawn["load"] == {"device": trainer.accelerator.device}  # reloaded onto the training device


def test_a_model_fitted_in_closed_form_gets_no_loss_curves_and_says_why(tmp_path, monkeypatch, capsys):
    _, result, _, _, _ = _run("independent", tmp_path, monkeypatch)
    assert "loss_curves" not in result.files and not (tmp_path / "independent" / "loss_curves.png").exists()
    assert "independent was fitted in closed form: no training curve to draw\n" in capsys.readouterr().err
    assert result.examples_per_second == 0.0 and result.train_seconds == 0.0 and result.steps == 0


def test_the_tracker_gets_the_grid_and_curves_as_rgb_images_at_the_step(tmp_path):
    from PIL import Image

    files = {"samples": tmp_path / "s.png", "loss_curves": tmp_path / "c.png", "metrics": tmp_path / "m.csv"}
    Image.new("RGBA", (4, 3), (10, 20, 30, 128)).save(files["samples"])
    Image.new("L", (5, 2), 7).save(files["loss_curves"])
    logged = []

    class Board:
        def log_images(self, images, step, dataformats):
            logged.append(({k: (v.shape, v.dtype.name, int(v[0, 0, 1])) for k, v in images.items()}, step, dataformats))

    class Accelerator:
        trackers = [Board(), object()]  # a tracker without images is left alone

    report._log_images(Accelerator(), files, 7)
    assert logged == [({"samples": ((3, 4, 3), "uint8", 20), "loss_curves": ((2, 5, 3), "uint8", 7)}, 7, "HWC")]
    del files["loss_curves"]
    report._log_images(Accelerator(), files, 8)
    assert list(logged[-1][0]) == ["samples"]


# --- validation on a fixed head of the split ---------------------------------------------------------


def test_a_split_head_keeps_the_first_examples_their_labels_and_its_kind():
    from genmodels.data.base import DynamicBinarizedSplit

    x, y = torch.arange(10).reshape(10, 1), torch.arange(10) % 3
    head = Split(x, y).head(4)
    assert type(head) is Split and torch.equal(head.x, x[:4]) and torch.equal(head.y, y[:4])
    whole = Split(x)
    assert whole.head(None) is whole and whole.head(10) is whole and whole.head(4).y is None
    binarized = DynamicBinarizedSplit(torch.full((6, 1), 8), levels=17, seed=3)
    binarized.set_epoch(2)
    part = binarized.head(2)
    assert isinstance(part, DynamicBinarizedSplit) and len(part) == 2 and (part.levels, part.seed, part.epoch) == (17, 3, 2)
    assert torch.equal(part[1]["x"], binarized[1]["x"])  # the same bits for the same example


def test_validation_examples_limits_validation_but_never_the_test_split(tmp_path):
    data = _tiny()
    config = TrainConfig(steps=2, eval_every=1, batch_size=8, validation_examples=4, seed=0)
    result = Trainer(create_model("fvsbn", data.spec), data, config, tmp_path / "run", progress=False).fit()
    _, ckpt = load_model(result.best_checkpoint)
    assert [r["examples"] for r in ckpt.meta["validation"]] == [4]
    assert [r.examples for r in result.test] == [len(data.test)]
    with pytest.raises(UserError, match=r"^validation_examples must be ≥ 1"):
        TrainConfig(steps=1, validation_examples=0)


def test_test_examples_limits_the_final_test_figures_and_the_reports_say_so(tmp_path):
    data = _tiny()
    config = TrainConfig(steps=2, eval_every=1, batch_size=8, test_examples=3, seed=0)
    result = Trainer(create_model("fvsbn", data.spec), data, config, tmp_path / "run", progress=False).fit()
    assert [r.examples for r in result.test] == [3] and len(data.test) > 3
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["test_examples"], results["test_split_size"]) == (3, len(data.test))
    # the figure is the mean over exactly those examples: the same as evaluating the head directly
    model, _ = load_model(result.best_checkpoint)
    direct = evaluate_likelihood(model, data.test.head(3), options={})
    assert results["test"][0]["nll_nats"] == pytest.approx(direct[0].nll_nats, rel=1e-6)
    assert f"first 3 of {len(data.test)} test examples" in (tmp_path / "run" / "results.md").read_text()
    with pytest.raises(UserError, match=r"^test_examples must be ≥ 1"):
        TrainConfig(steps=1, test_examples=0)

def test_the_results_table_with_epochs_minutes_two_options_a_skip_first_and_other_figures():
    from genmodels.evaluate import FigureRecord

    iwae = LikelihoodRecord("iwae", "estimate", 41.5, None, 0.5, 100, 64, samples=64, options={"k": 64, "draws": 2},
                            discrete=False).to_json()
    config = {"steps": None, "epochs": 2.5, "minutes": 10, "batch_size": 64, "lr": 0.001, "seed": 0}
    figures = [FigureRecord("mse", 0.012345, 0.00067, 100).to_json(), FigureRecord("psnr", 31.5, 0.25, 100).to_json()]
    rows = [{"model": "pixelcnn", "data": "moons", "skipped": "needs images"},
            _result("vqvae", "digits", [iwae], train_config=config, sampling={}, test_figures=figures)]
    lines = report.results_markdown(rows).splitlines()
    assert lines[0] == "Training: batch_size 64, epochs 2.5, lr 0.001, minutes 10, seed 0."
    assert lines[5:] == [
        "| moons | pixelcnn | — | — | skipped: needs images | | | | | |",
        "| digits | vqvae | iwae | estimate (k=64) draws=2 | 41.500 ± 0.50 | — | 12,345 | 300 (200) | 1235 | defaults |",
        "",
        "Other test figures (not likelihoods), mean ± standard error per example:",
        "",
        "| data | model | figure | test value | examples |",
        "|---|---|---|---:|---:|",
        "| digits | vqvae | mse | 0.0123 ± 0.00067 | 100 |",
        "| digits | vqvae | psnr | 31.5000 ± 0.25 | 100 |",
    ]


def test_unknown_likelihood_and_sampling_options_are_refused_naming_the_model():
    class Named(Drawn):
        name = "tiny"

    model = Named()
    with pytest.raises(UserError) as err:
        report.likelihood_options(model, {"nope": "1"})
    assert str(err.value).startswith("model 'tiny' has no likelihood option 'nope'; its likelihood options: ")
    with pytest.raises(UserError) as err:
        report.sampling_options(model, {"nope": "1"})
    assert str(err.value).startswith("model 'tiny' has no sampling option 'nope'; its sampling options: ")


def test_the_end_of_a_run_passes_its_settings_to_the_test_evaluation_the_draw_and_the_tracker(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed: pip install -e '.[tensorboard]'")
    calls = {}
    for name in ("per_example_likelihoods", "evaluate_figures", "draw_samples", "_log_images"):
        def spy(*args, _name=name, _real=getattr(report, name), **kwargs):
            calls.setdefault(_name, []).append((args, kwargs))
            return _real(*args, **kwargs)

        monkeypatch.setattr(report, name, spy)
    data = _tiny()
    config = TrainConfig(steps=2, eval_every=2, log_every=2, batch_size=8, lr=0.05, num_samples=2, seed=11,
                         eval_batch_size=5, log_with="tensorboard")
    trainer = Trainer(create_model("fvsbn", data.spec), data, config, tmp_path / "r", progress=False)
    logged, log = [], trainer.accelerator.log
    monkeypatch.setattr(trainer.accelerator, "log",
                        lambda values, step=None, **kw: (logged.append((dict(values), step)), log(values, step=step, **kw))[1])
    result = trainer.fit()
    best_step = int(result.best_checkpoint.name.split("-")[1])
    ((args, kwargs),) = calls["per_example_likelihoods"]
    assert args[1] is data.test and (kwargs["batch_size"], kwargs["options"]) == (5, {})
    ((args, kwargs),) = calls["evaluate_figures"]
    assert args[1] is data.test and kwargs["batch_size"] == 5
    ((args, kwargs),) = calls["draw_samples"]
    assert (kwargs["seed"], kwargs["options"]) == (11, config.sample_options) and config.sample_options is not None
    tested = [(sorted(values), step) for values, step in logged if any(k.startswith("test/") for k in values)]
    assert tested == [(["test/log_prob_bpd", "test/log_prob_nll"], 2)]
    assert logged[-1][0]["test/log_prob_nll"] == result.test[0].nll_nats
    ((args, kwargs),) = calls["_log_images"]
    assert args[0] is trainer.accelerator and sorted(args[1]) == sorted(result.files) and args[2] == best_step
