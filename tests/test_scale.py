"""Scale and reliability: data-parallel training equals one process with the same global batch,
evaluation sharded across processes equals one process, gradient accumulation equals a larger
batch, SIGTERM checkpoints and exits, checksummed checkpoints and a resume that skips a damaged one.

The multi-process checks share ONE torchrun launch (2 CPU processes, gloo) of a small driver that
runs several ``genmodels`` commands in turn; the one-process references run in this process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from genmodels import core
from genmodels.checkpoint import list_checkpoints, load_model, read_checkpoint
from genmodels.errors import UserError
from genmodels.evaluate import evaluate_likelihood
from genmodels.training import TrainConfig, train
from genmodels.training.loop import EpochSampler

SRC = Path(__file__).resolve().parents[1] / "src"

#: A two-group model with an exact likelihood (both groups step every step, the second with its
#: own learning rate and seeing the first's update) and a second, stochastic measure drawn through
#: ``batch.rand`` with a cost that varies by batch, so sharded evaluation is tested on seeds too.
PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn

    from genmodels.core import GenerativeModel, LikelihoodKind, LogLikelihood, ModelConfig, OptimizerGroup, register_model


    @register_model("duo")
    class Duo(GenerativeModel):
        """Per-pixel categoricals with logits base + shift, in two optimizer groups."""

        Config = ModelConfig
        likelihood_kind = LikelihoodKind.EXACT

        def __init__(self, config, spec):
            super().__init__(config, spec)
            self.base = nn.Parameter(0.1 * torch.randn(spec.dims, spec.levels))
            self.shift = nn.Linear(spec.levels, spec.levels)

        def optimizer_groups(self):
            return {"base": [self.base], "shift": OptimizerGroup(list(self.shift.parameters()), lr_scale=0.5)}

        def log_prob(self, x, y=None):
            log_p = torch.log_softmax(self.shift(self.base), 1)  # (D, K)
            return log_p.gather(1, x.reshape(len(x), -1).T).sum(0)

        def log_likelihoods(self, batch):
            exact = self.log_prob(batch.x)
            noise = batch.rand(3).mean(1)
            return [LogLikelihood(exact, LikelihoodKind.EXACT, "log_prob"),
                    LogLikelihood(exact - noise, LikelihoodKind.ESTIMATE, "noisy", samples=3,
                                  evaluations=len(batch) % 7, terms={"exact": exact, "noise": -noise})]

        @torch.no_grad()
        def sample(self, n, *, y=None, generator=None):
            probs = torch.softmax(self.shift(self.base), 1)
            return torch.multinomial(probs, n, replacement=True, generator=generator).T.reshape(n, *self.spec.shape)
''')

DRIVER = textwrap.dedent('''
    """Run genmodels commands in turn in each process; then record the training loader's shards."""
    import contextlib, io, json, os, sys
    import torch
    from genmodels.cli import main

    out, jobs = sys.argv[1], json.loads(sys.argv[2])
    rank = int(os.environ["RANK"])
    for i, argv in enumerate(jobs):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = main(argv)
        assert code == 0, (argv, code)
        with open(os.path.join(out, f"job{i}-rank{rank}.txt"), "w") as handle:
            handle.write(buffer.getvalue())

    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from genmodels.training.loop import train_loader

    acc = Accelerator(cpu=True)
    loader, sampler = train_loader(torch.arange(50), batch_size=4, seed=3)
    loader = acc.prepare(loader)
    seen = []
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        sampler.set_epoch(epoch)
        seen.append([batch.tolist() for batch in loader])
    shards = gather_object([seen])
    if acc.is_main_process:
        with open(os.path.join(out, "shards.json"), "w") as handle:
            json.dump(shards, handle)
