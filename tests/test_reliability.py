"""Reliability: the non-finite guard (a NaN/inf step is skipped, repeated ones roll back to the last
good checkpoint, persistent ones stop with one line), SIGKILL at random moments with resume, and
corrupted checkpoints refused with a clear error."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from genmodels.checkpoint import list_checkpoints, load_model, read_checkpoint, verify_checkpoint
from genmodels.core import GenerativeModel, LikelihoodKind, Loss, ModelConfig
from genmodels.errors import UserError
from genmodels.training import TrainConfig, TrainingDiverged, train

from .toy_models import registered

SRC = Path(__file__).resolve().parents[1] / "src"


class Logits(GenerativeModel):
    """Per-pixel categoricals; the loss is NaN at the steps in ``nan_steps`` (every step from
    ``nan_from`` on), and the reference run leaves out the update of the steps in ``skip_steps``."""

    Config = ModelConfig
    likelihood_kind = LikelihoodKind.EXACT
    nan_steps: frozenset = frozenset()
    nan_from: int | None = None
    skip_steps: frozenset = frozenset()

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.logits = nn.Parameter(0.1 * torch.randn(spec.dims, spec.levels))

    def log_prob(self, x, y=None):
        log_p = torch.log_softmax(self.logits, 1)  # (D, K)
        return log_p.gather(1, x.reshape(len(x), -1).T).sum(0)

    def loss(self, batch, *, step=0, group="model"):
        out = super().loss(batch, step=step, group=group)
        if step in self.nan_steps or (self.nan_from is not None and step >= self.nan_from):
            return Loss(out.loss * float("nan"), out.terms)
        return out

    def training_step(self, batch, step, groups, forward):
        if step in self.skip_steps:
            return iter(())  # no group steps: the update of this batch is left out
        return super().training_step(batch, step, groups, forward)

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        probs = torch.softmax(self.logits, 1)
        return torch.multinomial(probs, n, replacement=True, generator=generator).T.reshape(n, *self.spec.shape)


def _variant(**attributes) -> type[Logits]:
    return type("LogitsUnderTest", (Logits,), attributes)


def _config(**overrides) -> TrainConfig:
    settings = dict(steps=12, eval_every=6, log_every=2, batch_size=64, lr=3e-2, num_samples=4, keep_checkpoints=10)
    return TrainConfig(**{**settings, **overrides})


def _fit(digits, run: Path, cls: type[Logits], **config):
    with registered("logits", cls):
        return train("logits", digits, _config(**config), run, progress=False)


def _weights(checkpoint: Path, file: str = "model.safetensors") -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_file(checkpoint / file).items()}


def _state(checkpoint: Path) -> dict:
    return read_checkpoint(checkpoint, with_trainer_state=True).trainer_state


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _optimizer_tensors(trainer_state: dict) -> list[torch.Tensor]:
    state = trainer_state["optimizers"]["model"]["state"]
    return [t for entry in state.values() for t in entry.values()]


# --- the non-finite guard -------------------------------------------------------------------------
def test_a_nan_step_is_skipped_exactly_as_a_step_without_that_update(digits, tmp_path):
    """One NaN loss at step 4: no optimizer step, no EMA update, the loss not logged; the weights and
    the optimizer state then equal those of a run that left out step 4's update."""
    result = _fit(digits, tmp_path / "nan", _variant(nan_steps=frozenset({4})), ema_decay=0.9)
    _fit(digits, tmp_path / "ref", _variant(skip_steps=frozenset({4})), ema_decay=0.9)
    nan, ref = list_checkpoints(tmp_path / "nan")[-1], list_checkpoints(tmp_path / "ref")[-1]
    assert result.steps == 12 and nan.name == ref.name == "step-000000012"
    assert _same(_weights(nan), _weights(ref))
    assert all(torch.equal(a, b) for a, b in zip(_optimizer_tensors(_state(nan)), _optimizer_tensors(_state(ref))))
    state = _state(nan)["state"]
    assert state["skipped_steps"] == 1 and state["nan_streak"] == 0 and state["rollbacks"] == 0
    assert state["ema_updates"] == 11 and _state(ref)["state"]["ema_updates"] == 12  # the EMA skipped it too
    # The step moved something in an untouched run (so the equality above means something).
    _fit(digits, tmp_path / "plain", _variant())
    assert not _same(_weights(list_checkpoints(tmp_path / "plain")[-1]), _weights(ref))
    rows = list(csv.DictReader(open(tmp_path / "nan" / "metrics.csv")))
    losses = [float(r["value"]) for r in rows if r["split"] == "train" and r["metric"] == "loss"]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)


class TwoGroups(Logits):
    """Logits plus a shift in a second optimizer group "b", whose loss alone is NaN at ``nan_steps``;
    the reference run steps only group "a" at ``skip_steps``."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.shift = nn.Parameter(torch.zeros(spec.levels))

    def optimizer_groups(self):
        return {"a": [self.logits], "b": [self.shift]}

    def log_prob(self, x, y=None):
        log_p = torch.log_softmax(self.logits + self.shift, 1)
        return log_p.gather(1, x.reshape(len(x), -1).T).sum(0)

    def loss(self, batch, *, step=0, group="model"):
        nll = -self.log_prob(batch.x)
        loss = nll.mean() * (float("nan") if group == "b" and step in self.nan_steps else 1.0)
        return Loss(loss, {"nll": nll})

    def training_step(self, batch, step, groups, forward):
        for group in groups:
            if group == "b" and step in self.skip_steps:
                return
            yield group, forward(batch, step=step, group=group)


def test_a_nan_in_one_group_skips_that_group_and_the_ema_only(digits, tmp_path):
    with registered("two-groups", type("B", (TwoGroups,), {"nan_steps": frozenset({3})})):
        train("two-groups", digits, _config(steps=6, ema_decay=0.9), tmp_path / "nan", progress=False)
    with registered("two-groups", type("B", (TwoGroups,), {"skip_steps": frozenset({3})})):
        train("two-groups", digits, _config(steps=6, ema_decay=0.9), tmp_path / "ref", progress=False)
    nan, ref = list_checkpoints(tmp_path / "nan")[-1], list_checkpoints(tmp_path / "ref")[-1]
    assert _same(_weights(nan), _weights(ref))  # group a stepped at step 3, group b did not
    state = _state(nan)["state"]
    assert state["skipped_steps"] == 1 and state["ema_updates"] == 5 and _state(ref)["state"]["ema_updates"] == 6


def test_repeated_nan_steps_roll_back_to_the_last_good_checkpoint(digits, tmp_path):
    """NaN at steps 12, 13, 14 (tolerance 3): after the third, model, optimizer and EMA are those of
    step-10 again (the checkpoint at 15 holds them), then training goes on to the end."""
    cls = _variant(nan_steps=frozenset({12, 13, 14}))
    result = _fit(digits, tmp_path / "run", cls, steps=20, eval_every=5, ema_decay=0.9)
    checkpoints = {p.name: p for p in list_checkpoints(tmp_path / "run")}
    ten, fifteen = checkpoints["step-000000010"], checkpoints["step-000000015"]
    assert _same(_weights(fifteen), _weights(ten))
    assert _same(_weights(fifteen, "ema.safetensors"), _weights(ten, "ema.safetensors"))
    assert all(torch.equal(a, b) for a, b in zip(_optimizer_tensors(_state(fifteen)), _optimizer_tensors(_state(ten))))
    state = _state(fifteen)["state"]
    assert (state["skipped_steps"], state["rollbacks"], state["good_checkpoint"]) == (3, 1, "step-000000015")
    assert state["ema_updates"] == _state(ten)["state"]["ema_updates"]
    scheduler = _state(fifteen)["schedulers"]["model"]
    assert scheduler["last_epoch"] == _state(ten)["schedulers"]["model"]["last_epoch"] == 10
    assert result.steps == 20 and not _same(_weights(checkpoints["step-000000020"]), _weights(fifteen))
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["skipped_steps"], results["rollbacks"]) == (3, 1)
    # Without a roll-back (a tolerance never reached) step 15 holds the weights after step 11.
    _fit(digits, tmp_path / "patient", cls, steps=15, eval_every=5, ema_decay=0.9, nan_tolerance=10)
    assert not _same(_weights(list_checkpoints(tmp_path / "patient")[-1]), _weights(ten))


def test_persistent_nan_stops_with_one_line_and_keeps_every_checkpoint(digits, tmp_path):
    """NaN from step 12 on: roll-backs at 14 and 17, then stop at 20 (exit status 2, one line, no
    traceback, naming the step); every checkpoint on disk is intact and loads."""
    run = tmp_path / "run"
    argv = ["train", "logits", "--steps", "30", "--eval-every", "5", "--log-every", "2", "--batch-size", "64",
            "--lr", "3e-2", "--num-samples", "4", "--keep-checkpoints", "10", "--no-progress", "--out", str(run)]
    from genmodels.cli import main

    stderr = io.StringIO()
    with registered("logits", _variant(nan_from=12)), contextlib.redirect_stderr(stderr), \
            contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
        assert code == 2
        written = list_checkpoints(run)
        assert [p.name for p in written] == [f"step-{s:09d}" for s in (0, 5, 10, 15, 20)]
        for checkpoint in written:
            verify_checkpoint(checkpoint)
            load_model(checkpoint)
    lines = [x for x in stderr.getvalue().splitlines() if x.startswith("genmodels: error")]
    assert "Traceback" not in stderr.getvalue() and len(lines) == 1, stderr.getvalue()
    assert ("was NaN or infinite at step 20 and the 2 step(s) before it, after 2 roll-back(s) to step-000000015; "
            "training stopped, every checkpoint written is intact (latest: step-000000020)") in lines[0]
    assert "--nan-tolerance" in lines[0]
    state = _state(written[-1])["state"]
    assert (state["rollbacks"], state["nan_streak"], state["good_checkpoint"]) == (2, 2, "step-000000015")
    assert _same(_weights(written[-1]), _weights(written[2]))  # rolled back twice to step 10's weights


def test_the_guard_settings_are_flags_and_are_checked():
    from genmodels.cli import build_parser

    args = build_parser(["train", "fvsbn"]).parse_args(["train", "fvsbn", "--nan-tolerance", "5", "--nan-rollbacks", "0"])
    assert (args.nan_tolerance, args.nan_rollbacks) == (5, 0)
    with pytest.raises(UserError, match="^nan_tolerance must be ≥ 0"):  # Python names the argument
        TrainConfig(steps=1, nan_tolerance=-1)


# --- SIGKILL at random moments ------------------------------------------------------------------
#: Runs ``genmodels`` commands in children forked from one process that has imported everything
#: once: each child is a whole training process (killed with SIGKILL by the test), without paying
#: Python's and torch's start-up ten times over. Protocol on stdin/stdout, one JSON line each:
#: {"argv": [...], "log": path} → {"pid": N}, then {"status": exit status (−9: SIGKILL)}.
FORK_SERVER = '''
import json, os, sys, traceback
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot
import accelerate
import torch._dynamo  # the optimizers import it on first use: seconds per process otherwise
from genmodels.cli import main
from genmodels.data import load_dataset
import genmodels.training

load_dataset("digits")
for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        log = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.dup2(log, 1)
        os.dup2(log, 2)
        try:
            code = main(job["argv"])
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"status": os.waitstatus_to_exitcode(status)}), flush=True)
'''

KILL_FLAGS = ["--eval-every", "5", "--log-every", "5", "--batch-size", "32", "--lr", "3e-3",
              "--num-samples", "4", "--keep-checkpoints", "2", "--no-progress"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _latest_train_step(metrics: Path) -> int:
    """The last training-loss step in metrics.csv as it is on disk now (-1: none yet)."""
    try:
        lines = metrics.read_text().splitlines()[1:]
    except OSError:
        return -1
    steps = []
    for line in lines:
        cells = line.split(",")
        if len(cells) == 7 and cells[4] == "train":
            with contextlib.suppress(ValueError):
                steps.append(int(cells[0]))
    return max(steps, default=-1)


def _resumes(run: Path) -> int:
    """How many resumes run.json records (-1: no run.json yet)."""
    try:
        return len(json.loads((run / "run.json").read_text()).get("resumed", []))
    except (OSError, ValueError):
        return -1


def _metric_rows(run: Path) -> list[tuple]:
    """metrics.csv without its seconds column (wall time differs between runs)."""
    with open(run / "metrics.csv", newline="") as handle:
        return [(r["step"], r["epoch"], r["examples"], r["split"], r["metric"], r["value"]) for r in csv.DictReader(handle)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the test forks its training processes")
def test_sigkill_at_random_moments_then_resume_ends_as_an_uninterrupted_run(tmp_path):
    """A run killed with SIGKILL 12 times at random moments (fixed seed) and resumed each time ends
    with every checkpoint intact, no temporary file or folder left, and the parameters, metrics,
    best checkpoint and test figures of an uninterrupted run.

    The killed processes have a budget they never reach; the last resume sets it (a budget may
    change on resume) to 20 steps past the last checkpoint, as the uninterrupted run's, so the
    test does not depend on how fast the machine trains between kills."""
    (tmp_path / "server.py").write_text(FORK_SERVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    server = subprocess.Popen([sys.executable, str(tmp_path / "server.py")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=tmp_path)

    def launch(argv: list[str], log: Path) -> int:
        server.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        server.stdin.flush()
        return json.loads(server.stdout.readline())["pid"]

    def status() -> int:
        return json.loads(server.stdout.readline())["status"]

    run, log = tmp_path / "run", tmp_path / "run.log"
    rng = random.Random(22)
    kills: list[int] = []  # the latest checkpoint's step after each kill
    try:
        while len(kills) < 12:
            resume = ["--resume"] if list_checkpoints(run) else []
            started = read_checkpoint(list_checkpoints(run)[-1]).meta["step"] if resume else -1
            pid = launch(["train", "fvsbn", "--steps", "1000000", *KILL_FLAGS, "--out", str(run), *resume], log)
            deadline = time.monotonic() + 60
            # Wait until this process trains (it has recorded its resume in run.json, which comes after
            # dropping the rows past its checkpoint from metrics.csv, and logged a training row past
            # that checkpoint), then a random delay.
            while time.monotonic() < deadline and _alive(pid) and not (
                _resumes(run) == len(kills) and _latest_train_step(run / "metrics.csv") > started
            ):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.1))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            code = status()
            assert code == -signal.SIGKILL, f"the run ended by itself ({code}) after {len(kills)} kills:\n" + log.read_text()[-3000:]
            kills.append(read_checkpoint(list_checkpoints(run)[-1]).meta["step"])
        budget = ["--steps", str(kills[-1] + 20)]
        launch(["train", "fvsbn", *budget, *KILL_FLAGS, "--out", str(run), "--resume"], log)
        assert status() == 0, log.read_text()[-3000:]
        launch(["train", "fvsbn", *budget, *KILL_FLAGS, "--out", str(tmp_path / "straight")], tmp_path / "straight.log")
        assert status() == 0, (tmp_path / "straight.log").read_text()[-3000:]
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    assert kills == sorted(kills) and kills[-1] > kills[0], kills  # progress between kills
    assert "Traceback" not in log.read_text()
    straight = tmp_path / "straight"
    # Nothing unreadable, nothing temporary, nothing moved aside.
    leftovers = [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith((".", "damaged-"))]
    leftovers += [p.name for p in run.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []
    for checkpoint in list_checkpoints(run):
        verify_checkpoint(checkpoint)
    # The same end: parameters, best checkpoint, metrics and test figures.
    assert [p.name for p in list_checkpoints(run)] == [p.name for p in list_checkpoints(straight)]
    assert _same(_weights(list_checkpoints(run)[-1]), _weights(list_checkpoints(straight)[-1]))
    assert _state(list_checkpoints(run)[-1])["rng"]["torch"].equal(_state(list_checkpoints(straight)[-1])["rng"]["torch"])
    assert json.loads((run / "checkpoints" / "best.json").read_text()) == \
        json.loads((straight / "checkpoints" / "best.json").read_text())
    assert _metric_rows(run) == _metric_rows(straight)
    results, expected = (json.loads((r / "results.json").read_text()) for r in (run, straight))
    for key in ("best_step", "steps", "examples_seen", "validation", "test"):
        assert results[key] == expected[key], key
    assert len(json.loads((run / "run.json").read_text())["resumed"]) == 12  # every killed process but the first, and the last one


# --- corrupted checkpoints ------------------------------------------------------------------------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from genmodels.checkpoint import save_checkpoint  # noqa: E402
from genmodels.core import create_model  # noqa: E402
from genmodels.data import DataSpec  # noqa: E402

SPEC = DataSpec("d", (1, 2, 3), 4)
FILES = ("model.safetensors", "ema.safetensors", "checkpoint.json")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A checkpoint with raw and EMA weights (different), and those weights."""
    torch.manual_seed(5)
    model, ema = create_model("fvsbn", SPEC), create_model("fvsbn", SPEC)
    meta = {"model": "fvsbn", "model_config": model.config.to_json(), "data": {"source": {}, "spec": SPEC.to_json()},
            "step": 7, "validation": [{"nll_nats": 1.25}]}
    path = save_checkpoint(tmp_path_factory.mktemp("pristine") / "step-000000007", model_state=model.state_dict(),
                           meta=meta, ema_state=ema.state_dict())
    return path, {k: v.clone() for k, v in model.state_dict().items()}, {k: v.clone() for k, v in ema.state_dict().items()}