''')

COMMON = ["--eval-every", "4", "--lr", "3e-3", "--num-samples", "4", "--no-progress"]


def _env(*paths):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SRC), *map(str, paths)])}


@pytest.fixture
def plugin(tmp_path):
    """The plugin module, written to a folder and imported here under its name (as --import would)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "scale_plugin.py").write_text(PLUGIN)
    spec = importlib.util.spec_from_file_location("scale_plugin", folder / "scale_plugin.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["scale_plugin"] = module
    try:
        spec.loader.exec_module(module)
        yield folder
    finally:
        core._MODELS.pop("duo", None)
        sys.modules.pop("scale_plugin", None)


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(list_checkpoints(run)[-1] / "model.safetensors")


def test_two_processes_match_one_process_with_the_same_global_batch(digits, plugin, tmp_path):
    """2 processes × 32 examples equal 1 process × 64 after 8 steps (one-group fvsbn, two-group
    duo); each process's loader shard is a distinct part of one global order; and evaluation
    sharded over 2 processes gives records identical to one process's."""
    one = TrainConfig(steps=8, eval_every=4, lr=3e-3, num_samples=4, batch_size=64)
    train("fvsbn", digits, one, tmp_path / "fvsbn-1", progress=False)
    train("duo", digits, one, tmp_path / "duo-1", progress=False)
    (tmp_path / "driver.py").write_text(DRIVER)
    out = tmp_path / "out"
    out.mkdir()
    jobs = [
        # An epoch is 1257 // 64 = 19 global steps, so 0.42 epochs are 8 steps (not 17 of 32 per process).
        ["train", "fvsbn", "--epochs", "0.42", *COMMON, "--batch-size", "32", "--out", str(tmp_path / "fvsbn-2")],
        ["train", "duo", "--import", "scale_plugin", "--steps", "8", *COMMON, "--batch-size", "32",
         "--out", str(tmp_path / "duo-2")],
        ["eval", str(tmp_path / "duo-1"), "--import", "scale_plugin", "--batch-size", "40", "--json"],
    ]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(tmp_path / "driver.py"),
         str(out), json.dumps(jobs)],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_env(plugin), timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for name in ("fvsbn", "duo"):
        single, double = _final_weights(tmp_path / f"{name}-1"), _final_weights(tmp_path / f"{name}-2")
        assert single.keys() == double.keys()
        moved = max((single[k] - load_file(list_checkpoints(tmp_path / f"{name}-1")[0] / "model.safetensors")[k]).abs().max()
                    for k in single)
        assert moved > 1e-3  # training moved the weights, so agreement below means something
        for key in single:
            torch.testing.assert_close(double[key], single[key], rtol=1e-5, atol=1e-6, msg=f"{name}: {key}")
        results = json.loads((tmp_path / f"{name}-2" / "results.json").read_text())
        assert results["steps"] == 8 and results["examples_seen"] == 8 * 64
    # Sharded evaluation (360 test examples in 9 batches of 40: blocks of 5 and 4) vs one process.
    model, _ = load_model(tmp_path / "duo-1")
    expected = [r.to_json() for r in evaluate_likelihood(model, digits.test, batch_size=40)]
    assert (out / "job2-rank1.txt").read_text() == ""  # only the first process reports
    assert json.loads((out / "job2-rank0.txt").read_text())["records"] == expected
    # Each process's loader shard: process r takes batches r, r+2, ... of the one-process order.
    shards = json.loads((out / "shards.json").read_text())
    sampler = EpochSampler(50, 3)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = list(sampler)
        batches = [order[i:i + 4] for i in range(0, 48, 4)]
        assert shards[0][epoch] == batches[0::2] and shards[1][epoch] == batches[1::2]
    assert shards[0][0] != shards[0][1]  # a new order each epoch


def _batches(split, size, count):
    from torch.utils.data import DataLoader

    from genmodels.core import Batch

    loader = iter(DataLoader(split, batch_size=size, shuffle=False))
    return [Batch.of(next(loader)) for _ in range(count)]


def test_accumulated_gradient_is_the_gradient_of_the_larger_batch(digits):
    """Four micro-batches of 16 with each loss divided by 4: the mean loss's gradient over 64."""
    from accelerate import Accelerator

    from genmodels.core import create_model
    from genmodels.training.optim import GroupSettings, accumulate_and_step

    model = create_model("fvsbn", digits.spec)
    params = list(model.parameters())
    (whole,) = _batches(digits.train, 64, 1)
    model(whole).loss.backward()
    expected = [p.grad.clone() for p in params]

    class Recorder:
        def step(self):
            self.grads = [p.grad.clone() for p in params]

    recorder = Recorder()
    settings = GroupSettings(lr=1e-3, betas=(0.9, 0.999), weight_decay=0.0, grad_clip=None, every=1, start_step=0)
    micro = _batches(digits.train, 16, 4)
    accumulate_and_step(Accelerator(cpu=True), None, model, (model(b).loss for b in micro), 4, params, recorder, settings)
    for got, want in zip(recorder.grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in params)  # zeroed after the step


def test_gradient_accumulation_trains_as_the_larger_batch(digits, tmp_path):
    common = dict(steps=6, eval_every=3, lr=3e-3, num_samples=4)
    train("fvsbn", digits, TrainConfig(batch_size=64, **common), tmp_path / "big", progress=False)
    result = train("fvsbn", digits, TrainConfig(batch_size=16, grad_accumulation=4, **common), tmp_path / "acc",
                   progress=False)
    assert result.steps == 6 and json.loads((tmp_path / "acc" / "results.json").read_text())["examples_seen"] == 6 * 64
    big, acc = _final_weights(tmp_path / "big"), _final_weights(tmp_path / "acc")
    for key in big:
        torch.testing.assert_close(acc[key], big[key], rtol=1e-5, atol=1e-6)
    with pytest.raises(UserError, match="more than the 1257 training examples"):
        train("fvsbn", digits, TrainConfig(batch_size=700, grad_accumulation=2, steps=1), tmp_path / "x", progress=False)


def test_sigterm_saves_the_current_step_and_a_resume_continues_bit_exactly(digits, tmp_path):
    """SIGTERM mid-training: a checkpoint at that step, exit status 143 and one line, no traceback;
    resuming to step S + 6 ends with exactly the weights of an uninterrupted run of S + 6 steps."""
    run = tmp_path / "run"
    flags = ["--eval-every", "100000", "--log-every", "2", "--lr", "3e-3", "--batch-size", "64", "--num-samples", "4"]
    env = {**_env(), "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the same arithmetic as this process
    proc = subprocess.Popen(
        [sys.executable, "-m", "genmodels.cli", "train", "fvsbn", "--steps", "1000000", *flags, "--out", str(run),
         "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            metrics = run / "metrics.csv"
            if metrics.is_file() and ",train," in metrics.read_text():
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr[-3000:]
    assert "Traceback" not in stderr
    line = [x for x in stderr.splitlines() if "SIGTERM" in x]
    assert len(line) == 1 and "--resume" in line[0], stderr[-2000:]
    step = read_checkpoint(list_checkpoints(run)[-1]).meta["step"]
    assert step >= 2 and f"at step {step};" in line[0]
    train("fvsbn", digits, {"steps": step + 6}, run, resume=True, progress=False)
    train("fvsbn", digits, TrainConfig(steps=step + 6, eval_every=100000, log_every=2, lr=3e-3, batch_size=64,
                                       num_samples=4), tmp_path / "straight", progress=False)
    resumed, straight = _final_weights(run), _final_weights(tmp_path / "straight")
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def _flip_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's data: still a valid safetensors file
    file.write_bytes(bytes(data))


def test_damaged_checkpoints_are_refused_and_resume_falls_back_to_an_intact_one(digits, tmp_path, capsys):
    import shutil

    from genmodels.checkpoint import verify_checkpoint

    run = tmp_path / "run"
    train("fvsbn", digits, TrainConfig(steps=10, eval_every=5, lr=3e-3, num_samples=4, batch_size=64), run, progress=False)
    latest = list_checkpoints(run)[-1]
    written = {k: v.clone() for k, v in load_file(latest / "model.safetensors").items()}  # not a view of the file
    damages = {
        "flipped": (lambda d: _flip_byte(d / "trainer_state.safetensors"), "does not match the SHA-256"),
        "truncated": (lambda d: (d / "model.safetensors").write_bytes((d / "model.safetensors").read_bytes()[:100]),
                      "corrupt or truncated"),
        "empty": (lambda d: (d / "model.safetensors").write_bytes(b""), "corrupt or truncated"),
        "edited": (lambda d: (d / "checkpoint.json").write_text((d / "checkpoint.json").read_text()[:-20]), "corrupt"),
    }
    for name, (damage, message) in damages.items():
        copy = tmp_path / name
        shutil.copytree(latest, copy)
        damage(copy)
        with pytest.raises(UserError, match=message):
            verify_checkpoint(copy)
    _flip_byte(latest / "model.safetensors")
    with pytest.raises(UserError, match="does not match the SHA-256.*resume from another checkpoint"):
        read_checkpoint(latest, with_trainer_state=True)
    (run / "checkpoints" / ".tmp-step-000000015-999").mkdir()  # left by a killed process
    capsys.readouterr()
    train("fvsbn", digits, None, run, resume=True, progress=False)
    assert "step-000000010 is damaged" in capsys.readouterr().err
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert "damaged-step-000000010" in names and not any(n.startswith(".tmp") for n in names)
    rewritten = load_file(list_checkpoints(run)[-1] / "model.safetensors")  # step 10 again, from step 5
    assert all(torch.equal(rewritten[k], written[k]) for k in written)


def test_compiled_forward_trains_like_the_plain_one(digits, tmp_path, monkeypatch):
    """--compile wraps the model's forward in torch.compile. Inductor's code generation takes about a
    minute on a CPU, so this test traces with TorchDynamo and runs the graph eagerly (backend
    "eager"): it checks the wiring (unwrapping, training, checkpoints), not the generated kernels."""
    import functools

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    common = dict(steps=3, eval_every=3, lr=3e-3, num_samples=4, batch_size=64)
    train("fvsbn", digits, TrainConfig(**common), tmp_path / "plain", progress=False)
    train("fvsbn", digits, TrainConfig(compile=True, **common), tmp_path / "compiled", progress=False)
    plain, compiled = _final_weights(tmp_path / "plain"), _final_weights(tmp_path / "compiled")
    for key in plain:
        torch.testing.assert_close(compiled[key], plain[key], rtol=1e-5, atol=1e-6)


def test_transformer_gradient_checkpointing_gives_the_same_gradients(digits, monkeypatch):
    """Recomputing the blocks in the backward pass (with dropout replayed) changes no gradient."""
    import torch.utils.checkpoint as tuc

    from genmodels.core import create_model

    calls = []
    original = tuc.checkpoint
    monkeypatch.setattr(tuc, "checkpoint", lambda *a, **k: calls.append(1) or original(*a, **k))
    (batch,) = _batches(digits.train, 8, 1)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = create_model("transformer", digits.spec, {"dropout": 0.1, "checkpointing": checkpointing})
        model.train()
        torch.manual_seed(1)
        model(batch).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 5
    assert len(calls) == 2  # one per block, in the checkpointed run only
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)