def _edit_json(change):
    def damage(folder: Path) -> None:
        meta = json.loads((folder / "checkpoint.json").read_text())
        change(meta)
        (folder / "checkpoint.json").write_text(json.dumps(meta))
    return damage


def _flip(name: str, where: int):
    def damage(folder: Path) -> None:
        data = bytearray((folder / name).read_bytes())
        data[where] ^= 0x10
        (folder / name).write_bytes(bytes(data))
    return damage


def _cut(name: str, keep: float):
    def damage(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])
    return damage


DAMAGES = {
    "flipped weight": (_flip("ema.safetensors", -3), "ema.safetensors does not match the SHA-256 recorded"),
    "flipped raw weight": (_flip("model.safetensors", -3), "model.safetensors does not match the SHA-256 recorded"),
    "flipped header": (_flip("ema.safetensors", 12), r"ema\.safetensors (is corrupt|does not match)"),
    "truncated": (_cut("ema.safetensors", 0.5), r"ema\.safetensors is corrupt or truncated"),
    "zero bytes": (_cut("ema.safetensors", 0), r"ema\.safetensors is corrupt or truncated"),
    "zero-byte json": (_cut("checkpoint.json", 0), r"checkpoint\.json is corrupt"),
    "truncated json": (_cut("checkpoint.json", 0.6), r"checkpoint\.json is corrupt"),
    "json not an object": (lambda f: (f / "checkpoint.json").write_text("[1, 2]"), "not an object"),
    "another model": (_edit_json(lambda m: m.update(model="independent", model_config={})), "does not match model"),
    "another checksum": (_edit_json(lambda m: m["sha256"].update({"ema.safetensors": "0" * 64})), "does not match the SHA-256"),
    "other levels": (_edit_json(lambda m: m["data"]["spec"].update(levels=5)), r"has shape .* expects"),
    "bad levels": (_edit_json(lambda m: m["data"]["spec"].update(levels="four")), r"checkpoint\.json"),
    "no model name": (_edit_json(lambda m: m.pop("model")), r"lacks 'model'"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_a_corrupted_checkpoint_is_refused_in_one_line(pristine, tmp_path, capsys, name):
    """Flipped bytes, truncated and zero-byte files, edited JSON: a UserError naming the file, and
    `genmodels sample` exits 2 with that one line and no traceback."""
    from genmodels.cli import main

    damage, message = DAMAGES[name]
    folder = tmp_path / "step-000000007"
    shutil.copytree(pristine[0], folder)
    damage(folder)
    use_ema = name != "flipped raw weight"
    with pytest.raises(UserError, match=message):
        load_model(folder, use_ema=use_ema)
    capsys.readouterr()
    argv = ["sample", str(folder), "-n", "2", "--out", str(tmp_path / "s.png")] + ([] if use_ema else ["--no-ema"])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("genmodels: error: ")
    assert not (tmp_path / "s.png").exists()


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(file=st.sampled_from(FILES), where=st.floats(0, 1, exclude_max=True), bit=st.integers(0, 7),
       use_ema=st.booleans())
def test_a_flipped_bit_anywhere_is_refused_or_harmless(pristine, tmp_path, file, where, bit, use_ema):
    """Any single bit flipped in any file of a checkpoint: load_model raises UserError, or returns
    exactly the weights written (a flip in a validation figure changes no weight). Never wrong weights."""
    source, raw, ema = pristine
    folder = tmp_path / f"case-{file}-{where}-{bit}-{use_ema}"
    shutil.copytree(source, folder)
    data = bytearray((folder / file).read_bytes())
    data[int(where * len(data))] ^= 1 << bit
    (folder / file).write_bytes(bytes(data))
    try:
        model, _ = load_model(folder, use_ema=use_ema)
    except UserError:
        return
    finally:
        shutil.rmtree(folder)
    assert _same(model.state_dict(), ema if use_ema else raw)


# --- --num-processes, and one skip decision for all processes -----------------------------------------
RANKED_PLUGIN = '''
from dataclasses import dataclass

import torch
from torch import nn

from genmodels.core import GenerativeModel, LikelihoodKind, Loss, ModelConfig, register_model


@dataclass
class RankedConfig(ModelConfig):
    nan_step: int = -1  # at this step the loss VALUE is NaN on process 1 only; its gradient stays finite
    skip_step: int = -1  # this step's update is left out (the one-process reference)


@register_model("rankednan")
class RankedNaN(GenerativeModel):
    """Per-pixel categoricals whose loss is NaN on one process only at one step."""

    Config = RankedConfig
    likelihood_kind = LikelihoodKind.EXACT

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.logits = nn.Parameter(0.1 * torch.randn(spec.dims, spec.levels))

    def log_prob(self, x, y=None):
        return torch.log_softmax(self.logits, 1).gather(1, x.reshape(len(x), -1).T).sum(0)

    def loss(self, batch, *, step=0, group="model"):
        out = super().loss(batch, step=step, group=group)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        if step == self.config.nan_step and rank == 1:
            return Loss(out.loss + torch.tensor(float("nan")), out.terms)
        return out

    def training_step(self, batch, step, groups, forward):
        if step == self.config.skip_step:
            return iter(())
        return super().training_step(batch, step, groups, forward)

    @torch.no_grad()
    def sample(self, n, *, y=None, generator=None):
        probs = torch.softmax(self.logits, 1)
        return torch.multinomial(probs, n, replacement=True, generator=generator).T.reshape(n, *self.spec.shape)
'''


def test_num_processes_trains_as_one_process_and_skips_a_nan_of_one_process_on_all(digits, tmp_path, monkeypatch):
    """`train --num-processes 2` (2 CPU processes, gloo) with 2 × 32 examples a step equals one process
    with 64 after 8 steps, here with a loss that is NaN on process 1 alone at step 3 (its gradient
    finite): both processes skip that step, as the one process that leaves that update out."""
    import importlib

    from genmodels import core
    from genmodels.cli import main

    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "ranked_plugin.py").write_text(RANKED_PLUGIN)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), str(folder)]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        importlib.import_module("ranked_plugin")
        train("rankednan", digits, TrainConfig(steps=8, eval_every=4, lr=3e-3, num_samples=4, batch_size=64),
              tmp_path / "one", model_config={"skip_step": 3}, progress=False)
        argv = ["train", "rankednan", "--import", "ranked_plugin", "--set", "nan_step=3", "--epochs", "0.42",
                "--eval-every", "4", "--lr", "3e-3", "--num-samples", "4", "--batch-size", "32", "--no-progress",
                "--num-processes", "2", "--out", str(tmp_path / "two")]
        assert main(argv) == 0
    finally:
        core._MODELS.pop("rankednan", None)
        sys.modules.pop("ranked_plugin", None)
    one, two = list_checkpoints(tmp_path / "one")[-1], list_checkpoints(tmp_path / "two")[-1]
    assert one.name == two.name == "step-000000008"
    for key, value in _weights(one).items():
        torch.testing.assert_close(_weights(two)[key], value, rtol=1e-5, atol=1e-6)
    assert _state(two)["state"]["skipped_steps"] == 1
    record = json.loads((tmp_path / "two" / "run.json").read_text())
    assert record["processes"] == 2 and "--num-processes" not in record["command"]


def test_num_processes_is_checked():
    from genmodels.cli import build_parser

    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        build_parser(["train", "fvsbn"]).parse_args(["train", "fvsbn", "--num-processes", "0"])
